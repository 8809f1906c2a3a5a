//! Wall-clock criterion benches of the per-frame stage kernels on realistic input (a 1600x1200
//! synthetic I420 scene, its packed BGR version, and 480x360 previews), one group per A/B pair.
//!
//! These answer "how long does one frame of this stage take here"; the instruction-count twin in
//! `instructions.rs` answers "did it get more expensive" without wall-clock noise. Run with
//! `cargo bench -p bench-scenarios --bench stages`; under `cargo test --benches` each runs once.
//!
//! CSV writing and the recording encoders are in `record.rs`.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pipeline::color;
use pipeline::dedupe::DuplicateDetector;
use pipeline::frame::{Frame, PixelFormat};
use pipeline::overlay::OverlayMode;
use pipeline::preview::ResizeFilter;

use common::{SCENE_H, SCENE_W};

/// Short enough that the whole target runs in well under two minutes on a shared 2-core box;
/// the kernels are 0.01-10 ms, so 20 samples of 2 s still give tight medians.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

fn pixels(f: &Frame) -> Throughput {
    Throughput::Elements((f.width() * f.height()) as u64)
}

fn resize(c: &mut Criterion) {
    let scene = common::scene(SCENE_W, SCENE_H);
    let scene_bgr = common::converted(&scene, PixelFormat::Bgr24);
    for (label, src) in [("i420", &scene), ("bgr24", &scene_bgr)] {
        let mut g = c.benchmark_group(format!("resize_{label}_1600x1200_to_480x360"));
        g.throughput(pixels(src));
        for (name, filter) in [
            ("area", ResizeFilter::Area),
            ("bilinear", ResizeFilter::Bilinear),
        ] {
            let (w, h) = common::preview_size(src.width(), src.height());
            let (mut scaler, mut dst) = common::warm_scaler(filter, src);
            g.bench_function(name, |b| {
                b.iter(|| {
                    scaler
                        .scale(black_box(&src.view()), &mut dst, w, h)
                        .expect("scale")
                })
            });
        }
        g.finish();
    }
}

fn overlay(c: &mut Criterion) {
    let preview = common::preview_of(&common::scene(SCENE_W, SCENE_H));
    let preview_bgr = common::converted(&preview, PixelFormat::Bgr24);
    for (label, frame) in [("i420", &preview), ("bgr24", &preview_bgr)] {
        let mut g = c.benchmark_group(format!("overlay_marker_hud_{label}_480x360"));
        for (name, mode) in [("draw", OverlayMode::Draw), ("sprite", OverlayMode::Sprite)] {
            // Drawing over the previous frame's overlay costs the same as over fresh pixels:
            // the blend does not depend on what is underneath.
            let mut dst = frame.clone();
            let mut ov = common::warm_overlay(mode, &mut dst);
            g.bench_function(name, |b| {
                b.iter(|| common::draw_overlay(&mut ov, black_box(&mut dst)))
            });
        }
        g.finish();
    }
}

fn dedupe(c: &mut Criterion) {
    let scene = common::scene(SCENE_W, SCENE_H);
    let mut g = c.benchmark_group("dedupe_hash");
    g.throughput(pixels(&scene));
    g.bench_function("i420_1600x1200", |b| {
        b.iter(|| DuplicateDetector::hash(black_box(&scene.view())))
    });
    g.finish();
}

fn colour(c: &mut Criterion) {
    let scene = common::scene(SCENE_W, SCENE_H);
    let preview = common::preview_of(&scene);
    let preview_gray = common::converted(&preview, PixelFormat::Gray8);
    let cases = [
        ("i420_to_bgr24", &scene, PixelFormat::Bgr24),
        ("i420_to_bgr24", &preview, PixelFormat::Bgr24),
        ("gray8_to_i420", &preview_gray, PixelFormat::I420),
    ];
    let mut g = c.benchmark_group("color_convert");
    for (name, src, to) in cases {
        let mut dst = common::converted(src, to);
        let size = format!("{}x{}", src.width(), src.height());
        g.throughput(pixels(src));
        g.bench_function(BenchmarkId::new(name, size), |b| {
            b.iter(|| color::convert(black_box(&src.view()), &mut dst, to).expect("convert"))
        });
    }
    g.finish();
}

fn process(c: &mut Criterion) {
    let frames = common::scene_frames(SCENE_W, SCENE_H, 2);
    let mut g = c.benchmark_group("process_i420_1600x1200");
    g.throughput(pixels(&frames[0]));
    for name in ["planar", "bgr", "baseline"] {
        let pair = [Arc::new(frames[0].clone()), Arc::new(frames[1].clone())];
        let (mut p, pair) = common::warm_processor(common::process_config(name), pair);
        let mut k = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                // alternate two different frames, as a moving scene delivers them
                k ^= 1;
                p.process(black_box(&pair[k])).expect("process")
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = stages;
    config = config();
    targets = resize, overlay, dedupe, colour, process
}
criterion_main!(stages);
