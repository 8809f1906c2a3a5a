//! `index.html`: one self-contained page per suite run (no scripts, no network) with inline SVG
//! charts of CPU per variant, latency percentiles per phase and drops, the targets, and links
//! to the flamegraphs.

use std::fmt::Write;

use crate::aggregate::{VariantSummary, Verdict};
use crate::runner::{ScenarioSummary, SuiteReport};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn verdict_colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Baseline => "#8a8f98",
        Verdict::Better => "#2e9d5b",
        Verdict::Worse => "#d0473c",
        Verdict::NoChange => "#5b7fc7",
    }
}

/// One horizontal bar per row: (label, value, optional (min, max) whisker, colour).
struct Bar<'a> {
    label: &'a str,
    value: f64,
    range: Option<(f64, f64)>,
    ticks: Vec<f64>,
    colour: &'a str,
    note: String,
}

fn bar_chart(id: &str, title: &str, unit: &str, bars: &[Bar<'_>]) -> String {
    let label_w = 190.0;
    let chart_w = 460.0;
    let row_h = 24.0;
    let top = 28.0;
    let height = top + row_h * bars.len() as f64 + 24.0;
    let max = bars
        .iter()
        .flat_map(|b| {
            std::iter::once(b.value)
                .chain(b.range.map(|r| r.1))
                .chain(b.ticks.iter().copied())
        })
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 {
        chart_w / (max * 1.08)
    } else {
        0.0
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="{id}" role="img" width="{w}" height="{height}" viewBox="0 0 {w} {height}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title><text x="0" y="16" class="ct">{t}</text>"#,
        w = label_w + chart_w + 300.0,
        t = esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = top + row_h * i as f64;
        let v = if b.value.is_finite() { b.value } else { 0.0 };
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" class="lb" text-anchor="end">{l}</text><rect class="bar" x="{x}" y="{y}" width="{bw:.1}" height="{h}" fill="{c}"><title>{l}: {v:.3} {u}</title></rect>"#,
            lx = label_w - 6.0,
            ty = y + 15.0,
            l = esc(b.label),
            x = label_w,
            y = y + 3.0,
            bw = (v * scale).max(0.5),
            h = row_h - 8.0,
            c = b.colour,
            u = esc(unit)
        );
        if let Some((lo, hi)) = b.range.filter(|r| r.0.is_finite() && r.1.is_finite()) {
            let (x0, x1, ym) = (
                label_w + lo * scale,
                label_w + hi * scale,
                y + row_h / 2.0 - 1.0,
            );
            let _ = write!(
                s,
                r#"<line x1="{x0:.1}" x2="{x1:.1}" y1="{ym}" y2="{ym}" class="wh"/><line x1="{x0:.1}" x2="{x0:.1}" y1="{a}" y2="{b}" class="wh"/><line x1="{x1:.1}" x2="{x1:.1}" y1="{a}" y2="{b}" class="wh"/>"#,
                a = ym - 5.0,
                b = ym + 5.0
            );
        }
        for t in b.ticks.iter().filter(|t| t.is_finite()) {
            let x = label_w + t * scale;
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{a}" y2="{b}" class="tk"/>"#,
                a = y + 2.0,
                b = y + row_h - 4.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{x}" y="{ty}" class="val">{v:.2} {u} {n}</text>"#,
            x = label_w + chart_w + 4.0,
            ty = y + 15.0,
            u = esc(unit),
            n = esc(&b.note)
        );
    }
    s.push_str("</svg>");
    s
}

/// An id-safe name of a cell: `streaming-fixture-synthetic-12s`.
fn cell_id(sc: &ScenarioSummary) -> String {
    format!("{}-{}", sc.scenario, sc.source_label)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn cpu_chart(sc: &ScenarioSummary) -> String {
    let floor_note = |v: &VariantSummary| {
        v.cpu_vs_floor
            .map_or(String::new(), |r| format!(" · {r:.2}x the floor"))
    };
    let mut bars: Vec<Bar<'_>> = Vec::new();
    if let Some(f) = &sc.floor {
        bars.push(Bar {
            label: "ffmpeg floor",
            value: f.cpu_per_stream_second.median * 100.0,
            range: Some((
                f.cpu_per_stream_second.min * 100.0,
                f.cpu_per_stream_second.max * 100.0,
            )),
            ticks: vec![],
            colour: "#333",
            note: "ffmpeg alone".into(),
        });
    }
    bars.extend(sc.variants.iter().map(|v| Bar {
        label: &v.name,
        value: v.cpu_per_stream_second.median * 100.0,
        range: Some((
            v.cpu_per_stream_second.min * 100.0,
            v.cpu_per_stream_second.max * 100.0,
        )),
        ticks: vec![],
        colour: verdict_colour(v.verdict),
        note: format!("{}{}", v.verdict.label(), floor_note(v)),
    }));
    bar_chart(
        &format!("cpu-{}", cell_id(sc)),
        "CPU per variant (% of one core, median with min-max over repeats)",
        "%",
        &bars,
    )
}

/// What the floor is and the fast-decode picture cost, where the cell has them.
fn floor_text(sc: &ScenarioSummary) -> String {
    let mut s = String::new();
    if let Some(f) = &sc.floor {
        let _ = write!(
            s,
            "<p class=\"floor\">Floor: the ffmpeg program alone, {} — <code>ffmpeg {}</code>{}</p>",
            esc(&f.work),
            esc(&f.command.join(" ")),
            if f.errors.is_empty() {
                String::new()
            } else {
                format!(" <b>failed:</b> {}", esc(&f.errors.join("; ")))
            }
        );
    }
    if let Some(p) = &sc.fast_decode_psnr {
        let num = |k: &str| p.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        let _ = write!(
            s,
            "<p class=\"psnr\">--fast-decode picture cost: preview PSNR {:.1} dB (luma, worst frame {:.1} dB) against a full decode.</p>",
            num("preview_y_db"),
            num("preview_y_min_db")
        );
    }
    s
}

fn phase_charts(sc: &ScenarioSummary) -> String {
    let Some(first) = sc.variants.first() else {
        return String::new();
    };
    let mut out = String::new();
    for phase in first.phases.iter().filter(|p| p.count > 0.0) {
        let name = phase.phase.as_str();
        let bars: Vec<Bar<'_>> = sc
            .variants
            .iter()
            .filter_map(|v| {
                let p = v.phases.iter().find(|p| p.phase == name)?;
                Some(Bar {
                    label: &v.name,
                    value: p.p95_ms,
                    range: None,
                    ticks: vec![p.p50_ms, p.p99_ms],
                    colour: "#7b61b8",
                    note: format!("(p50 {:.2}, p99 {:.2})", p.p50_ms, p.p99_ms),
                })
            })
            .collect();
        out.push_str(&bar_chart(
            &format!("latency-{}-{name}", cell_id(sc)),
            &format!("{name} latency: p95 bar, p50 and p99 ticks (ms, median over repeats)"),
            "ms",
            &bars,
        ));
    }
    out
}

fn drops_chart(sc: &ScenarioSummary) -> String {
    let bars: Vec<Bar<'_>> = sc
        .variants
        .iter()
        .map(|v| Bar {
            label: &v.name,
            value: v.dropped_frames_total as f64,
            range: None,
            ticks: vec![],
            colour: if v.dropped_frames_total > 0 {
                "#d0473c"
            } else {
                "#8a8f98"
            },
            note: format!("({:.2} % median)", v.dropped_frames_percent.median),
        })
        .collect();
    bar_chart(
        &format!("drops-{}", cell_id(sc)),
        "Dropped frames per variant (all repeats)",
        "frames",
        &bars,
    )
}

fn targets_table(sc: &ScenarioSummary) -> String {
    let mut s = String::from("<table><tr><th>variant</th>");
    let Some(first) = sc.variants.first() else {
        return String::new();
    };
    let shown: Vec<usize> = first
        .targets
        .iter()
        .enumerate()
        .filter(|(_, t)| t.verdict != pipeline::targets::Verdict::NotApplicable)
        .map(|(i, _)| i)
        .collect();
    for &i in &shown {
        let t = &first.targets[i].target;
        let _ = write!(
            s,
            "<th>{} {}</th>",
            esc(&t.description),
            esc(&t.limit_label())
        );
    }
    s.push_str("</tr>");
    for v in &sc.variants {
        let _ = write!(s, "<tr><td>{}</td>", esc(&v.name));
        for &i in &shown {
            let cell = v.targets.get(i).map_or(("-".to_owned(), "na"), |r| {
                let class = match r.verdict {
                    pipeline::targets::Verdict::Pass => "pass",
                    pipeline::targets::Verdict::Fail => "fail",
                    _ => "na",
                };
                let text = match r.value {
                    Some(val) => format!("{val:.2} {}", r.verdict.label()),
                    None => r.verdict.label().to_owned(),
                };
                (text, class)
            });
            let _ = write!(s, r#"<td class="{}">{}</td>"#, cell.1, esc(&cell.0));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

fn flame_links(variants: &[VariantSummary]) -> String {
    let links: Vec<String> = variants
        .iter()
        .filter_map(|v| {
            let f = v.flamegraph.as_ref()?;
            let svg = f.svg.as_ref()?;
            let info = f.info.as_ref();
            let num = |k: &str| info.and_then(|i| i.get(k)).and_then(|x| x.as_f64());
            Some(format!(
                r#"<li><a href="{}">{}</a> ({} samples, sampler overhead {:.2} % of the run's CPU)</li>"#,
                esc(svg),
                esc(&v.name),
                num("samples").unwrap_or(0.0),
                num("overhead_percent").unwrap_or(f64::NAN)
            ))
        })
        .collect();
    if links.is_empty() {
        return "<p>No flamegraphs in this run.</p>".into();
    }
    format!("<ul>{}</ul>", links.join(""))
}

/// The whole page.
pub fn render(report: &SuiteReport) -> String {
    let env = &report.environment;
    let field = |k: &str| match env.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".to_owned(),
        Some(v) => v.to_string(),
    };
    let tool = |k: &str| {
        report
            .eyetrack
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>eyetrack scenario report</h1><p class=\"env\">CPU {} · {} usable cores · {} · kernel {} · Raspberry Pi: {} · ffmpeg: {}<br>eyetrack {} (git {}) · {} s per run, {} repeats, {:?} mode, sources {} · wall {:.0} s</p>",
        esc(&field("cpu_model")),
        esc(&field("usable_cores")),
        esc(&field("arch")),
        esc(&field("kernel")),
        esc(&field("pi_model")),
        esc(&field("ffmpeg")),
        esc(&tool("version")),
        esc(&tool("git_revision")),
        report.config.duration_s,
        report.config.repeat,
        report.config.mode,
        esc(&report.config.sources.join(", ")),
        report.wall_seconds,
    );
    for sc in &report.scenarios {
        let _ = write!(
            body,
            "<section><h2>{}</h2><h3>Targets</h3>{}<h3>CPU</h3>{}{}<h3>Latency per phase</h3>{}<h3>Drops</h3>{}<h3>Flamegraphs</h3>{}</section>",
            esc(&sc.title()),
            targets_table(sc),
            cpu_chart(sc),
            floor_text(sc),
            phase_charts(sc),
            drops_chart(sc),
            flame_links(&sc.variants),
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>eyetrack scenario report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}}
.env{{color:#555;font-size:13px}} svg.chart{{display:block;margin:8px 0 18px}}
.ct{{font-size:13px;font-weight:600}} .lb,.val{{font-size:12px}} .val{{fill:#444}}
.wh{{stroke:#222;stroke-width:1.2}} .tk{{stroke:#111;stroke-width:2}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ccc;padding:3px 6px}}
td.pass{{background:#dff3e4}} td.fail{{background:#f8d9d6}} td.na{{color:#888}}
</style></head><body>{body}</body></html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }

    #[test]
    fn chart_has_a_bar_per_row() {
        let bars = [
            Bar {
                label: "a",
                value: 1.0,
                range: Some((0.5, 1.5)),
                ticks: vec![],
                colour: "#000",
                note: String::new(),
            },
            Bar {
                label: "b<",
                value: f64::NAN,
                range: None,
                ticks: vec![0.2],
                colour: "#000",
                note: String::new(),
            },
        ];
        let svg = bar_chart("x", "t", "%", &bars);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert!(svg.contains("b&lt;"));
        assert!(svg.ends_with("</svg>"));
    }
}
