//! What a client needs from a DESCRIBE answer (protocol doc 4, 5.1) and the SDP the simulator
//! serves (doc 10, simulator item 5). Parsing and writing the SDP grammar is `sdp-types`' job.
//!
//! On top of it this module is tolerant where the phone may be sloppy: an rtpmap with a channel
//! count is accepted, fmtp bare tokens are kept as keys without values (aiortsp drops the whole
//! line), and a bad `sprop-parameter-sets` is reported without failing the media.

use base64::Engine as _;
use sdp_types::{AddrType, Attribute, Fmtp, Media, NetType, Origin, RtpMap, Session};
use thiserror::Error;

/// The gaze stream's encoding name (doc 4.1).
pub const GAZE_ENCODING: &str = "com.pupillabs.gaze1";
/// Encoding names of the IMU and eye-event streams. The real names are unconfirmed (doc 4.1);
/// clients must not rely on them (the Python client accepts any).
pub const IMU_ENCODING: &str = "com.pupillabs.imu1";
pub const EYE_EVENTS_ENCODING: &str = "com.pupillabs.eye_events1";

/// Payload types of a real device (doc 4.1, from Pupil Labs' C++ client).
pub const PT_VIDEO: u8 = 96;
pub const PT_AUDIO: u8 = 97;
pub const PT_GAZE: u8 = 99;
pub const PT_IMU: u8 = 100;
pub const PT_EYE_EVENTS: u8 = 101;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("SDP does not parse: {0}")]
    Syntax(String),
    #[error("SDP is not UTF-8 at byte {0}")]
    NotUtf8(usize),
}

/// One `m=` section, reduced to what the client uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaDescription {
    /// `video`, `audio`, `application`, ...
    pub media_type: String,
    /// The `a=control` value, if any (join with [`control_url`]).
    pub control: Option<String>,
    /// First format of the `m=` line, if numeric.
    pub payload_type: Option<u8>,
    /// From the `a=rtpmap` of that payload type.
    pub encoding_name: Option<String>,
    pub clock_rate: Option<u32>,
    /// Anything after the clock rate (the channel count), kept as text.
    pub encoding_params: Option<String>,
    /// `a=fmtp` parameters of that payload type in order; bare tokens have no value.
    pub fmtp: Vec<(String, Option<String>)>,
    /// Decoded `sprop-parameter-sets` NAL units (H.264 SPS/PPS).
    pub sprop_parameter_sets: Vec<Vec<u8>>,
    /// Why `sprop-parameter-sets` could not be decoded, if it could not.
    pub sprop_error: Option<String>,
}

impl MediaDescription {
    /// The value of an fmtp key (case-insensitive, as RFC 6184 parameter names are).
    pub fn fmtp_value(&self, key: &str) -> Option<&str> {
        self.fmtp
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether the encoding name matches, ignoring case (the Python client lower-cases it).
    pub fn is_encoding(&self, name: &str) -> bool {
        self.encoding_name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The parts of a session description the client needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    /// Session-level `a=control`.
    pub control: Option<String>,
    pub medias: Vec<MediaDescription>,
}

impl SessionDescription {
    /// First media of a type, as aiortsp picks them (doc 4.2 step 3).
    pub fn first_of_type(&self, media_type: &str) -> Option<&MediaDescription> {
        self.medias.iter().find(|m| m.media_type == media_type)
    }
}

/// Parses a DESCRIBE body.
pub fn parse(sdp: &[u8]) -> Result<SessionDescription, SdpError> {
    let text = std::str::from_utf8(sdp).map_err(|e| SdpError::NotUtf8(e.valid_up_to()))?;
    let session =
        Session::parse(text.as_bytes()).map_err(|e| SdpError::Syntax(format!("{e:?}")))?;
    Ok(SessionDescription {
        control: session
            .get_first_attribute_value("control")
            .flatten()
            .map(str::to_owned),
        medias: session.medias.iter().map(describe_media).collect(),
    })
}

fn describe_media(m: &Media) -> MediaDescription {
    let payload_type = m
        .fmt
        .split_ascii_whitespace()
        .next()
        .and_then(|f| f.parse::<u8>().ok());
    let mut d = MediaDescription {
        media_type: m.media.clone(),
        control: m
            .get_first_attribute_value("control")
            .flatten()
            .map(str::to_owned),
        payload_type,
        ..Default::default()
    };
    let for_pt = |value: &str| {
        let pt = value.split_ascii_whitespace().next()?.parse::<u8>().ok()?;
        (Some(pt) == payload_type).then_some(())
    };
    for a in &m.attributes {
        let Some(value) = a.value.as_deref().map(str::trim) else {
            continue;
        };
        if a.attribute.eq_ignore_ascii_case("rtpmap") && for_pt(value).is_some() {
            if let Ok(r) = normalise_spaces(value).parse::<RtpMap>() {
                d.encoding_name = Some(r.encoding_name);
                d.clock_rate = Some(r.clock_rate);
                d.encoding_params = r.encoding_params;
            }
        } else if a.attribute.eq_ignore_ascii_case("fmtp") && for_pt(value).is_some() {
            if let Ok(f) = normalise_spaces(value).parse::<Fmtp>() {
                d.fmtp = f
                    .format_specific_params
                    .into_iter()
                    .map(|p| {
                        (
                            p.param.trim().to_owned(),
                            p.val.map(|v| v.trim().to_owned()),
                        )
                    })
                    .filter(|(k, _)| !k.is_empty())
                    .collect();
            }
        }
    }
    if let Some(sprop) = d.fmtp_value("sprop-parameter-sets") {
        match decode_sprop(sprop) {
            Ok(nals) => d.sprop_parameter_sets = nals,
            Err(e) => d.sprop_error = Some(e),
        }
    }
    d
}

/// `sdp-types` splits at the first space only; collapse `96  H264/90000`-style runs.
fn normalise_spaces(v: &str) -> String {
    let mut parts = v.splitn(2, char::is_whitespace);
    let first = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default().trim_start();
    format!("{first} {rest}")
}

/// Decodes comma-separated base64 NAL units (RFC 6184 8.1); tolerates missing padding.
pub fn decode_sprop(value: &str) -> Result<Vec<Vec<u8>>, String> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            engine
                .decode(s)
                .map_err(|e| format!("sprop-parameter-sets entry {s:?}: {e}"))
        })
        .collect()
}

/// Encodes NAL units as an RFC 6184 `sprop-parameter-sets` value.
pub fn encode_sprop<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> String {
    nals.into_iter()
        .map(|n| base64::engine::general_purpose::STANDARD.encode(n))
        .collect::<Vec<_>>()
        .join(",")
}

/// Joins a request URL the way aiortsp does (doc 4.2 step 3): an absolute control replaces the
/// base, `*` or none keeps it, anything else is appended after a `/` (even after a query, which
/// is what the phone then has to accept).
pub fn control_url(base: &str, control: Option<&str>) -> String {
    match control.map(str::trim) {
        None | Some("") | Some("*") => base.to_owned(),
        Some(c) if c.contains("://") => c.to_owned(),
        Some(c) => {
            let b = base.strip_suffix('/').unwrap_or(base);
            let c = c.strip_prefix('/').unwrap_or(c);
            format!("{b}/{c}")
        }
    }
}

/// One media the simulator offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSpec {
    pub media_type: &'static str,
    pub payload_type: u8,
    pub encoding_name: String,
    pub clock_rate: u32,
    /// `key=value` pairs written as a clean fmtp line (none: no fmtp line).
    pub fmtp: Vec<(String, String)>,
    pub control: String,
}

impl MediaSpec {
    /// H.264 video with SPS/PPS in `sprop-parameter-sets`, packetization-mode 1 (FU-A).
    pub fn h264<'a>(
        payload_type: u8,
        parameter_sets: impl IntoIterator<Item = &'a [u8]>,
        control: &str,
    ) -> Self {
        let nals: Vec<&[u8]> = parameter_sets.into_iter().collect();
        let mut fmtp = vec![("packetization-mode".to_owned(), "1".to_owned())];
        if let Some(sps) = nals.iter().find(|n| n.first().map(|h| h & 0x1f) == Some(7)) {
            if let Some(profile) = sps.get(1..4) {
                fmtp.push((
                    "profile-level-id".to_owned(),
                    profile.iter().map(|b| format!("{b:02X}")).collect(),
                ));
            }
        }
        fmtp.push(("sprop-parameter-sets".to_owned(), encode_sprop(nals)));
        MediaSpec {
            media_type: "video",
            payload_type,
            encoding_name: "H264".to_owned(),
            clock_rate: 90_000,
            fmtp,
            control: control.to_owned(),
        }
    }

    /// An application stream (gaze, IMU, eye events) with no fmtp.
    pub fn application(
        payload_type: u8,
        encoding_name: &str,
        clock_rate: u32,
        control: &str,
    ) -> Self {
        MediaSpec {
            media_type: "application",
            payload_type,
            encoding_name: encoding_name.to_owned(),
            clock_rate,
            fmtp: Vec::new(),
            control: control.to_owned(),
        }
    }

    /// AAC audio (RFC 3640 hbr) with the AudioSpecificConfig as hex `config`; no channel count
    /// in the rtpmap, which aiortsp would misread (doc 6.4).
    pub fn aac(payload_type: u8, clock_rate: u32, config: &[u8], control: &str) -> Self {
        MediaSpec {
            media_type: "audio",
            payload_type,
            encoding_name: "MPEG4-GENERIC".to_owned(),
            clock_rate,
            fmtp: vec![
                ("streamtype".to_owned(), "5".to_owned()),
                ("profile-level-id".to_owned(), "1".to_owned()),
                ("mode".to_owned(), "AAC-hbr".to_owned()),
                ("sizelength".to_owned(), "13".to_owned()),
                ("indexlength".to_owned(), "3".to_owned()),
                ("indexdeltalength".to_owned(), "3".to_owned()),
                (
                    "config".to_owned(),
                    config.iter().map(|b| format!("{b:02x}")).collect(),
                ),
            ],
            control: control.to_owned(),
        }
    }
}

/// Writes the SDP of a DESCRIBE answer: session-level `a=control:*`, one `m=` per media with
/// port 0 (RTSP negotiates ports), `a=rtpmap` without channel count, clean fmtp, `a=control`.
pub fn build(origin_address: &str, session_name: &str, medias: &[MediaSpec]) -> String {
    let mut s = Session::new(
        Origin::new("0", 0, NetType::In, AddrType::Ip4, origin_address),
        session_name,
    );
    s.add_attribute(Attribute::with_value("control", "*"));
    for m in medias {
        let mut media = Media {
            media: m.media_type.to_owned(),
            port: 0,
            num_ports: None,
            proto: "RTP/AVP".to_owned(),
            fmt: m.payload_type.to_string(),
            media_title: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes: Vec::new(),
        };
        media.add_attribute(RtpMap::new(m.payload_type, &m.encoding_name, m.clock_rate));
        if !m.fmtp.is_empty() {
            let params = m
                .fmtp
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";");
            media.add_attribute(Attribute::with_value(
                "fmtp",
                format!("{} {params}", m.payload_type),
            ));
        }
        media.add_attribute(Attribute::with_value("control", &m.control));
        s.add_media(media);
    }
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = s.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Shaped like what GStreamer-based RTSP servers (and so, presumably, the phone) send.
    const DESCRIBE: &str = "v=0\r\n\
        o=- 1188340656180883 1 IN IP4 192.168.1.20\r\n\
        s=Pupil Invisible RTSP Server\r\n\
        t=0 0\r\n\
        a=control:*\r\n\
        m=video 0 RTP/AVP 96\r\n\
        a=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1; profile-level-id=42C01F; sprop-parameter-sets=Z0LAH9kAUAW7AQ==,aM48gA==\r\n\
        a=control:trackID=0\r\n\
        m=audio 0 RTP/AVP 97\r\n\
        a=rtpmap:97 MPEG4-GENERIC/8000/1\r\n\
        a=fmtp:97 streamtype=5;config=1588;mode=AAC-hbr;someflag\r\n\
        a=control:trackID=1\r\n\
        m=application 0 RTP/AVP 99\r\n\
        a=rtpmap:99  com.pupillabs.gaze1/90000\r\n\
        a=control:rtsp://192.168.1.20:8086/?camera=gaze/trackID=2\r\n";

    #[test]
    fn parses_a_describe_answer() {
        let s = parse(DESCRIBE.as_bytes()).unwrap();
        assert_eq!(s.control.as_deref(), Some("*"));
        assert_eq!(s.medias.len(), 3);
        let v = s.first_of_type("video").unwrap();
        assert_eq!(v.payload_type, Some(96));
        assert!(v.is_encoding("h264"));
        assert_eq!(v.clock_rate, Some(90_000));
        assert_eq!(v.fmtp_value("Packetization-Mode"), Some("1"));
        assert_eq!(v.fmtp_value("profile-level-id"), Some("42C01F"));
        assert_eq!(
            v.sprop_parameter_sets,
            vec![
                vec![0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01],
                vec![0x68, 0xce, 0x3c, 0x80]
            ]
        );
        assert_eq!(v.control.as_deref(), Some("trackID=0"));
        let a = s.first_of_type("audio").unwrap();
        // Channel count tolerated; bare token kept without a value.
        assert_eq!(
            (a.clock_rate, a.encoding_params.as_deref()),
            (Some(8000), Some("1"))
        );
        assert_eq!(a.fmtp_value("config"), Some("1588"));
        assert!(a.fmtp.iter().any(|(k, v)| k == "someflag" && v.is_none()));
        let g = s.first_of_type("application").unwrap();
        assert!(g.is_encoding(GAZE_ENCODING));
        assert_eq!(g.clock_rate, Some(90_000));
        assert_eq!(
            control_url("rtsp://192.168.1.20:8086/", g.control.as_deref()),
            "rtsp://192.168.1.20:8086/?camera=gaze/trackID=2"
        );
    }

    #[test]
    fn control_urls_join_like_aiortsp() {
        let base = "rtsp://ip:8086/?camera=world";
        assert_eq!(control_url(base, None), base);
        assert_eq!(control_url(base, Some("*")), base);
        assert_eq!(
            control_url(base, Some("trackID=0")),
            "rtsp://ip:8086/?camera=world/trackID=0"
        );
        assert_eq!(control_url("rtsp://ip/", Some("/a")), "rtsp://ip/a");
        assert_eq!(control_url(base, Some("rtsp://x/y")), "rtsp://x/y");
    }

    #[test]
    fn bad_sprop_is_reported_not_fatal() {
        let sdp = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=!!!\r\n";
        let s = parse(sdp.as_bytes()).unwrap();
        let v = &s.medias[0];
        assert!(v.sprop_parameter_sets.is_empty());
        assert!(v.sprop_error.is_some());
        assert!(parse(b"x=1\r\n").is_err());
        assert!(parse(&[b'v', b'=', b'0', b'\n', 0xff]).is_err());
    }

    #[test]
    fn builds_the_simulator_sdp_and_reads_it_back() {
        let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xd9];
        let pps: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
        let medias = [
            MediaSpec::h264(PT_VIDEO, [sps, pps], "trackID=0"),
            MediaSpec::aac(PT_AUDIO, 8000, &[0x15, 0x88], "trackID=1"),
            MediaSpec::application(PT_GAZE, GAZE_ENCODING, 90_000, "trackID=2"),
            MediaSpec::application(PT_IMU, IMU_ENCODING, 90_000, "trackID=3"),
            MediaSpec::application(PT_EYE_EVENTS, EYE_EVENTS_ENCODING, 90_000, "trackID=4"),
        ];
        let text = build("127.0.0.1", "Pupil Invisible RTSP Server", &medias);
        assert!(text.contains("a=rtpmap:96 H264/90000\r\n"), "{text}");
        assert!(
            text.contains("a=rtpmap:97 MPEG4-GENERIC/8000\r\n"),
            "{text}"
        );
        assert!(
            text.contains("a=rtpmap:99 com.pupillabs.gaze1/90000\r\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "a=fmtp:96 packetization-mode=1;profile-level-id=42C01F;sprop-parameter-sets="
            ),
            "{text}"
        );
        let s = parse(text.as_bytes()).unwrap();
        assert_eq!(s.medias.len(), 5);
        for (spec, m) in medias.iter().zip(&s.medias) {
            assert_eq!(m.media_type, spec.media_type);
            assert_eq!(m.payload_type, Some(spec.payload_type));
            assert_eq!(
                m.encoding_name.as_deref(),
                Some(spec.encoding_name.as_str())
            );
            assert_eq!(m.clock_rate, Some(spec.clock_rate));
            assert_eq!(m.encoding_params, None);
            assert_eq!(m.control.as_deref(), Some(spec.control.as_str()));
        }
        assert_eq!(
            s.medias[0].sprop_parameter_sets,
            vec![sps.to_vec(), pps.to_vec()]
        );
        assert_eq!(s.medias[1].fmtp_value("config"), Some("1588"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&b);
        }

        /// SDP-shaped text with random attribute values: never panics.
        #[test]
        fn sdp_shaped_text_never_panics(lines in proptest::collection::vec(
            ("[amv]", "[ -~]{0,40}"), 0..12)) {
            let mut text = String::from("v=0\r\nm=video 0 RTP/AVP 96\r\n");
            for (k, v) in &lines {
                text.push_str(&format!("{k}={v}\r\n"));
            }
            let _ = parse(text.as_bytes());
        }

        #[test]
        fn sprop_round_trip(nals in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..40), 0..4)) {
            let enc = encode_sprop(nals.iter().map(|n| &n[..]));
            prop_assert_eq!(decode_sprop(&enc).unwrap(), nals);
        }
    }
}
