//! The soak and fault suite (issue 6; the plan's stress tests): real eyetrack processes against
//! neon-sim and fake devices, one case per fault, with a report of what each measured.
//!
//! Every case ends the same way: every recording it made is checked from the outside
//! ([`pipeline::record::verify`]: ffprobe decodes every video, every CSV parses), so "nothing
//! recorded before the fault is lost or unreadable" is judged alike everywhere.

pub mod cases;
pub mod control;
pub mod junk;
pub mod proc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tabled::settings::Style;

use pipeline::record::verify;

/// Bumped on incompatible changes of `report.json`.
pub const SOAK_SCHEMA_VERSION: u32 = 1;

/// What the suite needs to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SoakConfig {
    /// Length of the continuous-recording case (CI: under a minute; on a device: 30 minutes).
    pub duration_s: f64,
    pub eyetrack: PathBuf,
    pub neon_sim: PathBuf,
    /// The fixture neon-sim serves.
    pub fixture: PathBuf,
    /// Only the cases whose name contains one of these (all when empty).
    pub only: Vec<String>,
    /// Whether the drop-rate target fails a case or is only reported.
    pub targets: Targets,
}

/// How the documented drop-rate target is applied (`--targets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    Judge,
    Report,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Could not run here (e.g. no root for a tmpfs); says why.
    Skip,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One thing a case checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// One case's result: its verdict, what it measured and what it checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    pub name: String,
    /// What the case does, in one sentence.
    pub about: String,
    pub verdict: Verdict,
    pub seconds: f64,
    pub skip_reason: Option<String>,
    pub figures: BTreeMap<String, serde_json::Value>,
    pub checks: Vec<Check>,
}

impl CaseResult {
    pub fn new(name: &str, about: &str) -> Self {
        CaseResult {
            name: name.into(),
            about: about.into(),
            verdict: Verdict::Pass,
            seconds: 0.0,
            skip_reason: None,
            figures: BTreeMap::new(),
            checks: Vec::new(),
        }
    }

    /// Records a check; a failed one fails the case.
    pub fn check(&mut self, what: &str, ok: bool, detail: impl Into<String>) -> bool {
        if !ok && self.verdict == Verdict::Pass {
            self.verdict = Verdict::Fail;
        }
        self.checks.push(Check {
            what: what.into(),
            ok,
            detail: detail.into(),
        });
        ok
    }

    pub fn figure(&mut self, name: &str, value: impl Serialize) {
        self.figures.insert(
            name.into(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
    }

    pub fn skip(&mut self, reason: impl Into<String>) {
        self.verdict = Verdict::Skip;
        self.skip_reason = Some(reason.into());
    }

    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect()
    }

    /// Checks every recording under `root`: at least `min_folders` folders, every video
    /// decodes, every CSV parses, and (`timed_frames_decode`) as many frames decode as
    /// frame_timing.csv has rows. Figures: folders, frames, timing rows.
    pub fn check_recordings(&mut self, root: &Path, min_folders: usize, timed_frames_decode: bool) {
        let folders = match verify::check_root(root) {
            Ok(f) => f,
            Err(e) => {
                self.check("recordings readable", false, e.to_string());
                return;
            }
        };
        self.check(
            "recordings exist",
            folders.len() >= min_folders,
            format!("{} folder(s), expected >= {min_folders}", folders.len()),
        );
        let problems: Vec<String> = folders
            .iter()
            .flat_map(|f| {
                let name = f.dir.file_name().map(|n| n.to_string_lossy().into_owned());
                f.problems()
                    .into_iter()
                    .map(move |p| format!("{}/{p}", name.clone().unwrap_or_default()))
            })
            .collect();
        let videos: usize = folders.iter().map(|f| f.videos.len()).sum();
        let csvs: usize = folders.iter().map(|f| f.csvs.len()).sum();
        self.check(
            "every video decodes and every CSV parses",
            problems.is_empty(),
            if problems.is_empty() {
                format!("{videos} video(s), {csvs} CSV file(s)")
            } else {
                problems.join("; ")
            },
        );
        let frames: u64 = folders.iter().map(|f| f.scene_frames()).sum();
        let rows: usize = folders
            .iter()
            .filter_map(|f| f.csv_rows("frame_timing.csv"))
            .sum();
        self.figure("recordings", folders.len());
        self.figure("recorded_frames", frames);
        self.figure("frame_timing_rows", rows);
        if timed_frames_decode {
            let bad: Vec<String> = folders
                .iter()
                .filter(|f| Some(f.scene_frames() as usize) != f.csv_rows("frame_timing.csv"))
                .map(|f| {
                    format!(
                        "{}: {} frames, {:?} rows",
                        f.dir.display(),
                        f.scene_frames(),
                        f.csv_rows("frame_timing.csv")
                    )
                })
                .collect();
            self.check(
                "every timed frame decodes (ffprobe frames = frame_timing.csv rows)",
                bad.is_empty(),
                if bad.is_empty() {
                    format!("{frames} frames")
                } else {
                    bad.join("; ")
                },
            );
        }
    }
}

/// The suite's report.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SoakReport {
    pub schema_version: u32,
    pub tool: serde_json::Value,
    pub command_line: Vec<String>,
    pub created_unix_s: u64,
    pub wall_seconds: f64,
    pub environment: serde_json::Value,
    pub config: SoakConfig,
    pub cases: Vec<CaseResult>,
}

impl SoakReport {
    pub fn failed(&self) -> Vec<&CaseResult> {
        self.cases
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .collect()
    }
}

/// Runs every selected case in order, each with its own folder under `out`.
pub fn run(cfg: &SoakConfig, out: &Path, progress: impl Fn(&str)) -> std::io::Result<SoakReport> {
    std::fs::create_dir_all(out)?;
    let started = Instant::now();
    let mut results = Vec::new();
    for case in cases::all() {
        if !cfg.only.is_empty() && !cfg.only.iter().any(|o| case.name.contains(o.as_str())) {
            continue;
        }
        progress(case.name);
        let dir = out.join(case.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let t0 = Instant::now();
        let mut r = CaseResult::new(case.name, case.about);
        (case.run)(cfg, &dir, &mut r);
        r.seconds = t0.elapsed().as_secs_f64();
        results.push(r);
    }
    Ok(SoakReport {
        schema_version: SOAK_SCHEMA_VERSION,
        tool: serde_json::json!({
            "name": "bench-scenarios soak",
            "version": env!("CARGO_PKG_VERSION"),
            "git_revision": pipeline::report::ToolInfo::current().git_revision,
        }),
        command_line: std::env::args().collect(),
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        wall_seconds: started.elapsed().as_secs_f64(),
        environment: serde_json::to_value(pipeline::platform::with_encoders(false))
            .unwrap_or_default(),
        config: cfg.clone(),
        cases: results,
    })
}

/// A figure as a short table cell.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The summary table (Markdown): one row per case with its verdict, time, figures and, for a
/// failed case, what failed.
pub fn summary_table(report: &SoakReport) -> String {
    let rows: Vec<[String; 5]> = report
        .cases
        .iter()
        .map(|c| {
            let figures = c
                .figures
                .iter()
                .map(|(k, v)| format!("{k}={}", cell(v)))
                .collect::<Vec<_>>()
                .join(", ");
            let notes = match c.verdict {
                Verdict::Skip => c.skip_reason.clone().unwrap_or_default(),
                Verdict::Fail => c.failures().join("; "),
                Verdict::Pass => format!("{} checks passed", c.checks.len()),
            };
            [
                c.name.clone(),
                c.verdict.label().to_owned(),
                format!("{:.0}", c.seconds),
                figures,
                notes,
            ]
        })
        .collect();
    let mut b = tabled::builder::Builder::default();
    b.push_record(["case", "verdict", "s", "figures", "notes"]);
    for r in rows {
        b.push_record(r);
    }
    let mut t = b.build();
    t.with(Style::markdown());
    format!("{t}\n")
}

/// Sleeps in small steps until `f` holds or `timeout` passes; says whether it held.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
