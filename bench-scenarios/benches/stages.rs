//! Wall-clock criterion benches of the per-frame stage kernels on realistic input (a 1600x1200
//! synthetic I420 scene, its packed BGR version, and 480x360 previews), one group per A/B pair.
//!
//! These answer "how long does one frame of this stage take here"; the instruction-count twin in
//! `instructions.rs` answers "did it get more expensive" without wall-clock noise. Run with
//! `cargo bench -p bench-scenarios --bench stages`; under `cargo test --benches` each runs once.
//!
//! `decode` times one access unit of the Neon-like 1600x1200 Main-profile 5 Mbit/s stream
//! (encoded by ffmpeg on first use, see `bench_scenarios::h264clip`) per decoder backend,
//! including the copy into a pooled frame.
//!
//! CSV writing and the recording encoders are in `record.rs`.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bench_scenarios::h264clip::{self, NEON_SCENE};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pipeline::color;
use pipeline::decode::{self, annexb::split_access_units, DecoderKind, DecoderOptions};
use pipeline::dedupe::DuplicateDetector;
use pipeline::frame::{Frame, FramePool, PixelFormat};
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

fn decode(c: &mut Criterion) {
    let path = h264clip::clip(&NEON_SCENE).expect("encoding the bench clip with ffmpeg");
    let bytes = std::fs::read(&path).expect("reading the bench clip");
    let aus: Vec<&[u8]> = split_access_units(&bytes).collect();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(
        u64::from(NEON_SCENE.width) * u64::from(NEON_SCENE.height),
    ));
    let cases = [
        ("libav", DecoderKind::Libav, 1),
        ("openh264", DecoderKind::Openh264, 1),
        ("libav_2_threads", DecoderKind::Libav, 2),
    ];
    for (name, kind, threads) in cases {
        let options = DecoderOptions {
            threads,
            low_delay: true,
            slice_threads: false,
            zero_copy: false,
        };
        let mut dec = decode::open::<usize>(kind, &options).expect("decoder opens");
        let mut pool = FramePool::new(2 + threads);
        let mut out = Vec::with_capacity(4);
        // one access unit per iteration, the clip looped (it starts with SPS, PPS and an IDR,
        // so the loop is a valid stream), as a live stream delivers them
        let mut next = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                dec.decode(black_box(aus[next]), next, &mut pool, &mut out)
                    .expect("decode");
                next = (next + 1) % aus.len();
                out.clear();
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = stages;
    config = config();
    targets = resize, overlay, dedupe, colour, process, decode
}
criterion_main!(stages);
