//! Command-line plumbing shared by the `eyetrack` and `bench-scenarios` binaries: flag value
//! parsers, secret flags and their redaction, and the one-line error convention (a bad flag
//! costs one line and exit code 2).

use std::any::TypeId;
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

/// Longest duration any flag, config key or API field takes (366 days): beyond any run, and
/// far inside what the arithmetic downstream holds (`Instant + d`, nanoseconds in an `i64`
/// reach 292 years), so no later step can overflow on a value this parser let through.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A positive duration up to [`MAX_DURATION`]: plain seconds (`10`, `2.5`) or humantime
/// (`10s`, `2m`, `500ms`). Never panics, whatever the text.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let too_long = || format!("duration '{s}' is longer than the limit of 366 days");
    let d = match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_nan() || secs.is_infinite() && secs > 0.0 => {
            return Err(format!("duration '{s}' is not a finite number of seconds"))
        }
        Ok(secs) if secs <= 0.0 => return Err(format!("duration '{s}' must be positive")),
        Ok(secs) if secs > MAX_DURATION.as_secs_f64() => return Err(too_long()),
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| too_long())?,
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("bad duration '{s}': {e}"))?,
    };
    if d.is_zero() {
        return Err(format!("duration '{s}' must be positive"));
    }
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// Frames per second of a synthetic source: (0, 240].
pub fn parse_fps(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("fps '{s}' is not a number"))?;
    if !(v > 0.0 && v <= 240.0) {
        return Err(format!("fps '{s}' is outside (0, 240]"));
    }
    Ok(v)
}

/// A frame size `WIDTHxHEIGHT` (`x` or `X`), each side 2..=16384. One parser for every flag,
/// config key and API field that takes a size.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}' is not WIDTHxHEIGHT"))?;
    let (w, h): (usize, usize) = match (w.trim().parse(), h.trim().parse()) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(format!("'{s}' is not WIDTHxHEIGHT")),
    };
    if !(2..=16384).contains(&w) || !(2..=16384).contains(&h) {
        return Err(format!("'{s}' is outside 2x2 .. 16384x16384"));
    }
    Ok((w, h))
}

/// A recorded frame size: [`parse_size`], and even and at least 16x16 (what the H.264
/// encoders take). One rule for `--record-size`, its config key and `PUT /config`.
pub fn parse_record_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = parse_size(s)?;
    if w % 2 != 0 || h % 2 != 0 || w < 16 || h < 16 {
        return Err(format!("{w}x{h} must be even and at least 16x16"));
    }
    Ok((w, h))
}

/// A colour `RRGGBB` in hex, with or without a leading `#`.
pub fn parse_rgb(s: &str) -> Result<crate::overlay::Rgb, String> {
    let hex = s.trim_start_matches('#');
    if hex.len() != 6 {
        return Err(format!("colour '{s}' is not RRGGBB"));
    }
    let v = u32::from_str_radix(hex, 16).map_err(|_| format!("colour '{s}' is not RRGGBB"))?;
    Ok(crate::overlay::Rgb {
        r: (v >> 16) as u8,
        g: (v >> 8) as u8,
        b: v as u8,
    })
}

/// What a secret's value is replaced with wherever a command line or configuration is stored
/// or printed.
pub const REDACTED: &str = "<redacted>";

/// A flag value that must never be stored or printed (a bearer token, a password). A flag is
/// secret by having this type (`value_parser = cli::parse_secret`): [`redact_args`],
/// [`redacted_command_line`] and `config show` find such flags in the clap definition itself,
/// so a new secret flag is redacted everywhere without a list to keep up to date. `Debug`
/// shows [`REDACTED`], so a `{:?}` of the parsed flags in a log cannot leak it either.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (comparing a presented token).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

/// The value parser that makes a flag secret (see [`Secret`]).
pub fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret(s.to_owned()))
}

/// Whether `arg` takes a [`Secret`].
pub fn is_secret(arg: &clap::Arg) -> bool {
    arg.get_value_parser().type_id() == TypeId::of::<Secret>()
}

/// How each flag of a command (and of all its subcommands) is spelled and whether it takes a
/// value, for walking an argv without parsing it.
#[derive(Default)]
struct FlagTable {
    /// (long name, takes a value, secret)
    longs: Vec<(String, bool, bool)>,
    /// (short name, takes a value, secret)
    shorts: Vec<(char, bool, bool)>,
}

impl FlagTable {
    fn of(cmd: &clap::Command) -> Self {
        let mut t = FlagTable::default();
        let mut cmd = cmd.clone();
        cmd.build();
        t.add(&cmd);
        t
    }

    fn add(&mut self, cmd: &clap::Command) {
        for a in cmd.get_arguments() {
            let takes = a.get_action().takes_values();
            let secret = takes && is_secret(a);
            // Hidden aliases too: clap accepts them, so they can carry a secret.
            let longs = a
                .get_long()
                .into_iter()
                .chain(a.get_all_aliases().unwrap_or_default());
            for l in longs {
                self.longs.push((l.to_owned(), takes, secret));
            }
            let shorts = a.get_short().into_iter();
            for c in shorts.chain(a.get_all_short_aliases().unwrap_or_default()) {
                self.shorts.push((c, takes, secret));
            }
        }
        for sub in cmd.get_subcommands() {
            self.add(sub);
        }
    }

    fn long(&self, name: &str) -> Option<(bool, bool)> {
        self.longs
            .iter()
            .find(|(l, ..)| l == name)
            .map(|&(_, t, s)| (t, s))
    }

    fn short(&self, c: char) -> Option<(bool, bool)> {
        self.shorts
            .iter()
            .find(|(s, ..)| *s == c)
            .map(|&(_, t, s)| (t, s))
    }
}

/// `argv` with the value of every secret flag of `cmd` (any subcommand) replaced by
/// [`REDACTED`]: `--flag VALUE`, `--flag=VALUE`, `-f VALUE`, `-fVALUE` and `-xfVALUE`. Walks
/// the arguments the way clap reads them (a value-taking flag swallows the next argument, `--`
/// ends the flags) without parsing them, so it works on a command line clap would refuse too.
pub fn redact_args<S: AsRef<str>>(cmd: &clap::Command, argv: &[S]) -> Vec<String> {
    let table = FlagTable::of(cmd);
    let mut out = Vec::with_capacity(argv.len());
    // The next argument is a flag's value; true when that flag is secret.
    let mut value_of: Option<bool> = None;
    let mut flags_over = false;
    for a in argv {
        let a = a.as_ref();
        if let Some(secret) = value_of.take() {
            out.push(if secret {
                REDACTED.into()
            } else {
                a.to_owned()
            });
            continue;
        }
        if flags_over {
            out.push(a.to_owned());
            continue;
        }
        if a == "--" {
            flags_over = true;
            out.push(a.to_owned());
        } else if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, _)) if table.long(name).is_some_and(|(_, s)| s) => {
                    out.push(format!("--{name}={REDACTED}"));
                }
                Some(_) => out.push(a.to_owned()),
                None => {
                    if let Some((true, secret)) = table.long(long) {
                        value_of = Some(secret);
                    }
                    out.push(a.to_owned());
                }
            }
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            out.push(redact_short_cluster(&table, cluster, &mut value_of));
        } else {
            out.push(a.to_owned());
        }
    }
    out
}

/// `-abc`: switches until the first value-taking flag, whose value is the rest of the
/// argument (or the next argument when nothing is left).
fn redact_short_cluster(table: &FlagTable, cluster: &str, value_of: &mut Option<bool>) -> String {
    let mut out = String::from("-");
    for (i, c) in cluster.char_indices() {
        out.push(c);
        let Some((true, secret)) = table.short(c) else {
            continue;
        };
        let rest = &cluster[i + c.len_utf8()..];
        let rest = rest.strip_prefix('=').map_or(rest, |r| r);
        if rest.is_empty() {
            *value_of = Some(secret);
        } else if secret {
            out.push_str(REDACTED);
        } else {
            out.push_str(&cluster[i + c.len_utf8()..]);
        }
        return out;
    }
    out
}

/// This process's command line as it may be stored (session.json, report.json): secret flag
/// values of `cmd` redacted, anything that is not UTF-8 converted lossily.
pub fn redacted_command_line(cmd: &clap::Command) -> Vec<String> {
    let argv: Vec<String> = std::env::args_os()
        .map(|a: OsString| a.to_string_lossy().into_owned())
        .collect();
    redact_args(cmd, &argv)
}

/// Folds a multi-line message (clap's usage hints, an error chain) into one line.
pub fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the command line; help and version print and exit 0, anything else wrong is one
/// line on stderr, prefixed with the program name, and exit code 2.
pub fn parse_or_exit<P: clap::Parser>(program: &str) -> Result<P, ExitCode> {
    P::try_parse().map_err(|e| {
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
        eprintln!("{program}: {}", one_line(&e.render().to_string()));
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("soon").is_err());
        // Values that used to panic in Duration::from_secs_f64 or overflow later.
        for big in [
            "1e20",
            "inf",
            "1e300",
            "400days",
            "10000000000000000000s",
            "NaN",
        ] {
            let e = parse_duration(big).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(parse_duration("1e20").unwrap_err().contains("366 days"));
        assert!(parse_duration("1e-12").unwrap_err().contains("positive"));
        assert_eq!(parse_duration("366days"), Ok(MAX_DURATION));
    }

    #[test]
    fn sizes_and_colours() {
        assert_eq!(parse_size("1600x1200"), Ok((1600, 1200)));
        assert_eq!(parse_size(" 640 X 480 "), Ok((640, 480)));
        assert!(parse_size("640").is_err());
        assert!(parse_size("1x480").is_err());
        assert!(parse_size("20000x10").is_err());
        let c = parse_rgb("#ff8000").unwrap();
        assert_eq!((c.r, c.g, c.b), (255, 128, 0));
        assert!(parse_rgb("fff").is_err());
        assert!(parse_rgb("gg0000").is_err());
    }

    fn secret_cmd() -> clap::Command {
        use clap::{Arg, ArgAction, Command};
        Command::new("tool")
            .arg(Arg::new("quiet").short('q').action(ArgAction::SetTrue))
            .subcommand(
                Command::new("run")
                    .arg(Arg::new("out").short('o').long("out"))
                    .arg(
                        Arg::new("token")
                            .short('t')
                            .long("control-token")
                            .alias("key")
                            .value_parser(parse_secret),
                    )
                    .arg(Arg::new("v").short('v').action(ArgAction::SetTrue)),
            )
    }

    #[test]
    fn secret_flags_are_found_by_their_type_and_redacted_in_every_spelling() {
        let cmd = secret_cmd();
        let r = |argv: &[&str]| redact_args(&cmd, argv);
        assert_eq!(
            r(&["tool", "run", "--control-token", "s3", "--out", "s3x"]),
            ["tool", "run", "--control-token", REDACTED, "--out", "s3x"]
        );
        assert_eq!(
            r(&["tool", "run", "--control-token=s3", "--key", "s3"]),
            [
                "tool",
                "run",
                "--control-token=<redacted>",
                "--key",
                REDACTED
            ]
        );
        assert_eq!(
            r(&["tool", "run", "-t", "s3"]),
            ["tool", "run", "-t", REDACTED]
        );
        assert_eq!(
            r(&["tool", "run", "-vts3"]),
            ["tool", "run", "-vt<redacted>"]
        );
        // -o takes the rest of its argument: the `t` inside it is not the secret flag.
        assert_eq!(r(&["tool", "run", "-ots3"]), ["tool", "run", "-ots3"]);
        // A value that looks like the flag is only a value; after `--` nothing is a flag.
        assert_eq!(
            r(&[
                "tool",
                "run",
                "--out",
                "--control-token",
                "x",
                "--",
                "--control-token",
                "y"
            ]),
            [
                "tool",
                "run",
                "--out",
                "--control-token",
                "x",
                "--",
                "--control-token",
                "y"
            ]
        );
        // A trailing secret flag without a value has nothing to hide.
        assert_eq!(
            r(&["tool", "run", "--control-token"]),
            ["tool", "run", "--control-token"]
        );
        assert_eq!(format!("{:?}", Secret::new("s3")), "Secret(<redacted>)");
    }

    #[test]
    fn folds_clap_style_messages() {
        let msg = "error: invalid value 'x' for '--resize <RESIZE>'\n  [possible values: area, bilinear]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(msg),
            "error: invalid value 'x' for '--resize <RESIZE>' [possible values: area, bilinear]"
        );
    }
}
