//! H.264 over RTP (RFC 6184): depacketizer to Annex-B access units for the receive side,
//! packetizer (single NAL / FU-A) and Annex-B NAL splitter for the send side.
//!
//! Hand-written rather than retina's depacketizer because the client also has to run on fixture
//! replay without an RTSP session, must resynchronise at the next IDR after loss (doc 10 item 5)
//! instead of only reporting it, and must not allocate per frame: access units are assembled into
//! a few reused buffers. The phone sends single NAL units and FU-A (doc 5.1); STAP-A is accepted
//! anyway, STAP-B/MTAP/FU-B are rejected and counted.

use std::collections::VecDeque;

use thiserror::Error;

use crate::neon::rtp::{RtpHeader, RtpPacket};

/// The Annex-B start code written before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Default largest RTP payload of the packetizer: a real phone's world packets are about 1272
/// bytes including the 12-byte header (doc 5.1), i.e. below a 1500-byte Ethernet MTU with room.
pub const DEFAULT_MAX_PAYLOAD: usize = 1200;

/// An access unit larger than this is treated as garbage (a 1600x1200 I-frame at high quality is
/// well under 2 MiB).
pub const MAX_ACCESS_UNIT: usize = 8 << 20;

pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;
pub const NAL_STAP_A: u8 = 24;
pub const NAL_FU_A: u8 = 28;

/// What was wrong with one packet. The depacketizer has already acted on it (the access unit is
/// dropped and it waits for the next IDR); the value is for the caller's counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum H264Error {
    #[error("RTP seq {seq}: empty H.264 payload")]
    EmptyPayload { seq: u16 },
    #[error("RTP seq {seq}: NAL header has the forbidden bit set")]
    ForbiddenBit { seq: u16 },
    #[error(
        "RTP seq {seq}: NAL unit type {nal_type} is not supported (STAP-B, MTAP, FU-B or reserved)"
    )]
    Unsupported { seq: u16, nal_type: u8 },
    #[error("RTP seq {seq}: STAP-A malformed at payload offset {offset}")]
    BadStapA { seq: u16, offset: usize },
    #[error("RTP seq {seq}: inconsistent FU-A ({problem})")]
    FuA { seq: u16, problem: &'static str },
    #[error("RTP seq {seq}: sequence gap (expected {expected}); access unit dropped")]
    SequenceGap { seq: u16, expected: u16 },
    #[error("RTP seq {seq}: access unit exceeds {MAX_ACCESS_UNIT} bytes")]
    TooLarge { seq: u16 },
}

/// Counters of a [`Depacketizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DepacketizerStats {
    pub packets: u64,
    pub access_units: u64,
    pub idr_access_units: u64,
    /// Access units dropped because of loss or a malformed packet.
    pub broken_access_units: u64,
    /// Complete access units dropped while waiting for an IDR (at start or after a break).
    pub skipped_waiting_for_idr: u64,
    pub sequence_gaps: u64,
    pub fu_a_errors: u64,
    pub unsupported_packets: u64,
    pub malformed_packets: u64,
    /// Times the stored SPS or PPS was replaced by a different in-band one.
    pub parameter_set_changes: u64,
    /// Broken access units handed out up to the loss ([`Depacketizer::set_partial`]); also
    /// counted in `broken_access_units`.
    pub partial_access_units: u64,
    /// Times stored SPS/PPS were prepended to an IDR that lacked them.
    pub parameter_sets_prepended: u64,
}

/// One complete access unit in Annex-B form, borrowed until the next [`Depacketizer::pull`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessUnit<'a> {
    pub data: &'a [u8],
    pub rtp_timestamp: u32,
    /// Contains an IDR slice: a decoder can start here.
    pub is_idr: bool,
    /// Cut short by loss ([`Depacketizer::set_partial`]): decodable with error concealment,
    /// but not the device's bytes (a passthrough recording skips it).
    pub partial: bool,
    /// An in-band SPS or PPS differing from the previous one is in this access unit (a decoder
    /// may need to re-open).
    pub parameters_changed: bool,
}

#[derive(Debug)]
struct ReadyAu {
    data: Vec<u8>,
    rtp_timestamp: u32,
    is_idr: bool,
    partial: bool,
    parameters_changed: bool,
}

/// RTP packets of one H.264 stream in, Annex-B access units out.
///
/// An access unit ends at the marker bit or when the RTP timestamp changes (the phone's marker use
/// is unconfirmed, doc 10 item 5). Packets must arrive in sequence order (put a
/// [`ReorderBuffer`](crate::neon::rtp::ReorderBuffer) in front on UDP); any sequence gap drops the
/// access unit in progress and the one the next packet belongs to (the lost packets may have
/// been its beginning), and output resumes at the next complete IDR access unit. Output also
/// starts at an IDR, so a decoder never starts mid-GOP (the Python client does).
#[derive(Debug)]
pub struct Depacketizer {
    sps: Vec<u8>,
    pps: Vec<u8>,
    cur: Vec<u8>,
    cur_ts: Option<u32>,
    cur_broken: bool,
    cur_idr: bool,
    cur_has_sps: bool,
    cur_has_pps: bool,
    cur_params_changed: bool,
    /// Type of the FU-A NAL in progress and where its header byte sits in `cur`.
    fu: Option<(u8, usize)>,
    last_seq: Option<u16>,
    waiting_for_idr: bool,
    /// After a broken access unit, wait for the next IDR (default) or go on with the next
    /// complete access unit ([`Depacketizer::set_resync_at_idr`]).
    resync_at_idr: bool,
    /// Hand out an access unit cut short by loss, up to the loss
    /// ([`Depacketizer::set_partial`]).
    partial: bool,
    ready: VecDeque<ReadyAu>,
    spare: Vec<Vec<u8>>,
    out: Option<ReadyAu>,
    stats: DepacketizerStats,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer {
    pub fn new() -> Self {
        Depacketizer {
            sps: Vec::new(),
            pps: Vec::new(),
            cur: Vec::with_capacity(256 << 10),
            cur_ts: None,
            cur_broken: false,
            cur_idr: false,
            cur_has_sps: false,
            cur_has_pps: false,
            cur_params_changed: false,
            fu: None,
            last_seq: None,
            waiting_for_idr: true,
            resync_at_idr: true,
            partial: false,
            ready: VecDeque::with_capacity(4),
            spare: Vec::with_capacity(4),
            out: None,
            stats: DepacketizerStats::default(),
        }
    }

    /// Stores SPS/PPS, e.g. the SDP's `sprop-parameter-sets` (doc 5.1); other NAL types are
    /// ignored. They are prepended to the first IDR (and the first after a resync) that lacks
    /// in-band ones.
    pub fn set_parameter_sets<'a>(&mut self, nals: impl IntoIterator<Item = &'a [u8]>) {
        for nal in nals {
            match nal.first().map(|h| h & 0x1f) {
                Some(NAL_SPS) => replace(&mut self.sps, nal),
                Some(NAL_PPS) => replace(&mut self.pps, nal),
                _ => {}
            }
        }
    }

    /// With `false`, output goes on at the next complete access unit after one was dropped for
    /// loss, for a decoder that conceals the missing reference (a live preview under steady
    /// loss); with `true` (the default) it resumes at the next IDR. The stream still starts at
    /// an IDR either way.
    pub fn set_resync_at_idr(&mut self, on: bool) {
        self.resync_at_idr = on;
    }

    /// An IDR picture of a 1600x1200 stream spans ~80 packets, so at a few % loss it rarely
    /// arrives whole, and waiting for a whole one leaves the screen empty for many seconds
    /// (2 % loss: 33 of 300 frames shown). With `on`, an access unit broken by loss is handed
    /// out with everything that came before the first lost packet (a truncated slice), flagged
    /// `partial`: libavcodec decodes the macroblocks it has and conceals the rest from the
    /// previous picture, and the next whole IDR repairs it (2 % loss: 298 of 300). Off by
    /// default: a decoder without error concealment (openh264) only reports errors.
    pub fn set_partial(&mut self, on: bool) {
        self.partial = on;
    }

    /// The stored (latest) SPS and PPS, if any.
    pub fn parameter_sets(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        fn nonempty(v: &[u8]) -> Option<&[u8]> {
            (!v.is_empty()).then_some(v)
        }
        (nonempty(&self.sps), nonempty(&self.pps))
    }

    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Drops all state except the stored parameter sets (reconnect: new SSRC, sequence base).
    pub fn reset(&mut self) {
        self.cur.clear();
        self.cur_ts = None;
        self.fu = None;
        self.last_seq = None;
        self.waiting_for_idr = true;
        while let Some(mut au) = self.ready.pop_front() {
            au.data.clear();
            self.spare.push(au.data);
        }
    }

    /// Feeds one packet; then [`pull`](Self::pull) until `None` (finished access units queue up
    /// until pulled). On `Err` the packet has been accounted for; keep feeding. Payload types
    /// are not checked here: filter on the SDP's PT first if the socket can carry others.
    pub fn push(&mut self, pkt: &RtpPacket<'_>) -> Result<(), H264Error> {
        self.stats.packets += 1;
        let seq = pkt.sequence;
        let expected = self.last_seq.map(|l| l.wrapping_add(1));
        self.last_seq = Some(seq);
        let gap = expected.is_some_and(|e| e != seq);
        if self.cur_ts.is_some_and(|t| t != pkt.timestamp) {
            if gap {
                self.cur_broken = true;
            }
            self.finish();
        }
        if self.cur_ts.is_none() {
            self.begin(pkt.timestamp);
        }
        let mut result = Ok(());
        if gap {
            self.stats.sequence_gaps += 1;
            self.cur_broken = true;
            result = Err(H264Error::SequenceGap {
                seq,
                expected: expected.unwrap_or(seq),
            });
        }
        if !self.cur_broken {
            if let Err(e) = self.payload(seq, pkt.payload) {
                match e {
                    H264Error::FuA { .. } => self.stats.fu_a_errors += 1,
                    H264Error::Unsupported { .. } => self.stats.unsupported_packets += 1,
                    H264Error::EmptyPayload { .. } => {}
                    _ => self.stats.malformed_packets += 1,
                }
                if !matches!(e, H264Error::EmptyPayload { .. }) {
                    self.cur_broken = true;
                }
                result = Err(e);
            }
        }
        if pkt.marker {
            self.finish();
        }
        result
    }

    /// Ends the access unit in progress as if its marker had arrived (end of stream, or a
    /// receive timeout on a phone that does not set the marker).
    pub fn flush(&mut self) {
        self.finish();
    }

    /// The next complete access unit, valid until the next call.
    pub fn pull(&mut self) -> Option<AccessUnit<'_>> {
        if let Some(mut prev) = self.out.take() {
            prev.data.clear();
            self.spare.push(prev.data);
        }
        self.out = self.ready.pop_front();
        self.out.as_ref().map(|r| AccessUnit {
            data: &r.data,
            rtp_timestamp: r.rtp_timestamp,
            is_idr: r.is_idr,
            partial: r.partial,
            parameters_changed: r.parameters_changed,
        })
    }

    fn begin(&mut self, ts: u32) {
        self.cur_ts = Some(ts);
        self.cur.clear();
        self.cur_broken = false;
        self.cur_idr = false;
        self.cur_has_sps = false;
        self.cur_has_pps = false;
        self.cur_params_changed = false;
        self.fu = None;
    }

    fn finish(&mut self) {
        let Some(ts) = self.cur_ts.take() else {
            return;
        };
        if self.fu.take().is_some() && !self.cur_broken {
            // The fragmented NAL never got its end bit.
            self.stats.fu_a_errors += 1;
            self.cur_broken = true;
        }
        let partial = self.cur_broken && self.partial;
        if self.cur_broken {
            self.stats.broken_access_units += 1;
            if self.resync_at_idr {
                self.waiting_for_idr = true;
            }
            if !partial {
                return;
            }
        }
        if self.cur.is_empty() {
            return;
        }
        if self.waiting_for_idr {
            if !self.cur_idr {
                if !partial {
                    // (a cut one is already counted as broken)
                    self.stats.skipped_waiting_for_idr += 1;
                }
                return;
            }
            self.prepend_missing_parameter_sets();
            self.waiting_for_idr = false;
        }
        self.stats.access_units += 1;
        if self.cur_idr {
            self.stats.idr_access_units += 1;
        }
        if partial {
            self.stats.partial_access_units += 1;
        }
        let next = self.spare.pop().unwrap_or_default();
        let data = std::mem::replace(&mut self.cur, next);
        self.ready.push_back(ReadyAu {
            data,
            rtp_timestamp: ts,
            is_idr: self.cur_idr,
            partial,
            parameters_changed: self.cur_params_changed,
        });
    }

    /// Only at the first IDR and after a resync, so the memmove is rare.
    fn prepend_missing_parameter_sets(&mut self) {
        let sps = !self.cur_has_sps && !self.sps.is_empty();
        let pps = !self.cur_has_pps && !self.pps.is_empty();
        if !sps && !pps {
            return;
        }
        self.stats.parameter_sets_prepended += 1;
        let mut prefix_len = 0;
        if sps {
            prefix_len += START_CODE.len() + self.sps.len();
        }
        if pps {
            prefix_len += START_CODE.len() + self.pps.len();
        }
        let old = self.cur.len();
        self.cur.resize(old + prefix_len, 0);
        self.cur.copy_within(0..old, prefix_len);
        let mut at = 0;
        for (want, nal) in [(sps, &self.sps), (pps, &self.pps)] {
            if want {
                self.cur[at..at + 4].copy_from_slice(&START_CODE);
                self.cur[at + 4..at + 4 + nal.len()].copy_from_slice(nal);
                at += 4 + nal.len();
            }
        }
    }

    fn payload(&mut self, seq: u16, payload: &[u8]) -> Result<(), H264Error> {
        let Some(&header) = payload.first() else {
            return Err(H264Error::EmptyPayload { seq });
        };
        if header & 0x80 != 0 {
            return Err(H264Error::ForbiddenBit { seq });
        }
        let nal_type = header & 0x1f;
        if self.fu.is_some() && nal_type != NAL_FU_A {
            return Err(H264Error::FuA {
                seq,
                problem: "other packet inside a fragmented NAL",
            });
        }
        match nal_type {
            1..=23 => self.append_nal(seq, payload),
            NAL_STAP_A => {
                let mut off = 1;
                while off < payload.len() {
                    let size = payload
                        .get(off..off + 2)
                        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                        .ok_or(H264Error::BadStapA { seq, offset: off })?;
                    let nal = payload
                        .get(off + 2..off + 2 + size)
                        .filter(|n| !n.is_empty())
                        .ok_or(H264Error::BadStapA { seq, offset: off })?;
                    if nal[0] & 0x80 != 0 {
                        return Err(H264Error::ForbiddenBit { seq });
                    }
                    self.append_nal(seq, nal)?;
                    off += 2 + size;
                }
                if off == 1 {
                    return Err(H264Error::BadStapA { seq, offset: 1 });
                }
                Ok(())
            }
            NAL_FU_A => self.fu_a(seq, header, payload),
            _ => Err(H264Error::Unsupported { seq, nal_type }),
        }
    }

    fn fu_a(&mut self, seq: u16, indicator: u8, payload: &[u8]) -> Result<(), H264Error> {
        let Some(&fu_header) = payload.get(1) else {
            return Err(H264Error::FuA {
                seq,
                problem: "no FU header",
            });
        };
        let start = fu_header & 0x80 != 0;
        let end = fu_header & 0x40 != 0;
        let frag_type = fu_header & 0x1f;
        let data = &payload[2..];
        if start && end {
            return Err(H264Error::FuA {
                seq,
                problem: "start and end bit both set",
            });
        }
        if start {
            if self.fu.is_some() {
                return Err(H264Error::FuA {
                    seq,
                    problem: "new start before the previous fragment ended",
                });
            }
            self.reserve(seq, START_CODE.len() + 1 + data.len())?;
            self.cur.extend_from_slice(&START_CODE);
            let at = self.cur.len();
            self.cur.push((indicator & 0xe0) | frag_type);
            self.cur.extend_from_slice(data);
            self.fu = Some((frag_type, at));
            if frag_type == NAL_IDR {
                self.cur_idr = true;
            }
            return Ok(());
        }
        let Some((t, at)) = self.fu else {
            return Err(H264Error::FuA {
                seq,
                problem: "continuation without a start",
            });
        };
        if t != frag_type {
            return Err(H264Error::FuA {
                seq,
                problem: "fragment type changed",
            });
        }
        self.reserve(seq, data.len())?;
        self.cur.extend_from_slice(data);
        if end {
            self.fu = None;
            self.nal_complete(at);
        }
        Ok(())
    }

    fn reserve(&self, seq: u16, more: usize) -> Result<(), H264Error> {
        if self.cur.len() + more > MAX_ACCESS_UNIT {
            Err(H264Error::TooLarge { seq })
        } else {
            Ok(())
        }
    }

    fn append_nal(&mut self, seq: u16, nal: &[u8]) -> Result<(), H264Error> {
        self.reserve(seq, START_CODE.len() + nal.len())?;
        self.cur.extend_from_slice(&START_CODE);
        let at = self.cur.len();
        self.cur.extend_from_slice(nal);
        self.nal_complete(at);
        Ok(())
    }

    fn nal_complete(&mut self, at: usize) {
        let nal = &self.cur[at..];
        let Some(&h) = nal.first() else {
            return;
        };
        let (stored, flag) = match h & 0x1f {
            NAL_IDR => {
                self.cur_idr = true;
                return;
            }
            NAL_SPS => (&mut self.sps, &mut self.cur_has_sps),
            NAL_PPS => (&mut self.pps, &mut self.cur_has_pps),
            _ => return,
        };
        *flag = true;
        if stored.as_slice() != nal {
            if !stored.is_empty() {
                self.stats.parameter_set_changes += 1;
                self.cur_params_changed = true;
            }
            stored.clear();
            stored.extend_from_slice(nal);
        }
    }
}

fn replace(v: &mut Vec<u8>, with: &[u8]) {
    v.clear();
    v.extend_from_slice(with);
}

/// Iterates the NAL units of an Annex-B byte stream (3- or 4-byte start codes), without the
/// start codes and without trailing zero bytes. Bytes before the first start code that are not
/// all zero count as a NAL unit, so a bare NAL unit is yielded whole.
#[derive(Debug, Clone)]
pub struct AnnexBNals<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Splits an Annex-B buffer into NAL units.
pub fn annex_b_nals(buf: &[u8]) -> AnnexBNals<'_> {
    let pos = match find_start_code(buf, 0) {
        Some(sc) if buf[..sc].iter().all(|&b| b == 0) => sc + 3,
        _ => 0,
    };
    AnnexBNals { buf, pos }
}

/// Index of the next `00 00 01` at or after `from`.
fn find_start_code(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 2 < buf.len() {
        let c = buf[i + 2];
        if c > 1 {
            i += 3;
        } else if c == 1 && buf[i] == 0 && buf[i + 1] == 0 {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

impl<'a> Iterator for AnnexBNals<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.buf.len() {
            let start = self.pos;
            let end = match find_start_code(self.buf, start) {
                Some(sc) => {
                    self.pos = sc + 3;
                    sc
                }
                None => {
                    self.pos = self.buf.len();
                    self.buf.len()
                }
            };
            let mut nal = &self.buf[start..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    }
}

/// Splits access units into RTP payloads the way the phone does: a NAL that fits goes whole
/// (single NAL unit packet), a larger one as FU-A fragments (doc 10, simulator item 9).
#[derive(Debug, Clone)]
pub struct Packetizer {
    max_payload: usize,
    scratch: Vec<u8>,
}

impl Default for Packetizer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl Packetizer {
    /// `max_payload` is clamped to at least 3 (two FU-A header bytes plus one data byte).
    pub fn new(max_payload: usize) -> Self {
        let max_payload = max_payload.max(3);
        Packetizer {
            max_payload,
            scratch: Vec::with_capacity(max_payload),
        }
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Calls `emit(payload, last_of_access_unit)` for every RTP payload of the Annex-B access
    /// unit `au`; returns the number of payloads.
    pub fn packetize(&mut self, au: &[u8], mut emit: impl FnMut(&[u8], bool)) -> usize {
        let mut count = 0;
        let mut nals = annex_b_nals(au).peekable();
        while let Some(nal) = nals.next() {
            let last_nal = nals.peek().is_none();
            if nal.len() <= self.max_payload {
                emit(nal, last_nal);
                count += 1;
                continue;
            }
            let indicator = (nal[0] & 0xe0) | NAL_FU_A;
            let nal_type = nal[0] & 0x1f;
            let chunk = self.max_payload - 2;
            let body = &nal[1..];
            let pieces = body.len().div_ceil(chunk);
            for (i, part) in body.chunks(chunk).enumerate() {
                let mut fu_header = nal_type;
                if i == 0 {
                    fu_header |= 0x80;
                }
                let last_piece = i + 1 == pieces;
                if last_piece {
                    fu_header |= 0x40;
                }
                self.scratch.clear();
                self.scratch.push(indicator);
                self.scratch.push(fu_header);
                self.scratch.extend_from_slice(part);
                emit(&self.scratch, last_nal && last_piece);
                count += 1;
            }
        }
        count
    }
}

/// A [`Packetizer`] plus RTP headers: sequence numbers count up per packet, the marker is set on
/// the last packet of each access unit.
#[derive(Debug, Clone)]
pub struct RtpPacketizer {
    packetizer: Packetizer,
    header: RtpHeader,
    packet: Vec<u8>,
}

impl RtpPacketizer {
    pub fn new(max_payload: usize, payload_type: u8, ssrc: u32, first_sequence: u16) -> Self {
        RtpPacketizer {
            packetizer: Packetizer::new(max_payload),
            header: RtpHeader {
                marker: false,
                payload_type,
                sequence: first_sequence,
                timestamp: 0,
                ssrc,
            },
            packet: Vec::with_capacity(max_payload + crate::neon::rtp::HEADER_LEN),
        }
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.header.sequence
    }

    /// Calls `emit(rtp_packet)` for each packet of `au`, all stamped `rtp_timestamp`.
    pub fn packetize(
        &mut self,
        au: &[u8],
        rtp_timestamp: u32,
        mut emit: impl FnMut(&[u8]),
    ) -> usize {
        let header = &mut self.header;
        let packet = &mut self.packet;
        header.timestamp = rtp_timestamp;
        self.packetizer.packetize(au, |payload, last| {
            header.marker = last;
            packet.clear();
            header.write(payload, packet);
            emit(packet);
            header.sequence = header.sequence.wrapping_add(1);
        })
    }
}

/// Picture size from an SPS (NAL header included), for when the full parser refuses it.
///
/// `h264_reader` rejects SPSs that carry reserved VUI values, and real phones send them: the
/// Neon scene recording in `../shared/data/neon-scene-real` has `colour_primaries = 0`
/// (reserved in H.264 table E-3) in its VUI. The size comes before the VUI, so this reads only
/// up to the frame cropping (H.264 7.3.2.1.1) and gives up (None) on anything it does not
/// know, e.g. a scaling matrix in a High-profile SPS. Bounds-checked: never panics on input.
pub fn sps_dimensions(sps: &[u8]) -> Option<(usize, usize)> {
    if sps.first()? & 0x1f != NAL_SPS {
        return None;
    }
    // RBSP: drop the emulation-prevention byte of every 00 00 03.
    let mut rbsp = Vec::with_capacity(sps.len());
    let mut zeros = 0;
    for &b in &sps[1..] {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = BitReader {
        data: &rbsp,
        pos: 0,
    };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            return None; // scaling matrices: not needed for the size, not parsed here
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let height_mbs = height_units.checked_mul(2 - frame_mbs_only)?;
    let (mut w, mut h) = (width_mbs.checked_mul(16)?, height_mbs.checked_mul(16)?);
    if r.bits(1)? == 1 {
        let (sub_w, sub_h) = match chroma_format_idc {
            0 | 3 => (1, 2 - frame_mbs_only),
            2 => (2, 2 - frame_mbs_only),
            _ => (2, 2 * (2 - frame_mbs_only)),
        };
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        w = w.checked_sub(l.checked_add(rt)?.checked_mul(sub_w)?)?;
        h = h.checked_sub(t.checked_add(b)?.checked_mul(sub_h)?)?;
    }
    (w > 0 && h > 0 && w <= 16_384 && h <= 16_384).then_some((w as usize, h as usize))
}

/// MSB-first bit reader with exp-Golomb codes, for [`sps_dimensions`].
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rtp(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        RtpHeader {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
        }
        .write(payload, &mut v);
        v
    }

    fn feed(d: &mut Depacketizer, packets: &[Vec<u8>]) -> Vec<(u32, bool, Vec<u8>)> {
        let mut out = Vec::new();
        for p in packets {
            let _ = d.push(&RtpPacket::parse(p).unwrap());
            while let Some(au) = d.pull() {
                out.push((au.rtp_timestamp, au.is_idr, au.data.to_vec()));
            }
        }
        out
    }

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&START_CODE);
            v.extend_from_slice(n);
        }
        v
    }

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
    const P: &[u8] = &[0x41, 0x9a, 0x02];

    #[test]
    fn splits_annex_b_with_both_start_code_lengths() {
        let buf = [
            0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0, 0, 1, 0x65, 3, 0,
        ];
        let nals: Vec<_> = annex_b_nals(&buf).collect();
        assert_eq!(nals, vec![&[0x67, 1][..], &[0x68, 2], &[0x65, 3]]);
        assert_eq!(
            annex_b_nals(&[0x41, 5]).collect::<Vec<_>>(),
            vec![&[0x41, 5][..]]
        );
        assert_eq!(annex_b_nals(&[0, 0, 1]).count(), 0);
        assert_eq!(annex_b_nals(&[]).count(), 0);
    }

    #[test]
    fn starts_at_idr_and_prepends_sdp_parameter_sets() {
        let mut d = Depacketizer::new();
        d.set_parameter_sets([SPS, PPS, &[0x06u8, 1][..]]);
        let out = feed(
            &mut d,
            &[
                rtp(10, 0, true, P), // mid-GOP: skipped
                rtp(11, 3000, true, IDR),
                rtp(12, 6000, true, P),
            ],
        );
        assert_eq!(
            out,
            vec![
                (3000, true, annex_b(&[SPS, PPS, IDR])),
                (6000, false, annex_b(&[P])),
            ]
        );
        let s = d.stats();
        assert_eq!(s.skipped_waiting_for_idr, 1);
        assert_eq!(s.parameter_sets_prepended, 1);
        assert_eq!((s.access_units, s.idr_access_units), (2, 1));
    }

    #[test]
    fn in_band_parameter_change_is_flagged() {
        let mut d = Depacketizer::new();
        let sps2: &[u8] = &[0x67, 0x64, 0x00, 0x28];
        let packets = [
            rtp(1, 0, false, SPS),
            rtp(2, 0, false, PPS),
            rtp(3, 0, true, IDR),
            rtp(4, 3000, false, sps2),
            rtp(5, 3000, false, PPS),
            rtp(6, 3000, true, IDR),
        ];
        let mut changed = Vec::new();
        for p in &packets {
            d.push(&RtpPacket::parse(p).unwrap()).unwrap();
            while let Some(au) = d.pull() {
                changed.push(au.parameters_changed);
            }
        }
        assert_eq!(changed, vec![false, true]);
        assert_eq!(d.parameter_sets(), (Some(sps2), Some(PPS)));
        assert_eq!(d.stats().parameter_set_changes, 1);
    }

    #[test]
    fn stap_a_and_timestamp_boundaries_without_marker() {
        let mut d = Depacketizer::new();
        let mut stap = vec![NAL_STAP_A];
        for n in [SPS, PPS, IDR] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        let out = feed(
            &mut d,
            &[
                rtp(1, 0, false, &stap),
                rtp(2, 3000, false, P),
                rtp(3, 6000, false, P),
            ],
        );
        // No marker anywhere: each AU ends when the timestamp changes.
        assert_eq!(
            out,
            vec![
                (0, true, annex_b(&[SPS, PPS, IDR])),
                (3000, false, annex_b(&[P]))
            ]
        );
        d.flush();
        assert_eq!(d.pull().map(|a| a.rtp_timestamp), Some(6000));
        assert!(d.pull().is_none());
    }

    #[test]
    fn rejects_unsupported_and_malformed_packets() {
        type Check = fn(&H264Error) -> bool;
        let cases: &[(&[u8], Check)] = &[
            (&[29, 0x85, 1], |e| {
                matches!(e, H264Error::Unsupported { nal_type: 29, .. })
            }),
            (&[26, 0, 0], |e| {
                matches!(e, H264Error::Unsupported { nal_type: 26, .. })
            }),
            (&[25, 0], |e| {
                matches!(e, H264Error::Unsupported { nal_type: 25, .. })
            }),
            (&[0x80 | 5, 1], |e| {
                matches!(e, H264Error::ForbiddenBit { .. })
            }),
            (&[24, 0, 9, 0x65], |e| {
                matches!(e, H264Error::BadStapA { offset: 1, .. })
            }),
            (&[24], |e| matches!(e, H264Error::BadStapA { .. })),
            (&[28], |e| matches!(e, H264Error::FuA { .. })),
            (&[28, 0xc5, 1], |e| matches!(e, H264Error::FuA { .. })),
            (&[28, 0x05, 1], |e| matches!(e, H264Error::FuA { .. })),
        ];
        for (payload, check) in cases {
            let mut d = Depacketizer::new();
            d.push(&RtpPacket::parse(&rtp(1, 0, false, IDR)).unwrap())
                .unwrap();
            let e = d
                .push(&RtpPacket::parse(&rtp(2, 0, true, payload)).unwrap())
                .unwrap_err();
            assert!(check(&e), "{payload:?}: {e}");
            assert!(d.pull().is_none(), "{payload:?} should break the AU");
            assert_eq!(d.stats().broken_access_units, 1);
        }
        let mut d = Depacketizer::new();
        assert_eq!(
            d.push(&RtpPacket::parse(&rtp(1, 0, true, &[])).unwrap()),
            Err(H264Error::EmptyPayload { seq: 1 })
        );
    }

    #[test]
    fn lost_fragment_drops_until_next_idr() {
        let mut pk = RtpPacketizer::new(100, 96, 7, 65530);
        let big_idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..500).map(|i| (i % 200 + 10) as u8))
            .collect();
        let aus = [
            annex_b(&[SPS, PPS, &big_idr]),
            annex_b(&[P]),
            annex_b(&[P, P]),
            annex_b(&[SPS, PPS, &big_idr]),
        ];
        let mut packets = Vec::new();
        for (i, au) in aus.iter().enumerate() {
            pk.packetize(au, i as u32 * 3000, |p| packets.push(p.to_vec()));
        }
        // Drop the third packet (an IDR fragment of AU 0): AUs 0-2 are lost, AU 3 resyncs.
        packets.remove(3);
        let mut d = Depacketizer::new();
        let out = feed(&mut d, &packets);
        assert_eq!(out, vec![(9000, true, aus[3].clone())]);
        let s = d.stats();
        assert_eq!(s.sequence_gaps, 1);
        assert_eq!(s.broken_access_units, 1);
        assert_eq!(s.skipped_waiting_for_idr, 2);
    }

    #[test]
    fn partial_mode_hands_out_a_broken_access_unit_up_to_the_loss() {
        let mut pk = RtpPacketizer::new(100, 96, 7, 65530);
        let big_idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..500).map(|i| (i % 200 + 10) as u8))
            .collect();
        let aus = [annex_b(&[SPS, PPS, &big_idr]), annex_b(&[P])];
        let mut packets = Vec::new();
        for (i, au) in aus.iter().enumerate() {
            pk.packetize(au, i as u32 * 3000, |p| packets.push(p.to_vec()));
        }
        // Packets 0 and 1 are SPS and PPS, 2.. the IDR's fragments: lose the second fragment.
        packets.remove(3);
        let mut d = Depacketizer::new();
        d.set_partial(true);
        let out = feed(&mut d, &packets);
        assert_eq!(out.len(), 2, "the cut IDR and the P after it");
        let (ts, idr, data) = &out[0];
        assert_eq!((*ts, *idr), (0, true));
        // SPS, PPS and the IDR's first fragment (header + 98 bytes), nothing after the gap.
        let first = annex_b(&[SPS, PPS, &big_idr[..99]]);
        assert_eq!(data, &first);
        assert_eq!(out[1], (3000, false, aus[1].clone()));
        let s = d.stats();
        assert_eq!(s.broken_access_units, 1);
        assert_eq!(s.partial_access_units, 1);
        assert_eq!(s.skipped_waiting_for_idr, 0);
    }

    #[test]
    fn without_idr_resync_the_next_complete_access_unit_comes_out() {
        let mut pk = RtpPacketizer::new(100, 96, 7, 1);
        let big_idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..500).map(|i| (i % 200 + 10) as u8))
            .collect();
        let big_p: Vec<u8> = std::iter::once(0x41)
            .chain((0..300).map(|i| (i % 200 + 10) as u8))
            .collect();
        let aus = [
            annex_b(&[SPS, PPS, &big_idr]),
            annex_b(&[&big_p]),
            annex_b(&[P]),
            annex_b(&[P, P]),
        ];
        let mut packets = Vec::new();
        let mut counts = Vec::new();
        for (i, au) in aus.iter().enumerate() {
            counts.push(pk.packetize(au, i as u32 * 3000, |p| packets.push(p.to_vec())));
        }
        assert!(counts[1] >= 3, "AU 1 is fragmented");
        // Drop the second fragment of AU 1.
        packets.remove(counts[0] + 1);
        let mut d = Depacketizer::new();
        d.set_resync_at_idr(false);
        let out = feed(&mut d, &packets);
        let stamps: Vec<u32> = out.iter().map(|o| o.0).collect();
        assert_eq!(
            stamps,
            vec![0, 6000, 9000],
            "AU 1 dropped, AU 2 and 3 go on"
        );
        assert_eq!(out[1].2, aus[2]);
        assert_eq!(d.stats().broken_access_units, 1);
        assert_eq!(d.stats().skipped_waiting_for_idr, 0);
    }

    #[test]
    fn packetizer_splits_like_the_phone() {
        let mut p = Packetizer::new(10);
        let nal: Vec<u8> = (0..25u8).map(|i| if i == 0 { 0x65 } else { i }).collect();
        let au = annex_b(&[SPS, &nal]);
        let mut out = Vec::new();
        let n = p.packetize(&au, |pl, last| out.push((pl.to_vec(), last)));
        assert_eq!(n, 4);
        assert_eq!(out[0], (SPS.to_vec(), false));
        // 24 body bytes in 8-byte pieces: start, middle, end.
        assert_eq!(out[1].0[..2], [0x60 | 28, 0x80 | 5]);
        assert_eq!(out[2].0[..2], [0x60 | 28, 5]);
        assert_eq!(out[3].0[..2], [0x60 | 28, 0x40 | 5]);
        assert!(out[3].1);
        assert!(out.iter().all(|(pl, _)| pl.len() <= 10));
    }

    /// NAL bodies with emulation prevention applied, so they never contain a start code, and a
    /// non-zero last byte (the RBSP stop bit), as real encoders produce.
    fn nal_strategy(header: u8, max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(move |raw| {
            let mut v = vec![header];
            let mut zeros = 0;
            for b in raw {
                if zeros >= 2 && b <= 3 {
                    v.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                v.push(b);
            }
            v.push(0x80);
            v
        })
    }

    fn au_strategy(idr: bool) -> BoxedStrategy<Vec<u8>> {
        if idr {
            (
                nal_strategy(0x67, 12),
                nal_strategy(0x68, 6),
                proptest::collection::vec(nal_strategy(0x65, 3000), 1..3),
            )
                .prop_map(|(s, p, slices)| {
                    let mut all = vec![s, p];
                    all.extend(slices);
                    annex_b(&all.iter().map(|v| &v[..]).collect::<Vec<_>>())
                })
                .boxed()
        } else {
            (
                any::<bool>(),
                proptest::collection::vec(nal_strategy(0x41, 3000), 1..3),
            )
                .prop_map(|(aud, slices)| {
                    let mut all: Vec<&[u8]> = Vec::new();
                    if aud {
                        all.push(&[0x09, 0xf0]);
                    }
                    all.extend(slices.iter().map(|v| &v[..]));
                    annex_b(&all)
                })
                .boxed()
        }
    }

    fn stream_strategy() -> impl Strategy<Value = (usize, Vec<Vec<u8>>)> {
        (1usize..6, 1usize..16).prop_flat_map(|(gop, n)| {
            let aus: Vec<_> = (0..n).map(|i| au_strategy(i % gop == 0)).collect();
            (Just(gop), aus)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]

        /// Random GOPs, random MTU, random losses: every AU not hit by loss comes out byte for
        /// byte, except those after a loss until the next intact IDR, which is where output
        /// resumes.
        #[test]
        fn packetize_depacketize_round_trip_with_loss(
            (gop, aus) in stream_strategy(),
            max_payload in 20usize..1400,
            first_seq: u16,
            base_ts: u32,
            losses in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
            partial: bool,
        ) {
            let _ = gop;
            let mut pk = RtpPacketizer::new(max_payload, 96, 42, first_seq);
            let mut packets: Vec<(usize, Vec<u8>)> = Vec::new();
            for (i, au) in aus.iter().enumerate() {
                let ts = base_ts.wrapping_add(i as u32 * 3000);
                pk.packetize(au, ts, |p| packets.push((i, p.to_vec())));
            }
            // Never the very first packet: with nothing before it, its loss is undetectable.
            let mut lost = vec![false; packets.len()];
            if packets.len() > 1 {
                for l in &losses {
                    lost[1 + l.index(packets.len() - 1)] = true;
                }
            }
            // The model: an AU is broken if it lost a packet, or if the packet right before its
            // first one was lost (the gap shows up at its start).
            let mut hit = vec![false; aus.len()];
            let mut first_pkt = vec![usize::MAX; aus.len()];
            for (k, (i, _)) in packets.iter().enumerate() {
                first_pkt[*i] = first_pkt[*i].min(k);
                if lost[k] {
                    hit[*i] = true;
                }
            }
            // Partial mode is set up as the assembler's conceal policy sets it: no resync.
            let mut d = Depacketizer::new();
            d.set_partial(partial);
            d.set_resync_at_idr(!partial);
            let mut got = Vec::new();
            let mut cut = Vec::new();
            for (k, (_, p)) in packets.iter().enumerate() {
                if lost[k] {
                    continue;
                }
                let _ = d.push(&RtpPacket::parse(p).unwrap());
                while let Some(au) = d.pull() {
                    prop_assert!(au.data.starts_with(&START_CODE));
                    if au.partial {
                        cut.push(au.rtp_timestamp);
                    } else {
                        prop_assert_eq!(au.is_idr, au.data[4] & 0x1f == 7);
                        got.push((au.rtp_timestamp, au.data.to_vec()));
                    }
                }
            }
            prop_assert!(partial || cut.is_empty());
            let mut expected = Vec::new();
            let mut waiting = true;
            for (i, au) in aus.iter().enumerate() {
                let f = first_pkt[i];
                let ts = base_ts.wrapping_add(i as u32 * 3000);
                let broken = hit[i] || (f > 0 && lost[f - 1]);
                let idr = au[4] & 0x1f == 7;
                if broken {
                    // Cut pictures come only from broken access units; once one is out,
                    // decoding has started, so what follows comes out too.
                    if cut.contains(&ts) {
                        waiting = false;
                    } else if !partial {
                        waiting = true;
                    }
                } else if !waiting || idr {
                    waiting = false;
                    expected.push((ts, au.clone()));
                }
                prop_assert!(!cut.contains(&ts) || broken);
            }
            prop_assert!(packets.iter().all(|(_, p)| p.len() <= max_payload.max(3) + 12));
            prop_assert_eq!(got, expected);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Arbitrary packet sequences (payload bytes, marker, timestamp and sequence jumps)
        /// never panic and keep the counters consistent.
        #[test]
        fn depacketizer_survives_arbitrary_packets(
            packets in proptest::collection::vec(
                (any::<bool>(), 0u32..3, 0u16..3, proptest::collection::vec(any::<u8>(), 0..40)),
                0..60),
            partial: bool,
        ) {
            let mut d = Depacketizer::new();
            d.set_partial(partial);
            let (mut seq, mut ts) = (0u16, 0u32);
            let mut emitted = 0u64;
            for (marker, dts, dseq, payload) in &packets {
                seq = seq.wrapping_add(*dseq);
                ts = ts.wrapping_add(*dts * 3000);
                let bytes = rtp(seq, ts, *marker, payload);
                let _ = d.push(&RtpPacket::parse(&bytes).unwrap());
                while let Some(au) = d.pull() {
                    prop_assert!(!au.data.is_empty());
                    prop_assert!(au.data.starts_with(&START_CODE));
                    emitted += 1;
                }
            }
            d.flush();
            while d.pull().is_some() {
                emitted += 1;
            }
            let s = d.stats();
            prop_assert_eq!(s.access_units, emitted);
            // A cut access unit counts as broken and as handed out.
            prop_assert!(s.partial_access_units <= s.broken_access_units);
            prop_assert!(s.access_units - s.partial_access_units + s.broken_access_units
                + s.skipped_waiting_for_idr <= packets.len() as u64);
        }

        #[test]
        fn annex_b_split_never_panics_and_loses_no_payload(
            bytes in proptest::collection::vec(0u8..4, 0..200)
        ) {
            let total: usize = annex_b_nals(&bytes).map(|n| n.len()).sum();
            prop_assert!(total <= bytes.len());
            for n in annex_b_nals(&bytes) {
                prop_assert!(!n.is_empty() && *n.last().unwrap() != 0);
            }
        }
    }

    /// The real phone's SPS (Neon scene recording, Baseline 1600x1200, VUI with the reserved
    /// colour_primaries 0 that h264_reader refuses), and one with cropping (1920x1080).
    #[test]
    fn sps_dimensions_of_real_and_cropped_streams() {
        let phone = [
            0x67, 0x42, 0x80, 0x1f, 0xda, 0x01, 0x90, 0x09, 0x7a, 0x6a, 0x00, 0x0c, 0x00, 0x0d,
            0xa1, 0x42, 0x6a,
        ];
        assert_eq!(sps_dimensions(&phone), Some((1600, 1200)));
        // x264 High profile 1920x1080 (68 MB rows, 8 lines cropped at the bottom).
        let x264 = [
            0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00,
            0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
        ];
        assert_eq!(sps_dimensions(&x264), Some((1920, 1080)));
        assert_eq!(sps_dimensions(&[0x68, 0xce]), None);
        assert_eq!(sps_dimensions(&phone[..6]), None);
    }

    proptest::proptest! {
        #[test]
        fn sps_dimensions_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut sps = data;
            if let Some(h) = sps.first_mut() {
                *h = (*h & 0xe0) | NAL_SPS;
            }
            let _ = sps_dimensions(&sps);
        }
    }
}
