//! The documented performance targets (`reports/targets.toml`, embedded at build time) and
//! their evaluation against one run's measurements.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The targets file, compiled in so a report never depends on the working directory.
pub const TARGETS_TOML: &str = include_str!("../../reports/targets.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Lt,
    Le,
    Ge,
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Ge => value >= limit,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub description: String,
    pub metric: String,
    pub op: Op,
    pub limit: f64,
    pub unit: String,
    pub applies_to: Vec<String>,
}

impl Target {
    /// The limit as tables show it, e.g. "< 50 %".
    pub fn limit_label(&self) -> String {
        format!("{} {} {}", self.op.symbol(), self.limit, self.unit)
    }
}

#[derive(Debug, Deserialize)]
struct TargetsFile {
    schema: u32,
    target: Vec<Target>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error("targets file: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("targets file schema {0} is not supported (expected 1)")]
    Schema(u32),
}

/// Parses a targets file (the embedded one, or another a user passes).
pub fn parse(text: &str) -> Result<Vec<Target>, TargetsError> {
    let file: TargetsFile = toml::from_str(text)?;
    if file.schema != 1 {
        return Err(TargetsError::Schema(file.schema));
    }
    Ok(file.target)
}

/// The embedded targets.
pub fn documented() -> Vec<Target> {
    // The file is part of the build and covered by a test, so it always parses.
    parse(TARGETS_TOML).unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// The run did not measure this metric (e.g. encode latency without recording).
    NotMeasured,
    /// The target belongs to another scenario.
    NotApplicable,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::NotMeasured => "not measured",
            Verdict::NotApplicable => "n/a",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    #[serde(flatten)]
    pub target: Target,
    pub value: Option<f64>,
    pub verdict: Verdict,
}

/// Judges every target for a run of `scenario` with the given metric values.
pub fn evaluate(
    targets: &[Target],
    scenario: &str,
    metrics: &BTreeMap<String, f64>,
) -> Vec<TargetResult> {
    targets
        .iter()
        .map(|t| {
            let applies = t.applies_to.iter().any(|s| s == "any" || s == scenario);
            let value = metrics.get(&t.metric).copied().filter(|v| v.is_finite());
            let verdict = match (applies, value) {
                (false, _) => Verdict::NotApplicable,
                (true, None) => Verdict::NotMeasured,
                (true, Some(v)) if t.op.holds(v, t.limit) => Verdict::Pass,
                (true, Some(_)) => Verdict::Fail,
            };
            TargetResult {
                target: t.clone(),
                value: if applies { value } else { None },
                verdict,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_targets_parse_and_match_design() {
        let t = documented();
        assert_eq!(t.len(), 11);
        let cpu = t.iter().find(|t| t.id == "cpu_streaming").unwrap();
        assert_eq!((cpu.op, cpu.limit), (Op::Lt, 50.0));
        let e2e = t.iter().find(|t| t.id == "end_to_end_p95").unwrap();
        assert_eq!(e2e.limit, 50.0);
        assert_eq!(cpu.limit_label(), "< 50 %");
    }

    #[test]
    fn verdicts() {
        let t = documented();
        let mut m = BTreeMap::new();
        m.insert("cpu_percent_of_one_core".to_owned(), 55.0);
        m.insert("overlay_p95_ms".to_owned(), 0.5);
        m.insert("rss_peak_mb".to_owned(), f64::NAN);
        let r = evaluate(&t, "streaming", &m);
        let get = |id: &str| r.iter().find(|r| r.target.id == id).unwrap().verdict;
        assert_eq!(get("cpu_streaming"), Verdict::Fail);
        assert_eq!(get("cpu_recording"), Verdict::NotApplicable);
        assert_eq!(get("overlay_p95"), Verdict::Pass);
        assert_eq!(get("encode_p95"), Verdict::NotApplicable);
        assert_eq!(get("acquire_p95"), Verdict::NotMeasured);
        assert_eq!(
            get("memory"),
            Verdict::NotMeasured,
            "NaN is not a measurement"
        );
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(matches!(
            parse("schema = 2\ntarget = []"),
            Err(TargetsError::Schema(2))
        ));
        assert!(parse("not toml [").is_err());
    }
}
