//! A real `eyetrack run --control 127.0.0.1:0` process for the control API and browser tests:
//! start it, learn its port from stderr, talk HTTP to it, stop it with SIGINT. Include with
//! `#[path = "common/control.rs"] mod control;` next to `mod common;`.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub base: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub agent: ureq::Agent,
}

/// Starts eyetrack with `args` plus `--control 127.0.0.1:0`; waits for the address line.
pub fn start(mut cmd: Command, args: &[&str]) -> Server {
    cmd.args(args)
        .args(["--control", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("eyetrack starts");
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("preview on ").nth(1) {
                    let _ = tx.send(url.trim().trim_end_matches('/').to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no control address; stderr: {:?}", lines.lock().unwrap()));
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    Server {
        child,
        base,
        stderr: lines,
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into(),
    }
}

/// A reply: status code and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.call())
    }

    /// POST with a body (sent as JSON) or none.
    pub fn post(&self, path: &str, body: Option<&str>) -> Reply {
        self.post_with(path, body, &[])
    }

    pub fn post_with(&self, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent.post(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match body {
            Some(b) => reply(req.header("Content-Type", "application/json").send(b)),
            None => reply(req.send_empty()),
        }
    }

    pub fn status(&self) -> serde_json::Value {
        let r = self.get("/status");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// SIGINT, then the exit status within 20 s (the clean stop path).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!("eyetrack did not stop: {:?}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut resp = r.expect("HTTP exchange");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .expect("body");
    Reply { status, body }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Frames ffprobe decodes in a video file (0 if it cannot read it at all).
pub fn ffprobe_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs (ci/setup installs ffmpeg)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or(0)
}

/// Checks a finished recording folder: the video decodes (frames > 0) and every CSV parses
/// strictly. Returns the video's frame count and the rows of events.csv (kind, detail,
/// device time).
pub fn check_recording(dir: &Path) -> (u64, Vec<(String, String, String)>) {
    let video: PathBuf = dir.join("scene_000.mkv");
    let frames = ffprobe_frames(&video);
    assert!(frames > 0, "{} has no frames", video.display());
    let mut events = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "csv") {
            let mut r = csv::ReaderBuilder::new().from_path(&path).unwrap();
            let width = r.headers().unwrap().len();
            for rec in r.records() {
                let rec = rec.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(rec.len(), width, "{}: short row", path.display());
                if path.ends_with("events.csv") {
                    events.push((rec[3].to_owned(), rec[4].to_owned(), rec[2].to_owned()));
                }
            }
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("session.json")).unwrap()).unwrap();
    assert_eq!(manifest["end"], "stopped", "{manifest}");
    (frames, events)
}
