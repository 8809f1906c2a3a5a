//! The device's RTSP server (protocol doc 4, checklist 10.4-10.6): OPTIONS, DESCRIBE,
//! SETUP (UDP with a server port pair, or TCP interleaved), PLAY, GET_PARAMETER keepalives and
//! TEARDOWN, one sensor per session, any number of connections at once. Messages are parsed and
//! written with `rtsp-types`; the request handling is ours.
//!
//! SETUP is tied to the sensor the connection DESCRIBEd (a real device answers DESCRIBE with a
//! `Content-Base` that drops the query), unless its URL names a `camera=` itself, so both the
//! base URL and media control URLs work.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rtsp_types::headers::{self, RtpLowerTransport, Transport, Transports};
use rtsp_types::{Message, Method, ParseError, Request, Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::session::{Cursor, Faults, Sink};
use super::timeline::{FixtureFacts, Timeline};

/// What the real server calls itself (protocol doc 4.1).
pub const SERVER_NAME: &str = "Pupil Invisible RTSP Server";
/// Session timeout announced in SETUP; the client keeps alive at 0.9 of it.
pub const SESSION_TIMEOUT_S: u64 = 60;
const PUBLIC: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN";
/// A request larger than this is not RTSP from any client we serve.
const MAX_BUFFERED: usize = 1 << 20;

pub struct RtspShared {
    pub path: PathBuf,
    pub facts: Arc<FixtureFacts>,
    pub timeline: Arc<Timeline>,
    pub faults: Arc<Faults>,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub sessions: AtomicU64,
}

struct Session {
    stream: u8,
    transport: SessionTransport,
    tasks: Vec<AbortHandle>,
    last_seen: Instant,
}

enum SessionTransport {
    Udp {
        rtp: Arc<UdpSocket>,
        rtcp: Arc<UdpSocket>,
        client: (SocketAddr, SocketAddr),
    },
    Tcp {
        channels: (u8, u8),
    },
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Conn {
    shared: Arc<RtspShared>,
    peer: SocketAddr,
    writer: Arc<Mutex<OwnedWriteHalf>>,
    described: Option<u8>,
    sessions: HashMap<String, Session>,
    tasks: JoinSet<()>,
}

/// Serves one RTSP connection until the client closes it; its sessions end with it.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<RtspShared>) {
    let (mut reader, writer) = stream.into_split();
    let mut conn = Conn {
        shared,
        peer,
        writer: Arc::new(Mutex::new(writer)),
        described: None,
        sessions: HashMap::new(),
        tasks: JoinSet::new(),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        loop {
            match Message::<Vec<u8>>::parse(&buf) {
                Ok((msg, used)) => {
                    buf.drain(..used);
                    if let Message::Request(req) = msg {
                        let reply = conn.handle(&req).await;
                        if conn.write_response(&reply).await.is_err() {
                            return;
                        }
                    }
                    // interleaved data (RTCP receiver reports) and stray responses are ignored
                }
                Err(ParseError::Incomplete(_)) => break,
                Err(ParseError::Error) => {
                    let reply = response(StatusCode::BadRequest, None).build(Vec::new());
                    let _ = conn.write_response(&reply).await;
                    return;
                }
            }
        }
        if buf.len() > MAX_BUFFERED {
            return;
        }
        tokio::select! {
            r = reader.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = tick.tick() => conn.expire_sessions(),
        }
    }
}

fn response(status: StatusCode, cseq: Option<&str>) -> rtsp_types::ResponseBuilder {
    let b = Response::builder(Version::V1_0, status).header(headers::SERVER, SERVER_NAME);
    match cseq {
        Some(c) => b.header(headers::CSEQ, c),
        None => b,
    }
}

/// The sensor a URL names with `camera=<name>` (anything after a `/` is a control suffix).
fn camera_of(url: &rtsp_types::Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "camera")
        .map(|(_, v)| v.split('/').next().unwrap_or_default().to_string())
}

impl Conn {
    async fn write_response(&self, resp: &Response<Vec<u8>>) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(256 + resp.body().len());
        resp.write(&mut out)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.writer.lock().await.write_all(&out).await
    }

    fn expire_sessions(&mut self) {
        let limit = Duration::from_secs(SESSION_TIMEOUT_S);
        self.sessions.retain(|_, s| s.last_seen.elapsed() < limit);
    }

    async fn handle(&mut self, req: &Request<Vec<u8>>) -> Response<Vec<u8>> {
        let cseq = req
            .header(&headers::CSEQ)
            .map(|v| v.as_str().to_string())
            .unwrap_or_else(|| "0".into());
        let session_id = req.header(&headers::SESSION).map(|v| {
            v.as_str()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        });
        if let Some(s) = session_id.as_ref().and_then(|id| self.sessions.get_mut(id)) {
            s.last_seen = Instant::now();
        }
        let r = |status| response(status, Some(&cseq));
        match req.method() {
            Method::Options => r(StatusCode::Ok)
                .header(headers::PUBLIC, PUBLIC)
                .build(Vec::new()),
            Method::GetParameter => match &session_id {
                Some(id) if !self.sessions.contains_key(id) => {
                    r(StatusCode::SessionNotFound).build(Vec::new())
                }
                Some(id) => r(StatusCode::Ok)
                    .header(headers::SESSION, id.as_str())
                    .build(Vec::new()),
                None => r(StatusCode::Ok).build(Vec::new()),
            },
            Method::Describe => self.describe(req, r),
            Method::Setup => self.setup(req, session_id, r).await,
            Method::Play => self.play(req, session_id, r).await,
            Method::Teardown => match session_id.and_then(|id| self.sessions.remove(&id)) {
                Some(_) => r(StatusCode::Ok).build(Vec::new()),
                None => r(StatusCode::SessionNotFound).build(Vec::new()),
            },
            _ => r(StatusCode::NotImplemented)
                .header(headers::PUBLIC, PUBLIC)
                .build(Vec::new()),
        }
    }

    fn describe(
        &mut self,
        req: &Request<Vec<u8>>,
        r: impl Fn(StatusCode) -> rtsp_types::ResponseBuilder,
    ) -> Response<Vec<u8>> {
        let stream = req
            .request_uri()
            .and_then(camera_of)
            .and_then(|c| self.shared.facts.stream_index(&c));
        let Some(stream) = stream else {
            return r(StatusCode::NotFound).build(Vec::new());
        };
        self.described = Some(stream);
        let sdp = self.shared.facts.streams[usize::from(stream)]
            .sdp
            .clone()
            .into_bytes();
        r(StatusCode::Ok)
            .header(headers::CONTENT_TYPE, "application/sdp")
            .header(
                headers::CONTENT_BASE,
                format!("rtsp://{}:{}/", self.shared.ip, self.shared.port),
            )
            .build(sdp)
    }

    async fn setup(
        &mut self,
        req: &Request<Vec<u8>>,
        session_id: Option<String>,
        r: impl Fn(StatusCode) -> rtsp_types::ResponseBuilder,
    ) -> Response<Vec<u8>> {
        if session_id.is_some() {
            // one stream per session, as the official client does (protocol doc 4.2)
            return r(StatusCode::AggregateOperationNotAllowed).build(Vec::new());
        }
        let stream = req
            .request_uri()
            .and_then(camera_of)
            .and_then(|c| self.shared.facts.stream_index(&c))
            .or(self.described);
        let Some(mut stream) = stream else {
            return r(StatusCode::NotFound).build(Vec::new());
        };
        // The microphone: a SETUP of the described SDP's m=audio control plays the fixture's
        // `audio` stream (the device's audio is its own session of the world URL, doc 4.2).
        let facts = &self.shared.facts;
        let audio_control = facts.streams[usize::from(stream)].audio_control.as_deref();
        if let (Some(ctrl), Some(uri), Some(audio)) = (
            audio_control,
            req.request_uri(),
            facts.stream_index("audio"),
        ) {
            let ctrl = ctrl.trim_start_matches('/');
            if !ctrl.is_empty() && uri.as_str().trim_end_matches('/').ends_with(ctrl) {
                stream = audio;
            }
        }
        let transports = match req.typed_header::<Transports>() {
            Ok(Some(t)) => t,
            _ => return r(StatusCode::UnsupportedTransport).build(Vec::new()),
        };
        let Some(Transport::Rtp(rtp)) = transports.iter().find(|t| matches!(t, Transport::Rtp(_)))
        else {
            return r(StatusCode::UnsupportedTransport).build(Vec::new());
        };
        let id = format!(
            "{:016X}",
            rand_id(self.shared.sessions.fetch_add(1, Ordering::Relaxed))
        );
        let (transport, reply) = if rtp.lower_transport == Some(RtpLowerTransport::Tcp) {
            let (a, b) = match rtp.params.interleaved {
                Some((a, Some(b))) => (a, b),
                Some((a, None)) => (a, a.wrapping_add(1)),
                None => (0, 1),
            };
            let reply = if self.shared.faults.tcp_no_interleaved_echo {
                "RTP/AVP/TCP;unicast".to_string()
            } else {
                format!("RTP/AVP/TCP;unicast;interleaved={a}-{b}")
            };
            (SessionTransport::Tcp { channels: (a, b) }, reply)
        } else {
            let Some((cp, cp2)) = rtp.params.client_port else {
                return r(StatusCode::UnsupportedTransport).build(Vec::new());
            };
            let cp2 = cp2.unwrap_or(cp.wrapping_add(1));
            let Ok((rtp_sock, rtcp_sock, sp)) = bind_udp_pair(self.shared.ip).await else {
                return r(StatusCode::InternalServerError).build(Vec::new());
            };
            let ip = self.peer.ip();
            (
                SessionTransport::Udp {
                    rtp: Arc::new(rtp_sock),
                    rtcp: Arc::new(rtcp_sock),
                    client: (SocketAddr::new(ip, cp), SocketAddr::new(ip, cp2)),
                },
                format!(
                    "RTP/AVP;unicast;client_port={cp}-{cp2};server_port={sp}-{}",
                    sp + 1
                ),
            )
        };
        self.sessions.insert(
            id.clone(),
            Session {
                stream,
                transport,
                tasks: Vec::new(),
                last_seen: Instant::now(),
            },
        );
        r(StatusCode::Ok)
            .header(headers::TRANSPORT, reply)
            .header(
                headers::SESSION,
                format!("{id};timeout={SESSION_TIMEOUT_S}"),
            )
            .build(Vec::new())
    }

    async fn play(
        &mut self,
        req: &Request<Vec<u8>>,
        session_id: Option<String>,
        r: impl Fn(StatusCode) -> rtsp_types::ResponseBuilder,
    ) -> Response<Vec<u8>> {
        let Some(id) = session_id else {
            return r(StatusCode::SessionNotFound).build(Vec::new());
        };
        let Some(session) = self.sessions.get(&id) else {
            return r(StatusCode::SessionNotFound).build(Vec::new());
        };
        let ok = |extra: Option<String>| {
            let b = r(StatusCode::Ok)
                .header(headers::SESSION, id.as_str())
                .header(headers::RANGE, "npt=now-");
            match extra {
                Some(info) => b.header(headers::RTP_INFO, info),
                None => b,
            }
            .build(Vec::new())
        };
        if !session.tasks.is_empty() {
            return ok(None);
        }
        let stream = session.stream;
        let shared = Arc::clone(&self.shared);
        let prepared = tokio::task::spawn_blocking(move || {
            Cursor::prepare(
                &shared.path,
                &shared.facts,
                Arc::clone(&shared.timeline),
                stream,
                Instant::now(),
            )
        })
        .await;
        let cursor = match prepared {
            Ok(Ok(c)) => c,
            _ => return r(StatusCode::InternalServerError).build(Vec::new()),
        };
        let Some(session) = self.sessions.get_mut(&id) else {
            return r(StatusCode::SessionNotFound).build(Vec::new());
        };
        let Some(cursor) = cursor else {
            // the replay is over (no --loop): the session plays nothing
            return ok(None);
        };
        let info = cursor.rtp_info().map(|i| {
            let url = req.request_uri().map(|u| u.to_string()).unwrap_or_default();
            format!("url={url};seq={};rtptime={}", i.seq, i.rtptime)
        });
        let sink = match &session.transport {
            SessionTransport::Udp { rtp, rtcp, client } => {
                // drain what clients send (RTCP receiver reports, NAT warm-up datagrams)
                for sock in [Arc::clone(rtp), Arc::clone(rtcp)] {
                    let h = self.tasks.spawn(async move {
                        let mut junk = [0u8; 1500];
                        while sock.recv_from(&mut junk).await.is_ok() {}
                    });
                    session.tasks.push(h);
                }
                Sink::Udp {
                    rtp: Arc::clone(rtp),
                    rtcp: Arc::clone(rtcp),
                    rtp_to: client.0,
                    rtcp_to: client.1,
                }
            }
            SessionTransport::Tcp { channels } => Sink::Tcp {
                writer: Arc::clone(&self.writer),
                rtp_channel: channels.0,
                rtcp_channel: channels.1,
            },
        };
        let faults = Arc::clone(&self.shared.faults);
        let n = self.shared.sessions.fetch_add(1, Ordering::Relaxed);
        let h = self.tasks.spawn(cursor.play(sink, faults, n));
        session.tasks.push(h);
        ok(info)
    }
}

/// A session id that is not guessable from the counter alone.
fn rand_id(n: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(17) | 1
}

/// An even RTP port and the odd RTCP port above it (RFC 3550 11).
async fn bind_udp_pair(ip: Ipv4Addr) -> std::io::Result<(UdpSocket, UdpSocket, u16)> {
    let mut last = std::io::Error::other("no free UDP port pair");
    for _ in 0..64 {
        let rtp = UdpSocket::bind((ip, 0)).await?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        match UdpSocket::bind((ip, port + 1)).await {
            Ok(rtcp) => return Ok((rtp, rtcp, port)),
            Err(e) => last = e,
        }
    }
    Err(last)
}
