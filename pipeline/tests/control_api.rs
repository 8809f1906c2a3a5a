//! The control HTTP API end to end: a real `eyetrack` process on the synthetic source, real
//! HTTP over 127.0.0.1, real recordings checked with ffprobe and a strict CSV parser.

mod common;
#[path = "common/control.rs"]
mod control;

use std::io::{Read, Write};
use std::time::Duration;

use common::{eyetrack, tmp};
use control::{check_recording, wait_until, Server};

/// Metric values by name (labels included as written), from the OpenMetrics text; panics on
/// a line that is neither a comment nor `name[{labels}] value`.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    assert!(text.ends_with("# EOF\n"), "no # EOF terminator");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            let v = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            };
            let bare = name.split('{').next().unwrap();
            assert!(
                bare.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {l}"
            );
            (name.to_owned(), v)
        })
        .collect()
}

fn metric(all: &[(String, f64)], name: &str) -> f64 {
    all.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
        .1
}

fn metrics(s: &Server) -> Vec<(String, f64)> {
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    parse_metrics(&r.text())
}

fn is_json_error(r: &control::Reply, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
}

#[test]
fn api_drives_a_running_pipeline_and_records() {
    let root = tmp("control-api").join("recordings");
    let root_s = root.to_str().unwrap().to_owned();
    let s = control::start(
        eyetrack(),
        &[
            "run",
            "--source",
            "synthetic",
            "--resolution",
            "640x480",
            "--duration",
            "90s",
            "--record-root",
            &root_s,
            "--record-fps",
            "5",
            "-q",
        ],
    );

    // Status before anything happens.
    let st = s.status();
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["recording"]["configured"], true);
    assert!(st["recording"]["active"].is_null());
    assert_eq!(st["device"], "synthetic");
    assert_eq!(st["source"]["width"], 640);
    assert!(wait_until(Duration::from_secs(10), || s.status()["fps"]
        .as_f64()
        .unwrap()
        > 5.0));
    assert!(s.status()["cpu_percent"].as_f64().unwrap() > 0.0);

    // Metrics: parseable, the counters move, the live phase histograms fill.
    let m = metrics(&s);
    assert!(metric(&m, "eyetrack_frames_acquired_total") > 0.0);
    assert!(
        metric(
            &m,
            "eyetrack_phase_duration_seconds_count{phase=\"process\"}"
        ) > 0.0
    );
    assert_eq!(
        metric(
            &m,
            "eyetrack_phase_duration_seconds_count{phase=\"overlay\"}"
        ),
        metric(
            &m,
            "eyetrack_phase_duration_seconds_bucket{le=\"+Inf\",phase=\"overlay\"}"
        )
    );
    assert_eq!(metric(&m, "eyetrack_preview_viewers"), 0.0);
    assert_eq!(
        metric(&m, "eyetrack_preview_jpeg_frames"),
        0.0,
        "no viewer, no JPEG encoding"
    );

    // Two preview JPEGs taken apart differ (the synthetic scene moves).
    let a = s.get("/preview.jpg");
    let mut b = s.get("/preview.jpg");
    let t0 = std::time::Instant::now();
    while b.body == a.body && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
        b = s.get("/preview.jpg");
    }
    assert_eq!((a.status, b.status), (200, 200));
    for jpeg in [&a.body, &b.body] {
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG SOI");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "JPEG EOI");
    }
    assert_ne!(a.body, b.body);
    assert!(metric(&metrics(&s), "eyetrack_preview_jpeg_frames") >= 2.0);
    // The MJPEG stream's header and its first part.
    {
        let mut conn = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            conn,
            "GET /preview.mjpeg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while !got.windows(2).any(|w| w == [0xff, 0xd8]) {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "stream closed");
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("multipart/x-mixed-replace; boundary=frame"),
            "{text}"
        );
        assert!(
            text.contains("--frame\r\nContent-Type: image/jpeg"),
            "{text}"
        );
    }
    // The viewer left: the encoder goes idle.
    assert!(wait_until(Duration::from_secs(5), || metric(
        &metrics(&s),
        "eyetrack_preview_viewers"
    ) == 0.0));

    // Hidden preview: reduced processing (plan 1.6) shows in status and metrics.
    let r = s.post("/preview/visible", Some(r#"{"visible": false}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.status()["preview_visible"], false);
    assert!(wait_until(Duration::from_secs(5), || metric(
        &metrics(&s),
        "eyetrack_reduced_skipped_total"
    ) > 0.0));
    assert_eq!(metric(&metrics(&s), "eyetrack_preview_visible"), 0.0);
    s.post("/preview/visible", Some(r#"{"visible": true}"#));
    assert_eq!(s.status()["preview_visible"], true);

    // Pause and resume.
    assert_eq!(s.post("/pause", None).status, 200);
    assert_eq!(s.status()["state"], "paused");
    assert!(wait_until(Duration::from_secs(5), || s.status()
        ["paused_skipped"]
        .as_u64()
        .unwrap()
        > 0));
    assert_eq!(s.post("/resume", None).status, 200);
    assert_eq!(s.status()["state"], "running");

    // Events need a recording; stop without one is a conflict too.
    is_json_error(&s.post("/events", Some(r#"{"name": "early"}"#)), 409);
    is_json_error(&s.post("/recording/stop", None), 409);

    // Path traversal and other bad names: refused, nothing created outside the root.
    let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(200));
    for body in [
        r#"{"name": "../escape"}"#,
        r#"{"name": ".."}"#,
        r#"{"name": "a/b"}"#,
        r#"{"name": "/tmp/abs"}"#,
        r#"{"name": "..\\escape"}"#,
        r#"{"name": "nul\u0000byte"}"#,
        r#"{"name": ""}"#,
        long.as_str(),
    ] {
        is_json_error(&s.post("/recording/start", Some(body)), 400);
    }
    assert!(!root.parent().unwrap().join("escape").exists());
    assert!(
        std::fs::read_dir(&root).unwrap().next().is_none(),
        "root stays empty"
    );

    // A named recording, an event in it, a refused second start, stop.
    let r = s.post("/recording/start", Some(r#"{"name": "trial-1"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let dir = root.join("trial-1");
    assert_eq!(r.json()["folder"], dir.to_str().unwrap());
    assert_eq!(s.status()["recording"]["active"], dir.to_str().unwrap());
    is_json_error(&s.post("/recording/start", None), 409);
    // Wait for frames in the recording (a count, not a sleep) before the event.
    assert!(wait_until(Duration::from_secs(60), || s.status()
        ["recording"]["frames"]
        .as_u64()
        .unwrap_or(0)
        >= 5));
    let r = s.post("/events", Some(r#"{"name": "stimulus, \"A\""}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let event_device_time = r.json()["device_time_ns"].as_i64().unwrap();
    assert!(wait_until(Duration::from_secs(5), || s.status()
        ["recording"]["frames"]
        .as_u64()
        .unwrap()
        > 0));
    let r = s.post("/recording/stop", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["frames"].as_u64().unwrap() > 0);
    let (frames, events) = check_recording(&dir);
    assert!(frames >= 5, "{frames}");
    let user: Vec<_> = events.iter().filter(|e| e.0 == "user").collect();
    assert_eq!(user.len(), 1, "{events:?}");
    assert_eq!(user[0].1, "stimulus, \"A\"");
    assert_eq!(user[0].2, event_device_time.to_string());
    // The same name again is a conflict, never a reuse of the folder.
    is_json_error(
        &s.post("/recording/start", Some(r#"{"name": "trial-1"}"#)),
        409,
    );
    // Without a name: a rec-<time> folder under the root.
    assert_eq!(s.post("/recording/start", Some("")).status, 201);
    assert_eq!(s.post("/recording/stop", None).status, 200);

    // Malformed requests: 4xx with a JSON error, and the server lives on.
    is_json_error(&s.post("/preview/visible", Some("{not json")), 400);
    is_json_error(
        &s.post("/preview/visible", Some(r#"{"visible": "yes"}"#)),
        400,
    );
    is_json_error(&s.post("/preview/visible", None), 400);
    is_json_error(
        &s.post("/recording/start", Some(r#"{"name": "x", "extra": 1}"#)),
        400,
    );
    is_json_error(&s.post("/events", Some(r#"{"name": 5}"#)), 400);
    is_json_error(&s.get("/recording/start"), 405);
    is_json_error(&s.post("/status", None), 405);
    is_json_error(&s.get("/no/such/path"), 404);
    let huge = format!(r#"{{"name": "{}"}}"#, "y".repeat(100_000));
    is_json_error(&s.post("/events", Some(&huge)), 413);
    // Garbage that is not HTTP at all.
    {
        let mut conn = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(b"\x00\x01GARBAGE \xff\xfe\r\n\r\n").unwrap();
        let mut reply = Vec::new();
        let _ = conn.read_to_end(&mut reply);
        let text = String::from_utf8_lossy(&reply);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    }
    assert_eq!(s.status()["state"], "running");

    let st = s.stop();
    assert!(st.success(), "{st}");
    let recs: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
    assert_eq!(recs.len(), 2, "{recs:?}");
    std::fs::remove_dir_all(root.parent().unwrap()).ok();
}

#[test]
fn token_is_required_when_set() {
    let mut cmd = eyetrack();
    cmd.env("EYETRACK_CONTROL_TOKEN", "s3cret-token-0123456789");
    let s = control::start(
        cmd,
        &[
            "run",
            "--source",
            "synthetic",
            "--resolution",
            "320x240",
            "--duration",
            "60s",
            "-q",
        ],
    );
    is_json_error(&s.get("/status"), 401);
    is_json_error(
        &s.get_with("/status", &[("Authorization", "Bearer wrong")]),
        401,
    );
    is_json_error(&s.post("/pause", None), 401);
    let ok = [("Authorization", "Bearer s3cret-token-0123456789")];
    assert_eq!(s.get_with("/status", &ok).status, 200);
    assert_eq!(s.get_with("/metrics", &ok).status, 200);
    // The page and its <img> carry the token in the query (RFC 6750 section 2.3).
    let page = s.get("/?access_token=s3cret-token-0123456789");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<img id=\"preview\""));
    is_json_error(&s.get("/?access_token=nope"), 401);
    // Even with the token, a cross-site POST from a browser is refused.
    let mut csrf = ok.to_vec();
    csrf.push(("Origin", "http://evil.example"));
    is_json_error(&s.post_with("/pause", None, &csrf), 403);
    assert_eq!(s.post_with("/pause", None, &ok).status, 200);
    assert_eq!(s.get_with("/status", &ok).json()["state"], "paused");
    // Without a recording root the API says how to get one.
    is_json_error(&s.post_with("/recording/start", None, &ok), 409);
    assert!(s.stop().success());
}

#[test]
fn bad_control_addresses_fail_in_one_line_before_streaming() {
    // A taken port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = eyetrack()
        .args([
            "run",
            "--source",
            "synthetic",
            "--duration",
            "30s",
            "--control",
            &addr,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );

    // Not loopback: needs the explicit flag, then a token.
    for (extra, needle) in [
        (&[][..], "--control-allow-remote"),
        (&["--control-allow-remote"][..], "no token"),
        (
            &["--control-allow-remote", "--control-token", "short"][..],
            "at least 16",
        ),
    ] {
        let out = eyetrack()
            .args(["run", "--source", "synthetic", "--duration", "30s"])
            .args(["--control", "0.0.0.0:0"])
            .args(extra)
            .env_remove("EYETRACK_CONTROL_TOKEN")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    // --record-root is for the API: without --control it is a usage error.
    let out = eyetrack()
        .args(["run", "--duration", "1s", "--record-root", "/tmp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    drop(taken);
}
