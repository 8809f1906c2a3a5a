//! Shared inputs of the stage benches: realistic frames from the synthetic source and the
//! derived preview-sized and packed versions, built the same way for criterion and gungraun.
//!
//! Both bench targets measure the same kernels on the same pixels, so a wall-clock change and an
//! instruction-count change can be read side by side. Inputs are fixed (seed 1, first frames of
//! the stream) so instruction counts are reproducible run to run.

// Each bench target compiles this module on its own and uses a different subset of it.
#![allow(dead_code)]

use std::sync::Arc;

use pipeline::color;
use pipeline::dedupe::DuplicateDetector;
use pipeline::frame::{Frame, PixelFormat};
use pipeline::overlay::{Hud, Overlay, OverlayMode, OverlayStyle};
use pipeline::preview::{fit_size, ResizeFilter, Scaler};
use pipeline::process::{ProcessConfig, Processor};
use pipeline::profile::StageProfile;
use pipeline::source::synthetic::{SyntheticConfig, SyntheticSource};
use pipeline::source::{Source, SourceItem};
use pipeline::toggles::{ColorPath, Toggles};

/// The Neon scene camera's resolution, what the pipeline sees in production.
pub const SCENE_W: usize = 1600;
pub const SCENE_H: usize = 1200;
/// The preview box the CLI defaults to fitting into; 1600x1200 fits as 480x360.
pub const PREVIEW_BOX: (usize, usize) = (480, 360);

/// The first `n` frames of the synthetic stream at `w` x `h` (I420, seed 1, not paced). Frames
/// are copied out of the source's pool so they outlive it. Two frames differ (the scene pans),
/// which keeps the duplicate detector from short-cutting the process stage.
pub fn scene_frames(w: usize, h: usize, n: usize) -> Vec<Frame> {
    let mut src = SyntheticSource::new(SyntheticConfig {
        width: w,
        height: h,
        paced: false,
        ..SyntheticConfig::default()
    })
    .expect("valid synthetic config");
    let mut profile = StageProfile::new(false);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match src.next_item(&mut profile).expect("synthetic source") {
            Some(SourceItem::Frame { frame, .. }) => {
                let mut copy = Frame::new(frame.format(), frame.width(), frame.height());
                copy.copy_from(&frame.view());
                out.push(copy);
            }
            Some(_) => {}
            None => panic!("synthetic stream ended early"),
        }
    }
    out
}

/// One scene frame at `w` x `h`.
pub fn scene(w: usize, h: usize) -> Frame {
    scene_frames(w, h, 1).remove(0)
}

/// `src` converted to `to` with the pipeline's own conversion.
pub fn converted(src: &Frame, to: PixelFormat) -> Frame {
    let mut dst = Frame::new(to, 0, 0);
    color::convert(&src.view(), &mut dst, to).expect("supported conversion");
    dst
}

/// The preview size of a `w` x `h` scene (aspect kept, fitted into [`PREVIEW_BOX`]).
pub fn preview_size(w: usize, h: usize) -> (usize, usize) {
    fit_size(w, h, PREVIEW_BOX.0, PREVIEW_BOX.1)
}

/// `src` scaled (area filter, as the optimized preview does) to its preview size: the frame the
/// overlay draws on.
pub fn preview_of(src: &Frame) -> Frame {
    let (w, h) = preview_size(src.width(), src.height());
    let mut dst = Frame::new(src.format(), 0, 0);
    Scaler::new(ResizeFilter::Area)
        .scale(&src.view(), &mut dst, w, h)
        .expect("valid preview geometry");
    dst
}

/// A scaler whose weight tables for `src` -> preview are already built, so a bench measures the
/// steady state (the first call of a geometry allocates), and the destination frame it fills.
pub fn warm_scaler(filter: ResizeFilter, src: &Frame) -> (Scaler, Frame) {
    let (w, h) = preview_size(src.width(), src.height());
    let mut scaler = Scaler::new(filter);
    let mut dst = Frame::new(src.format(), 0, 0);
    scaler
        .scale(&src.view(), &mut dst, w, h)
        .expect("valid preview geometry");
    (scaler, dst)
}

/// What the HUD shows in a bench: fixed, so every call rasterizes the same glyphs.
pub fn hud() -> Hud<'static> {
    Hud {
        fps: 29.97,
        frame_index: 12345,
        state: "streaming",
    }
}

/// Gaze position on a `w` x `h` preview: off-centre, fully inside the frame.
pub fn gaze_point(w: usize, h: usize) -> (f32, f32) {
    (w as f32 * 0.4, h as f32 * 0.6)
}

/// An overlay in `mode` that has drawn the marker and HUD once on `frame`, so sprite mode's
/// caches are filled and both modes are measured per frame in steady state.
pub fn warm_overlay(mode: OverlayMode, frame: &mut Frame) -> Overlay {
    let mut overlay = Overlay::new(mode, OverlayStyle::default()).expect("default style");
    draw_overlay(&mut overlay, frame);
    overlay
}

/// The per-frame overlay work: gaze marker and HUD.
pub fn draw_overlay(overlay: &mut Overlay, frame: &mut Frame) {
    let (x, y) = gaze_point(frame.width(), frame.height());
    overlay
        .draw_gaze(frame, x, y, true)
        .expect("colour frame for the marker");
    overlay
        .draw_hud(frame, &hud())
        .expect("colour frame for the HUD");
}

/// The process configurations compared: the optimized preset (planar), the same with only the
/// colour path switched to packed BGR, and the plan's baseline preset. Dedupe stays as each preset
/// has it; the benches feed alternating, different frames so it never short-cuts.
pub fn process_config(name: &str) -> ProcessConfig {
    let toggles = match name {
        "planar" => Toggles::default(),
        "bgr" => Toggles {
            color_path: ColorPath::Bgr,
            ..Toggles::default()
        },
        "baseline" => Toggles::baseline(),
        other => panic!("unknown process config {other}"),
    };
    ProcessConfig::from_toggles(&toggles, false)
}

/// A processor that has processed both frames once (its pool has grown to the steady state),
/// and the two frames to alternate between.
pub fn warm_processor(cfg: ProcessConfig, frames: [Arc<Frame>; 2]) -> (Processor, [Arc<Frame>; 2]) {
    assert_ne!(
        DuplicateDetector::hash(&frames[0].view()),
        DuplicateDetector::hash(&frames[1].view()),
        "bench frames must differ or dedupe would short-cut the stage"
    );
    let mut p = Processor::new(cfg);
    for f in frames.iter().chain(frames.iter()) {
        p.process(f).expect("process stage");
    }
    (p, frames)
}
