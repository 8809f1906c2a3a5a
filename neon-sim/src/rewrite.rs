//! Moves a recorded packet onto the simulator's timeline: RTP sequence number and timestamp for
//! loop passes, SR (NTP, RTP) pairs, and the Unix times inside IMU and eye-event payloads.
//!
//! RTP and SR fields are edited in place at their fixed offsets (RFC 3550 5.1 and 6.4.1) in a copy
//! of the recorded bytes: everything else, padding and SDES included, stays exactly as recorded,
//! which a decode-and-rebuild would not guarantee.

use pipeline::neon::{self, rtp::HEADER_LEN, EyeEvent, ImuPacket, NtpTimestamp};

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

/// The media a fixture stream's packets belong to: the first `m=audio` for the `audio` stream
/// (its SDP is the world URL's, doc 4.2), else the first media.
pub fn stream_media(stream: &str, sdp: &str) -> Option<neon::sdp::MediaDescription> {
    let d = neon::sdp::parse(sdp.as_bytes()).ok()?;
    if stream == "audio" {
        d.first_of_type("audio").cloned()
    } else {
        d.medias.into_iter().next()
    }
}

/// The clock rate of the SDP's first media (protocol doc 4.1: rates come only from rtpmap).
pub fn sdp_clock_rate(sdp: &str) -> Option<u32> {
    stream_media("", sdp)?.clock_rate
}

/// Whether the SDP's first media is H.264 video.
pub fn sdp_is_h264(sdp: &str) -> bool {
    stream_media("", sdp).is_some_and(|m| m.media_type == "video" && m.is_encoding("H264"))
}

/// The `a=control` of the SDP's first audio media (where a client SETUPs the microphone).
pub fn sdp_audio_control(sdp: &str) -> Option<String> {
    stream_media("audio", sdp)?.control
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

/// Moves the Unix times a payload carries itself (IMU `tsNs`, eye-event start/end) by `ns_add`,
/// re-encoding the payload with the wire layer (`scratch` is reused). Returns false when the
/// payload was left as it is (no own times, or not decodable).
pub fn shift_payload_times(
    kind: PayloadKind,
    rtp: &mut Vec<u8>,
    ns_add: i64,
    scratch: &mut Vec<u8>,
) -> bool {
    let Some(first) = rtp.first() else {
        return false;
    };
    if first >> 6 != 2 || first & 0x1f != 0 || rtp.len() < HEADER_LEN {
        return false;
    }
    let payload = &rtp[HEADER_LEN..];
    scratch.clear();
    match kind {
        PayloadKind::EyeEvents => {
            let Ok(mut e) = EyeEvent::decode(payload) else {
                return false;
            };
            match &mut e {
                EyeEvent::Saccade(c) | EyeEvent::Fixation(c) => {
                    c.start_ns = c.start_ns.saturating_add(ns_add);
                    c.end_ns = c.end_ns.saturating_add(ns_add);
                }
                EyeEvent::SaccadeOnset { start_ns } | EyeEvent::FixationOnset { start_ns } => {
                    *start_ns = start_ns.saturating_add(ns_add);
                }
                EyeEvent::Blink { start_ns, end_ns } => {
                    *start_ns = start_ns.saturating_add(ns_add);
                    *end_ns = end_ns.saturating_add(ns_add);
                }
                EyeEvent::Keepalive => return false,
            }
            e.encode(scratch);
        }
        PayloadKind::Imu => {
            let Ok(mut m) = ImuPacket::decode_payload(payload) else {
                return false;
            };
            m.ts_ns = m.ts_ns.saturating_add_signed(ns_add);
            m.encode_payload(scratch);
        }
        _ => return false,
    }
    rtp.truncate(HEADER_LEN);
    rtp.extend_from_slice(scratch);
    true
}

fn read_ntp(b: &[u8]) -> NtpTimestamp {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    NtpTimestamp(u64::from_be_bytes(v))
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
            let t = read_ntp(&rtcp[ntp_at..]).to_unix_nanos().add_ns(ns_add);
            rtcp[ntp_at..ntp_at + 8]
                .copy_from_slice(&NtpTimestamp::from_unix_nanos(t).0.to_be_bytes());
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
            let ntp = read_ntp(&rtcp[off + 8..]);
            let ts = u32::from_be_bytes([
                rtcp[off + 16],
                rtcp[off + 17],
                rtcp[off + 18],
                rtcp[off + 19],
            ]);
            return Some((ntp.to_unix_nanos().0, ts));
        }
        off = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::time::UnixNanos;

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
        let t = 1_700_000_000_250_000_000i64;
        let mut p = sr(NtpTimestamp::from_unix_nanos(UnixNanos(t)).0, 1000);
        let tail = p[28..].to_vec();
        assert_eq!(shift_sender_reports(&mut p, 2_000_000_000, 180_000), 1);
        let (ns, ts) = first_sender_report(&p).unwrap();
        assert!((ns - (t + 2_000_000_000)).abs() <= 1);
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
        let head = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n";
        assert!(sdp_is_h264(&format!(
            "{head}m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        )));
        let gaze =
            format!("{head}m=application 0 RTP/AVP 99\r\na=rtpmap:99 com.pupillabs.gaze1/1000\r\n");
        assert!(!sdp_is_h264(&gaze));
        assert_eq!(sdp_clock_rate(&gaze), Some(1000));
    }

    #[test]
    fn imu_and_event_payload_times_move() {
        let header = [0x80, 100, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        let mut imu = header.to_vec();
        ImuPacket {
            ts_ns: 1_767_225_600_123_456_789,
            ..ImuPacket::default()
        }
        .encode_payload(&mut imu);
        let mut scratch = Vec::new();
        assert!(shift_payload_times(
            PayloadKind::Imu,
            &mut imu,
            -5,
            &mut scratch
        ));
        assert_eq!(&imu[..12], &header);
        let m = ImuPacket::decode_payload(&imu[12..]).unwrap();
        assert_eq!(m.ts_ns, 1_767_225_600_123_456_784);

        let mut ev = header.to_vec();
        EyeEvent::Blink {
            start_ns: 100,
            end_ns: 200,
        }
        .encode(&mut ev);
        assert!(shift_payload_times(
            PayloadKind::EyeEvents,
            &mut ev,
            1000,
            &mut scratch
        ));
        assert_eq!(
            EyeEvent::decode(&ev[12..]).unwrap(),
            EyeEvent::Blink {
                start_ns: 1100,
                end_ns: 1200
            }
        );
        let mut keepalive = header.to_vec();
        EyeEvent::Keepalive.encode(&mut keepalive);
        let before = keepalive.clone();
        assert!(!shift_payload_times(
            PayloadKind::EyeEvents,
            &mut keepalive,
            1,
            &mut scratch
        ));
        assert_eq!(keepalive, before);
        let mut gaze = header.to_vec();
        gaze.extend_from_slice(&[0; 9]);
        assert!(!shift_payload_times(
            PayloadKind::Gaze,
            &mut gaze,
            1,
            &mut scratch
        ));
    }
}
