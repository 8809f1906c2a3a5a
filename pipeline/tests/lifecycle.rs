//! Lifecycle of a real `eyetrack run` (issue 6): SIGTERM and SIGINT end a recording cleanly
//! within 2 s, a second signal exits at once without losing what was fsynced, and
//! `--log-format json` writes one JSON object per line.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{eyetrack, tmp};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pipeline::record::verify::{self, FolderCheck};

/// The spec's deadline from signal to exit (issue 6, "Lifecycle").
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// A paced synthetic recording that would run for a minute.
fn start_recording(root: &Path, extra: &[&str]) -> Child {
    eyetrack()
        .args(["run", "--duration", "60s", "--resolution", "800x600"])
        .args(["--record-fps", "5", "--record"])
        .arg(root.join("rec"))
        .arg("--report")
        .arg(root.join("report.json"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the recording folder exists, then until it has timed `secs` seconds of frames
/// at 5 fps (rows in frame_timing.csv): a count, so a slow machine only takes longer.
fn record_for(root: &Path, secs: u64) {
    let rec = root.join("rec");
    let t0 = Instant::now();
    while !rec
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no recording folder"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let want = (secs * 5) as usize;
    let t0 = Instant::now();
    loop {
        let rows = rec
            .read_dir()
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read_to_string(e.path().join("frame_timing.csv")).ok())
            .map_or(0, |t| t.lines().count().saturating_sub(1));
        if rows >= want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "only {rows} of {want} timed frames after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Whether a SIGTERM sent to the process still waits for delivery (`ShdPnd` in
/// /proc/PID/status, proc(5)).
fn sigterm_pending(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (Signal::SIGTERM as i32 - 1)) != 0)
}

fn only_recording(root: &Path) -> FolderCheck {
    let mut all = verify::check_root(&root.join("rec")).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[test]
fn sigterm_and_sigint_finish_the_recording_and_the_report_within_2_s() {
    let runs: Vec<(Signal, PathBuf, Child)> = [Signal::SIGTERM, Signal::SIGINT]
        .into_iter()
        .map(|sig| {
            let root = tmp(&format!("stop-{sig:?}"));
            let child = start_recording(&root, &["-q"]);
            (sig, root, child)
        })
        .collect();
    for (_, root, _) in &runs {
        record_for(root, 3);
    }
    for (sig, root, mut child) in runs {
        signal(&child, sig);
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t0.elapsed() < STOP_DEADLINE,
                "{sig:?}: still running {STOP_DEADLINE:?} after the signal"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = t0.elapsed();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(status.success(), "{sig:?}: {status:?} {stderr}");
        assert!(took < STOP_DEADLINE, "{sig:?}: {took:?}");
        assert!(
            stderr.contains("stopping") && stderr.contains(&format!("{sig:?}")),
            "{sig:?}: the stop is logged: {stderr}"
        );
        let check = only_recording(&root);
        assert_eq!(check.problems(), Vec::<String>::new(), "{sig:?}");
        assert_eq!(check.end.as_deref(), Some("stopped"), "{sig:?}");
        let frames = check.scene_frames();
        assert!(frames >= 10, "{sig:?}: 3 s at 5 fps: {frames}");
        assert_eq!(
            Some(frames as usize),
            check.csv_rows("frame_timing.csv"),
            "{sig:?}: the container is finalized: every timed frame decodes"
        );
        assert_eq!(check.count("frames"), Some(frames), "{sig:?}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("report.json")).unwrap()).unwrap();
        assert_eq!(report["recordings"][0]["end"], "stopped", "{sig:?}");
    }
}

#[test]
fn a_second_signal_exits_at_once_and_what_was_fsynced_stays_readable() {
    let root = tmp("second-signal");
    let child = start_recording(&root, &["-q", "--fsync-every", "5"]);
    record_for(&root, 3);
    signal(&child, Signal::SIGTERM);
    // Two standard signals pending at once merge into one: send the second as soon as the
    // first has been delivered, well before the clean stop (tens of ms) could finish.
    let t0 = Instant::now();
    while sigterm_pending(child.id()) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "SIGTERM never delivered"
        );
        std::thread::yield_now();
    }
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exited at once: no report (the file is created empty before streaming, as a check).
    let report_len = std::fs::metadata(root.join("report.json")).map_or(0, |m| m.len());
    assert_eq!(report_len, 0);
    // The ffmpeg child sees its input end and finishes the file on its own: give it time.
    let fsynced = |c: &FolderCheck| -> u64 {
        verify::csv_records(&c.dir.join("events.csv"))
            .unwrap()
            .iter()
            .filter(|r| &r[3] == "fsync")
            .filter_map(|r| r[4].split("holds ").nth(1)?.split(' ').next()?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    let check = loop {
        let c = only_recording(&root);
        if c.problems().is_empty() && c.scene_frames() >= fsynced(&c) {
            break c;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "fsynced frames unreadable: {:?}",
            c.problems()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(fsynced(&check) >= 5, "an fsync every 5 frames over 3 s");
    assert_eq!(
        check.end.as_deref(),
        Some("recording"),
        "exited without stopping"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_level_and_message() {
    let root = tmp("json-log");
    let out = eyetrack()
        .args(["run", "--duration", "1s", "--as-fast-as-possible"])
        .args([
            "--resolution",
            "320x240",
            "--log-format",
            "json",
            "--record",
        ])
        .arg(root.join("rec"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty(), "the recording folder is logged");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["message"].is_string(), "{line}");
    }
    assert!(stderr.contains("recording into"), "{stderr}");
    // An error is an ERROR object too, and the text format keeps the old one-liner.
    let bad = |format: &str| {
        let out = eyetrack()
            .args(["run", "--duration", "1s", "--log-format", format])
            .args(["--record", "/nonexistent-dir/x/y"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    };
    let json: serde_json::Value = serde_json::from_str(&bad("json")).unwrap();
    assert_eq!(json["level"], "ERROR");
    assert!(json["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent-dir/x"));
    let text = bad("text");
    assert!(text.starts_with("eyetrack: error: "), "{text}");
    assert_eq!(text.lines().count(), 1);
}
