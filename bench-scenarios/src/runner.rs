//! The scenario runner: runs every variant of every scenario as its own `eyetrack run` process,
//! interleaved and repeated, and collects the per-run reports into a suite report.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::aggregate::{compare_to_baseline, summarize, RunSample, Spread, VariantSummary};
use crate::floor::{self, FloorSpec};
use crate::variants::{self, CellKind, Sweep, Variant};

/// Scenarios of the plan's test protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Streaming,
    #[value(name = "recording-5fps")]
    #[serde(rename = "recording-5fps")]
    Recording5fps,
    #[value(name = "recording-30fps")]
    #[serde(rename = "recording-30fps")]
    Recording30fps,
    StartStopCycles,
    NetworkInterruption,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Streaming => "streaming",
            Scenario::Recording5fps => "recording-5fps",
            Scenario::Recording30fps => "recording-30fps",
            Scenario::StartStopCycles => "start-stop-cycles",
            Scenario::NetworkInterruption => "network-interruption",
        }
    }

    /// True for the scenarios that write recordings (each run gets its own folder).
    pub fn records(self) -> bool {
        matches!(
            self,
            Scenario::Recording5fps | Scenario::Recording30fps | Scenario::StartStopCycles
        )
    }

    /// Extra `eyetrack run` flags (recordings go under `record_dir`), or why this build
    /// cannot run the scenario yet.
    pub fn flags(self, record_dir: &Path) -> Result<Vec<String>, String> {
        let rec = |fps: &str| {
            vec![
                "--record".to_owned(),
                record_dir.display().to_string(),
                "--record-fps".to_owned(),
                fps.to_owned(),
            ]
        };
        match self {
            Scenario::Streaming => Ok(vec![]),
            Scenario::Recording5fps => Ok(rec("5")),
            Scenario::Recording30fps => Ok(rec("30")),
            // The plan's scenario 4: record a second, pause a second, for the whole run.
            Scenario::StartStopCycles => {
                let mut f = rec("5");
                f.extend(["--record-cycle".to_owned(), "1s".to_owned()]);
                Ok(f)
            }
            // Its source is always neon-sim with a connection drop (see `SimSpec`).
            Scenario::NetworkInterruption => Ok(vec![]),
        }
    }
}

/// The committed fixture neon-sim serves unless `--fixture` says otherwise.
pub const DEFAULT_FIXTURE: &str = "fixtures/neon/synthetic-12s.etfx";

/// How a run gets its frames: straight from eyetrack's own `--source`, or from a neon-sim
/// started for that run (and killed after it).
#[derive(Clone, Debug, PartialEq)]
pub enum RunSource {
    Direct(String),
    Sim {
        fixture: PathBuf,
        /// (at, for) seconds of a dropped-connection fault.
        drop: Option<(f64, f64)>,
    },
}

/// Resolves the suite's `--source` for one scenario. `sim` (or `neon-sim`) serves the fixture
/// on loopback; the network-interruption scenario always uses the simulator, dropping every
/// connection a third of the way in for min(3 s, a third of the run).
pub fn run_source(
    source: &str,
    fixture: Option<&Path>,
    scenario: Scenario,
    duration_s: f64,
) -> Result<RunSource, String> {
    let fixture = || {
        fixture
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FIXTURE))
    };
    if scenario == Scenario::NetworkInterruption {
        if source.starts_with("neon://") || source == "discover" {
            return Err(
                "scenario 'network-interruption' injects faults with neon-sim; it cannot drop a \
                 real device's connection (use --source sim)"
                    .into(),
            );
        }
        let third = duration_s / 3.0;
        return Ok(RunSource::Sim {
            fixture: fixture(),
            drop: Some((third, third.min(3.0))),
        });
    }
    match source {
        "sim" | "neon-sim" => Ok(RunSource::Sim {
            fixture: fixture(),
            drop: None,
        }),
        s if s == "synthetic"
            || s.starts_with("fixture:")
            || s.starts_with("neon://")
            || s == "discover" =>
        {
            Ok(RunSource::Direct(s.to_owned()))
        }
        s => Err(format!(
            "unknown source '{s}' (synthetic, fixture:PATH, sim, neon://HOST[:PORT], discover)"
        )),
    }
}

impl RunSource {
    /// Live sources are paced by the network, whatever the suite's mode.
    pub fn is_network(&self) -> bool {
        match self {
            RunSource::Sim { .. } => true,
            RunSource::Direct(s) => s.starts_with("neon://") || s == "discover",
        }
    }
}

use neon_sim::SimProcess;

/// A neon-sim serving one run, with the scenario's connection drop (`--drop-at`, `--drop-for`).
fn start_sim(
    neon_sim: &Path,
    fixture: &Path,
    drop: Option<(f64, f64)>,
) -> Result<SimProcess, String> {
    let extra: Vec<String> = match drop {
        Some((at, dur)) => vec![
            "--drop-at".into(),
            format!("{at}s"),
            "--drop-for".into(),
            format!("{dur}s"),
        ],
        None => Vec::new(),
    };
    SimProcess::start(neon_sim, fixture, &extra)
}

/// The `neon-sim` binary next to this one.
pub fn default_neon_sim() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.with_file_name("neon-sim");
    candidate.is_file().then_some(candidate)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Real time, what a device sees.
    Paced,
    /// As fast as possible (offline replay).
    Offline,
}

/// Everything a suite run is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SuiteConfig {
    /// Every source runs every scenario: a cell per pair, sources outermost.
    pub sources: Vec<String>,
    pub scenarios: Vec<Scenario>,
    /// Which toggles each cell flips against the baseline (only those that act there).
    pub sweep: Sweep,
    /// Explicit `--variant`s, run in every cell after the sweep's.
    pub variants: Vec<VariantSpec>,
    pub duration_s: f64,
    pub repeat: usize,
    pub mode: Mode,
    /// The fixture neon-sim serves for `--source sim` and the network-interruption scenario
    /// (default: the committed one).
    #[serde(default)]
    pub fixture: Option<PathBuf>,
    /// Pixel format of the synthetic source (`--format`), e.g. gray to exercise lazy colour.
    pub source_format: Option<String>,
    pub flamegraphs: Flamegraphs,
    /// Run the ffmpeg program alone on the same work for each fixture cell (the floor).
    pub floor: bool,
}

/// Which variants get a flamegraph (each from one extra run that stays out of the statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Flamegraphs {
    Off,
    /// The baseline and all-optimized of each cell: the two ends, at a fraction of the time.
    Ends,
    /// Every variant.
    #[value(alias = "on")]
    All,
}

impl Flamegraphs {
    fn wants(self, variant: &str) -> bool {
        match self {
            Flamegraphs::Off => false,
            Flamegraphs::Ends => variant == variants::BASELINE || variant == "all-optimized",
            Flamegraphs::All => true,
        }
    }
}

/// One source x scenario of a suite, with the variants it runs (baseline first).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub source: String,
    pub scenario: Scenario,
    pub variants: Vec<VariantSpec>,
}

/// Short name of a source for file names and table titles: `fixture:synthetic-12s`.
pub fn source_label(source: &str) -> String {
    if let Some(path) = source.strip_prefix("fixture:") {
        let stem = Path::new(path)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return format!("fixture:{stem}");
    }
    if source.starts_with("neon://") {
        return "neon".into();
    }
    source.to_owned()
}

/// Whether the pipeline decodes H.264 from this source (everything but the synthetic one).
pub fn source_decodes(source: &str) -> bool {
    source != "synthetic"
}

impl SuiteConfig {
    /// The cells of the suite in run order, each with the sweep's variants for it plus the
    /// explicit ones.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for source in &self.sources {
            for &scenario in &self.scenarios {
                let kind = CellKind {
                    records: scenario.records(),
                    decodes: source_decodes(source) || scenario == Scenario::NetworkInterruption,
                };
                let mut v: Vec<VariantSpec> = variants::sweep(self.sweep, kind)
                    .iter()
                    .map(VariantSpec::from)
                    .collect();
                v.extend(self.variants.iter().cloned());
                cells.push(Cell {
                    source: source.clone(),
                    scenario,
                    variants: v,
                });
            }
        }
        cells
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantSpec {
    pub name: String,
    pub flags: Vec<String>,
}

impl From<&Variant> for VariantSpec {
    fn from(v: &Variant) -> Self {
        VariantSpec {
            name: v.name.clone(),
            flags: v.flags.clone(),
        }
    }
}

/// One cell of the suite: a scenario on a source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioSummary {
    pub scenario: String,
    /// The `--source` of its runs, and its short label.
    pub source: String,
    pub source_label: String,
    /// Baseline first.
    pub variants: Vec<VariantSummary>,
    /// The ffmpeg program alone doing the same work (fixture sources): each variant's
    /// `cpu_vs_floor` is its median CPU over this one's.
    pub floor: Option<FloorSummary>,
    /// Picture cost of `--fast-decode` on this source (PSNR of the preview against a full
    /// decode), where a fast-decode variant ran.
    pub fast_decode_psnr: Option<serde_json::Value>,
}

impl ScenarioSummary {
    /// `streaming on fixture:synthetic-12s`.
    pub fn title(&self) -> String {
        format!("{} on {}", self.scenario, self.source_label)
    }
}

/// The floor runs of one cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloorSummary {
    /// What the ffmpeg program was asked to do, in words, and its exact arguments.
    pub work: String,
    pub command: Vec<String>,
    /// CPU-seconds of the ffmpeg process per second of stream, over the repeats.
    pub cpu_per_stream_second: Spread,
    pub errors: Vec<String>,
}

/// Bumped on incompatible changes of the suite report. 2: a cell per source x scenario
/// (`source`, `source_label`), the ffmpeg floor and `cpu_vs_floor`, the fast-decode PSNR,
/// `config.sources`/`sweep`/`floor`, flamegraphs off|ends|all.
pub const SUITE_SCHEMA_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SuiteReport {
    pub schema_version: u32,
    pub tool: serde_json::Value,
    pub command_line: Vec<String>,
    pub created_unix_s: u64,
    pub wall_seconds: f64,
    /// Platform capabilities of the machine (CPU model, kernel, cores, Pi model, ffmpeg).
    pub environment: serde_json::Value,
    /// `tool` of the eyetrack binary that ran the variants (version, git revision).
    pub eyetrack: serde_json::Value,
    pub config: SuiteConfig,
    pub scenarios: Vec<ScenarioSummary>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{0}")]
    Unsupported(String),
    #[error("creating {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("could not start {path}: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
}

/// The extra run that drew a variant's flamegraph.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlameRun {
    /// The SVG, relative to the report folder (None if the run wrote none).
    pub svg: Option<String>,
    /// That run's own report.
    pub run: String,
    /// The sampler's figures from that report (samples, overhead).
    pub info: Option<serde_json::Value>,
}

/// The `eyetrack` binary next to this one (both come out of one `cargo build --bins`).
pub fn default_eyetrack() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.with_file_name("eyetrack");
    candidate.is_file().then_some(candidate)
}

fn file_stem(variant: &str) -> String {
    variant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs the suite into `out` (created) and returns the report; each run's own report stays in
/// `out/runs/`, flamegraphs in `out/flamegraphs/`.
pub fn run_suite(
    eyetrack: &Path,
    cfg: &SuiteConfig,
    out: &Path,
    progress: bool,
) -> Result<SuiteReport, RunnerError> {
    // Each recording run writes under here; its folder is removed once its report is read
    // (the report keeps the byte and fsync counts), so a long sweep does not fill the disk.
    let rec_root = out.join("recordings");
    let cells = cfg.cells();
    let mut cell_flags = Vec::new();
    let mut sources = Vec::new();
    for c in &cells {
        cell_flags.push(
            c.scenario
                .flags(&rec_root)
                .map_err(RunnerError::Unsupported)?,
        );
        sources.push(
            run_source(
                &c.source,
                cfg.fixture.as_deref(),
                c.scenario,
                cfg.duration_s,
            )
            .map_err(RunnerError::Unsupported)?,
        );
    }
    let neon_sim = if sources.iter().any(|s| matches!(s, RunSource::Sim { .. })) {
        let sim = default_neon_sim().ok_or_else(|| {
            RunnerError::Unsupported(
                "neon-sim was not found next to bench-scenarios (cargo build --release --bins)"
                    .into(),
            )
        })?;
        if let Some(f) = sources.iter().find_map(|s| match s {
            RunSource::Sim { fixture, .. } if !fixture.is_file() => Some(fixture),
            _ => None,
        }) {
            return Err(RunnerError::Unsupported(format!(
                "fixture {} not found (--fixture; run from the repository root for the \
                 committed one)",
                f.display()
            )));
        }
        Some(sim)
    } else {
        None
    };
    for (c, src) in cells.iter().zip(&sources) {
        if let RunSource::Direct(s) = src {
            if let Some(path) = s.strip_prefix("fixture:") {
                if !Path::new(path).is_file() {
                    return Err(RunnerError::Unsupported(format!(
                        "fixture {path} not found (source of scenario {}; run from the \
                         repository root for the committed one)",
                        c.scenario.name()
                    )));
                }
            }
        }
    }
    for dir in [out.to_path_buf(), out.join("runs"), out.join("flamegraphs")] {
        std::fs::create_dir_all(&dir).map_err(|source| RunnerError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let started = std::time::Instant::now();

    // The floor of each cell whose frames come from a fixture: the same stream, the same
    // length, decoded (and for recording, encoded) by the ffmpeg program alone.
    let mut floors: Vec<Option<FloorSpec>> = Vec::new();
    let mut exported: Vec<(PathBuf, Result<floor::Clip, String>)> = Vec::new();
    let mut psnr: Vec<(PathBuf, serde_json::Value)> = Vec::new();
    for (c, src) in cells.iter().zip(&sources) {
        let fixture = match src {
            RunSource::Direct(s) => s.strip_prefix("fixture:").map(PathBuf::from),
            RunSource::Sim {
                fixture,
                drop: None,
            } => Some(fixture.clone()),
            RunSource::Sim { .. } => None,
        };
        let Some(fixture) = fixture else {
            floors.push(None);
            continue;
        };
        if c.variants
            .iter()
            .any(|v| v.flags.iter().any(|f| f == "--fast-decode"))
            && !psnr.iter().any(|(f, _)| *f == fixture)
        {
            psnr.push((fixture.clone(), floor::fast_decode_psnr(&fixture)));
        }
        if !cfg.floor {
            floors.push(None);
            continue;
        }
        if !exported.iter().any(|(f, _)| *f == fixture) {
            let clip = floor::export_clip(&fixture, &out.join("floor"));
            exported.push((fixture.clone(), clip));
        }
        let clip = exported
            .iter()
            .find(|(f, _)| *f == fixture)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| Err("no clip".into()));
        floors.push(Some(FloorSpec::new(
            clip,
            c.scenario,
            cfg.duration_s,
            &out.join("floor"),
        )));
    }

    let flame_count = cells
        .iter()
        .flat_map(|c| &c.variants)
        .filter(|v| cfg.flamegraphs.wants(&v.name))
        .count();
    let floor_count = floors.iter().filter(|f| f.is_some()).count();
    let total = (cells.iter().map(|c| c.variants.len()).sum::<usize>() * cfg.repeat
        + floor_count * cfg.repeat
        + flame_count) as u64;
    let bar = if progress {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} runs  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    bar.enable_steady_tick(Duration::from_millis(500));

    // slots[cell][variant] = (ok samples, run files, errors, flamegraph run)
    type Slot = (Vec<RunSample>, Vec<String>, Vec<String>, Option<FlameRun>);
    let mut slots: Vec<Vec<Slot>> = cells
        .iter()
        .map(|c| c.variants.iter().map(|_| Default::default()).collect())
        .collect();
    // floor_runs[cell] = (CPU per stream-second of each ok run, errors)
    let mut floor_runs: Vec<(Vec<f64>, Vec<String>)> =
        cells.iter().map(|_| Default::default()).collect();
    let mut eyetrack_tool = serde_json::Value::Null;

    // Interleaved: A B C A B C ..., so slow drift (thermal, other load) hits every variant alike.
    // The flamegraph runs come last and stay out of the statistics: the sampler's buffers add
    // over 100 MB of RSS, which would otherwise be charged to the variant.
    let passes = cfg.repeat + usize::from(flame_count > 0);
    for rep in 1..=passes {
        let flame_pass = rep > cfg.repeat;
        for (ci, cell) in cells.iter().enumerate() {
            let cell_stem = format!(
                "{}--{}",
                file_stem(&source_label(&cell.source)),
                cell.scenario.name()
            );
            if let (false, Some(f)) = (flame_pass, &floors[ci]) {
                bar.set_message(format!("{cell_stem} ffmpeg floor #{rep}"));
                match f.run() {
                    Ok(cpu) => floor_runs[ci].0.push(cpu),
                    Err(e) => floor_runs[ci].1.push(format!("repeat {rep}: {e}")),
                }
                bar.inc(1);
            }
            for (vi, variant) in cell.variants.iter().enumerate() {
                if flame_pass && !cfg.flamegraphs.wants(&variant.name) {
                    continue;
                }
                let label = if flame_pass {
                    "flamegraph".to_owned()
                } else {
                    format!("#{rep}")
                };
                bar.set_message(format!("{cell_stem} {} {label}", variant.name));
                let stem = if flame_pass {
                    format!("{cell_stem}--{}--flamegraph", file_stem(&variant.name))
                } else {
                    format!("{cell_stem}--{}--r{rep}", file_stem(&variant.name))
                };
                let report = out.join("runs").join(format!("{stem}.json"));
                let flame = flame_pass.then(|| {
                    out.join("flamegraphs")
                        .join(format!("{cell_stem}--{}.svg", file_stem(&variant.name)))
                });
                // A simulator per run: every run sees the fault at the same point of its stream.
                let sim = match (&sources[ci], &neon_sim) {
                    (RunSource::Sim { fixture, drop }, Some(bin)) => {
                        match start_sim(bin, fixture, *drop) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                slots[ci][vi].2.push(format!("repeat {rep}: {e}"));
                                bar.inc(1);
                                continue;
                            }
                        }
                    }
                    _ => None,
                };
                let source = match (&sources[ci], &sim) {
                    (RunSource::Direct(s), _) => s.clone(),
                    (_, Some(p)) => p.source(),
                    (_, None) => cell.source.clone(),
                };
                let mut cmd = Command::new(eyetrack);
                cmd.args(["run", "--quiet", "--source", &source, "--duration"])
                    .arg(format!("{}s", cfg.duration_s))
                    .args(&cell_flags[ci])
                    .args(&variant.flags)
                    .arg("--report")
                    .arg(&report)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                if cfg.mode == Mode::Offline && !sources[ci].is_network() {
                    cmd.arg("--as-fast-as-possible");
                }
                if let Some(f) = cfg.source_format.as_ref().filter(|_| source == "synthetic") {
                    cmd.args(["--format", f]);
                }
                if let Some(f) = &flame {
                    cmd.arg("--flamegraph").arg(f);
                }
                if cell.scenario.records() {
                    std::fs::create_dir_all(&rec_root).map_err(|source| RunnerError::Io {
                        path: rec_root.display().to_string(),
                        source,
                    })?;
                }
                // A run that hangs (a stuck device, a stuck encoder) is killed rather than
                // holding the suite: its duration plus two minutes of start and stop.
                let limit = Duration::from_secs_f64(cfg.duration_s.clamp(0.0, 86_400.0) + 120.0);
                let output = pipeline::child::output_within(&mut cmd, limit).map_err(|e| {
                    RunnerError::Spawn {
                        path: eyetrack.display().to_string(),
                        source: std::io::Error::other(e.to_string()),
                    }
                })?;
                drop(sim);
                if cell.scenario.records() {
                    let _ = std::fs::remove_dir_all(&rec_root);
                }
                let slot = &mut slots[ci][vi];
                let rel = format!("runs/{stem}.json");
                let loaded = if output.status.success() {
                    RunSample::load(&report).map_err(|e| e.to_string())
                } else {
                    Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
                };
                match (loaded, &flame) {
                    (Ok(s), None) => {
                        if eyetrack_tool.is_null() {
                            eyetrack_tool = s.tool.clone();
                        }
                        slot.0.push(s);
                        slot.1.push(rel);
                    }
                    (Ok(s), Some(f)) => {
                        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                        slot.3 = Some(FlameRun {
                            svg: name.map(|n| format!("flamegraphs/{n}")),
                            run: rel,
                            info: s.flamegraph.clone(),
                        });
                    }
                    (Err(e), None) => slot.2.push(format!("repeat {rep}: {e}")),
                    (Err(e), Some(_)) => slot.2.push(format!("flamegraph run: {e}")),
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    // The exported clips are large (the whole H.264 stream); the report keeps the commands.
    let _ = std::fs::remove_dir_all(out.join("floor"));

    let scenarios = cells
        .iter()
        .zip(slots)
        .zip(floors.iter().zip(floor_runs))
        .map(|((cell, row), (floor_spec, (floor_cpu, floor_errors)))| {
            let mut variants: Vec<VariantSummary> = cell
                .variants
                .iter()
                .zip(row)
                .map(|(v, (samples, runs, errors, flame))| {
                    summarize(
                        &v.name,
                        &v.flags,
                        cell.scenario.name(),
                        &samples,
                        runs,
                        errors,
                        flame,
                    )
                })
                .collect();
            compare_to_baseline(&mut variants);
            let floor = floor_spec.as_ref().map(|f| FloorSummary {
                work: f.work.clone(),
                command: f.args.clone(),
                cpu_per_stream_second: Spread::of(&floor_cpu),
                errors: floor_errors,
            });
            if let Some(f) = floor
                .as_ref()
                .filter(|f| f.cpu_per_stream_second.median > 0.0)
            {
                for v in &mut variants {
                    v.cpu_vs_floor =
                        Some(v.cpu_per_stream_second.median / f.cpu_per_stream_second.median);
                }
            }
            let fixture = match cell.source.strip_prefix("fixture:") {
                Some(p) => Some(PathBuf::from(p)),
                None if cell.source == "sim" || cell.source == "neon-sim" => Some(
                    cfg.fixture
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_FIXTURE)),
                ),
                None => None,
            };
            let fast_decode_psnr = variants
                .iter()
                .any(|v| v.flags.iter().any(|f| f == "--fast-decode"))
                .then(|| {
                    fixture.and_then(|f| psnr.iter().find(|(p, _)| *p == f).map(|(_, v)| v.clone()))
                })
                .flatten();
            ScenarioSummary {
                scenario: cell.scenario.name().to_owned(),
                source: cell.source.clone(),
                source_label: source_label(&cell.source),
                variants,
                floor,
                fast_decode_psnr,
            }
        })
        .collect();

    Ok(SuiteReport {
        schema_version: SUITE_SCHEMA_VERSION,
        tool: serde_json::json!({
            "name": "bench-scenarios",
            "version": env!("CARGO_PKG_VERSION"),
        }),
        command_line: std::env::args().collect(),
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        wall_seconds: started.elapsed().as_secs_f64(),
        environment: serde_json::to_value(pipeline::platform::with_encoders(false))
            .unwrap_or_default(),
        eyetrack: eyetrack_tool,
        config: cfg.clone(),
        scenarios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_resolve_per_scenario() {
        let direct = |s: &str| RunSource::Direct(s.to_owned());
        for s in [
            "synthetic",
            "fixture:f.etfx",
            "neon://10.0.0.2:8080",
            "discover",
        ] {
            assert_eq!(run_source(s, None, Scenario::Streaming, 9.0), Ok(direct(s)));
        }
        assert_eq!(
            run_source(
                "sim",
                Some(Path::new("x.etfx")),
                Scenario::Recording5fps,
                9.0
            ),
            Ok(RunSource::Sim {
                fixture: "x.etfx".into(),
                drop: None
            })
        );
        // The interruption scenario brings its own simulator and fault, whatever the source.
        assert_eq!(
            run_source("synthetic", None, Scenario::NetworkInterruption, 15.0),
            Ok(RunSource::Sim {
                fixture: DEFAULT_FIXTURE.into(),
                drop: Some((5.0, 3.0))
            })
        );
        assert!(run_source("neon://h", None, Scenario::NetworkInterruption, 15.0).is_err());
        assert!(run_source("webcam", None, Scenario::Streaming, 15.0).is_err());
        assert!(RunSource::Direct("neon://h".into()).is_network());
        assert!(!RunSource::Direct("fixture:f".into()).is_network());
    }
}
