//! The decode toggles on the committed 1600x1200 fixture through the real pipeline: fast
//! decode only while nothing records, reduced decode (IDR thumbnails) only while the preview is
//! hidden and nothing records, and full decoding again once either changes. Offline, so the
//! counts are exact.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pipeline::coordinator::{Control, PipelineConfig, RunOutcome, RunningPipeline};
use pipeline::decode::DecoderKind;
use pipeline::source::neon::{DecodePolicy, FixtureConfig, FixtureSource, LossPolicy};
use pipeline::streams::StreamSet;
use pipeline::toggles::{DecodeThreads, Toggles};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/neon/synthetic-12s.etfx"
);
/// 12 s at 30 fps, an IDR every 15 frames (fixtures/README.md).
const FRAMES: u64 = 360;
const IDRS: u64 = 24;

fn run(control: Control, decode: DecodePolicy) -> RunOutcome {
    let source = FixtureSource::open(FixtureConfig {
        path: FIXTURE.into(),
        paced: false,
        duration: None,
        decoder: DecoderKind::Libav,
        loss: LossPolicy::Conceal,
        decode,
        streams: StreamSet::default(),
    })
    .unwrap();
    let cfg = PipelineConfig {
        toggles: Toggles::default(),
        live: false,
        ..PipelineConfig::default()
    };
    RunningPipeline::start(Box::new(source), cfg, Arc::new(control))
        .unwrap()
        .wait()
}

fn all_modes() -> DecodePolicy {
    DecodePolicy {
        threads: DecodeThreads::One,
        fast_preview: true,
        reduced: true,
        zero_copy: true,
    }
}

#[test]
fn visible_preview_decodes_every_picture_fast() {
    let out = run(Control::default(), all_modes());
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.counters.frames_acquired, FRAMES);
    assert_eq!(out.counters.net_fast_decoded, FRAMES);
    assert_eq!(out.counters.net_reduced_not_decoded, 0);
}

#[test]
fn recording_decodes_fully() {
    let control = Control::default();
    control.recording.store(true, Ordering::Relaxed);
    control.preview_visible.store(false, Ordering::Relaxed);
    let out = run(control, all_modes());
    assert_eq!(out.counters.frames_acquired, FRAMES);
    assert_eq!(out.counters.net_fast_decoded, 0);
    assert_eq!(out.counters.net_reduced_not_decoded, 0);
}

#[test]
fn hidden_preview_decodes_only_idr_thumbnails_and_processes_them_all() {
    let control = Control::default();
    control.preview_visible.store(false, Ordering::Relaxed);
    let out = run(control, all_modes());
    // One IDR every 15 frames is sparser than the thumbnail rate (one per 10): all of them.
    assert_eq!(out.counters.frames_acquired, IDRS, "{:?}", out.counters);
    assert_eq!(out.counters.net_reduced_not_decoded, FRAMES - IDRS);
    assert_eq!(out.counters.frames_processed, IDRS);
    assert_eq!(out.counters.reduced_skipped, 0);
}

#[test]
fn without_the_toggles_a_hidden_preview_still_decodes_everything() {
    let control = Control::default();
    control.preview_visible.store(false, Ordering::Relaxed);
    let out = run(control, DecodePolicy::default());
    assert_eq!(out.counters.frames_acquired, FRAMES);
    assert_eq!(out.counters.net_fast_decoded, 0);
    assert_eq!(out.counters.net_reduced_not_decoded, 0);
    // Reduced processing alone: every 10th frame.
    assert_eq!(out.counters.frames_processed, FRAMES / 10);
}

#[test]
fn lent_pictures_look_like_copied_ones() {
    use pipeline::profile::{Counters, StageProfile};
    use pipeline::source::{Source, SourceItem};
    let open = |zero_copy| {
        let mut s = FixtureSource::open(FixtureConfig {
            path: FIXTURE.into(),
            paced: false,
            duration: None,
            decoder: DecoderKind::Libav,
            loss: LossPolicy::Conceal,
            decode: DecodePolicy {
                zero_copy,
                ..DecodePolicy::default()
            },
            streams: StreamSet::default(),
        })
        .unwrap();
        s.bind(
            &Arc::new(Counters::default()),
            &Arc::new(Control::default()),
        );
        s
    };
    let (mut lent, mut copied) = (open(true), open(false));
    let mut profile = StageProfile::new(false);
    let mut next = |s: &mut FixtureSource| loop {
        match s.next_item(&mut profile).unwrap() {
            Some(SourceItem::Frame { frame, .. }) => break Some(frame),
            Some(_) => continue,
            None => break None,
        }
    };
    let mut frames = 0;
    let mut held = Vec::new();
    while let (Some(a), Some(b)) = (next(&mut lent), next(&mut copied)) {
        assert!(a.is_lent() && !b.is_lent());
        // libavcodec pads rows to its SIMD alignment (1600 -> 1664 bytes with x86's 64-byte
        // alignment; none on aarch64, where 1600 is already aligned); the copy is tight.
        assert!(a.plane(0).stride >= b.plane(0).stride);
        assert_eq!(b.plane(0).stride, b.plane(0).width);
        for i in 0..3 {
            let (pa, pb) = (a.plane(i), b.plane(i));
            assert_eq!((pa.width, pa.height), (pb.width, pb.height));
            for y in 0..pa.height {
                assert_eq!(pa.row(y), pb.row(y), "frame {frames} plane {i} row {y}");
            }
        }
        // Holding some frames a while must not let the decoder reuse their buffers.
        if frames % 30 == 0 {
            held.push((Arc::clone(&a), a.plane(0).row(600).to_vec()));
        }
        frames += 1;
    }
    assert_eq!(frames, FRAMES);
    for (f, row) in &held {
        assert_eq!(f.plane(0).row(600), &row[..]);
    }
    // A clone owns its pixels.
    let (f, _) = &held[0];
    let c = (**f).clone();
    assert!(!c.is_lent());
    assert_eq!(c.plane(0).row(600), f.plane(0).row(600));
}

#[test]
fn frame_threads_decode_the_same_pictures() {
    let out = run(
        Control::default(),
        DecodePolicy {
            threads: DecodeThreads::Frame(2),
            ..DecodePolicy::default()
        },
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.counters.frames_acquired, FRAMES);
    assert_eq!(out.counters.net_decode_errors, 0);
}
