//! `eyetrack`: run the pipeline from the command line. Parses flags, wires a source into the
//! coordinator, shows a live status line, and prints (and optionally writes) the run report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use pipeline::cli;
use pipeline::logging::{self, LogFormat};
use pipeline::platform;
use pipeline::run::RunArgs;

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
    /// The runtime configuration file of `eyetrack run`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print this machine's platform capabilities as JSON.
    Platform,
    /// Recorded RTSP fixtures: inspect, synthesize, import.
    #[command(subcommand)]
    Fixture(pipeline::fixture::cli::FixtureCommand),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the effective configuration of `eyetrack run` with these flags (and the config
    /// file) as TOML: a config file that gives exactly this configuration.
    Show(Box<RunArgs>),
}
/// The command with the run flags' later occurrences overriding earlier ones, so config-file
/// values (inserted first) give way to the command line.
fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("run", |c| c.args_override_self(true))
        .mut_subcommand("config", |c| {
            c.mut_subcommand("show", |s| s.args_override_self(true))
        })
}

/// Where the run flags start in `argv` (after `run` or `config show`), if this is such a
/// command line.
fn run_flags_start(argv: &[std::ffi::OsString]) -> Option<usize> {
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("run") => Some(2),
        Some("config") if argv.get(2).and_then(|a| a.to_str()) == Some("show") => Some(3),
        _ => None,
    }
}

/// The config file in effect: `--config FILE`, else the default location if it exists.
fn config_path(flags: &[std::ffi::OsString]) -> Option<PathBuf> {
    pipeline::config::config_flag(flags)
        .or_else(|| pipeline::config::default_path().filter(|p| p.is_file()))
}

/// Parses the command line with the config file's values in front of the run flags.
fn parse() -> Result<(Cli, clap::ArgMatches, Option<PathBuf>), ExitCode> {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut config = None;
    if let Some(start) = run_flags_start(&argv) {
        let flags = argv.get(start..).unwrap_or_default();
        if let Some(path) = config_path(flags) {
            let run_cmd = RunArgs::augment_args(clap::Command::new("run"));
            match pipeline::config::file_args(&run_cmd, &path) {
                Ok(file_args) => {
                    argv.splice(start..start, file_args);
                    config = Some(path);
                }
                Err(e) => {
                    eprintln!("eyetrack: error: {}", cli::one_line(&e.to_string()));
                    return Err(ExitCode::from(2));
                }
            }
        }
    }
    let matches = command().try_get_matches_from(&argv).map_err(|e| {
        use clap::error::ErrorKind;
        if matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        eprintln!("eyetrack: {}", cli::one_line(&e.render().to_string()));
        ExitCode::from(2)
    })?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| {
        eprintln!("eyetrack: {}", cli::one_line(&e.render().to_string()));
        ExitCode::from(2)
    })?;
    Ok((cli, matches, config))
}

fn main() -> ExitCode {
    let (cli, matches, config) = match parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Logging is set up before anything can fail, so every error line goes through it.
    let (format, level, live) = match &cli.command {
        Command::Run(a) => (
            a.log_format,
            a.log_level.clone(),
            !a.quiet && std::io::stderr().is_terminal(),
        ),
        _ => (LogFormat::Text, None, false),
    };
    if let Err(e) = logging::init("eyetrack", format, level.as_deref(), live) {
        eprintln!("eyetrack: {}", cli::one_line(&e.to_string()));
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Run(mut args) => {
            args.command_line = cli::redacted_command_line(&command());
            // First, so a signal during a slow connect or discovery already counts.
            install_signal_handlers().and_then(|signals| pipeline::run::run(*args, signals))
        }
        Command::Config(ConfigCommand::Show(args)) => {
            config_show(&args, &matches, config.as_deref());
            Ok(())
        }
        Command::Platform => serde_json::to_string_pretty(platform::detect())
            .map(|s| println!("{s}"))
            .map_err(Into::into),
        Command::Fixture(cmd) => {
            pipeline::fixture::cli::run(cmd, cli::redacted_command_line(&command()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", cli::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// `eyetrack config show`: the effective configuration as a config file.
fn config_show(args: &RunArgs, matches: &clap::ArgMatches, config: Option<&std::path::Path>) {
    let Some(m) = matches
        .subcommand_matches("config")
        .and_then(|m| m.subcommand_matches("show"))
    else {
        return;
    };
    let run_cmd = RunArgs::augment_args(clap::Command::new("run"));
    let header = format!(
        "eyetrack run: effective configuration (config file: {}).\n\
         Keys are the long flags of `eyetrack run`; a commented key is at its default.",
        config.map_or_else(|| "none".to_string(), |p| p.display().to_string())
    );
    print!(
        "{}",
        pipeline::config::render(&run_cmd, m, &header, &|k| args.layout_default(k))
    );
}

/// Exit status of a second SIGINT (the shell's 128 + signal number).
const EXIT_SECOND_SIGINT: i32 = 130;
/// Exit status of a second SIGTERM.
const EXIT_SECOND_SIGTERM: i32 = 143;

/// SIGINT and SIGTERM: the first asks for a clean stop (the flag, polled by the main loop);
/// a second one, while that stop is under way, ends the process at once with
/// [`EXIT_SECOND_SIGINT`] / [`EXIT_SECOND_SIGTERM`]. signal-hook's handlers only store to
/// atomics and `_exit`, which is async-signal-safe; the conditional exit is registered first,
/// so it sees the flag as the previous signal left it. Returns (stop requested, which signal).
fn install_signal_handlers() -> anyhow::Result<(Arc<AtomicBool>, Arc<AtomicUsize>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let requested = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for (sig, code) in [(SIGINT, EXIT_SECOND_SIGINT), (SIGTERM, EXIT_SECOND_SIGTERM)] {
        signal_hook::flag::register_conditional_shutdown(sig, code, Arc::clone(&requested))
            .context("installing signal handlers")?;
        signal_hook::flag::register_usize(sig, Arc::clone(&which), sig as usize)
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, Arc::clone(&requested))
            .context("installing signal handlers")?;
    }
    Ok((requested, which))
}
