//! Where the optional streams' recordings go: one place that names the files of the eye video,
//! the audio and the device status log, so another output layout (the logger's) can rename them
//! without touching the writers.
//!
//! eyetrack's own layout puts them beside the scene video in the recording folder:
//! `eyes.mkv` + `eyes_timing.csv`, `audio.wav` + `audio_timing.csv`, `status.csv`.

use std::path::{Path, PathBuf};

use super::layout::{FileKind, Layout, TrialFiles};

/// One file of the optional streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamFile {
    /// The eye cameras' video (Matroska, H.264).
    EyesVideo,
    /// One row per recorded eye picture.
    EyesTiming,
    /// The scene microphone as 16-bit PCM WAV.
    Audio,
    /// One row per audio block (first sample's device time, sample count).
    AudioTiming,
    /// Battery, storage and connection polled from the device (`--status-log`).
    Status,
}

impl StreamFile {
    pub const ALL: [StreamFile; 5] = [
        StreamFile::EyesVideo,
        StreamFile::EyesTiming,
        StreamFile::Audio,
        StreamFile::AudioTiming,
        StreamFile::Status,
    ];

    /// Its kind among a trial's files: the layout ([`super::layout`]) names it from that.
    pub fn kind(self) -> FileKind {
        match self {
            StreamFile::EyesVideo => FileKind::Eyes,
            StreamFile::EyesTiming => FileKind::EyesTiming,
            StreamFile::Audio => FileKind::Audio,
            StreamFile::AudioTiming => FileKind::AudioTiming,
            StreamFile::Status => FileKind::Status,
        }
    }
}

/// The paths of one recording's stream files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamFiles {
    pub eyes_video: PathBuf,
    pub eyes_timing: PathBuf,
    pub audio: PathBuf,
    pub audio_timing: PathBuf,
    pub status: PathBuf,
    /// Logger layout: the trial its rows name (and the logger's columns); `None`: eyetrack's.
    pub logger_trial: Option<u32>,
}

impl StreamFiles {
    /// The files of one trial, named by its layout.
    pub fn for_trial(trial: &TrialFiles) -> Self {
        StreamFiles {
            logger_trial: (trial.layout == Layout::Logger).then_some(trial.trial),
            ..StreamFiles::with(|f| trial.path(f.kind()))
        }
    }

    /// eyetrack's layout: every file under its own name in the recording folder `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        StreamFiles::for_trial(&TrialFiles::eyetrack(dir, 1))
    }

    /// Any layout: `path` names each file (eyetrack's columns).
    pub fn with(mut path: impl FnMut(StreamFile) -> PathBuf) -> Self {
        StreamFiles {
            eyes_video: path(StreamFile::EyesVideo),
            eyes_timing: path(StreamFile::EyesTiming),
            audio: path(StreamFile::Audio),
            audio_timing: path(StreamFile::AudioTiming),
            status: path(StreamFile::Status),
            logger_trial: None,
        }
    }

    pub fn get(&self, f: StreamFile) -> &Path {
        match f {
            StreamFile::EyesVideo => &self.eyes_video,
            StreamFile::EyesTiming => &self.eyes_timing,
            StreamFile::Audio => &self.audio,
            StreamFile::AudioTiming => &self.audio_timing,
            StreamFile::Status => &self.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_and_a_renamed_one() {
        let f = StreamFiles::in_dir(Path::new("/r"));
        assert_eq!(f.get(StreamFile::EyesVideo), Path::new("/r/eyes.mkv"));
        assert_eq!(f.audio, PathBuf::from("/r/audio.wav"));
        let g = StreamFiles::with(|f| match f {
            StreamFile::Audio => PathBuf::from("/s/P_AUDIO_trial001.wav"),
            f => StreamFiles::in_dir(Path::new("/s")).get(f).to_owned(),
        });
        assert_eq!(g.audio, PathBuf::from("/s/P_AUDIO_trial001.wav"));
        assert_eq!(g.status, PathBuf::from("/s/status.csv"));
    }
}
