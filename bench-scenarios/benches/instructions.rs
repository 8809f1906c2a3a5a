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
use pipeline::decode::{self, Decoded, DecoderKind, DecoderOptions};
use pipeline::dedupe::DuplicateDetector;
use pipeline::frame::FramePool;
use pipeline::frame::{Frame, PixelFormat};
use pipeline::overlay::{Overlay, OverlayMode};
use pipeline::preview::{ResizeFilter, Scaler};
use pipeline::process::{Processed, Processor};
use pipeline::profile::Counters;
use pipeline::record::csv_files::CsvFiles;
use pipeline::sensors::GazeSample;
use pipeline::time::UnixNanos;

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

/// A decoder that has decoded the clip's first 10 access units (its pool and internal buffers
/// are warm), and the 11th (a P picture) to decode in the measured call.
struct Decode {
    decoder: Box<dyn decode::Decoder<u32>>,
    pool: FramePool,
    out: Vec<Decoded<u32>>,
    next: Vec<u8>,
}

fn setup_decode(kind: DecoderKind) -> Decode {
    let clip = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/h264/testsrc2-320x180-main.h264"
    );
    let bytes = std::fs::read(clip).expect("committed H.264 clip");
    let aus: Vec<&[u8]> = decode::annexb::split_access_units(&bytes).collect();
    let opts = DecoderOptions {
        threads: 1,
        low_delay: true,
        slice_threads: false,
        zero_copy: false,
    };
    let mut decoder = decode::open::<u32>(kind, &opts).expect("decoder");
    let mut pool = FramePool::new(4);
    let mut out = Vec::new();
    for (i, au) in aus.iter().take(10).enumerate() {
        decoder
            .decode(au, i as u32, &mut pool, &mut out)
            .expect("clean clip");
        out.clear();
    }
    Decode {
        decoder,
        pool,
        out,
        next: aus[10].to_vec(),
    }
}

#[library_benchmark]
#[bench::libav_320x180(args = (DecoderKind::Libav), setup = setup_decode)]
#[bench::openh264_320x180(args = (DecoderKind::Openh264), setup = setup_decode)]
fn decode_frame(mut s: Decode) -> Decode {
    s.decoder
        .decode(black_box(&s.next), 10, &mut s.pool, &mut s.out)
        .expect("decode");
    s
}

/// CSV files in a fresh temporary folder and the gaze rows to write.
fn setup_csv(flush_every: u32) -> (CsvFiles, Counters, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = CsvFiles::create(dir.path(), flush_every).expect("csv files");
    (files, Counters::default(), dir)
}

// 30 gaze rows: formatting plus one write(2) (flush every 30) or 30 (flush every row). The
// kernel's side of the write is not in the count; the user-space cost of the syscalls is.
#[library_benchmark]
#[bench::flush_every_1(args = (1), setup = setup_csv)]
#[bench::flush_every_30(args = (30), setup = setup_csv)]
fn csv_gaze_rows(
    mut s: (CsvFiles, Counters, tempfile::TempDir),
) -> (CsvFiles, Counters, tempfile::TempDir) {
    for i in 0..30i64 {
        let g = GazeSample {
            time: UnixNanos(1_795_000_000_000_000_000 + i * 5_000_000),
            x: 812.25,
            y: 604.5,
            worn: true,
            pupil_mm: None,
        };
        s.0.write_gaze(black_box(&g), &s.1).expect("write");
    }
    s
}

library_benchmark_group!(name = resize_group, benchmarks = [resize]);
library_benchmark_group!(name = decode_group, benchmarks = [decode_frame]);
library_benchmark_group!(name = csv_group, benchmarks = [csv_gaze_rows]);
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
        process_group,
        decode_group,
        csv_group
    ]
);
