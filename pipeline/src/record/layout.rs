//! Output layouts: where every file of a recording goes and what it is called, for eyetrack's
//! own folder per recording and for the RPi_Logger data logger's numbered trial files.
//!
//! The one place that names files: the recorder, its CSV writer, the passthrough remuxer and the
//! eye-video and audio recorders ask [`TrialFiles::path`] rather than formatting names of their
//! own, so a layout can never be half applied. The logger layout follows the EyeTracker-Neon
//! module of RPi_Logger (its storage helpers and its help text "3.5 Output files"):
//! `{session_dir}/EyeTracker-Neon/{prefix}_{TYPE}_trial{NNN}.{ext}`, with the prefix
//! `{session token}_EYETRACKER-NEON` where the session token is the session folder's name after
//! its first `_` (`session_20261124_212417` gives `20261124_212417`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::time::UnixNanos;

/// `--layout`: whose file layout a recording follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// eyetrack's own: one folder `rec-<UTC time>` per recording with `scene_000.mkv`,
    /// `frame_timing.csv`, `gaze.csv`, `imu.csv`, `events.csv` and `session.json`.
    #[default]
    Eyetrack,
    /// RPi_Logger's: numbered trials of `{prefix}_{TYPE}_trial{NNN}` files in
    /// `{session_dir}/EyeTracker-Neon/`, CSV columns as the logger writes them.
    Logger,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Eyetrack => "eyetrack",
            Layout::Logger => "logger",
        }
    }
}

/// The logger's module folder inside a session folder, and the `Module` column's value.
pub const LOGGER_MODULE: &str = "EyeTracker-Neon";
/// The module code in the logger's file names.
pub const LOGGER_CODE: &str = "EYETRACKER-NEON";

/// Every file a recording may write. Eyes and audio belong to the eye-video and audio
/// recorders; they are named here so both layouts cover them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// The re-encoded scene video with the gaze circle (segment 0; later segments after an
    /// encoder restart through [`TrialFiles::segment`]).
    Scene,
    /// One row per recorded scene frame.
    FrameTiming,
    /// The device's own H.264 (`--encoder passthrough`).
    Passthrough,
    PassthroughTiming,
    Gaze,
    Imu,
    Events,
    /// The eye cameras' video and its timing.
    Eyes,
    EyesTiming,
    /// The scene microphone and its timing.
    Audio,
    AudioTiming,
    /// The device status log (battery, storage, connection).
    Status,
    /// The recording's JSON manifest.
    Manifest,
}

impl FileKind {
    /// eyetrack layout: the file's name in the recording folder (segmented videos: segment 0).
    fn eyetrack_name(self) -> &'static str {
        match self {
            FileKind::Scene => "scene_000.mkv",
            FileKind::FrameTiming => "frame_timing.csv",
            FileKind::Passthrough => "scene_passthrough_000.mkv",
            FileKind::PassthroughTiming => "passthrough_timing.csv",
            FileKind::Gaze => "gaze.csv",
            FileKind::Imu => "imu.csv",
            FileKind::Events => "events.csv",
            FileKind::Eyes => "eyes.mkv",
            FileKind::EyesTiming => "eyes_timing.csv",
            FileKind::Audio => "audio.wav",
            FileKind::AudioTiming => "audio_timing.csv",
            FileKind::Status => "status.csv",
            FileKind::Manifest => "session.json",
        }
    }

    /// Logger layout: the `{TYPE}` and extension. The logger's own types where it has one
    /// (SCENE, FRAME, GAZEDATA, IMU, EVENT, AUDIO, AUDIO_TIMING); the rest in its pattern.
    fn logger_type(self) -> (&'static str, &'static str) {
        match self {
            FileKind::Scene => ("SCENE", "mp4"),
            FileKind::FrameTiming => ("FRAME", "csv"),
            // Matroska: the device's stream is copied as sent (see encoder::passthrough).
            FileKind::Passthrough => ("PASSTHROUGH", "mkv"),
            FileKind::PassthroughTiming => ("PASSTHROUGH_TIMING", "csv"),
            FileKind::Gaze => ("GAZEDATA", "csv"),
            FileKind::Imu => ("IMU", "csv"),
            FileKind::Events => ("EVENT", "csv"),
            FileKind::Eyes => ("EYES", "mp4"),
            FileKind::EyesTiming => ("EYES_TIMING", "csv"),
            FileKind::Audio => ("AUDIO", "wav"),
            FileKind::AudioTiming => ("AUDIO_TIMING", "csv"),
            FileKind::Status => ("DEVICESTATUS", "csv"),
            FileKind::Manifest => ("MANIFEST", "json"),
        }
    }
}

/// The names of one recording's files: a folder, and for the logger layout a prefix and trial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialFiles {
    pub layout: Layout,
    /// The folder every file goes into (eyetrack: `rec-...`; logger: `.../EyeTracker-Neon`).
    pub dir: PathBuf,
    /// Logger layout: the file name prefix (eyetrack layout: unused).
    pub prefix: String,
    /// 1 for the first recording of a run, then 2, 3, ...
    pub trial: u32,
}

impl TrialFiles {
    /// eyetrack layout in `dir`.
    pub fn eyetrack(dir: &Path, trial: u32) -> Self {
        TrialFiles {
            layout: Layout::Eyetrack,
            dir: dir.to_owned(),
            prefix: String::new(),
            trial,
        }
    }

    /// Logger layout: trial `trial` in the module folder `dir` with `prefix`.
    pub fn logger(dir: &Path, prefix: &str, trial: u32) -> Self {
        TrialFiles {
            layout: Layout::Logger,
            dir: dir.to_owned(),
            prefix: prefix.to_owned(),
            trial,
        }
    }

    /// Where the file of `kind` goes.
    pub fn path(&self, kind: FileKind) -> PathBuf {
        self.dir.join(self.name(kind, 0))
    }

    /// Segment `index` of a segmented video (Scene, Passthrough): a new file after an encoder
    /// restart or a change of the device's SPS/PPS. Segment 0 is [`TrialFiles::path`].
    pub fn segment(&self, kind: FileKind, index: u32) -> PathBuf {
        self.dir.join(self.name(kind, index))
    }

    fn name(&self, kind: FileKind, segment: u32) -> String {
        match self.layout {
            Layout::Eyetrack => match kind {
                FileKind::Scene => format!("scene_{segment:03}.mkv"),
                FileKind::Passthrough => format!("scene_passthrough_{segment:03}.mkv"),
                k => k.eyetrack_name().to_owned(),
            },
            Layout::Logger => {
                let (ty, ext) = kind.logger_type();
                let trial = self.trial.clamp(1, 999_999);
                if segment == 0 {
                    format!("{}_{ty}_trial{trial:03}.{ext}", self.prefix)
                } else {
                    format!("{}_{ty}_trial{trial:03}_seg{segment:03}.{ext}", self.prefix)
                }
            }
        }
    }

    /// True when any file this trial would write already exists (a session folder reused by a
    /// later run): the recorder then moves on to the next trial number rather than overwrite.
    pub fn any_exists(&self) -> bool {
        const ALL: [FileKind; 13] = [
            FileKind::Scene,
            FileKind::FrameTiming,
            FileKind::Passthrough,
            FileKind::PassthroughTiming,
            FileKind::Gaze,
            FileKind::Imu,
            FileKind::Events,
            FileKind::Eyes,
            FileKind::EyesTiming,
            FileKind::Audio,
            FileKind::AudioTiming,
            FileKind::Status,
            FileKind::Manifest,
        ];
        ALL.iter().any(|&k| self.path(k).exists())
    }
}

/// `session_YYYYMMDD_HHMMSS` (UTC): the session folder the logger layout creates when no
/// `--session-dir` is given, named like the logger's own session folders.
pub fn session_folder_name(t: UnixNanos) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t.0.max(0) as u64);
    // 2026-11-24T21:24:17Z -> 20261124_212417
    let s = humantime::format_rfc3339_seconds(st).to_string();
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("session_{date}_{time}")
}

/// The logger's default prefix for a session folder: `{token}_EYETRACKER-NEON`, the token being
/// the folder's name after its first `_` (the whole name if it has none).
pub fn default_prefix(session_dir: &Path) -> String {
    let name = session_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = sanitize(&name);
    let name = name.trim_matches('_');
    let token = match name.split_once('_') {
        Some((_, rest)) if !rest.trim_matches('_').is_empty() => rest.trim_matches('_'),
        _ => name,
    };
    if token.is_empty() {
        LOGGER_CODE.to_owned()
    } else {
        format!("{token}_{LOGGER_CODE}")
    }
}

/// A prefix must be one file-name component: letters, digits, `-`, `_`, `.` (not leading).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 200 {
        return Err(format!(
            "prefix '{prefix}' must be 1 to 200 characters long"
        ));
    }
    if prefix.starts_with('.') {
        return Err(format!("prefix '{prefix}' must not start with '.'"));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "prefix '{prefix}' holds '{c}': use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The highest trial number of `prefix` files already in `dir` (0 if none).
pub fn highest_trial(dir: &Path, prefix: &str) -> u32 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let head = format!("{prefix}_");
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(&head)?;
            let (_, after) = rest.rsplit_once("_trial")?;
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logger_names_follow_the_logger() {
        let f = TrialFiles::logger(
            Path::new("/s/EyeTracker-Neon"),
            "20261124_212417_EYETRACKER-NEON",
            2,
        );
        let name = |k| f.path(k).file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            name(FileKind::Gaze),
            "20261124_212417_EYETRACKER-NEON_GAZEDATA_trial002.csv"
        );
        assert_eq!(
            name(FileKind::Scene),
            "20261124_212417_EYETRACKER-NEON_SCENE_trial002.mp4"
        );
        assert_eq!(
            name(FileKind::Events),
            "20261124_212417_EYETRACKER-NEON_EVENT_trial002.csv"
        );
        assert_eq!(
            name(FileKind::Imu),
            "20261124_212417_EYETRACKER-NEON_IMU_trial002.csv"
        );
        assert_eq!(
            name(FileKind::FrameTiming),
            "20261124_212417_EYETRACKER-NEON_FRAME_trial002.csv"
        );
        assert_eq!(
            name(FileKind::Audio),
            "20261124_212417_EYETRACKER-NEON_AUDIO_trial002.wav"
        );
        assert_eq!(
            name(FileKind::Eyes),
            "20261124_212417_EYETRACKER-NEON_EYES_trial002.mp4"
        );
        assert_eq!(
            f.segment(FileKind::Scene, 1).file_name().unwrap(),
            "20261124_212417_EYETRACKER-NEON_SCENE_trial002_seg001.mp4"
        );
        let e = TrialFiles::eyetrack(Path::new("/r/rec-x"), 7);
        assert_eq!(e.path(FileKind::Scene), Path::new("/r/rec-x/scene_000.mkv"));
        assert_eq!(
            e.segment(FileKind::Scene, 2),
            Path::new("/r/rec-x/scene_002.mkv")
        );
        assert_eq!(e.path(FileKind::Gaze), Path::new("/r/rec-x/gaze.csv"));
        assert_eq!(
            e.path(FileKind::Manifest),
            Path::new("/r/rec-x/session.json")
        );
    }

    #[test]
    fn session_names_and_prefixes() {
        // 2025-11-24T16:00:00Z
        assert_eq!(
            session_folder_name(UnixNanos(1_764_000_000_000_000_000)),
            "session_20251124_160000"
        );
        assert_eq!(
            default_prefix(Path::new("/data/session_20251124_160000")),
            "20251124_160000_EYETRACKER-NEON"
        );
        assert_eq!(
            default_prefix(Path::new("/data/p07")),
            "p07_EYETRACKER-NEON"
        );
        assert_eq!(
            default_prefix(Path::new("/data/my run")),
            "run_EYETRACKER-NEON"
        );
        assert!(check_prefix("p07_A-1.x").is_ok());
        assert!(check_prefix("a/b").unwrap_err().contains("'/'"));
        assert!(check_prefix("").is_err());
        assert!(check_prefix(".hidden").is_err());
    }

    #[test]
    fn existing_trials_are_found() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(highest_trial(d.path(), "P"), 0);
        for n in [
            "P_GAZEDATA_trial001.csv",
            "P_SCENE_trial012_seg001.mp4",
            "Q_IMU_trial050.csv",
        ] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        assert_eq!(highest_trial(d.path(), "P"), 12);
        assert!(TrialFiles::logger(d.path(), "P", 1).any_exists());
        assert!(!TrialFiles::logger(d.path(), "P", 2).any_exists());
    }
}
