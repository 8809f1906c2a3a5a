//! Instruction-count (gungraun / callgrind) benches of the same per-frame stage kernels as
//! `stages.rs`, each kernel run once per bench on fixed synthetic input (a 640x480 scene).
//!
//! Instruction counts do not depend on machine load, so CI can gate on them: `ci/bench-instructions`
//! runs this target and fails when a kernel's Ir grows more than 5% over the committed baseline.
//! Setup (rendering the scene, warming scaler tables, sprite caches and pools) is not counted;
//! the measured call is the steady-state per-frame work. Needs valgrind and `gungraun-runner` at
//! the same version as the `gungraun` crate (ci/setup installs both).

mod common;

use std::hint::black_box;
use std::sync::Arc;

use gungraun::prelude::*;
use pipeline::color;
use pipeline::dedupe::DuplicateDetector;
use pipeline::frame::{Frame, PixelFormat};
use pipeline::overlay::{Overlay, OverlayMode};
use pipeline::preview::{ResizeFilter, Scaler};
use pipeline::process::{Processed, Processor};

/// The scene size here: 640x480, not the camera's 1600x1200, because setup (rendering the scene)
/// runs under valgrind for every bench and at full size the target took ~150 s instead of ~30 s.
/// The kernels are per-pixel loops, so a regression shows at either size; the preview-sized
/// benches (overlay, preview conversions) are unchanged, 640x480 fits the box as 480x360 too.
const SCENE_W: usize = 640;
const SCENE_H: usize = 480;

/// The scene in `format` (I420 as rendered, or converted from it).
fn scene_as(format: PixelFormat) -> Frame {
    let scene = common::scene(SCENE_W, SCENE_H);
    if format == PixelFormat::I420 {
        scene
    } else {
        common::converted(&scene, format)
    }
}

struct Resize {
    scaler: Scaler,
    src: Frame,
    dst: Frame,
}

fn setup_resize(filter: ResizeFilter, format: PixelFormat) -> Resize {
    let src = scene_as(format);
    let (scaler, dst) = common::warm_scaler(filter, &src);
    Resize { scaler, src, dst }
}

#[library_benchmark]
#[bench::i420_area(args = (ResizeFilter::Area, PixelFormat::I420), setup = setup_resize)]
#[bench::i420_bilinear(args = (ResizeFilter::Bilinear, PixelFormat::I420), setup = setup_resize)]
#[bench::bgr24_area(args = (ResizeFilter::Area, PixelFormat::Bgr24), setup = setup_resize)]
#[bench::bgr24_bilinear(args = (ResizeFilter::Bilinear, PixelFormat::Bgr24), setup = setup_resize)]
fn resize(mut s: Resize) -> Resize {
    let (w, h) = (s.dst.width(), s.dst.height());
    s.scaler
        .scale(black_box(&s.src.view()), &mut s.dst, w, h)
        .expect("scale");
    // returned, so freeing the buffers is not counted
    s
}

fn setup_overlay(mode: OverlayMode, format: PixelFormat) -> (Overlay, Frame) {
    let mut frame = common::preview_of(&scene_as(format));
    let overlay = common::warm_overlay(mode, &mut frame);
    (overlay, frame)
}

#[library_benchmark]
#[bench::i420_draw(args = (OverlayMode::Draw, PixelFormat::I420), setup = setup_overlay)]
#[bench::i420_sprite(args = (OverlayMode::Sprite, PixelFormat::I420), setup = setup_overlay)]
#[bench::bgr24_draw(args = (OverlayMode::Draw, PixelFormat::Bgr24), setup = setup_overlay)]
#[bench::bgr24_sprite(args = (OverlayMode::Sprite, PixelFormat::Bgr24), setup = setup_overlay)]
fn overlay(mut s: (Overlay, Frame)) -> (Overlay, Frame) {
    common::draw_overlay(&mut s.0, black_box(&mut s.1));
    s
}

#[library_benchmark]
#[bench::i420(args = (SCENE_W, SCENE_H), setup = common::scene)]
fn dedupe_hash(scene: Frame) -> u64 {
    black_box(DuplicateDetector::hash(black_box(&scene.view())))
}

/// (source, destination already at the right size, target format)
fn setup_convert(what: &str) -> (Frame, Frame, PixelFormat) {
    let scene = common::scene(SCENE_W, SCENE_H);
    let (src, to) = match what {
        "scene_i420_to_bgr24" => (scene, PixelFormat::Bgr24),
        "preview_i420_to_bgr24" => (common::preview_of(&scene), PixelFormat::Bgr24),
        "preview_gray8_to_i420" => (
            common::converted(&common::preview_of(&scene), PixelFormat::Gray8),
            PixelFormat::I420,
        ),
        other => panic!("unknown conversion {other}"),
    };
    let dst = common::converted(&src, to);
    (src, dst, to)
}

#[library_benchmark]
#[bench::scene_i420_to_bgr24(args = ("scene_i420_to_bgr24"), setup = setup_convert)]
#[bench::preview_i420_to_bgr24(args = ("preview_i420_to_bgr24"), setup = setup_convert)]
#[bench::preview_gray8_to_i420(args = ("preview_gray8_to_i420"), setup = setup_convert)]
fn convert(mut s: (Frame, Frame, PixelFormat)) -> (Frame, Frame, PixelFormat) {
    color::convert(black_box(&s.0.view()), &mut s.1, s.2).expect("convert");
    s
}

/// A warmed processor and the two frames it alternates between.
type ProcessState = (Processor, [Arc<Frame>; 2]);

fn setup_process(name: &str) -> ProcessState {
    let mut frames = common::scene_frames(SCENE_W, SCENE_H, 2)
        .into_iter()
        .map(Arc::new);
    let pair = [
        frames.next().expect("two frames"),
        frames.next().expect("two frames"),
    ];
    // Warm-up ends on the second frame, so the measured call on the first is not a duplicate.
    common::warm_processor(common::process_config(name), pair)
}

#[library_benchmark]
#[bench::planar(args = ("planar"), setup = setup_process)]
#[bench::bgr(args = ("bgr"), setup = setup_process)]
#[bench::baseline(args = ("baseline"), setup = setup_process)]
fn process(mut s: ProcessState) -> (ProcessState, (Processed, bool)) {
    let out = s.0.process(black_box(&s.1[0])).expect("process");
    (s, out)
}

library_benchmark_group!(name = resize_group, benchmarks = [resize]);
library_benchmark_group!(name = overlay_group, benchmarks = [overlay]);
library_benchmark_group!(name = dedupe_group, benchmarks = [dedupe_hash]);
library_benchmark_group!(name = color_group, benchmarks = [convert]);
library_benchmark_group!(name = process_group, benchmarks = [process]);

main!(
    library_benchmark_groups = [
        resize_group,
        overlay_group,
        dedupe_group,
        color_group,
        process_group
    ]
);
