//! One watched `eyetrack run` of the soak suite: its stderr collected line by line, the
//! resident memory of its process tree (ffmpeg included) sampled over time, and a deadline.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pipeline::resources;

/// A running eyetrack (or any program) under watch.
pub struct Watched {
    child: Child,
    started: Instant,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    rss: Arc<Mutex<Vec<(f64, u64)>>>,
    stop_sampling: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

/// How a watched process ended.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it outlived its deadline and was killed.
    pub status: Option<ExitStatus>,
    pub wall_s: f64,
    pub stderr: Vec<String>,
    /// (seconds since start, RSS bytes of the process tree).
    pub rss: Vec<(f64, u64)>,
}

impl Finished {
    /// Exit code, or a description of the signal or timeout that ended it.
    pub fn outcome(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match self.status {
            None => "killed at its deadline".into(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => format!("{s}"),
            },
        }
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// A Rust panic (exit 101) or a fatal signal: what "crash" means here.
    pub fn crashed(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        match self.status {
            Some(s) => s.code() == Some(101) || s.signal().is_some(),
            None => false,
        }
    }

    /// Stderr lines that are not the program's one-line convention (`eyetrack: ...`).
    pub fn stray_lines(&self) -> Vec<&str> {
        self.stderr
            .iter()
            .map(String::as_str)
            .filter(|l| !l.trim().is_empty() && !l.starts_with("eyetrack: "))
            .collect()
    }

    pub fn lines_containing(&self, needle: &str) -> usize {
        self.stderr.iter().filter(|l| l.contains(needle)).count()
    }
}

impl Watched {
    /// Starts `program args...`; `sample_every` > 0 samples its tree's RSS at that interval.
    pub fn start(program: &Path, args: &[String], sample_every: Duration) -> std::io::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let started = Instant::now();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let reader = child.stderr.take().map(|pipe| {
            let lines = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            })
        });
        let rss = Arc::new(Mutex::new(Vec::new()));
        let stop_sampling = Arc::new(AtomicBool::new(false));
        let sampler = (!sample_every.is_zero()).then(|| {
            let (rss, stop) = (Arc::clone(&rss), Arc::clone(&stop_sampling));
            let pid = child.id() as i32;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(u) = resources::sample_tree_of(pid) {
                        if let Ok(mut v) = rss.lock() {
                            v.push((started.elapsed().as_secs_f64(), u.rss_bytes));
                        }
                    }
                    std::thread::park_timeout(sample_every);
                }
            })
        });
        Ok(Watched {
            child,
            started,
            stderr,
            reader,
            rss,
            stop_sampling,
            sampler,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The first stderr line containing `needle`, waiting up to `timeout` for it.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let t0 = Instant::now();
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .ok()
                .and_then(|v| v.iter().find(|l| l.contains(needle)).cloned())
            {
                return Some(l);
            }
            if t0.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends signal `sig` (a name such as `TERM`) to the process.
    pub fn signal(&self, sig: &str) -> bool {
        send_signal(self.pid(), sig)
    }

    /// Open file descriptors and threads of the process itself.
    pub fn fds_and_threads(&self) -> (usize, usize) {
        let count = |d: String| std::fs::read_dir(d).map_or(0, |d| d.count());
        (
            count(format!("/proc/{}/fd", self.pid())),
            count(format!("/proc/{}/task", self.pid())),
        )
    }

    /// Live child processes (the encoder, while recording).
    pub fn children(&self) -> usize {
        let mut v = Vec::new();
        resources::children_of(self.pid(), &mut v);
        v.len()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Descendant processes whose command name is `comm` and whose command line mentions
    /// `needle` (e.g. the `ffmpeg` encoder writing `scene_000`, not a capability probe).
    pub fn descendants_named(&self, comm: &str, needle: &str) -> Vec<i32> {
        let mut found = Vec::new();
        let mut stack = Vec::new();
        resources::children_of(self.pid(), &mut stack);
        while let Some(pid) = stack.pop() {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if name.trim() == comm && String::from_utf8_lossy(&cmdline).contains(needle) {
                found.push(pid);
            }
            resources::children_of(pid, &mut stack);
        }
        found
    }

    /// Waits up to `timeout` from now; a process still running then is killed.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let t0 = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if t0.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let wall_s = self.started.elapsed().as_secs_f64();
        self.stop_sampling.store(true, Ordering::Relaxed);
        if let Some(t) = self.sampler.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
        Finished {
            status,
            wall_s,
            stderr: take_all(&self.stderr),
            rss: take_all(&self.rss),
        }
    }
}

fn take_all<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    m.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

impl Drop for Watched {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.stop_sampling.store(true, Ordering::Relaxed);
    }
}

/// Sends signal `sig` (a name such as `KILL`) to `pid` with kill(1): the suite's only use of
/// signals, not worth a binding.
pub fn send_signal(pid: i32, sig: &str) -> bool {
    let mut cmd = Command::new("kill");
    cmd.args([&format!("-{sig}"), &pid.to_string()])
        .stdin(Stdio::null());
    pipeline::child::output_within(&mut cmd, std::time::Duration::from_secs(10))
        .is_ok_and(|f| f.status.success())
}

/// Least-squares slope of `(t seconds, bytes)` in MB per minute, over the samples with
/// `t >= from_s`; `None` with fewer than 3 of them.
pub fn rss_slope_mb_per_min(samples: &[(f64, u64)], from_s: f64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(t, _)| *t >= from_s)
        .map(|(t, b)| (*t / 60.0, *b as f64 / 1_048_576.0))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let mb = 1_048_576u64;
        let line: Vec<(f64, u64)> = (0..10)
            .map(|i| (i as f64 * 6.0, 100 * mb + i * mb))
            .collect();
        // 1 MB every 6 s = 10 MB/min
        let s = rss_slope_mb_per_min(&line, 0.0).unwrap();
        assert!((s - 10.0).abs() < 1e-9, "{s}");
        let flat: Vec<(f64, u64)> = (0..10).map(|i| (i as f64, 50 * mb)).collect();
        assert_eq!(rss_slope_mb_per_min(&flat, 3.0), Some(0.0));
        assert_eq!(rss_slope_mb_per_min(&flat, 8.5), None);
    }
}
