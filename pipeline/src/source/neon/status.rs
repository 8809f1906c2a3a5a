//! The device's HTTP API as far as streaming needs it: `GET /api/status` and the DIRECT sensor
//! URLs in it (protocol doc 2, 2.1).
//!
//! The request is made with `ureq` (blocking, no TLS features): one request per (re)connect
//! needs no async HTTP stack, and the network thread runs it under `spawn_blocking`. reqwest's
//! blocking client would start a tokio runtime of its own for the same single GET.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::addr::{sensor_url, DeviceAddr};
use super::assemble::Sensor;
use crate::run_control::Control;
use crate::streams::{StatusFeed, StatusSample};
use crate::time::{MonoNanos, UnixNanos};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("GET {url}: {detail}")]
    Http { url: String, detail: String },
    #[error("GET {url}: the reply is not the API's JSON ({detail})")]
    Json { url: String, detail: String },
}

/// One streamable sensor from `/api/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorUrl {
    pub sensor: Sensor,
    /// `{protocol}://{ip}:{port}/?{params}` (doc 2.1).
    pub url: String,
}

/// What the client takes from the status: the phone's name and the DIRECT sensor URLs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceStatus {
    pub device_name: Option<String>,
    pub sensors: Vec<SensorUrl>,
}

impl DeviceStatus {
    /// The URL to stream `sensor` from. Audio has no entry of its own: it is the world URL's
    /// `m=audio` (the official client copies the world entry, doc 2.1).
    pub fn url(&self, sensor: Sensor) -> Option<&str> {
        let sensor = match sensor {
            Sensor::Audio => Sensor::World,
            s => s,
        };
        self.sensors
            .iter()
            .find(|s| s.sensor == sensor)
            .map(|s| s.url.as_str())
    }
}

/// `GET http://host:port/api/status` with an overall `timeout`.
pub fn fetch(device: &DeviceAddr, timeout: Duration) -> Result<DeviceStatus, StatusError> {
    let (url, body) = get(device, timeout)?;
    parse(&body, &device.host_in_url()).map_err(|detail| StatusError::Json { url, detail })
}

pub use crate::streams::DeviceHealth;

/// `GET /api/status` reduced to [`DeviceHealth`].
pub fn fetch_health(device: &DeviceAddr, timeout: Duration) -> Result<DeviceHealth, StatusError> {
    let (url, body) = get(device, timeout)?;
    parse_health(&body).map_err(|detail| StatusError::Json { url, detail })
}

/// `--status-log`'s source side: a thread that polls `/api/status` every interval while a
/// recording runs and delivers each answer as a [`StatusSample`]. It ends when the run stops,
/// when the recorder has dropped its end of the feed, or when this handle is dropped (which
/// waits for it: at most one request's timeout, 3 s).
pub struct StatusPoller {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl StatusPoller {
    /// Starts polling `device`; the recorder reads the returned feed.
    pub fn start(
        device: DeviceAddr,
        interval: Duration,
        control: Arc<Control>,
    ) -> std::io::Result<(StatusPoller, StatusFeed)> {
        // A few polls of slack: the recorder writes a row in microseconds.
        let (tx, rx) = crossbeam_channel::bounded(8);
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("status-poll".into())
            .spawn(move || poll_loop(&device, interval, &tx, &control, &s))?;
        let feed = StatusFeed {
            interval,
            samples: rx,
        };
        Ok((
            StatusPoller {
                thread: Some(thread),
                stop,
            },
            feed,
        ))
    }
}

impl Drop for StatusPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll_loop(
    device: &DeviceAddr,
    interval: Duration,
    tx: &crossbeam_channel::Sender<StatusSample>,
    control: &Control,
    stop: &AtomicBool,
) {
    let tick = Duration::from_millis(50);
    let mut next = Instant::now();
    while !control.stopping() && !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(tick);
            continue;
        }
        // An interval past what an Instant holds polls once.
        next = next
            .checked_add(interval)
            .unwrap_or(next + Duration::from_secs(86_400));
        if !control.recording.load(Ordering::Relaxed) {
            continue;
        }
        let timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(3));
        let health = fetch_health(device, timeout).map_err(|e| e.to_string());
        let sample = StatusSample {
            unix_ns: UnixNanos::now().0,
            mono_ns: MonoNanos::now().0,
            health,
        };
        match tx.try_send(sample) {
            Ok(()) | Err(crossbeam_channel::TrySendError::Full(_)) => {}
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Reads the `Phone` component and the connected DIRECT sensors of a status reply.
pub fn parse_health(body: &str) -> Result<DeviceHealth, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let items = v
        .get("result")
        .and_then(Value::as_array)
        .ok_or("no `result` list")?;
    let mut h = DeviceHealth::default();
    for item in items {
        let (Some(model), Some(data)) =
            (item.get("model").and_then(Value::as_str), item.get("data"))
        else {
            continue;
        };
        let s = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
        match model {
            "Phone" => {
                // A percentage: anything else (negative, NaN-ish, 1e300) is not a reading.
                h.battery_level = data
                    .get("battery_level")
                    .and_then(|b| b.as_i64().or_else(|| b.as_f64().map(|f| f.round() as i64)))
                    .filter(|b| (0..=100).contains(b));
                h.battery_state = s("battery_state");
                h.memory_bytes = data.get("memory").and_then(Value::as_u64);
                h.memory_state = s("memory_state");
            }
            "Sensor" => {
                let connected = data.get("connected").and_then(Value::as_bool) == Some(true);
                if let (true, Some("DIRECT"), Some(name)) = (
                    connected,
                    data.get("conn_type").and_then(Value::as_str),
                    s("sensor"),
                ) {
                    if !h.connected_sensors.contains(&name) {
                        h.connected_sensors.push(name);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(h)
}

/// The body of `GET /api/status` (errors carry the API's `message`).
fn get(device: &DeviceAddr, timeout: Duration) -> Result<(String, String), StatusError> {
    let url = device
        .http_url("/api/status")
        .map_err(|e| StatusError::Http {
            url: device.to_string(),
            detail: e.to_string(),
        })?
        .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let http = |detail: String| StatusError::Http {
        url: url.clone(),
        detail,
    };
    let mut reply = agent.get(&url).call().map_err(|e| http(e.to_string()))?;
    let status = reply.status();
    let body = reply
        .body_mut()
        .read_to_string()
        .map_err(|e| http(e.to_string()))?;
    if !status.is_success() {
        // Error bodies are JSON with a message too (doc 2).
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        return Err(http(format!("HTTP {status} {message}")));
    }
    Ok((url, body))
}

/// Reads the status reply. Sensors that are not DIRECT or not connected are skipped (only
/// DIRECT is plain RTSP, doc 2.1); unknown models and sensors are ignored. A sensor without
/// an `ip` gets `fallback_host` (the one the API answered on).
pub fn parse(body: &str, fallback_host: &str) -> Result<DeviceStatus, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let items = v
        .get("result")
        .and_then(Value::as_array)
        .ok_or("no `result` list")?;
    let mut out = DeviceStatus::default();
    for item in items {
        let (Some(model), Some(data)) =
            (item.get("model").and_then(Value::as_str), item.get("data"))
        else {
            continue;
        };
        let s = |k: &str| data.get(k).and_then(Value::as_str);
        match model {
            "Phone" => out.device_name = s("device_name").map(str::to_owned),
            "Sensor" => {
                let Some(sensor) = s("sensor")
                    .and_then(Sensor::from_name)
                    .filter(|s| *s != Sensor::Audio)
                else {
                    continue;
                };
                let connected = data.get("connected").and_then(Value::as_bool) == Some(true);
                if s("conn_type") != Some("DIRECT") || !connected {
                    continue;
                }
                let Some(port) = data.get("port") else {
                    continue;
                };
                let ip = s("ip").filter(|ip| !ip.is_empty()).unwrap_or(fallback_host);
                let protocol = s("protocol").unwrap_or("rtsp");
                let params = s("params").unwrap_or_default();
                // A connected sensor the device advertises wrongly is an error naming it, not
                // a URL that fails later in the RTSP client (or one silently skipped).
                let port = port
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| port.as_u64().map(i128::from))
                    .ok_or_else(|| {
                        format!("sensor {}: port {port} is not an integer", sensor.name())
                    })?;
                let url = sensor_url(protocol, ip, port, params)
                    .map_err(|e| format!("sensor {}: {e}", sensor.name()))?
                    .to_string();
                if out.url(sensor).is_none() {
                    out.sensors.push(SensorUrl { sensor, url });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_connected_direct_sensors_only() {
        let body = r#"{"message":"Success","result":[
 {"model":"Phone","data":{"device_name":"Neon Companion","ip":"192.168.1.20"}},
 {"model":"Hardware","data":{"version":"2.0"}},
 {"model":"Sensor","data":{"sensor":"world","conn_type":"WEBSOCKET","connected":true,"ip":"192.168.1.20","port":8686,"protocol":"rtsp","params":"camera=world"}},
 {"model":"Sensor","data":{"sensor":"world","conn_type":"DIRECT","connected":true,"ip":"192.168.1.20","port":8086,"protocol":"rtsp","params":"camera=world&audioenable=on"}},
 {"model":"Sensor","data":{"sensor":"gaze","conn_type":"DIRECT","connected":false,"port":8086,"params":"camera=gaze"}},
 {"model":"Sensor","data":{"sensor":"imu","conn_type":"DIRECT","connected":true,"port":8086,"params":"camera=imu"}},
 {"model":"Sensor","data":{"sensor":"eyes","conn_type":"DIRECT","connected":true,"port":8086}},
 {"model":"Mystery","data":{}}
]}"#;
        let s = parse(body, "10.0.0.5").unwrap();
        assert_eq!(s.device_name.as_deref(), Some("Neon Companion"));
        assert_eq!(
            s.url(Sensor::World),
            Some("rtsp://192.168.1.20:8086/?camera=world&audioenable=on")
        );
        assert_eq!(s.url(Sensor::Gaze), None, "not connected");
        assert_eq!(s.url(Sensor::Imu), Some("rtsp://10.0.0.5:8086/?camera=imu"));
        assert_eq!(s.url(Sensor::Eyes), Some("rtsp://10.0.0.5:8086/"));
        assert_eq!(
            s.url(Sensor::Audio),
            s.url(Sensor::World),
            "audio is the world URL"
        );
        assert_eq!(s.sensors.len(), 3);
        assert!(parse("not json", "h").is_err());
        let h = parse_health(body).unwrap();
        assert_eq!(h.battery_level, None, "this Phone lists no battery");
        assert_eq!(h.connected_sensors, ["world", "imu", "eyes"]);
        let h = parse_health(
            r#"{"result":[{"model":"Phone","data":{"battery_level":87,
            "battery_state":"OK","memory":42000000000,"memory_state":"LOW"}}]}"#,
        )
        .unwrap();
        assert_eq!(h.battery_level, Some(87));
        assert_eq!(h.memory_bytes, Some(42_000_000_000));
        assert_eq!(h.memory_state.as_deref(), Some("LOW"));
        assert!(parse(r#"{"message":"x"}"#, "h").is_err());
    }

    /// The device's advertised port and ip go through the same checks as the command line's:
    /// an impossible one is an error naming the sensor; an IPv6 one is bracketed.
    #[test]
    fn advertised_ports_are_range_checked_and_ipv6_bracketed() {
        let body = |port: &str, ip: &str| {
            format!(
                r#"{{"result":[{{"model":"Sensor","data":{{"sensor":"world","conn_type":"DIRECT",
                "connected":true,"ip":"{ip}","port":{port},"protocol":"rtsp","params":"camera=world"}}}}]}}"#
            )
        };
        for port in [
            "0",
            "65536",
            "-1",
            "99999999999999999999",
            "8086.5",
            "\"8086\"",
        ] {
            let e = parse(&body(port, "10.0.0.1"), "h").unwrap_err();
            assert!(
                e.contains("sensor world") && e.contains("port"),
                "{port}: {e}"
            );
        }
        let s = parse(&body("8086", "fe80::1"), "h").unwrap();
        assert_eq!(
            s.url(Sensor::World),
            Some("rtsp://[fe80::1]:8086/?camera=world")
        );
        // No ip: the host the API answered on, bracketed when IPv6.
        let no_ip = body("8086", "");
        assert_eq!(
            parse(&no_ip, "[2001:db8::1]").unwrap().url(Sensor::World),
            Some("rtsp://[2001:db8::1]:8086/?camera=world")
        );
        let h = parse_health(r#"{"result":[{"model":"Phone","data":{"battery_level":1e300}}]}"#)
            .unwrap();
        assert_eq!(h.battery_level, None);
    }
}
