//! RTP fixed header (RFC 3550 5.1): zero-copy parse and build, sequence-number unwrapping with
//! loss/duplicate/reorder counting, and a small bounded reorder buffer (protocol doc 5, 10).
//!
//! Hand-written because the header is twelve bytes and every crate that parses it either copies
//! the payload into a `Bytes` per packet or drags in a whole session stack; here the payload stays
//! a borrowed slice of the caller's receive buffer.

use thiserror::Error;

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet. Carries the length so a counter can say what came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("RTP packet of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("RTP version {version} (expected 2), packet of {len} bytes")]
    BadVersion { version: u8, len: usize },
    #[error("RTP header with {csrc_count} CSRCs overruns the {len}-byte packet")]
    CsrcOverrun { csrc_count: u8, len: usize },
    #[error("RTP header extension overruns the {len}-byte packet")]
    ExtensionOverrun { len: usize },
    #[error("RTP padding of {padding} bytes is invalid in a {len}-byte packet")]
    BadPadding { padding: u8, len: usize },
    #[error("RTP payload of {payload} bytes does not fit the {capacity}-byte buffer")]
    BufferTooSmall { payload: usize, capacity: usize },
}

/// The RFC 3550 header extension (5.3.1): profile-defined id and its 32-bit words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Raw CSRC list (4 bytes each); the phone sends none (protocol doc 5).
    csrcs: &'a [u8],
    pub extension: Option<RtpExtension<'a>>,
    /// Payload with padding removed. Padding and extensions are stripped here, unlike dpkt in the
    /// Python client where they would end up in the payload and break length-based gaze parsing.
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses one RTP packet. Never panics; every length is checked against the datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let len = buf.len();
        let Some(fixed) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(RtpError::TooShort { len });
        };
        let version = fixed[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion { version, len });
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let csrc_count = fixed[0] & 0x0f;
        let marker = fixed[1] & 0x80 != 0;
        let payload_type = fixed[1] & 0x7f;
        let sequence = u16::from_be_bytes([fixed[2], fixed[3]]);
        let timestamp = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let ssrc = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);

        let csrc_end = HEADER_LEN + 4 * usize::from(csrc_count);
        let csrcs = buf
            .get(HEADER_LEN..csrc_end)
            .ok_or(RtpError::CsrcOverrun { csrc_count, len })?;
        let mut rest = &buf[csrc_end..];

        let extension = if has_extension {
            let head = rest
                .first_chunk::<4>()
                .ok_or(RtpError::ExtensionOverrun { len })?;
            let profile = u16::from_be_bytes([head[0], head[1]]);
            let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let data = rest
                .get(4..4 + 4 * words)
                .ok_or(RtpError::ExtensionOverrun { len })?;
            rest = &rest[4 + 4 * words..];
            Some(RtpExtension { profile, data })
        } else {
            None
        };

        if has_padding {
            // RFC 3550 5.1: the last octet counts the padding, itself included.
            let padding = rest.last().copied().unwrap_or(0);
            if padding == 0 || usize::from(padding) > rest.len() {
                return Err(RtpError::BadPadding { padding, len });
            }
            rest = &rest[..rest.len() - usize::from(padding)];
        }

        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrcs,
            extension,
            payload: rest,
        })
    }

    pub fn csrc_count(&self) -> usize {
        self.csrcs.len() / 4
    }

    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrcs
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The header fields, e.g. to re-send the packet or to build the next one.
    pub fn header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        }
    }
}

/// The header the Neon sends (protocol doc 10, simulator item 8): V=2, P=0, X=0, CC=0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    pub marker: bool,
    /// 7 bits; the top bit is masked off when written.
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = 0x80;
        h[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        h[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        h[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        h
    }

    /// Appends header + payload to `out` (which the caller reuses, so no allocation once warm).
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
        out.extend_from_slice(payload);
    }

    /// Writes header + payload into a fixed buffer, returning the packet length.
    pub fn write_into(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
        let total = HEADER_LEN + payload.len();
        let capacity = out.len();
        let dst = out.get_mut(..total).ok_or(RtpError::BufferTooSmall {
            payload: payload.len(),
            capacity,
        })?;
        dst[..HEADER_LEN].copy_from_slice(&self.to_bytes());
        dst[HEADER_LEN..].copy_from_slice(payload);
        Ok(total)
    }
}

/// RFC 5761 4: on a shared channel, second-byte values 192-223 are RTCP packet types.
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

/// What one sequence number meant relative to those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The first packet seen (after construction or reset).
    First,
    /// Exactly the next number.
    InOrder,
    /// Newer than expected: `missing` numbers were skipped (maybe lost, maybe still coming).
    Gap { missing: u64 },
    /// Older than the newest seen and not seen before: a reordered packet that filled a gap.
    Reordered,
    /// Already seen (within the 64-packet memory) or too old to tell.
    Duplicate,
    /// Older than the 64-packet memory: cannot tell duplicate from late, counted as late.
    TooOld,
}

/// Running counters of a [`SeqUnwrapper`]; `lost` goes down again when late packets fill gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqStats {
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub too_old: u64,
}

/// Extends 16-bit sequence numbers to 64 bits and counts loss, duplicates and reordering.
///
/// The unwrap takes the signed 16-bit distance to the newest number seen, so a packet up to 32767
/// behind or ahead is placed correctly across a wrap. A 64-bit bitmap of recent numbers tells a
/// duplicate from a late packet. Extended numbers start at 65536 so a reordered packet from
/// before the first one still has a non-negative number.
#[derive(Debug, Clone, Default)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
    /// Bit i set: `highest - i` was received.
    seen: u64,
    first: u64,
    stats: SeqStats,
    /// RFC 3550 A.3 interval state for receiver reports.
    expected_prior: u64,
    received_prior: u64,
}

const SEQ_BASE: u64 = 1 << 16;

impl SeqUnwrapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (reconnect or SSRC change, protocol doc 10 item 4).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn stats(&self) -> SeqStats {
        self.stats
    }

    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Extended highest sequence number as an RFC 3550 report block carries it (cycles << 16 |
    /// seq), relative to the first packet's cycle.
    pub fn extended_highest_u32(&self) -> u32 {
        self.highest.map_or(0, |h| (h - SEQ_BASE) as u32)
    }

    /// Packets expected so far (RFC 3550 A.3: highest - first + 1).
    pub fn expected(&self) -> u64 {
        self.highest.map_or(0, |h| h + 1 - self.first)
    }

    /// Fraction lost since the previous call, as the 8-bit fixed-point value of a report block
    /// (RFC 3550 A.3), and the cumulative loss clamped to the 24-bit signed field.
    pub fn take_interval_loss(&mut self) -> (u8, i32) {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.stats.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.stats.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction = if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let cumulative =
            (expected as i64 - self.stats.received as i64).clamp(-0x80_0000, 0x7f_ffff);
        (fraction, cumulative as i32)
    }

    /// Places `seq` and returns its extended number and what it meant.
    pub fn push(&mut self, seq: u16) -> (u64, SeqEvent) {
        let Some(highest) = self.highest else {
            let ext = SEQ_BASE + u64::from(seq);
            self.highest = Some(ext);
            self.first = ext;
            self.seen = 1;
            self.stats.received += 1;
            return (ext, SeqEvent::First);
        };
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        // highest >= SEQ_BASE and |delta| <= 32768, so this never goes below zero.
        let ext = (highest as i64 + delta) as u64;
        if delta > 0 {
            let missing = (delta - 1) as u64;
            self.seen = if delta >= 64 { 0 } else { self.seen << delta };
            self.seen |= 1;
            self.highest = Some(ext);
            self.stats.received += 1;
            self.stats.lost += missing;
            let event = if missing == 0 {
                SeqEvent::InOrder
            } else {
                SeqEvent::Gap { missing }
            };
            return (ext, event);
        }
        let back = (-delta) as u64;
        if back >= 64 {
            self.stats.too_old += 1;
            return (ext, SeqEvent::TooOld);
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            self.stats.duplicates += 1;
            return (ext, SeqEvent::Duplicate);
        }
        self.seen |= bit;
        self.stats.received += 1;
        self.stats.reordered += 1;
        if ext < self.first {
            // Arrived late but belongs before the first packet: the expected range grows.
            self.first = ext;
        } else {
            self.stats.lost = self.stats.lost.saturating_sub(1);
        }
        (ext, SeqEvent::Reordered)
    }
}

/// What [`ReorderBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Stored,
    /// Its number was already released or skipped: dropped.
    Late,
    /// A packet with this number is already held: dropped.
    Duplicate,
    /// The buffer was full because the caller did not drain it: dropped.
    Overflow,
}

/// Counters of a [`ReorderBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReorderStats {
    pub released: u64,
    /// Sequence numbers given up on (never arrived before the buffer had to move on).
    pub skipped: u64,
    pub late: u64,
    pub duplicates: u64,
    pub overflow: u64,
}

/// A bounded reorder buffer keyed by extended sequence number (protocol doc 10, Rust client
/// item 5).
///
/// Holds at most `depth` packets in preallocated slots (copied once, buffers reused). Packets
/// are released in sequence order; a missing number is waited for until `depth` packets are held
/// or a packet `depth` or more numbers ahead arrives, then skipped. The caller drains with
/// [`pop`](Self::pop) after every push, and calls [`pop_forced`](Self::pop_forced) on a timeout
/// so a stalled stream does not hold packets forever. The first packet sets the start: one
/// numbered below it that arrives later is late (nothing is held back at start-up).
#[derive(Debug)]
pub struct ReorderBuffer {
    depth: usize,
    next: Option<u64>,
    /// (extended seq, slot index) of held packets, unsorted; `depth` is small.
    held: Vec<(u64, usize)>,
    slots: Vec<Vec<u8>>,
    free: Vec<usize>,
    /// Slot released by the last pop; returned to `free` at the next call.
    out: Option<usize>,
    stats: ReorderStats,
}

impl ReorderBuffer {
    /// `depth` packets of up to `packet_capacity` bytes are preallocated (larger packets grow a
    /// slot once). A depth of 0 is treated as 1 (no reordering, only ordering checks).
    pub fn new(depth: usize, packet_capacity: usize) -> Self {
        let depth = depth.max(1);
        ReorderBuffer {
            depth,
            next: None,
            held: Vec::with_capacity(depth),
            slots: (0..depth)
                .map(|_| Vec::with_capacity(packet_capacity))
                .collect(),
            free: (0..depth).rev().collect(),
            out: None,
            stats: ReorderStats::default(),
        }
    }

    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Drops everything held (reconnect or SSRC change).
    pub fn reset(&mut self) {
        self.recycle_out();
        for (_, slot) in self.held.drain(..) {
            self.free.push(slot);
        }
        self.next = None;
    }

    fn recycle_out(&mut self) {
        if let Some(slot) = self.out.take() {
            self.free.push(slot);
        }
    }

    pub fn push(&mut self, ext_seq: u64, packet: &[u8]) -> PushOutcome {
        self.recycle_out();
        let next = *self.next.get_or_insert(ext_seq);
        if ext_seq < next {
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        if self.held.iter().any(|&(s, _)| s == ext_seq) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        let Some(slot) = self.free.pop() else {
            self.stats.overflow += 1;
            return PushOutcome::Overflow;
        };
        let buf = &mut self.slots[slot];
        buf.clear();
        buf.extend_from_slice(packet);
        self.held.push((ext_seq, slot));
        PushOutcome::Stored
    }

    /// Releases the next packet in order, skipping missing numbers once waiting longer would
    /// exceed the depth.
    pub fn pop(&mut self) -> Option<(u64, &[u8])> {
        self.recycle_out();
        let next = self.next?;
        let lowest = self.held.iter().map(|&(s, _)| s).min()?;
        let newest = self.held.iter().map(|&(s, _)| s).max()?;
        let must_move_on = self.held.len() >= self.depth || newest - next >= self.depth as u64;
        if lowest != next && !must_move_on {
            return None;
        }
        Some(self.release(lowest))
    }

    /// Releases the lowest held packet regardless of gaps (call on a receive timeout).
    pub fn pop_forced(&mut self) -> Option<(u64, &[u8])> {
        self.recycle_out();
        let lowest = self.held.iter().map(|&(s, _)| s).min()?;
        Some(self.release(lowest))
    }

    fn release(&mut self, seq: u64) -> (u64, &[u8]) {
        let pos = self
            .held
            .iter()
            .position(|&(s, _)| s == seq)
            .unwrap_or_default();
        let (_, slot) = self.held.swap_remove(pos);
        let next = self.next.unwrap_or(seq);
        self.stats.skipped += seq.saturating_sub(next);
        self.stats.released += 1;
        self.next = Some(seq + 1);
        self.out = Some(slot);
        (seq, &self.slots[slot])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(header: RtpHeader, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        header.write(payload, &mut v);
        v
    }

    #[test]
    fn parses_what_it_builds() {
        let h = RtpHeader {
            marker: true,
            payload_type: 99,
            sequence: 0xfffe,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        };
        let bytes = packet(h, b"gaze");
        assert_eq!(bytes[0], 0x80);
        assert_eq!(bytes[1], 0x80 | 99);
        let p = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(p.header(), h);
        assert_eq!(p.payload, b"gaze");
        assert_eq!(p.csrc_count(), 0);
        assert!(p.extension.is_none());
        let mut fixed = [0u8; 20];
        assert_eq!(h.write_into(b"gaze", &mut fixed), Ok(16));
        assert_eq!(&fixed[..16], &bytes[..]);
        assert!(h.write_into(b"gaze", &mut [0u8; 15]).is_err());
    }

    #[test]
    fn strips_csrcs_extension_and_padding() {
        // V=2, P=1, X=1, CC=2, M=0, PT=96.
        let mut b = vec![0xb2, 96, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1];
        b.extend_from_slice(&[0, 0, 0, 0xaa, 0, 0, 0, 0xbb]); // CSRCs
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        b.extend_from_slice(b"xyz"); // payload
        b.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![0xaa, 0xbb]);
        let ext = p.extension.unwrap();
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(ext.data, &[1, 2, 3, 4]);
        assert_eq!(p.payload, b"xyz");
        assert_eq!(p.sequence, 7);
        assert_eq!(p.timestamp, 9);
    }

    #[test]
    fn rejects_malformed_headers() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]),
            Err(RtpError::TooShort { len: 11 })
        );
        assert!(matches!(
            RtpPacket::parse(&[0x40; 12]),
            Err(RtpError::BadVersion { version: 1, .. })
        ));
        let mut cc = vec![0x81, 96];
        cc.resize(15, 0);
        assert!(matches!(
            RtpPacket::parse(&cc),
            Err(RtpError::CsrcOverrun { csrc_count: 1, .. })
        ));
        let mut pad = vec![0xa0, 96];
        pad.resize(12, 0);
        pad.push(5); // claims 5 bytes of padding, only 1 there
        assert!(matches!(
            RtpPacket::parse(&pad),
            Err(RtpError::BadPadding { padding: 5, .. })
        ));
        let mut ext = vec![0x90, 96];
        ext.resize(12, 0);
        ext.extend_from_slice(&[0, 0, 0, 2, 1, 2, 3, 4]); // 2 words announced, 1 present
        assert!(matches!(
            RtpPacket::parse(&ext),
            Err(RtpError::ExtensionOverrun { .. })
        ));
    }

    #[test]
    fn rtcp_is_told_apart() {
        assert!(looks_like_rtcp(&[0x80, 200]));
        assert!(!looks_like_rtcp(&[0x80, 96]));
        assert!(!looks_like_rtcp(&[0x80, 0x80 | 96]));
    }

    #[test]
    fn unwraps_sequence_numbers_across_the_wrap() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.push(65534), (SEQ_BASE + 65534, SeqEvent::First));
        assert_eq!(u.push(65535).1, SeqEvent::InOrder);
        assert_eq!(u.push(0), (SEQ_BASE + 65536, SeqEvent::InOrder));
        assert_eq!(u.push(3), (SEQ_BASE + 65539, SeqEvent::Gap { missing: 2 }));
        assert_eq!(u.stats().lost, 2);
        assert_eq!(u.push(1), (SEQ_BASE + 65537, SeqEvent::Reordered));
        assert_eq!(u.stats().lost, 1);
        assert_eq!(u.push(1).1, SeqEvent::Duplicate);
        assert_eq!(u.push(65535).1, SeqEvent::Duplicate);
        assert_eq!(u.push(3).1, SeqEvent::Duplicate);
        let s = u.stats();
        assert_eq!(
            (s.received, s.lost, s.duplicates, s.reordered),
            (5, 1, 3, 1)
        );
        assert_eq!(u.expected(), 6);
        assert_eq!(u.extended_highest_u32(), 65539);
        // 1 of 6 lost: 256/6 = 42 in the 8-bit fraction.
        assert_eq!(u.take_interval_loss(), (42, 1));
        assert_eq!(u.push(4).1, SeqEvent::InOrder);
        assert_eq!(u.take_interval_loss(), (0, 1));
        // Far behind the 64-packet memory.
        assert_eq!(u.push(65535 - 100).1, SeqEvent::TooOld);
        u.reset();
        assert_eq!(u.push(10).1, SeqEvent::First);
    }

    #[test]
    fn reorder_buffer_restores_order_and_skips_lost() {
        let mut r = ReorderBuffer::new(3, 16);
        let mut out = Vec::new();
        let feed = |r: &mut ReorderBuffer, seq: u64, out: &mut Vec<u64>| {
            let o = r.push(seq, &seq.to_be_bytes());
            while let Some((s, p)) = r.pop() {
                assert_eq!(p, s.to_be_bytes());
                out.push(s);
            }
            o
        };
        assert_eq!(feed(&mut r, 10, &mut out), PushOutcome::Stored);
        assert_eq!(feed(&mut r, 12, &mut out), PushOutcome::Stored);
        assert_eq!(feed(&mut r, 11, &mut out), PushOutcome::Stored);
        assert_eq!(out, vec![10, 11, 12]);
        // 13 lost: 14 and 15 wait, 16 is `depth` ahead so 13 is given up.
        feed(&mut r, 14, &mut out);
        feed(&mut r, 15, &mut out);
        assert_eq!(out.len(), 3);
        feed(&mut r, 16, &mut out);
        assert_eq!(out, vec![10, 11, 12, 14, 15, 16]);
        assert_eq!(feed(&mut r, 13, &mut out), PushOutcome::Late);
        assert_eq!(feed(&mut r, 18, &mut out), PushOutcome::Stored);
        assert_eq!(feed(&mut r, 18, &mut out), PushOutcome::Duplicate);
        assert_eq!(r.pop(), None);
        assert_eq!(r.pop_forced().map(|(s, _)| s), Some(18));
        let s = r.stats();
        assert_eq!((s.released, s.skipped, s.late, s.duplicates), (7, 2, 1, 1));
        assert!(r.is_empty());
    }

    #[test]
    fn reorder_buffer_reports_overflow_when_not_drained() {
        let mut r = ReorderBuffer::new(2, 4);
        assert_eq!(r.push(5, b"a"), PushOutcome::Stored);
        assert_eq!(r.push(7, b"b"), PushOutcome::Stored);
        assert_eq!(r.push(8, b"c"), PushOutcome::Overflow);
        assert_eq!(r.len(), 2);
        r.reset();
        assert!(r.is_empty());
        assert_eq!(r.push(100, b"d"), PushOutcome::Stored);
        assert_eq!(
            r.pop().map(|(s, p)| (s, p.to_vec())),
            Some((100, b"d".to_vec()))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = RtpPacket::parse(&bytes) {
                prop_assert!(p.payload.len() + HEADER_LEN <= bytes.len());
            }
        }

        #[test]
        fn build_parse_round_trip(marker: bool, pt in 0u8..128, seq: u16, ts: u32, ssrc: u32,
                                  payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = RtpHeader { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc };
            let bytes = packet(h, &payload);
            let p = RtpPacket::parse(&bytes).unwrap();
            prop_assert_eq!(p.header(), h);
            prop_assert_eq!(p.payload, &payload[..]);
        }

        /// Any arrival order of a window of numbers, with duplicates: every distinct number is
        /// released once, in increasing order, and the unwrapper agrees with the truth.
        #[test]
        fn reorder_and_unwrap_agree_with_truth(
            start: u16,
            jitter in proptest::collection::vec(0u64..4, 1..200),
            dup_every in 3usize..20,
        ) {
            // Send order: number i is sent at position i + jitter[i] (stable), so at most a few
            // packets overtake each other; every dup_every-th packet is sent twice.
            let mut order: Vec<(u64, usize)> =
                jitter.iter().enumerate().map(|(i, j)| (i as u64 + j, i)).collect();
            order.sort();
            let mut u = SeqUnwrapper::new();
            let mut r = ReorderBuffer::new(8, 8);
            let mut released = Vec::new();
            for (k, &(_, i)) in order.iter().enumerate() {
                let seq = start.wrapping_add(i as u16);
                let reps = if k % dup_every == 0 { 2 } else { 1 };
                for _ in 0..reps {
                    let (ext, _) = u.push(seq);
                    r.push(ext, &(i as u64).to_be_bytes());
                    while let Some((s, p)) = r.pop() {
                        let mut id = [0u8; 8];
                        id.copy_from_slice(p);
                        released.push((s, u64::from_be_bytes(id)));
                    }
                }
            }
            while let Some((s, p)) = r.pop_forced() {
                let mut id = [0u8; 8];
                id.copy_from_slice(p);
                released.push((s, u64::from_be_bytes(id)));
            }
            // Extended number minus the index is the same constant for every packet.
            let off = released[0].0 as i128 - released[0].1 as i128;
            for w in released.windows(2) {
                prop_assert!(w[0].0 < w[1].0);
            }
            for &(s, i) in &released {
                prop_assert_eq!(s as i128 - i as i128, off);
            }
            let st = u.stats();
            prop_assert_eq!(st.received, jitter.len() as u64);
            prop_assert_eq!(st.lost, 0);
            prop_assert_eq!(st.duplicates as usize, order.len().div_ceil(dup_every));
            // Nothing lost, depth 8 > max displacement 3: the buffer released everything from
            // the first packet to arrive on; numbers below it came too late (the buffer cannot
            // know they were coming).
            let first = order[0].1 as u64;
            prop_assert_eq!(released[0].1, first);
            prop_assert_eq!(released.len(), jitter.len() - first as usize);
            // Every push is accounted for exactly once.
            let rs = r.stats();
            prop_assert_eq!(rs.overflow, 0);
            prop_assert_eq!(rs.released + rs.late + rs.duplicates,
                            jitter.len() as u64 + st.duplicates);
        }
    }
}
