//! Command-line plumbing shared by the `eyetrack` and `bench-scenarios` binaries: flag value
//! parsers and the one-line error convention (a bad flag costs one line and exit code 2).

use std::process::ExitCode;
use std::time::Duration;

/// A positive duration: plain seconds (`10`, `2.5`) or humantime (`10s`, `2m`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("duration '{s}' must be positive")),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("bad duration '{s}': {e}"))?,
    };
    if d.is_zero() {
        return Err(format!("duration '{s}' must be positive"));
    }
    Ok(d)
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

    #[test]
    fn folds_clap_style_messages() {
        let msg = "error: invalid value 'x' for '--resize <RESIZE>'\n  [possible values: area, bilinear]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(msg),
            "error: invalid value 'x' for '--resize <RESIZE>' [possible values: area, bilinear]"
        );
    }
}
