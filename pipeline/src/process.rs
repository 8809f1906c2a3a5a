//! The process stage (plan "Detailed Frame Flow" 3, 1.5, 2.1, 2.3): copy policy, colour path,
//! scene crop of tiled frames, lazy colour conversion and the duplicate-frame short cut.

use std::sync::Arc;

use crate::color::{self, ColorError};
use crate::dedupe::DuplicateDetector;
use crate::frame::{Frame, FramePool, FrameView, PixelFormat};
use crate::toggles::{ColorPath, CopyMode, Toggles};

/// A processed frame: a region of rows of a (possibly shared) frame. Cropping the scene out of a
/// tiled frame is a view, so the common case copies nothing.
#[derive(Clone, Debug)]
pub struct Processed {
    pub frame: Arc<Frame>,
    pub top: usize,
    pub height: usize,
}

impl Processed {
    pub fn view(&self) -> FrameView<'_> {
        self.frame.view().crop_rows(self.top, self.height)
    }

    /// True when both refer to the same pixels (a duplicate reused the previous result).
    pub fn same_as(&self, other: &Processed) -> bool {
        Arc::ptr_eq(&self.frame, &other.frame)
            && self.top == other.top
            && self.height == other.height
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessConfig {
    pub color_path: ColorPath,
    pub lazy_color: bool,
    pub copy: CopyMode,
    pub dedupe: bool,
    /// The frame stacks the scene (top two thirds) over eye tiles.
    pub tiled: bool,
}

impl ProcessConfig {
    pub fn from_toggles(t: &Toggles, tiled: bool) -> Self {
        ProcessConfig {
            color_path: t.color_path,
            lazy_color: t.lazy_color.is_on(),
            copy: t.copy,
            dedupe: t.dedupe.is_on(),
            tiled,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("colour conversion: {0}")]
    Color(#[from] ColorError),
}

/// Stateful processor, owned by the process thread.
#[derive(Debug)]
pub struct Processor {
    cfg: ProcessConfig,
    pool: FramePool,
    dedupe: DuplicateDetector,
    last: Option<Processed>,
    copies: u64,
    conversions: u64,
}

impl Processor {
    pub fn new(cfg: ProcessConfig) -> Self {
        Processor {
            cfg,
            // The last result, one on the preview edge, one being rendered, the preview's last
            // scaled source, and two while a frame is converted and copied.
            pool: FramePool::new(6),
            dedupe: DuplicateDetector::new(),
            last: None,
            copies: 0,
            conversions: 0,
        }
    }

    /// Another consumer (the recorder's queue) can hold this many results at once: size the
    /// pool for them up front instead of growing it mid-stream.
    pub fn hold_extra(&mut self, frames: usize) {
        self.pool = FramePool::new(6 + frames);
    }

    pub fn config(&self) -> &ProcessConfig {
        &self.cfg
    }

    /// Processes one raw frame. The flag is true when the frame repeated the previous one and
    /// its earlier result was reused.
    pub fn process(&mut self, raw: &Arc<Frame>) -> Result<(Processed, bool), ProcessError> {
        if self.cfg.dedupe && self.dedupe.is_duplicate(&raw.view()) {
            if let Some(last) = &self.last {
                return Ok((last.clone(), true));
            }
        }
        let mut cur = Arc::clone(raw);

        // The plan's current acquisition: `frame.bgr_buffer()` for every frame.
        if self.cfg.color_path == ColorPath::Bgr && cur.format() != PixelFormat::Bgr24 {
            cur = self.convert(&cur.view(), PixelFormat::Bgr24)?;
        }
        // Plan 1.5: `np.ascontiguousarray` on every frame, or only where a later stage could
        // not read the frame in place. Every stage here reads planes through their strides
        // (the padded rows of a picture lent by libavcodec included), so none needs it.
        if self.cfg.copy == CopyMode::Always {
            let src = Arc::clone(&cur);
            self.copies += 1;
            cur = self
                .pool
                .fill::<ProcessError>(src.format(), src.width(), src.height(), |f| {
                    f.copy_from(&src.view());
                    Ok(())
                })?;
        }

        let (mut top, mut height) = (0, cur.height());
        if self.cfg.tiled {
            height = scene_height(cur.height());
            top = 0;
        }

        // Plan 2.1: gray (and packed RGBA/BGRA) can stay as they are until an overlay needs
        // colour; the plan's current code converts them to BGR here.
        let needs_bgr = !self.cfg.lazy_color
            && matches!(
                cur.format(),
                PixelFormat::Gray8 | PixelFormat::Rgba | PixelFormat::Bgra
            );
        if needs_bgr {
            let scene = cur.view().crop_rows(top, height);
            cur = self.convert(&scene, PixelFormat::Bgr24)?;
            top = 0;
            height = cur.height();
        }

        let out = Processed {
            frame: cur,
            top,
            height,
        };
        self.last = Some(out.clone());
        Ok((out, false))
    }

    fn convert(
        &mut self,
        src: &FrameView<'_>,
        to: PixelFormat,
    ) -> Result<Arc<Frame>, ProcessError> {
        self.conversions += 1;
        self.pool
            .fill::<ProcessError>(to, src.width, src.height, |f| {
                color::convert(src, f, to)?;
                Ok(())
            })
    }

    /// Forget cached results (a reconnect or a change of stream).
    pub fn reset(&mut self) {
        self.dedupe.reset();
        self.last = None;
    }

    /// Full-frame copies and colour conversions done so far.
    pub fn work_counts(&self) -> (u64, u64) {
        (self.copies, self.conversions)
    }

    pub fn pool_allocations(&self) -> u64 {
        self.pool.allocations()
    }
}

/// The scene's share of a tiled frame: the top two thirds, even for I420's chroma.
pub fn scene_height(tiled_height: usize) -> usize {
    (tiled_height * 2 / 3) & !1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(format: PixelFormat, w: usize, h: usize, seed: u8) -> Arc<Frame> {
        let mut f = Frame::new(format, w, h);
        f.data_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i as u8).wrapping_mul(7).wrapping_add(seed));
        Arc::new(f)
    }

    fn cfg() -> ProcessConfig {
        ProcessConfig::from_toggles(&Toggles::default(), false)
    }

    #[test]
    fn planar_if_needed_is_zero_copy() {
        let mut p = Processor::new(cfg());
        let raw = frame(PixelFormat::I420, 64, 48, 0);
        let (out, dup) = p.process(&raw).unwrap();
        assert!(!dup);
        assert!(Arc::ptr_eq(&out.frame, &raw));
        assert_eq!(p.work_counts(), (0, 0));
    }

    #[test]
    fn tiled_frames_are_cropped_to_the_top_two_thirds() {
        let mut p = Processor::new(ProcessConfig {
            tiled: true,
            ..cfg()
        });
        let raw = frame(PixelFormat::I420, 64, 72, 0);
        let (out, _) = p.process(&raw).unwrap();
        assert_eq!(out.view().height, 48);
        assert_eq!(out.view().width, 64);
        assert_eq!(out.view().plane(1).height, 24);
        assert_eq!(scene_height(1800), 1200);
    }

    #[test]
    fn copy_always_copies_every_frame() {
        let mut p = Processor::new(ProcessConfig {
            copy: CopyMode::Always,
            ..cfg()
        });
        let raw = frame(PixelFormat::I420, 64, 48, 0);
        let (out, _) = p.process(&raw).unwrap();
        assert!(!Arc::ptr_eq(&out.frame, &raw));
        assert_eq!(out.frame.data(), raw.data());
        assert_eq!(p.work_counts(), (1, 0));
    }

    #[test]
    fn bgr_path_converts_everything_first() {
        let mut p = Processor::new(ProcessConfig {
            color_path: ColorPath::Bgr,
            ..cfg()
        });
        let (out, _) = p.process(&frame(PixelFormat::I420, 64, 48, 0)).unwrap();
        assert_eq!(out.view().format, PixelFormat::Bgr24);
        assert_eq!((out.view().width, out.view().height), (64, 48));
    }

    #[test]
    fn lazy_colour_keeps_gray_gray() {
        let gray = frame(PixelFormat::Gray8, 32, 24, 0);
        let mut lazy = Processor::new(cfg());
        assert_eq!(
            lazy.process(&gray).unwrap().0.view().format,
            PixelFormat::Gray8
        );
        let mut eager = Processor::new(ProcessConfig {
            lazy_color: false,
            ..cfg()
        });
        let (out, _) = eager.process(&gray).unwrap();
        assert_eq!(out.view().format, PixelFormat::Bgr24);
        // gray -> BGR replicates the value in each channel
        let px = &out.view().plane(0).row(3)[9..12];
        let g = gray.plane(0).row(3)[3];
        assert_eq!(px, &[g, g, g]);
    }

    #[test]
    fn eager_rgba_becomes_bgr_after_crop() {
        let rgba = frame(PixelFormat::Rgba, 16, 12, 3);
        let mut eager = Processor::new(ProcessConfig {
            lazy_color: false,
            tiled: true,
            ..cfg()
        });
        let (out, _) = eager.process(&rgba).unwrap();
        let v = out.view();
        assert_eq!((v.format, v.width, v.height), (PixelFormat::Bgr24, 16, 8));
        let src = &rgba.plane(0).row(2)[4..8];
        assert_eq!(&v.plane(0).row(2)[3..6], &[src[2], src[1], src[0]]);
    }

    #[test]
    fn duplicates_reuse_the_previous_result() {
        let mut p = Processor::new(ProcessConfig {
            copy: CopyMode::Always,
            ..cfg()
        });
        let a = frame(PixelFormat::I420, 128, 128, 1);
        let b = Arc::new((*a).clone());
        let (first, d1) = p.process(&a).unwrap();
        let (second, d2) = p.process(&b).unwrap();
        assert!(!d1 && d2);
        assert!(second.same_as(&first));
        assert_eq!(p.work_counts().0, 1, "the duplicate was not copied again");
        let (third, d3) = p.process(&frame(PixelFormat::I420, 128, 128, 9)).unwrap();
        assert!(!d3 && !third.same_as(&first));
    }

    #[test]
    fn dedupe_off_processes_repeats() {
        let mut p = Processor::new(ProcessConfig {
            dedupe: false,
            ..cfg()
        });
        let a = frame(PixelFormat::I420, 128, 128, 1);
        assert!(!p.process(&a).unwrap().1);
        assert!(!p.process(&a).unwrap().1);
    }
}
