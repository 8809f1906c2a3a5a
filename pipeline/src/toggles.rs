//! The optimization toggles (design.md's table): one field per toggle, each measurable on and
//! off. `Toggles::default()` is the optimized set; `Toggles::baseline()` the plan's current code.

use serde::Serialize;

use crate::overlay::OverlayMode;
use crate::preview::ResizeFilter;
use crate::record::encoder::EncoderKind;
use crate::record::select::FrameSelection;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

/// Where packed colour is produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ColorPath {
    /// Frames stay as decoded (I420 / gray); packed colour only where a consumer needs it.
    Planar,
    /// Every frame converted to packed BGR first, as the plan's `frame.bgr_buffer()` does.
    Bgr,
}

/// Plan 1.5: copy every frame into a fresh contiguous buffer, or only when it is not usable in
/// place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CopyMode {
    IfNeeded,
    Always,
}

/// libavcodec's decoding threads (`--decode-threads`): `1`, or `frame:N` / `slice:N` workers.
/// Frame threads decode N pictures at once (one picture of latency per extra thread); slice
/// threads split one picture and only help streams with several slices per picture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecodeThreads {
    #[default]
    One,
    Frame(u32),
    Slice(u32),
}

impl DecodeThreads {
    /// Threads and whether they are frame (not slice) threads.
    pub fn count(self) -> usize {
        match self {
            DecodeThreads::One => 1,
            DecodeThreads::Frame(n) | DecodeThreads::Slice(n) => n.max(1) as usize,
        }
    }
}

impl std::fmt::Display for DecodeThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeThreads::One => f.write_str("1"),
            DecodeThreads::Frame(n) => write!(f, "frame:{n}"),
            DecodeThreads::Slice(n) => write!(f, "slice:{n}"),
        }
    }
}

impl std::str::FromStr for DecodeThreads {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not 1, frame:N or slice:N (N in 2..=16)");
        if s == "1" {
            return Ok(DecodeThreads::One);
        }
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let n: u32 = n.parse().map_err(|_| bad())?;
        if !(2..=16).contains(&n) {
            return Err(bad());
        }
        match kind {
            "frame" => Ok(DecodeThreads::Frame(n)),
            "slice" => Ok(DecodeThreads::Slice(n)),
            _ => Err(bad()),
        }
    }
}

impl Serialize for DecodeThreads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// x264's worker threads while recording (`--encoder-threads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderThreads {
    /// Ours: one thread up to 10 recorded fps or on two cores or fewer, else two. Measured on
    /// the 2-core CI box: x264's own choice (1.5 x cores frame threads) costs more CPU-seconds
    /// for the same frames than one thread, which keeps up with 30 fps of 1600x1200 ultrafast
    /// there (about 10 ms a frame); a slower core (Pi 5) gets a second thread at high rates.
    Auto,
    /// The encoder's own default (x264: 1.5 threads per core), what the plan's ffmpeg
    /// subprocess runs with.
    Default,
    Fixed(u32),
}

impl EncoderThreads {
    /// The thread count to ask for at `fps` on a machine with `cores` cores (`None` = leave
    /// the encoder's default).
    pub fn resolve(self, fps: u32, cores: usize) -> Option<u32> {
        match self {
            EncoderThreads::Auto if fps <= 10 || cores <= 2 => Some(1),
            EncoderThreads::Auto => Some(2),
            EncoderThreads::Default => None,
            EncoderThreads::Fixed(n) => Some(n),
        }
    }
}

impl std::fmt::Display for EncoderThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncoderThreads::Auto => f.write_str("auto"),
            EncoderThreads::Default => f.write_str("default"),
            EncoderThreads::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for EncoderThreads {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(EncoderThreads::Auto),
            "default" => Ok(EncoderThreads::Default),
            n => match n.parse::<u32>() {
                Ok(n @ 1..=16) => Ok(EncoderThreads::Fixed(n)),
                _ => Err(format!(
                    "'{s}' is not auto, default or a thread count in 1..=16"
                )),
            },
        }
    }
}

impl Serialize for EncoderThreads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Every toggle of the pipeline stages this crate has so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Toggles {
    pub resize: ResizeFilter,
    pub overlay: OverlayMode,
    pub dedupe: OnOff,
    pub color_path: ColorPath,
    pub lazy_color: OnOff,
    pub copy: CopyMode,
    pub reduced_processing: OnOff,
    /// CSV rows per write while recording (plan 1.2).
    pub flush_every: u32,
    /// Recorded frames between fsyncs (plan 1.4; 0 = off).
    pub fsync_every: u32,
    pub encoder: EncoderKind,
    pub frame_selection: FrameSelection,
    /// x264's threads while recording.
    pub encoder_threads: EncoderThreads,
    /// libavcodec's decoding threads.
    pub decode_threads: DecodeThreads,
    /// While nothing records: decode without the loop filter (`skip_loop_filter`, `flags2
    /// fast`), for a preview that is scaled down anyway.
    pub fast_decode: OnOff,
    /// Plan 1.6 extended to decode: while the preview is hidden and nothing records, decode
    /// only IDR pictures, at most at the thumbnail rate, and depacketize the rest unread.
    pub reduced_decode: OnOff,
    /// Decoded pictures stay in libavcodec's buffers (a reference, not a copy).
    pub zero_copy: OnOff,
}

impl Default for Toggles {
    /// The optimized defaults (first value of each flag in design.md).
    fn default() -> Self {
        Toggles {
            resize: ResizeFilter::Area,
            overlay: OverlayMode::Sprite,
            dedupe: OnOff::On,
            color_path: ColorPath::Planar,
            lazy_color: OnOff::On,
            copy: CopyMode::IfNeeded,
            reduced_processing: OnOff::On,
            flush_every: 30,
            fsync_every: 600,
            // Measured (issue 12): the same x264 in-process saves the child's start, the
            // rawvideo pipe and its muxing thread, 0.15-0.2x of the decode+encode floor.
            encoder: EncoderKind::Libav,
            frame_selection: FrameSelection::Timer,
            encoder_threads: EncoderThreads::Auto,
            decode_threads: DecodeThreads::One,
            fast_decode: OnOff::On,
            reduced_decode: OnOff::On,
            zero_copy: OnOff::On,
        }
    }
}

impl Toggles {
    /// The plan's current behaviour: the baseline every comparison is against.
    pub fn baseline() -> Self {
        Toggles {
            resize: ResizeFilter::Bilinear,
            overlay: OverlayMode::Draw,
            dedupe: OnOff::Off,
            color_path: ColorPath::Bgr,
            lazy_color: OnOff::Off,
            copy: CopyMode::Always,
            reduced_processing: OnOff::Off,
            // Every row flushed, no fsync: the plan's RecordingManager before 1.2 and 1.4.
            flush_every: 1,
            fsync_every: 0,
            // The plan's encoder: the ffmpeg program on a pipe. Its frame selection is also
            // the optimized default (a choice to measure, not an optimization it lacks).
            encoder: EncoderKind::Ffmpeg,
            frame_selection: FrameSelection::Timer,
            // What the plan's code gets without asking: x264's own threads, one decoding
            // thread (libavcodec's default when opened through the API, as PyAV does), every
            // picture fully decoded.
            encoder_threads: EncoderThreads::Default,
            decode_threads: DecodeThreads::One,
            fast_decode: OnOff::Off,
            reduced_decode: OnOff::Off,
            // PyAV's `to_ndarray` copies every picture out of libavcodec.
            zero_copy: OnOff::Off,
        }
    }
}

/// Named starting points for the toggles; individual flags override them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Optimized,
    Baseline,
}

impl Preset {
    pub fn toggles(self) -> Toggles {
        match self {
            Preset::Optimized => Toggles::default(),
            Preset::Baseline => Toggles::baseline(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_differs_from_optimized_in_every_optimization() {
        let (o, b) = (Toggles::default(), Toggles::baseline());
        assert_ne!(o.resize, b.resize);
        assert_ne!(o.overlay, b.overlay);
        assert_ne!(o.dedupe, b.dedupe);
        assert_ne!(o.color_path, b.color_path);
        assert_ne!(o.lazy_color, b.lazy_color);
        assert_ne!(o.copy, b.copy);
        assert_ne!(o.reduced_processing, b.reduced_processing);
        assert_ne!(o.flush_every, b.flush_every);
        assert_ne!(o.fsync_every, b.fsync_every);
        assert_ne!(o.encoder_threads, b.encoder_threads);
        assert_ne!(o.fast_decode, b.fast_decode);
        assert_ne!(o.reduced_decode, b.reduced_decode);
        assert_ne!(o.zero_copy, b.zero_copy);
        assert_ne!(o.encoder, b.encoder);
        assert_eq!(o.frame_selection, b.frame_selection);
        assert_eq!(o.decode_threads, b.decode_threads);
    }

    #[test]
    fn thread_flags_parse_and_print_back() {
        for s in ["1", "frame:2", "slice:4"] {
            assert_eq!(s.parse::<DecodeThreads>().unwrap().to_string(), s);
        }
        for s in ["0", "frame", "frame:1", "slice:99", "row:2", ""] {
            assert!(s.parse::<DecodeThreads>().is_err(), "{s}");
        }
        for s in ["auto", "default", "3"] {
            assert_eq!(s.parse::<EncoderThreads>().unwrap().to_string(), s);
        }
        assert!("0".parse::<EncoderThreads>().is_err());
        assert_eq!(EncoderThreads::Auto.resolve(5, 4), Some(1));
        assert_eq!(EncoderThreads::Auto.resolve(30, 2), Some(1));
        assert_eq!(EncoderThreads::Auto.resolve(30, 4), Some(2));
        assert_eq!(EncoderThreads::Default.resolve(30, 4), None);
        assert_eq!(
            serde_json::to_value(Toggles::default()).unwrap()["decode_threads"],
            "1"
        );
    }
}
