//! Where a Neon Companion is: the host (name, IPv4 or IPv6) and HTTP port of `neon://HOST[:PORT]`
//! or of discovery, checked once, and every URL built from them with the `url` crate.
//!
//! Hosts and ports are never pasted into URL text by hand: `neon://[fe80::1]` must give
//! `http://[fe80::1]:8080/api/status`, not `http://fe80::1:8080/...`, and a port must be a real
//! one (1-65535) wherever it comes from, the command line or the device's own `/api/status`.

use std::fmt;

use url::{Host, Url};

/// The device's default HTTP port (protocol doc 1).
pub const DEFAULT_HTTP_PORT: u16 = 8080;

/// A device's HTTP API endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAddr {
    host: Host<String>,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} '{text}': {reason}")]
pub struct AddrError {
    what: &'static str,
    text: String,
    reason: String,
}

impl AddrError {
    fn new(what: &'static str, text: &str, reason: impl Into<String>) -> Self {
        AddrError {
            what,
            text: text.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A host as a URL carries it: `[...]` around IPv6, which may also come bare (`fe80::1`, as
/// mDNS or a status reply would give it).
pub fn parse_host(text: &str) -> Result<Host<String>, String> {
    if text.is_empty() {
        return Err("no host".into());
    }
    if let Ok(v6) = text.parse::<std::net::Ipv6Addr>() {
        return Ok(Host::Ipv6(v6));
    }
    Host::parse(text).map_err(|e| match e {
        url::ParseError::InvalidIpv6Address if text.contains('%') => {
            "an IPv6 zone index (%...) is not supported; use the device's IPv4 address or name"
                .to_string()
        }
        e => e.to_string(),
    })
}

/// A port a device may be reached on: 1-65535 (0 is "any port" to a listener, never a
/// destination). `value` is whatever number the source had, so an out-of-range one is named.
pub fn check_port(value: i128) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {value} is outside 1..=65535"))
}

impl DeviceAddr {
    /// `host` as [`parse_host`] takes it; `port` 1-65535.
    pub fn new(host: &str, port: u16) -> Result<Self, AddrError> {
        let host = parse_host(host).map_err(|r| AddrError::new("device host", host, r))?;
        let port = check_port(i128::from(port))
            .map_err(|r| AddrError::new("device port", &port.to_string(), r))?;
        Ok(DeviceAddr { host, port })
    }

    /// `neon://HOST[:PORT]` (a trailing `/` allowed; nothing else after the authority).
    pub fn parse_neon_url(text: &str) -> Result<Self, AddrError> {
        const EXPECTED: &str = "expected neon://HOST[:PORT]";
        let bad =
            |reason: String| AddrError::new("device URL", text, format!("{reason} ({EXPECTED})"));
        if !text.starts_with("neon://") {
            return Err(bad("not a neon:// URL".into()));
        }
        // `neon` is not a special scheme, so the url crate keeps an explicit port as given
        // (no default to hide) and checks its range; the host is re-parsed as an http host
        // below (IPv4 recognized, names lowercased).
        let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("a user name or password does not belong here".into()));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("nothing may follow HOST[:PORT]".into()));
        }
        let host_text = url.host_str().unwrap_or_default();
        let host =
            parse_host(host_text.trim_start_matches('[').trim_end_matches(']')).map_err(bad)?;
        let port = match url.port() {
            Some(p) => check_port(i128::from(p)).map_err(bad)?,
            None => DEFAULT_HTTP_PORT,
        };
        Ok(DeviceAddr { host, port })
    }

    pub fn host(&self) -> &Host<String> {
        &self.host
    }

    /// The host as it appears in a URL (`[fe80::1]` for IPv6).
    pub fn host_in_url(&self) -> String {
        self.host.to_string()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://HOST:PORT{path}`; `path` starts with `/`.
    pub fn http_url(&self, path: &str) -> Result<Url, AddrError> {
        let mut url = Url::parse(&format!("http://{self}/"))
            .map_err(|e| AddrError::new("device URL", &self.to_string(), e.to_string()))?;
        url.set_path(path);
        Ok(url)
    }
}

impl fmt::Display for DeviceAddr {
    /// `HOST:PORT`, with brackets around an IPv6 host.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A sensor's stream URL from `/api/status` parts (doc 2.1): `{protocol}://{ip}:{port}/?{params}`,
/// built by the url crate so an IPv6 `ip` is bracketed and a bad part is an error, not a URL
/// that fails later in the RTSP client.
pub fn sensor_url(protocol: &str, host: &str, port: i128, params: &str) -> Result<Url, String> {
    if protocol.is_empty()
        || !protocol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!("protocol '{protocol}' is not a URL scheme"));
    }
    let host = parse_host(host).map_err(|e| format!("ip '{host}': {e}"))?;
    let port = check_port(port)?;
    let mut url = Url::parse(&format!("{protocol}://{host}:{port}/")).map_err(|e| e.to_string())?;
    if !params.is_empty() {
        url.set_query(Some(params));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed_in_every_url() {
        let a = DeviceAddr::parse_neon_url("neon://[fe80::1]").unwrap();
        assert_eq!(a.port(), DEFAULT_HTTP_PORT);
        assert_eq!(
            a.http_url("/api/status").unwrap().as_str(),
            "http://[fe80::1]:8080/api/status"
        );
        assert_eq!(a.to_string(), "[fe80::1]:8080");
        let a = DeviceAddr::parse_neon_url("neon://[2001:db8::7]:9000/").unwrap();
        assert_eq!(
            a.http_url("/api/status").unwrap().as_str(),
            "http://[2001:db8::7]:9000/api/status"
        );
        // Bare IPv6, as mDNS or a status reply gives it.
        assert_eq!(
            DeviceAddr::new("fe80::2", 8080).unwrap().to_string(),
            "[fe80::2]:8080"
        );
        assert_eq!(
            sensor_url("rtsp", "fe80::3", 8086, "camera=world")
                .unwrap()
                .as_str(),
            "rtsp://[fe80::3]:8086/?camera=world"
        );
    }

    #[test]
    fn names_and_ipv4_and_their_ports() {
        let a = DeviceAddr::parse_neon_url("neon://192.168.1.20:8080").unwrap();
        assert_eq!(a.host(), &Host::<String>::Ipv4([192, 168, 1, 20].into()));
        // An explicit :80 is kept (an http URL would hide it as the default).
        assert_eq!(
            DeviceAddr::parse_neon_url("neon://phone:80")
                .unwrap()
                .port(),
            80
        );
        let a = DeviceAddr::parse_neon_url("neon://Neon-Phone.local").unwrap();
        assert_eq!(a.to_string(), "neon-phone.local:8080");
    }

    #[test]
    fn bad_addresses_are_one_line_errors() {
        for (text, needle) in [
            ("neon://", "no host"),
            ("neon://host:0", "outside 1..=65535"),
            ("neon://host:65536", "invalid port"),
            ("neon://host:http", "invalid port"),
            ("neon://[fe80::1", "IPv6"),
            ("neon://[fe80::1%25eth0]", "IPv6"),
            ("neon://u:p@host", "user name"),
            ("neon://host/api", "nothing may follow"),
            ("neon://host?x=1", "nothing may follow"),
            ("http://host", "not a neon:// URL"),
        ] {
            let e = DeviceAddr::parse_neon_url(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(check_port(0).is_err());
        assert!(check_port(70_000).unwrap_err().contains("70000"));
        assert!(check_port(-1).is_err());
        assert_eq!(check_port(8086), Ok(8086));
        assert!(sensor_url("rtsp", "10.0.0.1", 99_999, "").is_err());
        assert!(sensor_url("rt sp", "10.0.0.1", 8086, "").is_err());
        assert!(sensor_url("rtsp", "", 8086, "").is_err());
    }
}
