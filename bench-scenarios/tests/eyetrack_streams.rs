//! The optional streams end to end (issue 7): a fixture synthesized with eye video and audio
//! (`eyetrack fixture synth --eyes --audio`) served by neon-sim over real sockets on 127.0.0.1,
//! recorded by `eyetrack run --eyes on --audio on --status-log`, and the same fixture replayed
//! in-process. ffprobe reads the eye video and the WAV; the README's ffmpeg command muxes the
//! WAV with the scene video.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "common/bins.rs"]
mod bins;

use bins::eyetrack;

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ffprobe -show_entries` of one stream as key=value lines.
fn probe(file: &Path, stream: &str, entries: &str, count: bool) -> String {
    let mut c = Command::new("ffprobe");
    c.args(["-v", "error", "-select_streams", stream]);
    if count {
        c.arg("-count_frames");
    }
    c.args([
        "-show_entries",
        entries,
        "-of",
        "default=noprint_wrappers=1",
    ]);
    ok(c.arg(file).output().unwrap(), "ffprobe")
}

fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
        .trim()
        .to_string()
}

/// The one recording folder under `root`.
fn recording(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// First value of a CSV column.
fn first(csv: &Path, column: &str) -> i64 {
    let mut r = csv::Reader::from_path(csv).unwrap();
    let i = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no {column} in {}", csv.display()));
    r.records().next().unwrap().unwrap()[i].parse().unwrap()
}

fn rows(csv: &Path) -> usize {
    csv::Reader::from_path(csv).unwrap().records().count()
}

/// What every recording with `--eyes on --audio on` must hold; `run_s`: the stream's length.
fn check(rec: &Path, run_s: f64) {
    // The eye video: 384x192, one timing row per picture in the file, at --eyes-fps 30.
    let eyes = rec.join("eyes.mkv");
    let p = probe(&eyes, "v:0", "stream=width,height,nb_read_frames", true);
    assert_eq!(
        (field(&p, "width"), field(&p, "height")),
        ("384".into(), "192".into())
    );
    let frames: usize = field(&p, "nb_read_frames").parse().unwrap();
    assert_eq!(rows(&rec.join("eyes_timing.csv")), frames);
    let expect = run_s * 30.0;
    assert!(
        (frames as f64) > expect * 0.7 && (frames as f64) < expect * 1.2,
        "{frames} eye pictures for {run_s} s at 30 fps"
    );
    // The WAV: 8 kHz, about as long as the run.
    let wav = rec.join("audio.wav");
    let a = probe(&wav, "a:0", "stream=sample_rate,channels,duration", false);
    assert_eq!(field(&a, "sample_rate"), "8000");
    assert_eq!(field(&a, "channels"), "1");
    let dur: f64 = field(&a, "duration").parse().unwrap();
    // Audio flows from the recording's start; the videos wait for their first IDR (up to the
    // 1 s GOP), so the WAV may start up to a second before them.
    assert!(
        dur > run_s - 0.5 && dur < run_s + 1.5,
        "{dur} s of audio for {run_s} s"
    );
    let timing = rec.join("audio_timing.csv");
    assert!(
        rows(&timing) >= (run_s * 7.0) as usize,
        "{} audio rows",
        rows(&timing)
    );
    // The timing rows account for every sample of the file.
    let mut r = csv::Reader::from_path(&timing).unwrap();
    let last = r.records().last().unwrap().unwrap();
    let end: f64 = last[1].parse::<f64>().unwrap() + last[2].parse::<f64>().unwrap();
    assert!(
        (end / 8000.0 - dur).abs() < 0.01,
        "rows end at {end}, file is {dur} s"
    );

    // The README's mux: the WAV starts `offset` seconds after the scene video's first frame.
    let scene = rec.join("scene_000.mkv");
    let offset = (first(&timing, "device_time_ns")
        - first(&rec.join("frame_timing.csv"), "device_time_ns")) as f64
        / 1e9;
    let muxed = rec.join("muxed.mkv");
    ok(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&scene)
            .args(["-itsoffset", &format!("{offset:.3}"), "-i"])
            .arg(&wav)
            .args(["-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac"])
            .arg(&muxed)
            .output()
            .unwrap(),
        "ffmpeg mux",
    );
    let m = ok(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type",
                "-of",
                "csv=p=0",
            ])
            .arg(&muxed)
            .output()
            .unwrap(),
        "ffprobe muxed",
    );
    assert_eq!(m.lines().collect::<Vec<_>>(), ["video", "audio"]);
}

#[test]
fn eyes_and_audio_are_recorded_from_the_simulator_and_from_replay() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("streams.etfx");
    ok(
        Command::new(eyetrack())
            .args([
                "fixture",
                "synth",
                "--duration",
                "4s",
                "--resolution",
                "480x360",
            ])
            .args(["--bitrate-kbps", "1000", "--eyes", "--audio", "-o"])
            .arg(&fixture)
            .output()
            .unwrap(),
        "fixture synth",
    );

    // Live, against neon-sim: eye and audio sessions over UDP, status polled every second.
    let sim = neon_sim::LoopbackSim::start(&fixture, &[]).expect("neon-sim starts");
    let root = dir.path().join("live");
    let out = Command::new(eyetrack())
        .args(["run", "--source", &format!("neon://{}", sim.http)])
        .args([
            "--eyes",
            "on",
            "--audio",
            "on",
            "--duration",
            "3s",
            "--quiet",
        ])
        .args(["--status-log", "1s", "--record"])
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    ok(out, "eyetrack run (neon-sim)");
    // `fixture record --eyes --audio` takes both from the device through the same client.
    let recorded = dir.path().join("recorded.etfx");
    ok(
        Command::new(eyetrack())
            .args([
                "fixture",
                "record",
                "--source",
                &format!("neon://{}", sim.http),
            ])
            .args(["--duration", "1500ms", "--eyes", "--audio", "-o"])
            .arg(&recorded)
            .output()
            .unwrap(),
        "fixture record",
    );
    drop(sim);
    let inspect = ok(
        Command::new(eyetrack())
            .args(["fixture", "inspect", "--json"])
            .arg(&recorded)
            .output()
            .unwrap(),
        "fixture inspect",
    );
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let stream = |name: &str| {
        inspect["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} stream in {inspect}"))
            .clone()
    };
    let (eyes, audio) = (stream("eyes"), stream("audio"));
    assert!(eyes["rtp_packets"].as_u64().unwrap() > 100, "{eyes}");
    assert_eq!(audio["media"], "audio MPEG4-GENERIC/8000");
    assert!(audio["rtp_packets"].as_u64().unwrap() >= 8, "{audio}");
    let rec = recording(&root);
    check(&rec, 3.0);
    let status = std::fs::read_to_string(rec.join("status.csv")).unwrap();
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines.len() >= 3, "{status}");
    assert!(lines[0].starts_with("unix_ns,mono_ns,connected,battery_level"));
    assert!(lines[1].contains(",1,87,OK,"), "{status}");
    assert!(
        lines[1].contains("world gaze imu eye_events eyes"),
        "{status}"
    );

    // Replay in-process, as fast as possible: the same files from the same fixture.
    let root = dir.path().join("replay");
    let out = Command::new(eyetrack())
        .args(["run", "--source"])
        .arg(format!("fixture:{}", fixture.display()))
        .args([
            "--eyes",
            "on",
            "--audio",
            "on",
            "--duration",
            "3s",
            "--quiet",
        ])
        .args(["--as-fast-as-possible", "--record"])
        .arg(&root)
        .output()
        .unwrap();
    ok(out, "eyetrack run (fixture)");
    check(&recording(&root), 3.0);
}
