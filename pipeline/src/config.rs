//! The runtime configuration file (TOML) of `eyetrack run`: reading it into the command line's
//! own arguments, and printing the effective configuration (`eyetrack config show`).
//!
//! Keys are the long flags of `eyetrack run` (`record-fps = 10`, `source = "synthetic"`), and
//! both directions are derived from the clap definition of those flags, so a new flag is a new
//! key without any code here. The file is not deserialized into a struct of its own: each value
//! becomes the flag's argument and goes through the flag's own value parser (ranges, `WxH`
//! sizes, enum names), inserted before the command line's flags, with later occurrences
//! overriding earlier ones, so the command line wins and a value is checked exactly once, the
//! same way wherever it comes from. A serde struct beside the clap one would duplicate every
//! default and every range check, and could drift from them.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// The flag that names the file; itself not a key.
pub const CONFIG_FLAG: &str = "config";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: unknown key '{key}'{hint}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        /// ": did you mean ..." or a list of where keys come from.
        hint: String,
    },
    #[error("config file {path}: key '{key}': {message}")]
    Value {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Where `eyetrack run` looks for a config file when `--config` is not given:
/// `$XDG_CONFIG_HOME/eyetrack/config.toml`, else `$HOME/.config/eyetrack/config.toml`. Only used
/// when it exists.
pub fn default_path() -> Option<PathBuf> {
    Some(xdg_dir("XDG_CONFIG_HOME", ".config")?.join("config.toml"))
}

/// eyetrack's folder under an XDG base directory: `$VAR/eyetrack`, else
/// `$HOME/{home_default}/eyetrack` (the XDG default; `.config`, `.cache`).
pub fn xdg_dir(var: &str, home_default: &str) -> Option<PathBuf> {
    let base = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(home_default))
        })?;
    Some(base.join("eyetrack"))
}

/// The value of `--config FILE` / `--config=FILE` among `args` (the flags after the subcommand),
/// if given. Stops at `--`, after which nothing is a flag.
pub fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let long = format!("--{CONFIG_FLAG}");
    let with_eq = format!("--{CONFIG_FLAG}=");
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            break;
        }
        if s == long {
            found = it.next().map(PathBuf::from);
        } else if let Some(v) = s.strip_prefix(&with_eq) {
            found = Some(PathBuf::from(v));
        }
    }
    found
}

/// Reads a config file and turns it into arguments for `cmd` (the `run` flags): `--key=value`
/// for each key, `--key` for a flag set to true. Every key must be one of `cmd`'s long flags
/// and every value must pass that flag's own parser; the first that does not is the error.
pub fn file_args(cmd: &Command, path: &Path) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    args_from_toml(cmd, path, &text)
}

/// [`file_args`] on text already read (`path` names it in errors).
pub fn args_from_toml(
    cmd: &Command,
    path: &Path,
    text: &str,
) -> Result<Vec<OsString>, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: crate::cli::one_line(&e.to_string()),
    })?;
    let mut cmd = cmd.clone();
    cmd.build();
    let mut out = Vec::new();
    for (key, value) in &table {
        let value_err = |message: String| ConfigError::Value {
            path: path.to_owned(),
            key: key.clone(),
            message,
        };
        let Some(arg) = keyed_args(&cmd).find(|a| a.get_long() == Some(key.as_str())) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                hint: unknown_key_hint(&cmd, key),
            });
        };
        let flag = format!("--{key}");
        if !arg.get_action().takes_values() {
            match value {
                toml::Value::Boolean(true) => out.push(OsString::from(&flag)),
                toml::Value::Boolean(false) => {}
                other => {
                    return Err(value_err(format!(
                        "is a switch: true or false, not {}",
                        type_name(other)
                    )))
                }
            }
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(value_err(format!(
                    "expects a string or a number (as after {flag}), not {}",
                    type_name(other)
                )))
            }
        };
        // The flag's own parser, alone (its `requires` are for the whole command line).
        let probe = Command::new("eyetrack").no_binary_name(true).arg(
            arg.clone()
                .requires(clap::builder::Resettable::<clap::Id>::Reset),
        );
        probe
            .try_get_matches_from([format!("--{key}={text}")])
            .map_err(|e| value_err(clap_message(&e.render().to_string())))?;
        out.push(OsString::from(format!("{flag}={text}")));
    }
    Ok(out)
}

/// The flags that are configuration keys: every long flag but help, version and `--config`.
fn keyed_args(cmd: &Command) -> impl Iterator<Item = &clap::Arg> {
    cmd.get_arguments().filter(|a| {
        a.get_long().is_some_and(|l| l != CONFIG_FLAG)
            && !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

fn unknown_key_hint(cmd: &Command, key: &str) -> String {
    let dashed = key.replace('_', "-");
    if dashed != key && keyed_args(cmd).any(|a| a.get_long() == Some(dashed.as_str())) {
        return format!(": did you mean '{dashed}'? (keys are the long flags, with dashes)");
    }
    if key == CONFIG_FLAG {
        return ": a config file cannot name another one".into();
    }
    ": keys are the long flags of `eyetrack run` (see `eyetrack run --help`)".into()
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// clap's message without its "error: " lead and usage hints.
fn clap_message(rendered: &str) -> String {
    let line = crate::cli::one_line(rendered);
    line.strip_prefix("error: ").unwrap_or(&line).to_owned()
}

/// Prints the effective configuration of `cmd` (the `run` flags) as parsed into `m`: a key for
/// every value given (by the file or the command line), a commented key with its default for
/// the rest, so the output read back as a config file gives the same configuration. `note`
/// may add a remark to a key (e.g. a default that depends on another option).
pub fn render(
    cmd: &Command,
    m: &ArgMatches,
    header: &str,
    note: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    for arg in keyed_args(&cmd) {
        let (Some(key), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        let given = matches!(m.value_source(id), Some(ValueSource::CommandLine))
            || matches!(m.value_source(id), Some(ValueSource::EnvVariable));
        let raw: Vec<String> = m
            .get_raw(id)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = if !arg.get_action().takes_values() {
            Some(toml::Value::Boolean(
                raw.first().is_some_and(|v| v == "true"),
            ))
        } else {
            raw.last().map(|v| toml_value(v))
        };
        let remark = note(key).map(|n| format!("  # {n}")).unwrap_or_default();
        if crate::cli::is_secret(arg) {
            // Never printed: `config show` output gets pasted into issues and chats. Read back,
            // the file leaves the secret unset, to be given again (or by its environment).
            let state = if given { "set" } else { "not set" };
            let _ = writeln!(out, "# {key} ({state}; a secret, not shown){remark}");
            continue;
        }
        match (given, value) {
            (true, Some(v)) => {
                let _ = writeln!(out, "{key} = {v}{remark}");
            }
            (false, Some(v)) => {
                let _ = writeln!(out, "# {key} = {v}{remark}");
            }
            (_, None) => {
                let _ = writeln!(out, "# {key} (not set){remark}");
            }
        }
    }
    out
}

/// A flag's text as the TOML value that reads back to the same text: an integer or float when
/// it prints the same, else a string.
fn toml_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        if i.to_string() == raw {
            return toml::Value::Integer(i);
        }
    }
    if let Ok(f) = raw.parse::<f64>() {
        if f.is_finite() && f.to_string() == raw {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cmd() -> Command {
        Command::new("run")
            .args_override_self(true)
            .arg(
                Arg::new("fps")
                    .long("record-fps")
                    .default_value("5")
                    .value_parser(clap::value_parser!(u32).range(1..=30)),
            )
            .arg(Arg::new("source").long("source").default_value("synthetic"))
            .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue))
            .arg(Arg::new("report").long("report"))
            .arg(Arg::new("config").long("config"))
    }

    fn args(text: &str) -> Result<Vec<String>, String> {
        args_from_toml(&cmd(), Path::new("c.toml"), text)
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn keys_become_flags_checked_by_their_parsers() {
        assert_eq!(
            args("record-fps = 10\nsource = \"fixture:x\"\nquiet = true").unwrap(),
            // Keys in the table's (sorted) order; each flag is given once, so order is moot.
            ["--quiet", "--record-fps=10", "--source=fixture:x"]
        );
        assert_eq!(args("quiet = false").unwrap(), Vec::<String>::new());
        let e = args("record-fps = 99").unwrap_err();
        assert!(
            e.contains("c.toml") && e.contains("'record-fps'") && e.contains("99"),
            "{e}"
        );
        let e = args("record_fps = 9").unwrap_err();
        assert!(
            e.contains("unknown key 'record_fps'") && e.contains("'record-fps'"),
            "{e}"
        );
        let e = args("colour = 1").unwrap_err();
        assert!(e.contains("c.toml: unknown key 'colour'"), "{e}");
        let e = args("config = \"other.toml\"").unwrap_err();
        assert!(e.contains("unknown key 'config'"), "{e}");
        let e = args("quiet = \"yes\"").unwrap_err();
        assert!(e.contains("'quiet'") && e.contains("true or false"), "{e}");
        let e = args("report = [1]").unwrap_err();
        assert!(e.contains("'report'") && e.contains("an array"), "{e}");
        assert!(args("record-fps = ")
            .unwrap_err()
            .contains("not valid TOML"));
    }

    #[test]
    fn the_command_line_wins_and_show_reads_back() {
        let file = args_from_toml(&cmd(), Path::new("c"), "record-fps = 10\nquiet = true").unwrap();
        let mut argv = vec![OsString::from("run")];
        argv.extend(file);
        argv.push("--record-fps=12".into());
        let m = cmd().try_get_matches_from(&argv).unwrap();
        assert_eq!(m.get_one::<u32>("fps"), Some(&12));
        let shown = render(&cmd(), &m, "test", &|k| {
            (k == "report").then(|| "a note".into())
        });
        assert_eq!(
            shown,
            "# test\nrecord-fps = 12\n# source = \"synthetic\"\nquiet = true\n# report (not set)  # a note\n"
        );
        // Read back: the same configuration, the same text.
        let again = args_from_toml(&cmd(), Path::new("c"), &shown).unwrap();
        let mut argv = vec![OsString::from("run")];
        argv.extend(again);
        let m2 = cmd().try_get_matches_from(&argv).unwrap();
        assert_eq!(
            render(&cmd(), &m2, "test", &|k| (k == "report")
                .then(|| "a note".into())),
            shown
        );
    }

    #[test]
    fn show_never_prints_a_secret() {
        let cmd = || {
            cmd().arg(
                Arg::new("token")
                    .long("control-token")
                    .value_parser(crate::cli::parse_secret),
            )
        };
        let file = args_from_toml(
            &cmd(),
            Path::new("c"),
            "control-token = \"hunter2-hunter2\"",
        )
        .unwrap();
        let mut argv = vec![OsString::from("run")];
        argv.extend(file);
        let m = cmd().try_get_matches_from(&argv).unwrap();
        let shown = render(&cmd(), &m, "test", &|_| None);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("# control-token (set; a secret, not shown)"),
            "{shown}"
        );
    }

    #[test]
    fn the_config_flag_is_found_before_parsing() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_flag(&a(&["-q", "--config", "x.toml"])),
            Some("x.toml".into())
        );
        assert_eq!(
            config_flag(&a(&["--config=y.toml", "-q"])),
            Some("y.toml".into())
        );
        assert_eq!(config_flag(&a(&["--", "--config", "z"])), None);
        assert_eq!(config_flag(&a(&["-q"])), None);
    }
}
