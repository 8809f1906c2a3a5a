//! The browser preview end to end: a real `eyetrack` serving `/`, Debian's headless chromium
//! driven by playwright-core (`tests/browser/preview.mjs`, installed by ci/setup), frames
//! that move, the status on the page, and a recording made with the page's buttons that
//! ffprobe and a strict CSV parser accept.

mod common;
#[path = "common/control.rs"]
mod control;

use std::path::Path;
use std::process::Command;

use common::{eyetrack, tmp};

#[test]
fn preview_page_shows_moving_frames_and_its_buttons_record() {
    let driver_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        driver_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run ci/setup (npm ci in {})",
        driver_dir.display()
    );
    let work = tmp("browser");
    let root = work.join("recordings");
    let s = control::start(
        eyetrack(),
        &[
            "run",
            "--source",
            "synthetic",
            "--resolution",
            "640x480",
            "--duration",
            "120s",
            "--record-root",
            root.to_str().unwrap(),
            "-q",
        ],
    );
    let out = Command::new("node")
        .arg(driver_dir.join("preview.mjs"))
        .arg(&s.base)
        .arg(&work)
        .current_dir(&driver_dir)
        .output()
        .expect("node runs (ci/setup installs nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let r: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(r["error"].is_null(), "browser: {r}");
    assert_eq!(r["state"], "running", "{r}");
    assert!(
        r["device"]
            .as_str()
            .unwrap()
            .starts_with("synthetic 640x480"),
        "{r}"
    );
    assert_eq!(r["frames_differ"], true, "{r}");
    // The preview fits 640x360: 480x360 for a 4:3 scene.
    assert_eq!(r["preview_width"], 480, "{r}");
    assert_eq!(r["message"], "", "the page showed an error: {r}");
    let folder = Path::new(r["folder"].as_str().unwrap());
    assert_eq!(folder.parent(), Some(root.as_path()), "{r}");
    let (frames, events) = control::check_recording(folder);
    assert!(frames > 0);
    let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"recording_start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"recording_stop"), "{kinds:?}");
    assert!(s.stop().success());
    std::fs::remove_dir_all(&work).ok();
}
