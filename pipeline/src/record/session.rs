//! One recording's folder and its `session.json` manifest: what was recorded, how, on what
//! machine, and how it ended. Written at start (so a killed run still says what it was) and
//! replaced atomically at stop.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::csv_files::CsvSummary;
use super::encoder::SegmentSummary;
use crate::time::UnixNanos;

pub const MANIFEST: &str = "session.json";
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub id: String,
    pub started_unix_ns: i64,
    pub started_utc: String,
    pub stopped_unix_ns: Option<i64>,
    pub stopped_utc: Option<String>,
    /// "recording" while it runs (what a killed process leaves), then "stopped" or
    /// "error: ...".
    pub end: String,
    /// Recording settings and everything the caller knows about the run (toggles, source,
    /// platform capabilities, versions).
    pub config: serde_json::Value,
    pub counts: Counts,
    pub segments: Vec<SegmentSummary>,
    pub csv: CsvSummary,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    /// Output frames written, repeats included.
    pub frames: u64,
    pub repeats: u64,
    /// Camera frames offered to the recorder while it recorded.
    pub camera_frames: u64,
    /// Frames, samples and access units lost because a recorder queue was full.
    pub queue_full: u64,
    /// Frames lost when an encoder died, before its replacement took over.
    pub lost_to_encoder: u64,
    pub encoder_restarts: u64,
    pub fsyncs: u64,
    /// Passthrough (`--encoder passthrough`): access units of the device's H.264 offered while
    /// recording, written, dropped before the first IDR (and after losses, until the next IDR),
    /// and lost because the passthrough queue was full; segment files opened.
    pub passthrough_received: u64,
    pub passthrough_written: u64,
    pub passthrough_dropped_before_idr: u64,
    pub passthrough_queue_full: u64,
    pub passthrough_segments: u64,
}

/// `2026-11-24T21:24:17.123Z`.
pub fn utc(t: UnixNanos) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t.0.max(0) as u64);
    humantime::format_rfc3339_millis(st).to_string()
}

/// A new, unique folder under `root`: `rec-20261124T212417Z` plus a counter when several start
/// in the same second (start/stop cycles).
pub fn create_folder(root: &Path, t: UnixNanos) -> std::io::Result<PathBuf> {
    let stamp: String = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t.0.max(0) as u64),
    )
    .to_string()
    .chars()
    .filter(|c| !matches!(c, '-' | ':'))
    .collect();
    for n in 0..10_000u32 {
        let name = if n == 0 {
            format!("rec-{stamp}")
        } else {
            format!("rec-{stamp}-{n:03}")
        };
        let dir = root.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free recording folder name"))
}

/// Longest recording folder name a caller may choose (bytes).
pub const MAX_NAME_LEN: usize = 128;

/// Accepts a caller-chosen folder name only if it is one plain path component: not empty, not
/// `.` or `..`, no separator, no NUL or other control character, not hidden, at most
/// [`MAX_NAME_LEN`] bytes. That is what keeps a name from the network inside the recording
/// root; the reason is returned for the caller's error message.
pub fn check_folder_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 128 bytes");
    }
    if name.starts_with('.') {
        return Err("starts with '.' (hidden, '.' or '..')");
    }
    if name.contains(['/', '\\']) {
        return Err("contains a path separator");
    }
    if name.chars().any(char::is_control) {
        return Err("contains a control character (NUL, newline, ...)");
    }
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(_)), None) => Ok(()),
        _ => Err("is not a single folder name"),
    }
}

/// Creates `root/name`, which must not exist yet; `name` must have passed
/// [`check_folder_name`].
pub fn create_named_folder(root: &Path, name: &str) -> std::io::Result<PathBuf> {
    check_folder_name(name).map_err(std::io::Error::other)?;
    let dir = root.join(name);
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// Replaces the manifest atomically (temporary file, fsync, rename, fsync of the folder), so a
/// crash leaves either the old or the new one, never half of one.
pub fn write_manifest(dir: &Path, m: &Manifest) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?;
    let tmp = dir.join(".session.json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, dir.join(MANIFEST))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_unique_within_a_second() {
        let root = tempfile::tempdir().unwrap();
        let t = UnixNanos(1_764_000_000_000_000_000);
        let a = create_folder(root.path(), t).unwrap();
        let b = create_folder(root.path(), t).unwrap();
        assert_ne!(a, b);
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("rec-2025"));
        assert!(b.to_str().unwrap().ends_with("-001"));
    }

    #[test]
    fn chosen_names_stay_inside_the_root() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../../b",
            "/etc",
            "a/b",
            "a\\b",
            ".hidden",
            "nul\0byte",
            "line\nbreak",
            &"x".repeat(129),
        ] {
            assert!(check_folder_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["trial-1", "Participant 07", "été_2026", &"x".repeat(128)] {
            assert_eq!(check_folder_name(good), Ok(()), "{good:?}");
        }
        let root = tempfile::tempdir().unwrap();
        let dir = create_named_folder(root.path(), "trial-1").unwrap();
        assert_eq!(dir, root.path().join("trial-1"));
        let again = create_named_folder(root.path(), "trial-1").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(create_named_folder(root.path(), "..").is_err());
    }
}
