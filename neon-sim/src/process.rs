//! The `neon-sim` binary as a child process on ephemeral loopback ports: what the harness, the
//! soak suite and the binary's own tests start, its ports read from the line it prints.
//!
//! A separate process where the simulator must be killed like a device that loses power, or
//! must not share the CPU accounting of the process that measures; [`crate::LoopbackSim`]
//! serves in-process otherwise.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `neon-sim`; killed when dropped.
pub struct SimProcess {
    child: Child,
    /// HOST:PORT of the HTTP API and the RTSP server.
    pub http: String,
    pub rtsp: String,
    /// Length of one pass through the fixture (ms).
    pub period_ms: i64,
}

impl SimProcess {
    /// Starts `neon_sim` serving `fixture` with extra flags (faults) and reads its ports line.
    pub fn start(neon_sim: &Path, fixture: &Path, extra: &[String]) -> Result<Self, String> {
        let mut cmd = Command::new(neon_sim);
        cmd.arg(fixture)
            .args([
                "--http-port",
                "0",
                "--rtsp-port",
                "0",
                "--time-echo-port",
                "0",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", neon_sim.display()))?;
        let stdout = child.stdout.take().ok_or("neon-sim has no stdout")?;
        let mut line = String::new();
        let read = std::io::BufReader::new(stdout).read_line(&mut line);
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_owned)
        };
        let period_ms = field("period_ms=").and_then(|p| p.parse().ok());
        match (read, field("http="), field("rtsp="), period_ms) {
            (Ok(_), Some(http), Some(rtsp), Some(period_ms)) => Ok(SimProcess {
                child,
                http,
                rtsp,
                period_ms,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "neon-sim did not report its ports (got {:?})",
                    line.trim()
                ))
            }
        }
    }

    /// eyetrack's `--source` for this simulator.
    pub fn source(&self) -> String {
        format!("neon://{}", self.http)
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
