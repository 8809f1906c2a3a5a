//! The floor of a fixture cell: the ffmpeg program alone doing the same work as the pipeline
//! (decode only while streaming; decode plus the selected frames encoded while recording).
//!
//! This is the reference a device user reads a variant against: how far above "the decoder
//! and encoder and nothing else" the pipeline is. The work is the same stream (the fixture's
//! own access units, exported), the same length (the run's, at most the fixture's), one decoding thread
//! and one x264 thread, libx264 ultrafast at crf 23 (the recorder's codec settings).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::runner::Scenario;

/// The fixture's scene stream as a raw H.264 file.
#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    pub path: PathBuf,
    pub fps: f64,
    /// Stream length: a fixture replay ends at the fixture's end, so a run covers at most this.
    pub seconds: f64,
}

/// Exports the access units of `fixture` into `dir`.
pub fn export_clip(fixture: &Path, dir: &Path) -> Result<Clip, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let stem = fixture
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clip".into());
    let path = dir.join(format!("{stem}.h264"));
    let s = pipeline::fixture::export::export_h264(fixture, "world", &path)
        .map_err(|e| format!("exporting {}: {e}", fixture.display()))?;
    // A stream too short to time (one picture) falls back to the Neon's 30 fps.
    let fps = if s.fps.is_finite() && s.fps > 0.0 {
        s.fps
    } else {
        30.0
    };
    Ok(Clip {
        path,
        fps,
        seconds: s.access_units as f64 / fps,
    })
}

/// PSNR of `--fast-decode` on this fixture (preview 640x360, area filter, libav), as JSON;
/// an error becomes `{"error": ...}` so the suite still reports everything else.
pub fn fast_decode_psnr(fixture: &Path) -> serde_json::Value {
    use pipeline::fixture::quality::{fast_decode_psnr, QualityConfig};
    let cfg = QualityConfig {
        fixture: fixture.to_owned(),
        decoder: pipeline::decode::DecoderKind::Libav,
        preview_box: (640, 360),
        resize: pipeline::preview::ResizeFilter::Area,
    };
    match fast_decode_psnr(&cfg) {
        Ok(s) => serde_json::to_value(s).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

/// One cell's floor: the ffmpeg command and the stream length it covers.
#[derive(Clone, Debug)]
pub struct FloorSpec {
    clip: Result<Clip, String>,
    /// In words, for the report.
    pub work: String,
    pub args: Vec<String>,
    stream_seconds: f64,
    /// The recording floor's video (removed after each run).
    output: Option<PathBuf>,
}

impl FloorSpec {
    pub fn new(
        clip: Result<Clip, String>,
        scenario: Scenario,
        duration_s: f64,
        dir: &Path,
    ) -> Self {
        let record_fps = match scenario {
            Scenario::Recording5fps | Scenario::StartStopCycles => Some(5),
            Scenario::Recording30fps => Some(30),
            Scenario::Streaming | Scenario::NetworkInterruption => None,
        };
        let fps = clip.as_ref().map_or(30.0, |c| c.fps);
        // The same stream the run gets: `--duration`, or the whole fixture if that is shorter
        // (a replay does not loop).
        let duration_s = clip
            .as_ref()
            .map_or(duration_s, |c| duration_s.min(c.seconds));
        let input = clip
            .as_ref()
            .map_or_else(|_| "-".to_owned(), |c| c.path.display().to_string());
        let mut args: Vec<String> = [
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-threads",
            "1",
            "-f",
            "h264",
            "-framerate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend([format!("{fps}"), "-i".into(), input]);
        args.extend(["-t".into(), format!("{duration_s}")]);
        let (work, output) = match record_fps {
            None => {
                args.extend(["-f", "null", "-"].map(String::from));
                (
                    "decode only (ffmpeg -threads 1 ... -f null -)".to_owned(),
                    None,
                )
            }
            Some(r) => {
                let out = dir.join(format!("floor-{}.mkv", scenario.name()));
                args.extend([
                    "-vf".to_owned(),
                    format!("fps={r}"),
                    "-c:v".into(),
                    "libx264".into(),
                    "-preset".into(),
                    "ultrafast".into(),
                    "-crf".into(),
                    "23".into(),
                    "-threads".into(),
                    "1".into(),
                    "-f".into(),
                    "matroska".into(),
                    "-y".into(),
                    out.display().to_string(),
                ]);
                (
                    format!(
                        "decode + {r} fps encoded (libx264 ultrafast crf 23, one thread each, \
                         Matroska on disk)"
                    ),
                    Some(out),
                )
            }
        };
        FloorSpec {
            clip,
            work,
            args,
            stream_seconds: duration_s,
            output,
        }
    }

    /// Runs ffmpeg once; CPU-seconds (user + system) of its process per stream-second.
    pub fn run(&self) -> Result<f64, String> {
        self.clip.as_ref().map_err(Clone::clone)?;
        if self.stream_seconds <= 0.0 {
            return Err("no stream to time".into());
        }
        // The runner has no other child running now, so what the children clock gains is this
        // ffmpeg's alone (its threads included, once it is waited for).
        let before = children_cpu();
        let mut cmd = Command::new("ffmpeg");
        cmd.args(&self.args).stdin(Stdio::null());
        let limit = Duration::from_secs_f64(self.stream_seconds.min(86_400.0) * 4.0 + 60.0);
        let out = pipeline::child::output_within(&mut cmd, limit).map_err(|e| e.to_string())?;
        let cpu = children_cpu() - before;
        if let Some(o) = &self.output {
            let _ = std::fs::remove_file(o);
        }
        if !out.status.success() {
            return Err(format!(
                "ffmpeg {}: {}",
                out.status,
                pipeline::cli::one_line(String::from_utf8_lossy(&out.stderr).trim())
            ));
        }
        Ok(cpu / self.stream_seconds)
    }
}

fn children_cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 * 1e-6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_commands_do_the_pipelines_work() {
        let clip = Clip {
            path: "/tmp/c.h264".into(),
            fps: 30.0,
            seconds: 12.0,
        };
        let dir = Path::new("/tmp/floor");
        let s = FloorSpec::new(Ok(clip.clone()), Scenario::Streaming, 4.0, dir);
        assert!(s.args.windows(2).any(|w| w == ["-threads", "1"]));
        assert!(s.args.windows(2).any(|w| w == ["-t", "4"]));
        assert!(s.args.ends_with(&["-f".into(), "null".into(), "-".into()]));
        let r = FloorSpec::new(Ok(clip), Scenario::Recording5fps, 4.0, dir);
        assert!(r.args.windows(2).any(|w| w == ["-vf", "fps=5"]));
        assert!(r.args.windows(2).any(|w| w == ["-crf", "23"]));
        assert!(r.work.contains("5 fps"));
        // A replay ends with its fixture: so does the floor.
        let long = FloorSpec::new(Ok(r.clip.clone().unwrap()), Scenario::Streaming, 60.0, dir);
        assert!(long.args.windows(2).any(|w| w == ["-t", "12"]));
        let bad = FloorSpec::new(Err("no clip".into()), Scenario::Streaming, 4.0, dir);
        assert_eq!(bad.run(), Err("no clip".into()));
    }
}
