//! The logger layout end to end over the real `eyetrack` binary, ffmpeg and ffprobe: two trials
//! by `--record-cycle` on the synthetic source and on the recorded fixture; every file there with
//! its documented header, rows that parse, the Module and trial columns, and `record_time_mono`
//! on the host's CLOCK_MONOTONIC, non-decreasing in each file and inside its trial.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eyetrack, tmp};
use pipeline::record::csv_files::{
    LOGGER_EVENT_HEADER, LOGGER_FRAME_HEADER, LOGGER_GAZE_HEADER, LOGGER_IMU_HEADER,
};
use pipeline::time::MonoNanos;

const FIXTURE: &str = "../fixtures/neon/synthetic-12s.etfx";

fn rows(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r.records().map(|r| r.unwrap()).collect();
    (header, rows)
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

/// `digits.decimals` with exactly `decimals` decimals, as seconds.
fn secs(s: &str, decimals: usize, what: &str) -> f64 {
    let (a, b) = s.split_once('.').unwrap_or_else(|| panic!("{what}: '{s}'"));
    assert!(
        !a.is_empty() && a.chars().all(|c| c.is_ascii_digit()),
        "{what}: '{s}'"
    );
    assert_eq!(b.len(), decimals, "{what}: '{s}' needs {decimals} decimals");
    s.parse().unwrap()
}

fn ffprobe_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}", path.display());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "{}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

struct Expect {
    prefix: String,
    pupils: bool,
    eye_events: bool,
    /// Host CLOCK_MONOTONIC before the run started and after it ended.
    mono: (f64, f64),
}

/// Checks both trials of a logger session folder; returns the manifests.
fn check_session(session: &Path, x: &Expect) -> Vec<serde_json::Value> {
    let dir = session.join("EyeTracker-Neon");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let p = &x.prefix;
    let mut want = Vec::new();
    for t in 1..=2 {
        for ty in ["EVENT", "FRAME", "GAZEDATA", "IMU"] {
            want.push(format!("{p}_{ty}_trial{t:03}.csv"));
        }
        want.push(format!("{p}_MANIFEST_trial{t:03}.json"));
        want.push(format!("{p}_SCENE_trial{t:03}.mp4"));
    }
    want.sort();
    assert_eq!(names, want, "files of {}", dir.display());
    let f = |ty: &str, t: u32, ext: &str| dir.join(format!("{p}_{ty}_trial{t:03}.{ext}"));
    let mut last_stop = 0.0;
    let mut manifests = Vec::new();
    let mut eye_events = 0;
    for trial in 1..=2u32 {
        // The trial's span: its EVENT file opens with recording_start, ends with recording_stop.
        let (h, ev) = rows(&f("EVENT", trial, "csv"));
        assert_eq!(h, LOGGER_EVENT_HEADER);
        let mono_of = |r: &csv::StringRecord, h: &[String]| {
            secs(&r[col(h, "record_time_mono")], 9, "record_time_mono")
        };
        assert_eq!(&ev[0][2], "recording_start");
        assert_eq!(&ev[ev.len() - 1][2], "recording_stop");
        let start = mono_of(&ev[0], &h);
        let stop = mono_of(&ev[ev.len() - 1], &h);
        assert!(
            start > last_stop,
            "trial {trial} starts after the previous one ended"
        );
        assert!(
            x.mono.0 <= start && stop <= x.mono.1,
            "CLOCK_MONOTONIC of this machine"
        );
        last_stop = stop;
        for r in &ev {
            if let (Some(a), Some(b)) = (r.get(3).filter(|s| !s.is_empty()), r.get(4)) {
                if !b.is_empty() {
                    let (a, b) = (secs(a, 6, "start"), secs(b, 6, "end"));
                    let ms: f64 = r[5].parse().unwrap();
                    assert!((ms - (b - a) * 1e3).abs() < 0.01, "{r:?}");
                    eye_events += 1;
                }
            }
        }
        for (ty, header) in [
            ("EVENT", LOGGER_EVENT_HEADER),
            ("FRAME", LOGGER_FRAME_HEADER),
            ("GAZEDATA", LOGGER_GAZE_HEADER),
            ("IMU", LOGGER_IMU_HEADER),
        ] {
            let path = f(ty, trial, "csv");
            let (h, rs) = rows(&path);
            assert_eq!(h, header, "{}", path.display());
            assert!(!rs.is_empty(), "{} has rows", path.display());
            let mut prev = 0.0;
            for r in &rs {
                assert_eq!(r.len(), header.len(), "{r:?}");
                assert_eq!(&r[0], "EyeTracker-Neon");
                assert_eq!(r[1].parse::<u32>().unwrap(), trial);
                secs(&r[col(&h, "record_time_unix")], 6, "record_time_unix");
                let mono = mono_of(r, &h);
                assert!(
                    mono >= prev,
                    "{}: record_time_mono went back: {r:?}",
                    path.display()
                );
                assert!(
                    start <= mono && mono <= stop,
                    "{}: {mono} outside the trial {start}..{stop}",
                    path.display()
                );
                prev = mono;
            }
            match ty {
                "GAZEDATA" => {
                    for r in &rs {
                        secs(&r[2], 6, "gaze_timestamp");
                        let (nx, ny): (f32, f32) = (r[3].parse().unwrap(), r[4].parse().unwrap());
                        assert!(
                            (0.0..=1.0).contains(&nx) && (0.0..=1.0).contains(&ny),
                            "{r:?}"
                        );
                        assert!(r[5].is_empty(), "no confidence from a Neon");
                        let worn = &r[6] == "1";
                        assert!(worn || &r[6] == "0");
                        let pupils = !r[7].is_empty();
                        assert_eq!(pupils, x.pupils && worn, "{r:?}");
                        if pupils {
                            let d: f32 = r[7].parse().unwrap();
                            assert!((1.0..9.0).contains(&d), "{r:?}");
                        }
                    }
                }
                "IMU" => {
                    for r in &rs {
                        secs(&r[2], 6, "timestamp");
                        for i in 3..13 {
                            r[i].parse::<f32>().unwrap();
                        }
                    }
                }
                "FRAME" => {
                    for (i, r) in rs.iter().enumerate() {
                        assert_eq!(r[2].parse::<usize>().unwrap(), i + 1);
                        secs(&r[3], 6, "capture_timestamp");
                    }
                    let video = f("SCENE", trial, "mp4");
                    assert_eq!(
                        ffprobe_frames(&video),
                        rs.len() as u64,
                        "{}",
                        video.display()
                    );
                }
                _ => {}
            }
        }
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f("MANIFEST", trial, "json")).unwrap()).unwrap();
        assert_eq!(m["end"], "stopped");
        assert_eq!(m["trial"], trial);
        assert_eq!(m["layout"], "logger");
        assert_eq!(m["config"]["container"], "mp4");
        manifests.push(m);
    }
    assert_eq!(eye_events > 0, x.eye_events, "eye events with a span");
    manifests
}

fn run(args: &[&str]) -> (f64, f64) {
    let before = MonoNanos::now().as_secs_f64();
    let out = eyetrack().arg("run").args(args).output().unwrap();
    let after = MonoNanos::now().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (before, after)
}

#[test]
fn two_trials_of_the_synthetic_source_in_the_logger_layout() {
    let root = tmp("layout-synth").join("out");
    std::fs::create_dir_all(&root).unwrap();
    let mono = run(&[
        "--layout",
        "logger",
        "--resolution",
        "640x480",
        "--duration",
        "3.5s",
        "--record-cycle",
        "1.2s",
        "-q",
        "--record",
        root.to_str().unwrap(),
    ]);
    // The session folder is named after the run's start.
    let sessions: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sessions.len(), 1);
    let name = sessions[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        name.starts_with("session_20") && name.len() == "session_20261124_212417".len(),
        "{name}"
    );
    let prefix = format!("{}_EYETRACKER-NEON", &name["session_".len()..]);
    let m = check_session(
        &sessions[0],
        &Expect {
            prefix,
            pupils: true,
            eye_events: false,
            mono,
        },
    );
    // The logger's defaults: 10 fps, the 4:3 scene at 1280 wide.
    assert_eq!(m[0]["config"]["fps"], 10);
    assert_eq!(m[0]["config"]["size"], serde_json::json!([1280, 960]));
}

#[test]
fn two_trials_of_the_fixture_with_a_config_file() {
    let dir = tmp("layout-fixture");
    let session = dir.join("sess_p07");
    let _ = std::fs::remove_dir_all(&session);
    let config = dir.join("logger.toml");
    // The file picks the layout and a frame rate the command line then overrides.
    std::fs::write(
        &config,
        format!(
            "layout = \"logger\"\nsource = \"fixture:{FIXTURE}\"\nrecord-fps = 8\nsession-dir = \"{}\"\nquiet = true\n",
            session.display()
        ),
    )
    .unwrap();
    let mono = run(&[
        "--config",
        config.to_str().unwrap(),
        "--record-fps",
        "6",
        "--duration",
        "3.5s",
        "--record-cycle",
        "1.2s",
        "--record-size",
        "640x480",
    ]);
    let m = check_session(
        &session,
        &Expect {
            prefix: "p07_EYETRACKER-NEON".into(),
            pupils: false,
            eye_events: true,
            mono,
        },
    );
    assert_eq!(m[1]["config"]["fps"], 6, "the flag wins over the file");
    assert_eq!(m[1]["config"]["size"], serde_json::json!([640, 480]));
}
