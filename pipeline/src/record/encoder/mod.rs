//! Video encoder backends behind one trait (plan 2.4, 4.1): the ffmpeg program as a subprocess
//! (libx264 or NVENC), libavcodec in-process, and the passthrough remuxer of the device's own
//! H.264; every one writes crash-safe Matroska (or fragmented MP4 where the layout asks for it).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::frame::{FrameView, PixelFormat};

pub mod ffmpeg;
pub mod libav;
pub mod passthrough;

/// `--encoder`: which backend turns recorded frames into H.264.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// The ffmpeg program, raw frames on its stdin, libx264 ultrafast (the plan's encoder).
    Ffmpeg,
    /// The ffmpeg program with NVIDIA's h264_nvenc; only where the platform probe found it.
    Nvenc,
    /// libavcodec's libx264 and libavformat's Matroska muxer inside this process (the plan's
    /// PyAV question): no pipe, no second process.
    Libav,
    /// No encoding: the device's own H.264 access units copied into Matroska at the full
    /// camera rate (issue 4). Needs a source that delivers H.264; the overlay video is
    /// recorded too only with `--record-overlay on`, by `--overlay-encoder`.
    Passthrough,
    /// nvenc where the platform has it, else libav (the cheaper of the two x264 backends).
    Auto,
}

impl EncoderKind {
    /// Resolves `auto` against what the machine has and refuses `nvenc` where it is absent.
    pub fn resolve(self, has_nvenc: bool) -> Result<EncoderKind, EncodeError> {
        match self {
            EncoderKind::Auto if has_nvenc => Ok(EncoderKind::Nvenc),
            EncoderKind::Auto => Ok(EncoderKind::Libav),
            EncoderKind::Nvenc if !has_nvenc => Err(EncodeError::Unavailable(
                "nvenc: this machine's ffmpeg has no working h264_nvenc (no NVIDIA GPU or \
                 driver); use --encoder ffmpeg or libav"
                    .into(),
            )),
            k => Ok(k),
        }
    }

    /// Whether this backend can honour `crf` (the `--record-crf` value): NVENC maps it to
    /// its constant-quality target, where 0 would mean "automatic" instead of x264's lossless.
    pub fn check_quality(self, crf: u32) -> Result<(), EncodeError> {
        if self == EncoderKind::Nvenc && crf == 0 {
            return Err(EncodeError::Unavailable(
                "nvenc: --record-crf 0 is x264's lossless mode, which NVENC's constant quality \
                 (-cq, 1-51) does not have; use 1-51, or --encoder ffmpeg or libav"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn name(self) -> &'static str {
        match self {
            EncoderKind::Ffmpeg => "ffmpeg",
            EncoderKind::Nvenc => "nvenc",
            EncoderKind::Libav => "libav",
            EncoderKind::Passthrough => "passthrough",
            EncoderKind::Auto => "auto",
        }
    }
}

/// What every backend is asked to produce.
#[derive(Clone, Debug)]
pub struct EncoderSpec {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    /// Pixel layout of the frames handed to `encode`: I420 normally, packed BGR on the plan's
    /// BGR colour path (the subprocess then converts, as the plan's code made it do).
    pub input: PixelFormat,
    /// x264 constant rate factor.
    pub crf: u32,
    /// x264 worker threads; `None` leaves x264's own choice (1.5 per core, frame threads).
    pub threads: Option<u32>,
}

/// Container extension for every backend. Matroska rather than fragmented MP4: each cluster is
/// self-delimiting, so a file cut at any byte (SIGKILL, power loss, full disk) still plays up
/// to the last complete cluster without any repair step, and libavformat's Matroska muxer closes
/// the open cluster on an explicit flush, which lines our fsync points up with cluster
/// boundaries. Fragmented MP4 gives the same safety only per fragment and needs the `moov`
/// written up front with fragment sizes tuned to the keyframe interval.
pub const CONTAINER_EXT: &str = "mkv";

/// The container a backend writes, chosen by the output path's extension (the layout names
/// files, see [`crate::record::layout`]): `.mp4` is fragmented MP4, anything else Matroska.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Matroska,
    /// The logger layout's SCENE file: MP4 as the logger writes, made crash-safe by writing
    /// the `moov` up front without samples (`empty_moov`) and the video as self-contained
    /// `moof`+`mdat` fragments of at most [`CLUSTER_MS`] (and at each keyframe), so a file
    /// cut at any byte plays up to its last complete fragment, as Matroska does up to its last
    /// cluster. A plain MP4 would be unreadable until its `moov` is written at the end.
    FragmentedMp4,
}

impl Container {
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("mp4") => Container::FragmentedMp4,
            _ => Container::Matroska,
        }
    }

    /// libavformat's muxer name.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::Matroska => "matroska",
            Container::FragmentedMp4 => "mp4",
        }
    }

    /// Muxer options (name, value) that bound what a crash can lose to about [`CLUSTER_MS`].
    pub fn muxer_options(self) -> Vec<(&'static str, String)> {
        match self {
            Container::Matroska => vec![("cluster_time_limit", CLUSTER_MS.to_string())],
            Container::FragmentedMp4 => vec![
                (
                    "movflags",
                    "+empty_moov+default_base_moof+frag_keyframe".to_string(),
                ),
                // In microseconds.
                ("frag_duration", (CLUSTER_MS as u64 * 1000).to_string()),
            ],
        }
    }
}

/// Longest stretch of video a cluster holds (ms): what a power cut can lose at most beyond the
/// last fsync for the subprocess backends.
pub const CLUSTER_MS: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "the ffmpeg program was not found on PATH: install it (Debian/Raspberry Pi OS: \
         `sudo apt install ffmpeg`, or run ci/setup)"
    )]
    Missing,
    #[error("{0}")]
    Unavailable(String),
    #[error("could not start ffmpeg: {0}")]
    Spawn(std::io::Error),
    #[error("the encoder process died ({status}){tail}")]
    Died { status: String, tail: String },
    #[error("disk full writing {0}")]
    DiskFull(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("libav: {0}")]
    Libav(String),
    #[error("frame is {got_w}x{got_h} {got_fmt}, the encoder was opened for {w}x{h} {fmt}")]
    Shape {
        got_w: usize,
        got_h: usize,
        got_fmt: &'static str,
        w: usize,
        h: usize,
        fmt: &'static str,
    },
}

impl EncodeError {
    /// Faults a new segment cannot fix: the recording has to stop.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            EncodeError::Missing
                | EncodeError::Unavailable(_)
                | EncodeError::DiskFull(_)
                | EncodeError::Shape { .. }
        )
    }
}

/// One open output segment.
pub trait VideoEncoder: Send {
    /// Encodes one frame (shape and layout as in the spec).
    fn encode(&mut self, frame: &FrameView<'_>) -> Result<(), EncodeError>;
    /// Makes what has been encoded so far durable (container flushed, file fsynced) and
    /// returns how many frames the file is known to hold on disk.
    fn sync(&mut self) -> Result<u64, EncodeError>;
    /// Ends the segment cleanly: drains the encoder, finalizes the container, fsyncs.
    fn finish(self: Box<Self>) -> Result<SegmentSummary, EncodeError>;
    /// Bytes in the output file so far.
    fn bytes_written(&self) -> u64;
    fn path(&self) -> &Path;
}

/// What one segment ended with, for the manifest.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentSummary {
    pub file: String,
    pub frames: u64,
    pub bytes: u64,
    /// How the segment ended: "finished" or the error that ended it.
    pub end: String,
}

/// Opens a segment of the given (resolved) backend at `path`.
pub fn open(
    kind: EncoderKind,
    spec: &EncoderSpec,
    path: &Path,
) -> Result<Box<dyn VideoEncoder>, EncodeError> {
    if !spec.width.is_multiple_of(2)
        || !spec.height.is_multiple_of(2)
        || spec.width == 0
        || spec.height == 0
    {
        return Err(EncodeError::Unavailable(format!(
            "record size {}x{} must be even in both dimensions (H.264 4:2:0)",
            spec.width, spec.height
        )));
    }
    match kind {
        EncoderKind::Ffmpeg | EncoderKind::Nvenc => Ok(Box::new(ffmpeg::FfmpegEncoder::spawn(
            kind == EncoderKind::Nvenc,
            spec,
            path,
        )?)),
        EncoderKind::Libav => Ok(Box::new(libav::LibavEncoder::open(spec, path)?)),
        EncoderKind::Passthrough => Err(EncodeError::Unavailable(
            "passthrough copies the device's H.264 and encodes no frames; the overlay video \
             needs ffmpeg, nvenc or libav"
                .into(),
        )),
        EncoderKind::Auto => Err(EncodeError::Unavailable(
            "encoder `auto` must be resolved before opening".into(),
        )),
    }
}

/// Checks a frame against the spec before it reaches a backend.
fn check_shape(spec: &EncoderSpec, frame: &FrameView<'_>) -> Result<(), EncodeError> {
    if frame.width != spec.width || frame.height != spec.height || frame.format != spec.input {
        return Err(EncodeError::Shape {
            got_w: frame.width,
            got_h: frame.height,
            got_fmt: frame.format.name(),
            w: spec.width,
            h: spec.height,
            fmt: spec.input.name(),
        });
    }
    Ok(())
}

/// True when an I/O error means the file system is full (ENOSPC, or EDQUOT for a quota).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT
    )
}

/// File length, 0 if it does not exist yet.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// fsync through a descriptor of our own: fsync(2) flushes the file's inode whoever wrote it,
/// so this covers bytes written by the ffmpeg child or by libavformat's own descriptor.
fn fsync_path(path: &Path) -> Result<(), EncodeError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_data())
        .map_err(|source| EncodeError::Io {
            path: path.to_owned(),
            source,
        })
}
