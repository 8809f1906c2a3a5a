//! `bench-scenarios`: the command line of the scenario runner (`run`) and of the report
//! comparison (`compare`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use bench_scenarios::runner::{self, Mode, Scenario, SuiteConfig, VariantSpec};
use bench_scenarios::tables;
use bench_scenarios::variants::{self, Sweep, Variant};
use bench_scenarios::{compare, html, soak};
use pipeline::cli;

#[derive(Parser, Debug)]
#[command(
    name = "bench-scenarios",
    version,
    about = "Which of the plan's optimizations help on this device, and are the targets met?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run scenarios x variants (each run its own eyetrack process) and write a report folder.
    Run(RunArgs),
    /// Compare two suite reports (two builds or two devices); B is judged against A.
    Compare(CompareArgs),
    /// The soak and fault suite: long recording, reconnects, a killed encoder, a full disk,
    /// CPU contention, network garbage; writes report.json and summary.md.
    Soak(SoakArgs),
}

#[derive(Args, Debug)]
struct SoakArgs {
    /// Length of the continuous-recording case (the plan: 30m on a device; CI: under 1m).
    #[arg(long, value_parser = cli::parse_duration, default_value = "2m")]
    duration: Duration,
    /// Report folder (default: reports/soak-<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The fixture neon-sim serves.
    #[arg(long, default_value = runner::DEFAULT_FIXTURE)]
    fixture: PathBuf,
    /// The eyetrack binary (default: the one next to this binary).
    #[arg(long)]
    eyetrack: Option<PathBuf>,
    /// Run only the cases whose name contains this (repeatable).
    #[arg(long = "case")]
    cases: Vec<String>,
    /// `judge`: a drop rate over the documented target fails the continuous-recording case.
    /// `report`: it is reported but does not fail (drops depend on what else the machine
    /// runs, so CI's test on a shared 2-core box uses this; every other check still gates).
    #[arg(long, value_enum, default_value_t = soak::Targets::Judge)]
    targets: soak::Targets,
    /// No progress lines and no table.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenarios to run (repeatable). Default: streaming and both recording rates.
    #[arg(long = "scenario", value_enum, default_values_t = [
        Scenario::Streaming, Scenario::Recording5fps, Scenario::Recording30fps
    ])]
    scenarios: Vec<Scenario>,
    /// Frame sources (repeatable; every source runs every scenario): synthetic, fixture:PATH
    /// (in-process replay, H.264 decoded), sim (neon-sim on loopback serving --fixture),
    /// neon://HOST[:PORT] (a real device) or discover. Default: the committed 1600x1200 H.264
    /// fixture, then the synthetic source (which skips the decode).
    #[arg(long = "source", default_values_t = [
        format!("fixture:{}", runner::DEFAULT_FIXTURE), "synthetic".to_owned()
    ])]
    sources: Vec<String>,
    /// The fixture neon-sim serves for `--source sim` and the network-interruption scenario.
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Pixel format of the synthetic source (e.g. gray, to give lazy colour something to do).
    #[arg(long)]
    source_format: Option<String>,
    /// Which variants to generate against the baseline (per cell, only the toggles that act
    /// there).
    #[arg(long, value_enum, default_value_t = Sweep::Full)]
    sweep: Sweep,
    /// An explicit variant, NAME=FLAGS (eyetrack run flags, on top of the baseline preset);
    /// runs in every cell.
    #[arg(long = "variant", value_parser = variants::parse_variant)]
    variants: Vec<Variant>,
    /// Stream length of each run (plan: 5-10 minutes on a device; seconds in CI).
    #[arg(long, value_parser = cli::parse_duration, default_value = "4s")]
    duration: Duration,
    /// Runs per variant, interleaved, so noise is measured.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// offline: as fast as possible (CPU per stream-second is what is compared; latency and
    /// frame-rate targets need paced); paced: real time, what a device sees.
    #[arg(long, value_enum, default_value_t = Mode::Offline)]
    mode: Mode,
    /// Report folder (default: reports/run-<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The eyetrack binary (default: the one next to this binary).
    #[arg(long)]
    eyetrack: Option<PathBuf>,
    /// Flamegraphs from in-process sampling, each in one extra run that stays out of the
    /// statistics: of the baseline and all-optimized per cell (ends), of every variant (all),
    /// or none.
    #[arg(long, value_enum, default_value_t = runner::Flamegraphs::Ends)]
    flamegraphs: runner::Flamegraphs,
    /// The ffmpeg program alone on the same work for each fixture cell (the floor).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    floor: OnOff,
    /// No progress bar and no tables.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// The reference report.json.
    a: PathBuf,
    /// The report.json judged against it.
    b: PathBuf,
    /// Exit 1 if any variant uses more CPU than in A by more than this percentage, beyond the
    /// repeat-to-repeat noise.
    #[arg(long)]
    fail_on_regression: Option<f64>,
}

fn main() -> ExitCode {
    let cli = match cli::parse_or_exit::<Cli>("bench-scenarios") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Compare(args) => compare_cmd(args),
        Command::Soak(args) => soak_cmd(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "bench-scenarios: error: {}",
                cli::one_line(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

fn default_out(kind: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    Path::new("reports").join(format!("{kind}-{stamp}"))
}

fn soak_cmd(args: SoakArgs) -> anyhow::Result<ExitCode> {
    let eyetrack = match args.eyetrack.clone() {
        Some(p) => p,
        None => runner::default_eyetrack().context(
            "no eyetrack binary next to bench-scenarios: build both with \
             `cargo build --release --bins`, or pass --eyetrack PATH",
        )?,
    };
    let neon_sim = runner::default_neon_sim()
        .context("neon-sim was not found next to bench-scenarios (cargo build --bins)")?;
    anyhow::ensure!(
        args.fixture.is_file(),
        "fixture {} not found (--fixture; run from the repository root for the committed one)",
        args.fixture.display()
    );
    let cfg = soak::SoakConfig {
        duration_s: args.duration.as_secs_f64(),
        eyetrack,
        neon_sim,
        fixture: args.fixture.clone(),
        only: args.cases.clone(),
        targets: args.targets,
    };
    let out = args.out.clone().unwrap_or_else(|| default_out("soak"));
    let quiet = args.quiet;
    let report = soak::run(&cfg, &out, |case| {
        if !quiet {
            eprintln!("bench-scenarios: soak: {case} ...");
        }
    })
    .with_context(|| format!("soak folder {}", out.display()))?;
    let table = soak::summary_table(&report);
    let path = out.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    let md = out.join("summary.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    if !quiet {
        print!("{table}");
        println!("report: {} and {}", path.display(), md.display());
    }
    let failed = report.failed();
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|c| c.name.as_str()).collect();
        eprintln!("bench-scenarios: soak: failed: {}", names.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let eyetrack = match args.eyetrack.clone() {
        Some(p) => p,
        None => runner::default_eyetrack().context(
            "no eyetrack binary next to bench-scenarios: build both with \
             `cargo build --release --bins`, or pass --eyetrack PATH",
        )?,
    };
    let mut explicit: Vec<Variant> = Vec::new();
    for v in &args.variants {
        anyhow::ensure!(
            !explicit.iter().any(|x| x.name == v.name)
                && !variants::TOGGLES
                    .iter()
                    .any(|t| format!("{}={}", t.name, t.value) == v.name)
                && v.name != "all-optimized",
            "variant name '{}' is used twice",
            v.name
        );
        explicit.push(v.clone());
    }
    let mut sources: Vec<String> = Vec::new();
    for s in &args.sources {
        if !sources.contains(s) {
            sources.push(s.clone());
        }
    }
    let cfg = SuiteConfig {
        sources,
        scenarios: args.scenarios.clone(),
        sweep: args.sweep,
        variants: explicit.iter().map(VariantSpec::from).collect(),
        duration_s: args.duration.as_secs_f64(),
        repeat: args.repeat as usize,
        mode: args.mode,
        fixture: args.fixture.clone(),
        source_format: args.source_format.clone(),
        flamegraphs: args.flamegraphs,
        floor: args.floor == OnOff::On,
    };
    let out = args.out.clone().unwrap_or_else(|| default_out("run"));
    let progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = runner::run_suite(&eyetrack, &cfg, &out, progress)?;
    let json = serde_json::to_string_pretty(&report)?;
    let path = out.join("report.json");
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    let html = out.join("index.html");
    std::fs::write(&html, html::render(&report))
        .with_context(|| format!("writing {}", html.display()))?;
    if !args.quiet {
        print!("{}", tables::targets_table(&report));
        print!("{}", tables::variants_table(&report));
        print!("{}", tables::floor_table(&report));
        println!("report: {} and {}", path.display(), html.display());
    }
    for sc in &report.scenarios {
        if let Some(f) = sc.floor.as_ref().filter(|f| !f.errors.is_empty()) {
            eprintln!(
                "bench-scenarios: warning: the ffmpeg floor of {} failed: {}",
                sc.title(),
                f.errors.join("; ")
            );
        }
    }
    let failed: usize = report
        .scenarios
        .iter()
        .flat_map(|s| &s.variants)
        .map(|v| v.failed_runs)
        .sum();
    if failed > 0 {
        let first = report
            .scenarios
            .iter()
            .flat_map(|s| &s.variants)
            .flat_map(|v| v.errors.iter().map(move |e| format!("{}: {e}", v.name)))
            .next()
            .unwrap_or_default();
        eprintln!("bench-scenarios: {failed} run(s) failed; first: {first}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn compare_cmd(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let a = compare::load(&args.a)?;
    let b = compare::load(&args.b)?;
    let rows = compare::compare(&a, &b);
    anyhow::ensure!(
        !rows.is_empty(),
        "the two reports share no scenario x variant to compare"
    );
    println!(
        "{}",
        compare::table(
            &rows,
            &args.a.display().to_string(),
            &args.b.display().to_string()
        )
    );
    if let Some(pct) = args.fail_on_regression {
        let bad = compare::regressions(&rows, pct);
        if !bad.is_empty() {
            for r in &bad {
                eprintln!(
                    "bench-scenarios: regression: {} {} uses {:+.1} % CPU (limit {pct} %)",
                    r.scenario, r.variant, r.change_percent
                );
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
