//! What `GET /status` says: the pipeline's state, rates, CPU, recording and source, and the
//! 1 Hz sampler that turns cumulative counters and /proc readings into per-second rates.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::PipelineHandles;
use crate::profile::CounterSnapshot;
use crate::resources;
use crate::source::SourceInfo;

/// Rates over the last sampler interval.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Rates {
    /// Display-ready frames per second.
    pub fps: f64,
    /// Frames the source delivered per second.
    pub acquired_fps: f64,
    /// CPU of the process tree (ffmpeg children included) in percent of one core.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    counters: CounterSnapshot,
    cpu_seconds: f64,
}

/// Shared by the sampler and the handlers.
#[derive(Debug)]
pub struct StatusState {
    started: Instant,
    last: Mutex<Option<Sample>>,
    rates: Mutex<Rates>,
    last_error: Mutex<Option<String>>,
    /// `record_frames` when the current recording started, so `/status` counts its frames only.
    record_base: AtomicU64,
}

impl StatusState {
    pub fn new() -> Self {
        StatusState {
            started: Instant::now(),
            last: Mutex::new(None),
            rates: Mutex::new(Rates::default()),
            last_error: Mutex::new(None),
            record_base: AtomicU64::new(0),
        }
    }

    /// One sampler tick: rates since the previous tick.
    pub fn sample(&self, h: &PipelineHandles) {
        let now = Instant::now();
        let counters = h.counters.snapshot();
        let usage = resources::sample_tree().ok();
        let cpu_seconds = usage.map_or(0.0, |u| u.cpu_seconds);
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if let Some(prev) = last.as_ref() {
            let dt = now.duration_since(prev.at).as_secs_f64().max(1e-3);
            let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
            let rates = Rates {
                fps: per_s(counters.frames_displayed, prev.counters.frames_displayed),
                acquired_fps: per_s(counters.frames_acquired, prev.counters.frames_acquired),
                cpu_percent: if usage.is_some() {
                    100.0 * (cpu_seconds - prev.cpu_seconds).max(0.0) / dt
                } else {
                    0.0
                },
                rss_bytes: usage.map_or(0, |u| u.rss_bytes),
            };
            if let Ok(mut r) = self.rates.lock() {
                *r = rates;
            }
        }
        *last = Some(Sample {
            at: now,
            counters,
            cpu_seconds,
        });
    }

    pub fn rates(&self) -> Rates {
        self.rates.lock().map(|r| *r).unwrap_or_default()
    }

    pub fn set_error(&self, e: impl Into<String>) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e.into());
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }

    pub fn recording_started(&self, record_frames: u64) {
        self.record_base.store(record_frames, Ordering::Relaxed);
    }

    pub fn report(&self, h: &PipelineHandles) -> Status {
        let c = h.counters.snapshot();
        let control = &h.control;
        let state = if control.stop.load(Ordering::Relaxed) {
            "stopping"
        } else if control.paused.load(Ordering::Relaxed) {
            "paused"
        } else {
            "running"
        };
        let recorder_error = h.recorder.as_ref().and_then(|r| r.last_error());
        let recording = RecordingStatus {
            configured: h.recorder.is_some(),
            root: h.recorder.as_ref().map(|r| r.config().root.clone()),
            active: h.recorder.as_ref().and_then(|r| r.active()),
            frames: c
                .record_frames
                .saturating_sub(self.record_base.load(Ordering::Relaxed)),
            queue_full: c.record_queue_full,
            events_dropped: c.record_events_dropped,
        };
        let recording = RecordingStatus {
            frames: if recording.active.is_some() {
                recording.frames
            } else {
                0
            },
            ..recording
        };
        Status {
            state,
            uptime_s: self.started.elapsed().as_secs_f64(),
            rates: self.rates(),
            frames_acquired: c.frames_acquired,
            frames_processed: c.frames_processed,
            frames_displayed: c.frames_displayed,
            drops: c.dropped(),
            duplicates: c.duplicates_skipped,
            paused_skipped: c.paused_skipped,
            reduced_skipped: c.reduced_skipped,
            reduced_preview_skipped: c.reduced_preview_skipped,
            preview_visible: control.preview_visible.load(Ordering::Relaxed),
            disconnected: control.disconnected.load(Ordering::Relaxed),
            recording,
            device: h.source.kind.clone(),
            source: h.source.clone(),
            last_error: recorder_error.or_else(|| self.last_error()),
        }
    }
}

impl Default for StatusState {
    fn default() -> Self {
        StatusState::new()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RecordingStatus {
    /// The run can record (`--record` or `--record-root`).
    pub configured: bool,
    pub root: Option<PathBuf>,
    /// The folder being recorded into, if any.
    pub active: Option<PathBuf>,
    /// Video frames written to the active recording.
    pub frames: u64,
    /// Frames and samples the recorder had to skip since the run started.
    pub queue_full: u64,
    /// Events that could not be queued for events.csv since the run started (a `POST /events`
    /// that got 503 is one of them).
    pub events_dropped: u64,
}

/// The `/status` body.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// running, paused or stopping.
    pub state: &'static str,
    pub uptime_s: f64,
    #[serde(flatten)]
    pub rates: Rates,
    pub frames_acquired: u64,
    pub frames_processed: u64,
    pub frames_displayed: u64,
    /// Frames dropped inside the pipeline (both edges).
    pub drops: u64,
    pub duplicates: u64,
    pub paused_skipped: u64,
    /// Frames skipped by reduced processing while the preview was hidden (plan 1.6).
    pub reduced_skipped: u64,
    /// Frames recorded but not rendered to the hidden preview (reduced processing while
    /// recording keeps only the thumbnails).
    pub reduced_preview_skipped: u64,
    pub preview_visible: bool,
    /// A network source lost its device and is reconnecting.
    pub disconnected: bool,
    pub recording: RecordingStatus,
    /// The source kind (synthetic, fixture, neon).
    pub device: String,
    pub source: SourceInfo,
    pub last_error: Option<String>,
}
