//! What every stream's intake shares: the sensor names, a session's SDP facts, RTP admission
//! (order, payload type), the device-to-host clock and the timed decode of one access unit.
//!
//! The world assembler (`assemble`) and the optional media (`extra`) both build on these, so
//! neither imports the other's internals.

use std::sync::Arc;

use crate::decode::{self, DecodeError, Decoded, Decoder};
use crate::frame::FramePool;
use crate::neon::aac::AacFormat;
use crate::neon::clock::{ClockRate, StampQueue};
use crate::neon::h264::Depacketizer;
use crate::neon::rtp::{RtpPacket, SeqEvent, SeqStats, SeqUnwrapper};
use crate::neon::sdp::{self, MediaDescription};
use crate::profile::{Phase, StageProfile};
use crate::streams::{Stream, StreamSet};
use crate::time::{MonoNanos, UnixNanos};

/// How fast the host-clock offset may drift upwards, in ns per second of host time (20 ppm,
/// above the drift of ordinary crystal oscillators), so a min filter can follow a host clock
/// that runs faster than the device's.
const OFFSET_CREEP_NS_PER_S: u64 = 20_000;

/// One of the Neon's sensor streams handled here (protocol doc 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensor {
    World,
    Gaze,
    Imu,
    EyeEvents,
    /// The eye cameras' H.264 (`--eyes on`).
    Eyes,
    /// The scene microphone: the world URL's `m=audio`, set up as its own session (`--audio
    /// on`). Not listed in `/api/status`: the official client copies the world entry (doc 2.1).
    Audio,
}

impl Sensor {
    pub const ALL: [Sensor; 6] = [
        Sensor::World,
        Sensor::Gaze,
        Sensor::Imu,
        Sensor::EyeEvents,
        Sensor::Eyes,
        Sensor::Audio,
    ];

    /// The optional stream this sensor carries (`None` for the world video, always on).
    pub fn stream(self) -> Option<Stream> {
        match self {
            Sensor::World => None,
            Sensor::Gaze => Some(Stream::Gaze),
            Sensor::Imu => Some(Stream::Imu),
            Sensor::EyeEvents => Some(Stream::Events),
            Sensor::Eyes => Some(Stream::Eyes),
            Sensor::Audio => Some(Stream::Audio),
        }
    }

    /// Whether a run with `set` sets this sensor up.
    pub fn wanted(self, set: &StreamSet) -> bool {
        self.stream().is_none_or(|s| set.has(s))
    }

    /// The name in `/api/status` and in fixtures.
    pub fn name(self) -> &'static str {
        match self {
            Sensor::World => "world",
            Sensor::Gaze => "gaze",
            Sensor::Imu => "imu",
            Sensor::EyeEvents => "eye_events",
            Sensor::Eyes => "eyes",
            Sensor::Audio => "audio",
        }
    }

    pub fn from_name(name: &str) -> Option<Sensor> {
        Sensor::ALL.into_iter().find(|s| s.name() == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("{sensor} stream: bad SDP: {detail}")]
    Sdp {
        sensor: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Decoder(#[from] decode::DecodeError),
    #[error("{0}")]
    Unsupported(String),
}

/// What one RTSP session (or fixture stream) of a sensor says about its packets: the SDP facts
/// the assembler needs. A new value (a reconnect's re-DESCRIBE) resets that sensor's state.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSetup {
    pub sensor: Sensor,
    /// Payload type from the SDP; world packets of another type are dropped (doc 5).
    pub payload_type: Option<u8>,
    pub clock: ClockRate,
    /// SPS and PPS from `sprop-parameter-sets` (world only).
    pub parameter_sets: Vec<Vec<u8>>,
    /// `a=framerate`, if the SDP has one.
    pub framerate: Option<f64>,
    /// The DESCRIBE answer itself, kept for `eyetrack fixture record`.
    pub sdp: String,
    /// AudioSpecificConfig and AU-header layout (audio only).
    pub aac: Option<AacFormat>,
}

impl StreamSetup {
    /// Reads the first media of the SDP (the device serves one sensor per URL).
    pub fn from_sdp(sensor: Sensor, sdp_text: &[u8]) -> Result<Self, AssembleError> {
        let bad = |detail: String| AssembleError::Sdp {
            sensor: sensor.name(),
            detail,
        };
        let desc = sdp::parse(sdp_text).map_err(|e| bad(e.to_string()))?;
        let media = match sensor {
            Sensor::World | Sensor::Eyes => desc.first_of_type("video"),
            // The audio streamer takes the world SDP's first audio media (doc 4.2 step 3).
            Sensor::Audio => desc.first_of_type("audio"),
            _ => desc.medias.first(),
        }
        .ok_or_else(|| bad("no usable media section".into()))?;
        Self::from_media(sensor, media, sdp_text)
    }

    fn from_media(
        sensor: Sensor,
        media: &MediaDescription,
        sdp_text: &[u8],
    ) -> Result<Self, AssembleError> {
        let bad = |detail: String| AssembleError::Sdp {
            sensor: sensor.name(),
            detail,
        };
        if matches!(sensor, Sensor::World | Sensor::Eyes) && !media.is_encoding("H264") {
            return Err(bad(format!(
                "video encoding {:?} is not H264",
                media.encoding_name
            )));
        }
        let clock = media
            .clock_rate
            .and_then(ClockRate::new)
            .ok_or_else(|| bad("no clock rate in a=rtpmap".into()))?;
        if let Some(e) = &media.sprop_error {
            return Err(bad(e.clone()));
        }
        let aac = if sensor == Sensor::Audio {
            if !media.is_encoding("mpeg4-generic") {
                return Err(bad(format!(
                    "audio encoding {:?} is not mpeg4-generic (RFC 3640 AAC)",
                    media.encoding_name
                )));
            }
            Some(AacFormat::from_media(media).map_err(|e| bad(e.to_string()))?)
        } else {
            None
        };
        // sdp-types keeps attributes but MediaDescription does not carry a=framerate; it is
        // one line, read here.
        let framerate = std::str::from_utf8(sdp_text).ok().and_then(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("a=framerate:"))
                .find_map(|v| v.trim().parse::<f64>().ok())
                .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0)
        });
        Ok(StreamSetup {
            sensor,
            payload_type: media.payload_type,
            clock,
            parameter_sets: media.sprop_parameter_sets.clone(),
            framerate,
            sdp: String::from_utf8_lossy(sdp_text).into_owned(),
            aac,
        })
    }

    /// Picture size and frame rate from the SPS in `sprop-parameter-sets`, if there is one.
    pub fn video_format(&self) -> Option<(usize, usize, Option<f64>)> {
        use h264_reader::nal::sps::SeqParameterSet;
        use h264_reader::nal::{Nal, RefNal};
        let sps = self
            .parameter_sets
            .iter()
            .find(|n| n.first().is_some_and(|h| h & 0x1f == 7))?;
        let nal = RefNal::new(sps, &[], true);
        match SeqParameterSet::from_bits(nal.rbsp_bits()) {
            Ok(parsed) => {
                let (w, h) = parsed.pixel_dimensions().ok()?;
                let fps = parsed
                    .fps()
                    .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0);
                Some((w as usize, h as usize, fps))
            }
            // A real phone's SPS with a reserved VUI value (see `sps_dimensions`): the size is
            // still there, the frame rate comes from the SDP or the nominal one.
            Err(_) => {
                let (w, h) = crate::neon::h264::sps_dimensions(sps)?;
                Some((w, h, None))
            }
        }
    }
}

/// What the world decoder carries from an access unit to its picture.
#[derive(Clone, Copy, Debug)]
pub(super) struct FrameToken {
    pub(super) rtp_timestamp: u32,
    pub(super) ssrc: u32,
    /// Arrival of the packet that completed the access unit.
    pub(super) received: MonoNanos,
}

/// Packet-level state of one sensor's current session.
#[derive(Debug, Default)]
pub(super) struct RtpIn {
    pub(super) setup: Option<Arc<StreamSetup>>,
    pub(super) seq: SeqUnwrapper,
    /// Totals of earlier sessions (the unwrapper restarts at each reset).
    carried: SeqStats,
}

impl RtpIn {
    pub(super) fn stats(&self) -> SeqStats {
        let s = self.seq.stats();
        let c = self.carried;
        SeqStats {
            received: c.received + s.received,
            lost: c.lost + s.lost,
            duplicates: c.duplicates + s.duplicates,
            reordered: c.reordered + s.reordered,
            too_old: c.too_old + s.too_old,
        }
    }

    pub(super) fn reset(&mut self, setup: &Arc<StreamSetup>) {
        self.carried = self.stats();
        self.seq.reset();
        self.setup = Some(Arc::clone(setup));
    }

    /// Whether `setup` differs from the session's (by identity first: the same `Arc` is the
    /// same session, so the per-packet check is a pointer compare).
    pub(super) fn is_new(&self, setup: &Arc<StreamSetup>) -> bool {
        match &self.setup {
            Some(s) => !Arc::ptr_eq(s, setup),
            None => true,
        }
    }

    /// Accepts the packet unless it is a duplicate or late (the depacketizer needs order).
    pub(super) fn accept(&mut self, seq: u16) -> bool {
        !matches!(
            self.seq.push(seq).1,
            SeqEvent::Duplicate | SeqEvent::Reordered | SeqEvent::TooOld
        )
    }

    /// Every stream's intake: parses a packet and lets it through unless it is malformed, of
    /// another media's payload type (doc 5: readers drop foreign payload types), or a
    /// duplicate or late packet.
    pub(super) fn admit<'a>(&mut self, data: &'a [u8]) -> Result<RtpPacket<'a>, Rejected> {
        let pkt = RtpPacket::parse(data).map_err(|_| Rejected::Malformed)?;
        let pt = self.setup.as_ref().and_then(|s| s.payload_type);
        if pt.is_some_and(|pt| pt != pkt.payload_type) {
            return Err(Rejected::Malformed);
        }
        if !self.accept(pkt.sequence) {
            return Err(Rejected::OutOfOrder);
        }
        Ok(pkt)
    }
}

impl RtpIn {
    /// [`RtpIn::admit`] for intakes that only count what they turn away.
    pub(super) fn admit_counting<'a>(
        &mut self,
        data: &'a [u8],
        malformed: &mut u64,
    ) -> Option<RtpPacket<'a>> {
        self.admit(data)
            .map_err(|r| *malformed += r.malformed())
            .ok()
    }

    /// A video stream's new session (first packet or reconnect): sequence tracking, the
    /// depacketizer (with the new SDP's SPS/PPS) and the decoder all start over at an IDR.
    /// False when `setup` is the session already in use.
    pub(super) fn restart_video(
        &mut self,
        setup: &Arc<StreamSetup>,
        depack: &mut Depacketizer,
        decoder: &mut dyn Decoder<FrameToken>,
    ) -> bool {
        if !self.is_new(setup) {
            return false;
        }
        self.reset(setup);
        depack.reset();
        depack.set_parameter_sets(setup.parameter_sets.iter().map(Vec::as_slice));
        // Anything the decoder holds references the old stream.
        decoder.mark_loss();
        true
    }
}

/// Why [`RtpIn::admit`] turned a packet away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rejected {
    /// Unparseable or a foreign payload type: counted as malformed.
    Malformed,
    /// A duplicate or late packet: the sequence tracker counts it.
    OutOfOrder,
}

impl Rejected {
    /// What it adds to the malformed-packet count.
    pub(super) fn malformed(self) -> u64 {
        u64::from(self == Rejected::Malformed)
    }
}

/// One access unit of a video stream (world or eyes) through its decoder, timed as the
/// Decode phase; the pictures wait in the stream's stamp queue for their device time. Returns
/// the decode time and the decoder's verdict on this unit.
pub(super) fn decode_into(
    decoder: &mut dyn Decoder<FrameToken>,
    pool: &mut FramePool,
    decoded: &mut Vec<Decoded<FrameToken>>,
    stamp: &mut StampQueue<Decoded<FrameToken>>,
    au: &[u8],
    token: FrameToken,
    profile: &mut StageProfile,
) -> (u64, Result<(), DecodeError>) {
    let t = MonoNanos::now();
    let r = decoder.decode(au, token, pool, decoded);
    let ns = MonoNanos::now().since(t);
    profile.record_ns(Phase::Decode, ns);
    for d in decoded.drain(..) {
        stamp.push(d.token.ssrc, d.token.rtp_timestamp, d);
    }
    (ns, r)
}

/// Device Unix time to host monotonic time. Every sender report carries the device's clock at
/// sending (RFC 3550 6.4.1), so `arrival - sr_time` is the clock offset plus one network delay;
/// the minimum over reports is the offset plus the smallest delay (about zero on a LAN or
/// loopback). A frame's `capture_mono` is then its device time plus the offset, and the
/// report's end-to-end latency runs from capture, not from arrival.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HostClock {
    /// host_mono_ns - device_unix_ns.
    offset: Option<i128>,
    last: Option<MonoNanos>,
}

impl HostClock {
    pub(super) fn observe(&mut self, arrival: MonoNanos, device: UnixNanos) {
        let o = i128::from(arrival.0) - i128::from(device.0);
        let creep = self.last.map_or(0, |l| {
            i128::from(arrival.since(l)) * i128::from(OFFSET_CREEP_NS_PER_S) / 1_000_000_000
        });
        self.last = Some(arrival);
        self.offset = Some(self.offset.map_or(o, |prev| (prev + creep).min(o)));
    }

    pub(super) fn to_mono(self, device: UnixNanos) -> Option<MonoNanos> {
        let t = i128::from(device.0) + self.offset?;
        u64::try_from(t).ok().map(MonoNanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_clock_takes_the_smallest_delay_and_creeps_slowly() {
        let mut h = HostClock::default();
        h.observe(MonoNanos(10_000), UnixNanos(1_000));
        h.observe(MonoNanos(1_000_010_000), UnixNanos(1_000_000_000 + 500));
        // The second SR came 500 ns later than the first; within the 20 us a second may creep,
        // so the floor follows it.
        assert_eq!(h.offset, Some(9_500));
        assert_eq!(h.to_mono(UnixNanos(0)), Some(MonoNanos(9_500)));
        // One with less delay lowers it at once.
        h.observe(MonoNanos(1_000_020_000), UnixNanos(1_000_019_000));
        assert_eq!(h.offset, Some(1_000));
    }
}
