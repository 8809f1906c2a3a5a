//! Every parser of outside input (flag values, config files, the control API's `/config`, the
//! device's `/api/status`) on arbitrary text: it never panics, and whatever it accepts is in
//! range. Plus the CLI: out-of-range durations, sizes and ports cost one line and exit 2.

mod common;

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use pipeline::cli::{
    parse_duration, parse_fps, parse_record_size, parse_rgb, parse_size, MAX_DURATION,
};
use pipeline::live_config::{LiveConfig, LiveValues};
use pipeline::overlay::{MarkerShape, Rgb};
use pipeline::source::neon::addr::{check_port, sensor_url, DeviceAddr};
use pipeline::source::neon::status;
use pipeline::source::spec::{parse_source, SourceSpec};
use pipeline::streams::StreamSwitches;

/// Text that looks like what the parsers expect often enough to reach their range checks.
fn near_miss() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9eE.+-]{0,30}[a-z]{0,6}",
        "[0-9]{0,25}[xX][0-9]{0,25}",
        "neon://[a-z0-9.:\\[\\]%@/?#-]{0,40}",
        any::<f64>().prop_map(|f| f.to_string()),
        any::<u64>().prop_map(|n| format!("{n}years")),
    ]
}

fn live() -> LiveConfig {
    let c = LiveConfig::default();
    c.set(LiveValues {
        preview_size: (640, 360),
        marker: MarkerShape::Circle,
        marker_radius: 10,
        marker_thickness: 2,
        worn_color: Rgb { r: 1, g: 2, b: 3 },
        not_worn_color: Rgb { r: 4, g: 5, b: 6 },
        hud: true,
        record_fps: 5,
        record_size: None,
    });
    c
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<bool>().prop_map(Value::from),
        near_miss().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([1, 2])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn flag_parsers_never_panic_and_stay_in_range(s in near_miss()) {
        if let Ok(d) = parse_duration(&s) {
            prop_assert!(d > Duration::ZERO && d <= MAX_DURATION, "{s}: {d:?}");
        }
        if let Ok((w, h)) = parse_size(&s) {
            prop_assert!((2..=16384).contains(&w) && (2..=16384).contains(&h));
        }
        if let Ok((w, h)) = parse_record_size(&s) {
            prop_assert!(w % 2 == 0 && h % 2 == 0 && w >= 16 && h >= 16);
        }
        if let Ok(f) = parse_fps(&s) {
            prop_assert!(f > 0.0 && f <= 240.0);
        }
        let _ = parse_rgb(&s);
        if let Ok(SourceSpec::Neon(a)) = parse_source(&s) {
            prop_assert!(a.port() >= 1);
            // Whatever host was accepted makes a URL that parses back to the same port.
            let url = a.http_url("/api/status").unwrap();
            prop_assert_eq!(url.port_or_known_default(), Some(a.port()));
        }
        if let Err(e) = parse_duration(&s) {
            prop_assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn durations_are_checked_by_value(secs in any::<f64>()) {
        // Around one nanosecond, rounding decides; the rule is tested away from it.
        prop_assume!(!(1e-10..1e-8).contains(&secs));
        let text = format!("{secs}");
        let ok = parse_duration(&text).is_ok();
        let in_range = secs.is_finite() && secs >= 1e-9 && secs <= MAX_DURATION.as_secs_f64();
        prop_assert_eq!(ok, in_range, "{}", text);
    }

    #[test]
    fn device_addresses_never_panic(host in near_miss(), port in any::<u16>(), wide in any::<i64>()) {
        if let Ok(a) = DeviceAddr::new(&host, port) {
            prop_assert!(a.port() >= 1);
            prop_assert!(a.http_url("/api/status").is_ok());
        }
        match check_port(i128::from(wide)) {
            Ok(p) => prop_assert_eq!(i64::from(p), wide),
            Err(_) => prop_assert!(!(1..=65535).contains(&wide)),
        }
        let _ = sensor_url("rtsp", &host, i128::from(wide), &host);
    }

    #[test]
    fn status_replies_never_panic(body in any::<String>(), ip in near_miss(), port in json_value(),
                                  battery in json_value()) {
        let _ = status::parse(&body, "10.0.0.1");
        let _ = status::parse_health(&body);
        let reply = serde_json::json!({"result": [
            {"model": "Phone", "data": {"battery_level": battery, "memory": port}},
            {"model": "Sensor", "data": {"sensor": "world", "conn_type": "DIRECT",
             "connected": true, "ip": ip, "port": port, "params": "camera=world"}},
        ]})
        .to_string();
        if let Ok(s) = status::parse(&reply, "10.0.0.1") {
            for sensor in &s.sensors {
                let url = url::Url::parse(&sensor.url).unwrap();
                prop_assert!(url.port().is_some_and(|p| p >= 1), "{}", sensor.url);
            }
        }
        if let Ok(h) = status::parse_health(&reply) {
            prop_assert!(h.battery_level.is_none_or(|b| (0..=100).contains(&b)));
        }
    }

    #[test]
    fn config_api_patches_never_panic(key in prop_oneof![
            Just("preview-size".to_string()), Just("marker-radius".to_string()),
            Just("marker-thickness".to_string()), Just("record-fps".to_string()),
            Just("record-size".to_string()), Just("worn-color".to_string()),
            Just("hud".to_string()), any::<String>()],
        value in json_value()) {
        let c = live();
        let sw = StreamSwitches::default();
        let patch = serde_json::json!({ key.clone(): value });
        if let Ok(v) = c.apply(&patch, &sw) {
            prop_assert!((1..=200).contains(&v.marker_radius));
            prop_assert!((1..=50).contains(&v.marker_thickness));
            prop_assert!((1..=30).contains(&v.record_fps));
            let (w, h) = v.preview_size;
            prop_assert!((2..=16384).contains(&w) && (2..=16384).contains(&h));
        }
    }

    #[test]
    fn config_files_never_panic(text in any::<String>(), value in near_miss()) {
        let cmd = clap::Command::new("run")
            .arg(clap::Arg::new("duration").long("duration").value_parser(parse_duration))
            .arg(clap::Arg::new("size").long("record-size").value_parser(parse_record_size));
        let _ = pipeline::config::args_from_toml(&cmd, Path::new("c.toml"), &text);
        let quoted = toml::Value::String(value).to_string();
        for key in ["duration", "record-size"] {
            let _ = pipeline::config::args_from_toml(
                &cmd, Path::new("c.toml"), &format!("{key} = {quoted}\n"));
        }
    }
}

/// The binary: values that used to panic or overflow are one line and exit 2, from the
/// command line and from a config file.
#[test]
fn out_of_range_values_are_one_line_errors() {
    let dir = common::tmp("bad-input");
    let config = dir.join("c.toml");
    for (args, needle) in [
        (&["--duration", "1e20"][..], "366 days"),
        (&["--duration", "inf"][..], "finite"),
        (&["--duration", "500000years"][..], "366 days"),
        (&["--status-log", "1e300"][..], "366 days"),
        (&["--discover-timeout", "NaN"][..], "finite"),
        (
            &["--record", "/tmp", "--record-cycle", "1e19"][..],
            "366 days",
        ),
        (&["--source", "neon://host:0"][..], "outside 1..=65535"),
        (&["--source", "neon://host:65536"][..], "invalid port"),
        (&["--source", "neon://[fe80::1"][..], "IPv6"),
        (&["--resolution", "99999x2"][..], "outside"),
        (
            &["--record", "/tmp", "--record-size", "641x480"][..],
            "even",
        ),
        (&["--fps", "1e400"][..], "outside"),
    ] {
        let out = common::eyetrack().arg("run").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::write(&config, "duration = 1e20\n").unwrap();
    let out = common::eyetrack()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("'duration'") && err.contains("366 days"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
