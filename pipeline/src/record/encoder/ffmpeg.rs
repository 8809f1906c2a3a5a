//! The ffmpeg program as the encoder (the plan's VideoEncoder): raw frames on its stdin through
//! ffmpeg-sidecar, libx264 or h264_nvenc out to Matroska (or fragmented MP4 for a `.mp4` path); its stderr drained on a thread.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;

use super::{
    check_shape, file_len, fsync_path, Container, EncodeError, EncoderSpec, SegmentSummary,
    VideoEncoder,
};
use crate::frame::{FrameView, PixelFormat};

/// Last lines of ffmpeg's stderr kept for error messages.
const STDERR_TAIL: usize = 8;
/// Size asked for the pipe that carries the raw frames.
const PIPE_BYTES: i32 = 1 << 20;

/// How long ffmpeg may take to end once its input is closed (drain the encoder, write the
/// cues): well under a second normally; a child still there after this is hung and killed.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child that stopped taking frames (or is dropped on an error path) gets to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct FfmpegEncoder {
    spec: EncoderSpec,
    path: PathBuf,
    child: FfmpegChild,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    frames: u64,
}

/// The encoder and its quality setting. `crf` is x264's constant rate factor; NVENC gets the
/// same number as its constant-quality target (`-rc vbr -cq N -b:v 0`: VBR without a bitrate
/// cap, the quantizer held near N), so `--record-crf` means "this quality" on both and
/// `--encoder auto` does not change what the flag does from machine to machine. The scales are
/// alike (H.264 quantizers, lower is better) but not identical: NVENC at the same number gives
/// a somewhat larger file. `crf` 0 (x264 lossless) is refused for NVENC before this
/// ([`super::EncoderKind::check_quality`]), where `-cq 0` would mean "automatic".
pub(crate) fn codec_args(nvenc: bool, crf: u32) -> Vec<String> {
    let args: Vec<String> = if nvenc {
        [
            "-c:v",
            "h264_nvenc",
            "-preset",
            "p1",
            "-tune",
            "ll",
            "-rc",
            "vbr",
            "-cq",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([crf.to_string(), "-b:v".into(), "0".into()])
        .collect()
    } else {
        ["-c:v", "libx264", "-preset", "ultrafast", "-crf"]
            .iter()
            .map(|s| s.to_string())
            .chain([crf.to_string()])
            .collect()
    };
    args
}

impl FfmpegEncoder {
    pub fn spawn(nvenc: bool, spec: &EncoderSpec, path: &Path) -> Result<Self, EncodeError> {
        // No `ffmpeg -version` first: a missing program is the spawn's NotFound below.
        let mut cmd = FfmpegCommand::new();
        cmd.hide_banner()
            .args(["-nostats", "-loglevel", "error"])
            .format("rawvideo")
            .pix_fmt(match spec.input {
                PixelFormat::Bgr24 => "bgr24",
                _ => "yuv420p",
            })
            .size(spec.width as u32, spec.height as u32)
            .args(["-framerate", &spec.fps.to_string()])
            .input("pipe:0");
        cmd.args(codec_args(nvenc, spec.crf));
        if let (false, Some(n)) = (nvenc, spec.threads) {
            cmd.args(["-threads", &n.to_string()]);
        }
        let container = Container::for_path(path);
        cmd.pix_fmt("yuv420p").format(container.muxer());
        for (k, v) in container.muxer_options() {
            cmd.args([format!("-{k}"), v]);
        }
        cmd.overwrite().output(path);
        // Its own process group: a Ctrl-C at the terminal reaches us, and we end the video
        // cleanly, instead of ffmpeg quitting mid-stream on its own.
        cmd.as_inner_mut().process_group(0);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => EncodeError::Missing,
            _ => EncodeError::Spawn(e),
        })?;
        let stdin = child.take_stdin();
        if let Some(pipe) = &stdin {
            // 1 MiB (Linux's default pipe-max-size) instead of 64 KiB: a 1600x1200 frame is
            // 2.9 MB, which a 64 KiB pipe passes in 45 write/wake-up/read rounds; best effort.
            let _ = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
        }
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let stderr = match child.take_stderr() {
            Some(err) => {
                let tail = Arc::clone(&tail);
                std::thread::Builder::new()
                    .name("ffmpeg-stderr".into())
                    .spawn(move || {
                        // Drained to the end, or ffmpeg could block on a full pipe.
                        for line in BufReader::new(err).lines().map_while(Result::ok) {
                            if let Ok(mut t) = tail.lock() {
                                if t.len() == STDERR_TAIL {
                                    t.pop_front();
                                }
                                t.push_back(line);
                            }
                        }
                    })
                    .ok()
            }
            None => None,
        };
        Ok(FfmpegEncoder {
            spec: spec.clone(),
            path: path.to_owned(),
            child,
            stdin,
            stderr,
            tail,
            frames: 0,
        })
    }

    /// The error for a child that stopped taking frames: a full disk (ffmpeg says so, or the
    /// file system has no room left) cannot be fixed by a restart, anything else can.
    fn died(&mut self) -> EncodeError {
        let status = match crate::child::wait_within(self.child.as_inner_mut(), EXIT_TIMEOUT) {
            Ok(Some(s)) => s.to_string(),
            Ok(None) => format!(
                "still running {} s after its input broke; killed",
                EXIT_TIMEOUT.as_secs()
            ),
            Err(e) => format!("wait failed: {e}"),
        };
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
        let tail = self.tail_text();
        if tail.contains("No space left") || disk_is_full(&self.path) {
            return EncodeError::DiskFull(self.path.clone());
        }
        EncodeError::Died { status, tail }
    }

    fn tail_text(&self) -> String {
        match self.tail.lock() {
            Ok(t) if !t.is_empty() => {
                format!(": {}", t.iter().cloned().collect::<Vec<_>>().join(" | "))
            }
            _ => String::new(),
        }
    }
}

/// Less than one raw frame's worth of room is as good as full for a video file.
fn disk_is_full(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(Path::new("."));
    nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()) < 65_536)
        .unwrap_or(false)
}

impl VideoEncoder for FfmpegEncoder {
    fn encode(&mut self, frame: &FrameView<'_>) -> Result<(), EncodeError> {
        check_shape(&self.spec, frame)?;
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.died());
        };
        let mut write = || -> std::io::Result<()> {
            for i in 0..frame.format.plane_count() {
                let p = frame.plane(i);
                if p.is_contiguous() {
                    stdin.write_all(p.span())?;
                } else {
                    for y in 0..p.height {
                        stdin.write_all(p.row(y))?;
                    }
                }
            }
            Ok(())
        };
        match write() {
            Ok(()) => {
                self.frames += 1;
                Ok(())
            }
            Err(_) => {
                self.stdin = None;
                Err(self.died())
            }
        }
    }

    fn sync(&mut self) -> Result<u64, EncodeError> {
        // What ffmpeg has muxed reaches the disk; frames still inside ffmpeg (pipe, encoder,
        // the open cluster of at most CLUSTER_MS) are covered by the next sync, or by ffmpeg
        // finishing the file when we die before it.
        match fsync_path(&self.path) {
            Ok(()) => Ok(self.frames),
            // ffmpeg opens its output only once its encoder has the first frames: a sync that
            // comes sooner (a 1 MiB pipe takes several small frames before ffmpeg has even
            // started) finds no file yet, so nothing is on disk yet to make durable. Not a
            // fault: restarting the encoder for it lost whole recordings' frames.
            Err(EncodeError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<SegmentSummary, EncodeError> {
        // Closing stdin is ffmpeg's end of input: it drains the encoder and writes the cues.
        self.stdin = None;
        let status = crate::child::wait_within(self.child.as_inner_mut(), FINISH_TIMEOUT).map_err(
            |source| EncodeError::Io {
                path: self.path.clone(),
                source,
            },
        )?;
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
        let Some(status) = status else {
            return Err(EncodeError::Died {
                status: format!(
                    "did not finish the file within {} s of its input ending; killed",
                    FINISH_TIMEOUT.as_secs()
                ),
                tail: self.tail_text(),
            });
        };
        if !status.success() {
            let tail = self.tail_text();
            if tail.contains("No space left") {
                return Err(EncodeError::DiskFull(self.path.clone()));
            }
            return Err(EncodeError::Died {
                status: status.to_string(),
                tail,
            });
        }
        fsync_path(&self.path)?;
        Ok(SegmentSummary {
            file: file_name(&self.path),
            frames: self.frames,
            bytes: file_len(&self.path),
            end: "finished".into(),
        })
    }

    fn bytes_written(&self) -> u64 {
        file_len(&self.path)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FfmpegEncoder {
    fn drop(&mut self) {
        // Dropped without finish (an error path): end the child rather than leak it.
        if self.stdin.take().is_some() {
            let _ = crate::child::wait_within(self.child.as_inner_mut(), EXIT_TIMEOUT);
        }
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--record-crf` reaches NVENC as its constant-quality target (it was silently dropped).
    #[test]
    fn the_quality_flag_reaches_both_encoders() {
        let x264 = codec_args(false, 30).join(" ");
        assert_eq!(x264, "-c:v libx264 -preset ultrafast -crf 30");
        let nvenc = codec_args(true, 30).join(" ");
        assert!(nvenc.starts_with("-c:v h264_nvenc"), "{nvenc}");
        assert!(nvenc.contains("-rc vbr -cq 30 -b:v 0"), "{nvenc}");
    }
}
