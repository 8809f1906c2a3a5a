//! End to end over the real `eyetrack` binary: runs, reports, and rejects bad flags.

mod common;

use common::{eyetrack, tmp};

#[test]
fn a_run_writes_a_complete_report() {
    let dir = tmp("report");
    let report = dir.join("r.json");
    let out = eyetrack()
        .args([
            "run",
            "--source",
            "synthetic",
            "--duration",
            "10s",
            "--as-fast-as-possible",
            "--resolution",
            "640x480",
            "--report",
        ])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("end_to_end"), "{stdout}");
    assert!(stdout.contains("dropped frames"), "targets table: {stdout}");

    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["frames"]["frames_acquired"], 300);
    assert_eq!(r["frames"]["frames_processed"], 300);
    assert_eq!(r["dropped_frames"], 0);
    assert!(
        r["frames"]["duplicates_skipped"].as_u64().unwrap() > 0,
        "frozen segment"
    );
    assert!(r["frames"]["gaze_samples"].as_u64().unwrap() >= 1900);
    // 200 Hz gaze delivered in device-time order: the official rule pairs each frame with the
    // newest older sample, at most one gaze period away.
    let dt_max = r["frames"]["gaze_dt_abs_max_ns"].as_u64().unwrap();
    assert!(dt_max <= 5_000_000, "gaze dt max {dt_max} ns");
    assert!(r["frames"]["frames_without_gaze"].as_u64().unwrap() <= 1);
    for phase in ["acquire", "process", "preview", "overlay", "end_to_end"] {
        let p = r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["phase"] == phase)
            .unwrap();
        assert!(p["count"].as_u64().unwrap() >= 290, "{phase}: {p}");
    }
    let targets = r["targets"].as_array().unwrap();
    assert!(targets
        .iter()
        .any(|t| t["id"] == "cpu_streaming" && t["value"].is_number()));
    assert!(r["cpu"]["per_stream_second"].as_f64().unwrap() > 0.0);
    assert!(r["platform"]["usable_cores"].as_u64().unwrap() >= 1);
    assert_eq!(r["toggles"]["resize"], "area");
    std::fs::remove_dir_all(dir).ok();
}

/// Runs `eyetrack run --quiet --report F` with extra flags and returns the parsed report.
fn quiet_run(name: &str, args: &[&str]) -> serde_json::Value {
    let dir = tmp(name);
    let report = dir.join("r.json");
    let out = eyetrack()
        .args([
            "run",
            "--as-fast-as-possible",
            "--resolution",
            "320x240",
            "--quiet",
        ])
        .args(args)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "--quiet prints nothing");
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    std::fs::remove_dir_all(dir).ok();
    r
}

#[test]
fn baseline_preset_and_overrides_are_reported() {
    let r = quiet_run(
        "baseline",
        &[
            "--duration",
            "1s",
            "--preset",
            "baseline",
            "--resize",
            "area",
        ],
    );
    assert_eq!(r["toggles"]["color_path"], "bgr");
    assert_eq!(r["toggles"]["overlay"], "draw");
    assert_eq!(r["toggles"]["resize"], "area");
}

#[test]
fn hidden_preview_reduces_processing() {
    let r = quiet_run("hidden", &["--duration", "2s", "--preview", "hidden"]);
    assert_eq!(r["frames"]["frames_processed"], 6);
    assert_eq!(r["frames"]["reduced_skipped"], 54);
}

#[test]
fn snapshot_saves_the_last_preview_frame() {
    let dir = tmp("snapshot");
    let snap = dir.join("s.ppm");
    let out = eyetrack()
        .args([
            "run",
            "--duration",
            "1s",
            "--as-fast-as-possible",
            "--quiet",
        ])
        .args(["--resolution", "800x600", "--snapshot"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&snap).unwrap();
    let header = b"P6\n480 360\n255\n";
    assert_eq!(&bytes[..header.len()], header);
    assert_eq!(bytes.len(), header.len() + 480 * 360 * 3);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn every_source_format_runs() {
    for format in ["gray", "bgr", "rgba", "bgra", "tiled"] {
        for preset in ["optimized", "baseline"] {
            let r = quiet_run(
                &format!("{format}-{preset}"),
                &["--duration", "1s", "--format", format, "--preset", preset],
            );
            assert_eq!(r["frames"]["frames_displayed"], 30, "{format} {preset}");
            assert!(r["error"].is_null(), "{format} {preset}: {}", r["error"]);
        }
    }
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let out = eyetrack().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{stderr}");
}

#[test]
fn bad_flags_are_one_line_and_exit_2() {
    assert_usage_error(&["run", "--resize", "cubic"], "cubic");
    assert_usage_error(&["run", "--source", "webcam"], "unknown source 'webcam'");
    assert_usage_error(&["run", "--preview-size", "640by360"], "640by360");
    assert_usage_error(&["run", "--duration", "-3"], "-3");
    assert_usage_error(&["run", "--no-such-flag"], "--no-such-flag");
    assert_usage_error(&["run", "--fps", "0"], "fps");
}

#[test]
fn an_unwritable_report_fails_before_streaming() {
    let out = eyetrack()
        .args([
            "run",
            "--duration",
            "60s",
            "--report",
            "/nonexistent-dir/r.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent-dir"), "{stderr}");
}
