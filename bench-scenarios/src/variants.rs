//! Variants: named sets of `eyetrack run` flags, and the sweeps that generate them against the
//! plan's baseline (design.md's toggle table).

use serde::Serialize;

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

/// Each optimization toggle with the flag that turns it on, in the plan's order.
pub const TOGGLES: &[(&str, &str, &str)] = &[
    ("resize", "--resize", "area"),
    ("copy", "--copy", "if-needed"),
    ("reduced-processing", "--reduced-processing", "on"),
    ("lazy-color", "--lazy-color", "on"),
    ("overlay", "--overlay", "sprite"),
    ("dedupe", "--dedupe", "on"),
    ("color-path", "--color-path", "planar"),
    ("flush-every", "--flush-every", "30"),
    ("fsync-every", "--fsync-every", "600"),
];

/// Toggles that only act while recording: a suite without a recording scenario leaves them out
/// of the one-at-a-time sweep (they could only measure noise there).
pub const RECORDING_TOGGLES: &[&str] = &["flush-every", "fsync-every"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
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

/// The variants a sweep runs, baseline first; `recording` = some scenario records.
pub fn sweep(sweep: Sweep, recording: bool) -> Vec<Variant> {
    let mut v = vec![baseline()];
    if matches!(sweep, Sweep::OneAtATime | Sweep::Full) {
        for (name, flag, value) in TOGGLES
            .iter()
            .filter(|(name, _, _)| recording || !RECORDING_TOGGLES.contains(name))
        {
            v.push(Variant::new(
                &format!("{name}={value}"),
                &["--preset", "baseline", flag, value],
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
    fn full_sweep_is_baseline_each_toggle_and_all() {
        let v = sweep(Sweep::Full, true);
        assert_eq!(v.len(), 1 + TOGGLES.len() + 1);
        let streaming_only = sweep(Sweep::Full, false);
        assert_eq!(
            streaming_only.len(),
            1 + TOGGLES.len() - RECORDING_TOGGLES.len() + 1
        );
        assert!(!streaming_only
            .iter()
            .any(|v| v.name.starts_with("flush-every")));
        assert_eq!(v[0].name, "baseline");
        assert_eq!(v[1].flags, ["--preset", "baseline", "--resize", "area"]);
        assert_eq!(v.last().unwrap().name, "all-optimized");
        assert_eq!(sweep(Sweep::None, true).len(), 1);
        assert_eq!(sweep(Sweep::AllOptimized, true).len(), 2);
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
