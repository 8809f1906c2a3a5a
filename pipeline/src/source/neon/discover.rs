//! `--source discover`: finds Neon Companion phones on the local network over mDNS / DNS-SD
//! (protocol doc 1) with the `mdns-sd` crate: `_http._tcp.local.` instances named
//! `PI monitor:<phone name>:<hardware id>`, IPv4 only, SRV port = HTTP port.

use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent};

/// The DNS-SD service type the Companion app registers.
pub const SERVICE_TYPE: &str = "_http._tcp.local.";
/// Text before the first `:` of a Neon's instance name.
pub const INSTANCE_PREFIX: &str = "PI monitor";

/// One phone found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The phone's name (second field of the instance name).
    pub name: String,
    /// The whole instance name, e.g. `PI monitor:Neon Companion:0a1b2c`.
    pub instance: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("mDNS: {0}")]
    Mdns(String),
    #[error(
        "no Neon Companion answered on mDNS within {0:.1} s (is the app open and on this \
         network? multicast is often blocked: use --source neon://IP instead)"
    )]
    NoneFound(f64),
    #[error("{count} Neon Companions found, choose one with --device NAME: {names}")]
    Several { count: usize, names: String },
    #[error("no Neon Companion named {wanted:?} was found; found: {names}")]
    NotFound { wanted: String, names: String },
}

impl Found {
    /// Where its HTTP API is (an SRV record with port 0 is refused here, in one line).
    pub fn addr(&self) -> Result<super::addr::DeviceAddr, DiscoverError> {
        super::addr::DeviceAddr::new(&self.host, self.port).map_err(|e| {
            DiscoverError::Mdns(format!(
                "{:?} advertises an unusable address: {e}",
                self.name
            ))
        })
    }
}

/// Splits an instance name into the phone name, if it is a Neon's.
pub fn phone_name(instance: &str) -> Option<&str> {
    let mut parts = instance.splitn(3, ':');
    if parts.next()? != INSTANCE_PREFIX {
        return None;
    }
    parts.next()
}

/// Browses for `timeout` and returns every Neon that resolved to an IPv4 address.
pub fn browse(timeout: Duration) -> Result<Vec<Found>, DiscoverError> {
    let daemon = ServiceDaemon::new().map_err(|e| DiscoverError::Mdns(e.to_string()))?;
    let rx = daemon
        .browse(SERVICE_TYPE)
        .map_err(|e| DiscoverError::Mdns(e.to_string()))?;
    // No deadline past what an Instant holds: such a timeout waits as long as it can.
    let deadline = Instant::now().checked_add(timeout);
    let mut found: Vec<Found> = Vec::new();
    let left = || match deadline {
        Some(d) => d.checked_duration_since(Instant::now()),
        None => Some(crate::cli::MAX_DURATION),
    };
    while let Some(left) = left() {
        let Ok(event) = rx.recv_timeout(left) else {
            break;
        };
        let ServiceEvent::ServiceResolved(info) = event else {
            continue;
        };
        let full = info.get_fullname();
        let instance = full
            .strip_suffix(&format!(".{SERVICE_TYPE}"))
            .unwrap_or(full);
        let Some(name) = phone_name(instance) else {
            continue;
        };
        let Some(ip) = info.get_addresses_v4().into_iter().min() else {
            continue;
        };
        if found.iter().any(|f| f.instance == instance) {
            continue;
        }
        found.push(Found {
            name: name.to_owned(),
            instance: instance.to_owned(),
            host: ip.to_string(),
            port: info.get_port(),
        });
    }
    let _ = daemon.shutdown();
    Ok(found)
}

/// Picks the phone to use: the only one, or the one whose name or instance matches `wanted`.
pub fn choose(
    found: Vec<Found>,
    wanted: Option<&str>,
    waited: Duration,
) -> Result<Found, DiscoverError> {
    let names = || {
        found
            .iter()
            .map(|f| format!("{:?} at {}:{}", f.name, f.host, f.port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if found.is_empty() {
        return Err(DiscoverError::NoneFound(waited.as_secs_f64()));
    }
    if let Some(w) = wanted {
        return found
            .iter()
            .find(|f| f.name == w || f.instance == w)
            .cloned()
            .ok_or_else(|| DiscoverError::NotFound {
                wanted: w.to_owned(),
                names: names(),
            });
    }
    if found.len() > 1 {
        return Err(DiscoverError::Several {
            count: found.len(),
            names: names(),
        });
    }
    found
        .into_iter()
        .next()
        .ok_or(DiscoverError::NoneFound(waited.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> Found {
        Found {
            name: name.into(),
            instance: format!("PI monitor:{name}:1234"),
            host: "10.0.0.2".into(),
            port: 8080,
        }
    }

    #[test]
    fn names_and_choices() {
        assert_eq!(phone_name("PI monitor:My Phone:0a1b"), Some("My Phone"));
        assert_eq!(phone_name("Printer:x"), None);
        assert_eq!(phone_name("PI monitor"), None);
        let w = Duration::from_secs(1);
        assert!(matches!(
            choose(vec![], None, w),
            Err(DiscoverError::NoneFound(_))
        ));
        assert_eq!(choose(vec![f("a")], None, w).unwrap().name, "a");
        assert!(matches!(
            choose(vec![f("a"), f("b")], None, w),
            Err(DiscoverError::Several { count: 2, .. })
        ));
        assert_eq!(
            choose(vec![f("a"), f("b")], Some("b"), w).unwrap().name,
            "b"
        );
        assert!(matches!(
            choose(vec![f("a")], Some("c"), w),
            Err(DiscoverError::NotFound { .. })
        ));
    }
}
