//! The byte stream of an RTSP connection carrying interleaved RTP (RFC 2326 10.12): split into
//! `$` frames, RTSP text messages and junk, and the Transport-header fix-up a phone needs.
//!
//! Why a splitter of our own: over TCP the phone (app 2.9.31) answers SETUP without
//! `interleaved=` and writes stray `RTSP/1.0 400 Bad Request` replies among the frames after
//! receiver reports (protocol doc 4.3, official client PRs #89/#90). A strict client (retina)
//! fails on both, so the live client relays the connection through [`Splitter`] and drops what
//! no request asked for. Pure bytes: never panics, every call makes progress or asks for more.

/// The longest RTSP message head we accept; a longer "head" is junk, not a reply.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest body a reply may announce; more is junk (SDPs are a few KiB).
pub const MAX_BODY: usize = 256 * 1024;

/// One piece at the front of the buffer; `len` bytes to consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// `$`, channel, u16 BE length, payload: `len` = 4 + payload length.
    Data { channel: u8, len: usize },
    /// An RTSP message (request or response): `head_len` bytes of start line and headers
    /// including the blank line, then `len - head_len` bytes of body (Content-Length).
    Message { len: usize, head_len: usize },
    /// Bytes that start neither a frame nor a message, up to the next `$` or `R` that could.
    Junk { len: usize },
}

impl Chunk {
    pub fn len(&self) -> usize {
        match *self {
            Chunk::Data { len, .. } | Chunk::Message { len, .. } | Chunk::Junk { len } => len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a message head says, parsed leniently (header names case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// `Some(status)` for a response (`RTSP/1.0 400 ...`), `None` for a request.
    pub status: Option<u16>,
    /// The request's method (`SETUP`), empty for a response.
    pub method: String,
    pub cseq: Option<u32>,
    /// The `Transport` header's value, if any.
    pub transport: Option<String>,
    pub content_length: Option<usize>,
}

/// Splits a connection's bytes. Stateless: text at the front is a message only when it looks
/// like one.
#[derive(Debug, Default, Clone, Copy)]
pub struct Splitter {
    /// Whether requests count as messages (the client's side); on the device's side only
    /// responses do, so text that merely looks like a method is junk and cannot stall the
    /// stream while waiting for a head end.
    pub requests: bool,
}

impl Splitter {
    /// The device's side: frames and responses.
    pub const FROM_SERVER: Splitter = Splitter { requests: false };
    /// The client's side: frames and requests (and responses to server requests).
    pub const FROM_CLIENT: Splitter = Splitter { requests: true };

    /// The chunk at the front of `buf`, or `None` if more bytes are needed to tell.
    pub fn next(&self, buf: &[u8]) -> Option<Chunk> {
        let first = *buf.first()?;
        if first == b'$' {
            let (&channel, len) = match buf.get(1..4) {
                Some([c, a, b]) => (c, u16::from_be_bytes([*a, *b])),
                _ => return None,
            };
            let len = 4 + usize::from(len);
            return (buf.len() >= len).then_some(Chunk::Data { channel, len });
        }
        match message_start(buf, self.requests) {
            Start::Yes => {}
            Start::NeedMore => return None,
            Start::No => return Some(Chunk::Junk { len: junk_len(buf) }),
        }
        let Some(head_len) = find_head_end(buf) else {
            // No blank line yet: wait, unless the head is already too long to be one.
            return (buf.len() > MAX_HEAD).then(|| Chunk::Junk { len: junk_len(buf) });
        };
        let head = parse_head(buf.get(..head_len).unwrap_or_default());
        let body = head.content_length.unwrap_or(0);
        if body > MAX_BODY {
            return Some(Chunk::Junk { len: junk_len(buf) });
        }
        let len = head_len + body;
        (buf.len() >= len).then_some(Chunk::Message { len, head_len })
    }
}

enum Start {
    Yes,
    No,
    NeedMore,
}

/// A message starts with `RTSP/` (response) or an upper-case method and a space (request).
fn message_start(buf: &[u8], requests: bool) -> Start {
    const RTSP: &[u8] = b"RTSP/";
    let n = buf.len().min(RTSP.len());
    if buf.get(..n) == RTSP.get(..n) {
        return if n == RTSP.len() {
            Start::Yes
        } else {
            Start::NeedMore
        };
    }
    if !requests {
        return Start::No;
    }
    // Methods are at most 13 letters (GET_PARAMETER, SET_PARAMETER).
    for (i, &b) in buf.iter().enumerate().take(16) {
        match b {
            b'A'..=b'Z' | b'_' => {}
            b' ' if i > 0 => return Start::Yes,
            _ => return Start::No,
        }
    }
    if buf.len() < 16 {
        Start::NeedMore
    } else {
        Start::No
    }
}

/// Junk runs to the next byte that could start a frame or a reply (at least one byte).
fn junk_len(buf: &[u8]) -> usize {
    buf.iter()
        .skip(1)
        .position(|&b| b == b'$' || b == b'R')
        .map_or(buf.len(), |p| p + 1)
}

/// Length of the head including its blank line (CRLF CRLF, or LF LF from a sloppy sender).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let limit = buf.len().min(MAX_HEAD);
    let b = buf.get(..limit)?;
    let crlf = memchr::memmem::find(b, b"\r\n\r\n").map(|p| p + 4);
    let lf = memchr::memmem::find(b, b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads the start line and the headers this relay needs.
pub fn parse_head(head: &[u8]) -> Head {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines();
    let mut h = Head::default();
    let start = lines.next().unwrap_or_default();
    if let Some(rest) = start.strip_prefix("RTSP/") {
        h.status = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        if h.status.is_none() {
            h.status = Some(0);
        }
    } else {
        h.method = start.split(' ').next().unwrap_or_default().to_string();
    }
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "cseq" => h.cseq = value.parse().ok(),
            "transport" => h.transport = Some(value.to_string()),
            "content-length" => h.content_length = value.parse().ok(),
            _ => {}
        }
    }
    h
}

/// The `interleaved=a-b` channels of a Transport value (`a-a+1` when only `a` is given).
pub fn interleaved_channels(transport: &str) -> Option<(u8, u8)> {
    let p = transport
        .split(';')
        .find_map(|p| p.trim().strip_prefix("interleaved="))?;
    let mut it = p.splitn(2, '-');
    let a: u8 = it.next()?.trim().parse().ok()?;
    let b = match it.next() {
        Some(b) => b.trim().parse().ok()?,
        None => a.checked_add(1)?,
    };
    Some((a, b))
}

/// A response head with `;interleaved=a-b` appended to its Transport header, or `None` if the
/// head has no Transport header or already names channels. Headers are kept byte for byte.
pub fn add_interleaved(head: &[u8], channels: (u8, u8)) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(head.len() + 24);
    let mut done = false;
    let mut rest = head;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |p| p + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        let body = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        let eol = line.get(body.len()..).unwrap_or_default();
        let is_transport = body
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|c| body[..c].trim_ascii().eq_ignore_ascii_case(b"transport"));
        if is_transport && !done {
            if String::from_utf8_lossy(body).contains("interleaved=") {
                return None;
            }
            out.extend_from_slice(body.trim_ascii_end());
            out.extend_from_slice(format!(";interleaved={}-{}", channels.0, channels.1).as_bytes());
            out.extend_from_slice(eol);
            done = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    done.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STRAY: &[u8] =
        b"RTSP/1.0 400 Bad Request\r\nServer: phone\r\nContent-Length: 5\r\n\r\noops!";

    fn frame(ch: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b'$', ch];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Splits a whole buffer; what is left needs more bytes.
    fn split_all(mut b: &[u8]) -> (Vec<Chunk>, usize) {
        let mut out = Vec::new();
        while let Some(c) = Splitter::FROM_SERVER.next(b) {
            assert!(!c.is_empty() && c.len() <= b.len(), "{c:?} of {}", b.len());
            b = &b[c.len()..];
            out.push(c);
        }
        (out, b.len())
    }

    #[test]
    fn a_stray_reply_between_frames_is_one_message() {
        let mut b = frame(0, &[0x80; 20]);
        b.extend_from_slice(STRAY);
        b.extend(frame(1, &[0x81; 8]));
        let (chunks, left) = split_all(&b);
        assert_eq!(left, 0);
        assert_eq!(
            chunks,
            vec![
                Chunk::Data {
                    channel: 0,
                    len: 24
                },
                Chunk::Message {
                    len: STRAY.len(),
                    head_len: STRAY.len() - 5
                },
                Chunk::Data {
                    channel: 1,
                    len: 12
                },
            ]
        );
        let h = parse_head(&STRAY[..STRAY.len() - 5]);
        assert_eq!(
            (h.status, h.cseq, h.content_length),
            (Some(400), None, Some(5))
        );
    }

    #[test]
    fn junk_resyncs_at_the_next_frame() {
        let mut b = b"\x00\x01garbage".to_vec();
        b.extend(frame(0, b"rtp"));
        let (chunks, left) = split_all(&b);
        assert_eq!(left, 0);
        assert!(matches!(chunks[0], Chunk::Junk { .. }));
        assert_eq!(chunks.last(), Some(&Chunk::Data { channel: 0, len: 7 }));
    }

    #[test]
    fn partial_input_waits_for_more() {
        for b in [
            &b"$"[..],
            b"$\x00\x00",
            b"$\x00\x00\x05ab",
            b"RTS",
            b"RTSP/1.0 200 OK\r\n",
        ] {
            assert_eq!(
                Splitter::FROM_SERVER.next(b),
                None,
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        let body_missing = b"RTSP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert_eq!(Splitter::FROM_SERVER.next(body_missing), None);
    }

    #[test]
    fn a_setup_reply_without_channels_gets_the_requested_ones() {
        let head =
            b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast\r\nSession: 1\r\n\r\n";
        let fixed = add_interleaved(head, (2, 3)).unwrap();
        let h = parse_head(&fixed);
        assert_eq!(h.cseq, Some(3));
        assert_eq!(
            h.transport.as_deref(),
            Some("RTP/AVP/TCP;unicast;interleaved=2-3")
        );
        assert!(fixed.ends_with(b"Session: 1\r\n\r\n"));
        assert_eq!(add_interleaved(&fixed, (0, 1)), None);
        assert_eq!(
            interleaved_channels("RTP/AVP/TCP;interleaved=4"),
            Some((4, 5))
        );
        assert_eq!(
            interleaved_channels("RTP/AVP/TCP;interleaved=0-1"),
            Some((0, 1))
        );
        assert_eq!(interleaved_channels("RTP/AVP/TCP;interleaved=x"), None);
    }

    #[test]
    fn requests_are_messages_too() {
        let req = b"GET_PARAMETER rtsp://h/ RTSP/1.0\r\nCSeq: 9\r\n\r\n";
        assert!(matches!(
            Splitter::FROM_SERVER.next(req),
            Some(Chunk::Junk { .. })
        ));
        assert_eq!(
            Splitter::FROM_CLIENT.next(req),
            Some(Chunk::Message {
                len: req.len(),
                head_len: req.len()
            })
        );
        let h = parse_head(req);
        assert_eq!(
            (h.method.as_str(), h.cseq, h.status),
            ("GET_PARAMETER", Some(9), None)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Arbitrary bytes: no panic, every chunk consumes at least one byte and no more than
        /// there is, and heads parse without panicking.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600),
                                       requests: bool) {
            let splitter = Splitter { requests };
            let mut rest = &b[..];
            while let Some(c) = splitter.next(rest) {
                prop_assert!(!c.is_empty() && c.len() <= rest.len());
                if let Chunk::Message { head_len, .. } = c {
                    let _ = parse_head(&rest[..head_len]);
                    let _ = add_interleaved(&rest[..head_len], (0, 1));
                }
                rest = &rest[c.len()..];
            }
        }

        /// Frames with a stray reply or junk spliced in anywhere between them, fed truncated at
        /// every length: every frame that was whole before the cut comes out intact.
        #[test]
        fn frames_survive_spliced_text(payloads in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..64), 1..6),
                at in 0usize..6, junk in proptest::collection::vec(any::<u8>(), 0..40),
                cut in 0usize..400) {
            let mut b = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                if i == at % payloads.len() {
                    b.extend_from_slice(STRAY);
                    // junk with no byte that could start a frame or a message
                    b.extend(junk.iter().map(|&x| if x == b'$' || x == b'R' { b'x' } else { x }));
                }
                b.extend(frame(0, p));
            }
            let cut = cut.min(b.len());
            let (chunks, _) = split_all(&b[..cut]);
            let data: Vec<usize> = chunks.iter().filter_map(|c| match c {
                Chunk::Data { len, .. } => Some(*len - 4),
                _ => None,
            }).collect();
            let whole = payloads.iter().map(|p| p.len()).take(data.len()).collect::<Vec<_>>();
            prop_assert_eq!(data, whole);
        }
    }
}
