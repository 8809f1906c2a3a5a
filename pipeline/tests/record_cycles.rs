//! The plan's start/stop scenario (4) in one process: 50 recordings started and stopped while
//! the pipeline streams leave no threads, child processes, file descriptors or memory behind,
//! and every one of them is a valid recording.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pipeline::coordinator::{Control, PipelineConfig, RunningPipeline};
use pipeline::record::RecordConfig;
use pipeline::source::synthetic::{SyntheticConfig, SyntheticSource};

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// Live child processes of this process (zombies included: an unreaped child is a leak too).
fn children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|p| p == me))
                .unwrap_or(false)
        })
        .count()
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn ffprobe_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn fifty_start_stop_cycles_leak_nothing_and_every_recording_is_valid() {
    let root = std::env::temp_dir().join(format!("eyetrack-cycles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let source = SyntheticSource::new(SyntheticConfig {
        width: 320,
        height: 240,
        duration: None,
        paced: true,
        ..SyntheticConfig::default()
    })
    .unwrap();
    let mut rc = RecordConfig::new(root.clone());
    rc.fps = 30;
    rc.fsync_every = 2;
    rc.prepare().unwrap();
    let cfg = PipelineConfig {
        record: Some(rc),
        ..PipelineConfig::default()
    };
    let control = Arc::new(Control::default());
    let running = RunningPipeline::start(Box::new(source), cfg, Arc::clone(&control)).unwrap();
    let rec = Arc::clone(running.recorder().unwrap());

    let mut baseline = None;
    let mut dirs = Vec::new();
    for cycle in 0..50 {
        let dir = rec.start().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let summary = rec.stop().unwrap();
        assert_eq!(summary.end, "stopped", "cycle {cycle}");
        assert_eq!(summary.dir, dir);
        assert!(summary.counts.frames >= 1, "cycle {cycle}: {summary:?}");
        dirs.push(summary);
        if cycle == 4 {
            // After a few cycles every lazily created thing exists.
            baseline = Some((
                count_dir("/proc/self/task"),
                count_dir("/proc/self/fd"),
                rss_kb(),
            ));
        }
    }
    let (threads, fds, rss) = baseline.unwrap();
    assert_eq!(children(), 0, "no ffmpeg left running or unreaped");
    assert_eq!(count_dir("/proc/self/task"), threads, "threads");
    assert_eq!(count_dir("/proc/self/fd"), fds, "file descriptors");
    let growth = rss_kb().saturating_sub(rss);
    assert!(growth < 16 * 1024, "RSS grew by {growth} kB over 45 cycles");

    control.request_stop();
    let outcome = running.wait();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.counters.recordings, 50);

    for s in &dirs {
        let frames = ffprobe_frames(&s.dir.join("scene_000.mkv"));
        let manifest = std::fs::read_to_string(s.dir.join("session.json")).unwrap_or_default();
        assert_eq!(frames, s.counts.frames, "{}: {manifest}", s.dir.display());
        let timing = std::fs::read_to_string(s.dir.join("frame_timing.csv")).unwrap();
        assert_eq!(timing.lines().count() as u64, frames + 1);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.dir.join("session.json")).unwrap()).unwrap();
        assert_eq!(m["end"], "stopped");
        assert!(!s.dir.join(".eyetrack-reserve").exists());
    }
    let _ = std::fs::remove_dir_all(&root);
}
