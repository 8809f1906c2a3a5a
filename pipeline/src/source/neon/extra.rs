//! The assembler's optional media: the eye cameras' H.264 (`eyes`) and the scene microphone's
//! AAC (`audio`, an `m=audio` of the world URL in a session of its own; protocol doc 4.1, 6.4).
//! Created at a stream's first packet, so a run without them holds no decoder.
//!
//! Eye video goes through the same H.264 depacketizer and decoder as the world stream, but is
//! decoded only while something wants the pictures (a recording or an eye preview): otherwise
//! access units are depacketized and dropped, and the decoder restarts at the next IDR when
//! pictures are wanted again. After a loss it waits for the next IDR (no concealment): the eye
//! video is a record, and a second of it is 200 small pictures. Audio is depacketized by
//! [`crate::neon::aac`] and decoded to 16-bit PCM blocks, one per RTP packet, stamped by the
//! stream's sender reports like the world frames (so the first packet is not dropped or
//! shifted, unlike the official client's "previous packet" rule, doc 5).

use std::collections::VecDeque;
use std::sync::Arc;

use super::intake::{decode_into, FrameToken, HostClock, RtpIn, StreamSetup};
use crate::decode::aac::AacDecoder;
use crate::decode::{self, Decoded, Decoder, DecoderKind, DecoderOptions};
use crate::frame::FramePool;
use crate::neon::aac::{AacPayload, AuHeaderLayout, SAMPLES_PER_FRAME};
use crate::neon::clock::StampQueue;
use crate::neon::h264::Depacketizer;
use crate::neon::rtcp::SenderInfo;
use crate::packet::FrameMeta;
use crate::profile::{Phase, StageProfile};
use crate::source::SourceItem;
use crate::streams::{AudioBlock, AudioMeta};
use crate::time::{MonoNanos, UnixNanos};

pub use crate::streams::EYES_NOMINAL_FPS;
/// Eye pictures that may wait for the stream's first SR (a quarter second at 200 Hz).
const EYES_PRE_SR: usize = 50;
/// Audio blocks that may wait for the first SR (two seconds at 8 kHz, one frame per packet).
const AUDIO_PRE_SR: usize = 16;

/// Counters of the optional media, summed into the assembler's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExtraStats {
    pub eye_frames: u64,
    /// Eye access units depacketized but not decoded (nothing wanted the pictures).
    pub eye_units_not_decoded: u64,
    pub eye_decode_errors: u64,
    pub audio_blocks: u64,
    pub audio_samples: u64,
    /// Audio payloads that do not parse as RFC 3640 AAC-hbr, or AAC frames libav rejected.
    pub audio_errors: u64,
    pub dropped_before_sr: u64,
}

pub(super) struct EyesStream {
    pub(super) rtp: RtpIn,
    depack: Depacketizer,
    decoder: Box<dyn Decoder<FrameToken>>,
    stamp: StampQueue<Decoded<FrameToken>>,
    decoded: Vec<Decoded<FrameToken>>,
    pool: FramePool,
    fps: f64,
    first_time: Option<UnixNanos>,
    last_index: Option<u64>,
    /// Units were skipped while nobody wanted pictures: restart at the next IDR.
    skipped: bool,
    stats: ExtraStats,
}

impl EyesStream {
    pub(super) fn new(kind: DecoderKind, frames_in_flight: usize) -> Result<Self, String> {
        let options = DecoderOptions {
            threads: 1,
            low_delay: true,
            slice_threads: false,
            zero_copy: false,
        };
        let mut decoder = decode::open(kind, &options).map_err(|e| e.to_string())?;
        decoder.set_conceal(false);
        Ok(EyesStream {
            rtp: RtpIn::default(),
            depack: Depacketizer::new(),
            decoder,
            stamp: StampQueue::new(crate::neon::clock::ClockRate::VIDEO, EYES_PRE_SR),
            decoded: Vec::with_capacity(4),
            pool: FramePool::new(frames_in_flight + EYES_PRE_SR + 2),
            fps: EYES_NOMINAL_FPS,
            first_time: None,
            last_index: None,
            skipped: false,
            stats: ExtraStats::default(),
        })
    }

    /// A new session (first packet or reconnect): everything starts over at an IDR.
    pub(super) fn adopt(&mut self, setup: &Arc<StreamSetup>) {
        if !self
            .rtp
            .restart_video(setup, &mut self.depack, self.decoder.as_mut())
        {
            return;
        }
        self.stamp = StampQueue::new(setup.clock, EYES_PRE_SR);
        if let Some(fps) = setup.video_format().and_then(|f| f.2).or(setup.framerate) {
            self.fps = fps;
        }
    }

    pub(super) fn stats(&self) -> ExtraStats {
        let mut s = self.stats;
        s.dropped_before_sr = self.stamp.stats().overflowed;
        s
    }

    /// One RTP packet; returns (decode ns, malformed packets).
    pub(super) fn rtp(
        &mut self,
        data: &[u8],
        arrival: MonoNanos,
        decode: bool,
        host: &HostClock,
        profile: &mut StageProfile,
        out: &mut VecDeque<SourceItem>,
    ) -> (u64, u64) {
        let pkt = match self.rtp.admit(data) {
            Ok(p) => p,
            Err(r) => return (0, r.malformed()),
        };
        // A gap drops the unit and waits for an IDR inside the depacketizer.
        let _ = self.depack.push(&pkt);
        let mut decode_ns = 0;
        while let Some(au) = self.depack.pull() {
            if !decode {
                self.stats.eye_units_not_decoded += 1;
                self.skipped = true;
                continue;
            }
            if self.skipped {
                self.skipped = false;
                self.decoder.mark_loss();
            }
            let token = FrameToken {
                rtp_timestamp: au.rtp_timestamp,
                ssrc: pkt.ssrc,
                received: arrival,
            };
            let (ns, r) = decode_into(
                self.decoder.as_mut(),
                &mut self.pool,
                &mut self.decoded,
                &mut self.stamp,
                au.data,
                token,
                profile,
            );
            decode_ns += ns;
            if r.is_err() {
                self.stats.eye_decode_errors += 1;
            }
        }
        self.drain(host, out);
        (decode_ns, 0)
    }

    pub(super) fn on_sender_report(
        &mut self,
        sr: &SenderInfo,
        host: &HostClock,
        out: &mut VecDeque<SourceItem>,
    ) {
        self.stamp.on_sender_report(sr);
        self.drain(host, out);
    }

    fn drain(&mut self, host: &HostClock, out: &mut VecDeque<SourceItem>) {
        while let Some(s) = self.stamp.pop() {
            let Decoded { frame, token } = s.item;
            let first = *self.first_time.get_or_insert(s.time);
            let ticks = (s.time.delta_ns(first) as f64 * self.fps / 1e9).round();
            let mut index = if ticks > 0.0 { ticks as u64 } else { 0 };
            if let Some(last) = self.last_index {
                index = index.max(last + 1);
            }
            self.last_index = Some(index);
            let capture_mono = host
                .to_mono(s.time)
                .filter(|c| *c <= token.received)
                .unwrap_or(token.received);
            self.stats.eye_frames += 1;
            out.push_back(SourceItem::EyeFrame {
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
}

pub(super) struct AudioStream {
    pub(super) rtp: RtpIn,
    layout: AuHeaderLayout,
    decoder: AacDecoder,
    /// Blocks waiting for their time: (pooled block, arrival).
    stamp: StampQueue<(Arc<AudioBlock>, MonoNanos)>,
    /// Every block this stream made; one only the pool holds is free for reuse.
    pool: Vec<Arc<AudioBlock>>,
    stats: ExtraStats,
}

/// Blocks in flight before the pool grows past its first size: those waiting for an SR plus
/// a few queued downstream.
const AUDIO_POOL: usize = AUDIO_PRE_SR + 16;

impl AudioStream {
    /// Opens the AAC decoder for the session's AudioSpecificConfig.
    pub(super) fn new(setup: &StreamSetup) -> Result<Self, String> {
        let fmt = setup
            .aac
            .as_ref()
            .ok_or_else(|| "the audio media has no usable AAC config".to_string())?;
        let decoder = AacDecoder::new(&fmt.config).map_err(|e| e.to_string())?;
        Ok(AudioStream {
            rtp: RtpIn::default(),
            layout: fmt.layout,
            decoder,
            stamp: StampQueue::new(setup.clock, AUDIO_PRE_SR),
            pool: Vec::with_capacity(AUDIO_POOL),
            stats: ExtraStats::default(),
        })
    }

    /// A new session: a new AudioSpecificConfig reopens the decoder.
    pub(super) fn adopt(&mut self, setup: &Arc<StreamSetup>) -> Result<(), String> {
        if !self.rtp.is_new(setup) {
            return Ok(());
        }
        let same = self.rtp.setup.as_ref().map(|s| &s.aac) == Some(&setup.aac);
        self.rtp.reset(setup);
        self.stamp = StampQueue::new(setup.clock, AUDIO_PRE_SR);
        if !same {
            let fresh = AudioStream::new(setup)?;
            self.layout = fresh.layout;
            self.decoder = fresh.decoder;
        }
        Ok(())
    }

    pub(super) fn stats(&self) -> ExtraStats {
        let mut s = self.stats;
        s.dropped_before_sr = self.stamp.stats().overflowed;
        s
    }

    /// A block nobody else holds (taken out of the pool, so this is its only handle), or a new
    /// one.
    fn take_block(&mut self) -> Arc<AudioBlock> {
        match self.pool.iter().position(|b| Arc::strong_count(b) == 1) {
            Some(i) => self.pool.swap_remove(i),
            None => Arc::new(AudioBlock::default()),
        }
    }

    /// One RTP packet; returns (decode ns, malformed packets).
    pub(super) fn rtp(
        &mut self,
        data: &[u8],
        arrival: MonoNanos,
        profile: &mut StageProfile,
        out: &mut VecDeque<SourceItem>,
    ) -> (u64, u64) {
        let pkt = match self.rtp.admit(data) {
            Ok(p) => p,
            Err(r) => return (0, r.malformed()),
        };
        let Ok(payload) = AacPayload::parse(pkt.payload, &self.layout) else {
            self.stats.audio_errors += 1;
            return (0, 0);
        };
        if payload.is_empty() {
            return (0, 0);
        }
        let mut block = self.take_block();
        // The only handle (see `take_block`), so `make_mut` never clones.
        let b = Arc::make_mut(&mut block);
        b.samples.clear();
        let t = MonoNanos::now();
        for au in payload.iter() {
            if self.decoder.decode(au, &mut b.samples).is_err() {
                self.stats.audio_errors += 1;
                // Keep the block's length a whole number of frames on the stream's grid.
                let ch = usize::from(self.decoder.channels().max(1));
                b.samples
                    .resize(b.samples.len() + SAMPLES_PER_FRAME as usize * ch, 0);
            }
        }
        b.sample_rate = self.decoder.sample_rate();
        b.channels = self.decoder.channels().max(1);
        let ns = MonoNanos::now().since(t);
        profile.record_ns(Phase::Decode, ns);
        self.stats.audio_blocks += 1;
        self.stats.audio_samples += b.frames() as u64;
        self.pool.push(Arc::clone(&block));
        self.stamp.push(pkt.ssrc, pkt.timestamp, (block, arrival));
        self.drain(out);
        (ns, 0)
    }

    pub(super) fn on_sender_report(&mut self, sr: &SenderInfo, out: &mut VecDeque<SourceItem>) {
        self.stamp.on_sender_report(sr);
        self.drain(out);
    }

    fn drain(&mut self, out: &mut VecDeque<SourceItem>) {
        while let Some(s) = self.stamp.pop() {
            let (block, received_mono) = s.item;
            out.push_back(SourceItem::Audio {
                block,
                meta: AudioMeta {
                    device_time: s.time,
                    received_mono,
                },
            });
        }
    }
}
