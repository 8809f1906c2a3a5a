//! Platform capabilities (plan 0.1): Raspberry Pi model, usable cores, CPU model, ffmpeg and
//! NVENC availability. Probed once per process; every failed probe degrades to "unknown".

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlatformCaps {
    pub arch: String,
    pub os: String,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    pub is_raspberry_pi: bool,
    /// e.g. "Raspberry Pi 5 Model B Rev 1.0".
    pub pi_model: Option<String>,
    /// Cores this process may run on (sched_getaffinity), which is what matters under taskset
    /// or a container's cpuset.
    pub usable_cores: usize,
    /// First line of `ffmpeg -version`, if ffmpeg runs.
    pub ffmpeg: Option<String>,
    pub has_nvenc: bool,
}

static CAPS: OnceLock<PlatformCaps> = OnceLock::new();

/// The capabilities of this machine, probed on first use.
pub fn detect() -> &'static PlatformCaps {
    CAPS.get_or_init(probe)
}

fn probe() -> PlatformCaps {
    let pi_model = std::fs::read("/proc/device-tree/model")
        .ok()
        .map(|b| parse_device_tree_model(&b))
        .filter(|m| m.contains("Raspberry Pi"));
    let ffmpeg = run_with_timeout(
        "ffmpeg",
        &["-hide_banner", "-version"],
        Duration::from_secs(5),
    )
    .and_then(|out| out.lines().next().map(str::to_owned));
    // The Pi 5 has no hardware encoder; skip the probe there. Debian's ffmpeg lists
    // h264_nvenc whether or not a GPU and driver exist, so the probe encodes one frame.
    let has_nvenc = pi_model.is_none()
        && ffmpeg.is_some()
        && run_with_timeout(
            "ffmpeg",
            &["-hide_banner", "-encoders"],
            Duration::from_secs(5),
        )
        .is_some_and(|out| out.contains("h264_nvenc"))
        && run_with_timeout(
            "ffmpeg",
            &[
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "color=size=256x256",
                "-frames:v",
                "1",
                "-c:v",
                "h264_nvenc",
                "-f",
                "null",
                "-",
            ],
            Duration::from_secs(10),
        )
        .is_some();
    PlatformCaps {
        arch: std::env::consts::ARCH.to_owned(),
        os: std::env::consts::OS.to_owned(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned()),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| parse_cpu_model(&s)),
        is_raspberry_pi: pi_model.is_some(),
        pi_model,
        usable_cores: usable_cores(),
        ffmpeg,
        has_nvenc,
    }
}

/// The device-tree model is NUL-terminated.
fn parse_device_tree_model(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_matches(char::from(0))
        .trim()
        .to_owned()
}

/// x86 says "model name"; arm64 kernels often only give "Model" (Pi) or "CPU part".
fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware", "CPU part"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_owned())
            })
        })
}

fn usable_cores() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .ok()
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// Runs a probe command, returning its stdout if it exits successfully within `timeout`.
pub fn run_with_timeout(program: &str, args: &[&str], timeout: Duration) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = reader.join().ok()?;
                return status.success().then_some(out);
            }
            Ok(None) if t0.elapsed() < timeout => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pi_model() {
        assert_eq!(
            parse_device_tree_model(b"Raspberry Pi 5 Model B Rev 1.0\0"),
            "Raspberry Pi 5 Model B Rev 1.0"
        );
    }

    #[test]
    fn parses_cpu_models() {
        assert_eq!(
            parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n").as_deref(),
            Some("AMD EPYC 7B13")
        );
        assert_eq!(
            parse_cpu_model("CPU part\t: 0xd0b\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
                .as_deref(),
            Some("Raspberry Pi 5 Model B Rev 1.0")
        );
        assert_eq!(parse_cpu_model("nothing here"), None);
    }

    #[test]
    fn detection_never_fails() {
        let caps = detect();
        assert!(caps.usable_cores >= 1);
        assert!(!caps.arch.is_empty());
        assert_eq!(
            run_with_timeout("definitely-not-a-program-xyz", &[], Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn probe_times_out() {
        let t0 = Instant::now();
        assert_eq!(
            run_with_timeout("sleep", &["5"], Duration::from_millis(200)),
            None
        );
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
}
