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
            encoder: EncoderKind::Ffmpeg,
            frame_selection: FrameSelection::Timer,
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
            // The plan's encoder and frame selection are also the optimized defaults; they are
            // choices to measure, not optimizations the baseline lacks.
            encoder: EncoderKind::Ffmpeg,
            frame_selection: FrameSelection::Timer,
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
        assert_eq!(o.encoder, b.encoder);
        assert_eq!(o.frame_selection, b.frame_selection);
    }
}
