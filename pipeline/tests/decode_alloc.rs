//! Proves decoding allocates nothing per frame on our side: the wrappers, the bitstream checks
//! and the copy into pooled frames run under a counting global allocator. (libavcodec and
//! openh264 allocate with the C allocator, which this does not see; see README, "Decoder".)

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use pipeline::decode::annexb::split_access_units;
use pipeline::decode::{self, DecoderKind, DecoderOptions};
use pipeline::frame::FramePool;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, ALLOCS};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is global, so the tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// Decodes the clip once to warm up, then counts allocations over a second pass of the same
/// clip (60 pictures, two IDRs with their repeated SPS/PPS), consuming each frame at once.
fn steady_state_allocations(kind: DecoderKind, options: DecoderOptions) -> (u64, u64) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/h264/testsrc2-320x180-main.h264"
    );
    let bytes = std::fs::read(path).unwrap();
    let aus: Vec<&[u8]> = split_access_units(&bytes).collect();
    let mut dec = decode::open::<u64>(kind, &options).unwrap();
    let mut pool = FramePool::new(3);
    let mut out = Vec::with_capacity(4);
    let mut token = 0u64;
    let mut pass = |dec: &mut Box<dyn decode::Decoder<u64>>| {
        for au in &aus {
            token += 1;
            dec.decode(au, token, &mut pool, &mut out).unwrap();
            out.clear();
        }
    };
    let start = ALLOCS.load(Ordering::Relaxed);
    pass(&mut dec);
    let before = ALLOCS.load(Ordering::Relaxed);
    // the counter sees our side: the first pass fills the frame pool and parses the SPS
    assert!(before > start, "{kind}: warm-up allocated nothing?");
    let frames_before = dec.stats().frames;
    pass(&mut dec);
    let after = ALLOCS.load(Ordering::Relaxed);
    (after - before, dec.stats().frames - frames_before)
}

#[test]
fn decoding_allocates_nothing_per_frame_on_our_side() {
    for kind in DecoderKind::ALL {
        for low_delay in [false, true] {
            let options = DecoderOptions {
                low_delay,
                ..DecoderOptions::default()
            };
            let (allocs, frames) = steady_state_allocations(kind, options);
            assert_eq!(frames, 60, "{kind}");
            assert_eq!(
                allocs, 0,
                "{kind}: {allocs} allocations over {frames} frames"
            );
        }
    }
}
