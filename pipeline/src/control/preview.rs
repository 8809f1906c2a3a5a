//! The browser preview's frames: one encoder thread that turns the newest display-ready frame
//! into a JPEG while anyone watches, and the MJPEG (`multipart/x-mixed-replace`) streams that
//! send it.
//!
//! Zero viewers cost nothing: the encoder sleeps on a condition variable until a stream
//! subscribes. With viewers it encodes each new preview frame once, whatever the number of
//! viewers, and every stream sends the same reference-counted bytes. A slow viewer skips to
//! the newest frame (a `watch` channel holds only that one), like the preview edge itself.
//! Output buffers are recycled once every stream has sent them, so steady streaming does not
//! allocate a buffer per frame (jpeg-encoder keeps small row buffers of its own per encode).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::jpeg;
use crate::coordinator::LatestPreview;
use crate::frame::Frame;

pub const BOUNDARY: &str = "frame";

/// One encoded preview frame as a multipart part.
#[derive(Clone, Debug)]
pub struct Part {
    /// Header, JPEG, CRLF.
    pub bytes: Bytes,
    /// Where the JPEG starts in `bytes`.
    pub jpeg_at: usize,
    /// Counts encoded frames, so a reader can tell a new frame from the one it has.
    pub seq: u64,
}

impl Part {
    pub fn jpeg(&self) -> Bytes {
        self.bytes
            .slice(self.jpeg_at..self.bytes.len().saturating_sub(2))
    }
}

#[derive(Debug, Default)]
pub struct PreviewStats {
    pub frames_encoded: AtomicU64,
    pub encode_ns: AtomicU64,
    pub encode_errors: AtomicU64,
    /// Output buffers allocated (flat while streaming: the rest are recycled).
    pub buffers_allocated: AtomicU64,
    pub bytes_encoded: AtomicU64,
}

struct Shared {
    viewers: AtomicUsize,
    stop: AtomicBool,
    tx: watch::Sender<Option<Part>>,
    wake: (Mutex<()>, Condvar),
    stats: PreviewStats,
}

/// The encoder thread; [`PreviewEncoder::stop`] ends it and every open stream.
pub struct PreviewEncoder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the HTTP side holds: subscribe a viewer, read the counters.
#[derive(Clone)]
pub struct PreviewFeed {
    shared: Arc<Shared>,
}

impl PreviewEncoder {
    /// Starts the (idle) encoder on `latest`, checking for a new frame at twice the source
    /// rate while anyone watches.
    pub fn start(latest: Arc<LatestPreview>, source_fps: f64) -> std::io::Result<Self> {
        let (tx, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            viewers: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            tx,
            wake: (Mutex::new(()), Condvar::new()),
            stats: PreviewStats::default(),
        });
        let fps = if source_fps.is_finite() && source_fps > 0.0 {
            source_fps
        } else {
            30.0
        };
        let poll = Duration::from_secs_f64((0.5 / fps).clamp(0.002, 0.05));
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("preview-jpeg".into())
                .spawn(move || encode_loop(&shared, &latest, poll))?
        };
        Ok(PreviewEncoder {
            shared,
            thread: Some(thread),
        })
    }

    pub fn feed(&self) -> PreviewFeed {
        PreviewFeed {
            shared: Arc::clone(&self.shared),
        }
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.1.notify_all();
        // Wakes every stream so it sees the stop flag and ends.
        self.shared.tx.send_replace(None);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PreviewEncoder {
    fn drop(&mut self) {
        self.halt();
    }
}

fn encode_loop(shared: &Shared, latest: &LatestPreview, poll: Duration) {
    // Recently published buffers, reclaimed when no stream holds them any more.
    let mut ring: VecDeque<Bytes> = VecDeque::with_capacity(4);
    let mut last_key = None;
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.viewers.load(Ordering::Relaxed) == 0 {
            let (lock, cv) = &shared.wake;
            if let Ok(g) = lock.lock() {
                if shared.viewers.load(Ordering::Relaxed) == 0
                    && !shared.stop.load(Ordering::Relaxed)
                {
                    let _ = cv.wait_timeout(g, Duration::from_millis(500));
                }
            }
            // A new viewer gets the current frame at once.
            last_key = None;
            continue;
        }
        if let Some((frame, meta)) = latest.get() {
            let key = (
                Arc::as_ptr(&frame) as usize,
                meta.camera_index,
                meta.received_mono,
            );
            if last_key != Some(key) {
                last_key = Some(key);
                seq += 1;
                publish(shared, &frame, &mut ring, seq);
            }
        }
        std::thread::sleep(poll);
    }
}

fn publish(shared: &Shared, frame: &Frame, ring: &mut VecDeque<Bytes>, seq: u64) {
    let stats = &shared.stats;
    let mut buf = match ring.front().map(Bytes::is_unique) {
        Some(true) => ring
            .pop_front()
            .and_then(|b| b.try_into_mut().ok())
            .unwrap_or_default(),
        _ => BytesMut::new(),
    };
    if buf.capacity() == 0 {
        stats.buffers_allocated.fetch_add(1, Ordering::Relaxed);
        buf.reserve(frame.width() * frame.height() / 2 + 256);
    }
    buf.clear();
    let t0 = Instant::now();
    match jpeg::encode_part(&frame.view(), &mut buf) {
        Ok(jpeg_at) => {
            stats
                .encode_ns
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            stats.frames_encoded.fetch_add(1, Ordering::Relaxed);
            stats
                .bytes_encoded
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            let bytes = buf.freeze();
            ring.push_back(bytes.clone());
            if ring.len() > 3 {
                ring.pop_front();
            }
            shared.tx.send_replace(Some(Part {
                bytes,
                jpeg_at,
                seq,
            }));
        }
        Err(_) => {
            stats.encode_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A subscribed viewer; dropping it (the client went away) lets the encoder idle again.
struct Viewer {
    shared: Arc<Shared>,
    rx: watch::Receiver<Option<Part>>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.shared.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Viewer {
    /// The next frame newer than the last one this viewer got; `None` once the server stops.
    async fn next(&mut self) -> Option<Part> {
        loop {
            if self.shared.stop.load(Ordering::Relaxed) || self.rx.changed().await.is_err() {
                return None;
            }
            if self.shared.stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(p) = self.rx.borrow_and_update().clone() {
                return Some(p);
            }
        }
    }
}

impl PreviewFeed {
    fn subscribe(&self) -> Viewer {
        self.shared.viewers.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.1.notify_all();
        // A new receiver has seen what is there (it may be old, encoded before the last
        // viewer left), so it waits for a fresh frame.
        let rx = self.shared.tx.subscribe();
        Viewer {
            shared: Arc::clone(&self.shared),
            rx,
        }
    }

    pub fn viewers(&self) -> usize {
        self.shared.viewers.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &PreviewStats {
        &self.shared.stats
    }

    /// `GET /preview.mjpeg`: an endless multipart stream of JPEGs at the preview rate.
    pub fn mjpeg(&self) -> Response {
        let viewer = self.subscribe();
        let stream = futures_util::stream::unfold(viewer, |mut v| async move {
            let part = v.next().await?;
            Some((Ok::<Bytes, Infallible>(part.bytes), v))
        });
        let mut resp = Body::from_stream(stream).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/x-mixed-replace; boundary=frame"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    /// `GET /preview.jpg`: the next preview frame as one JPEG (waits at most `timeout`).
    pub async fn one_jpeg(&self, timeout: Duration) -> Response {
        let mut viewer = self.subscribe();
        match tokio::time::timeout(timeout, viewer.next()).await {
            Ok(Some(part)) => (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                part.jpeg(),
            )
                .into_response(),
            _ => super::routes::ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no preview frame (paused, or the stream has not started)",
            )
            .into_response(),
        }
    }
}
