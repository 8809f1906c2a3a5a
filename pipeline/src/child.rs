//! Child processes (ffmpeg, ffprobe) under a deadline: output read on threads so a chatty child
//! never blocks on a full pipe, and a child that overruns killed and reaped, so no call hangs.
//!
//! Every program this crate starts goes through here or through [`wait_within`]; the limits are
//! generous (a stuck child, not a slow one, is what they catch) and each caller names its own.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a finished child left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {} s and was killed", timeout.as_secs_f64())]
    TimedOut { program: String, timeout: Duration },
    #[error("{program}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

impl ChildError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ChildError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn program_name(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

/// Waits for `child` at most `timeout`; past it the child is killed and reaped and `None`
/// returned. Polls (a child has no waitable handle with a timeout in std), from 1 ms up to
/// 50 ms between looks, so a quick child costs next to nothing.
pub fn wait_within(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let t0 = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let elapsed = t0.elapsed();
        if elapsed >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Kills a child that is still running at a deadline while its parent is busy elsewhere (e.g.
/// blocked writing its stdin). The parent disarms it before reaping the child, so it never
/// signals a process id that may have been reused.
pub struct Watchdog {
    state: Arc<Mutex<bool>>,
    thread: Option<std::thread::JoinHandle<bool>>,
}

impl Watchdog {
    pub fn arm(child: &Child, timeout: Duration) -> Self {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let state = Arc::new(Mutex::new(false));
        let disarmed = Arc::clone(&state);
        let deadline = Instant::now().checked_add(timeout);
        let thread = std::thread::Builder::new()
            .name("child-watchdog".into())
            .spawn(move || loop {
                let Ok(done) = disarmed.lock() else {
                    return false;
                };
                if *done {
                    return false;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    return true;
                }
                drop(done);
                std::thread::sleep(Duration::from_millis(20));
            })
            .ok();
        Watchdog { state, thread }
    }

    /// Stops watching; true if the deadline had passed and the child was killed.
    pub fn disarm(mut self) -> bool {
        self.stop()
    }

    fn stop(&mut self) -> bool {
        if let Ok(mut done) = self.state.lock() {
            *done = true;
        }
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(false)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to completion (stdin empty unless the caller set it), collecting stdout and
/// stderr; a child still running after `timeout` is killed and the call fails.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Finished, ChildError> {
    let program = program_name(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ChildError::Spawn {
            program: program.clone(),
            source,
        })?;
    let readers = Readers::start(&mut child);
    let status = wait_within(&mut child, timeout).map_err(|source| ChildError::Io {
        program: program.clone(),
        source,
    })?;
    let (stdout, stderr) = readers.join();
    match status {
        Some(status) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        None => Err(ChildError::TimedOut { program, timeout }),
    }
}

/// Threads draining a child's stdout and stderr (both, or the child can block on one).
pub struct Readers {
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Readers {
    pub fn start(child: &mut Child) -> Self {
        fn drain(mut r: impl Read + Send + 'static) -> Option<std::thread::JoinHandle<Vec<u8>>> {
            std::thread::Builder::new()
                .name("child-output".into())
                .spawn(move || {
                    let mut v = Vec::new();
                    let _ = r.read_to_end(&mut v);
                    v
                })
                .ok()
        }
        Readers {
            out: child.stdout.take().and_then(drain),
            err: child.stderr.take().and_then(drain),
        }
    }

    /// Waits for both pipes to close (the child and any grandchild holding them gone).
    pub fn join(self) -> (Vec<u8>, Vec<u8>) {
        let get = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        (get(self.out), get(self.err))
    }
}

/// Where `program` would be run from: itself if it names a path, else the first executable of
/// that name on `PATH`. A presence check that starts nothing.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_owned());
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_overruns_is_killed() {
        let t0 = Instant::now();
        let e =
            output_within(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, ChildError::TimedOut { .. }), "{e}");
        assert!(
            e.to_string().contains("sleep did not finish within 0.2 s"),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_is_collected_and_missing_programs_say_so() {
        let f = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(f.status.code(), Some(3));
        assert_eq!(f.stdout, b"out\n");
        assert_eq!(f.stderr, b"err\n");
        let e = output_within(
            &mut Command::new("definitely-not-a-program-xyz"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("definitely-not-a-program-xyz")).is_none());
    }

    #[test]
    fn the_watchdog_kills_a_child_its_parent_is_blocked_on() {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let dog = Watchdog::arm(&child, Duration::from_millis(100));
        // The parent is "busy" in a blocking wait: the watchdog ends it.
        let status = child.wait().unwrap();
        assert!(!status.success());
        drop(dog);
        let mut quick = Command::new("true").spawn().unwrap();
        let dog = Watchdog::arm(&quick, Duration::from_secs(30));
        assert!(!dog.disarm(), "disarmed in time");
        assert!(quick.wait().unwrap().success());
    }
}
