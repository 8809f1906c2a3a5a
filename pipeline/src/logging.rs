//! Log output of the binaries: tracing events on stderr, one readable line each (`text`) or one
//! JSON object per line (`json`). Library code only emits events; only binaries call [`init`].
//!
//! The text format keeps the programs' established one-line convention (`eyetrack: error: ...`,
//! `eyetrack: warning: ...`, plain `eyetrack: ...` for notes), so scripts and tests that read
//! stderr see the same lines as before logging went through tracing. The formatter is ours
//! (tracing-subscriber's `FormatEvent`) because its built-in formats always lead with a level
//! column and a target.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event: `PROGRAM: [error: |warning: ]message key=value ...`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, `target` and the event's
    /// fields.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("bad log level '{filter}' (a level such as info or debug, or RUST_LOG directives): {reason}")]
    Filter { filter: String, reason: String },
    #[error("a logger is already installed: {0}")]
    AlreadySet(String),
}

/// Crates whose events follow `--log-level` as given; everything else (tokio, retina, ...)
/// is held at `warn` unless the level asks for less.
const OUR_CRATES: [&str; 3] = ["pipeline", "eyetrack", "bench_scenarios"];

/// The filter for `--log-level` (or, without it, `RUST_LOG`; default `info`). A bare level
/// applies to our crates; a directive list (`pipeline::source=debug,warn`) is taken as is.
pub fn filter_directives(level: Option<&str>) -> String {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let raw = level
        .map(str::to_owned)
        .or(env)
        .unwrap_or_else(|| "info".into());
    let raw = raw.trim().to_ascii_lowercase();
    let bare = matches!(
        raw.as_str(),
        "trace" | "debug" | "info" | "warn" | "error" | "off"
    );
    if !bare {
        return raw;
    }
    let others = if matches!(raw.as_str(), "error" | "off") {
        raw.as_str()
    } else {
        "warn"
    };
    let mut d = others.to_owned();
    for c in OUR_CRATES {
        let _ = write!(d, ",{c}={raw}");
    }
    d
}

/// Installs the process's logger. `clear_line`: a live status line owns the terminal's last
/// line, so each event first erases it (the status line redraws itself).
pub fn init(
    program: &'static str,
    format: LogFormat,
    level: Option<&str>,
    clear_line: bool,
) -> Result<(), LogError> {
    let directives = filter_directives(level);
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| LogError::Filter {
            filter: level.unwrap_or(&directives).to_owned(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder
            .event_format(OneLine {
                program,
                clear_line,
            })
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| LogError::AlreadySet(e.to_string()))
}

/// The text format: one line per event, whatever the message holds.
struct OneLine {
    program: &'static str,
    clear_line: bool,
}

impl<S, N> FormatEvent<S, N> for OneLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if self.clear_line {
            writer.write_str("\r\x1b[2K")?;
        }
        let prefix = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
        };
        write!(writer, "{}: {prefix}{}", self.program, fields.message)?;
        writer.write_str(&fields.rest)?;
        writeln!(writer)
    }
}

/// Collects an event's message and its other fields (` key=value`), folded onto one line.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Fields {
    fn put(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        let text = value.to_string();
        let text = crate::cli::one_line(&text);
        if field.name() == "message" {
            self.message = text;
        } else {
            let _ = write!(self.rest, " {}={text}", field.name());
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_levels_apply_to_our_crates_and_directives_pass_through() {
        assert_eq!(
            filter_directives(Some("debug")),
            "warn,pipeline=debug,eyetrack=debug,bench_scenarios=debug"
        );
        assert_eq!(
            filter_directives(Some("ERROR")),
            "error,pipeline=error,eyetrack=error,bench_scenarios=error"
        );
        assert_eq!(
            filter_directives(Some("pipeline::source=trace,info")),
            "pipeline::source=trace,info"
        );
        assert!(EnvFilter::builder()
            .parse(filter_directives(Some("info")))
            .is_ok());
    }
}
