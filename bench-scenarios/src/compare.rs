//! `bench-scenarios compare`: two suite reports side by side (two builds, or two devices), and
//! the regression gate CI uses.

use std::path::Path;

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

use crate::aggregate::{judge, Verdict};
use crate::runner::{SuiteReport, SUITE_SCHEMA_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a bench-scenarios report: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} has suite schema {found}; this build reads {SUITE_SCHEMA_VERSION}")]
    Schema { path: String, found: u32 },
}

pub fn load(path: &Path) -> Result<SuiteReport, CompareError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CompareError::Io {
        path: p.clone(),
        source,
    })?;
    // The version first: a report of another schema would otherwise fail on whichever field
    // changed, with a message that does not say why.
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let parse = |source| CompareError::Parse {
        path: p.clone(),
        source,
    };
    let v: Version = serde_json::from_slice(&bytes).map_err(parse)?;
    if v.schema_version != SUITE_SCHEMA_VERSION {
        return Err(CompareError::Schema {
            path: p,
            found: v.schema_version,
        });
    }
    serde_json::from_slice(&bytes).map_err(parse)
}

/// One scenario x variant present in both reports.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    pub variant: String,
    pub cpu_a: f64,
    pub cpu_b: f64,
    pub change_percent: f64,
    pub verdict: Verdict,
}

/// Matches variants by scenario and name; B is judged against A.
pub fn compare(a: &SuiteReport, b: &SuiteReport) -> Vec<Row> {
    let mut rows = Vec::new();
    for sa in &a.scenarios {
        let Some(sb) = b
            .scenarios
            .iter()
            .find(|s| s.scenario == sa.scenario && s.source_label == sa.source_label)
        else {
            continue;
        };
        for va in &sa.variants {
            let Some(vb) = sb.variants.iter().find(|v| v.name == va.name) else {
                continue;
            };
            let (ca, cb) = (&va.cpu_per_stream_second, &vb.cpu_per_stream_second);
            rows.push(Row {
                scenario: sa.title(),
                variant: va.name.clone(),
                cpu_a: ca.median,
                cpu_b: cb.median,
                change_percent: if ca.median > 0.0 {
                    100.0 * (cb.median - ca.median) / ca.median
                } else {
                    f64::NAN
                },
                verdict: judge(cb, ca),
            });
        }
    }
    rows
}

/// Rows that got worse beyond the noise and by more than `pct` percent.
pub fn regressions(rows: &[Row], pct: f64) -> Vec<&Row> {
    rows.iter()
        .filter(|r| r.verdict == Verdict::Worse && r.change_percent > pct)
        .collect()
}

pub fn table(rows: &[Row], a_label: &str, b_label: &str) -> String {
    let mut t = Builder::default();
    t.push_record([
        "scenario".to_owned(),
        "variant".to_owned(),
        format!("CPU % A ({a_label})"),
        format!("CPU % B ({b_label})"),
        "B vs A".to_owned(),
        "result".to_owned(),
    ]);
    for r in rows {
        t.push_record([
            r.scenario.clone(),
            r.variant.clone(),
            format!("{:.1}", r.cpu_a * 100.0),
            format!("{:.1}", r.cpu_b * 100.0),
            format!("{:+.1} %", r.change_percent),
            match r.verdict {
                Verdict::Better => "less CPU".into(),
                Verdict::Worse => "MORE CPU".into(),
                _ => "no change".into(),
            },
        ]);
    }
    t.build().with(Style::rounded()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_of_another_schema_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        // The shape of a schema 1 suite report: fields this build no longer reads.
        std::fs::write(
            &path,
            r#"{"schema_version": 1, "scenarios": [{"name": "streaming"}]}"#,
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("has suite schema 1; this build reads"), "{e}");
        std::fs::write(&path, b"{\"not\": \"a report\"}").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("is not a bench-scenarios report"), "{e}");
    }
}
