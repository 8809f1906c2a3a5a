//! End to end over the real binaries: a short suite run writes report.json, index.html (checked
//! in headless Chromium), and `compare` gates regressions.

use std::path::{Path, PathBuf};
use std::process::Command;

/// From the repository root, where the default fixture path points.
fn bench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bench-scenarios"));
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    c
}

#[path = "common/bins.rs"]
mod bins;
use bins::eyetrack;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bench-scenarios-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run_suite(out: &Path, extra: &[&str]) -> serde_json::Value {
    run_suite_with(out, extra, "off")
}

fn run_suite_with(out: &Path, extra: &[&str], flamegraphs: &str) -> serde_json::Value {
    let o = bench()
        .args([
            "run",
            "--quiet",
            "--mode",
            "offline",
            "--duration",
            "1s",
            "--repeat",
            "2",
        ])
        .args(["--flamegraphs", flamegraphs, "--eyetrack"])
        .arg(eyetrack())
        .arg("--out")
        .arg(out)
        .args(extra)
        // One cell unless a test asks for more: the synthetic source, streaming.
        .args(if extra.contains(&"--source") {
            &[][..]
        } else {
            &["--source", "synthetic"][..]
        })
        .args(if extra.contains(&"--scenario") {
            &[][..]
        } else {
            &["--scenario", "streaming"][..]
        })
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn a_sweep_reports_every_variant_against_the_baseline() {
    let out = tmp("sweep");
    let r = run_suite(
        &out,
        &[
            "--sweep",
            "full",
            "--variant",
            "bilinear-sprite=--overlay sprite",
        ],
    );
    assert_eq!(r["schema_version"], 2);
    assert_eq!(r["scenarios"].as_array().unwrap().len(), 1);
    let sc = &r["scenarios"][0];
    assert_eq!(sc["scenario"], "streaming");
    assert_eq!(sc["source"], "synthetic");
    // No decode and no floor on the synthetic source.
    assert!(sc["floor"].is_null());
    let variants = sc["variants"].as_array().unwrap();
    // Streaming on the synthetic source: the 7 preview toggles and the explicit variant; the
    // recording and decode toggles are left out.
    assert_eq!(variants.len(), 1 + 7 + 1 + 1);
    assert_eq!(variants[8]["name"], "all-optimized");
    assert_eq!(variants[9]["name"], "bilinear-sprite");
    assert_eq!(variants[0]["name"], "baseline");
    assert_eq!(variants[0]["verdict"], "baseline");
    for v in variants {
        assert_eq!(v["repeats"], 2, "{}", v["name"]);
        assert_eq!(v["runs"].as_array().unwrap().len(), 2);
        assert!(v["cpu_per_stream_second"]["median"].as_f64().unwrap() > 0.0);
        assert!(
            ["baseline", "better", "worse", "no_change"].contains(&v["verdict"].as_str().unwrap())
        );
        assert!(v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "cpu_streaming"));
        for run in v["runs"].as_array().unwrap() {
            assert!(out.join(run.as_str().unwrap()).is_file());
        }
    }
    assert_eq!(variants[1]["toggles"]["resize"], "area");
    assert_eq!(variants[1]["toggles"]["overlay"], "draw");
    assert!(r["environment"]["usable_cores"].as_u64().unwrap() >= 1);
    assert!(r["eyetrack"]["git_revision"].is_string());
    assert!(out.join("index.html").is_file());
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn index_html_renders_its_charts_in_chromium() {
    let out = tmp("html");
    let r = run_suite_with(&out, &["--sweep", "all-optimized"], "on");
    // One extra run per variant drew the flamegraph; the statistics keep only the repeats.
    for v in r["scenarios"][0]["variants"].as_array().unwrap() {
        assert_eq!(v["runs"].as_array().unwrap().len(), 2);
        let f = &v["flamegraph"];
        let svg = out.join(f["svg"].as_str().unwrap());
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("</svg>"), "{}", svg.display());
        assert!(f["info"]["overhead_percent"].is_number(), "{f}");
        assert!(out.join(f["run"].as_str().unwrap()).is_file());
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    // Self-contained: nothing to fetch, nothing to run.
    for external in ["<script", "<link", "src=", "url("] {
        assert!(!html.contains(external), "index.html contains {external}");
    }
    let shot = out.join("shot.png");
    let profile = out.join("chromium-profile");
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", out.join("index.html").display()))
        .output()
        .expect("chromium is installed by ci/setup");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The baseline's CPU bar is drawn in #8a8f98: find its pixels in the rendered page.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    let count = |rgb: [u8; 3]| {
        buf[..info.buffer_size()]
            .chunks_exact(px)
            .filter(|p| p[..3] == rgb)
            .count()
    };
    assert!(html.contains("flamegraphs/synthetic--streaming--baseline.svg"));
    let baseline_bar = count([0x8a, 0x8f, 0x98]);
    let latency_bars = count([0x7b, 0x61, 0xb8]);
    assert!(
        baseline_bar > 500,
        "baseline CPU bar pixels: {baseline_bar}"
    );
    assert!(latency_bars > 2000, "latency bar pixels: {latency_bars}");
    std::fs::remove_dir_all(out).ok();
}

/// The default cells (fixture and synthetic x streaming and both recording rates), with the
/// ffmpeg floor on the fixture's and the fast-decode PSNR where a fast-decode variant runs.
#[test]
fn the_default_suite_measures_the_fixture_against_the_ffmpeg_floor() {
    let out = tmp("floor");
    let o = bench()
        .args(["run", "--quiet", "--duration", "1s", "--repeat", "2"])
        .args(["--sweep", "all-optimized", "--flamegraphs", "off"])
        .args(["--variant", "fast=--fast-decode on", "--eyetrack"])
        .arg(eyetrack())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let cells: Vec<(String, String)> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["source_label"].as_str().unwrap().to_owned(),
                c["scenario"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = ["fixture:synthetic-12s", "synthetic"]
        .iter()
        .flat_map(|s| {
            ["streaming", "recording-5fps", "recording-30fps"]
                .iter()
                .map(move |c| (s.to_string(), c.to_string()))
        })
        .collect();
    assert_eq!(cells, want);
    for c in r["scenarios"].as_array().unwrap() {
        let fixture = c["source"].as_str().unwrap().starts_with("fixture:");
        assert_eq!(!c["floor"].is_null(), fixture, "{}", c["source"]);
        for v in c["variants"].as_array().unwrap() {
            assert_eq!(v["failed_runs"], 0, "{v}");
            assert_eq!(v["cpu_vs_floor"].is_number(), fixture, "{v}");
        }
        if fixture {
            let f = &c["floor"];
            assert!(f["errors"].as_array().unwrap().is_empty(), "{f}");
            assert_eq!(
                f["cpu_per_stream_second"]["values"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            assert!(f["cpu_per_stream_second"]["median"].as_f64().unwrap() > 0.0);
            let cmd: Vec<&str> = f["command"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert!(cmd.windows(2).any(|w| w == ["-threads", "1"]), "{cmd:?}");
            let records = c["scenario"] != "streaming";
            assert_eq!(cmd.contains(&"libx264"), records, "{cmd:?}");
            // Fast decode acts only while nothing records; its PSNR comes with the variant.
            let psnr = &c["fast_decode_psnr"];
            assert!(psnr["preview_y_db"].as_f64().unwrap() > 30.0, "{psnr}");
        }
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("ffmpeg floor") && html.contains("the floor"));
    assert!(!out.join("floor").exists(), "exported clips are removed");
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn compare_gates_regressions_beyond_noise() {
    let out = tmp("compare");
    run_suite(&out, &["--sweep", "all-optimized"]);
    let a = out.join("report.json");
    // Same report against itself: no regression.
    let o = bench()
        .args(["compare"])
        .arg(&a)
        .arg(&a)
        .args(["--fail-on-regression", "5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no change"));
    // A copy whose CPU doubled (every repeat) must fail the gate.
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    for v in r["scenarios"][0]["variants"].as_array_mut().unwrap() {
        let cpu = &mut v["cpu_per_stream_second"];
        for k in ["median", "min", "max"] {
            cpu[k] = serde_json::json!(cpu[k].as_f64().unwrap() * 2.0 + 0.5);
        }
        let vals: Vec<f64> = cpu["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() * 2.0 + 0.5)
            .collect();
        cpu["values"] = serde_json::json!(vals);
    }
    let b = out.join("worse.json");
    std::fs::write(&b, serde_json::to_vec(&r).unwrap()).unwrap();
    let o = bench()
        .args(["compare"])
        .arg(&a)
        .arg(&b)
        .args(["--fail-on-regression", "5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("regression"));
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn recording_scenarios_report_bytes_and_fsyncs_and_leave_no_recordings() {
    let out = tmp("recording");
    let r = run_suite(
        &out,
        &[
            "--scenario",
            "recording-5fps",
            "--scenario",
            "start-stop-cycles",
            "--variant",
            "libav=--encoder libav",
        ],
    );
    for sc in r["scenarios"].as_array().unwrap() {
        for v in sc["variants"].as_array().unwrap() {
            assert_eq!(v["failed_runs"], 0, "{v}");
            assert!(v["bytes_written"].as_u64().unwrap() > 10_000, "{v}");
            assert!(
                v["fsyncs"].as_u64().unwrap() >= 4,
                "final fsync of every CSV: {v}"
            );
            let encode = v["phases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["phase"] == "encode")
                .unwrap();
            assert!(encode["count"].as_f64().unwrap() >= 1.0, "{v}");
        }
    }
    assert!(
        !out.join("recordings").exists(),
        "recordings are removed after each run"
    );
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn unsupported_scenarios_and_bad_flags_are_one_line() {
    let o = bench()
        .args(["run", "--scenario", "network-interruption"])
        .args(["--source", "neon://192.0.2.1", "--eyetrack"])
        .arg(eyetrack())
        .args(["--out"])
        .arg(tmp("unsupported"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("neon-sim") && e.contains("real device"), "{e}");
    let o = bench()
        .args(["run", "--sweep", "sideways"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
}
