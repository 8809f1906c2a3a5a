//! Turns the per-run reports of `eyetrack run` into per-variant summaries over the repeats, and
//! judges each variant against the baseline without mistaking noise for a win.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use pipeline::targets::{self, TargetResult};

/// The fields of one `eyetrack run` report (schema 1) the runner needs; others are ignored, so
/// the pipeline's report can grow without breaking the runner.
#[derive(Clone, Debug, Deserialize)]
pub struct RunSample {
    pub schema_version: u32,
    pub cpu: Cpu,
    pub rss_peak_mb: f64,
    pub dropped_frames: u64,
    pub dropped_frames_percent: f64,
    pub displayed_fps: f64,
    pub stream_seconds: f64,
    pub wall_seconds: f64,
    pub phases: Vec<Phase>,
    pub frames: Frames,
    #[serde(default)]
    pub toggles: serde_json::Value,
    #[serde(default)]
    pub tool: serde_json::Value,
    #[serde(default)]
    pub error: Option<String>,
    /// Present when the run drew a flamegraph.
    #[serde(default)]
    pub flamegraph: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Cpu {
    pub cpu_seconds: f64,
    pub per_stream_second: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Phase {
    pub phase: String,
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Frames {
    pub frames_acquired: u64,
    pub frames_processed: u64,
    pub frames_displayed: u64,
    pub duplicates_skipped: u64,
    /// Recording counters (zero without recording; absent in older reports).
    #[serde(default)]
    pub recordings: u64,
    #[serde(default)]
    pub record_video_bytes: u64,
    #[serde(default)]
    pub record_csv_bytes: u64,
    #[serde(default)]
    pub record_csv_writes: u64,
    #[serde(default)]
    pub record_fsyncs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an eyetrack run report: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} has report schema {found}; this runner reads schema 1")]
    Schema { path: String, found: u32 },
}

impl RunSample {
    pub fn load(path: &Path) -> Result<Self, SampleError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SampleError::Io {
            path: p.clone(),
            source,
        })?;
        let s: RunSample = serde_json::from_slice(&bytes).map_err(|source| SampleError::Parse {
            path: p.clone(),
            source,
        })?;
        if s.schema_version != 1 {
            return Err(SampleError::Schema {
                path: p,
                found: s.schema_version,
            });
        }
        Ok(s)
    }
}

/// Median and range of one quantity over the repeats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let median = match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Spread {
            median,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            values: values.to_vec(),
        }
    }

    /// Range relative to the median, in percent: the noise the repeats showed.
    pub fn spread_percent(&self) -> f64 {
        if self.median.abs() < f64::EPSILON {
            return 0.0;
        }
        100.0 * (self.max - self.min) / self.median
    }

    fn overlaps(&self, other: &Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

/// How a variant's CPU compares with the baseline's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The reference itself.
    Baseline,
    /// Less CPU, and the repeats do not overlap.
    Better,
    /// More CPU, and the repeats do not overlap.
    Worse,
    /// The ranges over the repeats overlap: inside the noise.
    NoChange,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Baseline => "baseline",
            Verdict::Better => "less CPU",
            Verdict::Worse => "MORE CPU",
            Verdict::NoChange => "no change",
        }
    }
}

/// A change counts only when the repeat ranges do not overlap *and* the medians differ by at
/// least the wider of the two ranges: with three repeats, two ranges can miss each other by
/// drift alone (seen here: a toggle that does nothing on an I420 source "cost" 9 %), so the
/// difference must also stand clear of the noise each side showed. With one repeat there is no
/// measured noise, so nothing can be called a change.
pub fn judge(variant: &Spread, baseline: &Spread) -> Verdict {
    if variant.values.len() < 2 || baseline.values.len() < 2 || variant.overlaps(baseline) {
        return Verdict::NoChange;
    }
    let noise = (variant.max - variant.min).max(baseline.max - baseline.min);
    if (variant.median - baseline.median).abs() < noise {
        return Verdict::NoChange;
    }
    if variant.median < baseline.median {
        Verdict::Better
    } else {
        Verdict::Worse
    }
}

/// Median of each phase statistic over the repeats.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub phase: String,
    pub count: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One variant of one scenario, over its repeats.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantSummary {
    pub name: String,
    pub flags: Vec<String>,
    pub toggles: serde_json::Value,
    pub repeats: usize,
    pub failed_runs: usize,
    /// CPU-seconds of the process tree per second of stream.
    pub cpu_per_stream_second: Spread,
    pub cpu_percent_of_one_core: f64,
    pub rss_peak_mb_max: f64,
    pub dropped_frames_total: u64,
    pub dropped_frames_percent: Spread,
    pub displayed_fps: Spread,
    pub end_to_end_p95_ms: Spread,
    pub duplicates_skipped_median: f64,
    pub phases: Vec<PhaseSummary>,
    /// Bytes and fsyncs appear with recording scenarios.
    pub bytes_written: Option<u64>,
    pub fsyncs: Option<u64>,
    /// CPU change against the baseline in percent (negative: less CPU).
    pub cpu_change_percent: f64,
    /// Median CPU over the cell's ffmpeg floor (1.10 = 10 % above ffmpeg alone), for fixture
    /// sources.
    #[serde(default)]
    pub cpu_vs_floor: Option<f64>,
    pub verdict: Verdict,
    pub targets: Vec<TargetResult>,
    /// The extra run that drew the flamegraph (not part of the statistics), with the sampler's
    /// samples and overhead.
    pub flamegraph: Option<crate::runner::FlameRun>,
    pub runs: Vec<String>,
    pub errors: Vec<String>,
}

fn phase<'a>(s: &'a RunSample, name: &str) -> Option<&'a Phase> {
    s.phases.iter().find(|p| p.phase == name)
}

/// Summarizes the successful runs of one variant (`errors` lists the failed ones).
#[allow(clippy::too_many_arguments)]
pub fn summarize(
    name: &str,
    flags: &[String],
    scenario: &str,
    samples: &[RunSample],
    runs: Vec<String>,
    errors: Vec<String>,
    flamegraph: Option<crate::runner::FlameRun>,
) -> VariantSummary {
    let col = |f: &dyn Fn(&RunSample) -> f64| -> Vec<f64> { samples.iter().map(f).collect() };
    let cpu = Spread::of(&col(&|s| s.cpu.per_stream_second));
    let e2e = Spread::of(&col(&|s| {
        phase(s, "end_to_end").map_or(f64::NAN, |p| p.p95_ms)
    }));
    let phase_names: Vec<String> = samples
        .first()
        .map(|s| s.phases.iter().map(|p| p.phase.clone()).collect())
        .unwrap_or_default();
    let phases: Vec<PhaseSummary> = phase_names
        .iter()
        .map(|n| {
            let m = |f: &dyn Fn(&Phase) -> f64| {
                Spread::of(&col(&|s| phase(s, n).map_or(f64::NAN, f))).median
            };
            PhaseSummary {
                phase: n.clone(),
                count: m(&|p| p.count as f64),
                mean_ms: m(&|p| p.mean_ms),
                p50_ms: m(&|p| p.p50_ms),
                p95_ms: m(&|p| p.p95_ms),
                p99_ms: m(&|p| p.p99_ms),
                max_ms: m(&|p| p.max_ms),
            }
        })
        .collect();
    let rss = col(&|s| s.rss_peak_mb).into_iter().fold(f64::NAN, f64::max);
    let recorded = samples.iter().any(|s| s.frames.recordings > 0);
    let dropped = Spread::of(&col(&|s| s.dropped_frames_percent));

    // Targets are judged on the medians, the same metrics a single run is judged on.
    let mut metrics = BTreeMap::new();
    metrics.insert("cpu_percent_of_one_core".to_owned(), cpu.median * 100.0);
    metrics.insert("dropped_frames_percent".to_owned(), dropped.median);
    metrics.insert("rss_peak_mb".to_owned(), rss);
    for p in phases.iter().filter(|p| p.count > 0.0) {
        metrics.insert(format!("{}_p95_ms", p.phase), p.p95_ms);
    }
    let targets = targets::evaluate(&targets::documented(), scenario_kind(scenario), &metrics);

    VariantSummary {
        name: name.to_owned(),
        flags: flags.to_vec(),
        toggles: samples
            .first()
            .map(|s| s.toggles.clone())
            .unwrap_or_default(),
        repeats: samples.len(),
        failed_runs: errors.len(),
        cpu_percent_of_one_core: cpu.median * 100.0,
        cpu_per_stream_second: cpu,
        rss_peak_mb_max: rss,
        dropped_frames_total: samples.iter().map(|s| s.dropped_frames).sum(),
        dropped_frames_percent: dropped,
        displayed_fps: Spread::of(&col(&|s| s.displayed_fps)),
        end_to_end_p95_ms: e2e,
        duplicates_skipped_median: Spread::of(&col(&|s| s.frames.duplicates_skipped as f64)).median,
        phases,
        bytes_written: recorded.then(|| {
            Spread::of(&col(&|s| {
                (s.frames.record_video_bytes + s.frames.record_csv_bytes) as f64
            }))
            .median as u64
        }),
        fsyncs: recorded
            .then(|| Spread::of(&col(&|s| s.frames.record_fsyncs as f64)).median as u64),
        cpu_change_percent: 0.0,
        cpu_vs_floor: None,
        verdict: Verdict::Baseline,
        targets,
        flamegraph,
        runs,
        errors,
    }
}

/// Which targets apply: recording scenarios are judged by the recording targets.
pub fn scenario_kind(scenario: &str) -> &'static str {
    if scenario.starts_with("recording") || scenario == "start-stop-cycles" {
        "recording"
    } else {
        "streaming"
    }
}

/// Fills in each variant's change and verdict against the first (baseline) variant.
pub fn compare_to_baseline(variants: &mut [VariantSummary]) {
    let Some(base) = variants.first().map(|b| b.cpu_per_stream_second.clone()) else {
        return;
    };
    for (i, v) in variants.iter_mut().enumerate() {
        if i == 0 {
            v.verdict = Verdict::Baseline;
            v.cpu_change_percent = 0.0;
            continue;
        }
        v.cpu_change_percent = if base.median > 0.0 {
            100.0 * (v.cpu_per_stream_second.median - base.median) / base.median
        } else {
            f64::NAN
        };
        v.verdict = judge(&v.cpu_per_stream_second, &base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert!((Spread::of(&[0.9, 1.0, 1.1]).spread_percent() - 20.0).abs() < 1e-9);
        assert!(Spread::of(&[]).median.is_nan());
    }

    #[test]
    fn overlapping_repeats_are_no_change_never_a_win() {
        let base = Spread::of(&[1.00, 1.05, 0.95]);
        assert_eq!(
            judge(&Spread::of(&[0.90, 0.97, 0.93]), &base),
            Verdict::NoChange
        );
        assert_eq!(
            judge(&Spread::of(&[0.60, 0.62, 0.61]), &base),
            Verdict::Better
        );
        assert_eq!(
            judge(&Spread::of(&[1.20, 1.30, 1.25]), &base),
            Verdict::Worse
        );
        // one repeat measures no noise, so it cannot show a change
        assert_eq!(
            judge(&Spread::of(&[0.1]), &Spread::of(&[1.0])),
            Verdict::NoChange
        );
    }

    fn sample(cpu: f64) -> RunSample {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1,
            "cpu": {"cpu_seconds": cpu * 10.0, "per_stream_second": cpu},
            "rss_peak_mb": 30.0, "dropped_frames": 0, "dropped_frames_percent": 0.0,
            "displayed_fps": 30.0, "stream_seconds": 10.0, "wall_seconds": 10.0,
            "phases": [{"phase": "end_to_end", "count": 300, "mean_ms": 2.0, "p50_ms": 2.0,
                        "p95_ms": 3.0, "p99_ms": 4.0, "max_ms": 5.0},
                       {"phase": "encode", "count": 0, "mean_ms": 0.0, "p50_ms": 0.0,
                        "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}],
            "frames": {"frames_acquired": 300, "frames_processed": 300,
                       "frames_displayed": 300, "duplicates_skipped": 0},
            "some_future_field": true
        }))
        .unwrap()
    }

    #[test]
    fn summaries_and_targets_from_medians() {
        let base = summarize(
            "baseline",
            &[],
            "streaming",
            &[sample(0.10), sample(0.11), sample(0.12)],
            vec![],
            vec![],
            None,
        );
        let fast = summarize(
            "x",
            &[],
            "streaming",
            &[sample(0.05), sample(0.06), sample(0.055)],
            vec![],
            vec![],
            None,
        );
        let mut v = vec![base, fast];
        compare_to_baseline(&mut v);
        assert_eq!(v[1].verdict, Verdict::Better);
        assert!((v[1].cpu_change_percent + 50.0).abs() < 1e-9);
        let cpu_target = v[1]
            .targets
            .iter()
            .find(|t| t.target.id == "cpu_streaming")
            .unwrap();
        assert_eq!(cpu_target.value, Some(5.5));
        let encode = v[1]
            .targets
            .iter()
            .find(|t| t.target.id == "encode_p95")
            .unwrap();
        assert_eq!(encode.verdict, pipeline::targets::Verdict::NotApplicable);
    }
}
