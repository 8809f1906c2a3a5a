//! The official Python client (`pupil-labs-realtime-api`, simple API) against neon-sim serving
//! the committed fixture with `--clock recorded`: it must decode at least 30 scene frames and
//! receive at least 200 gaze samples whose values are the fixture's and whose times agree
//! within 1 ms with the times the fixture's own SR mapping gives. Needs the virtualenv `ci/setup` makes
//! (`.venv-neon`, or `NEON_PYTHON=/path/to/python`); without it the test fails, naming the fix.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

#[path = "common/sim.rs"]
mod sim;

use pipeline::fixture::{FixtureReader, PacketKind};
use pipeline::neon::gaze::NeonGaze;
use pipeline::neon::rtcp;
use pipeline::neon::rtp::RtpPacket;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("NEON_PYTHON") {
        return PathBuf::from(p);
    }
    let p = workspace().join(".venv-neon/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run ci/setup (it creates the virtualenv with pupil-labs-realtime-api), \
         or set NEON_PYTHON",
        p.display()
    );
    p
}

/// Fixture gaze: f32 (x, y) bits -> Unix ns from the RTP time and the stream's SR mapping.
fn fixture_gaze(path: &std::path::Path) -> HashMap<(u32, u32), i64> {
    let mut r = FixtureReader::open(path).unwrap();
    let gaze = r.header().stream_index("gaze").unwrap();
    let mut map = HashMap::new();
    let mut sr: Option<(i64, u32)> = None;
    while let Some(p) = r.next_packet().unwrap() {
        if p.stream != gaze {
            continue;
        }
        match p.kind {
            PacketKind::Rtcp => {
                let info = rtcp::summarize(p.data).unwrap().sender_report.unwrap();
                sr = Some((info.ntp.to_unix_nanos().0, info.rtp_timestamp));
            }
            PacketKind::Rtp => {
                let (sr_ns, sr_ts) = sr.expect("an SR precedes the first gaze RTP");
                let pkt = RtpPacket::parse(p.data).unwrap();
                let g = NeonGaze::decode(pkt.payload).unwrap();
                let pt = g.binocular.unwrap();
                let dt = pkt.timestamp.wrapping_sub(sr_ts) as i32 as i64;
                map.insert(
                    (pt.x.to_bits(), pt.y.to_bits()),
                    sr_ns + dt * 1_000_000_000 / 90_000,
                );
            }
        }
    }
    map
}

#[test]
fn official_python_client_streams_scene_and_gaze_from_neon_sim() {
    let py = python();
    let fixture = workspace().join("fixtures/neon/synthetic-12s.etfx");
    let sim = sim::start(&fixture, &["--clock", "recorded"]);
    let http = sim.http.clone();
    let period_ns = sim.period_ms * 1_000_000;
    let (host, port) = http.rsplit_once(':').unwrap();
    let script = workspace().join("neon-sim/tests/neon_client.py");
    let out = Command::new(&py)
        .arg(&script)
        .args([host, port, "30", "200", "60"])
        .output();
    drop(sim);
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = &lines[0];
    assert_eq!(status["phone"], "Neon Companion (neon-sim)");

    let expected = fixture_gaze(&fixture);
    let mut gaze = 0;
    for g in lines.iter().filter(|l| l["kind"] == "gaze") {
        let x = g["x"].as_f64().unwrap() as f32;
        let y = g["y"].as_f64().unwrap() as f32;
        let t_ns = (g["t"].as_f64().unwrap() * 1e9).round() as i64;
        let want = *expected
            .get(&(x.to_bits(), y.to_bits()))
            .unwrap_or_else(|| panic!("gaze ({x}, {y}) is not in the fixture"));
        // a loop pass moves times by whole periods
        let passes = ((t_ns - want) as f64 / period_ns as f64).round() as i64;
        let err = (t_ns - want - passes * period_ns).abs();
        assert!(
            err < 1_000_000,
            "gaze ({x}, {y}) at {t_ns}, fixture says {want}"
        );
        gaze += 1;
    }
    let frames: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "frame").collect();
    assert!(gaze >= 200, "{gaze} gaze samples");
    assert!(frames.len() >= 30, "{} frames", frames.len());
    for f in &frames {
        assert_eq!((f["w"].as_u64(), f["h"].as_u64()), (Some(1600), Some(1200)));
        // decoded pictures of the textured scene, not grey
        assert!(f["mean"].as_f64().unwrap() > 20.0);
    }
    for pair in frames.windows(2) {
        let (a, b) = (
            pair[0]["t"].as_f64().unwrap(),
            pair[1]["t"].as_f64().unwrap(),
        );
        assert!(b > a, "frame times increase: {a} {b}");
    }
    // frame times are on the fixture's 30 fps grid from its start (1 ms tolerance)
    let start_s = 1_767_225_600.0;
    for f in &frames {
        let rel = (f["t"].as_f64().unwrap() - start_s) % (period_ns as f64 / 1e9);
        let k = (rel * 30.0).round();
        assert!(
            (rel - k / 30.0).abs() < 1e-3,
            "frame at {rel} s is off the 30 fps grid"
        );
    }
}
