//! Stream assembly shared by the live Neon client and the in-process fixture replay: raw RTP and
//! RTCP packets of each sensor in, [`SourceItem`]s (decoded frames, gaze, IMU, eye events) out.
//!
//! The chain per sensor is the wire layer's (protocol doc sections 5-6, checklist 10 "Rust
//! client"): [`SeqUnwrapper`] counts loss and drops duplicates and late packets, the world stream
//! goes through the H.264 [`Depacketizer`] (loss drops the access unit and resumes at the next
//! IDR) into a [`Decoder`] that fills pooled I420 frames, and gaze and frames wait in a
//! [`StampQueue`] until their stream's first sender report gives them a device time. IMU and eye
//! events carry their own times. Nothing here knows about sockets or files, so the replay runs
//! exactly the code the live client runs.
//!
//! No reorder buffer: retina's UDP transport already drops out-of-order packets before we see
//! them, TCP cannot reorder, and a fixture replays the recorded arrival order; the unwrapper
//! still counts (and drops) whatever arrives late.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::extra::{AudioStream, ExtraStats, EyesStream};
use super::intake::{decode_into, FrameToken, HostClock, RtpIn};
pub use super::intake::{AssembleError, Sensor, StreamSetup};
use crate::decode::{self, Decoded, Decoder, DecoderKind, DecoderOptions};
use crate::fixture::PacketKind;
use crate::frame::{FramePool, PixelFormat};
use crate::neon::clock::{ClockRate, StampQueue};
use crate::neon::events::EyeEvent;
use crate::neon::gaze::NeonGaze;
use crate::neon::h264::{Depacketizer, H264Error};
use crate::neon::imu::ImuPacket;
use crate::neon::rtcp::{self, RtcpPacket};
use crate::packet::FrameMeta;
use crate::profile::{Counters, Phase, StageProfile};
use crate::run_control::Control;
use crate::source::{AccessUnitSink, SourceItem};
use crate::time::{MonoNanos, UnixNanos};
use crate::toggles::DecodeThreads;

/// The Neon's nominal scene-camera rate (protocol doc 4.1), used when neither the SPS (VUI
/// timing) nor the SDP (`a=framerate`) states one.
pub const NOMINAL_FPS: f64 = 30.0;

/// Decoded frames that may wait for the world stream's first sender report. The phone sends an
/// SR about every second and the simulator one before the first packet, so this is rarely
/// used; when it overflows the oldest frames go (counted), they are stale anyway.
const WORLD_PRE_SR_FRAMES: usize = 8;
/// Gaze samples that may wait for the gaze stream's first SR: two seconds at 200 Hz.
const GAZE_PRE_SR_SAMPLES: usize = 400;
/// What the world stream does after losing packets of a picture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossPolicy {
    /// Drop the damaged picture, decode the next ones with the decoder's error concealment
    /// (libavcodec's; counted as concealed) until the next IDR repairs the picture. Frames
    /// keep flowing under steady loss, as in common RTSP players and the official client.
    #[default]
    Conceal,
    /// Drop everything until the next IDR (at most a second on the Neon): no damaged picture
    /// is ever shown, but at a few % packet loss almost none is shown at all.
    WaitIdr,
}

impl LossPolicy {
    /// What a run gets when it does not choose: conceal where the decoder can (libav), else
    /// wait-idr, which is what openh264 does after a loss anyway.
    pub fn default_for(decoder: DecoderKind) -> Self {
        match decoder {
            DecoderKind::Libav => LossPolicy::Conceal,
            DecoderKind::Openh264 => LossPolicy::WaitIdr,
        }
    }

    /// Refuses a policy the decoder cannot follow: openh264 reports a lost reference as an
    /// error and shows nothing until the next IDR, so "conceal" would silently be wait-idr.
    pub fn check(self, decoder: DecoderKind) -> Result<(), String> {
        if self == LossPolicy::Conceal && decoder == DecoderKind::Openh264 {
            return Err(
                "--loss-policy conceal needs --decoder libav: openh264 has no error \
                        concealment and waits for the next IDR after a loss (use --loss-policy \
                        wait-idr, or leave it unset)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Running totals across reconnects, published into [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AssemblerStats {
    pub rtp_packets: u64,
    /// Sequence numbers never received (RTP loss; late arrivals give it back).
    pub rtp_lost: u64,
    /// Duplicates and packets that came after later ones (dropped).
    pub rtp_out_of_order: u64,
    /// Datagrams that are not RTP/RTCP, and world packets the depacketizer rejected.
    pub malformed_packets: u64,
    /// Access units dropped because of loss or a malformed packet.
    pub broken_access_units: u64,
    /// Complete access units skipped while waiting for an IDR (after a loss or at start).
    pub skipped_access_units: u64,
    pub decode_errors: u64,
    /// Gaze payloads of an unknown length (skipped, the stream goes on).
    pub unknown_gaze: u64,
    /// Eye-event payloads of an unknown type or size (skipped).
    pub unknown_events: u64,
    /// Eye events forwarded (fixations, saccades, onsets, blinks; keepalives not counted).
    pub eye_events: u64,
    /// Frames or gaze samples dropped because their stream's first SR was too late.
    pub dropped_before_sr: u64,
    /// Largest interval between consecutive frames' arrival (ns).
    pub max_frame_gap_ns: u64,
    /// Frames decoded after a loss and before the next IDR ([`LossPolicy::Conceal`]).
    pub concealed_frames: u64,
    /// The eye video and audio (`--eyes on`, `--audio on`).
    pub extra: ExtraStats,
    /// Packets of streams switched off at run time, dropped unread.
    pub switched_off_packets: u64,
    /// World access units decoded without the loop filter (`--fast-decode`).
    pub fast_decoded: u64,
    /// World access units depacketized but not decoded (`--reduced-decode`).
    pub reduced_not_decoded: u64,
}

/// How the world stream is decoded beyond the decoder kind (the decode toggles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodePolicy {
    pub threads: DecodeThreads,
    /// Decode without the loop filter while nothing records ([`Decoder::set_fast`]).
    pub fast_preview: bool,
    /// While the preview is hidden and nothing records, decode only IDRs, at most one per
    /// [`crate::run_control::REDUCED_EVERY`] frames (plan 1.6 for the decoder).
    pub reduced: bool,
    /// Pictures stay in libavcodec's buffers instead of being copied into the pool
    /// ([`DecoderOptions::zero_copy`]).
    pub zero_copy: bool,
}

/// What the world decoder does with the next access unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecodeMode {
    Full,
    Fast,
    IdrOnly,
}

struct World {
    rtp: RtpIn,
    depack: Depacketizer,
    decoder: Box<dyn Decoder<FrameToken>>,
    stamp: StampQueue<Decoded<FrameToken>>,
    decoded: Vec<Decoded<FrameToken>>,
    pool: FramePool,
    /// SSRC of the latest packet (the token of an access unit flushed at the end).
    ssrc: u32,
    /// Device time of the first frame ever (camera index 0), kept across reconnects.
    first_time: Option<UnixNanos>,
    last_index: Option<u64>,
    last_received: Option<MonoNanos>,
    /// An access unit was left undecoded: the decoder's references are gone until an IDR.
    needs_idr: bool,
    /// RTP time of the last IDR decoded as a thumbnail in [`DecodeMode::IdrOnly`].
    last_thumbnail: Option<u32>,
}

/// Raw packets of all sensors in, pipeline items out. See the module doc.
pub struct Assembler {
    world: World,
    gaze_rtp: RtpIn,
    gaze: StampQueue<NeonGaze>,
    imu_rtp: RtpIn,
    events_rtp: RtpIn,
    host: HostClock,
    fps: f64,
    out: VecDeque<SourceItem>,
    stats: AssemblerStats,
    /// Non-world malformed packets (RTP/RTCP parse errors); the depacketizer counts the rest.
    malformed: u64,
    decode_errors: u64,
    last_error: Option<String>,
    /// The passthrough recorder, given every world access unit as received (once the stream's
    /// clock is anchored by an SR; earlier units have no device time and are not passed on).
    sink: Option<Arc<dyn AccessUnitSink>>,
    /// Run-time stream switches and whether anything records (eye video is decoded only then).
    control: Option<Arc<Control>>,
    eyes: Option<Box<EyesStream>>,
    audio: Option<Box<AudioStream>>,
    decoder_kind: DecoderKind,
    frames_in_flight: usize,
    switched_off: u64,
    policy: DecodePolicy,
    conceal: bool,
    fast_decoded: u64,
    not_decoded: u64,
}

impl Assembler {
    /// Hands every depacketized world access unit to `sink` before it is decoded.
    pub fn set_sink(&mut self, sink: Arc<dyn AccessUnitSink>) {
        self.sink = Some(sink);
    }

    /// The pipeline's switches: streams switched off drop their packets unread, and the eye
    /// video is decoded only while recording or previewed. Without it everything is handled.
    pub fn set_control(&mut self, control: Arc<Control>) {
        self.control = Some(control);
    }

    fn stream_on(&self, sensor: Sensor) -> bool {
        match (sensor.stream(), &self.control) {
            (Some(s), Some(c)) => c.streams.is_on(s),
            _ => true,
        }
    }

    fn eyes_wanted(&self) -> bool {
        self.control.as_ref().is_none_or(|c| {
            c.recording.load(Ordering::Relaxed) || c.streams.eyes_preview.load(Ordering::Relaxed)
        })
    }

    /// `fps` numbers the frames (`camera_index` from device time); `frames_in_flight` sizes
    /// the frame pool (what the pipeline may hold at once, plus what waits here).
    pub fn new(
        decoder: DecoderKind,
        loss: LossPolicy,
        fps: f64,
        frames_in_flight: usize,
    ) -> Result<Self, AssembleError> {
        loss.check(decoder).map_err(AssembleError::Unsupported)?;
        let options = DecoderOptions {
            threads: 1,
            // The Neon sends no B-frames (protocol doc 10, simulator item 9).
            low_delay: true,
            slice_threads: false,
            zero_copy: false,
        };
        let mut depack = Depacketizer::new();
        depack.set_resync_at_idr(loss == LossPolicy::WaitIdr);
        depack.set_partial(loss == LossPolicy::Conceal && decoder == DecoderKind::Libav);
        let decoder_kind = decoder;
        let mut decoder = decode::open(decoder, &options)?;
        decoder.set_conceal(loss == LossPolicy::Conceal);
        Ok(Assembler {
            world: World {
                rtp: RtpIn::default(),
                depack,
                decoder,
                stamp: StampQueue::new(ClockRate::VIDEO, WORLD_PRE_SR_FRAMES),
                decoded: Vec::with_capacity(4),
                pool: FramePool::new(frames_in_flight + WORLD_PRE_SR_FRAMES + 2),
                ssrc: 0,
                first_time: None,
                last_index: None,
                last_received: None,
                needs_idr: false,
                last_thumbnail: None,
            },
            gaze_rtp: RtpIn::default(),
            gaze: StampQueue::new(ClockRate::VIDEO, GAZE_PRE_SR_SAMPLES),
            imu_rtp: RtpIn::default(),
            events_rtp: RtpIn::default(),
            host: HostClock::default(),
            fps: if fps.is_finite() && fps > 0.0 {
                fps
            } else {
                NOMINAL_FPS
            },
            out: VecDeque::with_capacity(64),
            stats: AssemblerStats::default(),
            malformed: 0,
            decode_errors: 0,
            last_error: None,
            sink: None,
            control: None,
            eyes: None,
            audio: None,
            decoder_kind,
            frames_in_flight,
            switched_off: 0,
            policy: DecodePolicy::default(),
            conceal: loss == LossPolicy::Conceal,
            fast_decoded: 0,
            not_decoded: 0,
        })
    }

    /// Sets the decode toggles; before the first packet (other thread counts reopen the
    /// decoder).
    pub fn set_decode_policy(&mut self, policy: DecodePolicy) -> Result<(), AssembleError> {
        if policy.threads != self.policy.threads || policy.zero_copy != self.policy.zero_copy {
            let options = DecoderOptions {
                threads: policy.threads.count(),
                low_delay: true,
                slice_threads: matches!(policy.threads, DecodeThreads::Slice(_)),
                zero_copy: policy.zero_copy,
            };
            let mut decoder = decode::open(self.decoder_kind, &options)?;
            decoder.set_conceal(self.conceal);
            self.world.decoder = decoder;
        }
        self.policy = policy;
        Ok(())
    }

    /// The decode mode for the next world access unit, from the toggles and what the
    /// pipeline's switches say now (recording, preview visibility).
    fn decode_mode(&self) -> DecodeMode {
        let Some(c) = &self.control else {
            return DecodeMode::Full;
        };
        if c.recording.load(Ordering::Relaxed) {
            return DecodeMode::Full;
        }
        if self.policy.reduced && !c.preview_visible.load(Ordering::Relaxed) {
            return DecodeMode::IdrOnly;
        }
        if self.policy.fast_preview {
            DecodeMode::Fast
        } else {
            DecodeMode::Full
        }
    }

    /// Grows the frame pool to hold `frames` pictures of the stream's size up front, so the
    /// first seconds allocate nothing either.
    pub fn preallocate(&mut self, frames: usize, width: usize, height: usize) {
        let n = frames + WORLD_PRE_SR_FRAMES + 2;
        self.world.pool = FramePool::new(n);
        // Lent pictures need no buffers of ours: the pool's frames only hold the reference.
        let lends = self.policy.zero_copy && self.decoder_kind == DecoderKind::Libav;
        let (w, h) = if lends { (0, 0) } else { (width, height) };
        self.world.pool.preallocate(n, PixelFormat::I420, w, h);
    }

    /// The next finished item, in the order they were completed.
    pub fn pop(&mut self) -> Option<SourceItem> {
        self.out.pop_front()
    }

    /// Counters so far.
    pub fn stats(&self) -> AssemblerStats {
        let mut s = self.stats;
        let rtp = [
            self.world.rtp.stats(),
            self.gaze_rtp.stats(),
            self.imu_rtp.stats(),
            self.events_rtp.stats(),
            self.eyes
                .as_ref()
                .map(|e| e.rtp.stats())
                .unwrap_or_default(),
            self.audio
                .as_ref()
                .map(|a| a.rtp.stats())
                .unwrap_or_default(),
        ];
        s.rtp_packets = rtp.iter().map(|r| r.received).sum();
        s.rtp_lost = rtp.iter().map(|r| r.lost).sum();
        s.rtp_out_of_order = rtp
            .iter()
            .map(|r| r.duplicates + r.reordered + r.too_old)
            .sum();
        let d = self.world.depack.stats();
        s.malformed_packets = self.malformed + d.malformed_packets + d.unsupported_packets;
        s.broken_access_units = d.broken_access_units;
        s.skipped_access_units = d.skipped_waiting_for_idr;
        s.decode_errors = self.decode_errors;
        s.concealed_frames = self.world.decoder.stats().concealed;
        s.dropped_before_sr = self.world.stamp.stats().overflowed + self.gaze.stats().overflowed;
        let e = self.eyes.as_ref().map(|e| e.stats()).unwrap_or_default();
        let a = self.audio.as_ref().map(|a| a.stats()).unwrap_or_default();
        s.extra = ExtraStats {
            eye_frames: e.eye_frames,
            eye_units_not_decoded: e.eye_units_not_decoded,
            eye_decode_errors: e.eye_decode_errors,
            audio_blocks: a.audio_blocks,
            audio_samples: a.audio_samples,
            audio_errors: a.audio_errors,
            dropped_before_sr: e.dropped_before_sr + a.dropped_before_sr,
        };
        s.dropped_before_sr += s.extra.dropped_before_sr;
        s.switched_off_packets = self.switched_off;
        s.fast_decoded = self.fast_decoded;
        s.reduced_not_decoded = self.not_decoded;
        s
    }

    /// The last decode error's text, for logs.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Writes the counters into the pipeline's (they are this source's totals, so stored, not
    /// added).
    pub fn publish(&self, c: &Counters) {
        let s = self.stats();
        let set = |a: &std::sync::atomic::AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&c.net_rtp_packets, s.rtp_packets);
        set(&c.net_rtp_lost, s.rtp_lost);
        set(&c.net_rtp_out_of_order, s.rtp_out_of_order);
        set(&c.net_malformed_packets, s.malformed_packets);
        set(&c.net_broken_access_units, s.broken_access_units);
        set(&c.net_skipped_access_units, s.skipped_access_units);
        set(&c.net_decode_errors, s.decode_errors);
        set(&c.net_unknown_gaze, s.unknown_gaze);
        set(&c.net_unknown_events, s.unknown_events);
        set(&c.net_eye_events, s.eye_events);
        set(&c.net_dropped_before_sr, s.dropped_before_sr);
        set(&c.net_max_frame_gap_ns, s.max_frame_gap_ns);
        set(&c.net_concealed_frames, s.concealed_frames);
        set(&c.net_fast_decoded, s.fast_decoded);
        set(&c.net_reduced_not_decoded, s.reduced_not_decoded);
    }

    /// Feeds one packet of `setup`'s sensor that arrived at `arrival`. A `setup` not seen
    /// before (a new session) first resets that sensor's sequence, clock and depacketizer
    /// state. Decoding happens here and is timed as [`Phase::Decode`]; returns the
    /// nanoseconds spent decoding.
    pub fn push(
        &mut self,
        setup: &Arc<StreamSetup>,
        kind: PacketKind,
        data: &[u8],
        arrival: MonoNanos,
        profile: &mut StageProfile,
    ) -> u64 {
        if !self.stream_on(setup.sensor) {
            self.switched_off += 1;
            return 0;
        }
        self.adopt(setup);
        match kind {
            PacketKind::Rtcp => self.rtcp(setup.sensor, data, arrival),
            PacketKind::Rtp => match setup.sensor {
                Sensor::World => return self.world_rtp(data, arrival, profile),
                Sensor::Gaze => self.gaze_rtp(data),
                Sensor::Imu => self.imu_rtp(data),
                Sensor::EyeEvents => self.events_rtp(data),
                Sensor::Eyes => {
                    let decode = self.eyes_wanted();
                    if let Some(e) = self.eyes.as_mut() {
                        let (ns, bad) =
                            e.rtp(data, arrival, decode, &self.host, profile, &mut self.out);
                        self.malformed += bad;
                        return ns;
                    }
                }
                Sensor::Audio => {
                    if let Some(a) = self.audio.as_mut() {
                        let (ns, bad) = a.rtp(data, arrival, profile, &mut self.out);
                        self.malformed += bad;
                        return ns;
                    }
                }
            },
        }
        0
    }

    /// End of stream: completes an access unit still open (a last packet without marker) and
    /// takes every picture the decoder still holds.
    pub fn finish(&mut self, profile: &mut StageProfile) {
        let w = &mut self.world;
        w.depack.flush();
        let mut decode_ns = 0;
        while let Some(au) = w.depack.pull() {
            let token = FrameToken {
                rtp_timestamp: au.rtp_timestamp,
                ssrc: w.ssrc,
                received: MonoNanos::now(),
            };
            let t = MonoNanos::now();
            if let Err(e) = w
                .decoder
                .decode(au.data, token, &mut w.pool, &mut w.decoded)
            {
                self.decode_errors += 1;
                self.last_error = Some(e.to_string());
            }
            decode_ns += MonoNanos::now().since(t);
        }
        if let Err(e) = w.decoder.flush(&mut w.pool, &mut w.decoded) {
            self.decode_errors += 1;
            self.last_error = Some(e.to_string());
        }
        if decode_ns > 0 {
            profile.record_ns(Phase::Decode, decode_ns);
        }
        for d in w.decoded.drain(..) {
            w.stamp.push(d.token.ssrc, d.token.rtp_timestamp, d);
        }
        self.drain_world();
    }

    fn adopt(&mut self, setup: &Arc<StreamSetup>) {
        match setup.sensor {
            Sensor::World => {
                let w = &mut self.world;
                if !w
                    .rtp
                    .restart_video(setup, &mut w.depack, w.decoder.as_mut())
                {
                    return;
                }
                // Frames still waiting for an SR belong to the old session's clock.
                w.stamp = StampQueue::new(setup.clock, WORLD_PRE_SR_FRAMES);
            }
            Sensor::Gaze => {
                if self.gaze_rtp.is_new(setup) {
                    self.gaze_rtp.reset(setup);
                    self.gaze = StampQueue::new(setup.clock, GAZE_PRE_SR_SAMPLES);
                }
            }
            Sensor::Imu => {
                if self.imu_rtp.is_new(setup) {
                    self.imu_rtp.reset(setup);
                }
            }
            Sensor::EyeEvents => {
                if self.events_rtp.is_new(setup) {
                    self.events_rtp.reset(setup);
                }
            }
            Sensor::Eyes => {
                if self.eyes.is_none() {
                    match EyesStream::new(self.decoder_kind, self.frames_in_flight) {
                        Ok(e) => self.eyes = Some(Box::new(e)),
                        Err(e) => {
                            self.last_error = Some(format!("eye video decoder: {e}"));
                            return;
                        }
                    }
                }
                if let Some(e) = self.eyes.as_mut() {
                    e.adopt(setup);
                }
            }
            Sensor::Audio => {
                let r = match self.audio.as_mut() {
                    Some(a) => a.adopt(setup),
                    None => AudioStream::new(setup).map(|mut a| {
                        let _ = a.adopt(setup);
                        self.audio = Some(Box::new(a));
                    }),
                };
                if let Err(e) = r {
                    self.last_error = Some(format!("audio: {e}"));
                }
            }
        }
    }

    fn rtcp(&mut self, sensor: Sensor, data: &[u8], arrival: MonoNanos) {
        for p in rtcp::iter_compound(data) {
            match p {
                Ok(RtcpPacket::SenderReport(sr)) => {
                    let streaming = match sensor {
                        Sensor::World => Some(&self.world.rtp),
                        Sensor::Gaze => Some(&self.gaze_rtp),
                        Sensor::Imu => Some(&self.imu_rtp),
                        Sensor::EyeEvents => Some(&self.events_rtp),
                        Sensor::Eyes => self.eyes.as_ref().map(|e| &e.rtp),
                        Sensor::Audio => self.audio.as_ref().map(|a| &a.rtp),
                    }
                    .is_some_and(|r| r.seq.highest().is_some());
                    // Only an SR sent while the stream flows says what time it is now: one
                    // sent before the first packet (the simulator's, doc 10 item 7) carries
                    // the first packet's mapping, up to a GOP ahead of its sending.
                    if streaming {
                        self.host.observe(arrival, sr.info.ntp.to_unix_nanos());
                    }
                    match sensor {
                        Sensor::World => {
                            self.world.stamp.on_sender_report(&sr.info);
                            self.drain_world();
                        }
                        Sensor::Gaze => {
                            self.gaze.on_sender_report(&sr.info);
                            self.drain_gaze();
                        }
                        Sensor::Eyes => {
                            if let Some(e) = self.eyes.as_mut() {
                                e.on_sender_report(&sr.info, &self.host, &mut self.out);
                            }
                        }
                        Sensor::Audio => {
                            if let Some(a) = self.audio.as_mut() {
                                a.on_sender_report(&sr.info, &mut self.out);
                            }
                        }
                        // IMU and eye events carry their own times (doc 6.2, 6.3).
                        Sensor::Imu | Sensor::EyeEvents => {}
                    }
                }
                Ok(_) => {}
                Err(_) => self.malformed += 1,
            }
        }
    }

    fn world_rtp(&mut self, data: &[u8], arrival: MonoNanos, profile: &mut StageProfile) -> u64 {
        let Some(pkt) = self.world.rtp.admit_counting(data, &mut self.malformed) else {
            return 0;
        };
        let mode = self.decode_mode();
        let fps = self.fps;
        let w = &mut self.world;
        w.ssrc = pkt.ssrc;
        let mut decode_ns = 0;
        if let Err(H264Error::SequenceGap { .. }) = w.depack.push(&pkt) {
            // Already handled: the depacketizer drops the access unit and waits for an IDR.
        }
        let fast = w.decoder.set_fast(mode == DecodeMode::Fast) && mode == DecodeMode::Fast;
        while let Some(au) = w.depack.pull() {
            if let Some(sink) = self.sink.as_ref().filter(|_| !au.partial) {
                if let Some(t) = w.stamp.clock().time_of_wire(au.rtp_timestamp) {
                    sink.access_unit(au.data, t, arrival, au.is_idr);
                }
            }
            if mode == DecodeMode::IdrOnly {
                // A thumbnail at most every REDUCED_EVERY frames, and only from an IDR: the
                // pictures in between would need the ones skipped.
                let spacing = (f64::from(ClockRate::VIDEO.hz())
                    * crate::run_control::REDUCED_EVERY as f64
                    / fps) as u32;
                let due = w.last_thumbnail.is_none_or(|last| {
                    au.rtp_timestamp.wrapping_sub(last) >= spacing.saturating_sub(spacing / 10)
                });
                if !(au.is_idr && due) {
                    w.needs_idr = true;
                    self.not_decoded += 1;
                    continue;
                }
                w.last_thumbnail = Some(au.rtp_timestamp);
            } else if w.needs_idr {
                if !au.is_idr {
                    self.not_decoded += 1;
                    continue;
                }
                w.needs_idr = false;
                w.last_thumbnail = None;
            }
            if fast {
                self.fast_decoded += 1;
            }
            let token = FrameToken {
                rtp_timestamp: au.rtp_timestamp,
                ssrc: pkt.ssrc,
                received: arrival,
            };
            let (ns, r) = decode_into(
                w.decoder.as_mut(),
                &mut w.pool,
                &mut w.decoded,
                &mut w.stamp,
                au.data,
                token,
                profile,
            );
            decode_ns += ns;
            if let Err(e) = r {
                // Not counted again as a broken access unit: that one never reached here.
                self.decode_errors += 1;
                self.last_error = Some(e.to_string());
            }
        }
        self.drain_world();
        decode_ns
    }

    fn drain_world(&mut self) {
        let w = &mut self.world;
        while let Some(s) = w.stamp.pop() {
            let Decoded { frame, token } = s.item;
            let first = *w.first_time.get_or_insert(s.time);
            let ticks = (s.time.delta_ns(first) as f64 * self.fps / 1e9).round();
            let mut index = if ticks > 0.0 { ticks as u64 } else { 0 };
            if let Some(last) = w.last_index {
                // Device times jitter around the nominal rate: never repeat or go back.
                index = index.max(last + 1);
            }
            w.last_index = Some(index);
            if let Some(prev) = w.last_received {
                let gap = token.received.since(prev);
                self.stats.max_frame_gap_ns = self.stats.max_frame_gap_ns.max(gap);
            }
            w.last_received = Some(token.received);
            let capture_mono = self
                .host
                .to_mono(s.time)
                .filter(|c| *c <= token.received)
                .unwrap_or(token.received);
            self.out.push_back(SourceItem::Frame {
                frame,
                meta: FrameMeta {
                    device_time: s.time,
                    capture_mono,
                    received_mono: token.received,
                    camera_index: index,
                    wait_ns: 0,
                },
            });
        }
    }

    fn gaze_rtp(&mut self, data: &[u8]) {
        let Some(pkt) = self.gaze_rtp.admit_counting(data, &mut self.malformed) else {
            return;
        };
        match NeonGaze::decode(pkt.payload) {
            Ok(g) => self.gaze.push(pkt.ssrc, pkt.timestamp, g),
            Err(_) => self.stats.unknown_gaze += 1,
        }
        self.drain_gaze();
    }

    fn drain_gaze(&mut self) {
        while let Some(s) = self.gaze.pop() {
            match s.item.to_sample(s.time) {
                Some(g) => self.out.push_back(SourceItem::Gaze(g)),
                None => self.stats.unknown_gaze += 1,
            }
        }
    }

    fn imu_rtp(&mut self, data: &[u8]) {
        let Some(pkt) = self.imu_rtp.admit_counting(data, &mut self.malformed) else {
            return;
        };
        match ImuPacket::decode_payload(pkt.payload) {
            Ok(p) => self.out.push_back(SourceItem::Imu(p.to_sample())),
            Err(_) => self.malformed += 1,
        }
    }

    fn events_rtp(&mut self, data: &[u8]) {
        let Some(pkt) = self.events_rtp.admit_counting(data, &mut self.malformed) else {
            return;
        };
        let event = match EyeEvent::decode(pkt.payload) {
            Ok(EyeEvent::Keepalive) => return,
            Ok(e) => e,
            Err(_) => {
                self.stats.unknown_events += 1;
                return;
            }
        };
        self.stats.eye_events += 1;
        // A few per second at most: the detail string is not a per-frame cost.
        let (kind, time, end, detail) = match event {
            EyeEvent::Fixation(c) | EyeEvent::Saccade(c) => (
                if matches!(event, EyeEvent::Fixation(_)) {
                    "fixation"
                } else {
                    "saccade"
                },
                c.start_ns,
                Some(c.end_ns),
                format!(
                    "start_ns={} end_ns={} mean_px=({:.1},{:.1}) amplitude_deg={:.2} peak_velocity_px_s={:.0}",
                    c.start_ns, c.end_ns, c.mean[0], c.mean[1], c.amplitude_deg, c.peak_velocity
                ),
            ),
            EyeEvent::FixationOnset { start_ns } => {
                ("fixation_onset", start_ns, None, format!("start_ns={start_ns}"))
            }
            EyeEvent::SaccadeOnset { start_ns } => {
                ("saccade_onset", start_ns, None, format!("start_ns={start_ns}"))
            }
            EyeEvent::Blink { start_ns, end_ns } => (
                "blink",
                start_ns,
                Some(end_ns),
                format!("start_ns={start_ns} end_ns={end_ns}"),
            ),
            EyeEvent::Keepalive => return,
        };
        self.out.push_back(SourceItem::Event {
            kind,
            detail,
            device_time: Some(UnixNanos(time)),
            end_time: end.map(UnixNanos),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neon::rtcp::{NtpTimestamp, SenderInfo};
    use crate::neon::rtp::RtpHeader;

    fn setup(sensor: Sensor) -> Arc<StreamSetup> {
        Arc::new(StreamSetup {
            sensor,
            payload_type: None,
            clock: ClockRate::VIDEO,
            parameter_sets: Vec::new(),
            framerate: None,
            sdp: String::new(),
            aac: None,
        })
    }

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: 7,
        }
        .write(payload, &mut out);
        out
    }

    fn sr(unix_ns: i64, rtp_ts: u32) -> Vec<u8> {
        let mut out = Vec::new();
        rtcp::write_sender_report(
            &SenderInfo {
                ssrc: 7,
                ntp: NtpTimestamp::from_unix_nanos(UnixNanos(unix_ns)),
                rtp_timestamp: rtp_ts,
                packet_count: 0,
                octet_count: 0,
            },
            &[],
            &mut out,
        );
        out
    }

    fn gaze_payload(x: f32, y: f32) -> Vec<u8> {
        let mut p = x.to_be_bytes().to_vec();
        p.extend_from_slice(&y.to_be_bytes());
        p.push(255);
        p
    }

    #[test]
    fn gaze_waits_for_the_first_sr_then_gets_its_time() {
        let mut a = Assembler::new(DecoderKind::Libav, LossPolicy::Conceal, 30.0, 4).unwrap();
        let s = setup(Sensor::Gaze);
        let mut prof = StageProfile::new(false);
        let t0 = 1_700_000_000_000_000_000;
        let now = MonoNanos(5_000_000_000);
        a.push(
            &s,
            PacketKind::Rtp,
            &rtp(99, 1, 900, &gaze_payload(1.0, 2.0)),
            now,
            &mut prof,
        );
        assert!(a.pop().is_none(), "no SR yet");
        a.push(&s, PacketKind::Rtcp, &sr(t0, 0), now, &mut prof);
        match a.pop() {
            Some(SourceItem::Gaze(g)) => {
                assert_eq!(g.time, UnixNanos(t0 + 10_000_000)); // 900 ticks at 90 kHz
                assert_eq!((g.x, g.y, g.worn), (1.0, 2.0, true));
            }
            other => panic!("expected gaze, got {other:?}"),
        }
        // Unknown length: counted and skipped, stream goes on.
        a.push(
            &s,
            PacketKind::Rtp,
            &rtp(99, 2, 1800, &[1, 2, 3]),
            now,
            &mut prof,
        );
        a.push(
            &s,
            PacketKind::Rtp,
            &rtp(99, 4, 2700, &gaze_payload(3.0, 4.0)),
            now,
            &mut prof,
        );
        // A duplicate is dropped.
        a.push(
            &s,
            PacketKind::Rtp,
            &rtp(99, 4, 2700, &gaze_payload(3.0, 4.0)),
            now,
            &mut prof,
        );
        assert!(matches!(a.pop(), Some(SourceItem::Gaze(g)) if g.x == 3.0));
        assert!(a.pop().is_none());
        let st = a.stats();
        assert_eq!(st.unknown_gaze, 1);
        assert_eq!(st.rtp_lost, 1);
        assert_eq!(st.rtp_out_of_order, 1);
        assert_eq!(st.rtp_packets, 3);
    }

    #[test]
    fn a_new_session_resets_the_clock_and_keeps_totals() {
        let mut a = Assembler::new(DecoderKind::Libav, LossPolicy::Conceal, 30.0, 4).unwrap();
        let mut prof = StageProfile::new(false);
        let now = MonoNanos(1);
        let s1 = setup(Sensor::Gaze);
        a.push(&s1, PacketKind::Rtcp, &sr(1_000_000_000, 0), now, &mut prof);
        a.push(
            &s1,
            PacketKind::Rtp,
            &rtp(99, 10, 0, &gaze_payload(0.0, 0.0)),
            now,
            &mut prof,
        );
        assert!(a.pop().is_some());
        // Reconnect: same numbers, new session; the old SR must not stamp it.
        let s2 = setup(Sensor::Gaze);
        a.push(
            &s2,
            PacketKind::Rtp,
            &rtp(99, 10, 0, &gaze_payload(0.0, 0.0)),
            now,
            &mut prof,
        );
        assert!(a.pop().is_none(), "new session waits for its own SR");
        a.push(&s2, PacketKind::Rtcp, &sr(9_000_000_000, 0), now, &mut prof);
        assert!(matches!(a.pop(), Some(SourceItem::Gaze(g)) if g.time == UnixNanos(9_000_000_000)));
        assert_eq!(a.stats().rtp_packets, 2);
        assert_eq!(a.stats().rtp_out_of_order, 0);
    }

    #[test]
    fn imu_and_events_use_payload_times_and_skip_unknown_types() {
        let mut a = Assembler::new(DecoderKind::Libav, LossPolicy::Conceal, 30.0, 4).unwrap();
        let mut prof = StageProfile::new(false);
        let now = MonoNanos(1);
        let imu = setup(Sensor::Imu);
        let mut p = Vec::new();
        ImuPacket {
            ts_ns: 123_456,
            ..Default::default()
        }
        .encode_payload(&mut p);
        a.push(&imu, PacketKind::Rtp, &rtp(100, 1, 0, &p), now, &mut prof);
        assert!(matches!(a.pop(), Some(SourceItem::Imu(s)) if s.time == UnixNanos(123_456)));
        let ev = setup(Sensor::EyeEvents);
        let mut blink = Vec::new();
        EyeEvent::Blink {
            start_ns: 5,
            end_ns: 9,
        }
        .encode(&mut blink);
        a.push(
            &ev,
            PacketKind::Rtp,
            &rtp(101, 1, 0, &blink),
            now,
            &mut prof,
        );
        a.push(
            &ev,
            PacketKind::Rtp,
            &rtp(101, 2, 0, &99i32.to_be_bytes()),
            now,
            &mut prof,
        );
        a.push(
            &ev,
            PacketKind::Rtp,
            &rtp(101, 3, 0, &5i32.to_be_bytes()),
            now,
            &mut prof,
        );
        match a.pop() {
            Some(SourceItem::Event {
                kind, device_time, ..
            }) => {
                assert_eq!(kind, "blink");
                assert_eq!(device_time, Some(UnixNanos(5)));
            }
            other => panic!("expected blink, got {other:?}"),
        }
        assert!(
            a.pop().is_none(),
            "unknown type and keepalive yield nothing"
        );
        assert_eq!(a.stats().unknown_events, 1);
        assert_eq!(a.stats().eye_events, 1);
        // Garbage never panics.
        a.push(&ev, PacketKind::Rtp, &[0xff; 3], now, &mut prof);
        a.push(&ev, PacketKind::Rtcp, &[0x80, 200, 0, 50], now, &mut prof);
        assert_eq!(a.stats().malformed_packets, 2);
    }
}
