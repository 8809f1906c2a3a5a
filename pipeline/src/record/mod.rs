//! Recording (the plan's RecordingManager, "Detailed Frame Flow" 4-5): frame selection, the
//! encoder thread, the CSV writer thread, and the start/stop lifecycle of recording folders.
//!
//! Threads: the process stage offers every processed frame while recording (never blocking:
//! a full queue is counted and logged), the source hands every H.264 access unit it receives to
//! the passthrough queue (`--encoder passthrough`, same policy), the `record` thread selects,
//! scales, draws the gaze circle and encodes, and copies the access units into their own files,
//! and the `record-csv` thread owns the CSV files. Start and stop can be called from any thread,
//! any number of times in one process.

pub mod csv_files;
pub mod encoder;
pub mod files;
pub mod layout;
pub mod select;
pub mod session;
pub mod streams;
pub mod verify;
pub mod wav;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender, TrySendError};
use serde::Serialize;

use crate::color;
use crate::frame::{Frame, FrameView, PixelFormat};
use crate::overlay::{Overlay, OverlayMode, OverlayStyle};
use crate::packet::AccessUnitSink;
use crate::packet::{FrameMeta, MatchedGaze};
use crate::preview::{ResizeFilter, Scaler};
use crate::process::Processed;
use crate::profile::{Counters, Phase, StageProfile};
use crate::run_control::Control;
use crate::sensors::{GazeSample, ImuSample};
use crate::time::{MonoNanos, UnixNanos};

use csv_files::{CsvFiles, CsvMsg, CsvSummary, EventRow, PassthroughRow, RecordTime, TimingRow};
use encoder::passthrough::{Dropped, OpenReason, Pushed, Remuxer};
use encoder::{EncodeError, EncoderKind, EncoderSpec, SegmentSummary, VideoEncoder};
use layout::{FileKind, Layout, TrialFiles};
use select::{FrameSelection, Selector};
use session::{Counts, Manifest};

/// How recordings are made.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// Folder the recording folders are created in (logger layout: the session folder, unless
    /// `session_dir` names one).
    pub root: PathBuf,
    /// Whose file names and CSV columns (see [`layout`]).
    pub layout: Layout,
    /// Logger layout: the session folder; `None` = `root/session_<UTC start of the run>`.
    pub session_dir: Option<PathBuf>,
    /// Logger layout: file name prefix; `None` = [`layout::default_prefix`] of the session.
    pub prefix: Option<String>,
    /// Output frames per second (1-30).
    pub fps: u32,
    /// Output size; `None` = the scene's own size.
    pub size: Option<(usize, usize)>,
    /// Keep the scene's aspect in an output of another shape: scale to fit and fill the rest
    /// black (letterbox / pillarbox). Off: scale to the whole frame.
    pub letterbox: bool,
    pub selection: FrameSelection,
    /// Backend of the overlay video; already resolved (not `auto`, not `passthrough`).
    pub encoder: EncoderKind,
    /// Record the device's own H.264 as received (`--encoder passthrough`) into
    /// `scene_passthrough_NNN.mkv`, with `passthrough_timing.csv`.
    pub passthrough: bool,
    /// Record the re-encoded video with the gaze circle (`scene_NNN.mkv`, by `encoder`). Off
    /// only together with `passthrough`.
    pub overlay_video: bool,
    /// Access units the passthrough queue holds before the source has to skip one (about 3 s
    /// at 30 fps: room for an fsync on a slow card).
    pub passthrough_queue: usize,
    pub crf: u32,
    /// x264 worker threads (`None` = the encoder's default).
    pub encoder_threads: Option<u32>,
    /// CSV rows per write(2) (plan 1.2; 1 = the plan's current behaviour).
    pub flush_every: u32,
    /// Output frames between fsyncs of the video and the CSVs (plan 1.4; 0 = only at stop).
    pub fsync_every: u32,
    /// Packed BGR goes to the encoder (the plan's colour path) instead of I420.
    pub bgr_input: bool,
    pub resize: ResizeFilter,
    pub overlay_mode: OverlayMode,
    /// The gaze circle drawn into recorded frames, in output pixels (no HUD).
    pub marker: OverlayStyle,
    /// Frames the recorder's queue holds before the process stage has to skip one.
    pub queue: usize,
    /// Whatever the caller wants in each session.json (toggles, source, platform, versions).
    pub manifest_extra: serde_json::Value,
    /// The eye video, audio and device status log beside the scene (issue 7).
    pub streams: streams::StreamsConfig,
}

impl RecordConfig {
    pub fn new(root: PathBuf) -> Self {
        RecordConfig {
            root,
            layout: Layout::Eyetrack,
            session_dir: None,
            prefix: None,
            fps: 5,
            size: None,
            letterbox: false,
            selection: FrameSelection::Timer,
            encoder: EncoderKind::Ffmpeg,
            passthrough: false,
            overlay_video: true,
            passthrough_queue: 90,
            crf: 23,
            encoder_threads: Some(1),
            flush_every: 30,
            fsync_every: 600,
            bgr_input: false,
            resize: ResizeFilter::Area,
            overlay_mode: OverlayMode::Sprite,
            marker: OverlayStyle {
                hud: false,
                dot_radius: 0,
                ..OverlayStyle::default()
            },
            queue: 8,
            manifest_extra: serde_json::Value::Null,
            streams: streams::StreamsConfig::default(),
        }
    }

    /// Checks, before any streaming, that recordings can be made: the folder exists (or can be
    /// created as a last path component) and is writable, the settings are in range, and the
    /// encoder is there.
    pub fn prepare(&self) -> Result<(), RecordError> {
        if !(1..=30).contains(&self.fps) {
            return Err(RecordError::Config(format!(
                "record fps {} is outside 1..=30",
                self.fps
            )));
        }
        if !(1..=200).contains(&self.streams.eyes_fps) {
            return Err(RecordError::Config(format!(
                "eye video fps {} is outside 1..=200",
                self.streams.eyes_fps
            )));
        }
        if let Some((w, h)) = self.size {
            if !w.is_multiple_of(2) || !h.is_multiple_of(2) || w < 16 || h < 16 {
                return Err(RecordError::Config(format!(
                    "record size {w}x{h} must be even and at least 16x16"
                )));
            }
        }
        if !self.passthrough && !self.overlay_video {
            return Err(RecordError::Config(
                "nothing to record: the overlay video is off and passthrough is not on".into(),
            ));
        }
        if self.overlay_video && self.encoder == EncoderKind::Passthrough {
            return Err(RecordError::Config(
                "the overlay video needs a re-encoding backend (ffmpeg, nvenc or libav), not \
                 passthrough"
                    .into(),
            ));
        }
        if self.overlay_video && self.encoder == EncoderKind::Auto {
            return Err(RecordError::Config(
                "encoder must be resolved before recording".into(),
            ));
        }
        if self.overlay_video || self.streams.eyes {
            self.encoder.check_quality(self.crf)?;
        }
        let root = &self.root;
        if !root.is_dir() {
            let parent = root
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(RecordError::Folder {
                    path: root.clone(),
                    reason: format!("its parent folder {} does not exist", parent.display()),
                });
            }
            std::fs::create_dir(root).map_err(|e| RecordError::Folder {
                path: root.clone(),
                reason: format!("cannot create it: {e}"),
            })?;
        }
        if let Some(p) = &self.prefix {
            layout::check_prefix(p).map_err(RecordError::Config)?;
        }
        if let Some(dir) = &self.session_dir {
            if self.layout != Layout::Logger {
                return Err(RecordError::Config(
                    "a session folder applies to the logger layout only".into(),
                ));
            }
            if !dir.is_dir() {
                std::fs::create_dir(dir).map_err(|e| RecordError::Folder {
                    path: dir.clone(),
                    reason: format!("cannot create the session folder: {e}"),
                })?;
            }
        }
        let probe = root.join(".eyetrack-write-test");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| RecordError::Folder {
                path: root.clone(),
                reason: format!("not writable: {e}"),
            })?;
        if self.overlay_video
            && matches!(self.encoder, EncoderKind::Ffmpeg | EncoderKind::Nvenc)
            && crate::child::find_program(&ffmpeg_sidecar::paths::ffmpeg_path()).is_none()
        {
            return Err(RecordError::Encoder(EncodeError::Missing));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recording folder {path}: {reason}")]
    Folder { path: PathBuf, reason: String },
    #[error("recording: {0}")]
    Config(String),
    #[error("recording encoder: {0}")]
    Encoder(#[from] EncodeError),
    #[error("already recording into {0}")]
    AlreadyRecording(PathBuf),
    #[error("not recording")]
    NotRecording,
    #[error("bad recording name: {0}")]
    BadName(&'static str),
    #[error("recording folder {0} already exists")]
    FolderExists(PathBuf),
    #[error("recording stopped: {0}")]
    Failed(String),
    #[error("the recorder thread is gone")]
    Gone,
}

/// What a finished recording holds.
#[derive(Clone, Debug, Serialize)]
pub struct RecordingSummary {
    pub dir: PathBuf,
    pub layout: Layout,
    /// 1 for the run's first recording, then 2, 3, ... (the logger layout's `trial{NNN}`).
    pub trial: u32,
    pub counts: Counts,
    pub segments: Vec<SegmentSummary>,
    pub csv: CsvSummary,
    /// "stopped" or "error: ..." when a fault ended it.
    pub end: String,
    /// Eye video, audio and status log, when recorded.
    pub streams: Option<streams::StreamsSummary>,
}

/// A processed frame offered to the recorder.
pub(crate) struct RecordJob {
    pub processed: Processed,
    pub meta: FrameMeta,
    pub gaze: Option<MatchedGaze>,
}

/// An access unit of the device's H.264 on its way to the passthrough file.
struct AuJob {
    /// A pooled buffer: returned to the recorder's free list after writing.
    data: Vec<u8>,
    /// Position among the access units offered while recording: a jump means some were lost.
    seq: u64,
    device_time: UnixNanos,
    received: MonoNanos,
    is_idr: bool,
}

enum Command {
    Start(Box<Session>),
    Stop(Sender<Result<RecordingSummary, RecordError>>),
}

/// What `start` prepared for the record thread.
struct Session {
    files: TrialFiles,
    started: UnixNanos,
    spec: EncoderSpec,
    /// `None` when only the passthrough video is recorded.
    encoder: Option<Box<dyn VideoEncoder>>,
    passthrough: bool,
}

#[derive(Default)]
struct State {
    active: Option<PathBuf>,
    /// A recording a fault ended by itself, until someone asks (stop or `last_error`).
    ended: Option<RecordingSummary>,
    last_error: Option<String>,
}

/// The recorder: a handle shared by the pipeline and whoever starts and stops recordings.
pub struct Recorder {
    cfg: RecordConfig,
    scene: (usize, usize),
    control: Arc<Control>,
    counters: Arc<Counters>,
    cmd_tx: Sender<Command>,
    job_tx: Sender<RecordJob>,
    au_tx: Sender<AuJob>,
    /// Access-unit buffers the record thread has finished with; at most `au_pool_cap` exist.
    au_free_tx: Sender<Vec<u8>>,
    au_free_rx: Receiver<Vec<u8>>,
    au_buffers: AtomicUsize,
    au_pool_cap: usize,
    au_seq: AtomicU64,
    /// Access units skipped because the queue was full (the worker turns it into counts).
    au_lost: Arc<AtomicU64>,
    csv_tx: Sender<CsvMsg>,
    state: Arc<Mutex<State>>,
    /// Serializes start and stop between callers; holds the last trial number started.
    lifecycle: Mutex<u32>,
    /// Logger layout: the module folder (`<session>/EyeTracker-Neon`) and the file prefix.
    logger: Option<(PathBuf, String)>,
    /// Offline replays wait for the recorder (every frame is recorded, as every frame goes
    /// through every stage); live runs never wait and count what they had to skip.
    blocking: bool,
    /// Eye video, audio, status log (`None` when the run records none of them).
    streams: Option<streams::StreamRecorder>,
}

/// Why an event did not go into events.csv.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventNotQueued {
    #[error("not recording: events go into a recording's events.csv")]
    NotRecording,
    #[error(
        "the recorder's CSV queue is full (the disk is not keeping up): the event was not \
         recorded (counted in record_events_dropped); try again"
    )]
    QueueFull,
    #[error(
        "the recorder's CSV writer has stopped: the event was not recorded (counted in \
         record_events_dropped)"
    )]
    WriterGone,
}

/// Offers an event row to the CSV writer without blocking; a row it cannot take is counted.
fn queue_event(
    tx: &Sender<CsvMsg>,
    counters: &Counters,
    row: EventRow,
) -> Result<(), EventNotQueued> {
    let refused = match tx.try_send(CsvMsg::Event(row)) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Full(_)) => EventNotQueued::QueueFull,
        Err(TrySendError::Disconnected(_)) => EventNotQueued::WriterGone,
    };
    Counters::add(&counters.record_events_dropped, 1);
    Err(refused)
}

/// Threads behind a [`Recorder`], joined when the pipeline ends.
pub(crate) struct RecorderThreads {
    record: JoinHandle<StageProfile>,
    csv: JoinHandle<()>,
}

/// The CSV queue is deep: rows are small and a slow disk should delay them, not lose them.
const CSV_QUEUE: usize = 16_384;

impl Recorder {
    /// Starts the recorder's threads (idle until `start`). `scene` is the processed frame
    /// size; `camera_fps` the source's nominal rate.
    pub(crate) fn spawn(
        cfg: RecordConfig,
        scene: (usize, usize),
        camera_fps: f64,
        control: Arc<Control>,
        counters: Arc<Counters>,
        profile: StageProfile,
        blocking: bool,
    ) -> Result<(Arc<Recorder>, RecorderThreads), RecordError> {
        let logger = (cfg.layout == Layout::Logger).then(|| {
            let session = cfg
                .session_dir
                .clone()
                .unwrap_or_else(|| cfg.root.join(layout::session_folder_name(UnixNanos::now())));
            let prefix = cfg
                .prefix
                .clone()
                .unwrap_or_else(|| layout::default_prefix(&session));
            (session.join(layout::LOGGER_MODULE), prefix)
        });
        let (cmd_tx, cmd_rx) = bounded::<Command>(4);
        let (job_tx, job_rx) = bounded::<RecordJob>(cfg.queue.max(1));
        // The queue's units, the one being written and the one being filled.
        let au_pool_cap = cfg.passthrough_queue.max(1) + 2;
        let (au_tx, au_rx) = bounded::<AuJob>(cfg.passthrough_queue.max(1));
        let (au_free_tx, au_free_rx) = bounded::<Vec<u8>>(au_pool_cap);
        let au_lost = Arc::new(AtomicU64::new(0));
        let (csv_tx, csv_rx) = bounded::<CsvMsg>(CSV_QUEUE);
        let csv_failed = Arc::new(AtomicU64::new(0));
        let csv_error = Arc::new(Mutex::new(None));
        let state = Arc::new(Mutex::new(State::default()));
        // Before the first thread, so a bad style leaves nothing running.
        let overlay = Overlay::new(cfg.overlay_mode, cfg.marker.clone())
            .map_err(|e| RecordError::Config(format!("gaze circle: {e}")))?;
        let csv = csv_files::spawn_writer(
            csv_rx,
            Arc::clone(&counters),
            Arc::clone(&csv_failed),
            Arc::clone(&csv_error),
        )
        .map_err(|e| RecordError::Config(format!("cannot start the CSV thread: {e}")))?;
        // The eye/audio writers keep their phases in a profile of their own (reported at the
        // end, not in the control API's live histograms).
        let profile_on = profile.enabled();
        let worker = Worker {
            cfg: cfg.clone(),
            scene,
            camera_fps,
            control: Arc::clone(&control),
            counters: Arc::clone(&counters),
            csv_tx: csv_tx.clone(),
            csv_failed,
            csv_error,
            au_free: au_free_tx.clone(),
            au_lost: Arc::clone(&au_lost),
            state: Arc::clone(&state),
            scaler: Scaler::new(cfg.resize),
            overlay,
            profile,
        };
        let record = match std::thread::Builder::new()
            .name("record".into())
            .spawn(move || worker.run(cmd_rx, job_rx, au_rx))
        {
            Ok(t) => t,
            Err(e) => {
                // The CSV thread ends with its last sender: join it rather than leave it.
                drop(csv_tx);
                let _ = csv.join();
                return Err(RecordError::Config(format!(
                    "cannot start the record thread: {e}"
                )));
            }
        };
        let streams = if cfg.streams.any() {
            let spawned = streams::StreamRecorder::spawn(
                cfg.streams.clone(),
                streams::EyeVideoSettings {
                    encoder: cfg.encoder,
                    crf: cfg.crf,
                    selection: cfg.selection,
                    fsync_every: cfg.fsync_every,
                },
                Arc::clone(&control),
                Arc::clone(&counters),
                profile_on,
                blocking,
            );
            match spawned {
                Ok(s) => Some(s),
                Err(e) => {
                    // Ends and joins the threads already started (as `shutdown` does).
                    drop((cmd_tx, job_tx, au_tx));
                    let _ = record.join();
                    drop(csv_tx);
                    let _ = csv.join();
                    return Err(RecordError::Config(format!(
                        "cannot start the record-streams thread: {e}"
                    )));
                }
            }
        } else {
            None
        };
        let recorder = Arc::new(Recorder {
            cfg,
            scene,
            control,
            counters,
            cmd_tx,
            job_tx,
            au_tx,
            au_free_tx,
            au_free_rx,
            au_buffers: AtomicUsize::new(0),
            au_pool_cap,
            au_seq: AtomicU64::new(0),
            au_lost,
            csv_tx,
            state,
            lifecycle: Mutex::new(0),
            logger,
            blocking,
            streams,
        });
        Ok((recorder, RecorderThreads { record, csv }))
    }

    pub fn config(&self) -> &RecordConfig {
        &self.cfg
    }

    /// Tests: puts a full queue that nobody drains in front of the CSV writer (a disk that
    /// stopped answering); returns the real one and the stalled queue's reader, to put back
    /// with [`Recorder::swap_csv_queue`] before `stop`.
    #[cfg(test)]
    pub(crate) fn swap_csv_queue(&mut self, tx: Sender<CsvMsg>) -> Sender<CsvMsg> {
        std::mem::replace(&mut self.csv_tx, tx)
    }

    /// The output frame size.
    pub fn output_size(&self) -> (usize, usize) {
        self.cfg
            .size
            .unwrap_or((self.scene.0 & !1, self.scene.1 & !1))
    }

    /// Starts a new recording (the next trial); returns its folder.
    pub fn start(&self) -> Result<PathBuf, RecordError> {
        self.start_named(None)
    }

    /// Starts a new recording in the folder `name` under the root (a new `rec-<UTC time>` when
    /// `None`). The name must be one plain path component (see
    /// [`session::check_folder_name`]), so no caller can make the recorder write outside the
    /// root; an existing folder is never reused. The logger layout names its trial files
    /// itself and takes no name.
    pub fn start_named(&self, name: Option<&str>) -> Result<PathBuf, RecordError> {
        if let Some(n) = name {
            session::check_folder_name(n).map_err(RecordError::BadName)?;
            if self.logger.is_some() {
                return Err(RecordError::BadName(
                    "the logger layout names its trial files itself: start without a name",
                ));
            }
        }
        let mut last_trial = self.lifecycle.lock().map_err(|_| RecordError::Gone)?;
        if let Some(dir) = self.lock_state()?.active.clone() {
            return Err(RecordError::AlreadyRecording(dir));
        }
        let started = UnixNanos::now();
        let files = match &self.logger {
            None => {
                let created = match name {
                    Some(n) => session::create_named_folder(&self.cfg.root, n),
                    None => session::create_folder(&self.cfg.root, started),
                };
                let dir = created.map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => {
                        RecordError::FolderExists(self.cfg.root.join(name.unwrap_or_default()))
                    }
                    _ => RecordError::Folder {
                        path: self.cfg.root.clone(),
                        reason: format!("cannot create a recording folder: {e}"),
                    },
                })?;
                TrialFiles::eyetrack(&dir, *last_trial + 1)
            }
            Some((dir, prefix)) => {
                std::fs::create_dir_all(dir).map_err(|e| RecordError::Folder {
                    path: dir.clone(),
                    reason: format!("cannot create the module folder: {e}"),
                })?;
                // A session folder a previous run used: go on after its trials, never over them.
                let mut trial = (*last_trial + 1).max(layout::highest_trial(dir, prefix) + 1);
                while TrialFiles::logger(dir, prefix, trial).any_exists() {
                    trial += 1;
                }
                TrialFiles::logger(dir, prefix, trial)
            }
        };
        let dir = files.dir.clone();
        // Rate and size as the control API last set them (`/config`), else as configured.
        let live = self.control.live.get();
        let fps = live.as_ref().map_or(self.cfg.fps, |v| v.record_fps);
        let (w, h) = live
            .as_ref()
            .and_then(|v| v.record_size)
            .unwrap_or_else(|| self.output_size());
        let spec = EncoderSpec {
            width: w,
            height: h,
            fps,
            input: if self.cfg.bgr_input {
                PixelFormat::Bgr24
            } else {
                PixelFormat::I420
            },
            crf: self.cfg.crf,
            threads: self.cfg.encoder_threads,
        };
        let csv = CsvFiles::create_in(
            &files,
            self.cfg.flush_every,
            self.cfg.overlay_video,
            self.cfg.passthrough,
            self.scene,
        )
        .map_err(|e| RecordError::Folder {
            path: dir.clone(),
            reason: format!("cannot create the CSV files: {e}"),
        })?;
        reserve_space(&dir).map_err(|e| RecordError::Folder {
            path: dir.clone(),
            reason: format!("cannot write: {e}"),
        })?;
        if let Some(s) = &self.streams {
            s.start(&files::StreamFiles::for_trial(&files))
                .map_err(|reason| RecordError::Folder {
                    path: dir.clone(),
                    reason,
                })?;
        }
        let encoder = if self.cfg.overlay_video {
            Some(encoder::open(
                self.cfg.encoder,
                &spec,
                &files.segment(FileKind::Scene, 0),
            )?)
        } else {
            None
        };
        let manifest = self.manifest(&files, started, &spec);
        let manifest_path = files.path(FileKind::Manifest);
        session::write_manifest_at(&manifest_path, &manifest).map_err(|e| RecordError::Folder {
            path: dir.clone(),
            reason: format!("cannot write {}: {e}", manifest_path.display()),
        })?;
        self.csv_send(CsvMsg::Open(Box::new(csv)))?;
        self.csv_send(CsvMsg::Event(EventRow::now(
            "recording_start",
            dir.display().to_string(),
        )))?;
        self.cmd_tx
            .send(Command::Start(Box::new(Session {
                files: files.clone(),
                started,
                spec,
                encoder,
                passthrough: self.cfg.passthrough,
            })))
            .map_err(|_| RecordError::Gone)?;
        {
            let mut st = self.lock_state()?;
            st.active = Some(dir.clone());
            st.ended = None;
            st.last_error = None;
        }
        *last_trial = files.trial;
        Counters::add(&self.counters.recordings, 1);
        // Last: frames and samples flow only once the files are open.
        self.control.recording.store(true, Ordering::Relaxed);
        Ok(dir)
    }

    /// Stops the current recording: the encoder finishes its file, the CSVs get their final
    /// flush and fsync, the manifest its end. A recording a fault already ended is returned
    /// with that end.
    pub fn stop(&self) -> Result<RecordingSummary, RecordError> {
        let _guard = self.lifecycle.lock().map_err(|_| RecordError::Gone)?;
        self.control.recording.store(false, Ordering::Relaxed);
        let ended = {
            let mut st = self.lock_state()?;
            if st.active.is_none() {
                Some(st.ended.take().ok_or(RecordError::NotRecording))
            } else {
                None
            }
        };
        let result = match ended {
            Some(r) => r,
            None => {
                let (tx, rx) = bounded(1);
                self.cmd_tx
                    .send(Command::Stop(tx))
                    .map_err(|_| RecordError::Gone)?;
                rx.recv().map_err(|_| RecordError::Gone)?
            }
        };
        // The optional streams end with the scene (a fault that ended the scene early ends
        // them at this stop).
        let extra = self.streams.as_ref().and_then(|s| s.stop());
        result.map(|mut summary| {
            summary.streams = extra;
            summary
        })
    }

    /// An eye picture while recording (`--eyes on`); never blocks a live caller.
    pub(crate) fn eye_frame(&self, frame: Arc<Frame>, meta: FrameMeta) {
        if let Some(s) = &self.streams {
            s.eye_frame(frame, meta);
        }
    }

    /// Decoded audio while recording (`--audio on`); never blocks a live caller.
    pub(crate) fn audio(
        &self,
        block: Arc<crate::streams::AudioBlock>,
        meta: crate::streams::AudioMeta,
    ) {
        if let Some(s) = &self.streams {
            s.audio(block, meta);
        }
    }

    /// The recording in progress, if any.
    pub fn active(&self) -> Option<PathBuf> {
        self.state.lock().ok().and_then(|s| s.active.clone())
    }

    /// The fault that ended the last recording by itself, if any.
    pub fn last_error(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.last_error.clone())
    }

    /// Queues a row for events.csv of the current recording (user events, stream gaps). Never
    /// blocks; an event that cannot be queued is counted (`record_events_dropped`) and the
    /// caller told, so a user's event is never lost behind a success reply.
    pub fn event(
        &self,
        kind: &'static str,
        detail: impl Into<String>,
        device_time: Option<i64>,
    ) -> Result<(), EventNotQueued> {
        self.event_span(kind, detail, device_time, None)
    }

    /// An event with a device-time span (fixations, saccades, blinks): the logger layout's
    /// EVENT file gives its start, end and duration.
    pub fn event_span(
        &self,
        kind: &'static str,
        detail: impl Into<String>,
        device_time: Option<i64>,
        device_end: Option<i64>,
    ) -> Result<(), EventNotQueued> {
        if !self.control.recording.load(Ordering::Relaxed) {
            return Err(EventNotQueued::NotRecording);
        }
        let mut row = EventRow::now(kind, detail);
        row.device_time_ns = device_time;
        row.device_end_ns = device_end;
        queue_event(&self.csv_tx, &self.counters, row)
    }

    /// Gaze and IMU samples from the acquire stage, while recording. Stamped before the
    /// recording flag is read, so a sample that makes it into a recording was taken in before
    /// its stop (the logger layout's record_time columns stay inside the trial).
    pub(crate) fn gaze(&self, g: GazeSample) {
        let t = self.record_time();
        if self.control.recording.load(Ordering::Relaxed) {
            self.csv_try(CsvMsg::Gaze(g, t));
        }
    }

    /// Only the logger layout writes record times; the eyetrack layout skips the clock reads.
    fn record_time(&self) -> RecordTime {
        if self.cfg.layout == Layout::Logger {
            RecordTime::now()
        } else {
            RecordTime::UNSET
        }
    }

    pub(crate) fn imu(&self, s: ImuSample) {
        let t = self.record_time();
        if self.control.recording.load(Ordering::Relaxed) {
            self.csv_try(CsvMsg::Imu(s, t));
        }
    }

    /// Offers a processed frame; never blocks the caller.
    pub(crate) fn offer(&self, job: RecordJob) {
        if !self.cfg.overlay_video || !self.control.recording.load(Ordering::Relaxed) {
            return;
        }
        if self.blocking {
            let _ = self.job_tx.send(job);
            return;
        }
        match self.job_tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => Counters::add(&self.counters.record_queue_full, 1),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// One access unit of the world video as the device sent it, for the passthrough file (see
    /// [`AccessUnitSink`]; a no-op unless recording with passthrough). Copies it into a pooled
    /// buffer and queues it for the record thread. A live caller never waits: when the queue is
    /// full the unit is counted (`record_queue_full`, the manifest's `passthrough_queue_full`)
    /// and the file skips to the next IDR, since the pictures until then refer to the lost one.
    pub fn video_access_unit(
        &self,
        au: &[u8],
        device_time: UnixNanos,
        received: MonoNanos,
        is_idr: bool,
    ) {
        if !self.cfg.passthrough || !self.control.recording.load(Ordering::Relaxed) {
            return;
        }
        let seq = self.au_seq.fetch_add(1, Ordering::Relaxed);
        let Some(mut data) = self.au_buffer() else {
            self.au_skipped();
            return;
        };
        data.clear();
        data.extend_from_slice(au);
        let job = AuJob {
            data,
            seq,
            device_time,
            received,
            is_idr,
        };
        if self.blocking {
            let _ = self.au_tx.send(job);
            return;
        }
        match self.au_tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                self.au_skipped();
                let _ = self.au_free_tx.try_send(job.data);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn au_skipped(&self) {
        Counters::add(&self.counters.record_queue_full, 1);
        self.au_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// A free buffer: a returned one, a new one while fewer than the cap exist, else (live)
    /// none, since every buffer is queued or being written. Offline replays wait for one.
    fn au_buffer(&self) -> Option<Vec<u8>> {
        if let Ok(b) = self.au_free_rx.try_recv() {
            return Some(b);
        }
        let grown = self
            .au_buffers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.au_pool_cap).then_some(n + 1)
            })
            .is_ok();
        if grown {
            return Some(Vec::new());
        }
        if self.blocking {
            return self.au_free_rx.recv().ok();
        }
        None
    }

    fn csv_try(&self, msg: CsvMsg) {
        if self.blocking {
            let _ = self.csv_tx.send(msg);
            return;
        }
        if let Err(TrySendError::Full(_)) = self.csv_tx.try_send(msg) {
            Counters::add(&self.counters.record_queue_full, 1);
        }
    }

    fn csv_send(&self, msg: CsvMsg) -> Result<(), RecordError> {
        self.csv_tx.send(msg).map_err(|_| RecordError::Gone)
    }

    fn lock_state(&self) -> Result<std::sync::MutexGuard<'_, State>, RecordError> {
        self.state.lock().map_err(|_| RecordError::Gone)
    }

    fn manifest(&self, files: &TrialFiles, started: UnixNanos, spec: &EncoderSpec) -> Manifest {
        let (w, h) = (spec.width, spec.height);
        let config = serde_json::json!({
            "fps": spec.fps,
            "size": [w, h],
            "frame_selection": self.cfg.selection,
            "encoder": self.cfg.encoder,
            "passthrough": self.cfg.passthrough,
            "overlay_video": self.cfg.overlay_video,
            "passthrough_queue": self.cfg.passthrough_queue,
            "crf": self.cfg.crf,
            "container": encoder::Container::for_path(&files.path(FileKind::Scene)).muxer(),
            "flush_every": self.cfg.flush_every,
            "fsync_every": self.cfg.fsync_every,
            "input": if self.cfg.bgr_input { "bgr24" } else { "i420" },
            "eyes": self.cfg.streams.eyes,
            "eyes_fps": self.cfg.streams.eyes_fps,
            "audio": self.cfg.streams.audio,
            "status_log_s": self.cfg.streams.status.as_ref().map(|f| f.interval.as_secs_f64()),
            "run": self.cfg.manifest_extra,
        });
        Manifest {
            schema_version: session::SCHEMA_VERSION,
            id: manifest_id(files),
            layout: files.layout,
            trial: files.trial,
            started_unix_ns: started.0,
            started_utc: session::utc(started),
            stopped_unix_ns: None,
            stopped_utc: None,
            end: "recording".into(),
            config,
            counts: Counts::default(),
            segments: Vec::new(),
            csv: CsvSummary::default(),
        }
    }

    /// Stops a recording still running when the pipeline ends, then ends the threads.
    pub(crate) fn shutdown(
        self: Arc<Self>,
        threads: RecorderThreads,
    ) -> (StageProfile, Option<RecordingSummary>) {
        let summary = if self.active().is_some() {
            self.stop().ok()
        } else {
            None
        };
        let Recorder {
            cmd_tx,
            job_tx,
            au_tx,
            csv_tx,
            streams,
            ..
        } = match Arc::try_unwrap(self) {
            Ok(r) => r,
            // Someone still holds the handle (a control API): the threads end when it drops.
            Err(_) => return (StageProfile::new(false), summary),
        };
        drop((cmd_tx, job_tx, au_tx));
        let mut profile = threads
            .record
            .join()
            .unwrap_or_else(|_| StageProfile::new(false));
        if let Some(s) = streams {
            profile.merge(&s.shutdown());
        }
        drop(csv_tx);
        let _ = threads.csv.join();
        (profile, summary)
    }
}

/// Fills `out` (`size`, format `fmt`) with black and copies `picture` in at `at` (even
/// offsets). Per frame, into buffers sized once: a memset and a row copy, no allocation.
fn letterbox_into(
    out: &mut Frame,
    picture: &FrameView<'_>,
    fmt: PixelFormat,
    size: (usize, usize),
    at: (usize, usize),
) {
    out.reset(fmt, size.0, size.1);
    let planes = fmt.plane_count();
    for i in 0..planes {
        let black = match (fmt, i) {
            (PixelFormat::I420, 0) => 16,
            (PixelFormat::I420, _) => 128,
            _ => 0,
        };
        let (px, py) = if fmt == PixelFormat::I420 && i > 0 {
            (at.0 / 2, at.1 / 2)
        } else {
            (at.0, at.1)
        };
        let bpp = if fmt.is_packed() {
            fmt.bytes_per_pixel()
        } else {
            1
        };
        let src = picture.plane(i);
        let mut dst = out.plane_mut(i);
        dst.fill(black);
        for y in 0..src.height.min(dst.height.saturating_sub(py)) {
            let row = src.row(y);
            let Some(d) = dst.row_mut(y + py).get_mut(px * bpp..px * bpp + row.len()) else {
                break;
            };
            d.copy_from_slice(row);
        }
    }
}

/// Room set aside in each recording folder at start and given back at the end, so that on a
/// full disk the final CSV flush and the closing manifest still fit.
const RESERVE: &str = ".eyetrack-reserve";
const RESERVE_BYTES: usize = 256 * 1024;

fn reserve_space(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join(RESERVE))?;
    f.write_all(&vec![0u8; RESERVE_BYTES])?;
    f.sync_data()
}

/// The manifest's `id`: the recording folder's name (eyetrack) or `{prefix}_trial{NNN}`.
fn manifest_id(files: &TrialFiles) -> String {
    match files.layout {
        Layout::Eyetrack => files
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Layout::Logger => format!("{}_trial{:03}", files.prefix, files.trial),
    }
}

impl AccessUnitSink for Recorder {
    fn access_unit(&self, au: &[u8], device_time: UnixNanos, received: MonoNanos, is_idr: bool) {
        self.video_access_unit(au, device_time, received, is_idr);
    }
}

/// The record thread's own state.
struct Worker {
    cfg: RecordConfig,
    /// The processed scene size gaze coordinates refer to.
    scene: (usize, usize),
    camera_fps: f64,
    control: Arc<Control>,
    counters: Arc<Counters>,
    csv_tx: Sender<CsvMsg>,
    csv_failed: Arc<AtomicU64>,
    csv_error: Arc<Mutex<Option<String>>>,
    au_free: Sender<Vec<u8>>,
    au_lost: Arc<AtomicU64>,
    state: Arc<Mutex<State>>,
    scaler: Scaler,
    overlay: Overlay,
    profile: StageProfile,
}

/// One recording in progress, on the record thread.
struct Active {
    dir: PathBuf,
    files: TrialFiles,
    started: UnixNanos,
    spec: EncoderSpec,
    encoder: Option<Box<dyn VideoEncoder>>,
    segment: u32,
    segments: Vec<SegmentSummary>,
    selector: Selector,
    /// The last output frame (scaled, with its gaze circle): what a repeat writes again.
    out: Frame,
    scaled: Frame,
    /// The scaled picture in the encoder's format, for a letterboxed output.
    converted: Frame,
    last: Option<(FrameMeta, Option<MatchedGaze>)>,
    counts: Counts,
    /// The device's H.264, when recorded.
    passthrough: Option<Passthrough>,
    since_sync: u32,
    /// Access units written since the last sync.
    since_sync_aus: u32,
    queue_full_seen: u64,
    video_bytes_seen: u64,
    /// Encoder deaths in the last minute: a crash loop ends the recording instead.
    restarts: Vec<Instant>,
}

/// The passthrough side of a recording.
struct Passthrough {
    remux: Remuxer,
    /// `seq` of the last access unit taken from the queue.
    last_seq: Option<u64>,
    /// The recorder's lost-unit count already in `counts`.
    lost_seen: u64,
}

/// More encoder deaths than this within a minute is not a fluke: stop recording.
const MAX_RESTARTS_PER_MINUTE: usize = 5;

impl Worker {
    fn run(
        mut self,
        cmd_rx: Receiver<Command>,
        job_rx: Receiver<RecordJob>,
        au_rx: Receiver<AuJob>,
    ) -> StageProfile {
        let mut active: Option<Active> = None;
        loop {
            select! {
                recv(cmd_rx) -> cmd => match cmd {
                    Ok(Command::Start(s)) => {
                        if let Some(a) = active.take() {
                            // Start without stop cannot happen through Recorder; be safe.
                            let _ = self.finish(a, "stopped".into());
                        }
                        active = Some(self.begin(*s));
                    }
                    Ok(Command::Stop(reply)) => {
                        // Frames queued before the stop belong to this recording (at the end of
                        // an offline replay the last queue-full of frames would be lost).
                        while let Ok(job) = job_rx.try_recv() {
                            self.take_job(&mut active, job);
                        }
                        // Access units queued before the stop belong to this recording.
                        while let Ok(job) = au_rx.try_recv() {
                            self.take_au(&mut active, job);
                        }
                        let result = match active.take() {
                            Some(a) => Ok(self.finish(a, "stopped".into())),
                            None => self
                                .state
                                .lock()
                                .ok()
                                .and_then(|mut s| s.ended.take())
                                .ok_or(RecordError::NotRecording),
                        };
                        let _ = reply.send(result);
                    }
                    Err(_) => break,
                },
                recv(job_rx) -> job => match job {
                    Ok(job) => self.take_job(&mut active, job),
                    Err(_) => break,
                },
                recv(au_rx) -> job => match job {
                    Ok(job) => self.take_au(&mut active, job),
                    Err(_) => break,
                },
            }
        }
        if let Some(a) = active.take() {
            let _ = self.finish(a, "stopped".into());
        }
        self.profile
    }

    /// One offered frame into the active recording; a fault ends the recording.
    fn take_job(&mut self, active: &mut Option<Active>, job: RecordJob) {
        if let Some(a) = active.as_mut() {
            if let Err(fault) = self.record(a, job) {
                if let Some(a) = active.take() {
                    self.fail(a, fault);
                }
            }
        }
    }

    /// One access unit into the active passthrough file; its buffer goes back to the pool.
    fn take_au(&mut self, active: &mut Option<Active>, job: AuJob) {
        if let Some(a) = active.as_mut() {
            if let Err(fault) = self.passthrough(a, &job) {
                if let Some(a) = active.take() {
                    self.fail(a, fault);
                }
            }
        }
        let _ = self.au_free.try_send(job.data);
    }

    fn begin(&mut self, s: Session) -> Active {
        let fmt = s.spec.input;
        let passthrough = s.passthrough.then(|| Passthrough {
            remux: Remuxer::with_files(s.files.clone()),
            last_seq: None,
            lost_seen: self.au_lost.load(Ordering::Relaxed),
        });
        Active {
            dir: s.files.dir.clone(),
            files: s.files,
            started: s.started,
            selector: Selector::new(self.cfg.selection, s.spec.fps, self.camera_fps),
            out: Frame::new(fmt, s.spec.width, s.spec.height),
            scaled: Frame::new(fmt, 2, 2),
            converted: Frame::new(fmt, 2, 2),
            spec: s.spec,
            encoder: s.encoder,
            segment: 0,
            segments: Vec::new(),
            last: None,
            counts: Counts::default(),
            passthrough,
            since_sync: 0,
            since_sync_aus: 0,
            queue_full_seen: self.counters.snapshot().record_queue_full,
            video_bytes_seen: 0,
            restarts: Vec::new(),
        }
    }

    /// Handles one offered camera frame. An `Err` is a fault that ends the recording.
    fn record(&mut self, a: &mut Active, job: RecordJob) -> Result<(), String> {
        a.counts.camera_frames += 1;
        self.check_faults(a)?;
        let decision = a
            .selector
            .offer(job.meta.device_time, job.meta.camera_index);
        if decision.emit == 0 {
            return Ok(());
        }
        if let Some((meta, gaze)) = a.last {
            for _ in 0..decision.repeat_previous {
                self.write(a, meta, gaze, true)?;
            }
        }
        let span = self.profile.start();
        let built = self.build(a, &job.processed.view(), job.gaze);
        self.profile.finish(Phase::Record, span);
        built?;
        a.last = Some((job.meta, job.gaze));
        self.write(a, job.meta, job.gaze, false)
    }

    /// Writes one access unit of the device's H.264 to the passthrough file. An `Err` is a fault
    /// that ends the recording (the muxer writes to a local file: its errors are I/O errors).
    fn passthrough(&mut self, a: &mut Active, job: &AuJob) -> Result<(), String> {
        if a.passthrough.is_none() {
            return Ok(());
        }
        self.check_faults(a)?;
        let Some(p) = a.passthrough.as_mut() else {
            return Ok(());
        };
        a.counts.passthrough_received += 1;
        let lost_total = self.au_lost.load(Ordering::Relaxed);
        a.counts.passthrough_queue_full += lost_total.saturating_sub(p.lost_seen);
        p.lost_seen = lost_total;
        // Units missing between this one and the previous: the file skips to the next IDR.
        let lost = p
            .last_seq
            .map_or(0, |prev| job.seq.saturating_sub(prev.saturating_add(1)));
        p.last_seq = Some(job.seq);
        if lost > 0 {
            p.remux.discontinuity();
        }
        let span = self.profile.start();
        let pushed = p.remux.push(&job.data, job.device_time, job.is_idr);
        self.profile.finish(Phase::Encode, span);
        let pushed = pushed.map_err(|e| format!("passthrough: {e}"))?;
        let write_mono = MonoNanos::now();
        if lost > 0 {
            self.event(
                "passthrough_skipped",
                format!(
                    "{lost} access unit(s) lost: the passthrough queue was full; the video \
                     resumes at the next IDR"
                ),
            );
        }
        let w = match pushed {
            Pushed::Written(w) => w,
            Pushed::Dropped(Dropped::Empty) => return Ok(()),
            Pushed::Dropped(Dropped::BeforeIdr | Dropped::NoParameterSets) => {
                a.counts.passthrough_dropped_before_idr += 1;
                return Ok(());
            }
        };
        if let Some(o) = w.opened {
            a.counts.passthrough_segments += 1;
            let file = encoder::ffmpeg::file_name(&a.files.segment(FileKind::Passthrough, o.index));
            let (kind, why) = match o.reason {
                OpenReason::First => (
                    "passthrough_start",
                    format!(
                        "after {} access unit(s) before the first IDR",
                        a.counts.passthrough_dropped_before_idr
                    ),
                ),
                OpenReason::ParameterSetsChanged => {
                    ("passthrough_segment", "the SPS/PPS changed".to_owned())
                }
            };
            self.event_at(
                kind,
                Some(job.device_time),
                format!("{file}: {}x{} H.264 as sent, {why}", o.width, o.height),
            );
        }
        if let Some(gap) = w.gap_ns {
            self.event_at(
                "gap",
                Some(job.device_time),
                format!(
                    "{:.3} s of device time without video before this access unit \
                     (passthrough segment {}, pts {} ms)",
                    gap as f64 / 1e9,
                    w.segment,
                    w.pts_ms
                ),
            );
        }
        // Small steps back (a reordering stream's capture times) only shift pts; a clock
        // jump is worth a row.
        if let Some(back) = w
            .backwards_ns
            .filter(|&b| b >= encoder::passthrough::GAP_MIN_NS)
        {
            self.event_at(
                "time_backwards",
                Some(job.device_time),
                format!(
                    "device time went back {:.3} s; passthrough segment {} goes on at pts {} ms",
                    back as f64 / 1e9,
                    w.segment,
                    w.pts_ms
                ),
            );
        }
        let row = PassthroughRow {
            au_index: a.counts.passthrough_written,
            segment: w.segment,
            pts_ms: w.pts_ms,
            device_time_ns: job.device_time.0,
            received_mono_ns: job.received.0,
            write_mono_ns: write_mono.0,
            write_unix_ns: UnixNanos::now().0,
            bytes: job.data.len() as u64,
            idr: job.is_idr as u8,
        };
        let _ = self.csv_tx.send(CsvMsg::Passthrough(row));
        a.counts.passthrough_written += 1;
        Counters::add(&self.counters.record_frames, 1);
        a.since_sync_aus += 1;
        if self.cfg.fsync_every > 0 && a.since_sync_aus >= self.cfg.fsync_every {
            self.sync(a)?;
        }
        Ok(())
    }

    /// Faults other threads noticed: a CSV write failed (full disk), frames were skipped
    /// because the queue was full (logged, the recording goes on).
    fn check_faults(&mut self, a: &mut Active) -> Result<(), String> {
        if self.csv_failed.load(Ordering::Relaxed) > 0 {
            let e = self
                .csv_error
                .lock()
                .ok()
                .and_then(|mut s| s.take())
                .unwrap_or_else(|| "a CSV write failed".into());
            self.csv_failed.store(0, Ordering::Relaxed);
            return Err(e);
        }
        let full = self.counters.snapshot().record_queue_full;
        if full > a.queue_full_seen {
            let n = full - a.queue_full_seen;
            a.queue_full_seen = full;
            a.counts.queue_full += n;
            self.event(
                "queue_full",
                format!(
                    "{n} frame(s), sample(s) or access unit(s) skipped: a recorder queue was full"
                ),
            );
        }
        Ok(())
    }

    /// Scales (or copies) the processed frame into the output frame and draws the gaze.
    fn build(
        &mut self,
        a: &mut Active,
        src: &FrameView<'_>,
        gaze: Option<MatchedGaze>,
    ) -> Result<(), String> {
        let (w, h) = (a.spec.width, a.spec.height);
        let fmt = a.spec.input;
        // The picture's place in the output: all of it, or the letterbox's inner rectangle.
        let (iw, ih, ox, oy) = if self.cfg.letterbox {
            let (iw, ih) = crate::preview::fit_size(src.width, src.height, w, h);
            (
                iw,
                ih,
                ((w - iw.min(w)) / 2) & !1,
                ((h - ih.min(h)) / 2) & !1,
            )
        } else {
            (w, h, 0, 0)
        };
        let scaled_src;
        let src = if src.width == iw && src.height == ih {
            src
        } else {
            self.scaler
                .scale(src, &mut a.scaled, iw, ih)
                .map_err(|e| format!("scaling to {iw}x{ih}: {e}"))?;
            scaled_src = a.scaled.view();
            &scaled_src
        };
        if (iw, ih) == (w, h) {
            if src.format == fmt {
                a.out.reset(fmt, w, h);
                a.out.copy_from(src);
            } else {
                color::convert(src, &mut a.out, fmt).map_err(|e| format!("colour: {e}"))?;
            }
        } else {
            let converted_src;
            let picture = if src.format == fmt {
                src
            } else {
                color::convert(src, &mut a.converted, fmt).map_err(|e| format!("colour: {e}"))?;
                converted_src = a.converted.view();
                &converted_src
            };
            letterbox_into(&mut a.out, picture, fmt, (w, h), (ox, oy));
        }
        if let Some(g) = gaze {
            let sx = iw as f32 / self.scene.0.max(1) as f32;
            let sy = ih as f32 / self.scene.1.max(1) as f32;
            self.overlay
                .draw_gaze(
                    &mut a.out,
                    ox as f32 + g.sample.x * sx,
                    oy as f32 + g.sample.y * sy,
                    g.sample.worn,
                )
                .map_err(|e| format!("gaze circle: {e}"))?;
        }
        Ok(())
    }

    /// Encodes the current output frame and writes its timing row.
    fn write(
        &mut self,
        a: &mut Active,
        meta: FrameMeta,
        gaze: Option<MatchedGaze>,
        repeat: bool,
    ) -> Result<(), String> {
        let span = self.profile.start();
        let result = match a.encoder.as_mut() {
            Some(enc) => enc.encode(&a.out.view()),
            None => Err(EncodeError::Died {
                status: "not running".into(),
                tail: String::new(),
            }),
        };
        self.profile.finish(Phase::Encode, span);
        if let Err(e) = result {
            return self.encoder_fault(a, e);
        }
        let row = TimingRow {
            output_index: a.counts.frames,
            camera_index: meta.camera_index,
            device_time_ns: meta.device_time.0,
            received_mono_ns: meta.received_mono.0,
            write_unix_ns: UnixNanos::now().0,
            write_mono_ns: MonoNanos::now().0,
            repeat: repeat as u8,
            gaze_x_px: gaze.map(|g| g.sample.x),
            gaze_y_px: gaze.map(|g| g.sample.y),
            gaze_worn: gaze.map(|g| g.sample.worn as u8),
            gaze_dt_ns: gaze.map(|g| g.dt_ns),
        };
        let _ = self.csv_tx.send(CsvMsg::Timing(row));
        a.counts.frames += 1;
        Counters::add(&self.counters.record_frames, 1);
        if repeat {
            a.counts.repeats += 1;
            Counters::add(&self.counters.record_repeats, 1);
        }
        a.since_sync += 1;
        if self.cfg.fsync_every > 0 && a.since_sync >= self.cfg.fsync_every {
            self.sync(a)?;
        }
        Ok(())
    }

    /// Plan 1.4: the videos and every CSV reach the disk together.
    fn sync(&mut self, a: &mut Active) -> Result<(), String> {
        a.since_sync = 0;
        a.since_sync_aus = 0;
        let mut said = Vec::with_capacity(2);
        if let Some(p) = a.passthrough.as_mut() {
            let n = p.remux.sync().map_err(|e| format!("passthrough: {e}"))?;
            if let Some(path) = p.remux.current_path() {
                said.push(format!(
                    "{} holds {n} access units",
                    encoder::ffmpeg::file_name(path)
                ));
            }
        }
        if a.encoder.is_some() {
            let durable = match a.encoder.as_mut().map(|e| e.sync()) {
                Some(Ok(n)) => n,
                Some(Err(e)) if e.is_fatal() => return Err(e.to_string()),
                Some(Err(e)) => return self.encoder_fault(a, e),
                None => 0,
            };
            let seg = a.files.segment(FileKind::Scene, a.segment);
            said.push(format!(
                "{} holds {durable} frames",
                encoder::ffmpeg::file_name(&seg)
            ));
        }
        Counters::add(&self.counters.record_fsyncs, 1);
        a.counts.fsyncs += 1;
        self.update_video_bytes(a);
        self.event("fsync", format!("{} on disk", said.join(", ")));
        let _ = self.csv_tx.send(CsvMsg::Sync);
        Ok(())
    }

    fn update_video_bytes(&mut self, a: &mut Active) {
        let now: u64 = a.segments.iter().map(|s| s.bytes).sum::<u64>()
            + a.encoder.as_ref().map_or(0, |e| e.bytes_written())
            + a.passthrough
                .as_ref()
                .map_or(0, |p| p.remux.bytes_written());
        Counters::add(
            &self.counters.record_video_bytes,
            now.saturating_sub(a.video_bytes_seen),
        );
        a.video_bytes_seen = a.video_bytes_seen.max(now);
    }

    /// An encoder that died is replaced by a new segment (the gap goes to events.csv); one
    /// that cannot go on (full disk, crash loop) ends the recording.
    fn encoder_fault(&mut self, a: &mut Active, e: EncodeError) -> Result<(), String> {
        a.counts.lost_to_encoder += 1;
        let old = a.files.segment(FileKind::Scene, a.segment);
        if let Some(enc) = a.encoder.take() {
            a.segments.push(SegmentSummary {
                file: encoder::ffmpeg::file_name(&old),
                frames: 0,
                bytes: enc.bytes_written(),
                end: format!("error: {e}"),
            });
            drop(enc);
        }
        if e.is_fatal() {
            return Err(e.to_string());
        }
        let died_at = UnixNanos::now();
        self.event("encoder_died", e.to_string());
        tracing::warn!(error = %e, "the encoder died; restarting it into a new segment");
        a.restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
        if a.restarts.len() >= MAX_RESTARTS_PER_MINUTE {
            return Err(format!(
                "the encoder died {} times within a minute; last: {e}",
                a.restarts.len() + 1
            ));
        }
        a.restarts.push(Instant::now());
        a.segment += 1;
        let path = a.files.segment(FileKind::Scene, a.segment);
        let enc = encoder::open(self.cfg.encoder, &a.spec, &path).map_err(|e| e.to_string())?;
        a.encoder = Some(enc);
        Counters::add(&self.counters.encoder_restarts, 1);
        a.counts.encoder_restarts += 1;
        let gap_ms = UnixNanos::now().delta_ns(died_at) as f64 / 1e6;
        tracing::info!(gap_ms, file = %path.display(), "the encoder restarted");
        self.event(
            "encoder_restart",
            format!(
                "new segment {} from output frame {}, {gap_ms:.1} ms to restart; the frame that \
                 failed and those still inside the dead encoder (pipe and open cluster, at most \
                 about 1 s) are missing from the old segment",
                encoder::ffmpeg::file_name(&path),
                a.counts.frames
            ),
        );
        Ok(())
    }

    fn event(&self, kind: &'static str, detail: String) {
        self.event_at(kind, None, detail);
    }

    fn event_at(&self, kind: &'static str, device_time: Option<UnixNanos>, detail: String) {
        let mut row = EventRow::now(kind, detail);
        row.device_time_ns = device_time.map(|t| t.0);
        let _ = self.csv_tx.send(CsvMsg::Event(row));
    }

    /// Ends a recording cleanly (stop) or after a fault; writes the final manifest.
    fn finish(&mut self, mut a: Active, end: String) -> RecordingSummary {
        let mut end = end;
        let _ = std::fs::remove_file(a.dir.join(RESERVE));
        if let Some(enc) = a.encoder.take() {
            let path = enc.path().to_owned();
            match enc.finish() {
                Ok(mut s) if s.frames == 0 => {
                    // Stopped before any frame came (e.g. start then stop over the API at
                    // launch): the muxer wrote only a header, which ffprobe rejects. No video
                    // is the honest record; the manifest says so.
                    let _ = std::fs::remove_file(&path);
                    s.bytes = 0;
                    s.end = "empty: no frame arrived, file removed".into();
                    a.segments.push(s);
                }
                Ok(s) => a.segments.push(s),
                Err(e) => {
                    a.segments.push(SegmentSummary {
                        file: encoder::ffmpeg::file_name(&path),
                        frames: 0,
                        bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                        end: format!("error: {e}"),
                    });
                    if end == "stopped" {
                        end = format!("error: {e}");
                    }
                }
            }
        }
        if let Some(p) = a.passthrough.take() {
            let lost_total = self.au_lost.load(Ordering::Relaxed);
            a.counts.passthrough_queue_full += lost_total.saturating_sub(p.lost_seen);
            let segs = p.remux.finish();
            if let Some(bad) = segs.iter().find(|s| s.end != "finished") {
                if end == "stopped" {
                    end = format!("{}: {}", bad.file, bad.end);
                }
            }
            a.segments.extend(segs);
        }
        self.update_video_bytes(&mut a);
        self.event("recording_stop", end.clone());
        let (tx, rx) = bounded(1);
        let csv = match self.csv_tx.send(CsvMsg::Close(tx)) {
            Ok(()) => match rx.recv() {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    if end == "stopped" {
                        end = format!("error: {e}");
                    }
                    CsvSummary::default()
                }
                Err(_) => CsvSummary::default(),
            },
            Err(_) => CsvSummary::default(),
        };
        // A CSV failure noticed only at close still belongs to this recording.
        self.csv_failed.store(0, Ordering::Relaxed);
        let stopped = UnixNanos::now();
        let manifest = Manifest {
            schema_version: session::SCHEMA_VERSION,
            id: manifest_id(&a.files),
            layout: a.files.layout,
            trial: a.files.trial,
            started_unix_ns: a.started.0,
            started_utc: session::utc(a.started),
            stopped_unix_ns: Some(stopped.0),
            stopped_utc: Some(session::utc(stopped)),
            end: end.clone(),
            config: self.manifest_config(&a),
            counts: a.counts,
            segments: a.segments.clone(),
            csv,
        };
        let manifest_path = a.files.path(FileKind::Manifest);
        if let Err(e) = session::write_manifest_at(&manifest_path, &manifest) {
            if end == "stopped" {
                end = format!("error: writing {}: {e}", manifest_path.display());
            }
        }
        if let Ok(mut st) = self.state.lock() {
            st.active = None;
        }
        RecordingSummary {
            dir: a.dir,
            layout: a.files.layout,
            trial: a.files.trial,
            counts: a.counts,
            segments: a.segments,
            csv,
            end,
            streams: None,
        }
    }

    fn manifest_config(&self, a: &Active) -> serde_json::Value {
        // The manifest written at start holds the full configuration; keep it.
        std::fs::read(a.files.path(FileKind::Manifest))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("config").cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    /// A fault ended the recording: finish what can be finished, keep streaming.
    fn fail(&mut self, a: Active, fault: String) {
        self.control.recording.store(false, Ordering::Relaxed);
        let summary = self.finish(a, format!("error: {fault}"));
        if let Ok(mut st) = self.state.lock() {
            st.last_error = Some(fault);
            st.ended = Some(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::annexb::{contains_idr, split_access_units};

    /// A 4:3 picture in a 16:9 frame: black bars left and right, the picture in the middle.
    #[test]
    fn letterbox_centres_the_picture_between_black_bars() {
        let mut pic = Frame::new(PixelFormat::I420, 8, 6);
        for i in 0..3 {
            pic.plane_mut(i).fill(200);
        }
        let mut out = Frame::new(PixelFormat::I420, 2, 2);
        let (iw, ih) = crate::preview::fit_size(8, 6, 16, 6);
        assert_eq!((iw, ih), (8, 6));
        letterbox_into(&mut out, &pic.view(), PixelFormat::I420, (16, 6), (4, 0));
        let y = out.plane(0);
        for r in 0..6 {
            assert_eq!(&y.row(r)[..4], &[16; 4]);
            assert_eq!(&y.row(r)[4..12], &[200; 8]);
            assert_eq!(&y.row(r)[12..], &[16; 4]);
        }
        let u = out.plane(1);
        assert_eq!(u.row(0), &[128, 128, 200, 200, 200, 200, 128, 128]);
    }

    /// An event the CSV writer cannot take (queue full behind a stalled disk, or the writer
    /// gone) is refused and counted, never dropped silently.
    #[test]
    fn an_event_that_cannot_be_queued_is_refused_and_counted() {
        let counters = Counters::default();
        let (tx, rx) = bounded::<CsvMsg>(1);
        let row = || EventRow::now("user", "marker");
        assert_eq!(queue_event(&tx, &counters, row()), Ok(()));
        assert_eq!(
            queue_event(&tx, &counters, row()),
            Err(EventNotQueued::QueueFull)
        );
        assert_eq!(counters.snapshot().record_events_dropped, 1);
        drop(rx);
        assert_eq!(
            queue_event(&tx, &counters, row()),
            Err(EventNotQueued::WriterGone)
        );
        assert_eq!(counters.snapshot().record_events_dropped, 2);
    }

    /// A recording stopped before its first frame leaves no header-only video that players
    /// and ffprobe reject; its CSVs and manifest are still there.
    #[test]
    fn a_recording_without_frames_leaves_no_unreadable_video() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = RecordConfig::new(root.path().to_owned());
        cfg.fsync_every = 0;
        cfg.prepare().unwrap();
        let (rec, threads) = Recorder::spawn(
            cfg,
            (320, 240),
            30.0,
            Arc::new(Control::default()),
            Arc::new(Counters::default()),
            StageProfile::new(false),
            false,
        )
        .unwrap();
        rec.start().unwrap();
        let s = rec.stop().unwrap();
        assert_eq!(s.end, "stopped");
        assert_eq!(s.segments.len(), 1);
        assert_eq!(s.segments[0].frames, 0);
        assert!(
            s.segments[0].end.starts_with("empty"),
            "{:?}",
            s.segments[0]
        );
        assert!(!s.dir.join("scene_000.mkv").exists());
        let check = verify::check_folder(&s.dir).unwrap();
        assert!(check.videos.is_empty(), "{check:?}");
        assert_eq!(check.problems(), Vec::<String>::new());
        assert_eq!(check.end.as_deref(), Some("stopped"));
        let _ = rec.shutdown(threads);
    }

    /// A live source hands over access units faster than they are written: the ones that do
    /// not fit are counted, the file skips to the next IDR after each loss, and what it holds
    /// decodes without a single error.
    #[test]
    fn a_full_passthrough_queue_skips_to_the_next_idr() {
        let clip = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/h264/testsrc2-320x180-main.h264"),
        )
        .unwrap();
        let aus: Vec<&[u8]> = split_access_units(&clip).collect();
        let root = tempfile::tempdir().unwrap();
        let mut cfg = RecordConfig::new(root.path().to_owned());
        cfg.passthrough = true;
        cfg.overlay_video = false;
        cfg.passthrough_queue = 1;
        cfg.fsync_every = 0;
        cfg.prepare().unwrap();
        let counters = Arc::new(Counters::default());
        let (rec, threads) = Recorder::spawn(
            cfg,
            (320, 180),
            30.0,
            Arc::new(Control::default()),
            Arc::clone(&counters),
            StageProfile::new(false),
            false,
        )
        .unwrap();
        rec.start().unwrap();
        let laps = 20;
        let mut k = 0i64;
        for _ in 0..laps {
            for au in &aus {
                let idr = contains_idr(au);
                if idr {
                    // each GOP arrives as one burst, after the queue had time to drain
                    std::thread::sleep(Duration::from_millis(20));
                }
                let t = UnixNanos(1_767_225_600_000_000_000 + k * 33_333_333);
                rec.video_access_unit(au, t, MonoNanos::now(), idr);
                k += 1;
            }
        }
        let s = rec.stop().unwrap();
        let c = s.counts;
        let offered = (laps * aus.len()) as u64;
        assert_eq!(c.passthrough_received + c.passthrough_queue_full, offered);
        assert_eq!(
            c.passthrough_written + c.passthrough_dropped_before_idr,
            c.passthrough_received
        );
        assert!(c.passthrough_queue_full > 0, "{c:?}");
        assert!(c.passthrough_written > 0, "{c:?}");
        assert!(counters.snapshot().record_queue_full >= c.passthrough_queue_full);
        let video = s.dir.join("scene_passthrough_000.mkv");
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&video)
            .args(["-f", "framemd5", "-"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "clean decode");
        let frames = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count() as u64;
        assert_eq!(frames, c.passthrough_written);
        let events = std::fs::read_to_string(s.dir.join("events.csv")).unwrap();
        assert!(events.contains("passthrough_skipped"));
        let _ = rec.shutdown(threads);
    }
}
