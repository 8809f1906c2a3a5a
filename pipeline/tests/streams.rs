//! The optional streams in-process: a fixture synthesized with eye video and audio replays
//! through the same assembler the live client uses; eye pictures come out only while
//! something records, audio blocks carry 8 kHz PCM on the device clock, and streams switched
//! off at run time cost no items. Once warm, neither allocates per picture or block.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pipeline::coordinator::Control;
use pipeline::decode::DecoderKind;
use pipeline::fixture::synth::{synth, SynthConfig};
use pipeline::profile::{Counters, StageProfile};
use pipeline::source::neon::{FixtureConfig, FixtureSource, LossPolicy};
use pipeline::source::{Source, SourceItem};
use pipeline::streams::{Stream, StreamSet};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, ALLOCS};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("streams.etfx");
    let sum = synth(&SynthConfig {
        output: out.clone(),
        duration: Duration::from_secs(2),
        width: 320,
        height: 240,
        fps: 30.0,
        seed: 5,
        bitrate_kbps: 600,
        keyframe_every: None,
        start_unix_ns: Some(1_767_225_600_000_000_000),
        made_by: "test".into(),
        eyes: true,
        audio: true,
    })
    .unwrap();
    assert_eq!(sum.access_units, 60);
    assert!(sum.eye_packets >= 400, "{sum:?}");
    // 2 s at 8 kHz: 15 full frames plus the encoder's flush
    assert!((15..=18).contains(&sum.audio_packets), "{sum:?}");
    out
}

#[derive(Default, Debug)]
struct Seen {
    frames: u64,
    eyes: u64,
    eye_size: (usize, usize),
    audio_blocks: u64,
    audio_samples: u64,
    audio_rate: u32,
    gaze: u64,
    first_audio_ns: Option<i64>,
    first_frame_ns: Option<i64>,
}

fn replay(path: &std::path::Path, streams: StreamSet, control: &Arc<Control>) -> Seen {
    let mut src = FixtureSource::open(FixtureConfig {
        path: path.to_owned(),
        paced: false,
        duration: None,
        decoder: DecoderKind::Libav,
        loss: LossPolicy::Conceal,
        decode: Default::default(),
        streams,
    })
    .unwrap();
    src.bind(&Arc::new(Counters::default()), control);
    let mut profile = StageProfile::new(false);
    let mut seen = Seen::default();
    while let Some(item) = src.next_item(&mut profile).unwrap() {
        match item {
            SourceItem::Frame { meta, .. } => {
                seen.frames += 1;
                seen.first_frame_ns.get_or_insert(meta.device_time.0);
            }
            SourceItem::EyeFrame { frame, .. } => {
                seen.eyes += 1;
                seen.eye_size = (frame.width(), frame.height());
            }
            SourceItem::Audio { block, meta } => {
                seen.audio_blocks += 1;
                seen.audio_samples += block.frames() as u64;
                seen.audio_rate = block.sample_rate;
                seen.first_audio_ns.get_or_insert(meta.device_time.0);
            }
            SourceItem::Gaze(_) => seen.gaze += 1,
            _ => {}
        }
    }
    seen
}

/// Once warm, eye pictures and audio blocks cost no allocation on our side (pooled frames and
/// blocks; libav's own buffers are its pools). Eye events are the documented exception.
fn steady_state_allocates_nothing(path: &std::path::Path, streams: StreamSet) {
    let mut src = FixtureSource::open(FixtureConfig {
        path: path.to_owned(),
        paced: false,
        duration: None,
        decoder: DecoderKind::Libav,
        loss: LossPolicy::Conceal,
        decode: Default::default(),
        streams,
    })
    .unwrap();
    let control = Arc::new(Control::default());
    control.streams.apply(&streams);
    control.recording.store(true, Ordering::Relaxed);
    src.bind(&Arc::new(Counters::default()), &control);
    src.reserve_in_flight(4);
    let mut profile = StageProfile::new(true);
    let (mut frames, mut eyes, mut blocks, mut allocs) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let before = ALLOCS.load(Ordering::Relaxed);
        let Some(item) = src.next_item(&mut profile).unwrap() else {
            break;
        };
        let n = ALLOCS.load(Ordering::Relaxed) - before;
        let warm = frames >= 30;
        match item {
            SourceItem::Frame { .. } => frames += 1,
            SourceItem::EyeFrame { .. } => eyes += u64::from(warm),
            SourceItem::Audio { .. } => blocks += u64::from(warm),
            SourceItem::Event { .. } => continue,
            _ => {}
        }
        if warm {
            allocs += n;
        }
    }
    assert!(
        eyes > 150 && blocks > 5,
        "{eyes} eye pictures, {blocks} blocks"
    );
    // at most a few buffers growing to a new largest unit, never one per picture or block
    assert!(
        allocs <= 4,
        "{allocs} allocations over {eyes} eye pictures and {blocks} blocks"
    );
}

#[test]
fn eyes_and_audio_replay_through_the_assembler() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    steady_state_allocates_nothing(
        &path,
        StreamSet {
            eyes: true,
            audio: true,
            ..StreamSet::default()
        },
    );
    let all = StreamSet {
        eyes: true,
        audio: true,
        ..StreamSet::default()
    };

    // Recording: eye pictures are decoded.
    let control = Arc::new(Control::default());
    control.streams.apply(&all);
    control.recording.store(true, Ordering::Relaxed);
    let s = replay(&path, all, &control);
    assert_eq!(s.frames, 60);
    assert!((395..=400).contains(&s.eyes), "{s:?}");
    assert_eq!(s.eye_size, (384, 192));
    assert_eq!(s.audio_rate, 8000);
    assert_eq!(s.audio_samples, s.audio_blocks * 1024);
    assert!(s.audio_blocks >= 15, "{s:?}");
    // audio and video share the device clock: both start at fixture time zero
    let skew = s.first_audio_ns.unwrap() - s.first_frame_ns.unwrap();
    assert!(skew.abs() < 1_000_000, "audio starts {skew} ns from video");

    // Not recording, no eye preview: the eye video is not decoded.
    let control = Arc::new(Control::default());
    control.streams.apply(&all);
    let s = replay(&path, all, &control);
    assert_eq!((s.frames, s.eyes), (60, 0));
    assert!(s.audio_blocks >= 15);

    // Switched off at run time: no gaze and no audio items.
    control.streams.set(Stream::Gaze, false);
    control.streams.set(Stream::Audio, false);
    let s = replay(&path, all, &control);
    assert_eq!((s.gaze, s.audio_blocks), (0, 0));
    assert_eq!(s.frames, 60);

    // Not set up (the defaults): the fixture's eye and audio packets are skipped.
    let control = Arc::new(Control::default());
    control.recording.store(true, Ordering::Relaxed);
    let s = replay(&path, StreamSet::default(), &control);
    assert_eq!((s.eyes, s.audio_blocks), (0, 0));
    assert!(s.gaze > 0);

    // Asking for a stream the fixture lacks is an error that says so.
    let plain = dir.path().join("plain.etfx");
    synth(&SynthConfig {
        output: plain.clone(),
        duration: Duration::from_millis(500),
        width: 160,
        height: 120,
        fps: 30.0,
        seed: 1,
        bitrate_kbps: 300,
        keyframe_every: None,
        start_unix_ns: Some(1_767_225_600_000_000_000),
        made_by: "test".into(),
        eyes: false,
        audio: false,
    })
    .unwrap();
    let err = FixtureSource::open(FixtureConfig {
        path: plain,
        paced: false,
        duration: None,
        decoder: DecoderKind::Libav,
        loss: LossPolicy::Conceal,
        decode: Default::default(),
        streams: all,
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no eyes stream"), "{err}");
}
