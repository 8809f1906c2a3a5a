//! Recording end to end over the real `eyetrack` binary, the real ffmpeg and real files:
//! frame counts checked with ffprobe, crash safety under SIGKILL, a dying encoder, a full disk,
//! bad folders and a missing ffmpeg.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eyetrack, tmp};

/// Frames ffprobe decodes in a video file (0 if it cannot read it at all).
fn ffprobe_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (ci/setup installs ffmpeg)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or(0)
}

fn ffprobe_size(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every row of a CSV file, parsed strictly (a partial last row fails the test).
fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let width = r.headers().unwrap().len();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(rec.len(), width, "{}: short row {rec:?}", path.display());
            rec
        })
        .collect()
}

/// The one recording folder under `root`.
fn only_recording(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn events(dir: &Path) -> Vec<(String, String)> {
    csv_rows(&dir.join("events.csv"))
        .iter()
        .map(|r| (r[3].to_owned(), r[4].to_owned()))
        .collect()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("session.json")).unwrap()).unwrap()
}

/// Processes whose command line mentions `needle` (the ffmpeg child writing a folder).
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn twelve_seconds_at_5_fps_is_60_frames_with_matching_timing_rows() {
    let root = tmp("rec12").join("out");
    let out = eyetrack()
        .args(["run", "--source", "synthetic", "--duration", "12s"])
        .args(["--as-fast-as-possible", "--record"])
        .arg(&root)
        .args(["--record-fps", "5", "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = only_recording(&root);
    let video = dir.join("scene_000.mkv");
    let frames = ffprobe_frames(&video);
    assert!((59..=61).contains(&frames), "{frames} frames");
    assert_eq!(ffprobe_size(&video), "1600,1200");
    let timing = csv_rows(&dir.join("frame_timing.csv"));
    assert_eq!(timing.len() as u64, frames);
    // Output indices run 0..n, camera frames every 6th of 30 fps, none repeated.
    for (i, row) in timing.iter().enumerate() {
        assert_eq!(row[0].parse::<usize>().unwrap(), i);
        assert_eq!(&row[6], "0", "no repeats when the camera is faster");
        // The first frame can come before the first gaze sample.
        assert!(
            i == 0 || !row[7].is_empty(),
            "gaze drawn on every frame: {row:?}"
        );
    }
    let gaze = csv_rows(&dir.join("gaze.csv"));
    assert!(gaze.len() >= 2300, "200 Hz gaze for 12 s: {}", gaze.len());
    assert!(csv_rows(&dir.join("imu.csv")).len() >= 1200);
    let ev = events(&dir);
    assert_eq!(ev.first().unwrap().0, "recording_start");
    assert_eq!(ev.last().unwrap().0, "recording_stop");
    let m = manifest(&dir);
    assert_eq!(m["end"], "stopped");
    assert_eq!(m["counts"]["frames"].as_u64().unwrap(), frames);
    assert_eq!(m["config"]["encoder"], "libav", "the default encoder");
    assert_eq!(m["segments"][0]["end"], "finished");
    assert!(
        m["config"]["run"]["platform"]["usable_cores"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn camera_mode_in_process_encoder_and_bgr_path_record_valid_video() {
    let root = tmp("modes");
    for (name, extra) in [
        (
            "camera-libav",
            &["--frame-selection", "camera", "--encoder", "libav"][..],
        ),
        (
            "bgr-scaled",
            &["--preset", "baseline", "--record-size", "800x600"][..],
        ),
    ] {
        let dir = root.join(name);
        let out = eyetrack()
            .args(["run", "--duration", "3s", "--as-fast-as-possible"])
            .args(["--record-fps", "10", "-q", "--record"])
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rec = only_recording(&dir);
        let video = rec.join("scene_000.mkv");
        let frames = ffprobe_frames(&video);
        assert_eq!(frames, 30, "{name}: 3 s of 30 fps thinned to 10 fps");
        assert_eq!(
            csv_rows(&rec.join("frame_timing.csv")).len() as u64,
            frames,
            "{name}"
        );
        if name == "bgr-scaled" {
            assert_eq!(ffprobe_size(&video), "800,600");
        }
    }
}

/// Done-when 2: SIGKILL 8 s into a recording with `--fsync-every 30`; every frame written
/// before the last fsync still decodes. With the ffmpeg backend the child (in its own process
/// group) sees its input end and finishes the file; the in-process backend has no such second
/// chance, so it shows what the fsync points alone guarantee.
#[test]
fn sigkill_mid_recording_loses_nothing_before_the_last_fsync() {
    let root = tmp("sigkill");
    let runs: Vec<(&str, PathBuf, Child)> = ["ffmpeg", "libav"]
        .into_iter()
        .map(|enc| {
            let dir = root.join(enc);
            let child = eyetrack()
                .args(["run", "--duration", "60s", "--record-fps", "5"])
                .args(["--fsync-every", "30", "--encoder", enc, "-q", "--record"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (enc, dir, child)
        })
        .collect();
    // "8 s into a recording": from the moment both recordings exist.
    for (_, dir, _) in &runs {
        assert!(wait_until(Duration::from_secs(20), || dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)));
    }
    // "8 s into a recording" as an event, not a sleep: wait for each run's fsync of at least
    // 30 frames (fsync every 30 frames, 5 fps), however slowly a loaded machine gets there.
    for (enc, dir, _) in &runs {
        assert!(
            wait_until(Duration::from_secs(120), || {
                let Ok(mut d) = dir.read_dir() else {
                    return false;
                };
                let Some(Ok(rec)) = d.next() else {
                    return false;
                };
                fsynced_frames(&rec.path()).is_some_and(|n| n >= 24)
            }),
            "{enc}: no fsync of 24 frames within 120 s"
        );
    }
    // Then 2 s more (about 10 frames at 5 fps; the next sync is 6 s away), so the kill leaves
    // frames past the sync point for the ffmpeg child to finish on its own: killed right at
    // the sync there is nothing past it and the check below has nothing to show.
    std::thread::sleep(Duration::from_secs(2));
    for (enc, dir, mut child) in runs {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = child.wait();
        let rec = only_recording(&dir);
        let video = rec.join("scene_000.mkv");
        // An ffmpeg child finishing the file on its own: wait for it to let go.
        assert!(
            wait_until(Duration::from_secs(20), || pids_mentioning(
                &rec.to_string_lossy()
            )
            .is_empty()),
            "{enc}: the encoder outlived the test"
        );
        let fsynced = fsynced_frames(&rec).unwrap_or_else(|| panic!("{enc}: no fsync event"));
        // libx264 holds a few frames (frame threads), so the in-process file has a few
        // fewer than were offered at the sync point.
        assert!(fsynced >= 24, "{enc}: {fsynced}");
        let frames = ffprobe_frames(&video);
        assert!(
            frames >= fsynced,
            "{enc}: {frames} frames decode, {fsynced} were fsynced"
        );
        // Timing rows up to the sync point are on disk and parse.
        assert!(csv_rows(&rec.join("frame_timing.csv")).len() as u64 >= 30);
        assert_eq!(
            manifest(&rec)["end"],
            "recording",
            "{enc}: killed, never stopped"
        );
        if enc == "ffmpeg" {
            assert!(
                frames > fsynced,
                "ffmpeg finished the file: {frames} frames"
            );
        }
    }
}

/// The most frames an `fsync` event of the recording says are on disk. Read as text, so a
/// file caught mid-write while polling is no panic (its last line just does not count).
fn fsynced_frames(rec: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(rec.join("events.csv")).ok()?;
    text.lines()
        .filter(|l| l.contains(",fsync,"))
        .filter_map(|l| l.split("holds ").nth(1)?.split(' ').next()?.parse().ok())
        .max()
}

#[test]
fn a_killed_ffmpeg_is_restarted_into_a_new_segment_with_the_gap_logged() {
    let root = tmp("ffmpeg-dies");
    let mut child = eyetrack()
        .args([
            "run",
            "--duration",
            "8s",
            "--record-fps",
            "10",
            "--resolution",
            "640x480",
            "--encoder",
            "ffmpeg",
        ])
        .args(["--record"])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || root
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)));
    let rec = only_recording(&root);
    let seg0 = rec.join("scene_000.mkv");
    let pids = {
        let mut pids = Vec::new();
        assert!(wait_until(Duration::from_secs(10), || {
            pids = pids_mentioning(&seg0.to_string_lossy());
            !pids.is_empty()
        }));
        pids
    };
    // Kill once the first segment has been fed 30 frames (3 s at 10 fps), not after a sleep.
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read_to_string(
            rec.join("frame_timing.csv")
        )
        .is_ok_and(|t| t.lines().count() > 30)),
        "no 30 timed frames within 60 s"
    );
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let ev = events(&rec);
    let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
    assert!(kinds.contains(&"encoder_died"), "{ev:?}");
    let restart = ev
        .iter()
        .find(|(k, _)| k == "encoder_restart")
        .expect("restart");
    assert!(restart.1.contains("scene_001.mkv"), "{restart:?}");
    let m = manifest(&rec);
    assert_eq!(m["end"], "stopped");
    assert_eq!(m["counts"]["encoder_restarts"], 1);
    // The killed segment holds what it had (a SIGKILLed ffmpeg never finalizes) and the new
    // one the rest; together about 8 s at 10 fps minus what the restart cost.
    let (a, b) = (
        ffprobe_frames(&seg0),
        ffprobe_frames(&rec.join("scene_001.mkv")),
    );
    assert!(a >= 10 && b >= 20, "{a} + {b}");
    let rows = csv_rows(&rec.join("frame_timing.csv")).len() as u64;
    assert!(
        a + b <= rows && rows <= a + b + 15,
        "{a} + {b} vs {rows} rows"
    );
}

/// A full disk mid-recording: the recording stops with one clear line, what was written stays
/// readable, and streaming goes on to the end of the run. Runs in a private mount namespace
/// on a 4 MB tmpfs (needs root, as CI has).
#[test]
fn a_full_disk_stops_the_recording_but_not_the_stream() {
    // The owner of /proc/self is this process's effective user.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if !root {
        eprintln!("skipped: mounting the small tmpfs this test fills needs root (CI runs as root)");
        return;
    }
    let out_dir = tmp("diskfull");
    let mnt = out_dir.join("mnt");
    let copy = out_dir.join("copy");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&copy).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=4m tmpfs '{mnt}' || exit 97; \
         '{bin}' run -q --duration 8s --record-fps 10 --report '{mnt}/../report.json' \
           --record '{mnt}/rec' 2>'{mnt}/../stderr.txt'; rc=$?; \
         cp -a '{mnt}/.' '{copy}/'; exit $rc",
        mnt = mnt.display(),
        copy = copy.display(),
        bin = env!("CARGO_BIN_EXE_eyetrack"),
    );
    let status = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .status()
        .expect("unshare (util-linux) runs");
    if status.code() == Some(97) {
        eprintln!("skipped: root, but no tmpfs could be mounted here (no CAP_SYS_ADMIN?)");
        return;
    }
    let stderr = std::fs::read_to_string(out_dir.join("stderr.txt")).unwrap();
    assert!(status.success(), "the stream must go on: {stderr}");
    assert!(
        stderr.contains("recording stopped") && stderr.contains("disk full")
            || stderr.contains("No space left"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["frames"]["frames_acquired"], 240,
        "streaming continued to the end"
    );
    assert!(report["record_error"].is_string());
    let rec = only_recording(&copy.join("rec"));
    let frames = ffprobe_frames(&rec.join("scene_000.mkv"));
    assert!(
        frames >= 5,
        "what was written before the disk filled decodes: {frames}"
    );
    for f in ["frame_timing.csv", "gaze.csv", "imu.csv", "events.csv"] {
        csv_rows(&rec.join(f));
    }
    let m = manifest(&rec);
    let end = m["end"].as_str().unwrap();
    assert!(end.starts_with("error:"), "{end}");
}

#[test]
fn bad_folders_and_a_missing_ffmpeg_fail_before_streaming_in_one_line() {
    let dir = tmp("badfolder");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    for (target, expect) in [
        (dir.join("no/such/parent"), "does not exist"),
        (file.join("sub"), "does not exist"),
        (file.clone(), "cannot create"),
    ] {
        let t0 = Instant::now();
        let out = eyetrack()
            .args(["run", "--duration", "30s", "--record"])
            .arg(&target)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(expect), "{target:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "failed before streaming"
        );
    }
    let out = eyetrack()
        .env("PATH", "/nonexistent")
        .args([
            "run",
            "--duration",
            "30s",
            "--encoder",
            "ffmpeg",
            "--record",
        ])
        .arg(dir.join("rec"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("apt install ffmpeg"), "{err}");
    // Recording flags without --record are a usage error.
    let out = eyetrack()
        .args(["run", "--record-fps", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = eyetrack()
        .args(["run", "--record", "x", "--record-fps", "31"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
