//! Proves the Neon stream assembly allocates nothing per frame on our side once warm: the
//! committed fixture replayed through `FixtureSource` (fixture reader, RTP/RTCP parsing,
//! sequence tracking, depacketizer, decoder wrapper, SR stamping, pooled frames) under a
//! counting global allocator. Only a few buffer growths remain after warm-up, never one per
//! frame. Eye events are the one exception by design (a few per second, each
//! an owned detail string for events.csv), so they are counted and allowed for.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use pipeline::decode::DecoderKind;
use pipeline::profile::StageProfile;
use pipeline::source::neon::{FixtureConfig, FixtureSource, LossPolicy};
use pipeline::source::{Source, SourceItem};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, ALLOCS};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn replay_allocates_nothing_per_frame_once_warm() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/neon/synthetic-12s.etfx");
    for decoder in [DecoderKind::Libav, DecoderKind::Openh264] {
        let mut src = FixtureSource::open(FixtureConfig {
            path: path.clone(),
            paced: false,
            duration: None,
            decoder,
            // openh264 cannot conceal: it gets its own default (wait-idr).
            loss: LossPolicy::default_for(decoder),
            decode: Default::default(),
            streams: Default::default(),
        })
        .unwrap();
        src.reserve_in_flight(4);
        let mut profile = StageProfile::new(true);
        // Allocations made by the calls that returned frames or samples (the event packet is
        // processed in the very call that returns its event, so events are apart).
        let (mut frames, mut events, mut other_allocs, mut event_allocs) = (0u64, 0u64, 0u64, 0u64);
        loop {
            let before = ALLOCS.load(Ordering::Relaxed);
            let Some(item) = src.next_item(&mut profile).unwrap() else {
                break;
            };
            let n = ALLOCS.load(Ordering::Relaxed) - before;
            // Warm: the first three GOPs grew the buffers and the histograms.
            let warm = frames >= 90;
            match item {
                SourceItem::Frame { .. } => frames += 1,
                SourceItem::Event { .. } => {
                    if warm {
                        events += 1;
                        event_allocs += n;
                    }
                    continue;
                }
                _ => {}
            }
            if warm {
                other_allocs += n;
            }
        }
        eprintln!(
            "{decoder}: {other_allocs} allocations over {} frames and their samples; \
             {event_allocs} for {events} eye events",
            frames - 90
        );
        assert!(frames >= 340, "{decoder}: {frames} frames");
        // Not per frame: at most a few buffers growing once more to a new largest access unit
        // (the depacketizer rotates a few AU buffers; each grows to the biggest it has held).
        assert!(other_allocs <= 3, "{decoder}: {other_allocs}");
        assert!(event_allocs <= 3 * events, "{decoder}");
    }
}
