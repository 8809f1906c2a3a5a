//! H.264 clips for the decoder benches and measurements, made with the ffmpeg CLI on first use
//! and cached under the target directory (too large to commit; regenerating is deterministic
//! enough for timing: same filter graph, encoder and settings).
//!
//! The content is FFmpeg's `testsrc2` pattern plus temporal noise: without the noise the
//! pattern is so flat that 5 Mbit/s is mostly spent on nothing, while a camera's sensor noise
//! makes every P-picture carry residual, as the Neon scene stream does.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

/// What to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClipSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: u32,
    pub kbit_per_s: u32,
    /// 0 like the Neon's stream (protocol doc section 8, "Video").
    pub b_frames: u32,
}

/// The Neon scene camera's stream as far as the protocol doc describes it: 1600x1200 at
/// 30 fps, Main profile, about 5 Mbit/s, an IDR every second, no B-frames.
pub const NEON_SCENE: ClipSpec = ClipSpec {
    width: 1600,
    height: 1200,
    fps: 30,
    seconds: 10,
    kbit_per_s: 5000,
    b_frames: 0,
};

impl ClipSpec {
    pub fn frames(&self) -> u32 {
        self.fps * self.seconds
    }

    fn file_name(&self) -> String {
        format!(
            "testsrc2-noise-{}x{}-{}fps-{}s-{}k-bf{}.h264",
            self.width, self.height, self.fps, self.seconds, self.kbit_per_s, self.b_frames
        )
    }

    /// The ffmpeg arguments that encode this clip to `out`.
    pub fn ffmpeg_args(&self, out: &str) -> Vec<String> {
        let rate = format!("{}k", self.kbit_per_s);
        let gop = self.fps.to_string();
        [
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!(
                "testsrc2=size={}x{}:rate={}",
                self.width, self.height, self.fps
            ),
            "-vf",
            "noise=alls=12:allf=t",
            "-t",
            &self.seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "main",
            "-b:v",
            &rate,
            "-maxrate",
            &rate,
            "-bufsize",
            &rate,
            "-bf",
            &self.b_frames.to_string(),
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "h264",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// Where clips are cached: `$CARGO_TARGET_DIR` or the workspace's `target/`.
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("eyetrack-clips")
}

/// The clip's path, encoding it first if it is not cached yet.
pub fn clip(spec: &ClipSpec) -> anyhow::Result<PathBuf> {
    let dir = cache_dir();
    let path = dir.join(spec.file_name());
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // encode under a temporary name and rename, so a concurrent or interrupted run never
    // leaves half a clip behind
    let tmp = dir.join(format!("{}.{}.tmp", spec.file_name(), std::process::id()));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(spec.ffmpeg_args(&tmp.to_string_lossy()))
        .stdin(std::process::Stdio::null());
    let out = pipeline::child::output_within(&mut cmd, pipeline::fixture::encode::FFMPEG_TIMEOUT)
        .context("running ffmpeg (ci/setup installs it)")?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "ffmpeg failed to encode {}: {}",
            spec.file_name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(path)
}
