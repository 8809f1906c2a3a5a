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
            "vs ffmpeg floor",
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
                v.cpu_vs_floor.map_or("-".into(), |r| format!("{r:.2}x")),
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
        let floor = sc.floor.as_ref().map_or(String::new(), |f| {
            format!(
                "; floor {} = {}",
                spread_cell(&f.cpu_per_stream_second, 100.0, " %"),
                f.work
            )
        });
        out.push_str(&format!(
            "{} — CPU is CPU-seconds per stream-second of the whole process tree; \
             a change inside the repeat-to-repeat noise is \"no change\"{floor}\n{}\n\n",
            sc.title(),
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
            "targets, {}\n{}\n\n",
            sc.title(),
            b.build().with(Style::rounded())
        ));
    }
    out
}

/// The ffmpeg floors and the fast-decode picture cost: what each cell is measured against.
pub fn floor_table(report: &SuiteReport) -> String {
    let mut b = Builder::default();
    b.push_record([
        "cell",
        "ffmpeg alone",
        "CPU % of a core (min-max)",
        "baseline vs floor",
        "all-optimized vs floor",
    ]);
    let mut rows = 0;
    for sc in &report.scenarios {
        let Some(f) = &sc.floor else { continue };
        let ratio = |name: &str| {
            sc.variants
                .iter()
                .find(|v| v.name == name)
                .and_then(|v| v.cpu_vs_floor)
                .map_or("-".into(), |r| format!("{r:.2}x"))
        };
        let cpu = if f.errors.is_empty() {
            spread_cell(&f.cpu_per_stream_second, 100.0, "")
        } else {
            format!("FAILED: {}", f.errors.join("; "))
        };
        b.push_record([
            sc.title(),
            f.work.clone(),
            cpu,
            ratio("baseline"),
            ratio("all-optimized"),
        ]);
        rows += 1;
    }
    let mut out = String::new();
    if rows > 0 {
        out.push_str(&format!(
            "the floor: the ffmpeg program alone doing the same work\n{}\n\n",
            b.build().with(Style::rounded())
        ));
    }
    let mut seen = Vec::new();
    for sc in &report.scenarios {
        let Some(p) = &sc.fast_decode_psnr else {
            continue;
        };
        if seen.contains(&sc.source) {
            continue;
        }
        seen.push(sc.source.clone());
        let num = |k: &str| p.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        match p.get("error") {
            Some(e) => out.push_str(&format!(
                "--fast-decode picture cost on {}: not measured ({e})\n\n",
                sc.source_label
            )),
            None => out.push_str(&format!(
                "--fast-decode picture cost on {}: preview PSNR {:.1} dB (luma; worst frame \
                 {:.1} dB, {} of {} frames identical) against a full decode\n\n",
                sc.source_label,
                num("preview_y_db"),
                num("preview_y_min_db"),
                num("identical_frames"),
                num("frames"),
            )),
        }
    }
    out
}
