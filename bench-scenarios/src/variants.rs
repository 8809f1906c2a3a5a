//! Variants: named sets of `eyetrack run` flags, and the sweeps that generate them against the
//! plan's baseline (design.md's toggle table), per source and scenario.

use serde::{Deserialize, Serialize};

/// One configuration of the pipeline, as the flags that select it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub name: String,
    pub flags: Vec<String>,
}

impl Variant {
    pub fn new(name: &str, flags: &[&str]) -> Self {
        Variant {
            name: name.to_owned(),
            flags: flags.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// Name of the variant every comparison is against.
pub const BASELINE: &str = "baseline";

/// Where a toggle can change anything, so a sweep only spends runs where it can measure it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The preview path (process, preview, overlay): streaming runs.
    Preview,
    /// The H.264 decoder while nothing records: streaming runs of a source that decodes.
    Decode,
    /// The H.264 decoder whatever else runs: every run of a source that decodes.
    DecodeAlways,
    /// The recorder: recording runs.
    Recording,
}

/// One toggle of design.md's table (its `eyetrack run` flag is `--NAME`), with the value the
/// sweep tries against the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Toggle {
    pub name: &'static str,
    pub value: &'static str,
    pub scope: Scope,
}

const fn t(name: &'static str, value: &'static str, scope: Scope) -> Toggle {
    Toggle { name, value, scope }
}

/// Every toggle of design.md's table, in the plan's order, then the decode and encoder choices
/// (the baseline already has the value the plan's code gets; these try the other one).
pub const TOGGLES: &[Toggle] = &[
    t("resize", "area", Scope::Preview),
    t("copy", "if-needed", Scope::Preview),
    t("reduced-processing", "on", Scope::Preview),
    t("lazy-color", "on", Scope::Preview),
    t("overlay", "sprite", Scope::Preview),
    t("dedupe", "on", Scope::Preview),
    t("color-path", "planar", Scope::Preview),
    t("flush-every", "30", Scope::Recording),
    t("fsync-every", "600", Scope::Recording),
    t("encoder", "libav", Scope::Recording),
    t("frame-selection", "camera", Scope::Recording),
    t("encoder-threads", "auto", Scope::Recording),
    t("decoder", "openh264", Scope::Decode),
    t("fast-decode", "on", Scope::Decode),
    t("reduced-decode", "on", Scope::Decode),
    t("decode-threads", "frame:2", Scope::DecodeAlways),
    t("zero-copy", "on", Scope::DecodeAlways),
];

/// What one cell of the suite (a source x a scenario) exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellKind {
    /// The scenario records.
    pub records: bool,
    /// The source delivers H.264 that the pipeline decodes (fixture, neon-sim, a device).
    pub decodes: bool,
}

impl Toggle {
    /// Whether flipping this toggle can change the CPU of such a cell.
    pub fn applies(&self, cell: CellKind) -> bool {
        match self.scope {
            Scope::Preview => !cell.records,
            Scope::Decode => cell.decodes && !cell.records,
            Scope::DecodeAlways => cell.decodes,
            Scope::Recording => cell.records,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Sweep {
    /// Only the baseline and explicit `--variant`s.
    None,
    /// The baseline, and each optimization flipped alone against it.
    OneAtATime,
    /// The baseline and every optimization at once.
    AllOptimized,
    /// Both of the above.
    Full,
}

/// The baseline (the plan's current behaviour).
pub fn baseline() -> Variant {
    Variant::new(BASELINE, &["--preset", "baseline"])
}

/// The variants a sweep runs in one cell, baseline first: one-at-a-time takes only the toggles
/// that act there (a recording toggle in a streaming run could only measure noise).
pub fn sweep(sweep: Sweep, cell: CellKind) -> Vec<Variant> {
    let mut v = vec![baseline()];
    if matches!(sweep, Sweep::OneAtATime | Sweep::Full) {
        for tg in TOGGLES.iter().filter(|tg| tg.applies(cell)) {
            v.push(Variant::new(
                &format!("{}={}", tg.name, tg.value),
                &["--preset", "baseline", &format!("--{}", tg.name), tg.value],
            ));
        }
    }
    if matches!(sweep, Sweep::AllOptimized | Sweep::Full) {
        v.push(Variant::new("all-optimized", &["--preset", "optimized"]));
    }
    v
}

/// Parses `NAME=FLAGS` (flags split on whitespace), e.g. `"bilinear-draw=--resize bilinear
/// --overlay draw"`. Flags are applied on top of the baseline preset unless they name a preset.
pub fn parse_variant(s: &str) -> Result<Variant, String> {
    let (name, flags) = s
        .split_once('=')
        .ok_or_else(|| format!("variant '{s}' is not NAME=FLAGS"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
    {
        return Err(format!(
            "variant name '{name}' must be letters, digits, '-', '_', '.' or '='"
        ));
    }
    if name == BASELINE {
        return Err("the name 'baseline' is reserved for the plan's current behaviour".into());
    }
    let mut flags: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
    if flags.is_empty() {
        return Err(format!("variant '{name}' has no flags"));
    }
    if !flags.iter().any(|f| f == "--preset") {
        flags.splice(0..0, ["--preset".to_owned(), "baseline".to_owned()]);
    }
    Ok(Variant {
        name: name.to_owned(),
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cell_sweeps_the_toggles_that_act_there() {
        let cell = |records, decodes| CellKind { records, decodes };
        let names =
            |c| -> Vec<String> { sweep(Sweep::Full, c).into_iter().map(|v| v.name).collect() };
        let fixture_streaming = names(cell(false, true));
        assert_eq!(
            fixture_streaming.first().map(String::as_str),
            Some("baseline")
        );
        assert_eq!(
            fixture_streaming.last().map(String::as_str),
            Some("all-optimized")
        );
        assert!(fixture_streaming.contains(&"fast-decode=on".to_owned()));
        assert!(fixture_streaming.contains(&"resize=area".to_owned()));
        assert!(!fixture_streaming
            .iter()
            .any(|n| n.starts_with("flush-every")));
        let synthetic_streaming = names(cell(false, false));
        assert!(!synthetic_streaming.iter().any(|n| n.contains("decode")));
        let fixture_recording = names(cell(true, true));
        assert!(fixture_recording.contains(&"encoder=libav".to_owned()));
        assert!(fixture_recording.contains(&"decode-threads=frame:2".to_owned()));
        assert!(!fixture_recording.contains(&"fast-decode=on".to_owned()));
        assert!(!fixture_recording.contains(&"resize=area".to_owned()));
        // Every toggle is measured in at least one cell of the default suite.
        for tg in TOGGLES {
            let cells = [
                cell(false, true),
                cell(true, true),
                cell(false, false),
                cell(true, false),
            ];
            assert!(cells.iter().any(|c| tg.applies(*c)), "{}", tg.name);
        }
        let v = sweep(Sweep::Full, cell(false, false));
        assert_eq!(v[1].flags, ["--preset", "baseline", "--resize", "area"]);
        assert_eq!(sweep(Sweep::None, cell(true, true)).len(), 1);
        assert_eq!(sweep(Sweep::AllOptimized, cell(true, true)).len(), 2);
    }

    #[test]
    fn explicit_variants() {
        let v = parse_variant("fast=--resize bilinear --overlay sprite").unwrap();
        assert_eq!(v.name, "fast");
        assert_eq!(
            v.flags,
            [
                "--preset",
                "baseline",
                "--resize",
                "bilinear",
                "--overlay",
                "sprite"
            ]
        );
        let v = parse_variant("opt=--preset optimized --dedupe off").unwrap();
        assert_eq!(v.flags[..2], ["--preset", "optimized"]);
        assert!(parse_variant("nameonly").is_err());
        assert!(parse_variant("x=").is_err());
        assert!(parse_variant("baseline=--resize area").is_err());
        assert!(parse_variant("bad name=--resize area").is_err());
    }
}
