//! neon-sim over real sockets on 127.0.0.1: the RTSP conversation a client has with a Neon (UDP
//! and TCP interleaved), the HTTP API, and the --drop-at fault. The fixture is written by the
//! test with the real fixture writer: a 3 s world stream (H.264-shaped RTP, a keyframe each
//! second) and a 200 Hz gaze stream, each with an SR before its first RTP and then every second.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipeline::fixture::{FixtureHeader, FixtureReader, FixtureWriter, PacketKind, StreamInfo};

const WORLD_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=world\r\nt=0 0\r\na=control:*\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n";
const GAZE_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=gaze\r\nt=0 0\r\na=control:*\r\n\
m=application 0 RTP/AVP 99\r\na=rtpmap:99 com.pupillabs.gaze1/1000\r\n";
const START_NS: i64 = 1_700_000_000_000_000_000;

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, pt];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn sr(ssrc: u32, unix_ns: i64, ts: u32) -> Vec<u8> {
    let secs = (unix_ns / 1_000_000_000) as u64 + 2_208_988_800;
    let frac = (((unix_ns % 1_000_000_000) as u128) << 32) / 1_000_000_000;
    let mut v = vec![0x80, 200, 0, 6];
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&((secs << 32) | frac as u64).to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&[0; 8]);
    v
}

/// 3 s: world 30 fps, 2 packets per frame (FU-A start/end), IDR every 30 frames; gaze 200 Hz.
fn write_fixture(path: &Path) {
    let header = FixtureHeader {
        start_unix_ns: START_NS,
        streams: vec![
            StreamInfo {
                name: "world".into(),
                sdp: WORLD_SDP.into(),
            },
            StreamInfo {
                name: "gaze".into(),
                sdp: GAZE_SDP.into(),
            },
        ],
        made_by: "bench-scenarios/tests/neon_sim.rs".into(),
    };
    let mut events: Vec<(u64, u8, PacketKind, Vec<u8>)> = Vec::new();
    for s in 0..3u64 {
        let t = s * 1_000_000_000;
        events.push((
            t,
            0,
            PacketKind::Rtcp,
            sr(0xAA, START_NS + t as i64, (s * 90_000) as u32),
        ));
        events.push((
            t,
            1,
            PacketKind::Rtcp,
            sr(0xBB, START_NS + t as i64, (s * 1000) as u32),
        ));
    }
    let mut seq = 100u16;
    for f in 0..90u64 {
        let t = f * 1_000_000_000 / 30 + 1_000_000;
        let nal = if f % 30 == 0 { 5 } else { 1 };
        let ts = (f * 3000) as u32;
        let mut a = vec![0x7c, 0x80 | nal];
        a.extend((0..1000).map(|i| (i + f as usize) as u8));
        let mut b = vec![0x7c, 0x40 | nal];
        b.extend((0..500).map(|i| (i * 3 + f as usize) as u8));
        events.push((t, 0, PacketKind::Rtp, rtp(96, seq, ts, 0xAA, &a)));
        events.push((
            t + 100_000,
            0,
            PacketKind::Rtp,
            rtp(96 | 0x80, seq + 1, ts, 0xAA, &b),
        ));
        seq += 2;
    }
    for g in 0..600u64 {
        let t = g * 5_000_000 + 500_000;
        let mut p = Vec::new();
        p.extend_from_slice(&(g as f32).to_be_bytes());
        p.extend_from_slice(&((g * 2) as f32).to_be_bytes());
        p.push(255);
        events.push((
            t,
            1,
            PacketKind::Rtp,
            rtp(99, g as u16, (g * 5) as u32, 0xBB, &p),
        ));
    }
    events.sort_by_key(|e| (e.0, e.2 == PacketKind::Rtp));
    let mut w = FixtureWriter::create(path, &header).unwrap();
    for (t, s, k, d) in events {
        w.write_packet(s, k, t, &d).unwrap();
    }
    w.finish().unwrap();
}

#[path = "common/sim.rs"]
mod sim;

use sim::Sim;

fn start_sim(fixture: &Path, extra: &[&str]) -> Sim {
    sim::start(fixture, extra)
}

fn tmp_fixture(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neon-sim-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f.etfx");
    write_fixture(&path);
    path
}

/// A minimal RTSP client: one request, reading the reply's headers and body.
struct Rtsp {
    s: TcpStream,
    cseq: u32,
    session: Option<String>,
    pending: Vec<u8>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Rtsp {
    fn connect(addr: &str) -> Rtsp {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Rtsp {
            s,
            cseq: 0,
            session: None,
            pending: Vec::new(),
        }
    }

    fn request(&mut self, method: &str, url: &str, extra: &[(&str, &str)]) -> Reply {
        self.cseq += 1;
        let mut req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: test\r\n",
            self.cseq
        );
        if let Some(s) = &self.session {
            req += &format!("Session: {s}\r\n");
        }
        for (k, v) in extra {
            req += &format!("{k}: {v}\r\n");
        }
        req += "\r\n";
        self.s.write_all(req.as_bytes()).unwrap();
        let reply = self.read_reply();
        assert_eq!(
            reply.header("CSeq"),
            Some(self.cseq.to_string().as_str()),
            "CSeq echoed"
        );
        if let Some(s) = reply.header("Session") {
            self.session = Some(s.split(';').next().unwrap().trim().to_string());
        }
        reply
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 4096];
        let n = self.s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed");
        self.pending.extend_from_slice(&buf[..n]);
    }

    fn read_reply(&mut self) -> Reply {
        loop {
            // skip interleaved frames that precede the reply
            while self.pending.first() == Some(&b'$') && self.pending.len() >= 4 {
                let len = u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize;
                if self.pending.len() < 4 + len {
                    break;
                }
                self.pending.drain(..4 + len);
            }
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.pending[..end].to_vec()).unwrap();
                let mut lines = head.lines();
                let status_line = lines.next().unwrap();
                assert!(status_line.starts_with("RTSP/1.0 "), "{status_line}");
                let status = status_line[9..12].parse().unwrap();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                while self.pending.len() < end + 4 + len {
                    self.fill();
                }
                let body = self.pending[end + 4..end + 4 + len].to_vec();
                self.pending.drain(..end + 4 + len);
                return Reply {
                    status,
                    headers,
                    body,
                };
            }
            self.fill();
        }
    }

    /// The next interleaved frame (channel, data).
    fn read_frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.pending.len() >= 4 {
                assert_eq!(self.pending[0], b'$', "interleaved framing");
                let len = u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize;
                if self.pending.len() >= 4 + len {
                    let ch = self.pending[1];
                    let data = self.pending[4..4 + len].to_vec();
                    self.pending.drain(..4 + len);
                    return (ch, data);
                }
            }
            self.fill();
        }
    }
}

/// Every RTP/RTCP packet of one stream in the fixture, in order.
fn fixture_packets(path: &Path, stream: u8) -> Vec<(PacketKind, Vec<u8>)> {
    let mut r = FixtureReader::open(path).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        if p.stream == stream {
            v.push((p.kind, p.data.to_vec()));
        }
    }
    v
}

fn udp_pair() -> (UdpSocket, UdpSocket, u16) {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p.is_multiple_of(2) {
            if let Ok(b) = UdpSocket::bind(("127.0.0.1", p + 1)) {
                return (a, b, p);
            }
        }
    }
}

#[test]
fn rtsp_over_udp_delivers_the_recorded_gaze_bytes() {
    let fixture = tmp_fixture("udp");
    let sim = start_sim(&fixture, &["--clock", "recorded"]);
    let base = format!("rtsp://{}/", sim.rtsp);
    let mut c = Rtsp::connect(&sim.rtsp);
    let url = format!("rtsp://{}/?camera=gaze&audioenable=on", sim.rtsp);
    let r = c.request("OPTIONS", &url, &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("Public").unwrap().contains("GET_PARAMETER"));
    let r = c.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Base"), Some(base.as_str()));
    assert_eq!(String::from_utf8(r.body).unwrap(), GAZE_SDP);
    let (rtp_sock, rtcp_sock, port) = udp_pair();
    let transport = format!("RTP/AVP;unicast;client_port={port}-{}", port + 1);
    // gaze is set up at the base URL, as the official client does (protocol doc 4.2)
    let r = c.request("SETUP", &base, &[("Transport", &transport)]);
    assert_eq!(r.status, 200, "{:?}", r.headers);
    let t = r.header("Transport").unwrap().to_string();
    let sp: u16 = t
        .split(';')
        .find_map(|p| p.strip_prefix("server_port="))
        .and_then(|p| p.split('-').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(r.header("Session").unwrap().contains("timeout=60"));
    let r = c.request("PLAY", &base, &[("Range", "npt=now-"), ("Scale", "1")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Range"), Some("npt=now-"));
    let info = r.header("RTP-Info").unwrap().to_string();
    let first_seq: u16 = info
        .split(';')
        .find_map(|p| p.strip_prefix("seq="))
        .unwrap()
        .parse()
        .unwrap();

    // the SR comes first, on the RTCP pair, from the server's RTCP port
    rtcp_sock
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = rtcp_sock.recv_from(&mut buf).unwrap();
    assert_eq!(buf[1], 200, "an SR");
    assert_eq!(from.port(), sp + 1);
    let recorded = fixture_packets(&fixture, 1);
    assert!(recorded
        .iter()
        .any(|(k, d)| *k == PacketKind::Rtcp && d[..] == buf[..n]));

    // then RTP, byte-identical to the fixture (recorded clock, first pass), in order
    rtp_sock
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let rtp_only: Vec<&Vec<u8>> = recorded
        .iter()
        .filter(|(k, _)| *k == PacketKind::Rtp)
        .map(|(_, d)| d)
        .collect();
    let start = rtp_only
        .iter()
        .position(|d| u16::from_be_bytes([d[2], d[3]]) == first_seq)
        .unwrap();
    for i in 0..60 {
        let (n, from) = rtp_sock.recv_from(&mut buf).unwrap();
        assert_eq!(from.port(), sp);
        assert_eq!(&buf[..n], &rtp_only[start + i][..], "packet {i}");
    }
    let r = c.request("GET_PARAMETER", &base, &[]);
    assert_eq!(r.status, 200);
    let r = c.request("TEARDOWN", &base, &[]);
    assert_eq!(r.status, 200);
    // After TEARDOWN the stream stops: what was queued in the socket (many packets when this
    // test was descheduled; the gaze stream is 200 Hz) drains at once, then 300 ms of silence
    // must come well before 2 s, which a still-sending stream never gives.
    let torn_down = std::time::Instant::now();
    rtp_sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while rtp_sock.recv_from(&mut buf).is_ok() {
        assert!(
            torn_down.elapsed() < Duration::from_secs(2),
            "still sending 2 s after TEARDOWN"
        );
    }
}

#[test]
fn rtsp_tcp_interleaved_starts_video_at_a_keyframe_and_loops_forward() {
    let fixture = tmp_fixture("tcp");
    let sim = start_sim(&fixture, &["--clock", "live"]);
    let mut c = Rtsp::connect(&sim.rtsp);
    let url = format!("rtsp://{}/?camera=world&audioenable=on", sim.rtsp);
    assert_eq!(c.request("DESCRIBE", &url, &[]).status, 200);
    // a media control URL without the query: tied to this connection's DESCRIBE
    let control = format!("rtsp://{}/trackID=0", sim.rtsp);
    let r = c.request(
        "SETUP",
        &control,
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(r.status, 200);
    assert!(r.header("Transport").unwrap().contains("interleaved=0-1"));
    let r = c.request("PLAY", &control, &[("Range", "npt=now-")]);
    assert_eq!(r.status, 200);
    let (ch, sr) = c.read_frame();
    assert_eq!((ch, sr[1]), (1, 200), "SR first on the RTCP channel");
    // live clock: the SR's NTP time is now, not 2023
    let secs = u32::from_be_bytes([sr[8], sr[9], sr[10], sr[11]]) as i64 - 2_208_988_800;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((secs - now).abs() <= 5, "SR at {secs}, now {now}");
    let (ch, first) = c.read_frame();
    assert_eq!(ch, 0);
    assert_eq!(first[12] & 0x1f, 28, "FU-A");
    assert_eq!(first[13], 0x85, "starts with an IDR fragment");
    // play past the end of the 3 s fixture: seq and timestamp keep increasing across the wrap
    let (mut seq, mut ts) = (
        u16::from_be_bytes([first[2], first[3]]),
        u32::from_be_bytes([first[4], first[5], first[6], first[7]]),
    );
    let t0 = Instant::now();
    let mut wrapped_ok = 0;
    while t0.elapsed() < Duration::from_millis(3600) {
        let (ch, p) = c.read_frame();
        if ch != 0 {
            continue;
        }
        let s = u16::from_be_bytes([p[2], p[3]]);
        let t = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert_eq!(s, seq.wrapping_add(1), "contiguous sequence numbers");
        assert!(
            t.wrapping_sub(ts) < 90_000,
            "timestamp goes forward: {ts} -> {t}"
        );
        wrapped_ok += 1;
        seq = s;
        ts = t;
    }
    assert!(wrapped_ok > 150, "{wrapped_ok} packets in 3.6 s");
    assert_eq!(c.request("TEARDOWN", &control, &[]).status, 200);
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

#[test]
fn http_api_reports_sensors_and_tracks_recording_state() {
    let fixture = tmp_fixture("http");
    let sim = start_sim(&fixture, &[]);
    let (st, ct, body) = http(&sim.http, "GET", "/api/status", "");
    assert_eq!((st, ct.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let comps = v["result"].as_array().unwrap();
    assert_eq!(comps[0]["model"], "Phone");
    let rtsp_port: u16 = sim.rtsp.rsplit(':').next().unwrap().parse().unwrap();
    let sensors: Vec<_> = comps.iter().filter(|c| c["model"] == "Sensor").collect();
    assert_eq!(sensors.len(), 2);
    for s in &sensors {
        assert_eq!(s["data"]["port"], rtsp_port);
        assert_eq!(s["data"]["conn_type"], "DIRECT");
        assert_eq!(s["data"]["connected"], true);
        assert_eq!(s["data"]["stream_error"], false);
        assert_eq!(s["data"]["protocol"], "rtsp");
    }
    let (st, _, body) = http(&sim.http, "POST", "/api/recording:start", "");
    assert_eq!(st, 200, "{body}");
    let (st, ct, body) = http(&sim.http, "POST", "/api/recording:start", "");
    assert_eq!((st, ct.as_str()), (500, "application/json"), "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["message"].is_string());
    let (st, _, body) = http(
        &sim.http,
        "POST",
        "/api/event",
        r#"{"name":"x","timestamp":42}"#,
    );
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["timestamp"], 42);
    assert!(v["result"]["recording_id"].is_string());
    assert_eq!(
        http(&sim.http, "POST", "/api/recording:stop_and_save", "").0,
        200
    );
    assert_eq!(http(&sim.http, "POST", "/api/recording:cancel", "").0, 500);
    let (st, ct, _) = http(&sim.http, "GET", "/api/nothing", "");
    assert_eq!((st, ct.as_str()), (404, "application/json"));
}

#[test]
fn drop_closes_connections_refuses_then_accepts_again() {
    let fixture = tmp_fixture("drop");
    let sim = start_sim(&fixture, &["--drop-at", "1s", "--drop-for", "1500ms"]);
    let t0 = Instant::now();
    // an RTSP connection made before the drop ...
    let mut c = Rtsp::connect(&sim.rtsp);
    let url = format!("rtsp://{}/?camera=world", sim.rtsp);
    assert_eq!(c.request("OPTIONS", &url, &[]).status, 200);
    let mut idle_http = TcpStream::connect(&sim.http).unwrap();
    // ... is closed by the sim at 1 s
    c.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 16];
    assert_eq!(c.s.read(&mut b).unwrap_or(0), 0, "RTSP connection closed");
    idle_http
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert_eq!(
        idle_http.read(&mut b).unwrap_or(0),
        0,
        "HTTP connection closed"
    );
    let closed_at = t0.elapsed();
    assert!(closed_at >= Duration::from_millis(800), "{closed_at:?}");
    // while down, both ports refuse
    std::thread::sleep(Duration::from_millis(200));
    for addr in [&sim.rtsp, &sim.http] {
        let e = TcpStream::connect(addr.as_str()).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{addr}");
    }
    // and after the window both serve again
    while t0.elapsed() < Duration::from_millis(3000) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = Rtsp::connect(&sim.rtsp);
    assert_eq!(c.request("OPTIONS", &url, &[]).status, 200);
    assert_eq!(http(&sim.http, "GET", "/api/status", "").0, 200);
}

/// The phone's TCP quirks on demand: `--tcp-no-interleaved-echo` leaves `interleaved=` out of
/// the SETUP reply but sends on the asked-for channels; `--tcp-stray-400-every N` puts a stray
/// `400 Bad Request` (no CSeq, with a body) between frames every N packets.
#[test]
fn tcp_quirk_switches_reproduce_the_phone() {
    let fixture = tmp_fixture("tcp-quirks");
    let sim = start_sim(
        &fixture,
        &["--tcp-no-interleaved-echo", "--tcp-stray-400-every", "20"],
    );
    let mut c = Rtsp::connect(&sim.rtsp);
    let url = format!("rtsp://{}/?camera=gaze", sim.rtsp);
    assert_eq!(c.request("DESCRIBE", &url, &[]).status, 200);
    let r = c.request(
        "SETUP",
        &url,
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=4-5")],
    );
    assert_eq!(r.status, 200);
    let t = r.header("Transport").unwrap().to_string();
    assert!(!t.contains("interleaved"), "{t}");
    assert_eq!(
        c.request("PLAY", &url, &[("Range", "npt=now-")]).status,
        200
    );
    let (mut frames, mut strays) = (0, 0);
    while strays < 2 {
        if c.pending.len() < 12 {
            c.fill();
            continue;
        }
        if c.pending[0] == b'R' {
            assert!(c.pending.starts_with(b"RTSP/1.0 400"), "a stray 400");
            {
                let end = c
                    .pending
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4);
                let Some(end) = end else {
                    c.fill();
                    continue;
                };
                let head = String::from_utf8_lossy(&c.pending[..end]).to_string();
                assert!(!head.contains("CSeq"), "{head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                while c.pending.len() < end + len {
                    c.fill();
                }
                c.pending.drain(..end + len);
                assert!(frames >= 20, "a stray reply after {frames} frames");
                strays += 1;
                continue;
            }
        }
        let (ch, _) = c.read_frame();
        assert!(ch == 4 || ch == 5, "channel {ch}: the requested ones");
        frames += 1;
    }
}
