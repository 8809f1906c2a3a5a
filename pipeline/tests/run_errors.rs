//! How `eyetrack run` ends when something fails: before streaming, in one line and without
//! leaving the empty files its write checks made; after streaming started, by stopping the
//! pipeline cleanly and still writing the report, with the error in it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{eyetrack, tmp};

fn one_error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    text
}

#[test]
fn a_run_refused_before_streaming_leaves_no_empty_outputs() {
    let dir = tmp("run-errors-refused");
    let (report, svg, snap) = (
        dir.join("report.json"),
        dir.join("flame.svg"),
        dir.join("snap.ppm"),
    );
    // --status-log needs a device: refused after the outputs were checked for writability.
    let out = eyetrack()
        .args(["run", "--source", "synthetic", "--duration", "1s"])
        .args(["--status-log", "1s", "--record"])
        .arg(dir.join("rec"))
        .arg("--report")
        .arg(&report)
        .arg("--flamegraph")
        .arg(&svg)
        .arg("--snapshot")
        .arg(&snap)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = one_error_line(&out.stderr);
    assert!(err.contains("--status-log needs"), "{err}");
    for p in [&report, &svg, &snap] {
        assert!(!p.exists(), "{} was left behind", p.display());
    }
    // An output that already exists is kept as it was.
    std::fs::write(&report, b"previous run\n").unwrap();
    let out = eyetrack()
        .args(["run", "--source", "synthetic", "--duration", "1s"])
        .args(["--status-log", "1s", "--record"])
        .arg(dir.join("rec"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&report).unwrap(), b"previous run\n");
    std::fs::remove_dir_all(&dir).ok();
}

fn has_recording(root: &Path) -> bool {
    std::fs::read_dir(root).is_ok_and(|mut d| d.any(|e| e.is_ok()))
}

/// `--record-cycle` cannot go on (its recording root was removed under it): the run stops the
/// pipeline and writes its report with the error, exits 1 with one line, and does not hang.
#[test]
fn an_error_after_streaming_started_still_writes_the_report() {
    let dir = tmp("run-errors-cycle");
    let root = dir.join("rec");
    let report = dir.join("report.json");
    let mut child = eyetrack()
        .args(["run", "--source", "synthetic", "--resolution", "320x240"])
        .args(["--duration", "60s", "--record-cycle", "2s", "--record"])
        .arg(&root)
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "recording into DIR" is said once the pipeline and its first recording are up: from
    // then on a failure is one after streaming started.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("recording into") {
                let _ = tx.send(());
            }
            all.push(line);
        }
        all
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(30)).is_ok() && has_recording(&root),
        "the first recording never started"
    );
    std::fs::remove_dir_all(&root).unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            panic!("eyetrack kept running after --record-cycle failed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = lines.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err:?}");
    // The error is the last line (a warning about the recording may come before it).
    let last = err.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("eyetrack: error: --record-cycle"),
        "{err:?}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("the report was written")).unwrap();
    let e = report["error"].as_str().unwrap_or_default();
    assert!(e.contains("--record-cycle"), "{report:#}");
    assert!(
        report["frames"]["frames_displayed"].as_u64() > Some(0),
        "{report:#}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
