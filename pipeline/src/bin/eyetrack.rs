//! `eyetrack`: run the pipeline from the command line. Parses flags, wires a source into the
//! coordinator, shows a live status line, and prints (and optionally writes) the run report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use pipeline::cli;
use pipeline::coordinator::{Control, PipelineConfig, RunningPipeline};
use pipeline::flamegraph::{FlamegraphInfo, Sampler, DEFAULT_FREQUENCY_HZ, MAX_FREQUENCY_HZ};
use pipeline::overlay::{MarkerShape, OverlayMode, OverlayStyle, Rgb};
use pipeline::platform;
use pipeline::preview::ResizeFilter;
use pipeline::report::{ReportInputs, RunReport};
use pipeline::resources::ResourceMonitor;
use pipeline::source::synthetic::{SyntheticConfig, SyntheticFormat, SyntheticSource};
use pipeline::source::Source;
use pipeline::toggles::{ColorPath, CopyMode, OnOff, Preset, Toggles};

#[derive(Parser, Debug)]
#[command(
    name = "eyetrack",
    version,
    about = "Eye-tracker frame pipeline: stream, preview with gaze overlay, and measure it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline on a source and report per-phase latency, CPU and the targets.
    Run(Box<RunArgs>),
    /// Print this machine's platform capabilities as JSON.
    Platform,
    /// Recorded RTSP fixtures: inspect, synthesize, import.
    #[command(subcommand)]
    Fixture(pipeline::fixture::cli::FixtureCommand),
}

/// Where frames come from.
#[derive(Clone, Debug, PartialEq)]
enum SourceSpec {
    Synthetic,
}

fn parse_source(s: &str) -> Result<SourceSpec, String> {
    match s {
        "synthetic" => Ok(SourceSpec::Synthetic),
        s if s.starts_with("neon://") || s == "discover" || s.starts_with("fixture:") => Err(
            format!("source '{s}' is not available in this build yet (only 'synthetic')"),
        ),
        _ => Err(format!("unknown source '{s}' (expected 'synthetic')")),
    }
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}' is not WIDTHxHEIGHT"))?;
    let w: usize = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in '{s}'"))?;
    let h: usize = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in '{s}'"))?;
    if w < 2 || h < 2 || w > 16384 || h > 16384 {
        return Err(format!("'{s}' is outside 2x2 .. 16384x16384"));
    }
    Ok((w, h))
}

fn parse_rgb(s: &str) -> Result<Rgb, String> {
    let hex = s.trim_start_matches('#');
    if hex.len() != 6 {
        return Err(format!("colour '{s}' is not RRGGBB"));
    }
    let v = u32::from_str_radix(hex, 16).map_err(|_| format!("colour '{s}' is not RRGGBB"))?;
    Ok(Rgb {
        r: (v >> 16) as u8,
        g: (v >> 8) as u8,
        b: v as u8,
    })
}

fn parse_fps(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("fps '{s}' is not a number"))?;
    if !(v > 0.0 && v <= 240.0) {
        return Err(format!("fps '{s}' is outside (0, 240]"));
    }
    Ok(v)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PreviewVisibility {
    Visible,
    Hidden,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Frame source: `synthetic` (built in, deterministic).
    #[arg(long, default_value = "synthetic", value_parser = parse_source)]
    source: SourceSpec,
    /// How much stream to run, e.g. 10s, 2m, 500ms (default: until Ctrl-C).
    #[arg(long, value_parser = cli::parse_duration)]
    duration: Option<Duration>,
    /// Replay as fast as possible instead of in real time (offline measurement).
    #[arg(long)]
    as_fast_as_possible: bool,

    /// Starting point for every toggle; the flags below override it.
    #[arg(long, value_enum, default_value_t = Preset::Optimized)]
    preset: Preset,
    /// Preview scaling filter (plan 1.1).
    #[arg(long, value_enum)]
    resize: Option<ResizeFilter>,
    /// Gaze/HUD overlay: cached sprites or rasterize every frame (plan 2.2).
    #[arg(long, value_enum)]
    overlay: Option<OverlayMode>,
    /// Skip processing of repeated frames (plan 2.3).
    #[arg(long, value_enum)]
    dedupe: Option<OnOff>,
    /// planar: keep frames as decoded; bgr: convert every frame to packed BGR first.
    #[arg(long, value_enum)]
    color_path: Option<ColorPath>,
    /// Keep gray (and RGBA) frames as they are until an overlay needs colour (plan 2.1).
    #[arg(long, value_enum)]
    lazy_color: Option<OnOff>,
    /// Copy each acquired frame always, or only if it is not contiguous (plan 1.5).
    #[arg(long, value_enum)]
    copy: Option<CopyMode>,
    /// Process only every 10th frame while the preview is hidden and nothing records (plan 1.6).
    #[arg(long, value_enum)]
    reduced_processing: Option<OnOff>,

    /// Box the preview is scaled to fit (aspect ratio kept).
    #[arg(long, value_parser = parse_size, default_value = "640x360")]
    preview_size: (usize, usize),
    /// Whether someone is looking at the preview (drives reduced processing).
    #[arg(long, value_enum, default_value_t = PreviewVisibility::Visible)]
    preview: PreviewVisibility,

    /// Gaze marker shape.
    #[arg(long, value_enum, default_value_t = MarkerShape::Circle)]
    marker: MarkerShape,
    /// Gaze marker radius in preview pixels.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    marker_radius: u32,
    /// Gaze marker line thickness in preview pixels.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=50))]
    marker_thickness: u32,
    /// Marker colour while the glasses are worn (RRGGBB).
    #[arg(long, value_parser = parse_rgb, default_value = "ffff00")]
    worn_color: Rgb,
    /// Marker colour while not worn (RRGGBB).
    #[arg(long, value_parser = parse_rgb, default_value = "ff0000")]
    not_worn_color: Rgb,
    /// Text HUD (fps, frame index, state) on the preview.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    hud: OnOff,

    /// Synthetic source: pixel format.
    #[arg(long, value_enum, default_value_t = SyntheticFormat::I420)]
    format: SyntheticFormat,
    /// Synthetic source: scene resolution.
    #[arg(long, value_parser = parse_size, default_value = "1600x1200")]
    resolution: (usize, usize),
    /// Synthetic source: frames per second.
    #[arg(long, value_parser = parse_fps, default_value = "30")]
    fps: f64,
    /// Synthetic source: seed of the deterministic content.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Sample the whole process's CPU while the pipeline runs and write a flamegraph SVG here.
    #[arg(long)]
    flamegraph: Option<PathBuf>,
    /// Sampling frequency of `--flamegraph`, per CPU-second (odd, so it does not beat with
    /// 30 fps work).
    #[arg(long, default_value_t = DEFAULT_FREQUENCY_HZ,
          value_parser = clap::value_parser!(i32).range(1..=MAX_FREQUENCY_HZ as i64))]
    flamegraph_hz: i32,
    /// Save the last display-ready preview frame (with overlay) as a PPM image.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Turn the per-phase profiler off (to measure its own cost).
    #[arg(long)]
    no_profile: bool,
    /// No live status line and no tables.
    #[arg(long, short)]
    quiet: bool,
}

impl RunArgs {
    fn toggles(&self) -> Toggles {
        let mut t = self.preset.toggles();
        if let Some(v) = self.resize {
            t.resize = v;
        }
        if let Some(v) = self.overlay {
            t.overlay = v;
        }
        if let Some(v) = self.dedupe {
            t.dedupe = v;
        }
        if let Some(v) = self.color_path {
            t.color_path = v;
        }
        if let Some(v) = self.lazy_color {
            t.lazy_color = v;
        }
        if let Some(v) = self.copy {
            t.copy = v;
        }
        if let Some(v) = self.reduced_processing {
            t.reduced_processing = v;
        }
        t
    }

    fn overlay_style(&self) -> OverlayStyle {
        OverlayStyle {
            shape: self.marker,
            radius: self.marker_radius,
            thickness: self.marker_thickness,
            worn: self.worn_color,
            not_worn: self.not_worn_color,
            hud: self.hud.is_on(),
            ..OverlayStyle::default()
        }
    }
}

fn main() -> ExitCode {
    let cli = match cli::parse_or_exit::<Cli>("eyetrack") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Platform => serde_json::to_string_pretty(platform::detect())
            .map(|s| println!("{s}"))
            .map_err(Into::into),
        Command::Fixture(cmd) => pipeline::fixture::cli::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eyetrack: error: {}", cli::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let toggles = args.toggles();
    let paced = !args.as_fast_as_possible;
    let source: Box<dyn Source> = match args.source {
        SourceSpec::Synthetic => Box::new(
            SyntheticSource::new(SyntheticConfig {
                width: args.resolution.0,
                height: args.resolution.1,
                fps: args.fps,
                format: args.format,
                duration: args.duration,
                seed: args.seed,
                paced,
            })
            .context("synthetic source")?,
        ),
    };
    if let Some(path) = &args.report {
        check_writable(path, "report")?;
    }
    if let Some(path) = &args.flamegraph {
        check_writable(path, "flamegraph")?;
    }
    let caps = platform::detect();
    let cfg = PipelineConfig {
        toggles,
        preview_box: args.preview_size,
        overlay_style: args.overlay_style(),
        profile: !args.no_profile,
        live: paced,
        ..PipelineConfig::default()
    };
    let control = Arc::new(Control::default());
    control.preview_visible.store(
        args.preview == PreviewVisibility::Visible,
        Ordering::Relaxed,
    );
    {
        let control = Arc::clone(&control);
        // A second Ctrl-C while stopping falls through to the default (immediate exit).
        let _ = ctrlc::set_handler(move || control.request_stop());
    }

    // Before the pipeline, so the graph covers every frame; the sampler's cost is its own field.
    let sampler = match &args.flamegraph {
        Some(_) => Some(Sampler::start(args.flamegraph_hz).context("flamegraph sampler")?),
        None => None,
    };
    let monitor = ResourceMonitor::start(Duration::from_millis(250));
    let running = RunningPipeline::start(source, cfg.clone(), Arc::clone(&control))?;
    let source_info = running.source_info().clone();
    let live = !args.quiet && std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let mut last_line = Instant::now();
    while !running.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if live && last_line.elapsed() >= Duration::from_millis(500) {
            last_line = Instant::now();
            status_line(&running, &monitor, t0.elapsed(), source_info.fps);
        }
    }
    if live {
        eprint!("\r\x1b[2K");
    }
    let latest = Arc::clone(running.latest_preview());
    let outcome = running.wait();
    let resources = monitor.stop();
    let flamegraph = match (sampler, &args.flamegraph) {
        (Some(sampler), Some(path)) => {
            let stats = sampler
                .finish(path, &flamegraph_title(&args, &toggles, paced))
                .context("flamegraph")?;
            if stats.samples == 0 {
                eprintln!(
                    "eyetrack: warning: the flamegraph took no samples (run too short for {} Hz)",
                    stats.frequency_hz
                );
            }
            Some(FlamegraphInfo::new(path, &stats))
        }
        _ => None,
    };
    if let Some(path) = &args.snapshot {
        let (frame, _) = latest
            .get()
            .context("no preview frame was displayed, so there is no snapshot")?;
        write_ppm(path, &frame)?;
    }
    let report = RunReport::build(
        &outcome,
        ReportInputs {
            command_line: std::env::args().collect(),
            scenario: "streaming",
            source: source_info,
            toggles,
            preview_box: args.preview_size,
            paced,
            resources,
            flamegraph,
        },
        caps,
    );
    if !args.quiet {
        println!("{}", report.render_tables());
        if let Some(f) = &report.flamegraph {
            println!(
                "flamegraph written to {}: {} samples at {} Hz ({} dropped), sampler overhead \
                 {:.4} CPU-s ({:.2} % of the run's CPU)",
                f.path.display(),
                f.samples,
                f.frequency_hz,
                f.samples_dropped,
                f.overhead_cpu_seconds,
                f.overhead_percent
            );
        }
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing report {}", path.display()))?;
        if !args.quiet {
            println!("report written to {}", path.display());
        }
    }
    if let Some(e) = &outcome.error {
        anyhow::bail!("the run ended early: {e}");
    }
    Ok(())
}

/// Writes a frame as binary PPM (RGB), converting from whatever the preview holds.
fn write_ppm(path: &std::path::Path, frame: &pipeline::frame::Frame) -> anyhow::Result<()> {
    use pipeline::frame::{Frame, PixelFormat};
    let mut bgr = Frame::new(PixelFormat::Bgr24, 1, 1);
    pipeline::color::convert(&frame.view(), &mut bgr, PixelFormat::Bgr24)
        .context("converting the snapshot")?;
    let mut out = format!("P6\n{} {}\n255\n", bgr.width(), bgr.height()).into_bytes();
    let plane = bgr.plane(0);
    for y in 0..plane.height {
        for px in plane.row(y).chunks_exact(3) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing snapshot {}", path.display()))
}

/// The toggles and the source, so a folder of SVGs from a sweep says which is which.
fn flamegraph_title(args: &RunArgs, toggles: &Toggles, paced: bool) -> String {
    let toggles = match serde_json::to_value(toggles) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{}={s}", k.replace('_', "-")),
                v => format!("{}={v}", k.replace('_', "-")),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    format!(
        "eyetrack run: {toggles} | {}x{} {:?} {} fps, {}",
        args.resolution.0,
        args.resolution.1,
        args.format,
        args.fps,
        if paced {
            "paced"
        } else {
            "as fast as possible"
        }
    )
}

/// Fails before streaming if an output cannot be written, rather than after the run.
fn check_writable(path: &std::path::Path, what: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "{what} folder {} does not exist",
        dir.display()
    );
    let probe = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {what} {}", path.display()))?;
    drop(probe);
    Ok(())
}

fn status_line(running: &RunningPipeline, monitor: &ResourceMonitor, elapsed: Duration, fps: f64) {
    let c = running.counters().snapshot();
    let secs = elapsed.as_secs_f64().max(1e-3);
    let stream_s = c.frames_acquired as f64 / fps.max(1e-3);
    let (cpu_s, rss) = monitor.current();
    let cpu_pct = if stream_s > 0.0 {
        100.0 * cpu_s / stream_s
    } else {
        0.0
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r\x1b[2K{:6.1}s  {:5.1} fps  displayed {}  drops {}  dup {}  cpu {:5.1}% of a core  rss {:.0} MB",
        secs,
        c.frames_displayed as f64 / secs,
        c.frames_displayed,
        c.dropped(),
        c.duplicates_skipped,
        cpu_pct,
        rss as f64 / 1048576.0,
    );
    let _ = err.flush();
}
