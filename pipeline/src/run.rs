//! `eyetrack run` as a library call: the run's flags ([`RunArgs`]), and [`run`], which turns
//! them into a source, a recorder and a [`RunningPipeline`], supervises it and writes the report.
//!
//! Here rather than in the binary so the control API, tests and other programs can start the
//! same run the CLI does; the binary keeps argument parsing, the config file and exit codes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::cli;
use crate::control::{BoundControl, ControlConfig, PipelineHandles};
use crate::coordinator::{Control, PipelineConfig, RunningPipeline, PASSTHROUGH_NEEDS_H264};
use crate::decode::DecoderKind;
use crate::flamegraph::{FlamegraphInfo, Sampler, DEFAULT_FREQUENCY_HZ, MAX_FREQUENCY_HZ};
use crate::logging::LogFormat;
use crate::overlay::{MarkerShape, OverlayMode, OverlayStyle, Rgb};
use crate::platform;
use crate::preview::{fit_size, ResizeFilter};
use crate::record::encoder::EncoderKind;
use crate::record::layout::Layout;
use crate::record::select::FrameSelection;
use crate::record::streams::StreamsConfig;
use crate::record::{RecordConfig, RecordingSummary};
use crate::report::{ReportInputs, RunReport};
use crate::resources::ResourceMonitor;
use crate::source::neon::status::StatusPoller;
use crate::source::neon::{
    discover, DecodePolicy, DeviceAddr, FixtureConfig, FixtureSource, LossPolicy, NeonConfig,
    NeonSource, RtspTransport,
};
use crate::source::spec::{parse_source, SourceSpec};
use crate::source::synthetic::{SyntheticConfig, SyntheticFormat, SyntheticSource};
use crate::source::Source;
use crate::streams::StreamSet;
use crate::toggles::{ColorPath, CopyMode, DecodeThreads, EncoderThreads, OnOff, Preset, Toggles};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PreviewVisibility {
    Visible,
    Hidden,
}

/// Defaults that differ with `--layout logger` (the data logger's own), where a flag is not
/// given. See the README, "Output layouts".
const LOGGER_RECORD_FPS: u32 = 10;
const EYETRACK_RECORD_FPS: u32 = 5;
/// The logger records 1280x720, which stretches the Neon's 4:3 scene (1600x1200); 1280 wide
/// keeps its aspect (1280x960). `--record-fit letterbox` gives the logger's 1280x720 with bars.
const LOGGER_RECORD_WIDTH: usize = 1280;
const LOGGER_LETTERBOX_SIZE: (usize, usize) = (1280, 720);
const LOGGER_PREVIEW: (usize, usize) = (640, 480);
const EYETRACK_PREVIEW: (usize, usize) = (640, 360);
const LOGGER_MARKER_THICKNESS: u32 = 1;
const EYETRACK_MARKER_THICKNESS: u32 = 2;

/// How the recorded frame is filled when its aspect differs from the scene's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordFit {
    /// Scale to the whole frame (aspect not kept).
    Stretch,
    /// Keep the aspect: scale to fit and fill the rest with black bars.
    Letterbox,
}

#[derive(Args, Debug)]
#[command(group(
    clap::ArgGroup::new("recording").multiple(true).args(["record", "record_root", "session_dir"])
))]
pub struct RunArgs {
    /// The command line as stored in session.json and the report, secrets redacted
    /// ([`cli::redacted_command_line`]); set by the caller, not a flag.
    #[arg(skip)]
    pub command_line: Vec<String>,
    /// Read options from this TOML file (keys are these long flags, e.g. `record-fps = 10`);
    /// flags given here override it. Default: $XDG_CONFIG_HOME/eyetrack/config.toml (or
    /// ~/.config/eyetrack/config.toml) when it exists; `--config /dev/null` reads none.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Frame source: `synthetic` (built in, deterministic), `fixture:PATH` (a recorded .etfx
    /// replayed in-process), `neon://HOST[:PORT]` (a Neon Companion; PORT is its HTTP API port,
    /// default 8080) or `discover` (find the Neon over mDNS).
    #[arg(long, default_value = "synthetic", value_parser = parse_source)]
    pub source: SourceSpec,
    /// Neon: RTP transport of the RTSP sessions (the device advertises UDP).
    #[arg(long, value_enum, default_value_t = RtspTransport::Udp)]
    pub rtsp_transport: RtspTransport,
    /// `--source discover`: the phone to use when several answer (its name or instance name).
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// `--source discover`: how long to listen for mDNS answers.
    #[arg(long, value_parser = cli::parse_duration, default_value = "3s")]
    pub discover_timeout: Duration,
    /// Neon and fixture sources: H.264 decoder (libav or openh264).
    #[arg(long, default_value = "libav")]
    pub decoder: DecoderKind,
    /// Neon and fixture sources: after packet loss, show concealed pictures until the next
    /// IDR (conceal) or nothing until it (wait-idr). Default: conceal with --decoder libav,
    /// wait-idr with openh264 (which cannot conceal: conceal with it is refused).
    #[arg(long, value_enum)]
    pub loss_policy: Option<LossPolicy>,
    /// Neon and fixture sources: set up the gaze stream (off: no RTSP session for it, and a
    /// replay skips its packets).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub gaze: OnOff,
    /// Neon and fixture sources: set up the IMU stream.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub imu: OnOff,
    /// Neon and fixture sources: set up the eye-event stream (fixations, saccades, blinks).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub events: OnOff,
    /// Neon and fixture sources: set up the eye cameras' video (384x192 at 200 Hz), decoded
    /// only while recording; with --record it goes to eyes.mkv + eyes_timing.csv.
    #[arg(long, value_enum, default_value_t = OnOff::Off)]
    pub eyes: OnOff,
    /// Neon and fixture sources: set up the scene microphone (AAC, the world URL's m=audio);
    /// with --record it goes to audio.wav + audio_timing.csv.
    #[arg(long, value_enum, default_value_t = OnOff::Off)]
    pub audio: OnOff,
    /// Recorded eye pictures per second (1-200).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub eyes_fps: u32,
    /// Neon source with --record: poll the device's /api/status this often and write battery,
    /// storage and connection to status.csv in the recording.
    #[arg(long, value_name = "INTERVAL", value_parser = cli::parse_duration)]
    pub status_log: Option<Duration>,
    /// How much stream to run, e.g. 10s, 2m, 500ms (default: until Ctrl-C).
    #[arg(long, value_parser = cli::parse_duration)]
    pub duration: Option<Duration>,
    /// Replay as fast as possible instead of in real time (offline measurement).
    #[arg(long)]
    pub as_fast_as_possible: bool,

    /// Starting point for every toggle; the flags below override it.
    #[arg(long, value_enum, default_value_t = Preset::Optimized)]
    pub preset: Preset,
    /// Preview scaling filter (plan 1.1).
    #[arg(long, value_enum)]
    pub resize: Option<ResizeFilter>,
    /// Gaze/HUD overlay: cached sprites or rasterize every frame (plan 2.2).
    #[arg(long, value_enum)]
    pub overlay: Option<OverlayMode>,
    /// Skip processing of repeated frames (plan 2.3).
    #[arg(long, value_enum)]
    pub dedupe: Option<OnOff>,
    /// planar: keep frames as decoded; bgr: convert every frame to packed BGR first.
    #[arg(long, value_enum)]
    pub color_path: Option<ColorPath>,
    /// Keep gray (and RGBA) frames as they are until an overlay needs colour (plan 2.1).
    #[arg(long, value_enum)]
    pub lazy_color: Option<OnOff>,
    /// Copy each acquired frame always, or only if it is not contiguous (plan 1.5).
    #[arg(long, value_enum)]
    pub copy: Option<CopyMode>,
    /// While the preview is hidden: process only every 10th frame when nothing records, and
    /// render only every 10th to the preview while recording (plan 1.6).
    #[arg(long, value_enum)]
    pub reduced_processing: Option<OnOff>,
    /// Neon and fixture sources, libav: decoding threads, 1, frame:N or slice:N. Preset
    /// default: 1.
    #[arg(long, value_name = "1|frame:N|slice:N", value_parser = clap::value_parser!(DecodeThreads))]
    pub decode_threads: Option<DecodeThreads>,
    /// Neon and fixture sources, libav: while nothing records, decode without the loop filter
    /// (the preview is scaled down; pictures drift until the next IDR). Preset default: on.
    #[arg(long, value_enum)]
    pub fast_decode: Option<OnOff>,
    /// Neon and fixture sources: while the preview is hidden and nothing records, decode only
    /// IDR pictures (at most one per 10 frames). Preset default: on.
    #[arg(long, value_enum)]
    pub reduced_decode: Option<OnOff>,
    /// Neon and fixture sources, libav: hand decoded pictures on in libavcodec's own buffers
    /// instead of copying each one out. Preset default: on.
    #[arg(long, value_enum)]
    pub zero_copy: Option<OnOff>,

    /// Box the preview is scaled to fit (aspect ratio kept). Default 640x360; 640x480 with
    /// --layout logger.
    #[arg(long, value_parser = cli::parse_size)]
    pub preview_size: Option<(usize, usize)>,
    /// Whether someone is looking at the preview (drives reduced processing).
    #[arg(long, value_enum, default_value_t = PreviewVisibility::Visible)]
    pub preview: PreviewVisibility,

    /// Gaze marker shape.
    #[arg(long, value_enum, default_value_t = MarkerShape::Circle)]
    pub marker: MarkerShape,
    /// Gaze marker radius in preview pixels.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub marker_radius: u32,
    /// Gaze marker line thickness in preview pixels. Default 2; 1 with --layout logger.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub marker_thickness: Option<u32>,
    /// Marker colour while the glasses are worn (RRGGBB).
    #[arg(long, value_parser = cli::parse_rgb, default_value = "ffff00")]
    pub worn_color: Rgb,
    /// Marker colour while not worn (RRGGBB).
    #[arg(long, value_parser = cli::parse_rgb, default_value = "ff0000")]
    pub not_worn_color: Rgb,
    /// Text HUD (fps, frame index, state) on the preview.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub hud: OnOff,

    /// Synthetic source: pixel format.
    #[arg(long, value_enum, default_value_t = SyntheticFormat::I420)]
    pub format: SyntheticFormat,
    /// Synthetic source: scene resolution.
    #[arg(long, value_parser = cli::parse_size, default_value = "1600x1200")]
    pub resolution: (usize, usize),
    /// Synthetic source: frames per second.
    #[arg(long, value_parser = cli::parse_fps, default_value = "30")]
    pub fps: f64,
    /// Synthetic source: seed of the deterministic content.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Record into a new folder (rec-<UTC time>) under DIR for the whole run: video,
    /// frame_timing.csv, gaze.csv, imu.csv, events.csv, session.json. DIR is created if its
    /// parent exists. With --layout logger: the session folder is created under DIR (unless
    /// --session-dir names it), and the trial files go to its EyeTracker-Neon folder.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Configure recording into new folders under DIR (with every --record-* flag) but start
    /// none: the control API starts and stops recordings (needs --control).
    #[arg(
        long,
        value_name = "DIR",
        requires = "control",
        conflicts_with = "record"
    )]
    pub record_root: Option<PathBuf>,

    /// Serve the control HTTP API and the browser preview on ADDR (e.g. 127.0.0.1:7000; port
    /// 0 picks a free port). Loopback only unless --control-allow-remote.
    #[arg(long, value_name = "ADDR")]
    pub control: Option<std::net::SocketAddr>,
    /// Allow --control on a non-loopback address (then a token is required).
    #[arg(long, requires = "control")]
    pub control_allow_remote: bool,
    /// Bearer token every control request must carry (default: env EYETRACK_CONTROL_TOKEN).
    /// A secret: redacted in session.json, report.json, `config show` and logs.
    #[arg(long, value_name = "TOKEN", requires = "control", value_parser = cli::parse_secret)]
    pub control_token: Option<cli::Secret>,
    /// File layout of recordings: eyetrack (a rec-<UTC time> folder per recording) or logger
    /// (RPi_Logger's numbered trial files `{prefix}_{TYPE}_trial{NNN}` in
    /// `{session-dir}/EyeTracker-Neon/`, with its CSV columns and defaults).
    #[arg(long, value_enum, default_value_t = Layout::Eyetrack)]
    pub layout: Layout,
    /// --layout logger: the session folder (created if its parent exists). Default: a folder
    /// session_<UTC start time> under --record DIR.
    #[arg(long, value_name = "DIR")]
    pub session_dir: Option<PathBuf>,
    /// --layout logger: file name prefix. Default: the session folder's name after its first
    /// `_`, then `_EYETRACKER-NEON` (session_20261124_212417 gives
    /// 20261124_212417_EYETRACKER-NEON).
    #[arg(long, value_name = "P", requires = "recording")]
    pub prefix: Option<String>,
    /// Recorded frames per second. Default 5; 10 with --layout logger.
    #[arg(long, requires = "recording",
          value_parser = clap::value_parser!(u32).range(1..=30))]
    pub record_fps: Option<u32>,
    /// Recorded frame size, scaled with the preview's filter. Default: the scene's size; with
    /// --layout logger the scene scaled to 1280 wide (1280x960 for the Neon), or 1280x720 with
    /// --record-fit letterbox.
    #[arg(long, value_parser = cli::parse_record_size, requires = "recording")]
    pub record_size: Option<(usize, usize)>,
    /// How the scene fills a recorded frame of another aspect ratio.
    #[arg(long, value_enum, default_value_t = RecordFit::Stretch, requires = "recording")]
    pub record_fit: RecordFit,
    /// timer: fixed output rate, repeating the latest frame; camera: unique frames only.
    #[arg(long, value_enum)]
    pub frame_selection: Option<FrameSelection>,
    /// Video encoder backend (auto = nvenc where available, else libav). passthrough: no
    /// encoding, the device's own H.264 at its full rate (needs a source that delivers H.264).
    #[arg(long, value_enum)]
    pub encoder: Option<EncoderKind>,
    /// With --encoder passthrough: also record the re-encoded video with the gaze circle (by
    /// --overlay-encoder). Default off: the original stream only.
    #[arg(long, value_enum, requires = "recording")]
    pub record_overlay: Option<OnOff>,
    /// Backend of the overlay video when --encoder passthrough --record-overlay on.
    #[arg(long, value_enum, default_value_t = EncoderKind::Auto, requires = "recording")]
    pub overlay_encoder: EncoderKind,
    /// x264 worker threads while recording: auto (1 up to 10 fps or on 2 cores, else 2),
    /// default (x264's own: 1.5 per core), or a count. Preset default: auto.
    #[arg(long, value_name = "auto|default|N", value_parser = clap::value_parser!(EncoderThreads))]
    pub encoder_threads: Option<EncoderThreads>,
    /// x264 constant rate factor of the recorded video.
    #[arg(long, default_value_t = 23, requires = "recording",
          value_parser = clap::value_parser!(u32).range(0..=51))]
    pub record_crf: u32,
    /// CSV rows per write (plan 1.2; 1 = the plan's current behaviour). Preset default: 30.
    /// This and the next three are toggles: accepted without --record (no effect), so a
    /// sweep can pass them to every scenario.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub flush_every: Option<u32>,
    /// Recorded frames between fsyncs of video and CSVs (plan 1.4; 0 = only at stop). Preset
    /// default: 600.
    #[arg(long)]
    pub fsync_every: Option<u32>,
    /// Start and stop recording every PERIOD (record PERIOD, pause PERIOD, ...) for the whole
    /// run: the plan's start/stop scenario.
    #[arg(long, value_name = "PERIOD", value_parser = cli::parse_duration, requires = "recording")]
    pub record_cycle: Option<Duration>,

    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Sample the whole process's CPU while the pipeline runs and write a flamegraph SVG here.
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
    /// Sampling frequency of `--flamegraph`, per CPU-second (odd, so it does not beat with
    /// 30 fps work).
    #[arg(long, default_value_t = DEFAULT_FREQUENCY_HZ,
          value_parser = clap::value_parser!(i32).range(1..=MAX_FREQUENCY_HZ as i64))]
    pub flamegraph_hz: i32,
    /// Save the last display-ready preview frame (with overlay) as a PPM image.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Turn the per-phase profiler off (to measure its own cost).
    #[arg(long)]
    pub no_profile: bool,
    /// No live status line and no tables.
    #[arg(long, short)]
    pub quiet: bool,
    /// Log lines on stderr: text (one readable line each) or json (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Least severe log level shown (error, warn, info, debug, trace) or RUST_LOG-style
    /// directives. Default: RUST_LOG if set, else info.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

impl RunArgs {
    /// The optional streams to set up (`--gaze` ... `--audio`).
    fn stream_set(&self) -> StreamSet {
        StreamSet {
            gaze: self.gaze.is_on(),
            imu: self.imu.is_on(),
            events: self.events.is_on(),
            eyes: self.eyes.is_on(),
            audio: self.audio.is_on(),
        }
    }

    fn toggles(&self) -> Toggles {
        let mut t = self.preset.toggles();
        if let Some(v) = self.resize {
            t.resize = v;
        }
        if let Some(v) = self.overlay {
            t.overlay = v;
        }
        if let Some(v) = self.dedupe {
            t.dedupe = v;
        }
        if let Some(v) = self.color_path {
            t.color_path = v;
        }
        if let Some(v) = self.lazy_color {
            t.lazy_color = v;
        }
        if let Some(v) = self.copy {
            t.copy = v;
        }
        if let Some(v) = self.reduced_processing {
            t.reduced_processing = v;
        }
        if let Some(v) = self.flush_every {
            t.flush_every = v;
        }
        if let Some(v) = self.fsync_every {
            t.fsync_every = v;
        }
        if let Some(v) = self.encoder {
            t.encoder = v;
        }
        if let Some(v) = self.frame_selection {
            t.frame_selection = v;
        }
        if let Some(v) = self.encoder_threads {
            t.encoder_threads = v;
        }
        if let Some(v) = self.decode_threads {
            t.decode_threads = v;
        }
        if let Some(v) = self.fast_decode {
            t.fast_decode = v;
        }
        if let Some(v) = self.reduced_decode {
            t.reduced_decode = v;
        }
        if let Some(v) = self.zero_copy {
            t.zero_copy = v;
        }
        t
    }

    /// The decode toggles for a Neon or fixture source.
    fn decode_policy(&self) -> DecodePolicy {
        let t = self.toggles();
        DecodePolicy {
            threads: t.decode_threads,
            fast_preview: t.fast_decode.is_on(),
            reduced: t.reduced_decode.is_on(),
            zero_copy: t.zero_copy.is_on(),
        }
    }

    /// Recording set-up, checked before anything streams.
    fn record_config(
        &self,
        toggles: &Toggles,
        caps: &mut platform::PlatformCaps,
        scene: (usize, usize),
        source: &crate::source::SourceInfo,
        delivers_h264: bool,
    ) -> anyhow::Result<Option<RecordConfig>> {
        let root = match (
            self.record.as_ref().or(self.record_root.as_ref()),
            &self.session_dir,
        ) {
            (Some(root), _) => root.clone(),
            (None, Some(session)) => session
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from),
            (None, None) => return Ok(None),
        };
        anyhow::ensure!(
            self.layout == Layout::Logger || (self.session_dir.is_none() && self.prefix.is_none()),
            "--session-dir and --prefix apply to --layout logger"
        );
        let mut rc = RecordConfig::new(root);
        rc.layout = self.layout;
        rc.session_dir = self.session_dir.clone();
        rc.prefix = self.prefix.clone();
        rc.fps = self.record_fps();
        rc.size = self.record_size(scene);
        rc.letterbox = self.record_fit == RecordFit::Letterbox;
        rc.selection = toggles.frame_selection;
        let set = self.stream_set();
        if toggles.encoder == EncoderKind::Passthrough {
            anyhow::ensure!(delivers_h264, PASSTHROUGH_NEEDS_H264);
            anyhow::ensure!(
                self.overlay_encoder != EncoderKind::Passthrough,
                "--overlay-encoder must re-encode: ffmpeg, nvenc, libav or auto"
            );
            rc.passthrough = true;
            rc.overlay_video = self.record_overlay.is_some_and(OnOff::is_on);
            // The re-encoder serves the overlay video and the eye video; with neither it is
            // never started, and its choice must not cost a platform probe.
            rc.encoder = if rc.overlay_video || set.eyes {
                self.overlay_encoder
                    .resolve(nvenc_for(self.overlay_encoder, caps))?
            } else {
                match self.overlay_encoder {
                    EncoderKind::Auto => EncoderKind::Libav,
                    k => k,
                }
            };
        } else {
            rc.encoder = toggles.encoder.resolve(nvenc_for(toggles.encoder, caps))?;
            anyhow::ensure!(
                self.record_overlay.is_none_or(OnOff::is_on),
                "--record-overlay off needs --encoder passthrough (otherwise nothing is recorded)"
            );
        }
        rc.crf = self.record_crf;
        rc.encoder_threads = toggles
            .encoder_threads
            .resolve(rc.fps, caps.usable_cores.max(1));
        rc.streams = StreamsConfig {
            eyes: set.eyes,
            eyes_fps: self.eyes_fps,
            audio: set.audio,
            ..StreamsConfig::default()
        };
        rc.flush_every = toggles.flush_every;
        rc.fsync_every = toggles.fsync_every;
        rc.bgr_input = toggles.color_path == ColorPath::Bgr;
        rc.resize = toggles.resize;
        rc.overlay_mode = toggles.overlay;
        // The preview's marker, scaled from preview pixels to recorded pixels.
        let out_w = rc.size.map_or(scene.0, |s| s.0) as f32;
        let (bw, bh) = self.preview_box();
        let (pw, _) = fit_size(scene.0, scene.1, bw, bh);
        let k = (out_w / pw.max(1) as f32).max(1.0);
        rc.marker = OverlayStyle {
            shape: self.marker,
            radius: ((self.marker_radius as f32 * k).round() as u32).clamp(1, 256),
            thickness: ((self.marker_thickness() as f32 * k).round() as u32).clamp(1, 64),
            dot_radius: 0,
            worn: self.worn_color,
            not_worn: self.not_worn_color,
            hud: false,
            ..OverlayStyle::default()
        };
        rc.manifest_extra = serde_json::json!({
            "command_line": self.command_line,
            "toggles": toggles,
            "source": source,
            "platform": caps,
            "eyetrack_version": env!("CARGO_PKG_VERSION"),
            "git_revision": crate::report::ToolInfo::current().git_revision,
        });
        rc.prepare()?;
        Ok(Some(rc))
    }

    /// `--loss-policy`, or the decoder's default; a combination the decoder cannot follow is
    /// refused before anything streams.
    fn loss_policy(&self) -> anyhow::Result<LossPolicy> {
        let loss = self
            .loss_policy
            .unwrap_or(LossPolicy::default_for(self.decoder));
        loss.check(self.decoder).map_err(anyhow::Error::msg)?;
        Ok(loss)
    }

    fn is_logger(&self) -> bool {
        self.layout == Layout::Logger
    }

    fn record_fps(&self) -> u32 {
        self.record_fps.unwrap_or(if self.is_logger() {
            LOGGER_RECORD_FPS
        } else {
            EYETRACK_RECORD_FPS
        })
    }

    /// The recorded size: the flag, else the layout's default for this scene.
    fn record_size(&self, scene: (usize, usize)) -> Option<(usize, usize)> {
        if self.record_size.is_some() || !self.is_logger() {
            return self.record_size;
        }
        if self.record_fit == RecordFit::Letterbox {
            return Some(LOGGER_LETTERBOX_SIZE);
        }
        let (w, h) = (scene.0.max(2), scene.1.max(2));
        let out_h = ((LOGGER_RECORD_WIDTH * h + w / 2) / w).max(16) & !1;
        Some((LOGGER_RECORD_WIDTH, out_h))
    }

    fn preview_box(&self) -> (usize, usize) {
        self.preview_size.unwrap_or(if self.is_logger() {
            LOGGER_PREVIEW
        } else {
            EYETRACK_PREVIEW
        })
    }

    fn marker_thickness(&self) -> u32 {
        self.marker_thickness.unwrap_or(if self.is_logger() {
            LOGGER_MARKER_THICKNESS
        } else {
            EYETRACK_MARKER_THICKNESS
        })
    }

    /// `config show`: what an unset flag with a layout-dependent default comes to.
    pub fn layout_default(&self, key: &str) -> Option<String> {
        let layout = self.layout.name();
        let size = |(w, h): (usize, usize)| format!("{w}x{h}");
        match key {
            "record-fps" if self.record_fps.is_none() => {
                Some(format!("{} with --layout {layout}", self.record_fps()))
            }
            "preview-size" if self.preview_size.is_none() => Some(format!(
                "{} with --layout {layout}",
                size(self.preview_box())
            )),
            "marker-thickness" if self.marker_thickness.is_none() => Some(format!(
                "{} with --layout {layout}",
                self.marker_thickness()
            )),
            "record-size" if self.record_size.is_none() => Some(if self.is_logger() {
                match self.record_size((1600, 1200)) {
                    Some(s) if self.record_fit == RecordFit::Letterbox => {
                        format!("{} with --layout logger --record-fit letterbox", size(s))
                    }
                    _ => "the scene scaled to 1280 wide with --layout logger (1280x960 for \
                          the Neon's 1600x1200)"
                        .to_string(),
                }
            } else {
                "the scene's size".to_string()
            }),
            "loss-policy" if self.loss_policy.is_none() => Some(format!(
                "{} with --decoder {}",
                match LossPolicy::default_for(self.decoder) {
                    LossPolicy::Conceal => "conceal",
                    LossPolicy::WaitIdr => "wait-idr",
                },
                self.decoder.name()
            )),
            _ => self.preset_default(key),
        }
    }

    /// `config show`: the value an unset toggle takes from `--preset`.
    fn preset_default(&self, key: &str) -> Option<String> {
        use clap::ValueEnum;
        let preset = self.preset.to_possible_value()?.get_name().to_owned();
        let toggles = serde_json::to_value(self.preset.toggles()).ok()?;
        let v = toggles.get(key.replace('-', "_"))?;
        let given = serde_json::to_value(self.toggles()).ok()?;
        // Only for a toggle the flags leave at the preset's value.
        (given.get(key.replace('-', "_")) == Some(v)).then(|| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            format!("{v} from --preset {preset}")
        })
    }

    fn overlay_style(&self) -> OverlayStyle {
        OverlayStyle {
            shape: self.marker,
            radius: self.marker_radius,
            thickness: self.marker_thickness(),
            worn: self.worn_color,
            not_worn: self.not_worn_color,
            hud: self.hud.is_on(),
            ..OverlayStyle::default()
        }
    }
}

/// Whether encoder choice `kind` may use NVENC here. Only `auto` and `nvenc` depend on it, and
/// only they run the platform's ffmpeg/NVENC probe (cached per boot; a cached "no" is probed
/// again for an explicit `nvenc`); `caps` then holds the probed facts for the manifest and the
/// report.
fn nvenc_for(kind: EncoderKind, caps: &mut platform::PlatformCaps) -> bool {
    if matches!(kind, EncoderKind::Auto | EncoderKind::Nvenc) {
        *caps = platform::with_encoders(kind == EncoderKind::Nvenc);
    }
    caps.has_nvenc
}

fn signal_name(sig: usize) -> &'static str {
    match sig as i32 {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// `eyetrack run`: builds the source, the recorder and the pipeline from `args`, supervises the
/// run (signals, `--record-cycle`, the live status line), then writes the report. `signals`:
/// (stop requested, which signal), set by the caller's signal handlers, so a library user (the
/// CLI installs SIGINT/SIGTERM handlers before any connect or discovery) decides what stops it.
pub fn run(args: RunArgs, signals: (Arc<AtomicBool>, Arc<AtomicUsize>)) -> anyhow::Result<()> {
    let (signalled, which_signal) = signals;
    // Bound before the source connects, so a taken port fails the run before anything streams.
    let control_bound = match args.control {
        Some(addr) => {
            let token = args
                .control_token
                .clone()
                .or_else(|| {
                    std::env::var("EYETRACK_CONTROL_TOKEN")
                        .ok()
                        .map(cli::Secret::new)
                })
                .filter(|t| !t.expose().is_empty());
            Some(BoundControl::bind(ControlConfig {
                addr,
                allow_remote: args.control_allow_remote,
                token,
            })?)
        }
        None => None,
    };
    let toggles = args.toggles();
    let paced = !args.as_fast_as_possible;
    let streams = args.stream_set();
    // The device whose status --status-log polls.
    let mut device: Option<DeviceAddr> = None;
    if matches!(args.source, SourceSpec::Synthetic) {
        anyhow::ensure!(
            !streams.eyes && !streams.audio,
            "--eyes on and --audio on need a neon:// or fixture: source"
        );
    }
    let source: Box<dyn Source> = match &args.source {
        SourceSpec::Synthetic => Box::new(
            SyntheticSource::new(SyntheticConfig {
                width: args.resolution.0,
                height: args.resolution.1,
                fps: args.fps,
                format: args.format,
                duration: args.duration,
                seed: args.seed,
                paced,
            })
            .context("synthetic source")?,
        ),
        SourceSpec::Fixture(path) => Box::new(
            FixtureSource::open(FixtureConfig {
                path: path.clone(),
                paced,
                duration: args.duration,
                decoder: args.decoder,
                loss: args.loss_policy()?,
                decode: args.decode_policy(),
                streams,
            })
            .with_context(|| format!("fixture {}", path.display()))?,
        ),
        SourceSpec::Neon(addr) => {
            device = Some(addr.clone());
            Box::new(neon_source(&args, addr.clone())?)
        }
        SourceSpec::Discover => {
            let found = discover::browse(args.discover_timeout)?;
            let dev = discover::choose(found, args.device.as_deref(), args.discover_timeout)?;
            let addr = dev.addr()?;
            if !args.quiet {
                tracing::info!("found {:?} at {addr}", dev.name);
            }
            device = Some(addr.clone());
            Box::new(neon_source(&args, addr)?)
        }
    };
    if let Some(path) = &args.report {
        check_writable(path, "report")?;
    }
    if let Some(path) = &args.flamegraph {
        check_writable(path, "flamegraph")?;
    }
    if let Some(path) = &args.snapshot {
        check_writable(path, "snapshot")?;
    }
    // The fixed facts only; a recording's `auto`/`nvenc` encoder choice adds the probe.
    let mut caps = platform::basic().clone();
    let info = source.info();
    let scene = (
        info.width,
        if info.tiled {
            crate::process::scene_height(info.height)
        } else {
            info.height
        },
    );
    let mut record =
        args.record_config(&toggles, &mut caps, scene, &info, source.delivers_h264())?;
    let control = Arc::new(Control::default());
    // Device status is a stream: polled here on the source side, written by the recorder.
    // Dropped at the end of this function on every path, which ends its thread.
    let mut _status_poller = None;
    if let Some(interval) = args.status_log {
        let (Some(device), Some(rc)) = (&device, record.as_mut()) else {
            anyhow::bail!("--status-log needs a neon:// (or discover) source and --record");
        };
        let (poller, feed) = StatusPoller::start(device.clone(), interval, Arc::clone(&control))
            .context("starting the status poller thread")?;
        rc.streams.status = Some(feed);
        _status_poller = Some(poller);
    }
    let scenario = if record.is_some() {
        "recording"
    } else {
        "streaming"
    };
    let live_phases = control_bound
        .as_ref()
        .map(|_| Arc::new(crate::profile::LivePhases::default()));
    let cfg = PipelineConfig {
        record_at_start: record.is_some() && args.record_root.is_none(),
        record,
        live_phases: live_phases.clone(),
        toggles,
        preview_box: args.preview_box(),
        overlay_style: args.overlay_style(),
        profile: !args.no_profile,
        live: paced,
        ..PipelineConfig::default()
    };
    // What the control API's /config may change while running, starting from the flags.
    control.live.set(crate::live_config::LiveValues {
        preview_size: args.preview_box(),
        marker: args.marker,
        marker_radius: args.marker_radius,
        marker_thickness: args.marker_thickness(),
        worn_color: args.worn_color,
        not_worn_color: args.not_worn_color,
        hud: args.hud.is_on(),
        record_fps: cfg.record.as_ref().map_or(args.record_fps(), |r| r.fps),
        record_size: cfg
            .record
            .as_ref()
            .map(|r| r.size.unwrap_or((scene.0 & !1, scene.1 & !1))),
    });
    control.streams.apply(&streams);
    control.preview_visible.store(
        args.preview == PreviewVisibility::Visible,
        Ordering::Relaxed,
    );

    // Before the pipeline, so the graph covers every frame; the sampler's cost is its own field.
    let sampler = match &args.flamegraph {
        Some(_) => Some(Sampler::start(args.flamegraph_hz).context("flamegraph sampler")?),
        None => None,
    };
    let monitor = ResourceMonitor::start(Duration::from_millis(250));
    let running = RunningPipeline::start(source, cfg.clone(), Arc::clone(&control))?;
    let source_info = running.source_info().clone();
    // From here on an error does not return at once: it stops the pipeline, and the run ends
    // as after Ctrl-C (recordings closed, threads joined, the report written, with the error
    // in it), then fails with that error.
    let mut failure: Option<anyhow::Error> = None;
    let mut fail = |e: anyhow::Error| {
        control.request_stop();
        failure.get_or_insert(e);
    };
    let control_server = match control_bound {
        Some(bound) => match bound.serve(PipelineHandles::new(&running, live_phases)) {
            Ok(server) => {
                // Always said (also with -q): with port 0 it is the only way to learn the port.
                tracing::info!("control API and preview on http://{}/", server.local_addr());
                Some(server)
            }
            Err(e) => {
                fail(e.into());
                None
            }
        },
        None => None,
    };
    let live = !args.quiet && std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let mut recordings: Vec<RecordingSummary> = Vec::new();
    let mut reported_error = None;
    if let Some(dir) = running.recorder().and_then(|r| r.active()) {
        if !args.quiet {
            tracing::info!("recording into {}", dir.display());
        }
    }
    let mut last_toggle = Instant::now();
    let mut last_line = Instant::now();
    let mut stop_logged = false;
    while !running.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        if signalled.load(Ordering::Relaxed) && !stop_logged {
            stop_logged = true;
            control.request_stop();
            tracing::info!(
                signal = signal_name(which_signal.load(Ordering::Relaxed)),
                "stopping: finishing the recording and the report (a second signal exits at once)"
            );
        }
        if let Some(rec) = running.recorder() {
            // A fault ended the recording while streaming goes on: say so once, in one line.
            let err = rec.last_error();
            if err.is_some() && err != reported_error {
                tracing::warn!(
                    "recording stopped: {} (streaming continues)",
                    cli::one_line(err.as_deref().unwrap_or_default())
                );
                reported_error = err;
            }
            if let Some(period) = args.record_cycle {
                if last_toggle.elapsed() >= period {
                    last_toggle = Instant::now();
                    if rec.active().is_some() {
                        match rec.stop() {
                            Ok(s) => recordings.push(s),
                            Err(e) => fail(anyhow::Error::new(e).context("--record-cycle stop")),
                        }
                    } else if reported_error.is_none() && !stop_logged && !control.stopping() {
                        if let Err(e) = rec.start() {
                            fail(anyhow::Error::new(e).context("--record-cycle start"));
                        }
                    }
                }
            }
        }
        if live && last_line.elapsed() >= Duration::from_millis(500) {
            last_line = Instant::now();
            status_line(&running, &monitor, t0.elapsed(), source_info.fps);
        }
    }
    // The stages and the encoder are still alive: their last second is read before they end.
    monitor.mark_threads();
    if live {
        eprint!("\r\x1b[2K");
    }
    let latest = Arc::clone(running.latest_preview());
    if let Some(server) = control_server {
        recordings.extend(server.shutdown());
    }
    if let Some(rec) = running.recorder() {
        if let Ok(s) = rec.stop() {
            recordings.push(s);
        }
    }
    let outcome = running.wait();
    recordings.extend(outcome.recording.clone());
    let resources = monitor.stop();
    let flamegraph = match (sampler, &args.flamegraph) {
        (Some(sampler), Some(path)) => {
            match sampler
                .finish(path, &flamegraph_title(&args, &toggles, paced))
                .context("flamegraph")
            {
                Ok(stats) => {
                    if stats.samples == 0 {
                        tracing::warn!(
                            "the flamegraph took no samples (run too short for {} Hz)",
                            stats.frequency_hz
                        );
                    }
                    Some(FlamegraphInfo::new(path, &stats))
                }
                Err(e) => {
                    fail(e);
                    None
                }
            }
        }
        _ => None,
    };
    if let Some(path) = &args.snapshot {
        let written = latest
            .get()
            .context("no preview frame was displayed, so there is no snapshot")
            .and_then(|(frame, _)| write_ppm(path, &frame));
        if let Err(e) = written {
            fail(e);
        }
    }
    let mut report = RunReport::build(
        &outcome,
        ReportInputs {
            command_line: args.command_line.clone(),
            scenario,
            source: source_info,
            toggles,
            preview_box: args.preview_box(),
            paced,
            resources,
            flamegraph,
            recordings,
        },
        &caps,
    );
    if let Some(e) = &failure {
        report.error = Some(cli::one_line(&format!("{e:#}")));
    }
    if !args.quiet {
        println!("{}", report.render_tables());
        if let Some(f) = &report.flamegraph {
            println!(
                "flamegraph written to {}: {} samples at {} Hz ({} dropped), sampler overhead \
                 {:.4} CPU-s ({:.2} % of the run's CPU)",
                f.path.display(),
                f.samples,
                f.frequency_hz,
                f.samples_dropped,
                f.overhead_cpu_seconds,
                f.overhead_percent
            );
        }
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing report {}", path.display()))?;
        if !args.quiet {
            println!("report written to {}", path.display());
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(e) = &outcome.error {
        anyhow::bail!("the run ended early: {e}");
    }
    Ok(())
}

fn neon_source(args: &RunArgs, device: DeviceAddr) -> anyhow::Result<NeonSource> {
    anyhow::ensure!(
        !args.as_fast_as_possible,
        "--as-fast-as-possible applies to replayed sources, not to a live device"
    );
    let mut cfg = NeonConfig::new(device);
    cfg.transport = args.rtsp_transport;
    cfg.decoder = args.decoder;
    cfg.loss = args.loss_policy()?;
    cfg.decode = args.decode_policy();
    cfg.duration = args.duration;
    cfg.streams = args.stream_set();
    Ok(NeonSource::connect(cfg)?)
}

/// Writes a frame as binary PPM (RGB), converting from whatever the preview holds.
fn write_ppm(path: &std::path::Path, frame: &crate::frame::Frame) -> anyhow::Result<()> {
    use crate::frame::{Frame, PixelFormat};
    let mut bgr = Frame::new(PixelFormat::Bgr24, 1, 1);
    crate::color::convert(&frame.view(), &mut bgr, PixelFormat::Bgr24)
        .context("converting the snapshot")?;
    let mut out = format!("P6\n{} {}\n255\n", bgr.width(), bgr.height()).into_bytes();
    let plane = bgr.plane(0);
    for y in 0..plane.height {
        for px in plane.row(y).chunks_exact(3) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing snapshot {}", path.display()))
}

/// The toggles and the source, so a folder of SVGs from a sweep says which is which.
fn flamegraph_title(args: &RunArgs, toggles: &Toggles, paced: bool) -> String {
    let toggles = match serde_json::to_value(toggles) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{}={s}", k.replace('_', "-")),
                v => format!("{}={v}", k.replace('_', "-")),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    format!(
        "eyetrack run: {toggles} | {}x{} {:?} {} fps, {}",
        args.resolution.0,
        args.resolution.1,
        args.format,
        args.fps,
        if paced {
            "paced"
        } else {
            "as fast as possible"
        }
    )
}

/// Fails before streaming if an output cannot be written, rather than after the run. A file
/// that did not exist is created to prove it can be, then removed again: a run that fails
/// before writing it leaves no empty file behind.
fn check_writable(path: &std::path::Path, what: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "{what} folder {} does not exist",
        dir.display()
    );
    anyhow::ensure!(!path.is_dir(), "{what} {} is a folder", path.display());
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(probe) => {
            drop(probe);
            std::fs::remove_file(path)
                .with_context(|| format!("removing the write test {}", path.display()))
        }
        // There already: writable if it opens for writing (without truncating it now).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .with_context(|| format!("cannot write {what} {}", path.display())),
        Err(e) => Err(e).with_context(|| format!("cannot write {what} {}", path.display())),
    }
}

fn status_line(running: &RunningPipeline, monitor: &ResourceMonitor, elapsed: Duration, fps: f64) {
    let c = running.counters().snapshot();
    let secs = elapsed.as_secs_f64().max(1e-3);
    let stream_s = c.frames_acquired as f64 / fps.max(1e-3);
    let (cpu_s, rss) = monitor.current();
    let cpu_pct = if stream_s > 0.0 {
        100.0 * cpu_s / stream_s
    } else {
        0.0
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r\x1b[2K{:6.1}s  {:5.1} fps  displayed {}  drops {}  dup {}  cpu {:5.1}% of a core  rss {:.0} MB",
        secs,
        c.frames_displayed as f64 / secs,
        c.frames_displayed,
        c.dropped(),
        c.duplicates_skipped,
        cpu_pct,
        rss as f64 / 1048576.0,
    );
    let _ = err.flush();
}
