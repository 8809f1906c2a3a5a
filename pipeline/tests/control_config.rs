//! `GET`/`PUT /config` of the control API end to end: a real `eyetrack` in the logger layout,
//! a preview that changes size at once, a recording rate and size that apply from the next
//! trial, stream enables (only for streams set up at start), and refusals that are 400s naming
//! the field.

mod common;
#[path = "common/control.rs"]
mod control;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eyetrack, tmp};
use control::{wait_until, Reply, Server};

fn put(s: &Server, body: &str) -> Reply {
    let mut resp = s
        .agent
        .put(s.url("/config"))
        .header("Content-Type", "application/json")
        .send(body)
        .expect("HTTP exchange");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_vec().expect("body");
    Reply { status, body }
}

/// Width and height from a baseline or progressive JPEG's SOF marker.
fn jpeg_size(b: &[u8]) -> (usize, usize) {
    let mut i = 2;
    while i + 9 < b.len() {
        assert_eq!(b[i], 0xFF, "marker at {i}");
        let m = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if (0xC0..=0xC2).contains(&m) {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as usize;
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as usize;
            return (w, h);
        }
        i += 2 + len;
    }
    panic!("no SOF marker");
}

fn only_session(root: &Path) -> PathBuf {
    let all: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].join("EyeTracker-Neon")
}

#[test]
fn config_changes_while_running_and_refusals_name_the_field() {
    let root = tmp("control-config").join("sessions");
    std::fs::create_dir_all(&root).unwrap();
    let s = control::start(
        eyetrack(),
        &[
            "run",
            "--source",
            "synthetic",
            "--resolution",
            "640x480",
            "--duration",
            "60s",
            "--layout",
            "logger",
            "--record-root",
            root.to_str().unwrap(),
            "-q",
        ],
    );
    let c = s.get("/config");
    assert_eq!(c.status, 200, "{}", c.text());
    let c = c.json();
    // The logger layout's defaults.
    assert_eq!(c["preview-size"], "640x480");
    assert_eq!(c["marker-thickness"], 1);
    assert_eq!(c["record-fps"], 10);
    assert_eq!(c["record-size"], "1280x960");
    assert!(wait_until(Duration::from_secs(10), || s
        .get("/preview.jpg")
        .status
        == 200));
    assert_eq!(jpeg_size(&s.get("/preview.jpg").body), (640, 480));

    let r = put(
        &s,
        r#"{"preview-size": "320x200", "hud": false, "marker": "cross"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["preview-size"], "320x200");
    // 4:3 into 320x200: 266x200 (even).
    assert!(
        wait_until(Duration::from_secs(10), || {
            let r = s.get("/preview.jpg");
            r.status == 200 && jpeg_size(&r.body) == (266, 200)
        }),
        "the preview follows"
    );

    for (body, field) in [
        (r#"{"record-fps": 99}"#, "record-fps"),
        (r#"{"record-size": "641x480"}"#, "record-size"),
        (r#"{"worn-color": "yellow"}"#, "worn-color"),
        (r#"{"marker-radius": -1}"#, "marker-radius"),
        (r#"{"bogus": 1}"#, "bogus"),
        (r#"[1, 2]"#, "body"),
    ] {
        let r = put(&s, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_owned();
        assert!(e.starts_with(&format!("{field}: ")), "{body}: {e}");
    }
    assert_eq!(
        s.get("/config").json()["record-fps"],
        10,
        "a refusal changes nothing"
    );

    // Stream enables: on/off for what the run set up (gaze, IMU, events by default); a stream
    // that was not set up needs a restart with its flag.
    let c = s.get("/config").json();
    for (k, on) in [
        ("gaze", true),
        ("imu", true),
        ("events", true),
        ("eyes", false),
        ("audio", false),
    ] {
        assert_eq!(c[k], on, "{k}: {c}");
    }
    for (body, field, says) in [
        (r#"{"eyes": true}"#, "eyes", "--eyes on"),
        (r#"{"audio": true}"#, "audio", "--audio on"),
        (r#"{"gaze": "off"}"#, "gaze", "true or false"),
        (r#"{"imu": false, "record-fps": 99}"#, "record-fps", ""),
    ] {
        let r = put(&s, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_owned();
        assert!(e.starts_with(&format!("{field}: ")), "{body}: {e}");
        assert!(e.contains(says), "{body}: {e}");
    }
    assert_eq!(s.get("/config").json()["imu"], true, "all or none");
    let r = put(&s, r#"{"imu": false, "eyes": false}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["imu"].clone(), r.json()["gaze"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(s.get("/config").json()["imu"], false);
    let r = put(&s, r#"{"imu": true}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/config").json()["imu"], true);

    // Recording rate and size apply to the next trial.
    let r = put(&s, r#"{"record-fps": 4, "record-size": "320x240"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..2 {
        let r = s.post("/recording/start", None);
        assert_eq!(r.status, 201, "{}", r.text());
        std::thread::sleep(Duration::from_millis(1500));
        let r = s.post("/recording/stop", None);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The logger layout names its own files: no folder names.
    let r = s.post("/recording/start", Some(r#"{"name": "mine"}"#));
    assert_eq!(r.status / 100, 4, "{}", r.text());
    assert!(s.stop().success());

    let dir = only_session(&root);
    for trial in 1..=2 {
        let manifest = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .ends_with(&format!("_MANIFEST_trial{trial:03}.json"))
            })
            .unwrap();
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
        assert_eq!(m["config"]["fps"], 4);
        assert_eq!(m["config"]["size"], serde_json::json!([320, 240]));
        assert_eq!(m["end"], "stopped");
    }
}
