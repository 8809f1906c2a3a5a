//! The profiler: per-phase latency histograms (HDR) kept per stage thread and merged at the end,
//! plus the pipeline-wide counters. Disabled, it never reads the clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Pipeline phases, in data-flow order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Acquire,
    Decode,
    Process,
    Preview,
    Overlay,
    Record,
    Encode,
    /// Capture timestamp to display-ready frame.
    EndToEnd,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Acquire,
        Phase::Decode,
        Phase::Process,
        Phase::Preview,
        Phase::Overlay,
        Phase::Record,
        Phase::Encode,
        Phase::EndToEnd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Acquire => "acquire",
            Phase::Decode => "decode",
            Phase::Process => "process",
            Phase::Preview => "preview",
            Phase::Overlay => "overlay",
            Phase::Record => "record",
            Phase::Encode => "encode",
            Phase::EndToEnd => "end_to_end",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Longest duration a histogram holds (60 s); longer samples are clamped, not lost.
const MAX_NS: u64 = 60_000_000_000;

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits: about 30 KB, allocated once per stage.
    Histogram::new_with_bounds(1_000, MAX_NS, 3).expect("static histogram bounds are valid")
}

/// A started measurement; `None` when profiling is off, so a disabled profiler costs one branch.
#[derive(Clone, Copy, Debug)]
pub struct Span(Option<Instant>);

/// Upper bounds (ns) of the live per-phase buckets: the documented targets (5, 10, 15, 20,
/// 50 ms) are bounds, so a scrape can tell the share of frames within each target.
pub const LIVE_BUCKETS_NS: [u64; 12] = [
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    15_000_000,
    20_000_000,
    33_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// Per-phase running totals readable while the pipeline runs (the HDR histograms belong to
/// their stage threads until the end). Only a run with a live reader (the control API's
/// `/metrics`) attaches one, so a plain run pays one untaken branch per sample.
#[derive(Debug, Default)]
pub struct LivePhases {
    phases: [LivePhase; Phase::ALL.len()],
}

#[derive(Debug, Default)]
struct LivePhase {
    count: AtomicU64,
    sum_ns: AtomicU64,
    /// Non-cumulative counts per [`LIVE_BUCKETS_NS`] bound; above the last bound only `count`.
    buckets: [AtomicU64; LIVE_BUCKETS_NS.len()],
}

/// A copy of one phase's live totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LivePhaseSnapshot {
    pub count: u64,
    pub sum_ns: u64,
    /// Cumulative: samples at or below each [`LIVE_BUCKETS_NS`] bound.
    pub cumulative: [u64; LIVE_BUCKETS_NS.len()],
}

impl LivePhases {
    #[inline]
    fn record(&self, phase: Phase, ns: u64) {
        let p = &self.phases[phase.index()];
        p.count.fetch_add(1, Ordering::Relaxed);
        p.sum_ns.fetch_add(ns, Ordering::Relaxed);
        if let Some(i) = LIVE_BUCKETS_NS.iter().position(|&b| ns <= b) {
            p.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self, phase: Phase) -> LivePhaseSnapshot {
        let p = &self.phases[phase.index()];
        let mut s = LivePhaseSnapshot {
            count: p.count.load(Ordering::Relaxed),
            sum_ns: p.sum_ns.load(Ordering::Relaxed),
            ..LivePhaseSnapshot::default()
        };
        let mut acc = 0;
        for (c, b) in s.cumulative.iter_mut().zip(&p.buckets) {
            acc += b.load(Ordering::Relaxed);
            *c = acc;
        }
        s
    }
}

/// One stage thread's histograms. Owned by that thread (no locks on the hot path) and merged
/// into a [`ProfileReport`] when the stage ends.
#[derive(Debug)]
pub struct StageProfile {
    enabled: bool,
    hists: Vec<Option<Histogram<u64>>>,
    live: Option<Arc<LivePhases>>,
}

impl StageProfile {
    pub fn new(enabled: bool) -> Self {
        StageProfile {
            enabled,
            hists: (0..Phase::ALL.len()).map(|_| None).collect(),
            live: None,
        }
    }

    /// Also adds every sample to `live` (when profiling is enabled).
    pub fn with_live(enabled: bool, live: Option<Arc<LivePhases>>) -> Self {
        StageProfile {
            live,
            ..StageProfile::new(enabled)
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts timing; pair with [`StageProfile::finish`].
    #[inline]
    pub fn start(&self) -> Span {
        Span(self.enabled.then(Instant::now))
    }

    /// Records the time since `span` started under `phase`.
    #[inline]
    pub fn finish(&mut self, phase: Phase, span: Span) {
        if let Some(t0) = span.0 {
            self.record_ns(phase, t0.elapsed().as_nanos() as u64);
        }
    }

    /// Times `f` under `phase`.
    #[inline]
    pub fn time<R>(&mut self, phase: Phase, f: impl FnOnce() -> R) -> R {
        let span = self.start();
        let r = f();
        self.finish(phase, span);
        r
    }

    /// Records a duration measured elsewhere (e.g. end-to-end from a capture timestamp).
    pub fn record_ns(&mut self, phase: Phase, ns: u64) {
        if !self.enabled {
            return;
        }
        let h = self.hists[phase.index()].get_or_insert_with(new_histogram);
        h.saturating_record(ns.clamp(1_000, MAX_NS));
        if let Some(live) = &self.live {
            live.record(phase, ns);
        }
    }

    /// Adds another stage's samples into this one.
    pub fn merge(&mut self, other: &StageProfile) {
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            if let Some(t) = theirs {
                let m = mine.get_or_insert_with(new_histogram);
                // both share bounds, so add cannot fail
                let _ = m.add(t);
            }
        }
        self.enabled |= other.enabled;
    }

    pub fn count(&self, phase: Phase) -> u64 {
        self.hists[phase.index()].as_ref().map_or(0, |h| h.len())
    }

    /// Summaries for every phase, in data-flow order (count 0 when a phase never ran).
    pub fn report(&self) -> Vec<PhaseStats> {
        Phase::ALL
            .iter()
            .map(|&p| PhaseStats::from_histogram(p, self.hists[p.index()].as_ref()))
            .collect()
    }
}

/// Latency summary of one phase, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseStats {
    pub phase: Phase,
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl PhaseStats {
    fn from_histogram(phase: Phase, h: Option<&Histogram<u64>>) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        match h {
            Some(h) if !h.is_empty() => PhaseStats {
                phase,
                count: h.len(),
                mean_ms: h.mean() / 1e6,
                p50_ms: ms(h.value_at_quantile(0.50)),
                p95_ms: ms(h.value_at_quantile(0.95)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                max_ms: ms(h.max()),
            },
            _ => PhaseStats {
                phase,
                count: 0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p95_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
            },
        }
    }
}

/// Pipeline-wide counters, shared by every stage (relaxed atomics: they are statistics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames the source delivered.
    pub frames_acquired: AtomicU64,
    /// Frames the process stage handled (including duplicates it short-cut).
    pub frames_processed: AtomicU64,
    /// Frames that reached display-ready.
    pub frames_displayed: AtomicU64,
    /// Dropped at the acquire -> process edge (process stage too slow).
    pub drops_process_edge: AtomicU64,
    /// Dropped at the process -> preview edge (newest kept).
    pub drops_preview_edge: AtomicU64,
    /// Frames whose processing was skipped because they repeated the previous one.
    pub duplicates_skipped: AtomicU64,
    /// Frames not processed under reduced processing (preview hidden, not recording).
    pub reduced_skipped: AtomicU64,
    /// Frames recorded but not rendered to the preview under reduced processing (preview
    /// hidden while recording: only the thumbnails are rendered).
    pub reduced_preview_skipped: AtomicU64,
    /// Frames not processed while paused.
    pub paused_skipped: AtomicU64,
    /// Total source wait in nanoseconds.
    pub wait_ns: AtomicU64,
    pub gaze_samples: AtomicU64,
    pub imu_samples: AtomicU64,
    /// Frames for which no gaze sample was available to match.
    pub frames_without_gaze: AtomicU64,
    /// Sum and maximum of |gaze time - frame time| over matched frames, in nanoseconds.
    pub gaze_dt_abs_sum_ns: AtomicU64,
    pub gaze_dt_abs_max_ns: AtomicU64,
    /// Frames written to the recording video (repeats included).
    pub record_frames: AtomicU64,
    /// Recorded frames that repeat the previous one (timer mode, camera slower).
    pub record_repeats: AtomicU64,
    /// Frames the recorder could not take because its queue was full (counted and logged in events.csv, never silent).
    pub record_queue_full: AtomicU64,
    /// Events (user events from `POST /events`, eye events, stream gaps) the recorder could
    /// not queue for events.csv: its CSV queue was full (a stalled disk) or its writer gone.
    /// The API answers such a user event with 503, never with 201.
    pub record_events_dropped: AtomicU64,
    /// Bytes of encoded video on disk.
    pub record_video_bytes: AtomicU64,
    /// Bytes of CSV rows written to disk.
    pub record_csv_bytes: AtomicU64,
    /// write(2) calls the CSV writers made (one per flush).
    pub record_csv_writes: AtomicU64,
    /// fsync(2) calls on recording files.
    pub record_fsyncs: AtomicU64,
    /// Times the encoder died and a new segment was started.
    pub encoder_restarts: AtomicU64,
    /// Recordings started.
    pub recordings: AtomicU64,
    /// RTP packets a network or replay source received (all sensors).
    pub net_rtp_packets: AtomicU64,
    /// RTP sequence numbers never received (loss; late arrivals give it back).
    pub net_rtp_lost: AtomicU64,
    /// Duplicate or late RTP packets (dropped: the depacketizer needs order).
    pub net_rtp_out_of_order: AtomicU64,
    /// Packets that are not valid RTP/RTCP/H.264 payloads (skipped).
    pub net_malformed_packets: AtomicU64,
    /// World access units dropped because a packet was lost or malformed.
    pub net_broken_access_units: AtomicU64,
    /// Complete access units skipped while waiting for an IDR after a loss or at start.
    pub net_skipped_access_units: AtomicU64,
    /// Access units the H.264 decoder rejected.
    pub net_decode_errors: AtomicU64,
    /// Gaze payloads of an unknown length (skipped, the stream goes on).
    pub net_unknown_gaze: AtomicU64,
    /// Eye-event payloads of an unknown type or size (skipped).
    pub net_unknown_events: AtomicU64,
    /// Eye events received (fixations, saccades, onsets, blinks).
    pub net_eye_events: AtomicU64,
    /// Frames or gaze samples dropped while waiting for their stream's first sender report.
    pub net_dropped_before_sr: AtomicU64,
    /// Longest time between two consecutive frames' arrival, ns (an outage shows here).
    pub net_max_frame_gap_ns: AtomicU64,
    /// Times the network source re-established its sessions after losing them.
    pub net_reconnects: AtomicU64,
    /// Packets dropped between the network thread and the pipeline because it fell behind.
    pub net_channel_drops: AtomicU64,
    /// RTSP replies to no request inside the TCP interleaved stream (the phone's stray
    /// `400 Bad Request`), dropped.
    pub net_tcp_stray_responses: AtomicU64,
    /// Runs of bytes in the TCP interleaved stream that started no frame (skipped to the next
    /// `$` frame).
    pub net_tcp_resyncs: AtomicU64,
    /// TCP SETUP replies without `interleaved=` (the requested channels were assumed).
    pub net_tcp_assumed_interleaved: AtomicU64,
    /// Frames decoded with error concealment after a loss, before the next IDR.
    pub net_concealed_frames: AtomicU64,
    /// Access units decoded without the loop filter (`--fast-decode`, nothing recording).
    pub net_fast_decoded: AtomicU64,
    /// Access units depacketized but not decoded (`--reduced-decode`: preview hidden, nothing
    /// recording; and those up to the next IDR when full decoding resumes).
    pub net_reduced_not_decoded: AtomicU64,
}

impl Counters {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            frames_acquired: g(&self.frames_acquired),
            frames_processed: g(&self.frames_processed),
            frames_displayed: g(&self.frames_displayed),
            drops_process_edge: g(&self.drops_process_edge),
            drops_preview_edge: g(&self.drops_preview_edge),
            duplicates_skipped: g(&self.duplicates_skipped),
            reduced_skipped: g(&self.reduced_skipped),
            reduced_preview_skipped: g(&self.reduced_preview_skipped),
            paused_skipped: g(&self.paused_skipped),
            wait_ns: g(&self.wait_ns),
            gaze_samples: g(&self.gaze_samples),
            imu_samples: g(&self.imu_samples),
            frames_without_gaze: g(&self.frames_without_gaze),
            gaze_dt_abs_sum_ns: g(&self.gaze_dt_abs_sum_ns),
            gaze_dt_abs_max_ns: g(&self.gaze_dt_abs_max_ns),
            record_frames: g(&self.record_frames),
            record_repeats: g(&self.record_repeats),
            record_queue_full: g(&self.record_queue_full),
            record_events_dropped: g(&self.record_events_dropped),
            record_video_bytes: g(&self.record_video_bytes),
            record_csv_bytes: g(&self.record_csv_bytes),
            record_csv_writes: g(&self.record_csv_writes),
            record_fsyncs: g(&self.record_fsyncs),
            encoder_restarts: g(&self.encoder_restarts),
            recordings: g(&self.recordings),
            net_rtp_packets: g(&self.net_rtp_packets),
            net_rtp_lost: g(&self.net_rtp_lost),
            net_rtp_out_of_order: g(&self.net_rtp_out_of_order),
            net_malformed_packets: g(&self.net_malformed_packets),
            net_broken_access_units: g(&self.net_broken_access_units),
            net_skipped_access_units: g(&self.net_skipped_access_units),
            net_decode_errors: g(&self.net_decode_errors),
            net_unknown_gaze: g(&self.net_unknown_gaze),
            net_unknown_events: g(&self.net_unknown_events),
            net_eye_events: g(&self.net_eye_events),
            net_dropped_before_sr: g(&self.net_dropped_before_sr),
            net_max_frame_gap_ns: g(&self.net_max_frame_gap_ns),
            net_reconnects: g(&self.net_reconnects),
            net_channel_drops: g(&self.net_channel_drops),
            net_tcp_stray_responses: g(&self.net_tcp_stray_responses),
            net_tcp_resyncs: g(&self.net_tcp_resyncs),
            net_tcp_assumed_interleaved: g(&self.net_tcp_assumed_interleaved),
            net_concealed_frames: g(&self.net_concealed_frames),
            net_fast_decoded: g(&self.net_fast_decoded),
            net_reduced_not_decoded: g(&self.net_reduced_not_decoded),
        }
    }
}

/// A plain copy of [`Counters`] for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    pub frames_acquired: u64,
    pub frames_processed: u64,
    pub frames_displayed: u64,
    pub drops_process_edge: u64,
    pub drops_preview_edge: u64,
    pub duplicates_skipped: u64,
    pub reduced_skipped: u64,
    pub reduced_preview_skipped: u64,
    pub paused_skipped: u64,
    pub wait_ns: u64,
    pub gaze_samples: u64,
    pub imu_samples: u64,
    pub frames_without_gaze: u64,
    pub gaze_dt_abs_sum_ns: u64,
    pub gaze_dt_abs_max_ns: u64,
    pub record_frames: u64,
    pub record_repeats: u64,
    pub record_queue_full: u64,
    pub record_events_dropped: u64,
    pub record_video_bytes: u64,
    pub record_csv_bytes: u64,
    pub record_csv_writes: u64,
    pub record_fsyncs: u64,
    pub encoder_restarts: u64,
    pub recordings: u64,
    pub net_rtp_packets: u64,
    pub net_rtp_lost: u64,
    pub net_rtp_out_of_order: u64,
    pub net_malformed_packets: u64,
    pub net_broken_access_units: u64,
    pub net_skipped_access_units: u64,
    pub net_decode_errors: u64,
    pub net_unknown_gaze: u64,
    pub net_unknown_events: u64,
    pub net_eye_events: u64,
    pub net_dropped_before_sr: u64,
    pub net_max_frame_gap_ns: u64,
    pub net_reconnects: u64,
    pub net_channel_drops: u64,
    pub net_tcp_stray_responses: u64,
    pub net_tcp_resyncs: u64,
    pub net_tcp_assumed_interleaved: u64,
    pub net_concealed_frames: u64,
    pub net_fast_decoded: u64,
    pub net_reduced_not_decoded: u64,
}

impl CounterSnapshot {
    /// Frames lost inside the pipeline (both edges).
    pub fn dropped(&self) -> u64 {
        self.drops_process_edge + self.drops_preview_edge
    }

    /// Mean |gaze time - frame time| of matched frames, in milliseconds.
    pub fn gaze_dt_abs_mean_ms(&self) -> f64 {
        let matched = self
            .frames_acquired
            .saturating_sub(self.frames_without_gaze);
        if matched == 0 {
            return 0.0;
        }
        self.gaze_dt_abs_sum_ns as f64 / matched as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut p = StageProfile::new(true);
        for i in 1..=100u64 {
            p.record_ns(Phase::Process, i * 1_000_000);
        }
        let s = &p.report()[Phase::Process.index()];
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p95_ms - 95.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
        assert!((s.mean_ms - 50.5).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn disabled_records_nothing() {
        let mut p = StageProfile::new(false);
        assert!(p.start().0.is_none());
        p.time(Phase::Acquire, || ());
        p.record_ns(Phase::Acquire, 5);
        assert_eq!(p.count(Phase::Acquire), 0);
    }

    #[test]
    fn live_totals_follow_the_samples() {
        let live = Arc::new(LivePhases::default());
        let mut p = StageProfile::with_live(true, Some(Arc::clone(&live)));
        p.record_ns(Phase::Encode, 3_000_000);
        p.record_ns(Phase::Encode, 12_000_000);
        p.record_ns(Phase::Encode, 2_000_000_000);
        let s = live.snapshot(Phase::Encode);
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_ns, 2_015_000_000);
        // <= 2 ms: none; <= 5 ms: one; <= 15 ms: two; the 2 s sample is above every bound.
        assert_eq!(s.cumulative[2], 0);
        assert_eq!(s.cumulative[3], 1);
        assert_eq!(s.cumulative[5], 2);
        assert_eq!(s.cumulative[LIVE_BUCKETS_NS.len() - 1], 2);
        assert_eq!(live.snapshot(Phase::Decode).count, 0);
        let mut off = StageProfile::with_live(false, Some(Arc::clone(&live)));
        off.record_ns(Phase::Decode, 1_000_000);
        assert_eq!(live.snapshot(Phase::Decode).count, 0);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = StageProfile::new(true);
        let mut b = StageProfile::new(true);
        a.record_ns(Phase::Overlay, 2_000_000);
        b.record_ns(Phase::Overlay, 4_000_000);
        b.record_ns(Phase::Preview, 1_000_000);
        a.merge(&b);
        assert_eq!(a.count(Phase::Overlay), 2);
        assert_eq!(a.count(Phase::Preview), 1);
    }
}
