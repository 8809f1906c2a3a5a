//! The run report: one versioned JSON document per run (environment, toggles, per-phase
//! latency, CPU, memory, counters, targets) and its terminal rendering as tables.

use std::collections::BTreeMap;

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

use crate::coordinator::RunOutcome;
use crate::flamegraph::FlamegraphInfo;
use crate::overlay::CacheStats;
use crate::platform::PlatformCaps;
use crate::profile::{CounterSnapshot, Phase, PhaseStats};
use crate::record::RecordingSummary;
use crate::resources::{ResourceSummary, ThreadCpu};
use crate::source::SourceInfo;
use crate::targets::{self, TargetResult, Verdict};
use crate::toggles::Toggles;

/// Bumped on any incompatible change of the JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct ToolInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub git_revision: &'static str,
}

impl ToolInfo {
    pub fn current() -> Self {
        ToolInfo {
            name: "eyetrack",
            version: env!("CARGO_PKG_VERSION"),
            git_revision: env!("EYETRACK_GIT_REV"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CpuStats {
    /// CPU-seconds (user + sys) of the whole process tree during the run.
    pub cpu_seconds: f64,
    /// CPU-seconds per second of stream: the same meaning paced or offline.
    pub per_stream_second: f64,
    /// `per_stream_second` as a percentage of one core (the targets' unit).
    pub percent_of_one_core: f64,
    /// `cpu_seconds` by process and thread name, most first (an additive field of schema 1).
    pub threads: Vec<ThreadCpu>,
    /// `cpu_seconds` that no thread row holds: threads that ended between two readings (the
    /// stop, short-lived children such as ffprobe) and tick rounding.
    pub unattributed_cpu_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub tool: ToolInfo,
    pub command_line: Vec<String>,
    /// "streaming" for `eyetrack run` without recording.
    pub scenario: String,
    pub platform: PlatformCaps,
    pub source: SourceInfo,
    pub toggles: Toggles,
    pub preview_box: [usize; 2],
    pub paced: bool,
    pub wall_seconds: f64,
    pub stream_seconds: f64,
    pub frames: CounterSnapshot,
    pub dropped_frames: u64,
    pub dropped_frames_percent: f64,
    pub displayed_fps: f64,
    pub cpu: CpuStats,
    pub rss_peak_mb: f64,
    pub max_processes: usize,
    pub phases: Vec<PhaseStats>,
    pub overlay_cache: CacheStats,
    pub pool_allocations: u64,
    pub frame_errors: u64,
    pub error: Option<String>,
    pub targets: Vec<TargetResult>,
    /// The sampler's SVG, sample count and own cost; null when `--flamegraph` was not given.
    pub flamegraph: Option<FlamegraphInfo>,
    /// Every recording the run made, in order (empty without `--record`).
    pub recordings: Vec<RecordingSummary>,
    /// The fault that ended a recording while streaming went on, if any.
    pub record_error: Option<String>,
}

/// Everything the report is made of that the coordinator does not know.
pub struct ReportInputs<'a> {
    pub command_line: Vec<String>,
    pub scenario: &'a str,
    pub source: SourceInfo,
    pub toggles: Toggles,
    pub preview_box: (usize, usize),
    pub paced: bool,
    pub resources: ResourceSummary,
    pub flamegraph: Option<FlamegraphInfo>,
    pub recordings: Vec<RecordingSummary>,
}

impl RunReport {
    pub fn build(outcome: &RunOutcome, inputs: ReportInputs<'_>, platform: &PlatformCaps) -> Self {
        let frames = outcome.counters;
        let dropped = frames.dropped();
        let dropped_pct = if frames.frames_acquired > 0 {
            100.0 * dropped as f64 / frames.frames_acquired as f64
        } else {
            0.0
        };
        let per_stream_second = if outcome.stream_seconds > 0.0 {
            inputs.resources.cpu_seconds / outcome.stream_seconds
        } else {
            0.0
        };
        let wall = outcome.wall.as_secs_f64();
        let phases = outcome.profile.report();
        let rss_peak_mb = inputs.resources.peak_rss_bytes as f64 / (1024.0 * 1024.0);
        let attributed: f64 = inputs.resources.threads.iter().map(|t| t.cpu_seconds).sum();
        let cpu = CpuStats {
            cpu_seconds: inputs.resources.cpu_seconds,
            per_stream_second,
            percent_of_one_core: per_stream_second * 100.0,
            threads: inputs.resources.threads.clone(),
            unattributed_cpu_seconds: (inputs.resources.cpu_seconds - attributed).max(0.0),
        };
        let metrics = metric_values(&phases, cpu.percent_of_one_core, dropped_pct, rss_peak_mb);
        let targets = targets::evaluate(&targets::documented(), inputs.scenario, &metrics);
        RunReport {
            schema_version: SCHEMA_VERSION,
            tool: ToolInfo::current(),
            command_line: inputs.command_line,
            scenario: inputs.scenario.to_owned(),
            platform: platform.clone(),
            source: inputs.source,
            toggles: inputs.toggles,
            preview_box: [inputs.preview_box.0, inputs.preview_box.1],
            paced: inputs.paced,
            wall_seconds: wall,
            stream_seconds: outcome.stream_seconds,
            frames,
            dropped_frames: dropped,
            dropped_frames_percent: dropped_pct,
            displayed_fps: if wall > 0.0 {
                frames.frames_displayed as f64 / wall
            } else {
                0.0
            },
            cpu,
            rss_peak_mb,
            max_processes: inputs.resources.max_processes,
            phases,
            overlay_cache: outcome.overlay_cache,
            pool_allocations: outcome.pool_allocations,
            frame_errors: outcome.frame_errors,
            error: outcome.error.clone(),
            targets,
            flamegraph: inputs.flamegraph,
            recordings: inputs.recordings,
            record_error: outcome.record_error.clone(),
        }
    }

    /// Phase summary and targets as terminal tables.
    pub fn render_tables(&self) -> String {
        let mut phases = Builder::default();
        phases.push_record([
            "phase", "count", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms",
        ]);
        for p in &self.phases {
            if p.count == 0 {
                phases.push_record([p.phase.name(), "0", "-", "-", "-", "-", "-"]);
                continue;
            }
            phases.push_record([
                p.phase.name().to_owned(),
                p.count.to_string(),
                format!("{:.3}", p.mean_ms),
                format!("{:.3}", p.p50_ms),
                format!("{:.3}", p.p95_ms),
                format!("{:.3}", p.p99_ms),
                format!("{:.3}", p.max_ms),
            ]);
        }
        let mut targets = Builder::default();
        targets.push_record(["target", "limit", "measured", "result"]);
        for t in self
            .targets
            .iter()
            .filter(|t| t.verdict != Verdict::NotApplicable)
        {
            targets.push_record([
                t.target.description.clone(),
                t.target.limit_label(),
                t.value
                    .map(|v| format!("{v:.2} {}", t.target.unit))
                    .unwrap_or_else(|| "-".into()),
                t.verdict.label().to_owned(),
            ]);
        }
        let f = &self.frames;
        format!(
            "{}\n\n{}\n\nframes: {} acquired, {} processed, {} displayed, {} dropped ({:.2} %), \
             {} duplicates skipped, {} skipped by reduced processing ({} more recorded \
             without a preview), {} paused\n\
             gaze: {} samples, {} frames without gaze, frame-gaze |dt| mean {:.2} ms, max {:.2} ms\n\
             cpu: {:.3} CPU-s per stream-s ({:.1} % of one core) over {:.1} s of stream; \
             peak RSS {:.1} MB\n",
            phases.build().with(Style::rounded()),
            targets.build().with(Style::rounded()),
            f.frames_acquired,
            f.frames_processed,
            f.frames_displayed,
            self.dropped_frames,
            self.dropped_frames_percent,
            f.duplicates_skipped,
            f.reduced_skipped,
            f.reduced_preview_skipped,
            f.paused_skipped,
            f.gaze_samples,
            f.frames_without_gaze,
            f.gaze_dt_abs_mean_ms(),
            f.gaze_dt_abs_max_ns as f64 / 1e6,
            self.cpu.per_stream_second,
            self.cpu.percent_of_one_core,
            self.stream_seconds,
            self.rss_peak_mb,
        ) + &self.thread_line()
            + &self.network_lines()
            + &self.recording_lines()
    }

    /// Where the CPU went, by thread: `eyetrack/acquire 1.92 s, ffmpeg/(main) 0.40 s, ...`.
    fn thread_line(&self) -> String {
        if self.cpu.threads.is_empty() {
            return String::new();
        }
        let mut parts: Vec<String> = self
            .cpu
            .threads
            .iter()
            .filter(|t| t.cpu_seconds > 0.0)
            .map(|t| {
                let n = if t.threads > 1 {
                    format!(" x{}", t.threads)
                } else {
                    String::new()
                };
                format!("{}/{}{n} {:.2} s", t.process, t.thread, t.cpu_seconds)
            })
            .collect();
        parts.push(format!(
            "unattributed {:.2} s",
            self.cpu.unattributed_cpu_seconds
        ));
        format!("cpu by thread: {}\n", parts.join(", "))
    }

    /// Loss, decode and reconnect counts of a Neon or fixture source (nothing for synthetic).
    fn network_lines(&self) -> String {
        let f = &self.frames;
        if f.net_rtp_packets == 0 && f.net_reconnects == 0 {
            return String::new();
        }
        format!(
            "network: {} RTP packets, {} lost, {} out of order, {} malformed; {} broken access \
             units, {} skipped waiting for an IDR, {} concealed frames, {} decode errors; {} unknown gaze, {} unknown \
             events, {} eye events; {} reconnect(s), longest frame gap {:.0} ms, {} channel drops; TCP: {} stray replies, {} \
             resyncs, {} assumed channels\n",
            f.net_rtp_packets,
            f.net_rtp_lost,
            f.net_rtp_out_of_order,
            f.net_malformed_packets,
            f.net_broken_access_units,
            f.net_skipped_access_units,
            f.net_concealed_frames,
            f.net_decode_errors,
            f.net_unknown_gaze,
            f.net_unknown_events,
            f.net_eye_events,
            f.net_reconnects,
            f.net_max_frame_gap_ns as f64 / 1e6,
            f.net_channel_drops,
            f.net_tcp_stray_responses,
            f.net_tcp_resyncs,
            f.net_tcp_assumed_interleaved,
        )
    }

    fn recording_lines(&self) -> String {
        let f = &self.frames;
        let mut out = String::new();
        if self.recordings.is_empty() && f.recordings == 0 {
            return out;
        }
        out += &format!(
            "recording: {} recording(s), {} frames written ({} repeats), {} skipped on a full \
             queue, {} event(s) dropped, {} encoder restart(s), {:.1} MB video, {:.1} KB CSV in \
             {} writes, {} fsyncs\n",
            f.recordings,
            f.record_frames,
            f.record_repeats,
            f.record_queue_full,
            f.record_events_dropped,
            f.encoder_restarts,
            f.record_video_bytes as f64 / 1048576.0,
            f.record_csv_bytes as f64 / 1024.0,
            f.record_csv_writes,
            f.record_fsyncs,
        );
        for r in &self.recordings {
            out += &format!("  {} ({})\n", r.dir.display(), r.end);
        }
        if let Some(e) = &self.record_error {
            out += &format!("recording error: {e}\n");
        }
        out
    }
}

/// Values the targets file refers to by name.
pub fn metric_values(
    phases: &[PhaseStats],
    cpu_percent: f64,
    dropped_percent: f64,
    rss_peak_mb: f64,
) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    m.insert("cpu_percent_of_one_core".to_owned(), cpu_percent);
    m.insert("dropped_frames_percent".to_owned(), dropped_percent);
    m.insert("rss_peak_mb".to_owned(), rss_peak_mb);
    for p in phases.iter().filter(|p| p.count > 0) {
        m.insert(format!("{}_p95_ms", p.phase.name()), p.p95_ms);
    }
    debug_assert!(Phase::ALL.len() == 8);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::StageProfile;

    #[test]
    fn unmeasured_phases_are_not_metrics() {
        let mut p = StageProfile::new(true);
        p.record_ns(Phase::Process, 3_000_000);
        let m = metric_values(&p.report(), 10.0, 0.0, 50.0);
        assert!(m.contains_key("process_p95_ms"));
        assert!(!m.contains_key("encode_p95_ms"));
        assert_eq!(m["cpu_percent_of_one_core"], 10.0);
    }
}
