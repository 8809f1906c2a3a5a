//! Terminal tables for a suite report: targets per scenario, variants against the baseline, and
//! the comparison of two suite reports.

use tabled::builder::Builder;
use tabled::settings::Style;

use crate::aggregate::{Spread, Verdict};
use crate::runner::SuiteReport;

fn spread_cell(s: &Spread, scale: f64, unit: &str) -> String {
    if s.median.is_nan() {
        return "-".into();
    }
    format!(
        "{:.1}{unit} ({:.1}-{:.1})",
        s.median * scale,
        s.min * scale,
        s.max * scale
    )
}

/// Variants against the baseline, per scenario.
pub fn variants_table(report: &SuiteReport) -> String {
    let mut out = String::new();
    for sc in &report.scenarios {
        let mut b = Builder::default();
        b.push_record([
            "variant",
            "CPU % of a core (min-max)",
            "vs baseline",
            "result",
            "process p95 ms",
            "preview p95 ms",
            "overlay p95 ms",
            "e2e p95 ms",
            "drops",
            "runs",
        ]);
        for v in &sc.variants {
            let p95 = |name: &str| {
                v.phases
                    .iter()
                    .find(|p| p.phase == name)
                    .filter(|p| p.count > 0.0)
                    .map_or("-".into(), |p| format!("{:.2}", p.p95_ms))
            };
            let change = match v.verdict {
                Verdict::Baseline => "-".to_owned(),
                _ if v.cpu_change_percent.is_nan() => "-".to_owned(),
                _ => format!("{:+.1} %", v.cpu_change_percent),
            };
            b.push_record([
                v.name.clone(),
                spread_cell(&v.cpu_per_stream_second, 100.0, ""),
                change,
                v.verdict.label().to_owned(),
                p95("process"),
                p95("preview"),
                p95("overlay"),
                p95("end_to_end"),
                v.dropped_frames_total.to_string(),
                if v.failed_runs > 0 {
                    format!("{} ok, {} FAILED", v.repeats, v.failed_runs)
                } else {
                    v.repeats.to_string()
                },
            ]);
        }
        out.push_str(&format!(
            "scenario {} — CPU is CPU-seconds per stream-second of the whole process tree; \
             a change inside the repeat-to-repeat noise is \"no change\"\n{}\n\n",
            sc.scenario,
            b.build().with(Style::rounded())
        ));
    }
    out
}

/// The documented targets per scenario for the baseline and the all-optimized variant (or the
/// last variant), pass/fail.
pub fn targets_table(report: &SuiteReport) -> String {
    let mut out = String::new();
    for sc in &report.scenarios {
        let shown: Vec<_> = sc
            .variants
            .iter()
            .enumerate()
            .filter(|(i, v)| *i == 0 || v.name == "all-optimized" || *i + 1 == sc.variants.len())
            .map(|(_, v)| v)
            .collect();
        let mut b = Builder::default();
        let mut header = vec!["target".to_owned(), "limit".to_owned()];
        header.extend(shown.iter().map(|v| v.name.clone()));
        b.push_record(header);
        let Some(first) = shown.first() else { continue };
        for (ti, t) in first.targets.iter().enumerate() {
            if t.verdict == pipeline::targets::Verdict::NotApplicable {
                continue;
            }
            let mut row = vec![t.target.description.clone(), t.target.limit_label()];
            for v in &shown {
                row.push(v.targets.get(ti).map_or("-".into(), |r| match r.value {
                    Some(val) => format!("{val:.2} {}", r.verdict.label()),
                    None => r.verdict.label().to_owned(),
                }));
            }
            b.push_record(row);
        }
        out.push_str(&format!(
            "targets, scenario {}\n{}\n\n",
            sc.scenario,
            b.build().with(Style::rounded())
        ));
    }
    out
}
