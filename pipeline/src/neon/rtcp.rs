//! RTCP (RFC 3550 6): compound-packet walk over types 200-204, Sender Report parse/build with
//! NTP <-> Unix-nanosecond conversion, Receiver Report and SDES CNAME build for clients.
//!
//! Hand-written: the phone sends only SRs (protocol doc 5) and a client sends only RR+SDES, a few
//! dozen bytes each; `rtcp` crates either allocate per packet or reject what the Python client
//! also rejects. Unlike that client, an unknown packet type is surfaced as
//! [`RtcpPacket::Unknown`] for the caller to count, instead of failing the whole compound.

use thiserror::Error;

use crate::time::UnixNanos;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;

/// SDES item type of the canonical name (RFC 3550 6.5.1).
pub const SDES_CNAME: u8 = 1;

/// A structural error; the rest of the compound cannot be trusted after it. `offset` is the byte
/// offset of the offending packet inside the compound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    #[error("RTCP packet at offset {offset}: {len} bytes left, shorter than a 4-byte header")]
    TooShort { offset: usize, len: usize },
    #[error("RTCP packet at offset {offset}: version {version} (expected 2)")]
    BadVersion { offset: usize, version: u8 },
    #[error("RTCP packet type {packet_type} at offset {offset} declares {declared} bytes, {available} left")]
    LengthOverrun {
        offset: usize,
        packet_type: u8,
        declared: usize,
        available: usize,
    },
    #[error("RTCP packet type {packet_type} at offset {offset}: invalid padding")]
    BadPadding { offset: usize, packet_type: u8 },
    #[error(
        "RTCP packet type {packet_type} at offset {offset}: body of {have} bytes, need {need}"
    )]
    BodyTooShort {
        offset: usize,
        packet_type: u8,
        need: usize,
        have: usize,
    },
    #[error("SDES CNAME of {len} bytes exceeds 255")]
    CnameTooLong { len: usize },
}

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970), RFC 868 / protocol doc 5.
pub const NTP_UNIX_OFFSET_S: i64 = 2_208_988_800;

/// A 64-bit NTP timestamp: seconds in the high word, fraction of a second in the low word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// Converts to Unix nanoseconds, rounded to the nearest nanosecond, in integers (the Python
    /// client's float seconds lose ~100 ns at today's epoch).
    ///
    /// Seconds with the top bit clear are taken as NTP era 1 (from 2036-02-07), as RFC 4330 3
    /// suggests, so the mapping covers 1968-2104.
    pub fn to_unix_nanos(self) -> UnixNanos {
        let secs = self.0 >> 32;
        let frac = self.0 & 0xffff_ffff;
        let secs = if secs & 0x8000_0000 == 0 {
            secs + (1 << 32)
        } else {
            secs
        } as i64;
        let frac_ns = ((frac * 1_000_000_000) + (1 << 31)) >> 32;
        UnixNanos((secs - NTP_UNIX_OFFSET_S) * 1_000_000_000 + frac_ns as i64)
    }

    /// The inverse of [`to_unix_nanos`](Self::to_unix_nanos); exact round trip for 1968-2104.
    pub fn from_unix_nanos(t: UnixNanos) -> Self {
        let mut secs = t.0.div_euclid(1_000_000_000) + NTP_UNIX_OFFSET_S;
        let nanos = t.0.rem_euclid(1_000_000_000) as u64;
        let mut frac = ((nanos << 32) + 500_000_000) / 1_000_000_000;
        if frac >> 32 != 0 {
            frac = 0;
            secs += 1;
        }
        NtpTimestamp(((secs as u64 & 0xffff_ffff) << 32) | frac)
    }

    /// The middle 32 bits, as a report block's LSR field carries them (RFC 3550 6.4.1).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// The sender-info part of an SR (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ssrc: u32,
    pub ntp: NtpTimestamp,
    /// RTP timestamp of the same instant as `ntp`, on the stream's clock.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire; clamped when written.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP time, 0 if none.
    pub last_sr: u32,
    /// Delay since that SR in 1/65536 s.
    pub delay_since_last_sr: u32,
}

const REPORT_BLOCK_LEN: usize = 24;

impl ReportBlock {
    fn parse(b: &[u8; REPORT_BLOCK_LEN]) -> Self {
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Sign-extend the 24-bit cumulative loss.
        let lost = (i32::from_be_bytes([b[5], b[6], b[7], 0])) >> 8;
        ReportBlock {
            ssrc: w(0),
            fraction_lost: b[4],
            cumulative_lost: lost,
            extended_highest_seq: w(8),
            jitter: w(12),
            last_sr: w(16),
            delay_since_last_sr: w(20),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(self.fraction_lost);
        let lost = self
            .cumulative_lost
            .clamp(-0x80_0000, 0x7f_ffff)
            .to_be_bytes();
        out.extend_from_slice(&lost[1..]);
        out.extend_from_slice(&self.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// Report blocks borrowed from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl<'a> ReportBlocks<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / REPORT_BLOCK_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.0
            .chunks_exact(REPORT_BLOCK_LEN)
            .filter_map(|c| c.first_chunk::<REPORT_BLOCK_LEN>().map(ReportBlock::parse))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    pub info: SenderInfo,
    pub blocks: ReportBlocks<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    pub ssrc: u32,
    pub blocks: ReportBlocks<'a>,
}

/// SDES chunks, borrowed; [`cnames`](Self::cnames) walks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceDescription<'a> {
    pub chunk_count: u8,
    pub body: &'a [u8],
}

impl<'a> SourceDescription<'a> {
    /// (SSRC, CNAME) of every chunk that has one. Stops quietly at a malformed chunk.
    pub fn cnames(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        let mut rest = self.body;
        let mut chunks = self.chunk_count;
        std::iter::from_fn(move || {
            while chunks > 0 {
                chunks -= 1;
                let ssrc = u32::from_be_bytes(*rest.first_chunk::<4>()?);
                let mut pos = 4;
                let mut cname = None;
                loop {
                    let kind = *rest.get(pos)?;
                    if kind == 0 {
                        // End of items, then padding to the next 32-bit boundary.
                        pos = (pos + 4) & !3;
                        break;
                    }
                    let len = usize::from(*rest.get(pos + 1)?);
                    let text = rest.get(pos + 2..pos + 2 + len)?;
                    if kind == SDES_CNAME && cname.is_none() {
                        cname = Some(text);
                    }
                    pos += 2 + len;
                }
                rest = rest.get(pos..).unwrap_or(&[]);
                if let Some(c) = cname {
                    return Some((ssrc, c));
                }
            }
            None
        })
    }
}

/// One packet of a compound, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    SourceDescription(SourceDescription<'a>),
    /// SSRCs leaving (raw 4-byte words) and the optional reason bytes.
    Goodbye {
        ssrcs: &'a [u8],
        reason: &'a [u8],
    },
    App {
        subtype: u8,
        ssrc: u32,
        name: [u8; 4],
        data: &'a [u8],
    },
    /// A type outside 200-204 (e.g. 205-207 feedback); skipped, for the caller to count.
    Unknown {
        packet_type: u8,
        body: &'a [u8],
    },
}

/// Walks a compound RTCP packet. After the first structural error it yields that error and ends.
#[derive(Debug, Clone)]
pub struct CompoundIter<'a> {
    buf: &'a [u8],
    offset: usize,
    failed: bool,
}

/// Iterates the packets of one compound RTCP datagram.
pub fn iter_compound(buf: &[u8]) -> CompoundIter<'_> {
    CompoundIter {
        buf,
        offset: 0,
        failed: false,
    }
}

impl<'a> Iterator for CompoundIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.buf.len() {
            return None;
        }
        let r = parse_one(&self.buf[self.offset..], self.offset);
        match r {
            Ok((packet, len)) => {
                self.offset += len;
                Some(Ok(packet))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_one(buf: &[u8], offset: usize) -> Result<(RtcpPacket<'_>, usize), RtcpError> {
    let head = buf.first_chunk::<4>().ok_or(RtcpError::TooShort {
        offset,
        len: buf.len(),
    })?;
    let version = head[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion { offset, version });
    }
    let padded = head[0] & 0x20 != 0;
    let count = head[0] & 0x1f;
    let packet_type = head[1];
    let declared = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
    let packet = buf.get(..declared).ok_or(RtcpError::LengthOverrun {
        offset,
        packet_type,
        declared,
        available: buf.len(),
    })?;
    let mut body = &packet[4..];
    if padded {
        let pad = usize::from(body.last().copied().unwrap_or(0));
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding {
                offset,
                packet_type,
            });
        }
        body = &body[..body.len() - pad];
    }
    let need = |n: usize| {
        if body.len() < n {
            Err(RtcpError::BodyTooShort {
                offset,
                packet_type,
                need: n,
                have: body.len(),
            })
        } else {
            Ok(())
        }
    };
    let w = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let blocks_len = usize::from(count) * REPORT_BLOCK_LEN;
    let packet = match packet_type {
        PT_SR => {
            need(24 + blocks_len)?;
            let ntp = (u64::from(w(body, 4)) << 32) | u64::from(w(body, 8));
            RtcpPacket::SenderReport(SenderReport {
                info: SenderInfo {
                    ssrc: w(body, 0),
                    ntp: NtpTimestamp(ntp),
                    rtp_timestamp: w(body, 12),
                    packet_count: w(body, 16),
                    octet_count: w(body, 20),
                },
                blocks: ReportBlocks(&body[24..24 + blocks_len]),
            })
        }
        PT_RR => {
            need(4 + blocks_len)?;
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: w(body, 0),
                blocks: ReportBlocks(&body[4..4 + blocks_len]),
            })
        }
        PT_SDES => RtcpPacket::SourceDescription(SourceDescription {
            chunk_count: count,
            body,
        }),
        PT_BYE => {
            let n = usize::from(count) * 4;
            need(n)?;
            let rest = &body[n..];
            let reason = match rest.first() {
                Some(&len) => rest.get(1..1 + usize::from(len)).unwrap_or(&rest[1..]),
                None => &[],
            };
            RtcpPacket::Goodbye {
                ssrcs: &body[..n],
                reason,
            }
        }
        PT_APP => {
            need(8)?;
            RtcpPacket::App {
                subtype: count,
                ssrc: w(body, 0),
                name: [body[4], body[5], body[6], body[7]],
                data: &body[8..],
            }
        }
        _ => RtcpPacket::Unknown { packet_type, body },
    };
    Ok((packet, declared))
}

/// What a client needs from one compound: the SR (if any) and how many packets it skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompoundSummary {
    /// The last SR in the compound.
    pub sender_report: Option<SenderInfo>,
    pub packets: u32,
    pub unknown: u32,
}

/// Walks a compound and keeps the last SR. A structural error fails the whole call (an SR before
/// it is not trusted either); the caller counts the error and drops the datagram.
pub fn summarize(buf: &[u8]) -> Result<CompoundSummary, RtcpError> {
    let mut s = CompoundSummary::default();
    for p in iter_compound(buf) {
        s.packets += 1;
        match p? {
            RtcpPacket::SenderReport(sr) => s.sender_report = Some(sr.info),
            RtcpPacket::Unknown { .. } => s.unknown += 1,
            _ => {}
        }
    }
    Ok(s)
}

fn write_header(out: &mut Vec<u8>, count: u8, packet_type: u8, body_len: usize) {
    debug_assert!(body_len.is_multiple_of(4));
    out.push(0x80 | (count & 0x1f));
    out.push(packet_type);
    out.extend_from_slice(&((body_len / 4) as u16).to_be_bytes());
}

/// Appends an SR with up to 31 report blocks (extra blocks are not written).
pub fn write_sender_report(info: &SenderInfo, blocks: &[ReportBlock], out: &mut Vec<u8>) {
    let blocks = &blocks[..blocks.len().min(31)];
    write_header(
        out,
        blocks.len() as u8,
        PT_SR,
        24 + blocks.len() * REPORT_BLOCK_LEN,
    );
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.0.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packet_count.to_be_bytes());
    out.extend_from_slice(&info.octet_count.to_be_bytes());
    for b in blocks {
        b.write(out);
    }
}

/// Appends an RR with up to 31 report blocks (extra blocks are not written).
pub fn write_receiver_report(ssrc: u32, blocks: &[ReportBlock], out: &mut Vec<u8>) {
    let blocks = &blocks[..blocks.len().min(31)];
    write_header(
        out,
        blocks.len() as u8,
        PT_RR,
        4 + blocks.len() * REPORT_BLOCK_LEN,
    );
    out.extend_from_slice(&ssrc.to_be_bytes());
    for b in blocks {
        b.write(out);
    }
}

/// Appends an SDES packet with one chunk holding only a CNAME (what RFC 3550 6.1 requires in
/// every compound).
pub fn write_sdes_cname(ssrc: u32, cname: &[u8], out: &mut Vec<u8>) -> Result<(), RtcpError> {
    let len =
        u8::try_from(cname.len()).map_err(|_| RtcpError::CnameTooLong { len: cname.len() })?;
    // ssrc + type + len + text + at least one zero octet, padded to 32 bits.
    let body_len = (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    write_header(out, 1, PT_SDES, body_len);
    let start = out.len();
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(len);
    out.extend_from_slice(cname);
    out.resize(start + body_len, 0);
    Ok(())
}

/// Appends a BYE for the given SSRCs (up to 31) without a reason.
pub fn write_bye(ssrcs: &[u32], out: &mut Vec<u8>) {
    let ssrcs = &ssrcs[..ssrcs.len().min(31)];
    write_header(out, ssrcs.len() as u8, PT_BYE, 4 * ssrcs.len());
    for s in ssrcs {
        out.extend_from_slice(&s.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ntp_converts_worked_numbers() {
        // 2023-11-14T22:13:20.25Z: 1_700_000_000 s after 1970, 3_908_988_800 s after 1900.
        let ntp = NtpTimestamp((3_908_988_800u64 << 32) | (1 << 30));
        assert_eq!(ntp.to_unix_nanos(), UnixNanos(1_700_000_000_250_000_000));
        assert_eq!(
            NtpTimestamp::from_unix_nanos(UnixNanos(1_700_000_000_250_000_000)),
            ntp
        );
        // The Unix epoch itself.
        assert_eq!(
            NtpTimestamp((NTP_UNIX_OFFSET_S as u64) << 32).to_unix_nanos(),
            UnixNanos(0)
        );
        // Era 1: 2040-01-01 is 2 x 2_208_988_800 s after 1900, i.e. 123_010_304 s into era 1.
        let t2040 = UnixNanos(2_208_988_800 * 1_000_000_000);
        let n = NtpTimestamp::from_unix_nanos(t2040);
        assert_eq!(n.0 >> 32, 123_010_304);
        assert_eq!(n.to_unix_nanos(), t2040);
        // One nanosecond below a second rounds into the next second's fraction correctly.
        let t = UnixNanos(1_000_000_000 - 1);
        assert_eq!(NtpTimestamp::from_unix_nanos(t).to_unix_nanos(), t);
        assert_eq!(
            ntp.middle32(),
            ((3_908_988_800u64 << 16) as u32) | (1 << 14)
        );
    }

    #[test]
    fn sender_report_round_trip_with_blocks() {
        let info = SenderInfo {
            ssrc: 0xcafe_f00d,
            ntp: NtpTimestamp(0x1122_3344_5566_7788),
            rtp_timestamp: 0x99aa_bbcc,
            packet_count: 7,
            octet_count: 700,
        };
        let block = ReportBlock {
            ssrc: 5,
            fraction_lost: 17,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 12,
            last_sr: 34,
            delay_since_last_sr: 56,
        };
        let mut buf = Vec::new();
        write_sender_report(&info, &[block], &mut buf);
        assert_eq!(buf.len(), 4 + 24 + 24);
        let mut it = iter_compound(&buf);
        let Some(Ok(RtcpPacket::SenderReport(sr))) = it.next() else {
            panic!("no SR");
        };
        assert_eq!(sr.info, info);
        assert_eq!(sr.blocks.iter().collect::<Vec<_>>(), vec![block]);
        assert!(it.next().is_none());
    }

    #[test]
    fn unknown_types_are_skipped_not_fatal() {
        let mut buf = Vec::new();
        write_receiver_report(1, &[], &mut buf);
        // A 205 (transport feedback) packet: header + 8 bytes.
        buf.extend_from_slice(&[0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        let info = SenderInfo {
            ssrc: 9,
            ntp: NtpTimestamp(1 << 32),
            ..Default::default()
        };
        write_sender_report(&info, &[], &mut buf);
        write_sdes_cname(9, b"neon@phone", &mut buf).unwrap();
        write_bye(&[9], &mut buf);
        let s = summarize(&buf).unwrap();
        assert_eq!(s.packets, 5);
        assert_eq!(s.unknown, 1);
        assert_eq!(s.sender_report, Some(info));
        let cnames: Vec<_> = iter_compound(&buf)
            .filter_map(|p| match p {
                Ok(RtcpPacket::SourceDescription(d)) => Some(d.cnames().collect::<Vec<_>>()),
                _ => None,
            })
            .collect();
        assert_eq!(cnames, vec![vec![(9u32, &b"neon@phone"[..])]]);
        let bye = iter_compound(&buf).last().unwrap().unwrap();
        assert_eq!(
            bye,
            RtcpPacket::Goodbye {
                ssrcs: &[0, 0, 0, 9],
                reason: &[]
            }
        );
    }

    #[test]
    fn structural_errors_carry_offsets() {
        let mut buf = Vec::new();
        write_receiver_report(1, &[], &mut buf);
        let rr_len = buf.len();
        buf.extend_from_slice(&[0x80, 200, 0, 6, 0, 0]);
        let errs: Vec<_> = iter_compound(&buf).collect();
        assert_eq!(errs.len(), 2);
        assert_eq!(
            errs[1],
            Err(RtcpError::LengthOverrun {
                offset: rr_len,
                packet_type: 200,
                declared: 28,
                available: 6
            })
        );
        assert!(summarize(&buf).is_err());
        assert_eq!(
            summarize(&[0x40, 200, 0, 0]),
            Err(RtcpError::BadVersion {
                offset: 0,
                version: 1
            })
        );
        // SR whose declared length is too short for its sender info.
        assert!(matches!(
            summarize(&[0x80, 200, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::BodyTooShort { need: 24, .. })
        ));
        assert!(write_sdes_cname(1, &[b'a'; 256], &mut Vec::new()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn compound_walk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            for p in iter_compound(&bytes) {
                if let Ok(RtcpPacket::SourceDescription(d)) = p {
                    prop_assert!(d.cnames().count() <= usize::from(d.chunk_count));
                }
            }
            let _ = summarize(&bytes);
        }

        #[test]
        fn ntp_round_trips_exactly(ns in -60_000_000_000_000_000i64..4_000_000_000_000_000_000i64) {
            let t = UnixNanos(ns);
            prop_assert_eq!(NtpTimestamp::from_unix_nanos(t).to_unix_nanos(), t);
        }

        #[test]
        fn rr_and_sdes_round_trip(ssrc: u32, fraction: u8, lost in -0x80_0000i32..0x80_0000,
                                  seq: u32, jitter: u32, lsr: u32, dlsr: u32,
                                  cname in proptest::collection::vec(any::<u8>(), 0..255)) {
            let block = ReportBlock { ssrc, fraction_lost: fraction, cumulative_lost: lost,
                extended_highest_seq: seq, jitter, last_sr: lsr, delay_since_last_sr: dlsr };
            let mut buf = Vec::new();
            write_receiver_report(ssrc ^ 1, &[block, block], &mut buf);
            write_sdes_cname(ssrc, &cname, &mut buf).unwrap();
            prop_assert_eq!(buf.len() % 4, 0);
            let packets: Vec<_> = iter_compound(&buf).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(packets.len(), 2);
            let RtcpPacket::ReceiverReport(rr) = packets[0] else { panic!("not an RR") };
            prop_assert_eq!(rr.ssrc, ssrc ^ 1);
            prop_assert_eq!(rr.blocks.iter().collect::<Vec<_>>(), vec![block, block]);
            let RtcpPacket::SourceDescription(d) = packets[1] else { panic!("not SDES") };
            prop_assert_eq!(d.cnames().collect::<Vec<_>>(), vec![(ssrc, &cname[..])]);
        }
    }
}
