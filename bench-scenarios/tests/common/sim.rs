//! A neon-sim process for one test: started on ephemeral loopback ports, its ports read from
//! the line it prints on start, killed when dropped. Include with
//! `#[path = "common/sim.rs"] mod sim;`.
#![allow(dead_code)] // each test binary reads the fields it needs

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Sim {
    child: Child,
    /// HOST:PORT of the HTTP API, the RTSP server.
    pub http: String,
    pub rtsp: String,
    /// Length of one pass through the fixture.
    pub period_ms: i64,
}

impl Sim {
    pub fn start(fixture: &Path, extra: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_neon-sim"))
            .arg(fixture)
            .args([
                "--http-port",
                "0",
                "--rtsp-port",
                "0",
                "--time-echo-port",
                "0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {line:?}"))
                .to_string()
        };
        Sim {
            http: field("http="),
            rtsp: field("rtsp="),
            period_ms: field("period_ms=").parse().unwrap(),
            child,
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
