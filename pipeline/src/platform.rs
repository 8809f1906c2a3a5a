//! Platform capabilities (plan 0.1): Raspberry Pi model, usable cores, CPU model, ffmpeg and
//! NVENC availability. Every failed probe degrades to "unknown".
//!
//! The fixed facts (architecture, kernel, CPU, Pi model, cores) come from `/proc` and a system
//! call and cost nothing. The ffmpeg and NVENC facts cost up to three ffmpeg runs, one a test
//! NVENC encode, so they are probed only when a choice needs them (`--encoder auto` or
//! `nvenc` on a recording run; `eyetrack platform` probes always) and the result is kept for
//! the rest of the boot in `$XDG_CACHE_HOME/eyetrack/platform-probe.json` (else
//! `~/.cache/eyetrack/`). The cache is used only while its key matches: this boot's id
//! (`/proc/sys/kernel/random/boot_id`, new at every boot), the ffmpeg binary (resolved path,
//! size, modification time, inode) and the NVIDIA kernel driver (`/proc/driver/nvidia/version`,
//! absent without one). Installing ffmpeg or a driver, loading or unloading the driver, or a
//! reboot all change the key and make the next run probe again. What the key cannot see (a GPU
//! whose encoder sessions were all busy during the probe) is why `--encoder nvenc` probes again
//! on a cached "no" instead of refusing, and `eyetrack platform` refreshes the cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlatformCaps {
    pub arch: String,
    pub os: String,
    pub kernel: Option<String>,
    /// The CPU core, e.g. "AMD EPYC 7B13" or "ARM Cortex-A76". arm64 kernels give no "model
    /// name", so there it is decoded from the implementer and part ids.
    pub cpu_model: Option<String>,
    /// SIMD extensions this process detected at run time: the ones the dispatching crates
    /// (yuv, the resizers) can choose from here.
    pub simd: Vec<&'static str>,
    pub is_raspberry_pi: bool,
    /// e.g. "Raspberry Pi 5 Model B Rev 1.0".
    pub pi_model: Option<String>,
    /// The board's revision code decoded (Pi 2 and later), e.g. d04170: BCM2712, 8 GB.
    pub pi_board: Option<PiBoard>,
    /// Cores this process may run on (sched_getaffinity), which is what matters under taskset
    /// or a container's cpuset.
    pub usable_cores: usize,
    /// First line of `ffmpeg -version`, if ffmpeg runs (null when not probed, see
    /// `encoder_probe`).
    pub ffmpeg: Option<String>,
    /// A test NVENC encode worked (false when not probed, see `encoder_probe`).
    pub has_nvenc: bool,
    /// Where `ffmpeg` and `has_nvenc` come from.
    pub encoder_probe: EncoderProbe,
}

/// A Raspberry Pi's new-style revision code (the `Revision` line of /proc/cpuinfo), decoded
/// after the table in the Raspberry Pi documentation ("Raspberry Pi revision codes").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PiBoard {
    /// As /proc/cpuinfo prints it, e.g. "d04170".
    pub revision_code: String,
    /// e.g. "5", "4B", "400", "CM4"; "type 0x1c" for a type this table does not know yet.
    pub board_type: String,
    /// e.g. "BCM2712".
    pub soc: String,
    pub memory_mb: u32,
    pub manufacturer: String,
    /// PCB revision, e.g. "1.0".
    pub pcb_revision: String,
}

/// How the ffmpeg/NVENC facts of [`PlatformCaps`] were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderProbe {
    /// Nothing in this run needed them (no `auto`/`nvenc` encoder choice): not probed.
    NotProbed,
    /// Probed by this process.
    Probed,
    /// From this boot's earlier probe (see the module doc).
    Cached,
}

static BASIC: OnceLock<PlatformCaps> = OnceLock::new();
static WITH_ENCODERS: Mutex<Option<PlatformCaps>> = Mutex::new(None);
static FRESH: OnceLock<PlatformCaps> = OnceLock::new();

/// The fixed facts only (no child process); `encoder_probe` is `not_probed`.
pub fn basic() -> &'static PlatformCaps {
    BASIC.get_or_init(read_basic)
}

/// [`basic`] plus the ffmpeg and NVENC facts, from this boot's cache when its key matches,
/// else probed (and cached). `recheck_no`: a cached "no NVENC" is probed again (the caller asked
/// for NVENC by name). Once per process either way.
pub fn with_encoders(recheck_no: bool) -> PlatformCaps {
    let mut slot = WITH_ENCODERS.lock().unwrap_or_else(|p| p.into_inner());
    let stale =
        |c: &PlatformCaps| recheck_no && !c.has_nvenc && c.encoder_probe == EncoderProbe::Cached;
    if let Some(c) = slot.as_ref().filter(|c| !stale(c)) {
        return c.clone();
    }
    let key = CacheKey::now();
    let cached = key
        .as_ref()
        .and_then(read_cache)
        .filter(|c| c.has_nvenc || !recheck_no);
    let caps = match cached {
        Some(c) => PlatformCaps {
            ffmpeg: c.ffmpeg,
            has_nvenc: c.has_nvenc,
            encoder_probe: EncoderProbe::Cached,
            ..basic().clone()
        },
        None => {
            let caps = probe_encoders();
            if let Some(k) = key {
                write_cache(&k, &caps);
            }
            caps
        }
    };
    *slot = Some(caps.clone());
    caps
}

/// Everything, probed now (`eyetrack platform`); the result replaces this boot's cache.
pub fn detect() -> &'static PlatformCaps {
    FRESH.get_or_init(|| {
        let caps = probe_encoders();
        if let Some(k) = CacheKey::now() {
            write_cache(&k, &caps);
        }
        caps
    })
}

/// What /proc says about the board and its CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Board {
    pub cpu_model: Option<String>,
    pub pi_model: Option<String>,
    pub pi_board: Option<PiBoard>,
}

/// Reads the board from the texts of `/proc/device-tree/model` and `/proc/cpuinfo` (either may
/// be missing: a container without the device tree, a kernel that hides cpuinfo). Never fails.
pub fn parse_board(device_tree_model: Option<&[u8]>, cpuinfo: Option<&str>) -> Board {
    let cpuinfo = cpuinfo.unwrap_or("");
    // The device tree is the firmware's own name for the board; cpuinfo's "Model" line is a
    // copy of it that Raspberry Pi kernels add, used when the device tree is not mounted.
    let pi_model = device_tree_model
        .map(parse_device_tree_model)
        .or_else(|| cpuinfo_field(cpuinfo, "Model").map(str::to_owned))
        .filter(|m| m.contains("Raspberry Pi"));
    let pi_board = pi_model
        .as_ref()
        .and(cpuinfo_field(cpuinfo, "Revision"))
        .and_then(decode_pi_revision);
    Board {
        cpu_model: parse_cpu_model(cpuinfo),
        pi_model,
        pi_board,
    }
}

fn read_basic() -> PlatformCaps {
    let board = parse_board(
        std::fs::read("/proc/device-tree/model").ok().as_deref(),
        std::fs::read_to_string("/proc/cpuinfo").ok().as_deref(),
    );
    PlatformCaps {
        arch: std::env::consts::ARCH.to_owned(),
        os: std::env::consts::OS.to_owned(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned()),
        cpu_model: board.cpu_model,
        simd: simd_features(),
        is_raspberry_pi: board.pi_model.is_some(),
        pi_model: board.pi_model,
        pi_board: board.pi_board,
        usable_cores: usable_cores(),
        ffmpeg: None,
        has_nvenc: false,
        encoder_probe: EncoderProbe::NotProbed,
    }
}

fn probe_encoders() -> PlatformCaps {
    let base = basic();
    let ffmpeg = run_with_timeout(
        "ffmpeg",
        &["-hide_banner", "-version"],
        Duration::from_secs(5),
    )
    .and_then(|out| out.lines().next().map(str::to_owned));
    // The Pi 5 has no hardware encoder; skip the probe there. Debian's ffmpeg lists
    // h264_nvenc whether or not a GPU and driver exist, so the probe encodes one frame.
    let has_nvenc = !base.is_raspberry_pi
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
        ffmpeg,
        has_nvenc,
        encoder_probe: EncoderProbe::Probed,
        ..base.clone()
    }
}

/// What the cached probe depends on; a cache written under another key is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CacheKey {
    boot_id: String,
    /// The ffmpeg a probe would run, resolved, with its size, mtime (s, ns) and inode.
    ffmpeg: Option<(PathBuf, u64, (i64, i64), u64)>,
    nvidia_driver: Option<String>,
}

impl CacheKey {
    /// `None` where there is no boot id (then nothing is cached).
    fn now() -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()?
            .trim()
            .to_owned();
        if boot_id.is_empty() {
            return None;
        }
        let ffmpeg = crate::child::find_program(Path::new("ffmpeg"))
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| {
                let m = std::fs::metadata(&p).ok()?;
                Some((p, m.len(), (m.mtime(), m.mtime_nsec()), m.ino()))
            });
        let nvidia_driver = std::fs::read_to_string("/proc/driver/nvidia/version")
            .ok()
            .map(|s| s.trim().to_owned());
        Some(CacheKey {
            boot_id,
            ffmpeg,
            nvidia_driver,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedProbe {
    key: CacheKey,
    ffmpeg: Option<String>,
    has_nvenc: bool,
}

/// `$XDG_CACHE_HOME/eyetrack/platform-probe.json`, else under `$HOME/.cache`.
pub fn cache_path() -> Option<PathBuf> {
    Some(crate::config::xdg_dir("XDG_CACHE_HOME", ".cache")?.join("platform-probe.json"))
}

fn read_cache(key: &CacheKey) -> Option<CachedProbe> {
    let bytes = std::fs::read(cache_path()?).ok()?;
    serde_json::from_slice::<CachedProbe>(&bytes)
        .ok()
        .filter(|c| c.key == *key)
}

/// Best effort: a cache that cannot be written only means the next run probes again. Written
/// to a temporary name and renamed, so a concurrent run reads the old file or the new one.
fn write_cache(key: &CacheKey, caps: &PlatformCaps) {
    let Some(path) = cache_path() else { return };
    let Some(dir) = path.parent() else { return };
    let entry = CachedProbe {
        key: key.clone(),
        ffmpeg: caps.ffmpeg.clone(),
        has_nvenc: caps.has_nvenc,
    };
    let Ok(json) = serde_json::to_vec_pretty(&entry) else {
        return;
    };
    let tmp = dir.join(format!(".platform-probe.{}.tmp", std::process::id()));
    let ok = std::fs::create_dir_all(dir).is_ok()
        && std::fs::write(&tmp, json).is_ok()
        && std::fs::rename(&tmp, &path).is_ok();
    if !ok {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The device-tree model is NUL-terminated.
fn parse_device_tree_model(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_matches(char::from(0))
        .trim()
        .to_owned()
}

/// The first non-empty `key : value` line of cpuinfo with this key (tabs or spaces around).
fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key && !v.trim().is_empty()).then(|| v.trim())
    })
}

/// x86 names its CPU in "model name". arm64 kernels give only ids; 32-bit ARM kernels give a
/// "model name" like "ARMv7 Processor rev 3 (v7l)" that names no core, so the ids win there.
/// Never the board's "Model" or the "Hardware" line (which says BCM2835 on every Pi).
fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    let implementer = cpuinfo_field(cpuinfo, "CPU implementer").and_then(parse_hex);
    let part = cpuinfo_field(cpuinfo, "CPU part").and_then(parse_hex);
    if let (Some(implementer), Some(part)) = (implementer, part) {
        if let Some(core) = arm_core_name(implementer, part) {
            return Some(core.to_owned());
        }
    }
    cpuinfo_field(cpuinfo, "model name")
        .map(str::to_owned)
        .or_else(|| {
            Some(format!(
                "CPU implementer {:#x} part {:#x}",
                implementer?, part?
            ))
        })
}

fn parse_hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim().strip_prefix("0x")?, 16).ok()
}

/// Arm Ltd cores on boards people run this on (Pi 3/Zero 2 W, Pi 4, Pi 5, arm64 servers).
fn arm_core_name(implementer: u32, part: u32) -> Option<&'static str> {
    if implementer != 0x41 {
        return None;
    }
    Some(match part {
        0xd03 => "ARM Cortex-A53",
        0xd04 => "ARM Cortex-A35",
        0xd05 => "ARM Cortex-A55",
        0xd07 => "ARM Cortex-A57",
        0xd08 => "ARM Cortex-A72",
        0xd09 => "ARM Cortex-A73",
        0xd0a => "ARM Cortex-A75",
        0xd0b => "ARM Cortex-A76",
        0xd0c => "ARM Neoverse-N1",
        0xd0d => "ARM Cortex-A77",
        0xd40 => "ARM Neoverse-V1",
        0xd41 => "ARM Cortex-A78",
        0xd49 => "ARM Neoverse-N2",
        0xd4f => "ARM Neoverse-V2",
        _ => return None,
    })
}

/// New-style revision codes (bit 23 set): NOQuuuWuFMMMCCCCPPPPTTTTTTTTRRRR. Old-style codes
/// (the first Pi 1 boards) carry no such fields and give None.
fn decode_pi_revision(code: &str) -> Option<PiBoard> {
    let value = u32::from_str_radix(code.trim(), 16).ok()?;
    if value & (1 << 23) == 0 {
        return None;
    }
    let board_type = (value >> 4) & 0xff;
    let board_type = match board_type {
        0x00 => "A".to_owned(),
        0x01 => "B".to_owned(),
        0x02 => "A+".to_owned(),
        0x03 => "B+".to_owned(),
        0x04 => "2B".to_owned(),
        0x06 => "CM1".to_owned(),
        0x08 => "3B".to_owned(),
        0x09 => "Zero".to_owned(),
        0x0a => "CM3".to_owned(),
        0x0c => "Zero W".to_owned(),
        0x0d => "3B+".to_owned(),
        0x0e => "3A+".to_owned(),
        0x10 => "CM3+".to_owned(),
        0x11 => "4B".to_owned(),
        0x12 => "Zero 2 W".to_owned(),
        0x13 => "400".to_owned(),
        0x14 => "CM4".to_owned(),
        0x15 => "CM4S".to_owned(),
        0x17 => "5".to_owned(),
        0x18 => "CM5".to_owned(),
        0x19 => "500".to_owned(),
        0x1a => "CM5 Lite".to_owned(),
        other => format!("type {other:#x}"),
    };
    let soc = match (value >> 12) & 0xf {
        0 => "BCM2835".to_owned(),
        1 => "BCM2836".to_owned(),
        2 => "BCM2837".to_owned(),
        3 => "BCM2711".to_owned(),
        4 => "BCM2712".to_owned(),
        other => format!("processor {other}"),
    };
    let manufacturer = match (value >> 16) & 0xf {
        0 => "Sony UK".to_owned(),
        1 => "Egoman".to_owned(),
        2 | 4 => "Embest".to_owned(),
        3 => "Sony Japan".to_owned(),
        5 => "Stadium".to_owned(),
        other => format!("manufacturer {other}"),
    };
    Some(PiBoard {
        revision_code: code.trim().to_owned(),
        board_type,
        soc,
        // 256 MB << n: 0 = 256 MB ... 5 = 8 GB, 6 = 16 GB.
        memory_mb: 256 << ((value >> 20) & 0x7),
        manufacturer,
        pcb_revision: format!("1.{}", value & 0xf),
    })
}

/// Run-time detection, the same the dispatching crates do.
fn simd_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("sse4.1", std::arch::is_x86_feature_detected!("sse4.1")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("avx512bw", std::arch::is_x86_feature_detected!("avx512bw")),
        ] {
            if on {
                found.push(name);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        for (name, on) in [
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            ("rdm", std::arch::is_aarch64_feature_detected!("rdm")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
            ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
            ("sve", std::arch::is_aarch64_feature_detected!("sve")),
        ] {
            if on {
                found.push(name);
            }
        }
    }
    found
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
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    let done = crate::child::output_within(&mut cmd, timeout).ok()?;
    done.status
        .success()
        .then(|| String::from_utf8_lossy(&done.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    // Real texts of real boards, cited in fixtures/README.md ("platform/").
    const PI5_CPUINFO: &str = include_str!("../../fixtures/platform/pi5-cpuinfo.txt");
    const PI5_MODEL: &[u8] = include_bytes!("../../fixtures/platform/pi5-device-tree-model");
    const PI4_CPUINFO: &str = include_str!("../../fixtures/platform/pi4-cpuinfo.txt");
    const PI4_MODEL: &[u8] = include_bytes!("../../fixtures/platform/pi4-device-tree-model");

    #[test]
    fn raspberry_pi_5() {
        let b = parse_board(Some(PI5_MODEL), Some(PI5_CPUINFO));
        assert_eq!(
            b.pi_model.as_deref(),
            Some("Raspberry Pi 5 Model B Rev 1.0")
        );
        assert_eq!(b.cpu_model.as_deref(), Some("ARM Cortex-A76"));
        assert_eq!(
            b.pi_board,
            Some(PiBoard {
                revision_code: "d04170".into(),
                board_type: "5".into(),
                soc: "BCM2712".into(),
                memory_mb: 8192,
                manufacturer: "Sony UK".into(),
                pcb_revision: "1.0".into(),
            })
        );
    }

    #[test]
    fn raspberry_pi_4() {
        // The two texts come from two different Pi 4 boards (Rev 1.1 and Rev 1.5).
        let b = parse_board(Some(PI4_MODEL), Some(PI4_CPUINFO));
        assert_eq!(
            b.pi_model.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.1")
        );
        assert_eq!(b.cpu_model.as_deref(), Some("ARM Cortex-A72"));
        let board = b.pi_board.expect("new-style revision code");
        assert_eq!(
            (
                board.board_type.as_str(),
                board.soc.as_str(),
                board.memory_mb
            ),
            ("4B", "BCM2711", 8192)
        );
        assert_eq!(board.pcb_revision, "1.5");
        // Without the device tree (a container), cpuinfo's Model line names the board.
        let b = parse_board(None, Some(PI4_CPUINFO));
        assert_eq!(
            b.pi_model.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.5")
        );
    }

    #[test]
    fn other_machines_are_no_pi() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        let b = parse_board(None, Some(x86));
        assert_eq!(b.cpu_model.as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!((b.pi_model, b.pi_board), (None, None));
        // An arm64 board that is not a Pi: its device-tree model is not taken for one.
        let b = parse_board(Some(b"Pine64 RockPro64 v2.1\0"), Some(PI4_CPUINFO));
        assert_eq!((b.pi_model, b.pi_board), (None, None));
        // A 32-bit kernel's "model name" names no core; the ids do.
        let armv7 = "model name\t: ARMv7 Processor rev 3 (v7l)\nCPU implementer\t: 0x41\n\
                     CPU part\t: 0xd08\n";
        assert_eq!(parse_cpu_model(armv7).as_deref(), Some("ARM Cortex-A72"));
        let unknown = "CPU implementer\t: 0x61\nCPU part\t: 0x022\n";
        assert_eq!(
            parse_cpu_model(unknown).as_deref(),
            Some("CPU implementer 0x61 part 0x22")
        );
        assert_eq!(parse_cpu_model("nothing here"), None);
    }

    #[test]
    fn damaged_input_degrades_to_unknown() {
        assert_eq!(parse_board(None, None), Board::default());
        assert_eq!(
            parse_device_tree_model(b"Raspberry Pi 5 Model B Rev 1.0\0"),
            "Raspberry Pi 5 Model B Rev 1.0"
        );
        // Invalid UTF-8, a cut-off file, binary garbage: never a panic.
        let b = parse_board(
            Some(b"Raspberry Pi \xff\xfe 5"),
            Some("Revision\t: zz\nModel :"),
        );
        assert!(b.pi_model.is_some() && b.pi_board.is_none());
        let half: String = PI5_CPUINFO.chars().take(PI5_CPUINFO.len() / 2).collect();
        assert_eq!(parse_cpu_model(&half).as_deref(), Some("ARM Cortex-A76"));
        // Old-style code of a Pi 1 (no bit 23): model yes, decoded fields no.
        assert_eq!(decode_pi_revision("000e"), None);
        assert_eq!(
            decode_pi_revision("c03111").map(|b| b.memory_mb),
            Some(4096)
        );
    }

    #[test]
    fn detection_never_fails() {
        let caps = basic();
        assert_eq!(caps.encoder_probe, EncoderProbe::NotProbed);
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
