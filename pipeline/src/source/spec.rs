//! `--source`: which source a run uses, parsed from its flag text (`synthetic`,
//! `fixture:PATH`, `neon://HOST[:PORT]`, `discover`) with one clear error for anything else.

use std::path::PathBuf;

use super::neon::DeviceAddr;

/// Where frames come from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSpec {
    Synthetic,
    /// A recorded fixture (.etfx) replayed in-process.
    Fixture(PathBuf),
    /// A Neon Companion's HTTP API.
    Neon(DeviceAddr),
    /// Find the Neon over mDNS.
    Discover,
}

/// The `--source` value parser. Never panics, whatever the text.
pub fn parse_source(s: &str) -> Result<SourceSpec, String> {
    if s == "synthetic" {
        return Ok(SourceSpec::Synthetic);
    }
    if s == "discover" {
        return Ok(SourceSpec::Discover);
    }
    if let Some(path) = s.strip_prefix("fixture:") {
        if path.is_empty() {
            return Err(
                "fixture: needs a path, e.g. fixture:fixtures/neon/synthetic-12s.etfx".into(),
            );
        }
        return Ok(SourceSpec::Fixture(PathBuf::from(path)));
    }
    if s.starts_with("neon://") {
        return DeviceAddr::parse_neon_url(s)
            .map(SourceSpec::Neon)
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "unknown source '{s}' (expected synthetic, fixture:PATH, neon://HOST[:PORT] or discover)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(parse_source("synthetic"), Ok(SourceSpec::Synthetic));
        assert_eq!(
            parse_source("fixture:a.etfx"),
            Ok(SourceSpec::Fixture("a.etfx".into()))
        );
        let SourceSpec::Neon(a) = parse_source("neon://[fe80::1]:8081").unwrap() else {
            panic!("not neon");
        };
        assert_eq!(a.to_string(), "[fe80::1]:8081");
        assert!(parse_source("neon://host:99999").is_err());
        assert!(parse_source("fixture:").is_err());
        assert!(parse_source("rtsp://x")
            .unwrap_err()
            .contains("unknown source"));
    }
}
