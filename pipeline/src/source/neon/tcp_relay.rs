//! `--rtsp-transport tcp` against a real phone: a loopback relay between retina and the device
//! that fills in a SETUP reply's missing `interleaved=` and drops stray RTSP replies.
//!
//! Why a relay: retina rejects a TCP SETUP reply without `interleaved=` and ends the session on
//! a response nobody asked for, and the phone (app 2.9.31) does both (protocol doc 4.3, official
//! client 1.9.0, PRs #89/#90). Rather than fork retina, each TCP session's RTSP connection runs
//! through this relay: requests pass unchanged (their CSeq noted), `$` frames pass unchanged,
//! a reply to a noted CSeq passes (a SETUP reply gains the channels the request asked for), and
//! anything else (a reply to no request, bytes that start no frame) is dropped, counted, and
//! the stream resyncs at the next `$` frame ([`crate::neon::interleaved`]).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::neon::interleaved::{self, Chunk, Splitter};

/// What the relays of one client fixed up, for the run report.
#[derive(Debug, Default)]
pub(crate) struct RelayStats {
    /// RTSP replies that answered no pending request (the phone's stray `400 Bad Request`).
    pub stray_responses: AtomicU64,
    /// Runs of bytes that started neither a `$` frame nor a reply (skipped to the next `$`).
    pub resyncs: AtomicU64,
    /// SETUP replies without `interleaved=`, given the channels the request asked for.
    pub assumed_interleaved: AtomicU64,
}

/// CSeq of each request in flight -> the channels a SETUP asked for (`None` for others).
type Pending = Arc<Mutex<HashMap<u32, Option<(u8, u8)>>>>;

/// Connects to the device behind `url` and returns the URL retina should use instead (the
/// relay's loopback port). The relay serves one connection and ends with it.
pub(crate) async fn start(
    url: &url::Url,
    stats: Arc<RelayStats>,
    timeout: Duration,
) -> Result<url::Url, String> {
    let host = url.host_str().ok_or("the RTSP URL has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port().unwrap_or(554);
    let device = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| format!("no TCP connection to {host}:{port} within {timeout:?}"))?
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(|e| format!("cannot open the TCP relay: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot open the TCP relay: {e}"))?;
    let mut relayed = url.clone();
    relayed
        .set_host(Some(&local.ip().to_string()))
        .map_err(|e| format!("cannot point the URL at the relay: {e}"))?;
    relayed
        .set_port(Some(local.port()))
        .map_err(|()| "cannot point the URL at the relay".to_string())?;
    tokio::spawn(async move {
        let Ok(Ok((client, _))) = tokio::time::timeout(timeout, listener.accept()).await else {
            return;
        };
        drop(listener);
        let _ = client.set_nodelay(true);
        let _ = device.set_nodelay(true);
        let (cr, cw) = client.into_split();
        let (dr, dw) = device.into_split();
        let pending = Pending::default();
        // Either side closing ends both directions (dropping the halves closes the sockets).
        tokio::select! {
            _ = upstream(cr, dw, Arc::clone(&pending)) => {}
            _ = downstream(dr, cw, pending, stats) => {}
        }
    });
    Ok(relayed)
}

/// Client -> device: bytes pass unchanged; each request's CSeq is noted first.
async fn upstream(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, pending: Pending) {
    let mut read = Vec::with_capacity(4096);
    let mut buf = Vec::with_capacity(4096);
    loop {
        read.clear();
        match from.read_buf(&mut read).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        buf.extend_from_slice(&read);
        let mut parsed = 0usize;
        while let Some(c) = Splitter::FROM_CLIENT.next(&buf[parsed..]) {
            if let Chunk::Message { head_len, .. } = c {
                note_request(&buf[parsed..parsed + head_len], &pending);
            }
            parsed += c.len();
        }
        buf.drain(..parsed);
        if buf.len() > interleaved::MAX_HEAD + interleaved::MAX_BODY {
            // Not RTSP: nothing more to learn from it, but it still goes through.
            buf.clear();
        }
        // After noting the CSeq: the reply cannot overtake its request.
        if to.write_all(&read).await.is_err() {
            return;
        }
    }
}

fn note_request(head: &[u8], pending: &Pending) {
    let head = interleaved::parse_head(head);
    let (None, Some(cseq)) = (head.status, head.cseq) else {
        return;
    };
    let channels = if head.method == "SETUP" {
        head.transport
            .as_deref()
            .and_then(interleaved::interleaved_channels)
    } else {
        None
    };
    if let Ok(mut p) = pending.lock() {
        p.insert(cseq, channels);
    }
}

/// Device -> client: frames and awaited replies pass; stray replies and junk are dropped.
async fn downstream(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    pending: Pending,
    stats: Arc<RelayStats>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut in_junk = false;
    loop {
        match from.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut used = 0usize;
        while let Some(c) = Splitter::FROM_SERVER.next(&buf[used..]) {
            let bytes = &buf[used..used + c.len()];
            match c {
                Chunk::Data { .. } => {
                    in_junk = false;
                    out.extend_from_slice(bytes);
                }
                Chunk::Message { head_len, .. } => {
                    in_junk = false;
                    let head = interleaved::parse_head(&bytes[..head_len]);
                    let awaited = head
                        .cseq
                        .and_then(|c| pending.lock().ok().and_then(|mut p| p.remove(&c)));
                    match awaited {
                        Some(channels) => {
                            let fixed = channels
                                .filter(|_| head.status.is_some_and(|s| (200..300).contains(&s)))
                                .and_then(|ch| {
                                    interleaved::add_interleaved(&bytes[..head_len], ch)
                                });
                            match fixed {
                                Some(h) => {
                                    stats.assumed_interleaved.fetch_add(1, Ordering::Relaxed);
                                    tracing::info!(
                                        "the SETUP reply names no interleaved channels; \
                                         assuming the requested ones"
                                    );
                                    out.extend_from_slice(&h);
                                    out.extend_from_slice(&bytes[head_len..]);
                                }
                                None => out.extend_from_slice(bytes),
                            }
                        }
                        None => {
                            let n = stats.stray_responses.fetch_add(1, Ordering::Relaxed);
                            if n == 0 {
                                tracing::warn!(
                                    status = head.status.unwrap_or(0),
                                    "dropped an RTSP reply to no request inside the \
                                     interleaved stream (the phone's stray 400; counted)"
                                );
                            }
                        }
                    }
                }
                Chunk::Junk { .. } => {
                    if !in_junk {
                        stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    }
                    in_junk = true;
                }
            }
            used += c.len();
        }
        buf.drain(..used);
        if !out.is_empty() {
            if to.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}
