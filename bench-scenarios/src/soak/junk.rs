//! Fake devices on loopback that answer with junk: one whose HTTP API returns random bytes, and
//! one with a valid `/api/status` whose RTSP server answers random bytes. What eyetrack meets
//! when the address is wrong or the device misbehaves.
//!
//! Hand-written on std sockets: each only reads a request head and writes bytes back, so a
//! server framework would add nothing but the chance that it tidies the junk up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use neon_sim::http::DeviceInfo;

/// What a listener answers to each request.
#[derive(Clone)]
enum Reply {
    /// Random bytes (seeded), then close.
    Junk,
    /// An HTTP 200 with this JSON body, then close.
    Json(String),
}

/// A loopback listener answering every connection the same way, until dropped.
pub struct JunkServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JunkServer {
    fn start(reply: Reply) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut rng = Pcg64Mcg::seed_from_u64(6);
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => answer(stream, &reply, &mut rng),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(JunkServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// A device whose HTTP API answers random bytes.
    pub fn junk_http() -> std::io::Result<Self> {
        Self::start(Reply::Junk)
    }
}

impl Drop for JunkServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut stream: TcpStream, reply: &Reply, rng: &mut Pcg64Mcg) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    // Read the request head (or whatever comes within the timeout).
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 64 * 1024 {
            break;
        }
    }
    let bytes = match reply {
        Reply::Junk => {
            let len = rng.random_range(16..4096usize);
            (0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()
        }
        Reply::Json(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    };
    let _ = stream.write_all(&bytes);
}

/// A device with a valid `/api/status` (neon-sim's components) whose sensors point at an RTSP
/// server that answers random bytes.
pub struct JunkRtspDevice {
    pub http: JunkServer,
    _rtsp: JunkServer,
}

impl JunkRtspDevice {
    pub fn start() -> std::io::Result<Self> {
        let rtsp = JunkServer::start(Reply::Junk)?;
        let info = DeviceInfo {
            ip: "127.0.0.1".into(),
            rtsp_port: rtsp.addr.port(),
            time_echo_port: 1,
            sensors: vec!["world".into(), "gaze".into()],
        };
        let body = serde_json::json!({"message": "Success", "result": info.components()});
        let http = JunkServer::start(Reply::Json(body.to_string()))?;
        Ok(JunkRtspDevice { http, _rtsp: rtsp })
    }
}
