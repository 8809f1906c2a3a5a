//! The recording's CSV files (frame timing, passthrough timing, gaze, IMU, events) in either
//! layout's columns, and the thread that writes them with batched flushes (plan 1.2), periodic
//! and final fsync (plan 1.4); also the logger layout's rows of the stream files (EYES_TIMING,
//! AUDIO_TIMING, DEVICESTATUS), which their own writers ([`super::streams`]) write.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use super::layout::{FileKind, Layout, TrialFiles, LOGGER_MODULE};
use crate::profile::Counters;
use crate::sensors::{GazeSample, ImuSample};
use crate::time::{MonoNanos, UnixNanos};

/// When the host took a sample in (both clocks): the logger layout's `record_time_unix` and
/// `record_time_mono`, taken on the thread that hands the sample to the recorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordTime {
    pub unix: UnixNanos,
    pub mono: MonoNanos,
}

impl RecordTime {
    /// For rows of the eyetrack layout, which has no record-time columns.
    pub const UNSET: RecordTime = RecordTime {
        unix: UnixNanos(0),
        mono: MonoNanos(0),
    };

    pub fn now() -> Self {
        RecordTime {
            unix: UnixNanos::now(),
            mono: MonoNanos::now(),
        }
    }
}

/// One row of `frame_timing.csv`: what was written as output frame `output_index`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TimingRow {
    pub output_index: u64,
    pub camera_index: u64,
    /// Capture time on the device clock.
    pub device_time_ns: i64,
    /// When the host had the whole frame (CLOCK_MONOTONIC).
    pub received_mono_ns: u64,
    /// When the recorder handed it to the encoder, wall clock and monotonic.
    pub write_unix_ns: i64,
    pub write_mono_ns: u64,
    /// 1 when this output frame repeats the previous camera frame (timer mode).
    pub repeat: u8,
    /// The gaze drawn on the frame: scene pixels, worn 1/0, and gaze time minus frame time.
    /// Empty when no gaze sample had arrived yet.
    pub gaze_x_px: Option<f32>,
    pub gaze_y_px: Option<f32>,
    pub gaze_worn: Option<u8>,
    pub gaze_dt_ns: Option<i64>,
}

/// One row of `passthrough_timing.csv`: one access unit of the device's H.264 as written to
/// `scene_passthrough_<segment>.mkv`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PassthroughRow {
    /// Access units written in this recording before this one (all segments).
    pub au_index: u64,
    pub segment: u32,
    /// Its timestamp in the segment file (ms).
    pub pts_ms: i64,
    /// Capture time on the device clock.
    pub device_time_ns: i64,
    /// When the host had the whole access unit (CLOCK_MONOTONIC).
    pub received_mono_ns: u64,
    /// When the recorder wrote it (CLOCK_MONOTONIC).
    pub write_mono_ns: u64,
    /// The same moment on the wall clock (logger layout only).
    #[serde(skip)]
    pub write_unix_ns: i64,
    /// Annex B size as received.
    pub bytes: u64,
    /// 1 when it holds an IDR picture (a point where playback can start).
    pub idr: u8,
}

#[derive(Clone, Copy, Debug, Serialize)]
struct GazeRow {
    device_time_ns: i64,
    x_px: f32,
    y_px: f32,
    worn: u8,
}

fn gaze_row(g: &GazeSample) -> GazeRow {
    GazeRow {
        device_time_ns: g.time.0,
        x_px: g.x,
        y_px: g.y,
        worn: g.worn as u8,
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
struct ImuRow {
    device_time_ns: i64,
    gyro_x_dps: f32,
    gyro_y_dps: f32,
    gyro_z_dps: f32,
    accel_x_g: f32,
    accel_y_g: f32,
    accel_z_g: f32,
    quat_w: f32,
    quat_x: f32,
    quat_y: f32,
    quat_z: f32,
}

/// One row of `events.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    pub unix_ns: i64,
    pub mono_ns: u64,
    /// Device time the event refers to, when it has one (user events, gaps).
    pub device_time_ns: Option<i64>,
    /// Device time the event ended (fixations, saccades, blinks): the logger layout's
    /// `end_timestamp`; eyetrack's events.csv keeps it in `detail`.
    #[serde(skip)]
    pub device_end_ns: Option<i64>,
    /// recording_start, recording_stop, user, encoder_died, encoder_restart, gap,
    /// queue_full, fsync, error, passthrough_start, passthrough_segment,
    /// passthrough_skipped, time_backwards.
    pub kind: &'static str,
    pub detail: String,
}

impl EventRow {
    pub fn now(kind: &'static str, detail: impl Into<String>) -> Self {
        EventRow {
            unix_ns: UnixNanos::now().0,
            mono_ns: MonoNanos::now().0,
            device_time_ns: None,
            device_end_ns: None,
            kind,
            detail: detail.into(),
        }
    }
}

/// What the writer thread is asked to do.
pub enum CsvMsg {
    Open(Box<CsvFiles>),
    Timing(TimingRow),
    Passthrough(PassthroughRow),
    Gaze(GazeSample, RecordTime),
    Imu(ImuSample, RecordTime),
    Event(EventRow),
    /// Flush everything and fsync: the recorder's periodic sync point.
    Sync,
    /// Final flush and fsync, then close; the reply says whether every row reached the disk.
    Close(Sender<Result<CsvSummary, String>>),
}

/// Row counts of a closed recording, for the manifest.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CsvSummary {
    pub timing_rows: u64,
    pub passthrough_rows: u64,
    pub gaze_rows: u64,
    pub imu_rows: u64,
    pub event_rows: u64,
}

/// One CSV file with its own flush batching. The csv writer's buffer is sized so that it only
/// reaches the kernel when we flush, which makes `--flush-every` the number of rows per
/// write(2).
struct RowFile {
    path: PathBuf,
    w: csv::Writer<File>,
    flush_every: u64,
    pending: u64,
    rows: u64,
    /// File length after the last successful flush: on a write error the file is cut back to
    /// it, so a partial row never survives a full disk.
    committed: u64,
}

const CSV_BUFFER: usize = 1 << 20;

impl RowFile {
    /// Creates the file with its header row on disk, so even a recording without rows says
    /// what it would hold.
    fn create(path: PathBuf, flush_every: u64, header: &[&str]) -> std::io::Result<Self> {
        let file = File::create(&path)?;
        // Our own header (the crate's automatic one would appear only with the first row).
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .buffer_capacity(CSV_BUFFER)
            .from_writer(file);
        w.write_record(header).map_err(std::io::Error::other)?;
        w.flush()?;
        let committed = w.get_ref().metadata()?.len();
        Ok(RowFile {
            path,
            w,
            flush_every: flush_every.max(1),
            pending: 0,
            rows: 0,
            committed,
        })
    }

    fn write<T: Serialize>(&mut self, row: &T, c: &Counters) -> Result<(), String> {
        self.w.serialize(row).map_err(|e| self.error("write", e))?;
        self.rows += 1;
        self.pending += 1;
        if self.pending >= self.flush_every {
            self.flush(c)?;
        }
        Ok(())
    }

    fn flush(&mut self, c: &Counters) -> Result<(), String> {
        if self.pending == 0 {
            return Ok(());
        }
        if let Err(e) = self.w.flush() {
            let _ = self.w.get_ref().set_len(self.committed);
            return Err(self.error("flush", e));
        }
        self.pending = 0;
        let len = self
            .w
            .get_ref()
            .metadata()
            .map(|m| m.len())
            .unwrap_or(self.committed);
        Counters::add(&c.record_csv_bytes, len.saturating_sub(self.committed));
        Counters::add(&c.record_csv_writes, 1);
        self.committed = len;
        Ok(())
    }

    fn sync(&mut self, c: &Counters) -> Result<(), String> {
        self.flush(c)?;
        self.w
            .get_ref()
            .sync_data()
            .map_err(|e| self.error("fsync", e))?;
        Counters::add(&c.record_fsyncs, 1);
        Ok(())
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> String {
        format!("{what} {}: {e}", self.path.display())
    }
}

/// The CSV files of one recording: the timing file of each video it records, gaze, IMU, events.
pub struct CsvFiles {
    timing: Option<RowFile>,
    passthrough: Option<RowFile>,
    gaze: RowFile,
    imu: RowFile,
    events: RowFile,
    /// Logger layout: the trial and what its rows need; `None` writes eyetrack's columns.
    logger: Option<LoggerRows>,
}

/// What the logger layout's rows carry beyond a sample.
struct LoggerRows {
    trial: u32,
    /// The scene size gaze pixels refer to, for normalized gaze.
    scene_w: f32,
    scene_h: f32,
    /// Last `record_time_mono` written to EVENT: events come from several threads, so a row
    /// stamped a few microseconds before the previous one is written at the previous time to
    /// keep the column non-decreasing, as a reader aligning files expects.
    last_event_mono: u64,
}

impl CsvFiles {
    /// Creates the files of a recording of the overlay video (with their header rows) in `dir`.
    pub fn create(dir: &Path, flush_every: u32) -> std::io::Result<Self> {
        Self::create_for(dir, flush_every, true, false)
    }

    /// Creates the files in `dir`: `frame_timing.csv` when the overlay video is recorded,
    /// `passthrough_timing.csv` when the device's H.264 is.
    pub fn create_for(
        dir: &Path,
        flush_every: u32,
        overlay_video: bool,
        passthrough: bool,
    ) -> std::io::Result<Self> {
        Self::create_in(
            &TrialFiles::eyetrack(dir, 1),
            flush_every,
            overlay_video,
            passthrough,
            (1, 1),
        )
    }

    /// Creates the files a layout names for one trial, in that layout's columns. `scene` is the
    /// size gaze pixel coordinates refer to (the logger layout writes gaze normalized to it).
    pub fn create_in(
        files: &TrialFiles,
        flush_every: u32,
        overlay_video: bool,
        passthrough: bool,
        scene: (usize, usize),
    ) -> std::io::Result<Self> {
        let n = flush_every as u64;
        let logger = files.layout == Layout::Logger;
        let h = |eyetrack: &'static [&'static str], logger_header: &'static [&'static str]| {
            if logger {
                logger_header
            } else {
                eyetrack
            }
        };
        let file = |kind: FileKind, header: &[&str]| RowFile::create(files.path(kind), n, header);
        Ok(CsvFiles {
            timing: overlay_video
                .then(|| file(FileKind::FrameTiming, h(TIMING_HEADER, LOGGER_FRAME_HEADER)))
                .transpose()?,
            passthrough: passthrough
                .then(|| {
                    file(
                        FileKind::PassthroughTiming,
                        h(PASSTHROUGH_HEADER, LOGGER_PASSTHROUGH_HEADER),
                    )
                })
                .transpose()?,
            gaze: file(FileKind::Gaze, h(GAZE_HEADER, LOGGER_GAZE_HEADER))?,
            imu: file(FileKind::Imu, h(IMU_HEADER, LOGGER_IMU_HEADER))?,
            events: file(FileKind::Events, h(EVENT_HEADER, LOGGER_EVENT_HEADER))?,
            logger: logger.then(|| LoggerRows {
                trial: files.trial,
                scene_w: scene.0.max(1) as f32,
                scene_h: scene.1.max(1) as f32,
                last_event_mono: 0,
            }),
        })
    }

    /// One gaze row, as the writer thread writes it (public for the CSV benches).
    pub fn write_gaze(&mut self, g: &GazeSample, c: &Counters) -> Result<(), String> {
        let t = if self.logger.is_some() {
            RecordTime::now()
        } else {
            RecordTime::UNSET
        };
        self.write_gaze_at(g, t, c)
    }

    fn write_gaze_at(&mut self, g: &GazeSample, t: RecordTime, c: &Counters) -> Result<(), String> {
        match &self.logger {
            None => self.gaze.write(&gaze_row(g), c),
            Some(l) => {
                let row = LoggerGazeRow {
                    module: LOGGER_MODULE,
                    trial: l.trial,
                    gaze_timestamp: Secs6(g.time.0),
                    norm_pos_x: g.x / l.scene_w,
                    norm_pos_y: g.y / l.scene_h,
                    confidence: None,
                    worn: g.worn as u8,
                    pupil_left_diam: g.pupil_mm.map(|p| p[0]),
                    pupil_right_diam: g.pupil_mm.map(|p| p[1]),
                    record_time_unix: Secs6(t.unix.0),
                    record_time_mono: Secs9(t.mono.0),
                };
                self.gaze.write(&row, c)
            }
        }
    }

    fn write_imu(&mut self, s: &ImuSample, t: RecordTime, c: &Counters) -> Result<(), String> {
        match &self.logger {
            None => self.imu.write(
                &ImuRow {
                    device_time_ns: s.time.0,
                    gyro_x_dps: s.gyro_dps[0],
                    gyro_y_dps: s.gyro_dps[1],
                    gyro_z_dps: s.gyro_dps[2],
                    accel_x_g: s.accel_g[0],
                    accel_y_g: s.accel_g[1],
                    accel_z_g: s.accel_g[2],
                    quat_w: s.quaternion[0],
                    quat_x: s.quaternion[1],
                    quat_y: s.quaternion[2],
                    quat_z: s.quaternion[3],
                },
                c,
            ),
            Some(l) => {
                let row = LoggerImuRow {
                    module: LOGGER_MODULE,
                    trial: l.trial,
                    timestamp: Secs6(s.time.0),
                    accel_x: s.accel_g[0],
                    accel_y: s.accel_g[1],
                    accel_z: s.accel_g[2],
                    gyro_x: s.gyro_dps[0],
                    gyro_y: s.gyro_dps[1],
                    gyro_z: s.gyro_dps[2],
                    quat_w: s.quaternion[0],
                    quat_x: s.quaternion[1],
                    quat_y: s.quaternion[2],
                    quat_z: s.quaternion[3],
                    record_time_unix: Secs6(t.unix.0),
                    record_time_mono: Secs9(t.mono.0),
                };
                self.imu.write(&row, c)
            }
        }
    }

    fn write_timing(&mut self, r: &TimingRow, c: &Counters) -> Result<(), String> {
        let Some(file) = self.timing.as_mut() else {
            return Ok(());
        };
        match &self.logger {
            None => file.write(r, c),
            Some(l) => file.write(
                &LoggerFrameRow {
                    module: LOGGER_MODULE,
                    trial: l.trial,
                    frame_index: r.output_index + 1,
                    capture_timestamp: Secs6(r.device_time_ns),
                    camera_index: r.camera_index,
                    repeat: r.repeat,
                    record_time_unix: Secs6(r.write_unix_ns),
                    record_time_mono: Secs9(r.write_mono_ns),
                },
                c,
            ),
        }
    }

    fn write_passthrough(&mut self, r: &PassthroughRow, c: &Counters) -> Result<(), String> {
        let Some(file) = self.passthrough.as_mut() else {
            return Ok(());
        };
        match &self.logger {
            None => file.write(r, c),
            Some(l) => file.write(
                &LoggerPassthroughRow {
                    module: LOGGER_MODULE,
                    trial: l.trial,
                    au_index: r.au_index,
                    segment: r.segment,
                    pts_ms: r.pts_ms,
                    capture_timestamp: Secs6(r.device_time_ns),
                    received_mono: Secs9(r.received_mono_ns),
                    bytes: r.bytes,
                    idr: r.idr,
                    record_time_unix: Secs6(r.write_unix_ns),
                    record_time_mono: Secs9(r.write_mono_ns),
                },
                c,
            ),
        }
    }

    fn write_event(&mut self, e: &EventRow, c: &Counters) -> Result<(), String> {
        match self.logger.as_mut() {
            None => self.events.write(e, c),
            Some(l) => {
                let mono = e.mono_ns.max(l.last_event_mono);
                l.last_event_mono = mono;
                let duration_ms = match (e.device_time_ns, e.device_end_ns) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
                    _ => None,
                };
                let row = LoggerEventRow {
                    module: LOGGER_MODULE,
                    trial: l.trial,
                    event_type: e.kind,
                    start_timestamp: e.device_time_ns.map(Secs6),
                    end_timestamp: e.device_end_ns.map(Secs6),
                    duration_ms,
                    detail: &e.detail,
                    record_time_unix: Secs6(e.unix_ns),
                    record_time_mono: Secs9(mono),
                };
                self.events.write(&row, c)
            }
        }
    }

    /// Final flush and fsync of every file.
    pub fn sync_all(&mut self, c: &Counters) -> Result<(), String> {
        self.all().try_for_each(|f| f.sync(c))
    }

    fn all(&mut self) -> impl Iterator<Item = &mut RowFile> {
        [
            self.timing.as_mut(),
            self.passthrough.as_mut(),
            Some(&mut self.gaze),
            Some(&mut self.imu),
            Some(&mut self.events),
        ]
        .into_iter()
        .flatten()
    }

    fn summary(&self) -> CsvSummary {
        CsvSummary {
            timing_rows: self.timing.as_ref().map_or(0, |f| f.rows),
            passthrough_rows: self.passthrough.as_ref().map_or(0, |f| f.rows),
            gaze_rows: self.gaze.rows,
            imu_rows: self.imu.rows,
            event_rows: self.events.rows,
        }
    }
}

/// Nanoseconds written as seconds with exactly 6 decimals (microseconds, truncated), from the
/// integer so no float rounding creeps in; formatted on the stack, as rows are written per
/// sample.
#[derive(Clone, Copy, Debug)]
pub struct Secs6(pub i64);

/// Nanoseconds written as seconds with exactly 9 decimals.
#[derive(Clone, Copy, Debug)]
pub struct Secs9(pub u64);

/// Formats `[-]secs.frac` with `decimals` digits into `buf`; returns the text.
fn fixed_secs(buf: &mut [u8; 32], negative: bool, ns: u64, decimals: u32) -> &str {
    use std::io::Write;
    let secs = ns / 1_000_000_000;
    let frac = (ns % 1_000_000_000) / 10u64.pow(9 - decimals);
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let sign = if negative { "-" } else { "" };
    let _ = write!(
        cur,
        "{sign}{secs}.{frac:0width$}",
        width = decimals as usize
    );
    let n = cur.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

impl Serialize for Secs6 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        s.serialize_str(fixed_secs(&mut buf, self.0 < 0, self.0.unsigned_abs(), 6))
    }
}

impl Serialize for Secs9 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        s.serialize_str(fixed_secs(&mut buf, false, self.0, 9))
    }
}

#[derive(Serialize)]
struct LoggerGazeRow {
    module: &'static str,
    trial: u32,
    gaze_timestamp: Secs6,
    norm_pos_x: f32,
    norm_pos_y: f32,
    /// The Neon sends no confidence: always empty, kept so the logger's readers find it.
    confidence: Option<f32>,
    worn: u8,
    pupil_left_diam: Option<f32>,
    pupil_right_diam: Option<f32>,
    record_time_unix: Secs6,
    record_time_mono: Secs9,
}

#[derive(Serialize)]
struct LoggerImuRow {
    module: &'static str,
    trial: u32,
    timestamp: Secs6,
    accel_x: f32,
    accel_y: f32,
    accel_z: f32,
    gyro_x: f32,
    gyro_y: f32,
    gyro_z: f32,
    quat_w: f32,
    quat_x: f32,
    quat_y: f32,
    quat_z: f32,
    record_time_unix: Secs6,
    record_time_mono: Secs9,
}

/// A FRAME row, and an EYES_TIMING row (the same columns for the eye video).
#[derive(Serialize)]
pub(crate) struct LoggerFrameRow {
    pub module: &'static str,
    pub trial: u32,
    /// 1-based, as the logger counts frames.
    pub frame_index: u64,
    pub capture_timestamp: Secs6,
    pub camera_index: u64,
    pub repeat: u8,
    pub record_time_unix: Secs6,
    pub record_time_mono: Secs9,
}

/// An AUDIO_TIMING row: one decoded audio block.
#[derive(Serialize)]
pub(crate) struct LoggerAudioRow {
    pub module: &'static str,
    pub trial: u32,
    pub block_index: u64,
    /// Index (in sample frames) of the block's first sample in the WAV.
    pub first_sample: u64,
    pub samples: u64,
    /// Device time of the block's first sample.
    pub timestamp: Secs6,
    /// Silent sample frames written before the block to bridge a gap in device time.
    pub silence_before: u64,
    pub record_time_unix: Secs6,
    pub record_time_mono: Secs9,
}

/// A DEVICESTATUS row: one poll of the device's `/api/status` (no device time: the device's
/// status has none).
#[derive(Serialize)]
pub(crate) struct LoggerStatusRow<'a> {
    pub module: &'static str,
    pub trial: u32,
    pub connected: u8,
    pub battery_level: Option<i64>,
    pub battery_state: Option<&'a str>,
    pub memory_bytes: Option<u64>,
    pub memory_state: Option<&'a str>,
    pub sensors: &'a str,
    pub error: Option<&'a str>,
    pub record_time_unix: Secs6,
    pub record_time_mono: Secs9,
}

/// A stream file's CSV writer (buffered) and a second handle on its descriptor for fsync.
/// With `header`, the header row is written at once (the logger layout: even a file without
/// rows says what it would hold); without, the row type's field names head the first row.
pub(crate) fn stream_csv(
    path: &Path,
    header: Option<&[&str]>,
) -> std::io::Result<(csv::Writer<std::io::BufWriter<File>>, File)> {
    let file = File::create(path)?;
    let sync = file.try_clone()?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(header.is_none())
        .from_writer(std::io::BufWriter::new(file));
    if let Some(h) = header {
        w.write_record(h).map_err(std::io::Error::other)?;
        w.flush()?;
    }
    Ok((w, sync))
}

#[derive(Serialize)]
struct LoggerPassthroughRow {
    module: &'static str,
    trial: u32,
    au_index: u64,
    segment: u32,
    pts_ms: i64,
    capture_timestamp: Secs6,
    received_mono: Secs9,
    bytes: u64,
    idr: u8,
    record_time_unix: Secs6,
    record_time_mono: Secs9,
}

#[derive(Serialize)]
struct LoggerEventRow<'a> {
    module: &'static str,
    trial: u32,
    event_type: &'static str,
    start_timestamp: Option<Secs6>,
    end_timestamp: Option<Secs6>,
    duration_ms: Option<f64>,
    detail: &'a str,
    record_time_unix: Secs6,
    record_time_mono: Secs9,
}

/// Logger layout headers: `Module` and `trial` first, the host's `record_time_unix` and
/// `record_time_mono` last, as the logger's GAZEDATA and FRAME files have them.
pub const LOGGER_GAZE_HEADER: &[&str] = &[
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
];
pub const LOGGER_IMU_HEADER: &[&str] = &[
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
];
pub const LOGGER_FRAME_HEADER: &[&str] = &[
    "Module",
    "trial",
    "frame_index",
    "capture_timestamp",
    "camera_index",
    "repeat",
    "record_time_unix",
    "record_time_mono",
];
pub const LOGGER_PASSTHROUGH_HEADER: &[&str] = &[
    "Module",
    "trial",
    "au_index",
    "segment",
    "pts_ms",
    "capture_timestamp",
    "received_mono",
    "bytes",
    "idr",
    "record_time_unix",
    "record_time_mono",
];
/// EYES_TIMING: FRAME's columns, for the eye video.
pub const LOGGER_EYES_TIMING_HEADER: &[&str] = LOGGER_FRAME_HEADER;
pub const LOGGER_AUDIO_TIMING_HEADER: &[&str] = &[
    "Module",
    "trial",
    "block_index",
    "first_sample",
    "samples",
    "timestamp",
    "silence_before",
    "record_time_unix",
    "record_time_mono",
];
pub const LOGGER_STATUS_HEADER: &[&str] = &[
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
];
pub const LOGGER_EVENT_HEADER: &[&str] = &[
    "Module",
    "trial",
    "event_type",
    "start_timestamp",
    "end_timestamp",
    "duration_ms",
    "detail",
    "record_time_unix",
    "record_time_mono",
];

pub const TIMING_HEADER: &[&str] = &[
    "output_index",
    "camera_index",
    "device_time_ns",
    "received_mono_ns",
    "write_unix_ns",
    "write_mono_ns",
    "repeat",
    "gaze_x_px",
    "gaze_y_px",
    "gaze_worn",
    "gaze_dt_ns",
];
pub const PASSTHROUGH_HEADER: &[&str] = &[
    "au_index",
    "segment",
    "pts_ms",
    "device_time_ns",
    "received_mono_ns",
    "write_mono_ns",
    "bytes",
    "idr",
];
pub const GAZE_HEADER: &[&str] = &["device_time_ns", "x_px", "y_px", "worn"];
pub const IMU_HEADER: &[&str] = &[
    "device_time_ns",
    "gyro_x_dps",
    "gyro_y_dps",
    "gyro_z_dps",
    "accel_x_g",
    "accel_y_g",
    "accel_z_g",
    "quat_w",
    "quat_x",
    "quat_y",
    "quat_z",
];
pub const EVENT_HEADER: &[&str] = &["unix_ns", "mono_ns", "device_time_ns", "kind", "detail"];

/// Starts the writer thread. Rows for a recording that is not open are discarded (the acquire
/// stage may race a stop by a sample or two).
pub fn spawn_writer(
    rx: Receiver<CsvMsg>,
    counters: Arc<Counters>,
    failed: Arc<AtomicU64>,
    error_slot: Arc<std::sync::Mutex<Option<String>>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("record-csv".into())
        .spawn(move || writer_loop(rx, &counters, &failed, &error_slot))
}

fn writer_loop(
    rx: Receiver<CsvMsg>,
    c: &Counters,
    failed: &AtomicU64,
    error_slot: &std::sync::Mutex<Option<String>>,
) {
    let mut files: Option<Box<CsvFiles>> = None;
    let mut broken = false;
    for msg in rx.iter() {
        let result = match (msg, files.as_mut()) {
            (CsvMsg::Open(f), _) => {
                files = Some(f);
                broken = false;
                Ok(())
            }
            (CsvMsg::Close(reply), _) => {
                let out = match files.take() {
                    Some(mut f) if !broken => {
                        let mut res = Ok(());
                        for file in f.all() {
                            if let Err(e) = file.sync(c) {
                                res = Err(e);
                                break;
                            }
                        }
                        res.map(|()| f.summary())
                    }
                    Some(f) => Ok(f.summary()),
                    None => Ok(CsvSummary::default()),
                };
                let _ = reply.send(out);
                Ok(())
            }
            (_, None) => Ok(()),
            (_, Some(_)) if broken => Ok(()),
            (CsvMsg::Timing(r), Some(f)) => f.write_timing(&r, c),
            (CsvMsg::Passthrough(r), Some(f)) => f.write_passthrough(&r, c),
            (CsvMsg::Gaze(g, t), Some(f)) => f.write_gaze_at(&g, t, c),
            (CsvMsg::Imu(s, t), Some(f)) => f.write_imu(&s, t, c),
            (CsvMsg::Event(e), Some(f)) => {
                // Events are rare and each matters: they reach the kernel at once.
                f.write_event(&e, c).and_then(|()| f.events.flush(c))
            }
            (CsvMsg::Sync, Some(f)) => f.sync_all(c),
        };
        if let Err(e) = result {
            // A failed write (full disk, removed folder) ends this recording's CSVs; what was
            // committed before stays valid. The recorder sees the flag and stops the recording.
            broken = true;
            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut slot) = error_slot.lock() {
                slot.get_or_insert(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Vec<Vec<String>> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(path)
            .unwrap();
        r.records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn logger_rows_carry_module_trial_and_fixed_decimal_times() {
        let dir = tempfile::tempdir().unwrap();
        let c = Counters::default();
        let files = TrialFiles::logger(dir.path(), "P", 3);
        let mut f = CsvFiles::create_in(&files, 1, true, false, (1600, 1200)).unwrap();
        let t = RecordTime {
            unix: UnixNanos(1_764_000_000_123_456_789),
            mono: MonoNanos(5_000_000_007),
        };
        let g = GazeSample {
            time: UnixNanos(1_764_000_000_000_000_999),
            x: 800.0,
            y: 300.0,
            worn: true,
            pupil_mm: Some([3.5, 4.0]),
        };
        f.write_gaze_at(&g, t, &c).unwrap();
        let mut e = EventRow::now("blink", "b");
        e.device_time_ns = Some(-1_500_000_000);
        e.device_end_ns = Some(-1_400_000_000);
        e.mono_ns = 7;
        f.write_event(&e, &c).unwrap();
        f.sync_all(&c).unwrap();
        let gaze = read(&files.path(FileKind::Gaze));
        assert_eq!(gaze[0], LOGGER_GAZE_HEADER);
        assert_eq!(
            gaze[1],
            [
                "EyeTracker-Neon",
                "3",
                "1764000000.000000",
                "0.5",
                "0.25",
                "",
                "1",
                "3.5",
                "4.0",
                "1764000000.123456",
                "5.000000007"
            ]
        );
        let ev = read(&files.path(FileKind::Events));
        assert_eq!(ev[1][2], "blink");
        assert_eq!(ev[1][3], "-1.500000");
        assert_eq!(ev[1][4], "-1.400000");
        assert_eq!(ev[1][5], "100.0");
        assert_eq!(ev[1][8], "0.000000007");
    }

    #[test]
    fn rows_reach_the_disk_in_batches_and_all_of_them_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(Counters::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        let failed = Arc::new(AtomicU64::new(0));
        let slot = Arc::new(std::sync::Mutex::new(None));
        let h = spawn_writer(rx, Arc::clone(&counters), failed, slot).unwrap();
        tx.send(CsvMsg::Open(Box::new(
            CsvFiles::create(dir.path(), 30).unwrap(),
        )))
        .unwrap();
        for i in 0..65 {
            tx.send(CsvMsg::Gaze(
                GazeSample {
                    time: UnixNanos(i),
                    x: 1.5,
                    y: 2.0,
                    worn: i % 2 == 0,
                    pupil_mm: None,
                },
                RecordTime::now(),
            ))
            .unwrap();
        }
        // Two batches of 30 reached the file; the last 5 wait for a flush.
        let (rtx, rrx) = crossbeam_channel::bounded(1);
        tx.send(CsvMsg::Event(EventRow::now("user", "hello, \"world\"")))
            .unwrap();
        tx.send(CsvMsg::Close(rtx)).unwrap();
        let summary = rrx.recv().unwrap().unwrap();
        assert_eq!(summary.gaze_rows, 65);
        let rows = read(&dir.path().join("gaze.csv"));
        assert_eq!(rows.len(), 66);
        assert_eq!(rows[0], GAZE_HEADER);
        assert_eq!(rows[65], vec!["64", "1.5", "2.0", "1"]);
        let ev = read(&dir.path().join("events.csv"));
        assert_eq!(ev[1][3], "user");
        assert_eq!(ev[1][4], "hello, \"world\"");
        // 2 full gaze batches + the event + the last 5 gaze rows on close; nothing for the
        // files without rows.
        assert_eq!(counters.snapshot().record_csv_writes, 4);
        drop(tx);
        h.join().unwrap();
    }
}
