//! `eyetrack run` against neon-sim over real sockets on 127.0.0.1 (RTSP over UDP and TCP, a
//! dropped connection with a recording across it, packet loss) and the in-process replay of
//! the committed fixture. eyetrack is a real process, the simulator (neon-sim's library) serves
//! from this one; the checks read the run report, the recording's files and ffprobe.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use pipeline::fixture::{FixtureReader, PacketKind};
use pipeline::neon::rtp::RtpPacket;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/neon/synthetic-12s.etfx")
}

fn eyetrack() -> &'static str {
    env!("CARGO_BIN_EXE_eyetrack")
}

/// One scenario at a time: each decodes 1600x1200 video in real time, and on a 2-core machine
/// parallel runs would starve each other into counts the scenario is not about.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eyetrack-neon-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The simulator runs in this test process (neon-sim's library); eyetrack is a real process.
use neon_sim::LoopbackSim as Sim;

fn start_sim(extra: &[&str]) -> Sim {
    Sim::start(&fixture(), extra).expect("neon-sim starts")
}

fn run_eyetrack(args: &[&str]) -> Child {
    Command::new(eyetrack())
        .arg("run")
        .args(args)
        .args(["--quiet", "--preview", "visible"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, report: &Path) -> serde_json::Value {
    let Output { status, stderr, .. } = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "eyetrack failed: {}",
        String::from_utf8_lossy(&stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap()
}

fn counter(r: &serde_json::Value, name: &str) -> u64 {
    r["frames"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in the report"))
}

fn phase_count(r: &serde_json::Value, phase: &str) -> u64 {
    r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == phase)
        .and_then(|p| p["count"].as_u64())
        .unwrap_or(0)
}

#[test]
fn streams_ten_seconds_over_udp_and_tcp() {
    let _one = serial();
    let sim = start_sim(&[]);
    let dir = tmp("stream");
    let source = format!("neon://{}", sim.http);
    // Both transports at once, against one simulator (two clients of one phone).
    let runs: Vec<_> = ["udp", "tcp"]
        .into_iter()
        .map(|t| {
            let report = dir.join(format!("{t}.json"));
            let child = run_eyetrack(&[
                "--source",
                &source,
                "--rtsp-transport",
                t,
                "--duration",
                "10s",
                "--report",
                report.to_str().unwrap(),
            ]);
            (t, child, report)
        })
        .collect();
    for (t, child, report) in runs {
        let r = finish(child, &report);
        let frames = counter(&r, "frames_acquired");
        let gaze = counter(&r, "gaze_samples");
        assert!(frames >= 290, "{t}: {frames} frames in 10 s");
        assert!(gaze >= 1900, "{t}: {gaze} gaze samples in 10 s");
        assert_eq!(counter(&r, "net_decode_errors"), 0, "{t}");
        // Loopback UDP loses packets only when the receiving thread is descheduled long
        // enough for the kernel's socket buffer (rmem_default) to fill: seen as 29 of ~18000
        // on this 2-core box while two builds ran beside the test. TCP loses nothing.
        let lost = counter(&r, "net_rtp_lost");
        let limit = if t == "udp" {
            counter(&r, "net_rtp_packets") / 100
        } else {
            0
        };
        assert!(lost <= limit, "{t}: {lost} RTP packets lost on loopback");
        assert_eq!(counter(&r, "net_reconnects"), 0, "{t}");
        assert!(counter(&r, "imu_samples") > 1000, "{t}");
        assert!(counter(&r, "net_eye_events") > 0, "{t}");
        // End-to-end latency (capture -> display-ready) is measured for displayed frames.
        assert!(phase_count(&r, "end_to_end") >= 250, "{t}");
        assert!(r["source"]["kind"].as_str().unwrap().starts_with("neon"));
        assert_eq!(r["source"]["width"], 1600);
        assert_eq!(r["source"]["height"], 1200);
    }
}

/// The phone's two TCP quirks (official client 1.9.0, PRs #89 and #90), each reproduced by a
/// neon-sim switch: a SETUP reply without `interleaved=` (the client assumes the channels it
/// asked for) and stray `400 Bad Request` replies among the frames (dropped, counted, and the
/// stream goes on without a reconnect). retina alone failed SETUP on the first and ended the
/// session on the second.
#[test]
fn tcp_tolerates_the_phones_setup_reply_and_stray_400s() {
    let _one = serial();
    let dir = tmp("tcp-quirks");
    let cases: [(&str, &[&str]); 2] = [
        ("no-echo", &["--tcp-no-interleaved-echo"]),
        ("stray-400", &["--tcp-stray-400-every", "40"]),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(name, extra)| {
            let sim = start_sim(extra);
            let report = dir.join(format!("{name}.json"));
            let child = run_eyetrack(&[
                "--source",
                &format!("neon://{}", sim.http),
                "--rtsp-transport",
                "tcp",
                "--duration",
                "4s",
                "--report",
                report.to_str().unwrap(),
            ]);
            (name, sim, child, report)
        })
        .collect();
    for (name, _sim, child, report) in runs {
        let r = finish(child, &report);
        assert!(counter(&r, "frames_acquired") > 0, "{name}: no frames");
        assert!(counter(&r, "gaze_samples") > 0, "{name}: no gaze");
        assert_eq!(counter(&r, "net_reconnects"), 0, "{name}");
        let stray = counter(&r, "net_tcp_stray_responses");
        let assumed = counter(&r, "net_tcp_assumed_interleaved");
        if name == "no-echo" {
            assert!(assumed > 0, "{name}: no SETUP reply was fixed up");
            assert_eq!(stray, 0, "{name}");
        } else {
            assert!(stray > 0, "{name}: no stray reply counted");
            assert_eq!(assumed, 0, "{name}");
        }
    }
}

#[test]
fn reconnects_after_the_device_drops_and_the_recording_survives() {
    let _one = serial();
    let sim = start_sim(&["--drop-at", "5s", "--drop-for", "3s"]);
    let dir = tmp("drop");
    let report = dir.join("r.json");
    let rec = dir.join("rec");
    let child = run_eyetrack(&[
        "--source",
        &format!("neon://{}", sim.http),
        "--duration",
        "15s",
        "--record",
        rec.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let r = finish(child, &report);
    assert!(counter(&r, "net_reconnects") >= 1);
    // The gap runs from the last frame before the drop (at most one frame interval before
    // 5 s) to the first after it: 3 s of outage, then the resume, which must come within 1 s
    // of the simulator's return (issue 4): the reconnect (tries every 0.25 s at most), the
    // handshakes, and the wait for the fixture's next IDR (every 0.5 s).
    let gap = counter(&r, "net_max_frame_gap_ns") as f64 / 1e9;
    assert!(
        (3.0..=3.0 + 1.0 + 1.0 / 30.0).contains(&gap),
        "largest frame gap {gap:.3} s: frames did not resume within 1 s of the return"
    );
    assert!(counter(&r, "frames_acquired") >= 300);
    assert_eq!(counter(&r, "net_decode_errors"), 0);

    let recording = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("a recording folder");
    let events = std::fs::read_to_string(recording.join("events.csv")).unwrap();
    let row = |kind: &str| {
        events
            .lines()
            .find(|l| l.split(',').nth(3) == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} row in events.csv:\n{events}"))
            .to_string()
    };
    row("disconnected");
    row("stream_gap");
    // "sessions re-established after X s": within a second of the simulator's return.
    let re = row("reconnected");
    let secs: f64 = re
        .split("after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable reconnected row {re:?}"));
    assert!(secs <= 3.0 + 1.0, "re-established after {secs} s");
    let video = std::fs::read_dir(&recording)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "mkv"))
        .expect("a video segment");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&video)
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    let out = String::from_utf8_lossy(&probe.stdout);
    let fields: Vec<&str> = out.trim().split(',').collect();
    assert_eq!(&fields[..2], ["1600", "1200"], "{out}");
    let n: u64 = fields[2].parse().unwrap();
    assert!(n >= 50, "{n} frames in the recorded video");
}

#[test]
fn loss_is_counted_and_frames_keep_flowing() {
    let _one = serial();
    let sim = start_sim(&["--loss", "2"]);
    let dir = tmp("loss");
    let report = dir.join("r.json");
    let child = run_eyetrack(&[
        "--source",
        &format!("neon://{}", sim.http),
        "--duration",
        "10s",
        "--report",
        report.to_str().unwrap(),
    ]);
    let r = finish(child, &report);
    assert!(counter(&r, "net_rtp_lost") > 0);
    assert!(counter(&r, "net_broken_access_units") > 0);
    // Damage is dropped before the decoder or concealed by it, never an error per frame.
    assert!(counter(&r, "net_decode_errors") <= 3);
    let frames = counter(&r, "frames_acquired");
    // Pictures cut at the loss still decode (253-266 of 300 seen); dropping them gave 33.
    assert!(frames >= 200, "only {frames} frames in 10 s at 2 % loss");
    let gap = counter(&r, "net_max_frame_gap_ns") as f64 / 1e9;
    assert!(gap <= 2.5, "frames stopped for {gap:.2} s");
    assert!(counter(&r, "gaze_samples") >= 1500);
}

#[test]
fn fixture_replay_yields_every_frame_and_gaze_sample() {
    let _one = serial();
    // What the fixture holds, counted here from the packets: one frame per world access unit
    // (the marker ends each) and one gaze sample per gaze packet.
    let mut reader = FixtureReader::open(&fixture()).unwrap();
    let world = reader.header().stream_index("world").unwrap();
    let gaze = reader.header().stream_index("gaze").unwrap();
    let (mut frames, mut samples) = (0u64, 0u64);
    while let Some(p) = reader.next_packet().unwrap() {
        if p.kind != PacketKind::Rtp {
            continue;
        }
        let rtp = RtpPacket::parse(p.data).unwrap();
        if p.stream == world && rtp.marker {
            frames += 1;
        } else if p.stream == gaze {
            samples += 1;
        }
    }
    assert!(frames > 300 && samples > 2000);
    let dir = tmp("replay");
    for decoder in ["libav", "openh264"] {
        let report = dir.join(format!("{decoder}.json"));
        let child = run_eyetrack(&[
            "--source",
            &format!("fixture:{}", fixture().display()),
            "--as-fast-as-possible",
            "--decoder",
            decoder,
            "--report",
            report.to_str().unwrap(),
        ]);
        let r = finish(child, &report);
        assert_eq!(counter(&r, "frames_acquired"), frames, "{decoder}");
        assert_eq!(counter(&r, "frames_displayed"), frames, "{decoder}");
        assert_eq!(counter(&r, "gaze_samples"), samples, "{decoder}");
        assert_eq!(counter(&r, "net_decode_errors"), 0, "{decoder}");
        assert_eq!(counter(&r, "net_broken_access_units"), 0, "{decoder}");
        assert_eq!(r["source"]["kind"], "fixture");
        assert_eq!(r["source"]["fps"], 30.0);
    }
}

#[test]
fn fixture_record_captures_a_device_that_replays_like_it() {
    let _one = serial();
    let sim = start_sim(&[]);
    let dir = tmp("fixture-record");
    let out = dir.join("rec.etfx");
    let o = Command::new(eyetrack())
        .args(["fixture", "record", "--source"])
        .arg(format!("neon://{}", sim.http))
        .args(["--duration", "4s", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sum: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sum["streams"].as_array().unwrap().len(), 4, "{sum}");
    assert_eq!(sum["channel_drops"], 0);
    drop(sim);
    let o = Command::new(eyetrack())
        .args(["fixture", "inspect", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The recording replays through the same client code: frames and gaze of about 3-4 s
    // (video starts at the first keyframe after connecting).
    let report = dir.join("r.json");
    let child = run_eyetrack(&[
        "--source",
        &format!("fixture:{}", out.display()),
        "--as-fast-as-possible",
        "--report",
        report.to_str().unwrap(),
    ]);
    let r = finish(child, &report);
    assert!(counter(&r, "frames_acquired") >= 80, "{}", r["frames"]);
    assert!(counter(&r, "gaze_samples") >= 700, "{}", r["frames"]);
    assert_eq!(counter(&r, "net_decode_errors"), 0);
}
