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
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use super::auth::{self, AuthPolicy};
use super::preview::PreviewFeed;
use super::status::StatusState;
use super::{metrics, PipelineHandles, MAX_BODY_BYTES};
use crate::record::{RecordError, Recorder, RecordingSummary};
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `stop` turns true; samples the status rates once a second meanwhile.
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
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
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    // A client that stopped reading would hold a graceful shutdown forever: after the grace
    // period the runtime is dropped with the thread, which closes whatever is still open.
    tokio::select! {
        r = std::future::IntoFuture::into_future(server) => {
            if let Err(e) = r {
                state.status.set_error(format!("control API: {e}"));
            }
        }
        _ = async {
            let _ = deadline.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
    }
    let _ = sampler.await;
}

/// How long open connections get to finish once the server is asked to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(750);

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
            "not recording: events go into a recording's events.csv",
        ));
    }
    let device_time = device_time_now(&s);
    rec.event("user", name.clone(), device_time.map(|t| t.0));
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
