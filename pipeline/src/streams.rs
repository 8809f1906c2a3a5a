//! The Neon's optional streams beside the scene video (issue 7): which are set up (gaze, IMU,
//! eye events, eye video, audio), the run-time switches that pause them, and the audio block.
//!
//! Two levels, so a user pays only for what is used: [`StreamSet`] is fixed at start and decides
//! which RTSP sessions exist at all (an off stream is never SETUP, and a replay skips its
//! packets); [`StreamSwitches`] (in [`crate::run_control::Control`]) turn a set-up stream's
//! handling off and on while running (the control API's hook): an off stream's packets are
//! dropped on arrival, before any parsing or decoding. A stream that was not set up cannot be
//! switched on without a new connection.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::time::{MonoNanos, UnixNanos};

/// The eye cameras' nominal rate (protocol doc 4.1), when neither SPS nor SDP states one; also
/// what a recording of the eye video thins from until the stream says otherwise.
pub const EYES_NOMINAL_FPS: f64 = 200.0;

/// The device's health for `--status-log`: battery, storage, connected sensors (doc 2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceHealth {
    /// Percent (0-100).
    pub battery_level: Option<i64>,
    /// `OK`, `LOW` or `CRITICAL`.
    pub battery_state: Option<String>,
    /// Free storage in bytes.
    pub memory_bytes: Option<u64>,
    pub memory_state: Option<String>,
    /// DIRECT sensors the device lists as connected.
    pub connected_sensors: Vec<String>,
}

/// One poll of the device's status, stamped when its answer (or failure) came: a stream like
/// gaze or IMU, delivered by the source side (`source::neon::status::StatusPoller`) and written
/// by the recorder, which knows nothing of HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSample {
    pub unix_ns: i64,
    pub mono_ns: u64,
    /// The health, or the one-line reason the device did not answer.
    pub health: Result<DeviceHealth, String>,
}

/// The status stream a recording writes (`--status-log`): the samples and the rate they were
/// asked for at (for the manifest).
#[derive(Clone, Debug)]
pub struct StatusFeed {
    pub interval: std::time::Duration,
    pub samples: crossbeam_channel::Receiver<StatusSample>,
}

/// A stream besides the world video, which is always on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Gaze,
    Imu,
    /// Fixations, saccades, blinks (the `eye_events` sensor).
    Events,
    /// The eye cameras' video (the `eyes` sensor, 384x192 H.264 at about 200 Hz).
    Eyes,
    /// The scene microphone (an `m=audio` of the world URL, its own session).
    Audio,
}

impl Stream {
    pub const ALL: [Stream; 5] = [
        Stream::Gaze,
        Stream::Imu,
        Stream::Events,
        Stream::Eyes,
        Stream::Audio,
    ];

    /// The flag name (`--gaze`, ... `--audio`).
    pub fn name(self) -> &'static str {
        match self {
            Stream::Gaze => "gaze",
            Stream::Imu => "imu",
            Stream::Events => "events",
            Stream::Eyes => "eyes",
            Stream::Audio => "audio",
        }
    }
}

/// Which optional streams a run sets up. Default: gaze, IMU and events on, eyes and audio off
/// (the eye video is about 200 pictures a second to depacketize; audio needs the microphone on
/// in the Companion app).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StreamSet {
    pub gaze: bool,
    pub imu: bool,
    pub events: bool,
    pub eyes: bool,
    pub audio: bool,
}

impl Default for StreamSet {
    fn default() -> Self {
        StreamSet {
            gaze: true,
            imu: true,
            events: true,
            eyes: false,
            audio: false,
        }
    }
}

impl StreamSet {
    pub fn has(&self, s: Stream) -> bool {
        match s {
            Stream::Gaze => self.gaze,
            Stream::Imu => self.imu,
            Stream::Events => self.events,
            Stream::Eyes => self.eyes,
            Stream::Audio => self.audio,
        }
    }

    pub fn set(&mut self, s: Stream, on: bool) {
        match s {
            Stream::Gaze => self.gaze = on,
            Stream::Imu => self.imu = on,
            Stream::Events => self.events = on,
            Stream::Eyes => self.eyes = on,
            Stream::Audio => self.audio = on,
        }
    }
}

/// Run-time on/off per stream (relaxed atomics: one load per packet).
#[derive(Debug)]
pub struct StreamSwitches {
    gaze: AtomicBool,
    imu: AtomicBool,
    events: AtomicBool,
    eyes: AtomicBool,
    audio: AtomicBool,
    /// Something shows the eye video (a preview): decode it even while not recording.
    pub eyes_preview: AtomicBool,
    /// The streams set up at start (a bit per [`Stream`]): only these can be switched on.
    set_up: AtomicU8,
}

impl Default for StreamSwitches {
    fn default() -> Self {
        StreamSwitches::from_set(&StreamSet::default())
    }
}

impl StreamSwitches {
    pub fn from_set(set: &StreamSet) -> Self {
        StreamSwitches {
            gaze: AtomicBool::new(set.gaze),
            imu: AtomicBool::new(set.imu),
            events: AtomicBool::new(set.events),
            eyes: AtomicBool::new(set.eyes),
            audio: AtomicBool::new(set.audio),
            eyes_preview: AtomicBool::new(false),
            set_up: AtomicU8::new(bits(set)),
        }
    }

    fn flag(&self, s: Stream) -> &AtomicBool {
        match s {
            Stream::Gaze => &self.gaze,
            Stream::Imu => &self.imu,
            Stream::Events => &self.events,
            Stream::Eyes => &self.eyes,
            Stream::Audio => &self.audio,
        }
    }

    pub fn is_on(&self, s: Stream) -> bool {
        self.flag(s).load(Ordering::Relaxed)
    }

    /// Switches a stream's handling; takes effect with its next packet.
    pub fn set(&self, s: Stream, on: bool) {
        self.flag(s).store(on, Ordering::Relaxed);
    }

    /// Takes every switch from `set` (at start, from the command line); `set` is also what
    /// was set up.
    pub fn apply(&self, set: &StreamSet) {
        self.set_up.store(bits(set), Ordering::Relaxed);
        for s in Stream::ALL {
            self.set(s, set.has(s));
        }
    }

    /// Whether the run set the stream up, so that switching it on has packets to handle.
    pub fn is_set_up(&self, s: Stream) -> bool {
        self.set_up.load(Ordering::Relaxed) & bit(s) != 0
    }
}

fn bit(s: Stream) -> u8 {
    1 << (s as u8)
}

fn bits(set: &StreamSet) -> u8 {
    Stream::ALL
        .into_iter()
        .filter(|&s| set.has(s))
        .fold(0, |b, s| b | bit(s))
}

/// Decoded audio of one RTP packet: one or more AAC frames, 16-bit PCM, channels interleaved.
/// Sources hand these out pooled (`Arc`), so steady streaming allocates nothing; the times
/// travel beside it ([`AudioMeta`]).
#[derive(Clone, Debug, Default)]
pub struct AudioBlock {
    pub sample_rate: u32,
    pub channels: u16,
    /// Interleaved samples (`frames() * channels` values).
    pub samples: Vec<i16>,
}

impl AudioBlock {
    /// Sample frames (one sample per channel each).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// Length in nanoseconds.
    pub fn duration_ns(&self) -> i64 {
        if self.sample_rate == 0 {
            return 0;
        }
        (self.frames() as i64).saturating_mul(1_000_000_000) / i64::from(self.sample_rate)
    }
}

/// Timing of one [`AudioBlock`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioMeta {
    /// Capture time of the block's first sample, on the device clock.
    pub device_time: UnixNanos,
    /// When the host had the packet.
    pub received_mono: MonoNanos,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_follow_the_set_and_flip_at_run_time() {
        let set = StreamSet {
            eyes: true,
            ..StreamSet::default()
        };
        let sw = StreamSwitches::from_set(&set);
        assert!(sw.is_on(Stream::Eyes) && sw.is_on(Stream::Gaze));
        assert!(!sw.is_on(Stream::Audio));
        sw.set(Stream::Gaze, false);
        assert!(!sw.is_on(Stream::Gaze));
        assert!(sw.is_set_up(Stream::Eyes) && !sw.is_set_up(Stream::Audio));
        sw.apply(&StreamSet::default());
        assert!(sw.is_on(Stream::Gaze) && !sw.is_on(Stream::Eyes));
        assert!(!sw.is_set_up(Stream::Eyes) && sw.is_set_up(Stream::Imu));
        let b = AudioBlock {
            sample_rate: 8000,
            channels: 1,
            samples: vec![0; 1024],
        };
        assert_eq!(b.duration_ns(), 128_000_000);
    }
}
