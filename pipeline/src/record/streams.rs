//! Recording of the optional streams beside the scene video: the eye video at its own rate
//! into its own crash-safe video (Matroska, or fragmented MP4 as the logger layout's `.mp4`
//! name asks) with a timing CSV, the scene microphone into WAV with
//! a timing CSV ([`super::wav`]), and the device status log (`--status-log`).
//!
//! One `record-streams` thread writes the eye video and the audio, so neither ever waits on the
//! scene encoder; a `status-log` thread polls the device's `/api/status`. The eye pictures are
//! selected on the caller's (acquire) thread with the scene's [`Selector`], so of the camera's
//! 200 pictures a second only the recorded ones are queued. File names come from
//! [`StreamFiles`]; start and stop follow the scene recording's ([`super::Recorder`]).
//!
//! In the logger layout the timing and status rows have the logger's columns
//! ([`super::csv_files`]); their `record_time_*` is when the host took the picture, block or
//! status in, stamped before the recording flag is read (as gaze is), so every row of a trial
//! lies between its recording_start and recording_stop events.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::Serialize;

use super::csv_files::{
    stream_csv, LoggerFrameRow, LoggerStatusRow, RecordTime, Secs6, Secs9,
    LOGGER_EYES_TIMING_HEADER, LOGGER_STATUS_HEADER,
};
use super::encoder::{self, EncoderKind, EncoderSpec, VideoEncoder};
use super::files::StreamFiles;
use super::layout::LOGGER_MODULE;
use super::select::{FrameSelection, Selector};
use super::wav::{AudioSummary, WavRecorder};
use crate::frame::{Frame, PixelFormat};
use crate::packet::FrameMeta;
use crate::profile::{Counters, Phase, StageProfile};
use crate::run_control::Control;
use crate::streams::{AudioBlock, AudioMeta, StatusFeed, StatusSample};
use crate::time::{MonoNanos, UnixNanos};

/// Which optional streams a recording holds, and how.
#[derive(Clone, Debug)]
pub struct StreamsConfig {
    /// Record the eye video (`--eyes on` with `--record`).
    pub eyes: bool,
    /// Recorded eye pictures per second (`--eyes-fps`, 1-200).
    pub eyes_fps: u32,
    /// The eye cameras' rate, for camera-mode thinning.
    pub eyes_camera_fps: f64,
    /// Record the audio (`--audio on` with `--record`).
    pub audio: bool,
    /// Seconds of audio between WAV sync points (sizes rewritten, fsync).
    pub audio_sync_seconds: u32,
    /// `--status-log`: the device's status samples (polled by the source side) to write.
    pub status: Option<StatusFeed>,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            eyes: false,
            eyes_fps: 30,
            eyes_camera_fps: crate::streams::EYES_NOMINAL_FPS,
            audio: false,
            audio_sync_seconds: 5,
            status: None,
        }
    }
}

impl StreamsConfig {
    pub fn any(&self) -> bool {
        self.eyes || self.audio || self.status.is_some()
    }
}

/// What the scene recording's settings give the eye video.
#[derive(Clone, Debug)]
pub(crate) struct EyeVideoSettings {
    pub encoder: EncoderKind,
    pub crf: u32,
    pub selection: FrameSelection,
    /// Recorded pictures between fsyncs (0: only at stop).
    pub fsync_every: u32,
}

/// What the optional streams of one recording ended with.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamsSummary {
    pub eyes: Option<EyesSummary>,
    pub audio: Option<AudioSummary>,
    /// Rows written to the status log.
    pub status_rows: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EyesSummary {
    pub file: String,
    /// Pictures written, repeats included.
    pub frames: u64,
    pub repeats: u64,
    /// Pictures skipped because the queue was full.
    pub queue_full: u64,
    pub fsyncs: u64,
    pub bytes: u64,
    pub end: String,
}

/// One row of `eyes_timing.csv`.
#[derive(Clone, Copy, Debug, Serialize)]
struct EyeRow {
    output_index: u64,
    camera_index: u64,
    device_time_ns: i64,
    received_mono_ns: u64,
    write_unix_ns: i64,
    write_mono_ns: u64,
    repeat: u8,
}

enum Msg {
    Start(Box<Writers>),
    Stop(Sender<StreamsSummary>),
    Eye {
        frame: Arc<Frame>,
        meta: FrameMeta,
        repeats: u32,
        at: RecordTime,
    },
    Audio {
        block: Arc<AudioBlock>,
        meta: AudioMeta,
        at: RecordTime,
    },
}

/// Pictures and blocks the queue holds before the caller has to skip one: over a second of
/// eye video at 30 fps, several seconds of audio.
const QUEUE: usize = 48;

/// The recorder of the optional streams (idle between recordings).
pub(crate) struct StreamRecorder {
    cfg: StreamsConfig,
    video: EyeVideoSettings,
    control: Arc<Control>,
    tx: Sender<Msg>,
    selector: Mutex<Selector>,
    eyes_skipped: Arc<AtomicU64>,
    blocking: bool,
    thread: Mutex<Option<JoinHandle<StageProfile>>>,
    status: Option<StatusLog>,
    /// The current recording is in the logger layout: samples are stamped with record times.
    stamp: AtomicBool,
}

impl StreamRecorder {
    pub(crate) fn spawn(
        cfg: StreamsConfig,
        video: EyeVideoSettings,
        control: Arc<Control>,
        counters: Arc<Counters>,
        profile: bool,
        blocking: bool,
    ) -> std::io::Result<Self> {
        let (tx, rx) = bounded(QUEUE);
        let eyes_skipped = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            video: video.clone(),
            counters,
            eyes_skipped: Arc::clone(&eyes_skipped),
            profile: StageProfile::new(profile),
        };
        let thread = std::thread::Builder::new()
            .name("record-streams".into())
            .spawn(move || worker.run(rx))?;
        let status = match &cfg.status {
            Some(feed) => Some(StatusLog::spawn(
                feed.samples.clone(),
                Arc::clone(&control),
            )?),
            None => None,
        };
        Ok(StreamRecorder {
            selector: Mutex::new(Selector::new(
                video.selection,
                cfg.eyes_fps,
                cfg.eyes_camera_fps,
            )),
            cfg,
            video,
            control,
            tx,
            eyes_skipped,
            blocking,
            thread: Mutex::new(Some(thread)),
            status,
            stamp: AtomicBool::new(false),
        })
    }

    /// Opens this recording's files (the eye video itself opens with its first picture, when
    /// its size is known).
    pub(crate) fn start(&self, files: &StreamFiles) -> Result<(), String> {
        if !self.cfg.any() {
            return Ok(());
        }
        let eyes = if self.cfg.eyes {
            Some(EyesWriter::create(files, &self.video, self.cfg.eyes_fps)?)
        } else {
            None
        };
        let audio = if self.cfg.audio {
            Some(
                WavRecorder::create_for(
                    &files.audio,
                    &files.audio_timing,
                    self.cfg.audio_sync_seconds,
                    files.logger_trial,
                )
                .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        if let Some(s) = &self.status {
            s.open(&files.status, files.logger_trial)?;
        }
        self.stamp
            .store(files.logger_trial.is_some(), Ordering::Relaxed);
        if let Ok(mut sel) = self.selector.lock() {
            *sel = Selector::new(
                self.video.selection,
                self.cfg.eyes_fps,
                self.cfg.eyes_camera_fps,
            );
        }
        self.tx
            .send(Msg::Start(Box::new(Writers {
                eyes,
                audio,
                audio_done: None,
            })))
            .map_err(|_| "the record-streams thread is gone".to_string())
    }

    /// Closes this recording's files; waits until they are complete.
    pub(crate) fn stop(&self) -> Option<StreamsSummary> {
        if !self.cfg.any() {
            return None;
        }
        let (tx, rx) = bounded(1);
        let mut summary = match self.tx.send(Msg::Stop(tx)) {
            Ok(()) => rx.recv().unwrap_or_default(),
            Err(_) => StreamsSummary::default(),
        };
        if let Some(s) = &self.status {
            summary.status_rows = Some(s.close());
        }
        Some(summary)
    }

    /// An eye picture from the source: selected here, queued only if recorded.
    pub(crate) fn eye_frame(&self, frame: Arc<Frame>, meta: FrameMeta) {
        if !self.cfg.eyes {
            return;
        }
        let at = self.record_time();
        if !self.control.recording.load(Ordering::Relaxed) {
            return;
        }
        let decision = match self.selector.lock() {
            Ok(mut s) => s.offer(meta.device_time, meta.camera_index),
            Err(_) => return,
        };
        if decision.emit == 0 {
            return;
        }
        let msg = Msg::Eye {
            frame,
            meta,
            repeats: decision.repeat_previous,
            at,
        };
        self.send(msg, true);
    }

    pub(crate) fn audio(&self, block: Arc<AudioBlock>, meta: AudioMeta) {
        if !self.cfg.audio {
            return;
        }
        let at = self.record_time();
        if !self.control.recording.load(Ordering::Relaxed) {
            return;
        }
        self.send(Msg::Audio { block, meta, at }, false);
    }

    /// Only the logger layout writes record times; eyetrack's skips the clock reads.
    fn record_time(&self) -> RecordTime {
        if self.stamp.load(Ordering::Relaxed) {
            RecordTime::now()
        } else {
            RecordTime::UNSET
        }
    }

    fn send(&self, msg: Msg, eyes: bool) {
        if self.blocking {
            let _ = self.tx.send(msg);
            return;
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(msg) {
            if eyes {
                self.eyes_skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends the threads (after the last stop).
    pub(crate) fn shutdown(self) -> StageProfile {
        let StreamRecorder {
            tx, thread, status, ..
        } = self;
        drop(tx);
        if let Some(s) = status {
            s.shutdown();
        }
        thread
            .into_inner()
            .ok()
            .flatten()
            .and_then(|h| h.join().ok())
            .unwrap_or_else(|| StageProfile::new(false))
    }
}

struct Writers {
    eyes: Option<EyesWriter>,
    audio: Option<WavRecorder>,
    /// The audio file a fault already closed.
    audio_done: Option<AudioSummary>,
}

struct Worker {
    video: EyeVideoSettings,
    counters: Arc<Counters>,
    eyes_skipped: Arc<AtomicU64>,
    profile: StageProfile,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) -> StageProfile {
        let mut active: Option<Writers> = None;
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Start(w) => {
                    if let Some(old) = active.take() {
                        let _ = self.finish(old);
                    }
                    let mut w = *w;
                    if let Some(e) = w.eyes.as_mut() {
                        e.skipped_at_start = self.eyes_skipped.load(Ordering::Relaxed);
                    }
                    active = Some(w);
                }
                Msg::Stop(reply) => {
                    let summary = match active.take() {
                        Some(w) => self.finish(w),
                        None => StreamsSummary::default(),
                    };
                    let _ = reply.send(summary);
                }
                Msg::Eye {
                    frame,
                    meta,
                    repeats,
                    at,
                } => {
                    if let Some(e) = active.as_mut().and_then(|w| w.eyes.as_mut()) {
                        let span = self.profile.start();
                        e.write(&frame, meta, repeats, at, &self.video, &self.counters);
                        self.profile.finish(Phase::Encode, span);
                    }
                }
                Msg::Audio { block, meta, at } => {
                    if let Some(w) = active.as_mut() {
                        if let Some(Err(e)) = w.audio.as_mut().map(|a| a.write_at(&block, meta, at))
                        {
                            // A fault ends the audio file; the rest of the recording goes on.
                            if let Some(a) = w.audio.take() {
                                let mut s = a.finish();
                                s.end = format!("error: {e}");
                                w.audio_done = Some(s);
                            }
                        }
                    }
                }
            }
        }
        if let Some(w) = active.take() {
            let _ = self.finish(w);
        }
        self.profile
    }

    fn finish(&mut self, w: Writers) -> StreamsSummary {
        let eyes = w.eyes.map(|e| {
            let skipped = self.eyes_skipped.load(Ordering::Relaxed);
            e.finish(skipped)
        });
        let audio = w.audio.map(WavRecorder::finish).or(w.audio_done);
        StreamsSummary {
            eyes,
            audio,
            status_rows: None,
        }
    }
}

/// The eye video and its timing CSV.
struct EyesWriter {
    video_path: PathBuf,
    timing_path: PathBuf,
    csv: csv::Writer<BufWriter<File>>,
    csv_file: File,
    fps: u32,
    encoder: Option<Box<dyn VideoEncoder>>,
    /// The last recorded picture: what a repeat writes again.
    last: Option<(Arc<Frame>, FrameMeta)>,
    since_sync: u32,
    skipped_at_start: u64,
    summary: EyesSummary,
    /// A fault that ended the eye video (the recording goes on without it).
    failed: Option<String>,
    /// Logger layout: the trial its timing rows name; `None` writes eyetrack's columns.
    logger_trial: Option<u32>,
    /// Last `record_time_mono` written: the column never goes back.
    last_mono: u64,
}

impl EyesWriter {
    fn create(files: &StreamFiles, _video: &EyeVideoSettings, fps: u32) -> Result<Self, String> {
        let header = files.logger_trial.map(|_| LOGGER_EYES_TIMING_HEADER);
        let (csv, csv_file) = stream_csv(&files.eyes_timing, header)
            .map_err(|e| format!("{}: {e}", files.eyes_timing.display()))?;
        Ok(EyesWriter {
            video_path: files.eyes_video.clone(),
            timing_path: files.eyes_timing.clone(),
            csv,
            csv_file,
            fps: fps.max(1),
            encoder: None,
            last: None,
            since_sync: 0,
            skipped_at_start: 0,
            summary: EyesSummary {
                file: encoder::ffmpeg::file_name(&files.eyes_video),
                ..EyesSummary::default()
            },
            failed: None,
            logger_trial: files.logger_trial,
            last_mono: 0,
        })
    }

    fn write(
        &mut self,
        frame: &Arc<Frame>,
        meta: FrameMeta,
        repeats: u32,
        at: RecordTime,
        video: &EyeVideoSettings,
        counters: &Counters,
    ) {
        if self.failed.is_some() {
            return;
        }
        if let Some((prev, prev_meta)) = self.last.clone() {
            for _ in 0..repeats {
                // A repeat is written when the next picture arrives: that picture's record time.
                if let Err(e) = self.encode(&prev, prev_meta, true, at, video, counters) {
                    self.failed = Some(e);
                    return;
                }
            }
        }
        match self.encode(frame, meta, false, at, video, counters) {
            Ok(()) => self.last = Some((Arc::clone(frame), meta)),
            Err(e) => self.failed = Some(e),
        }
    }

    fn encode(
        &mut self,
        frame: &Frame,
        meta: FrameMeta,
        repeat: bool,
        at: RecordTime,
        video: &EyeVideoSettings,
        counters: &Counters,
    ) -> Result<(), String> {
        let view = frame.view();
        if !view.width.is_multiple_of(2) || !view.height.is_multiple_of(2) {
            return Err(format!(
                "eye picture {}x{} is not of even size (H.264 4:2:0)",
                view.width, view.height
            ));
        }
        if self.encoder.is_none() {
            // Opened at the first picture: the size is the stream's (384x192 on a Neon).
            let spec = EncoderSpec {
                width: view.width,
                height: view.height,
                fps: self.fps,
                input: PixelFormat::I420,
                crf: video.crf,
                // A 384x192 picture is far too small for a second x264 thread to pay.
                threads: Some(1),
            };
            let enc = encoder::open(video.encoder, &spec, &self.video_path)
                .map_err(|e| format!("eye video: {e}"))?;
            self.encoder = Some(enc);
        }
        let Some(enc) = self.encoder.as_mut() else {
            return Ok(());
        };
        enc.encode(&view).map_err(|e| format!("eye video: {e}"))?;
        let written = match self.logger_trial {
            None => self.csv.serialize(EyeRow {
                output_index: self.summary.frames,
                camera_index: meta.camera_index,
                device_time_ns: meta.device_time.0,
                received_mono_ns: meta.received_mono.0,
                write_unix_ns: UnixNanos::now().0,
                write_mono_ns: MonoNanos::now().0,
                repeat: repeat as u8,
            }),
            Some(trial) => {
                self.last_mono = self.last_mono.max(at.mono.0);
                self.csv.serialize(LoggerFrameRow {
                    module: LOGGER_MODULE,
                    trial,
                    frame_index: self.summary.frames + 1,
                    capture_timestamp: Secs6(meta.device_time.0),
                    camera_index: meta.camera_index,
                    repeat: repeat as u8,
                    record_time_unix: Secs6(at.unix.0),
                    record_time_mono: Secs9(self.last_mono),
                })
            }
        };
        written.map_err(|e| format!("{}: {e}", self.timing_path.display()))?;
        self.summary.frames += 1;
        self.summary.repeats += u64::from(repeat);
        Counters::add(&counters.record_frames, 1);
        self.since_sync += 1;
        if video.fsync_every > 0 && self.since_sync >= video.fsync_every {
            self.sync()?;
        }
        Ok(())
    }

    /// The video's clusters and the CSV reach the disk together (plan 1.4).
    fn sync(&mut self) -> Result<(), String> {
        self.since_sync = 0;
        if let Some(enc) = self.encoder.as_mut() {
            enc.sync().map_err(|e| format!("eye video: {e}"))?;
        }
        let path = self.timing_path.display().to_string();
        self.csv.flush().map_err(|e| format!("{path}: {e}"))?;
        self.csv_file
            .sync_data()
            .map_err(|e| format!("{path}: {e}"))?;
        self.summary.fsyncs += 1;
        Ok(())
    }

    fn finish(mut self, skipped_total: u64) -> EyesSummary {
        self.summary.queue_full = skipped_total.saturating_sub(self.skipped_at_start);
        let mut end = self.failed.take().map(|e| format!("error: {e}"));
        if let Some(enc) = self.encoder.take() {
            match enc.finish() {
                Ok(s) => self.summary.bytes = s.bytes,
                Err(e) => {
                    end.get_or_insert(format!("error: eye video: {e}"));
                }
            }
        } else if end.is_none() {
            end = Some("no eye pictures arrived".into());
        }
        if let Err(e) = self.csv.flush().and_then(|()| self.csv_file.sync_data()) {
            end.get_or_insert(format!("error: {}: {e}", self.timing_path.display()));
        }
        self.summary.end = end.unwrap_or_else(|| "finished".into());
        self.summary
    }
}

/// `--status-log`: appends a row to the recording's status CSV for each status sample that
/// arrives while the recording runs.
struct StatusLog {
    slot: Arc<Mutex<Option<StatusCsv>>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

struct StatusCsv {
    csv: csv::Writer<BufWriter<File>>,
    rows: u64,
    /// Logger layout: the trial its rows name; `None` writes eyetrack's columns.
    logger_trial: Option<u32>,
    last_mono: u64,
    /// When this recording's file opened: a sample polled before it (for the previous
    /// recording, delivered late) is not this recording's.
    opened_mono: u64,
}

#[derive(Serialize)]
struct StatusRow<'a> {
    unix_ns: i64,
    mono_ns: u64,
    /// 1 when the device answered.
    connected: u8,
    battery_level: Option<i64>,
    battery_state: Option<&'a str>,
    memory_bytes: Option<u64>,
    memory_state: Option<&'a str>,
    /// The DIRECT sensors the device lists as connected, space-separated.
    sensors: String,
    error: Option<String>,
}

impl StatusLog {
    fn spawn(samples: Receiver<StatusSample>, control: Arc<Control>) -> std::io::Result<Self> {
        let slot: Arc<Mutex<Option<StatusCsv>>> = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (slot, stop) = (Arc::clone(&slot), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("status-log".into())
                .spawn(move || status_loop(&samples, &slot, &stop, &control))?
        };
        Ok(StatusLog { slot, stop, thread })
    }

    fn open(&self, path: &Path, logger_trial: Option<u32>) -> Result<(), String> {
        let header = logger_trial.map(|_| LOGGER_STATUS_HEADER);
        let (csv, _) = stream_csv(path, header).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Ok(mut s) = self.slot.lock() {
            *s = Some(StatusCsv {
                csv,
                rows: 0,
                logger_trial,
                last_mono: 0,
                opened_mono: MonoNanos::now().0,
            });
        }
        Ok(())
    }

    /// Closes the file; returns its row count.
    fn close(&self) -> u64 {
        let Ok(mut s) = self.slot.lock() else {
            return 0;
        };
        match s.take() {
            Some(mut c) => {
                let _ = c.csv.flush();
                if let Ok(f) = c.csv.into_inner() {
                    if let Ok(f) = f.into_inner() {
                        let _ = f.sync_data();
                    }
                }
                c.rows
            }
            None => 0,
        }
    }

    fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn status_loop(
    samples: &Receiver<StatusSample>,
    slot: &Mutex<Option<StatusCsv>>,
    stop: &AtomicBool,
    control: &Control,
) {
    while !stop.load(Ordering::Relaxed) {
        let sample = match samples.recv_timeout(Duration::from_millis(50)) {
            Ok(s) => s,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let (unix_ns, mono_ns) = (sample.unix_ns, sample.mono_ns);
        let r = &sample.health;
        // Stamped before the flag is read: a row kept lies inside the recording.
        if !control.recording.load(Ordering::Relaxed) {
            continue;
        }
        let Ok(mut s) = slot.lock() else { return };
        let Some(c) = s.as_mut().filter(|c| mono_ns >= c.opened_mono) else {
            continue;
        };
        if let Some(trial) = c.logger_trial {
            c.last_mono = c.last_mono.max(mono_ns);
            let (h, err) = match r {
                Ok(h) => (Some(h), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let sensors = h.map(|h| h.connected_sensors.join(" ")).unwrap_or_default();
            let row = LoggerStatusRow {
                module: LOGGER_MODULE,
                trial,
                connected: u8::from(h.is_some()),
                battery_level: h.and_then(|h| h.battery_level),
                battery_state: h.and_then(|h| h.battery_state.as_deref()),
                memory_bytes: h.and_then(|h| h.memory_bytes),
                memory_state: h.and_then(|h| h.memory_state.as_deref()),
                sensors: &sensors,
                error: err.as_deref(),
                record_time_unix: Secs6(unix_ns),
                record_time_mono: Secs9(c.last_mono),
            };
            if c.csv
                .serialize(row)
                .and_then(|()| Ok(c.csv.flush()?))
                .is_ok()
            {
                c.rows += 1;
            }
            continue;
        }
        let row = match r {
            Ok(h) => StatusRow {
                unix_ns,
                mono_ns,
                connected: 1,
                battery_level: h.battery_level,
                battery_state: h.battery_state.as_deref(),
                memory_bytes: h.memory_bytes,
                memory_state: h.memory_state.as_deref(),
                sensors: h.connected_sensors.join(" "),
                error: None,
            },
            Err(e) => StatusRow {
                unix_ns,
                mono_ns,
                connected: 0,
                battery_level: None,
                battery_state: None,
                memory_bytes: None,
                memory_state: None,
                sensors: String::new(),
                error: Some(e.to_string()),
            },
        };
        // One row every few seconds: flushed at once, so a killed run keeps it.
        if c.csv
            .serialize(row)
            .and_then(|()| Ok(c.csv.flush()?))
            .is_ok()
        {
            c.rows += 1;
        }
    }
}
