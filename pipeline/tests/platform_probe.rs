//! The platform's ffmpeg/NVENC probe runs only when an `auto`/`nvenc` encoder choice needs it,
//! once per boot (cached), while `eyetrack platform` always probes. The real ffmpeg runs behind
//! a logging wrapper on PATH, so the test sees every ffmpeg a run starts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eyetrack, tmp};

struct Spy {
    dir: PathBuf,
    log: PathBuf,
    cache: PathBuf,
}

impl Spy {
    fn new(name: &str) -> Spy {
        let dir = tmp(name);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let real = pipeline::child::find_program(Path::new("ffmpeg"))
            .expect("ffmpeg on PATH (ci/setup installs it)");
        let log = dir.join("ffmpeg-calls.log");
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        );
        let wrapper = bin.join("ffmpeg");
        std::fs::write(&wrapper, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Spy {
            cache: dir.join("cache"),
            dir,
            log,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = eyetrack();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.dir.join("bin")];
        paths.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(paths).unwrap())
            .env("XDG_CACHE_HOME", &self.cache);
        cmd
    }

    /// The probe calls (`-version`, `-encoders`, the NVENC test encode) logged so far; the
    /// recording encoder's own ffmpeg (`-f rawvideo ... -i pipe:0`) is not one.
    fn probes(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("-version") || l.contains("-encoders") || l.contains("h264_nvenc")
            })
            .count()
    }

    fn run(&self, extra: &[&str]) -> serde_json::Value {
        let report = self.dir.join("report.json");
        let out = self
            .command()
            .args(["run", "--source", "synthetic", "--resolution", "320x240"])
            .args(["--duration", "1s", "-q", "--report"])
            .arg(&report)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}: {out:?}");
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
    }
}

#[test]
fn the_platform_is_probed_only_when_a_choice_needs_it_and_once_per_boot() {
    let spy = Spy::new("platform-probe");
    let rec = spy.dir.join("rec");
    let rec = rec.to_str().unwrap();

    // Streaming only, and recording with an encoder chosen by name: no probe at all.
    let r = spy.run(&[]);
    assert_eq!(spy.probes(), 0, "a streaming run probed ffmpeg");
    assert_eq!(r["platform"]["encoder_probe"], "not_probed");
    assert!(r["platform"]["usable_cores"].as_u64() >= Some(1));
    spy.run(&["--record", rec, "--encoder", "ffmpeg"]);
    spy.run(&["--record", rec, "--encoder", "libav"]);
    assert_eq!(
        spy.probes(),
        0,
        "a recording with --encoder ffmpeg/libav probed"
    );

    // `auto` needs to know: probed once, then this boot's cache answers.
    let r = spy.run(&["--record", rec, "--encoder", "auto"]);
    let after_first = spy.probes();
    assert!(after_first >= 1, "--encoder auto did not probe");
    assert_eq!(r["platform"]["encoder_probe"], "probed");
    assert!(r["platform"]["ffmpeg"]
        .as_str()
        .is_some_and(|v| v.starts_with("ffmpeg version")));
    let cache: serde_json::Value = serde_json::from_slice(
        &std::fs::read(spy.cache.join("eyetrack").join("platform-probe.json")).unwrap(),
    )
    .unwrap();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(cache["key"]["boot_id"], boot_id.trim());
    let r = spy.run(&["--record", rec, "--encoder", "auto"]);
    assert_eq!(
        spy.probes(),
        after_first,
        "the second auto run probed again"
    );
    assert_eq!(r["platform"]["encoder_probe"], "cached");
    assert_eq!(r["platform"]["has_nvenc"], cache["has_nvenc"]);

    // `eyetrack platform` always probes, whatever the cache says.
    let out = spy.command().arg("platform").output().unwrap();
    assert!(out.status.success());
    let caps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(caps["encoder_probe"], "probed");
    assert!(
        spy.probes() > after_first,
        "eyetrack platform used the cache"
    );

    // An explicit nvenc on a cached "no" probes again before refusing.
    if cache["has_nvenc"] == false {
        let before = spy.probes();
        let out = spy
            .command()
            .args([
                "run",
                "--duration",
                "1s",
                "--record",
                rec,
                "--encoder",
                "nvenc",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no working h264_nvenc"), "{err}");
        assert!(spy.probes() > before, "nvenc trusted a cached no");
    }
    std::fs::remove_dir_all(&spy.dir).ok();
}
