//! The control API's protection against clients that hold connections without sending a
//! request (slowloris), which matters with `--control-allow-remote`: such a connection is
//! closed after the header read timeout while everyone else is served.

#[allow(dead_code)]
mod common;
#[path = "common/control.rs"]
mod control;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::eyetrack;

/// What the server does with a connection that sent `prefix` and then nothing: how long until
/// it closed it (None: still open after `limit`).
fn closed_after(addr: &str, prefix: &[u8], limit: Duration) -> Option<Duration> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(prefix).unwrap();
    conn.set_read_timeout(Some(limit)).unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    match conn.read_to_end(&mut buf) {
        Ok(_) => Some(t0.elapsed()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(t0.elapsed()),
        Err(_) => None,
    }
}

fn server() -> control::Server {
    control::start(
        eyetrack(),
        &[
            "run",
            "--source",
            "synthetic",
            "--resolution",
            "320x240",
            "-q",
        ],
    )
}

#[test]
fn connections_that_never_finish_their_headers_are_closed() {
    let s = server();
    let addr = s.base.trim_start_matches("http://").to_owned();
    // The server's limit is 20 s; 60 s gives a loaded machine room and still fails fast
    // enough where there is no limit at all.
    let limit = Duration::from_secs(60);
    let silent = {
        let addr = addr.clone();
        std::thread::spawn(move || closed_after(&addr, b"", limit))
    };
    let dribbling = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            closed_after(&addr, b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n", limit)
        })
    };
    // Meanwhile the API answers everyone else.
    assert!(control::wait_until(Duration::from_secs(20), || s
        .get("/status")
        .status
        == 200));
    for (what, t) in [
        ("silent", silent.join().unwrap()),
        ("unfinished header", dribbling.join().unwrap()),
    ] {
        let t = t.unwrap_or_else(|| panic!("a {what} connection was still open after {limit:?}"));
        assert!(
            t >= Duration::from_secs(10),
            "{what} closed after {t:?}: too early"
        );
    }
    assert_eq!(s.get("/status").status, 200);
    assert!(s.stop().success());
}

/// A request whose body never completes gets 408 after the body read timeout, instead of
/// holding its connection and a handler.
#[test]
fn a_body_that_never_completes_gets_408() {
    let s = server();
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.write_all(
        b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"name\": ",
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let t0 = Instant::now();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head)
        .expect("an answer before the client's own 40 s limit");
    assert_eq!(
        &head,
        b"HTTP/1.1 408",
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    assert!(t0.elapsed() >= Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(s.get("/status").status, 200);
    assert!(s.stop().success());
}
