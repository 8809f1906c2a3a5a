//! `GET /metrics`: the pipeline counters, the run-time switches, the status rates, the preview
//! encoder and the live per-phase latency histograms in the OpenMetrics text format, which
//! Prometheus scrapes natively.
//!
//! prometheus-client does the exposition (names, escaping, `_total`, `+Inf`, `# EOF`); the
//! values are read at scrape time by a collector from the atomics the pipeline already keeps,
//! so nothing is counted twice and a run without scrapes pays nothing.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::routes::AppState;
use crate::profile::{LivePhaseSnapshot, Phase, LIVE_BUCKETS_NS};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Counters that are high-water marks, not running totals: exported as gauges.
const GAUGE_COUNTERS: [&str; 2] = ["gaze_dt_abs_max_ns", "net_max_frame_gap_ns"];

/// Everything one scrape reports, copied out of the shared state first.
#[derive(Debug)]
struct Scrape {
    counters: Vec<(String, u64)>,
    gauges: Vec<(&'static str, &'static str, f64)>,
    phases: Vec<(Phase, LivePhaseSnapshot)>,
}

/// Renders one scrape.
pub fn render(state: &AppState) -> Result<String, std::fmt::Error> {
    let h = &state.handles;
    let snapshot = h.counters.snapshot();
    // The counter struct's field names are the metric names: one list, never out of step.
    let counters = match serde_json::to_value(snapshot) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_u64().map(|v| (k, v)))
            .collect(),
        _ => Vec::new(),
    };
    let rates = state.status.rates();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let c = &h.control;
    let p = state.preview.stats();
    let recording = h.recorder.as_ref().is_some_and(|r| r.active().is_some());
    let gauges = vec![
        ("fps", "Display-ready frames per second over the last second.", rates.fps),
        ("acquired_fps", "Frames the source delivered per second over the last second.", rates.acquired_fps),
        ("cpu_percent", "CPU of the process tree (encoder children included), percent of one core, last second.", rates.cpu_percent),
        ("rss_bytes", "Resident memory of the process tree.", rates.rss_bytes as f64),
        ("paused", "1 while processing is paused (POST /pause).", flag(c.paused.load(Ordering::Relaxed))),
        ("preview_visible", "1 while someone looks at the preview; 0 allows reduced processing (plan 1.6).", flag(c.preview_visible.load(Ordering::Relaxed))),
        ("recording_active", "1 while a recording is being written.", flag(recording)),
        ("source_disconnected", "1 while a network source is reconnecting.", flag(c.disconnected.load(Ordering::Relaxed))),
        ("stopping", "1 once the pipeline has been asked to stop.", flag(c.stop.load(Ordering::Relaxed))),
        ("preview_viewers", "Open MJPEG preview streams.", state.preview.viewers() as f64),
        ("preview_jpeg_frames", "Preview frames encoded as JPEG (only while someone watches).", p.frames_encoded.load(Ordering::Relaxed) as f64),
        ("preview_jpeg_seconds", "Time spent encoding preview JPEGs.", p.encode_ns.load(Ordering::Relaxed) as f64 / 1e9),
        ("preview_jpeg_bytes", "Bytes of preview JPEG parts encoded.", p.bytes_encoded.load(Ordering::Relaxed) as f64),
        ("preview_jpeg_errors", "Preview frames the JPEG encoder refused.", p.encode_errors.load(Ordering::Relaxed) as f64),
        ("preview_jpeg_buffers", "Output buffers the preview encoder allocated (flat while streaming).", p.buffers_allocated.load(Ordering::Relaxed) as f64),
    ];
    let phases = match &h.phases {
        Some(live) => Phase::ALL
            .iter()
            .map(|&ph| (ph, live.snapshot(ph)))
            .collect(),
        None => Vec::new(),
    };
    let mut registry = Registry::with_prefix("eyetrack");
    registry.register_collector(Box::new(Scrape {
        counters,
        gauges,
        phases,
    }));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, value) in &self.counters {
            let help = format!("Pipeline counter {name} (see profile::Counters).");
            if GAUGE_COUNTERS.contains(&name.as_str()) {
                let g = ConstGauge::new(*value as f64);
                let m = encoder.encode_descriptor(name, &help, None, g.metric_type())?;
                g.encode(m)?;
            } else {
                let ctr = ConstCounter::new(*value);
                let m = encoder.encode_descriptor(name, &help, None, ctr.metric_type())?;
                ctr.encode(m)?;
            }
        }
        for (name, help, value) in &self.gauges {
            let g = ConstGauge::new(*value);
            let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)?;
        }
        if self.phases.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "phase_duration",
            "Per-phase latency of every frame since the run started (live copy of the report's histograms).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let mut buckets = [(0.0f64, 0u64); LIVE_BUCKETS_NS.len() + 1];
        for (phase, s) in &self.phases {
            // Non-cumulative counts per bound, the last one +Inf.
            let mut prev = 0;
            for (i, (&bound, &cum)) in LIVE_BUCKETS_NS.iter().zip(&s.cumulative).enumerate() {
                buckets[i] = (bound as f64 / 1e9, cum - prev);
                prev = cum;
            }
            buckets[LIVE_BUCKETS_NS.len()] = (f64::INFINITY, s.count.saturating_sub(prev));
            let labels = [("phase", phase.name())];
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(s.sum_ns as f64 / 1e9, s.count, &buckets, None)?;
        }
        Ok(())
    }
}
