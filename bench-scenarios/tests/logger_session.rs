//! Issue 7's done-when test: a fixture with eye video and audio served by neon-sim on
//! 127.0.0.1, recorded by `eyetrack run --layout logger --eyes on --audio on --record-cycle` as
//! two trials with `--status-log`; every file of both trials with its documented header, rows that parse, ffprobe
//! on both videos and the WAV, and record times inside each trial.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

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

/// `ffprobe` of one stream (and the container's format name) as key=value lines.
fn probe(file: &Path, stream: &str, entries: &str) -> BTreeMap<String, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-count_frames"])
        .args([
            "-show_entries",
            entries,
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(file)
        .output()
        .unwrap();
    ok(out, &format!("ffprobe {}", file.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The documented header of each CSV of a logger trial (README, "Output layouts").
const CSVS: &[(&str, &[&str])] = &[
    (
        "FRAME",
        &[
            "Module",
            "trial",
            "frame_index",
            "capture_timestamp",
            "camera_index",
            "repeat",
            "record_time_unix",
            "record_time_mono",
        ],
    ),
    (
        "GAZEDATA",
        &[
            "Module",
            "trial",
            "gaze_timestamp",
            "norm_pos_x",
            "norm_pos_y",
            "confidence",
            "worn",
            "pupil_left_diam",
            "pupil_right_diam",
            "record_time_unix",
            "record_time_mono",
        ],
    ),
    (
        "IMU",
        &[
            "Module",
            "trial",
            "timestamp",
            "accel_x",
            "accel_y",
            "accel_z",
            "gyro_x",
            "gyro_y",
            "gyro_z",
            "quat_w",
            "quat_x",
            "quat_y",
            "quat_z",
            "record_time_unix",
            "record_time_mono",
        ],
    ),
    (
        "EVENT",
        &[
            "Module",
            "trial",
            "event_type",
            "start_timestamp",
            "end_timestamp",
            "duration_ms",
            "detail",
            "record_time_unix",
            "record_time_mono",
        ],
    ),
    (
        "EYES_TIMING",
        &[
            "Module",
            "trial",
            "frame_index",
            "capture_timestamp",
            "camera_index",
            "repeat",
            "record_time_unix",
            "record_time_mono",
        ],
    ),
    (
        "AUDIO_TIMING",
        &[
            "Module",
            "trial",
            "block_index",
            "first_sample",
            "samples",
            "timestamp",
            "silence_before",
            "record_time_unix",
            "record_time_mono",
        ],
    ),
    (
        "DEVICESTATUS",
        &[
            "Module",
            "trial",
            "connected",
            "battery_level",
            "battery_state",
            "memory_bytes",
            "memory_state",
            "sensors",
            "error",
            "record_time_unix",
            "record_time_mono",
        ],
    ),
];

/// Seconds written with exactly `decimals` digits after the point, as nanoseconds.
fn secs(text: &str, decimals: usize, what: &str) -> i128 {
    let (int, frac) = text
        .split_once('.')
        .unwrap_or_else(|| panic!("{what}: {text:?} has no decimals"));
    assert_eq!(frac.len(), decimals, "{what}: {text:?}");
    assert!(frac.bytes().all(|b| b.is_ascii_digit()), "{what}: {text:?}");
    let int: i128 = int.parse().unwrap_or_else(|_| panic!("{what}: {text:?}"));
    let frac: i128 = frac.parse().unwrap();
    let scale = 10i128.pow(9 - decimals as u32);
    int * 1_000_000_000 + int.signum().max(1) * frac * scale
}

/// One CSV of a trial: header checked, rows checked; returns (rows, record_time_mono of each).
fn check_csv(path: &Path, header: &[&str], trial: u32) -> (Vec<csv::StringRecord>, Vec<i128>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(r.headers().unwrap(), header, "{}", path.display());
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    // Device timestamps, 6 decimals when present.
    let device: Vec<usize> = [
        "gaze_timestamp",
        "timestamp",
        "capture_timestamp",
        "start_timestamp",
        "end_timestamp",
    ]
    .iter()
    .filter_map(|n| header.iter().position(|h| h == n))
    .collect();
    let mut rows = Vec::new();
    let mut monos = Vec::new();
    for rec in r.records() {
        let rec = rec.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let what = format!("{} row {}", path.display(), rows.len() + 1);
        assert_eq!(rec.len(), header.len(), "{what}");
        assert_eq!(&rec[0], "EyeTracker-Neon", "{what}");
        assert_eq!(rec[1].parse::<u32>().unwrap(), trial, "{what}");
        for &i in &device {
            if !rec[i].is_empty() {
                secs(&rec[i], 6, &what);
            }
        }
        secs(&rec[col("record_time_unix")], 6, &what);
        let mono = secs(&rec[col("record_time_mono")], 9, &what);
        if let Some(prev) = monos.last() {
            assert!(mono >= *prev, "{what}: record_time_mono goes back");
        }
        monos.push(mono);
        rows.push(rec);
    }
    (rows, monos)
}

#[test]
fn logger_layout_records_two_trials_with_eyes_and_audio_from_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("streams.etfx");
    ok(
        Command::new(eyetrack())
            .args(["fixture", "synth", "--duration", "4s"])
            .args(["--resolution", "320x240", "--bitrate-kbps", "500"])
            .args(["--eyes", "--audio", "-o"])
            .arg(&fixture)
            .output()
            .unwrap(),
        "fixture synth",
    );
    let sim = neon_sim::LoopbackSim::start(&fixture, &[]).expect("neon-sim starts");
    let session = dir.path().join("session");
    // Record 2 s, pause 2 s, record 2 s, pause: two trials.
    ok(
        Command::new(eyetrack())
            .args(["run", "--source", &format!("neon://{}", sim.http)])
            .args(["--layout", "logger", "--eyes", "on", "--audio", "on"])
            .args([
                "--record-cycle",
                "2s",
                "--duration",
                "7s",
                "--status-log",
                "1s",
            ])
            .args(["--record-size", "320x240", "--prefix", "T", "--quiet"])
            .arg("--session-dir")
            .arg(&session)
            .output()
            .unwrap(),
        "eyetrack run --layout logger",
    );
    drop(sim);
    let module = session.join("EyeTracker-Neon");
    let file =
        |kind: &str, trial: u32, ext: &str| module.join(format!("T_{kind}_trial{trial:03}.{ext}"));
    assert!(
        !file("MANIFEST", 3, "json").exists(),
        "two trials, not three"
    );
    for trial in 1..=2 {
        for (kind, ext) in [
            ("SCENE", "mp4"),
            ("EYES", "mp4"),
            ("AUDIO", "wav"),
            ("MANIFEST", "json"),
        ] {
            assert!(file(kind, trial, ext).is_file(), "{kind} of trial {trial}");
        }
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file("MANIFEST", trial, "json")).unwrap())
                .unwrap();
        assert_eq!(m["trial"], trial);
        assert_eq!(m["end"], "stopped", "{m}");

        let mut all: Vec<(&str, Vec<csv::StringRecord>, Vec<i128>)> = Vec::new();
        for (kind, header) in CSVS {
            let (rows, monos) = check_csv(&file(kind, trial, "csv"), header, trial);
            all.push((kind, rows, monos));
        }
        let rows = |kind: &str| &all.iter().find(|(k, ..)| *k == kind).unwrap().1;
        for kind in [
            "FRAME",
            "GAZEDATA",
            "IMU",
            "EYES_TIMING",
            "AUDIO_TIMING",
            "DEVICESTATUS",
        ] {
            assert!(!rows(kind).is_empty(), "{kind} of trial {trial} has rows");
        }
        // Every row of the trial, in every file, lies between its start and stop events.
        let events = rows("EVENT");
        let event_mono = |kind: &str| {
            let hits: Vec<i128> = events
                .iter()
                .filter(|r| &r[2] == kind)
                .map(|r| secs(&r[8], 9, kind))
                .collect();
            assert_eq!(hits.len(), 1, "one {kind} in trial {trial}");
            hits[0]
        };
        let (start, stop) = (event_mono("recording_start"), event_mono("recording_stop"));
        assert!(
            rows("DEVICESTATUS").iter().all(|r| &r[2] == "1"),
            "neon-sim answers every status poll"
        );
        for (kind, _, monos) in &all {
            for m in monos {
                assert!(
                    (start..=stop).contains(m),
                    "{kind} of trial {trial}: {m} outside {start}..={stop}"
                );
            }
        }

        // The videos: MP4 files (an `ftyp` box first) with one picture per timing row.
        for (kind, timing, size) in [
            ("SCENE", "FRAME", ("320", "240")),
            ("EYES", "EYES_TIMING", ("384", "192")),
        ] {
            let path = file(kind, trial, "mp4");
            let head = std::fs::read(&path).unwrap();
            assert_eq!(&head[4..8], b"ftyp", "{kind} of trial {trial} is MP4");
            let p = probe(
                &path,
                "v:0",
                "stream=codec_name,width,height,nb_read_frames:format=format_name",
            );
            assert!(p["format_name"].contains("mp4"), "{p:?}");
            assert_eq!(p["codec_name"], "h264");
            assert_eq!((p["width"].as_str(), p["height"].as_str()), size);
            let frames: usize = p["nb_read_frames"].parse().unwrap();
            assert_eq!(frames, rows(timing).len(), "{kind} of trial {trial}");
        }
        let a = probe(
            &file("AUDIO", trial, "wav"),
            "a:0",
            "stream=codec_name,sample_rate,duration_ts:format=format_name",
        );
        assert_eq!(a["format_name"], "wav");
        assert_eq!(a["codec_name"], "pcm_s16le");
        assert_eq!(a["sample_rate"], "8000");
        // The AUDIO_TIMING rows account for every sample of the WAV.
        let last = rows("AUDIO_TIMING").last().unwrap();
        let end: u64 = last[3].parse::<u64>().unwrap() + last[4].parse::<u64>().unwrap();
        assert_eq!(end.to_string(), a["duration_ts"], "trial {trial}");
    }
}
