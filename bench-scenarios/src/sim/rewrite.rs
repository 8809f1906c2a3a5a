//! Moves a recorded packet onto the simulator's timeline: RTP sequence number and timestamp for
//! loop passes, SR (NTP, RTP) pairs, and the Unix times inside IMU and eye-event payloads.
//!
//! RTP and SR fields are edited in place at their fixed offsets (RFC 3550 5.1 and 6.4.1) in a copy
//! of the recorded bytes: everything else, padding and SDES included, stays exactly as recorded,
//! which a decode-and-rebuild would not guarantee.

/// What a stream's payloads carry, which decides whether they hold their own Unix times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    Video,
    Gaze,
    /// Protobuf `ImuPacket` with `tsNs` (protocol doc 6.2).
    Imu,
    /// Eye events with start/end ns (protocol doc 6.3).
    EyeEvents,
    Other,
}

impl PayloadKind {
    pub fn for_stream(name: &str) -> Self {
        match name {
            "world" | "eyes" => PayloadKind::Video,
            "gaze" => PayloadKind::Gaze,
            "imu" => PayloadKind::Imu,
            "eye_events" => PayloadKind::EyeEvents,
            _ => PayloadKind::Other,
        }
    }
}

/// The clock rate of the first `a=rtpmap` (protocol doc 4.1: rates come only from rtpmap).
pub fn sdp_clock_rate(sdp: &str) -> Option<u32> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
        .find_map(|v| v.split_whitespace().nth(1)?.split('/').nth(1)?.parse().ok())
}

/// Whether the SDP's first media is H.264 video.
pub fn sdp_is_h264(sdp: &str) -> bool {
    sdp.lines().any(|l| l.trim().starts_with("m=video"))
        && sdp
            .lines()
            .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
            .any(|v| v.to_ascii_uppercase().contains(" H264/"))
}

/// True if this RTP packet starts an access unit a decoder can start from: a single SPS, PPS or
/// IDR NAL (types 7, 8, 5) or the first FU-A fragment of one (RFC 6184 5.6, 5.8).
pub fn starts_keyframe(rtp: &[u8]) -> bool {
    let Some(payload) = rtp_payload(rtp) else {
        return false;
    };
    match payload.first().map(|b| b & 0x1f) {
        Some(5 | 7 | 8) => true,
        Some(28) => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, 5 | 7 | 8)),
        _ => false,
    }
}

/// The payload of a header-only (CC=0, no extension) RTP packet, as the Neon sends them.
fn rtp_payload(rtp: &[u8]) -> Option<&[u8]> {
    let first = *rtp.first()?;
    if first >> 6 != 2 || first & 0x1f != 0 {
        return None;
    }
    rtp.get(12..)
}

/// (sequence, timestamp) of an RTP packet.
pub fn rtp_seq_ts(rtp: &[u8]) -> Option<(u16, u32)> {
    if rtp.len() < 12 || rtp[0] >> 6 != 2 {
        return None;
    }
    Some((
        u16::from_be_bytes([rtp[2], rtp[3]]),
        u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]),
    ))
}

/// Adds to the RTP sequence number and timestamp in place (wrapping, as both fields do).
pub fn shift_rtp(rtp: &mut [u8], seq_add: u16, ts_add: u32) -> bool {
    let Some((seq, ts)) = rtp_seq_ts(rtp) else {
        return false;
    };
    rtp[2..4].copy_from_slice(&seq.wrapping_add(seq_add).to_be_bytes());
    rtp[4..8].copy_from_slice(&ts.wrapping_add(ts_add).to_be_bytes());
    true
}

/// Moves the Unix times a payload carries itself (IMU `tsNs`, eye-event start/end) by `ns_add`.
/// Returns false when the payload was left as it is (no own times, or not decodable).
pub fn shift_payload_times(kind: PayloadKind, rtp: &mut [u8], ns_add: i64) -> bool {
    let Some(first) = rtp.first() else {
        return false;
    };
    if first >> 6 != 2 || first & 0x1f != 0 || rtp.len() < 12 {
        return false;
    }
    let payload = &mut rtp[12..];
    match kind {
        PayloadKind::EyeEvents => shift_event_times(payload, ns_add),
        PayloadKind::Imu => false,
        _ => false,
    }
}

/// Eye events (protocol doc 6.3): big-endian i32 type, then i64 start (types 0-4) and i64 end
/// (types 0, 1, 4); sizes are exact, so anything else is left alone.
fn shift_event_times(p: &mut [u8], ns_add: i64) -> bool {
    let Some(ty) = p.first_chunk::<4>().map(|b| i32::from_be_bytes(*b)) else {
        return false;
    };
    let fields: &[usize] = match (ty, p.len()) {
        (0 | 1, 60) | (4, 20) => &[4, 12],
        (2 | 3, 12) => &[4],
        _ => return false,
    };
    for &at in fields {
        let mut b = [0u8; 8];
        b.copy_from_slice(&p[at..at + 8]);
        let t = i64::from_be_bytes(b).saturating_add(ns_add);
        p[at..at + 8].copy_from_slice(&t.to_be_bytes());
    }
    true
}

const NTP_UNIX_OFFSET_S: i128 = 2_208_988_800;

fn ntp_to_unix_ns(ntp: u64) -> i128 {
    let secs = i128::from(ntp >> 32) - NTP_UNIX_OFFSET_S;
    let frac = i128::from(ntp & 0xffff_ffff);
    secs * 1_000_000_000 + ((frac * 1_000_000_000 + (1 << 31)) >> 32)
}

fn unix_ns_to_ntp(ns: i128) -> u64 {
    let secs = ns.div_euclid(1_000_000_000) + NTP_UNIX_OFFSET_S;
    let rem = ns.rem_euclid(1_000_000_000);
    let frac = ((rem << 32) + 500_000_000) / 1_000_000_000;
    ((secs as u64) << 32).wrapping_add(frac as u64)
}

/// Moves every SR of a compound RTCP packet: NTP time by `ns_add`, RTP time by `ts_add`, so the
/// (NTP, RTP) pair still names one instant. Returns how many SRs were moved; a malformed
/// compound is left as it is from the damaged packet on.
pub fn shift_sender_reports(rtcp: &mut [u8], ns_add: i64, ts_add: u32) -> usize {
    let mut off = 0;
    let mut moved = 0;
    while off + 4 <= rtcp.len() {
        let words = usize::from(u16::from_be_bytes([rtcp[off + 2], rtcp[off + 3]]));
        let end = off + 4 * (words + 1);
        if rtcp[off] >> 6 != 2 || end > rtcp.len() {
            break;
        }
        if rtcp[off + 1] == 200 && end - off >= 28 {
            let ntp_at = off + 8;
            let mut ntp = [0u8; 8];
            ntp.copy_from_slice(&rtcp[ntp_at..ntp_at + 8]);
            let t = ntp_to_unix_ns(u64::from_be_bytes(ntp)) + i128::from(ns_add);
            rtcp[ntp_at..ntp_at + 8].copy_from_slice(&unix_ns_to_ntp(t).to_be_bytes());
            let ts_at = off + 16;
            let ts = u32::from_be_bytes([
                rtcp[ts_at],
                rtcp[ts_at + 1],
                rtcp[ts_at + 2],
                rtcp[ts_at + 3],
            ]);
            rtcp[ts_at..ts_at + 4].copy_from_slice(&ts.wrapping_add(ts_add).to_be_bytes());
            moved += 1;
        }
        off = end;
    }
    moved
}

/// (NTP as Unix ns, RTP timestamp) of the first SR in a compound.
pub fn first_sender_report(rtcp: &[u8]) -> Option<(i64, u32)> {
    let mut off = 0;
    while off + 4 <= rtcp.len() {
        let words = usize::from(u16::from_be_bytes([rtcp[off + 2], rtcp[off + 3]]));
        let end = off + 4 * (words + 1);
        if rtcp[off] >> 6 != 2 || end > rtcp.len() {
            return None;
        }
        if rtcp[off + 1] == 200 && end - off >= 28 {
            let mut ntp = [0u8; 8];
            ntp.copy_from_slice(&rtcp[off + 8..off + 16]);
            let ts = u32::from_be_bytes([
                rtcp[off + 16],
                rtcp[off + 17],
                rtcp[off + 18],
                rtcp[off + 19],
            ]);
            return Some((ntp_to_unix_ns(u64::from_be_bytes(ntp)) as i64, ts));
        }
        off = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sr(ntp: u64, ts: u32) -> Vec<u8> {
        let mut v = vec![0x80, 200, 0, 6, 0, 0, 0, 7];
        v.extend_from_slice(&ntp.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        // SDES with one empty chunk, to be left alone
        v.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 7]);
        v
    }

    #[test]
    fn sender_reports_move_as_a_pair() {
        let t = 1_700_000_000_250_000_000i128;
        let mut p = sr(unix_ns_to_ntp(t), 1000);
        let tail = p[28..].to_vec();
        assert_eq!(shift_sender_reports(&mut p, 2_000_000_000, 180_000), 1);
        let (ns, ts) = first_sender_report(&p).unwrap();
        assert!((i128::from(ns) - (t + 2_000_000_000)).abs() <= 1);
        assert_eq!(ts, 181_000);
        assert_eq!(&p[28..], &tail[..]);
        let mut bad = p[..10].to_vec();
        assert_eq!(shift_sender_reports(&mut bad, 1, 1), 0);
    }

    #[test]
    fn rtp_shift_wraps_and_keyframes_are_found() {
        let mut p = vec![
            0x80, 96, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 1, 0x7c, 0x85,
        ];
        assert!(shift_rtp(&mut p, 2, 0x20));
        assert_eq!(rtp_seq_ts(&p), Some((1, 0x10)));
        assert!(starts_keyframe(&p), "FU-A start of an IDR");
        p[13] = 0x05; // FU-A continuation
        assert!(!starts_keyframe(&p));
        p[12] = 0x67; // SPS
        assert!(starts_keyframe(&p));
        p[12] = 0x41; // non-IDR slice
        assert!(!starts_keyframe(&p));
        assert!(!starts_keyframe(&p[..5]));
        assert_eq!(
            sdp_clock_rate("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"),
            Some(90000)
        );
        assert!(sdp_is_h264("m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000"));
        assert!(!sdp_is_h264(
            "m=application 0 RTP/AVP 99\na=rtpmap:99 com.pupillabs.gaze1/1000"
        ));
    }
}
