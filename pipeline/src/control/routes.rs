//! The endpoints: what each one reads or changes in the pipeline, how request bodies are
//! parsed and limited, and the JSON error every refusal carries (`{"error": "..."}`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use super::auth::{self, AuthPolicy};
use super::preview::PreviewFeed;
use super::status::StatusState;
use super::{metrics, PipelineHandles, MAX_BODY_BYTES};
use crate::record::{EventNotQueued, RecordError, Recorder, RecordingSummary};
use crate::time::{MonoNanos, UnixNanos};

/// The page at `/`: self-contained (no external scripts, styles or fonts).
pub const PAGE: &str = include_str!("page.html");

/// Longest user event name written to events.csv.
pub const MAX_EVENT_NAME: usize = 256;

/// Everything the handlers share.
pub struct AppState {
    pub status: StatusState,
    /// Recordings stopped through the API, for the run's report.
    pub summaries: Mutex<Vec<RecordingSummary>>,
    pub preview: PreviewFeed,
    pub auth: AuthPolicy,
    pub handles: PipelineHandles,
}

/// A refusal: status code plus a one-line reason, sent as `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"eyetrack\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body over {MAX_BODY_BYTES} bytes")
        } else {
            r.body_text()
        };
        ApiError::new(status, message)
    }
}

type ApiResult = Result<Response, ApiError>;

/// Parses a JSON body strictly (unknown fields refused); `None` for an empty body.
fn parse_body<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<T>, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .route("/preview.mjpeg", get(preview_mjpeg))
        .route("/preview.jpg", get(preview_jpg))
        .route("/recording/start", post(recording_start))
        .route("/recording/stop", post(recording_stop))
        .route("/events", post(event))
        .route("/preview/visible", post(preview_visible))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/config", get(config_get).merge(put(config_put)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(read_body_in_time))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// How long a client may take to send a request's body once its headers are in (bodies are
/// at most [`MAX_BODY_BYTES`], a few dozen bytes in practice).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the body (up to [`MAX_BODY_BYTES`]) within [`BODY_READ_TIMEOUT`] before any handler
/// runs, so a client that dribbles its body cannot hold a connection and a handler either; runs
/// after the token check, so an unauthorized body is never read.
async fn read_body_in_time(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    );
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = e.into_inner().is::<http_body_util::LengthLimitError>();
            return if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "the request body broke off")
            }
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
            .into_response()
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Serves until `stop` turns true; samples the status rates once a second meanwhile.
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            state.status.set_error(format!("control API: {e}"));
            return;
        }
    };
    let sampler = {
        let state = Arc::clone(&state);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => state.status.sample(&state.handles),
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        })
    };
    let app = router(Arc::clone(&state));
    let mut deadline = stop.clone();
    // A client that stopped reading would hold a graceful shutdown forever: after the grace
    // period the runtime is dropped with the thread, which closes whatever is still open.
    tokio::select! {
        () = accept_loop(listener, app, stop) => {}
        _ = async {
            let _ = deadline.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
    }
    let _ = sampler.await;
}

/// How long open connections get to finish once the server is asked to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(750);

/// How long a client may take to send a request's headers, from connecting (or from the end
/// of the previous response on a kept-alive connection). A client that connects and sends
/// nothing, or dribbles a header a byte at a time, is disconnected after this, so with
/// `--control-allow-remote` nobody on the network can hold the server's connections open
/// (slowloris). Streaming replies (the MJPEG preview) are not affected: the limit applies
/// only while a request head is awaited. hyper has such a limit but applies it only with a
/// timer, which `axum::serve` does not give it; so the server sets up its connections here.
/// 20 s rather than less because the same limit closes an idle kept-alive connection, and
/// clients that reuse pooled connections without retrying (ureq keeps them 15 s) must not find
/// theirs closed under them.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Connections served at once; one more is closed at accept (a browser opens about six).
pub const MAX_CONNECTIONS: usize = 64;

/// Accepts connections until `stop`, each served by hyper's HTTP/1 with
/// [`HEADER_READ_TIMEOUT`]; then asks open connections to finish and waits for them.
async fn accept_loop(listener: tokio::net::TcpListener, app: Router, stop: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    let mut stopped = stop.clone();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => r,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: wait a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        if conns.len() >= MAX_CONNECTIONS {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        conns.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            let asked_to_stop = tokio::select! {
                _ = conn.as_mut() => false,
                r = stop.wait_for(|s| *s) => r.is_ok(),
            };
            if asked_to_stop {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        });
    }
    while conns.join_next().await.is_some() {}
}

async fn page() -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(PAGE),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

async fn status(State(s): State<Arc<AppState>>) -> Response {
    Json(s.status.report(&s.handles)).into_response()
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> ApiResult {
    let text = metrics::render(&s).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics encoding: {e}"),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

async fn preview_mjpeg(State(s): State<Arc<AppState>>) -> Response {
    s.preview.mjpeg()
}

async fn preview_jpg(State(s): State<Arc<AppState>>) -> Response {
    s.preview.one_jpeg(Duration::from_secs(3)).await
}

fn recorder(s: &AppState) -> Result<Arc<Recorder>, ApiError> {
    s.handles.recorder.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "this run does not record: start eyetrack with --record-root DIR",
        )
    })
}

/// Maps a recorder refusal to a status: the caller's fault (400, 409) or ours (500, and it
/// becomes the status's last error).
fn record_error(s: &AppState, e: RecordError) -> ApiError {
    let status = match &e {
        RecordError::BadName(_) => StatusCode::BAD_REQUEST,
        RecordError::AlreadyRecording(_)
        | RecordError::NotRecording
        | RecordError::FolderExists(_) => StatusCode::CONFLICT,
        _ => {
            s.status.set_error(e.to_string());
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    ApiError::new(status, e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Folder name under the recording root (default `rec-<UTC time>`).
    name: Option<String>,
}

async fn recording_start(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let name = parse_body::<StartBody>(body)?.and_then(|b| b.name);
    let rec = recorder(&s)?;
    let frames_before = s.handles.counters.snapshot().record_frames;
    // Start opens files and the encoder: blocking work, off the server's thread.
    let started = {
        let rec = Arc::clone(&rec);
        tokio::task::spawn_blocking(move || rec.start_named(name.as_deref()))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let dir = started.map_err(|e| record_error(&s, e))?;
    s.status.recording_started(frames_before);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "recording": true, "folder": dir })),
    )
        .into_response())
}

async fn recording_stop(State(s): State<Arc<AppState>>) -> ApiResult {
    let rec = recorder(&s)?;
    let stopped = tokio::task::spawn_blocking(move || rec.stop())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let summary = stopped.map_err(|e| record_error(&s, e))?;
    let body = json!({
        "recording": false,
        "folder": summary.dir,
        "frames": summary.counts.frames,
        "end": summary.end,
        "summary": summary,
    });
    if let Ok(mut all) = s.summaries.lock() {
        all.push(summary);
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    name: String,
}

/// The stream's device time now: the newest preview frame's device time carried forward by
/// the host monotonic time since its capture. Over seconds both clocks tick at the same rate;
/// the frame's device time itself comes from the RTCP sender-report mapping (protocol doc
/// section 5). `None` before the first frame.
fn device_time_now(s: &AppState) -> Option<UnixNanos> {
    let (_, meta) = s.handles.latest.get()?;
    let since = MonoNanos::now().since(meta.capture_mono);
    Some(
        meta.device_time
            .add_ns(i64::try_from(since).unwrap_or(i64::MAX)),
    )
}

async fn event(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let Some(EventBody { name }) = parse_body::<EventBody>(body)? else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body must be {\"name\": \"...\"}",
        ));
    };
    if name.is_empty() || name.len() > MAX_EVENT_NAME {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("event name must be 1..={MAX_EVENT_NAME} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "event name contains a control character",
        ));
    }
    let rec = recorder(&s)?;
    if rec.active().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            EventNotQueued::NotRecording.to_string(),
        ));
    }
    let device_time = device_time_now(&s);
    rec.event("user", name.clone(), device_time.map(|t| t.0))
        .map_err(event_refused)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": name,
            "device_time_ns": device_time.map(|t| t.0),
            "folder": rec.active(),
        })),
    )
        .into_response())
}

/// An event the recorder did not take: 409 if the recording ended meanwhile, else 503 with
/// `Retry-After` (the CSV queue is full behind a slow disk, or its writer is gone), so a
/// client knows the event is not in events.csv.
fn event_refused(e: EventNotQueued) -> ApiError {
    let status = match e {
        EventNotQueued::NotRecording => StatusCode::CONFLICT,
        EventNotQueued::QueueFull | EventNotQueued::WriterGone => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VisibleBody {
    visible: bool,
}

async fn preview_visible(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Some(VisibleBody { visible }) = parse_body::<VisibleBody>(body)? else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body must be {\"visible\": true|false}",
        ));
    };
    s.handles
        .control
        .preview_visible
        .store(visible, Ordering::Relaxed);
    Ok(Json(json!({ "preview_visible": visible })).into_response())
}

async fn pause(State(s): State<Arc<AppState>>) -> Response {
    s.handles.control.paused.store(true, Ordering::Relaxed);
    Json(json!({ "state": "paused" })).into_response()
}

async fn resume(State(s): State<Arc<AppState>>) -> Response {
    s.handles.control.paused.store(false, Ordering::Relaxed);
    Json(json!({ "state": "running" })).into_response()
}

/// `GET /config`: the options that can change while running (see [`crate::live_config`]).
async fn config_get(State(s): State<Arc<AppState>>) -> ApiResult {
    match s.handles.control.live.get() {
        Some(v) => {
            let mut j = v.to_json();
            crate::live_config::streams_json(&s.handles.control.streams, &mut j);
            Ok(Json(j).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this pipeline was started without run-time configuration",
        )),
    }
}

/// `PUT /config`: changes some of them (a JSON object of the fields to change, all or none);
/// the preview follows at its next frame, recording from its next start. A refusal is a 400
/// naming the field.
async fn config_put(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let Some(patch) = parse_body::<serde_json::Value>(body)? else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "body must be a JSON object of fields to change: {}",
                crate::live_config::KEYS.join(", ")
            ),
        ));
    };
    let control = &s.handles.control;
    let v = control
        .live
        .apply(&patch, &control.streams)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut j = v.to_json();
    crate::live_config::streams_json(&control.streams, &mut j);
    Ok(Json(j).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::{Control, LatestPreview};
    use crate::frame::PixelFormat;
    use crate::profile::{Counters, StageProfile};
    use crate::record::RecordConfig;
    use crate::source::SourceInfo;

    /// `POST /events` while the recorder's CSV queue is full (a disk that stopped answering):
    /// 503 with Retry-After and the event counted, never 201 for an event that is not in
    /// events.csv. The handler, the recorder and its writer are the real ones; only the queue
    /// in front of the writer is swapped for a full one that nobody drains.
    #[tokio::test(flavor = "current_thread")]
    async fn an_event_that_cannot_be_queued_gets_503_not_201() {
        let root = tempfile::tempdir().unwrap();
        let mut cfg = RecordConfig::new(root.path().to_owned());
        cfg.fsync_every = 0;
        cfg.prepare().unwrap();
        let control = Arc::new(Control::default());
        let counters = Arc::new(Counters::default());
        let (mut rec, threads) = Recorder::spawn(
            cfg,
            (320, 240),
            30.0,
            Arc::clone(&control),
            Arc::clone(&counters),
            StageProfile::new(false),
            false,
        )
        .unwrap();
        rec.start().unwrap();
        let latest = Arc::new(LatestPreview::default());
        let preview =
            super::super::preview::PreviewEncoder::start(Arc::clone(&latest), 30.0).unwrap();
        let state = |rec: &Arc<Recorder>, preview: &super::super::preview::PreviewEncoder| {
            Arc::new(AppState {
                status: StatusState::new(),
                summaries: Mutex::new(Vec::new()),
                preview: preview.feed(),
                auth: AuthPolicy::new(None, "127.0.0.1:1".parse().unwrap()),
                handles: PipelineHandles {
                    control: Arc::clone(&control),
                    counters: Arc::clone(&counters),
                    latest: Arc::clone(&latest),
                    recorder: Some(Arc::clone(rec)),
                    source: SourceInfo {
                        kind: "test".into(),
                        width: 320,
                        height: 240,
                        fps: 30.0,
                        format: PixelFormat::I420,
                        tiled: false,
                        duration_s: None,
                    },
                    phases: None,
                },
            })
        };
        let post = |s: Arc<AppState>, name: &str| {
            let body = Bytes::from(format!("{{\"name\": \"{name}\"}}"));
            async move {
                match event(State(s), Ok(body)).await {
                    Ok(r) => r,
                    Err(e) => e.into_response(),
                }
            }
        };

        let ok = post(state(&rec, &preview), "accepted").await;
        assert_eq!(ok.status(), StatusCode::CREATED);

        let (full_tx, full_rx) = crossbeam_channel::bounded(1);
        let real = Arc::get_mut(&mut rec)
            .expect("only the test holds the recorder")
            .swap_csv_queue(full_tx.clone());
        let filler = crate::record::csv_files::CsvMsg::Sync;
        full_tx.try_send(filler).unwrap();
        let refused = post(state(&rec, &preview), "refused").await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            refused.headers().get(header::RETRY_AFTER).unwrap(),
            HeaderValue::from_static("1")
        );
        assert_eq!(counters.snapshot().record_events_dropped, 1);
        // The writer gone altogether: still 503, still counted.
        drop(full_rx);
        let gone = post(state(&rec, &preview), "gone").await;
        assert_eq!(gone.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(counters.snapshot().record_events_dropped, 2);

        Arc::get_mut(&mut rec).unwrap().swap_csv_queue(real);
        let summary = rec.stop().unwrap();
        let events = std::fs::read_to_string(summary.dir.join("events.csv")).unwrap();
        assert!(events.contains("accepted"), "{events}");
        assert!(
            !events.contains("refused") && !events.contains("gone"),
            "{events}"
        );
        preview.stop();
        let _ = rec.shutdown(threads);
    }
}
