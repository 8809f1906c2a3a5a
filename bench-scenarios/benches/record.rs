//! Wall-clock criterion benches of recording: CSV rows with a write per row (the plan's current
//! code) against one write per 30 rows (plan 1.2), and one 1600x1200 frame through each encoder
//! backend (plan 2.4: the ffmpeg subprocess against libavcodec in-process).
//!
//! Run with `cargo bench -p bench-scenarios --bench record` (needs ffmpeg; ci/setup installs it).
//! Under `cargo test --benches` each runs once.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pipeline::frame::PixelFormat;
use pipeline::profile::Counters;
use pipeline::record::csv_files::CsvFiles;
use pipeline::record::encoder::{self, EncoderKind, EncoderSpec};
use pipeline::sensors::GazeSample;
use pipeline::time::UnixNanos;

use common::{SCENE_H, SCENE_W};

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

fn csv_rows(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("eyetrack-bench-csv-{}", std::process::id()));
    let mut g = c.benchmark_group("csv_gaze_row");
    g.throughput(Throughput::Elements(1));
    for flush_every in [1u32, 30] {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut files = CsvFiles::create(&dir, flush_every).expect("csv files");
        let counters = Counters::default();
        let mut i = 0i64;
        g.bench_with_input(
            BenchmarkId::new("flush_every", flush_every),
            &flush_every,
            |b, _| {
                b.iter(|| {
                    i += 5_000_000;
                    let s = GazeSample {
                        time: UnixNanos(1_795_000_000_000_000_000 + i),
                        x: 812.25,
                        y: 604.5,
                        worn: true,
                        pupil_mm: None,
                    };
                    files.write_gaze(black_box(&s), &counters).expect("write");
                })
            },
        );
        files.sync_all(&counters).expect("sync");
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn encoders(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("eyetrack-bench-enc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Two different frames so the encoder sees change, as it would from a camera.
    let frames = common::scene_frames(SCENE_W, SCENE_H, 2);
    let spec = EncoderSpec {
        width: SCENE_W,
        height: SCENE_H,
        fps: 30,
        input: PixelFormat::I420,
        crf: 23,
        threads: None,
    };
    let mut g = c.benchmark_group("encode_1600x1200_i420");
    g.throughput(Throughput::Elements(1));
    for kind in [EncoderKind::Ffmpeg, EncoderKind::Libav] {
        let path = dir.join(format!("{}.mkv", kind.name()));
        let mut enc = encoder::open(kind, &spec, &path).expect("encoder opens");
        let mut n = 0usize;
        // For the subprocess this is the time to hand a frame over once its pipe is full, i.e.
        // ffmpeg's own per-frame encode time in steady state, plus the pipe copy.
        g.bench_function(BenchmarkId::new("encoder", kind.name()), |b| {
            b.iter(|| {
                n += 1;
                enc.encode(&frames[n % 2].view()).expect("encode");
            })
        });
        enc.finish().expect("finish");
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = record;
    config = config();
    targets = csv_rows, encoders
}
criterion_main!(record);
