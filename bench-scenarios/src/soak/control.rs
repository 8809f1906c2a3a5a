//! Soak cases over eyetrack's control API (`--control`): 50 recording start/stop cycles, and
//! malformed requests at the socket level. Both end the process with SIGTERM, so the clean
//! stop (issue 6, "Lifecycle") is checked under a running API server too.
//!
//! Requests go over plain `TcpStream`s on purpose: the malformed ones must reach the server
//! byte for byte as written (an HTTP client would refuse to send them or tidy them up), and
//! the well-formed ones then need nothing more.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::proc::{rss_slope_mb_per_min, Watched};
use super::{CaseResult, SoakConfig};
use neon_sim::SimProcess;

/// The spec's limit from SIGTERM to exit.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// One HTTP exchange: the raw request bytes out, the status code and body back (`None` when
/// the server closed without a status line). `half_close` shuts our sending side after the
/// bytes, which ends an incomplete request at once; a complete one must not do it, since
/// hyper then drops the connection, and the handler with it, before it answers.
pub fn exchange(addr: &str, raw: &[u8], half_close: bool) -> Result<(Option<u16>, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    // A server may answer and close before reading everything: a failed write is not an error.
    let _ = s.write_all(raw);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok());
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A well-formed request with a JSON body.
fn request(method: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// eyetrack against a fresh neon-sim with the control API on an ephemeral port and recordings
/// under `dir/rec`; returns the process and the API's HOST:PORT.
fn start_controlled(
    cfg: &SoakConfig,
    dir: &Path,
    r: &mut CaseResult,
    sample_every: Duration,
) -> Option<(SimProcess, Watched, String)> {
    let sim = match SimProcess::start(&cfg.neon_sim, &cfg.fixture, &[]) {
        Ok(s) => s,
        Err(e) => {
            r.check("neon-sim starts", false, e);
            return None;
        }
    };
    let args: Vec<String> = [
        "run",
        "-q",
        "--source",
        &sim.source(),
        "--control",
        "127.0.0.1:0",
        "--record-fps",
        "5",
        "--report",
        &dir.join("report.json").display().to_string(),
        "--record-root",
        &dir.join("rec").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let w = match Watched::start(&cfg.eyetrack, &args, sample_every) {
        Ok(w) => w,
        Err(e) => {
            r.check("eyetrack starts", false, e.to_string());
            return None;
        }
    };
    let line = w.wait_for_line("preview on http://", Duration::from_secs(30));
    let addr = line
        .as_deref()
        .and_then(|l| l.split("http://").nth(1))
        .map(|a| a.trim().trim_end_matches('/').to_owned());
    match addr {
        Some(a) => Some((sim, w, a)),
        None => {
            r.check(
                "the control API comes up",
                false,
                "no address line on stderr",
            );
            None
        }
    }
}

/// SIGTERM, the exit within the deadline, the one-line convention; returns the outcome.
fn stop_with_sigterm(r: &mut CaseResult, w: Watched) -> super::proc::Finished {
    w.signal("TERM");
    let t0 = Instant::now();
    let f = w.wait(Duration::from_secs(30));
    let took = t0.elapsed();
    r.figure("sigterm_to_exit_s", took.as_secs_f64());
    r.check(
        "SIGTERM: exits 0 within 2 s",
        f.success() && took < STOP_DEADLINE,
        format!("{} after {took:?}", f.outcome()),
    );
    let stray = f.stray_lines();
    r.check(
        "every stderr line is one `eyetrack: ...` line",
        stray.is_empty(),
        stray.join(" | "),
    );
    f
}

pub fn start_stop_cycles(cfg: &SoakConfig, dir: &Path, r: &mut CaseResult) {
    const CYCLES: usize = 50;
    let Some((_sim, w, addr)) = start_controlled(cfg, dir, r, Duration::from_millis(500)) else {
        return;
    };
    let mut failures = Vec::new();
    let mut baseline = None;
    let mut last = (0, 0, 0);
    let t0 = Instant::now();
    for i in 0..CYCLES {
        let steps = [
            (
                "start",
                request(
                    "POST",
                    "/recording/start",
                    &format!("{{\"name\":\"cycle-{i:02}\"}}"),
                ),
                201,
            ),
            (
                "event",
                request("POST", "/events", &format!("{{\"name\":\"mark {i}\"}}")),
                201,
            ),
            ("stop", request("POST", "/recording/stop", ""), 200),
        ];
        for (n, (what, raw, want)) in steps.into_iter().enumerate() {
            if n == 2 {
                // Record a little more than a second, so every recording holds frames.
                std::thread::sleep(Duration::from_millis(600));
            }
            match exchange(&addr, &raw, false) {
                Ok((Some(code), _)) if code == want => {}
                other => failures.push(format!("cycle {i} {what}: {other:?}")),
            }
        }
        // Between recordings: no encoder child, and the descriptor and thread counts of the
        // process after the first cycle are the ones every later cycle must come back to.
        std::thread::sleep(Duration::from_millis(200));
        let (fds, threads) = w.fds_and_threads();
        last = (fds, threads, w.children());
        if i == 0 {
            baseline = Some(last);
        }
    }
    r.figure("cycles", CYCLES);
    r.figure("cycles_seconds", t0.elapsed().as_secs_f64());
    r.check(
        "every start, event and stop answered as documented (201, 201, 200)",
        failures.is_empty(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
    );
    if let Some(b) = baseline {
        r.figure("fds_after_first_and_last", [b.0, last.0]);
        r.figure("threads_after_first_and_last", [b.1, last.1]);
        r.check(
            "no leaked descriptors, threads or child processes",
            last.0 <= b.0 && last.1 <= b.1 && last.2 == 0,
            format!("first cycle {b:?}, last {last:?} (fds, threads, children)"),
        );
    }
    let f = stop_with_sigterm(r, w);
    let slope = rss_slope_mb_per_min(&f.rss, f.wall_s / 2.0);
    r.figure("rss_slope_mb_per_min", slope);
    r.figure(
        "rss_max_mb",
        f.rss.iter().map(|s| s.1).max().unwrap_or(0) as f64 / 1_048_576.0,
    );
    r.check_recordings(&dir.join("rec"), CYCLES, true);
    let with_event = pipeline::record::verify::check_root(&dir.join("rec"))
        .unwrap_or_default()
        .iter()
        .filter(|f| f.end.as_deref() == Some("stopped"))
        .filter(|f| {
            pipeline::record::verify::csv_records(&f.dir.join("events.csv"))
                .map(|rows| rows.iter().any(|row| row.get(3) == Some("user")))
                .unwrap_or(false)
        })
        .count();
    r.check(
        "every recording stopped normally and holds its user event",
        with_event == CYCLES,
        format!("{with_event} of {CYCLES}"),
    );
}

pub fn malformed_requests(cfg: &SoakConfig, dir: &Path, r: &mut CaseResult) {
    let Some((_sim, mut w, addr)) = start_controlled(cfg, dir, r, Duration::ZERO) else {
        return;
    };
    let started = exchange(
        &addr,
        &request("POST", "/recording/start", r#"{"name":"before-junk"}"#),
        false,
    );
    r.check(
        "a recording runs while the junk arrives",
        matches!(started, Ok((Some(201), _))),
        format!("{started:?}"),
    );
    // Frames first (video starts at the device's next keyframe): a recording stopped before
    // its first frame is a different matter, not what this case is about.
    std::thread::sleep(Duration::from_secs(2));
    let huge_path = format!(
        "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "a".repeat(100_000)
    );
    let many_headers = format!(
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
        (0..2000)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let big_body = "x".repeat(1 << 20);
    let junk: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // (what, bytes, whether any answer at all is acceptable: raw junk may just be dropped)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("random bytes", junk, true),
        ("request line only, then close", b"GET /status HTTP/1.1\r\n".to_vec(), true),
        ("HTTP/0.9 style", b"GET /\r\n\r\n".to_vec(), true),
        ("100 KB path", huge_path.into_bytes(), false),
        ("2000 headers", many_headers.into_bytes(), false),
        (
            "non-UTF-8 path",
            b"GET /\xff\xfe\x00status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            true,
        ),
        (
            "Content-Length larger than the body",
            b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":".to_vec(),
            true,
        ),
        (
            "truncated JSON",
            request("POST", "/events", r#"{"name":"#),
            false,
        ),
        ("wrong JSON type", request("POST", "/events", r#"{"name":42}"#), false),
        ("1 MB body", request("POST", "/events", &big_body), false),
        (
            "path traversal in a folder name",
            request("POST", "/recording/start", r#"{"name":"../../escaped"}"#),
            false,
        ),
        ("unknown path", request("GET", "/../../etc/passwd", ""), false),
        ("wrong method", request("DELETE", "/status", ""), false),
        (
            "chunked garbage",
            b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nfoo\r\n".to_vec(),
            true,
        ),
    ];
    let mut bad = Vec::new();
    let mut answered = 0;
    for (what, raw, silence_ok) in &cases {
        match exchange(&addr, raw, *silence_ok) {
            Ok((Some(code), _)) if (400..500).contains(&code) => answered += 1,
            Ok((None, _)) if *silence_ok => {}
            other => bad.push(format!("{what}: {other:?}")),
        }
        if !w.is_running() {
            bad.push(format!("{what}: eyetrack is gone"));
            break;
        }
    }
    r.figure("requests", cases.len());
    r.figure("answered_4xx", answered);
    r.check(
        "every malformed request gets a 4xx (or, for bytes that are not HTTP, a closed connection)",
        bad.is_empty(),
        bad.join("; "),
    );
    let status = exchange(&addr, &request("GET", "/status", ""), false);
    r.check(
        "the API still answers afterwards",
        matches!(status, Ok((Some(200), _))),
        format!("{status:?}"),
    );
    let escaped =
        dir.join("escaped").exists() || dir.parent().is_some_and(|p| p.join("escaped").exists());
    r.check("nothing written outside the recording root", !escaped, "");
    let stopped = exchange(&addr, &request("POST", "/recording/stop", ""), false);
    r.check(
        "the recording stops normally",
        matches!(stopped, Ok((Some(200), _))),
        format!("{stopped:?}"),
    );
    stop_with_sigterm(r, w);
    r.check_recordings(&dir.join("rec"), 1, true);
}
