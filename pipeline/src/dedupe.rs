//! Duplicate-frame detection (plan 2.3): a sparse-sample hash of each raw frame, so a repeated
//! frame can reuse the previous processing result while the gaze overlay keeps moving.

use xxhash_rust::xxh3::Xxh3;

use crate::frame::FrameView;

/// Sample spacing in pixels, both axes (the plan's `raw_frame[::64, ::64]`).
pub const SAMPLE_STEP: usize = 64;

/// Remembers the hash of the last frame it saw.
///
/// Sampling one pixel in 64x64 costs about 500 reads on a 1600x1200 frame instead of two
/// million, at the price of missing changes that fall between the samples: the camera noise of
/// a real sensor touches every sample, so only truly repeated frames (a stalled decoder, a
/// re-sent frame) hash equal.
#[derive(Debug, Default)]
pub struct DuplicateDetector {
    last: Option<u64>,
    duplicates: u64,
}

impl DuplicateDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hash of the sampled pixels (all planes; chroma at its own half-resolution grid).
    pub fn hash(view: &FrameView<'_>) -> u64 {
        let mut hasher = Xxh3::new();
        hasher.update(&(view.width as u64).to_le_bytes());
        hasher.update(&(view.height as u64).to_le_bytes());
        hasher.update(view.format.name().as_bytes());
        for (i, plane) in view
            .planes
            .iter()
            .enumerate()
            .take(view.format.plane_count())
        {
            let step = if i == 0 { SAMPLE_STEP } else { SAMPLE_STEP / 2 };
            let bpp = plane.bpp;
            for y in (0..plane.height).step_by(step) {
                let row = plane.row(y);
                for x in (0..plane.width).step_by(step) {
                    hasher.update(&row[x * bpp..x * bpp + bpp]);
                }
            }
        }
        hasher.digest()
    }

    /// True when `view` samples the same as the previous frame; remembers it either way.
    pub fn is_duplicate(&mut self, view: &FrameView<'_>) -> bool {
        let h = Self::hash(view);
        let dup = self.last == Some(h);
        self.last = Some(h);
        if dup {
            self.duplicates += 1;
        }
        dup
    }

    /// Forget the last frame (e.g. after a reconnect, so a stale cache is never reused).
    pub fn reset(&mut self) {
        self.last = None;
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, PixelFormat};

    fn textured(format: PixelFormat, w: usize, h: usize, seed: u8) -> Frame {
        let mut f = Frame::new(format, w, h);
        f.data_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i as u8).wrapping_mul(31).wrapping_add(seed));
        f
    }

    #[test]
    fn identical_frames_are_duplicates() {
        let a = textured(PixelFormat::I420, 256, 128, 1);
        let b = a.clone();
        let mut d = DuplicateDetector::new();
        assert!(!d.is_duplicate(&a.view()));
        assert!(d.is_duplicate(&b.view()));
        assert_eq!(d.duplicates(), 1);
    }

    #[test]
    fn a_change_on_a_sample_point_is_seen() {
        let a = textured(PixelFormat::Bgr24, 200, 100, 1);
        let mut b = a.clone();
        b.plane_mut(0).row_mut(64)[64 * 3 + 1] ^= 0xff;
        let mut d = DuplicateDetector::new();
        d.is_duplicate(&a.view());
        assert!(!d.is_duplicate(&b.view()));
    }

    #[test]
    fn chroma_changes_count() {
        let a = textured(PixelFormat::I420, 256, 128, 1);
        let mut b = a.clone();
        b.plane_mut(2).row_mut(0)[0] ^= 0x10;
        assert_ne!(
            DuplicateDetector::hash(&a.view()),
            DuplicateDetector::hash(&b.view())
        );
    }

    #[test]
    fn a_change_between_samples_is_missed_by_design() {
        let a = textured(PixelFormat::Gray8, 256, 128, 1);
        let mut b = a.clone();
        b.plane_mut(0).row_mut(1)[1] ^= 0xff;
        assert_eq!(
            DuplicateDetector::hash(&a.view()),
            DuplicateDetector::hash(&b.view())
        );
    }

    #[test]
    fn geometry_is_part_of_the_hash() {
        let a = Frame::new(PixelFormat::Gray8, 64, 64);
        let b = Frame::new(PixelFormat::Gray8, 64, 128);
        assert_ne!(
            DuplicateDetector::hash(&a.view()),
            DuplicateDetector::hash(&b.view())
        );
    }
}
