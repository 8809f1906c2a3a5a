//! The device's HTTP API (protocol doc 2 and 3): `/api/status` with Phone, Hardware and one
//! DIRECT Sensor per fixture stream, recording start/stop/cancel with state, events, and the
//! `/api/status` WebSocket that pushes those components after connect. Every reply, errors
//! included, is JSON with `Content-Type: application/json` (the official client parses the body
//! before looking at the status).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::gate::{closed_after, GateRx};
use super::timeline::Timeline;

/// What `/api/status` describes, fixed once the ports are known.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ip: String,
    pub rtsp_port: u16,
    pub time_echo_port: u16,
    pub sensors: Vec<String>,
}

struct Recording {
    id: String,
    started_ns: i64,
}

pub struct HttpState {
    info: DeviceInfo,
    timeline: Arc<Timeline>,
    recording: Mutex<Option<Recording>>,
    /// Components pushed to every open WebSocket (Recording and Event updates).
    updates: broadcast::Sender<String>,
    gate: GateRx,
}

impl DeviceInfo {
    pub fn phone(&self) -> Value {
        json!({"model": "Phone", "data": {
            "battery_level": 87, "battery_state": "OK",
            "device_id": "5e1f0c0ffee00042", "device_name": "Neon Companion (neon-sim)",
            "ip": self.ip, "memory": 42_000_000_000u64, "memory_state": "OK",
            "time_echo_port": self.time_echo_port,
        }})
    }

    pub fn hardware(&self) -> Value {
        json!({"model": "Hardware", "data": {
            "version": "2.0", "module_serial": "neon-sim", "glasses_serial": "-1",
            "world_camera_serial": "-1", "frame_name": "simulated",
        }})
    }

    pub fn sensors_json(&self) -> Vec<Value> {
        self.sensors
            .iter()
            .map(|name| {
                json!({"model": "Sensor", "data": {
                    "sensor": name, "conn_type": "DIRECT", "connected": true,
                    "ip": self.ip, "port": self.rtsp_port, "protocol": "rtsp",
                    "params": format!("camera={name}&audioenable=on"), "stream_error": false,
                }})
            })
            .collect()
    }

    pub fn components(&self) -> Vec<Value> {
        let mut v = vec![self.phone(), self.hardware()];
        v.extend(self.sensors_json());
        v
    }
}

pub fn router(info: DeviceInfo, timeline: Arc<Timeline>, gate: GateRx) -> Router {
    let (updates, _) = broadcast::channel(64);
    let state = Arc::new(HttpState {
        info,
        timeline,
        recording: Mutex::new(None),
        updates,
        gate,
    });
    Router::new()
        .route("/api/status", get(status))
        .route("/api/recording:start", post(recording_start))
        .route("/api/recording:stop_and_save", post(recording_stop))
        .route("/api/recording:cancel", post(recording_cancel))
        .route("/api/event", post(event))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not found") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .with_state(state)
}

fn ok(result: Value) -> Response {
    Json(json!({"message": "Success", "result": result})).into_response()
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({"message": message, "result": null}))).into_response()
}

fn recording_component(action: &str, id: &str, duration_ns: i64) -> String {
    json!({"model": "Recording", "data": {
        "action": action, "id": id, "message": "", "rec_duration_ns": duration_ns,
    }})
    .to_string()
}

/// GET returns the status list; the same path upgraded to a WebSocket streams components.
async fn status(
    State(st): State<Arc<HttpState>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => ws.on_upgrade(move |socket| status_socket(socket, st)),
        Err(_) => ok(Value::Array(st.info.components())),
    }
}

async fn status_socket(mut socket: WebSocket, st: Arc<HttpState>) {
    let epoch = st.gate.borrow().epoch;
    let closed = closed_after(st.gate.clone(), epoch);
    tokio::pin!(closed);
    let mut updates = st.updates.subscribe();
    for c in st.info.components() {
        if socket
            .send(Message::Text(c.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    loop {
        tokio::select! {
            _ = &mut closed => return,
            u = updates.recv() => match u {
                Ok(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn recording_start(State(st): State<Arc<HttpState>>) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    {
        let Ok(mut rec) = st.recording.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state lock poisoned");
        };
        if rec.is_some() {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot start recording, already recording",
            );
        }
        *rec = Some(Recording {
            id: id.clone(),
            started_ns: st.timeline.device_now_ns(),
        });
    }
    let _ = st.updates.send(recording_component("START", &id, 0));
    ok(json!({"id": id}))
}

/// The running recording, or the error message for "not recording".
fn take_recording(st: &HttpState) -> Result<Recording, &'static str> {
    let Ok(mut rec) = st.recording.lock() else {
        return Err("state lock poisoned");
    };
    rec.take().ok_or("Cannot stop recording, not recording")
}

async fn recording_stop(State(st): State<Arc<HttpState>>) -> Response {
    let rec = match take_recording(&st) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::INTERNAL_SERVER_ERROR, msg),
    };
    let duration = st.timeline.device_now_ns() - rec.started_ns;
    let _ = st
        .updates
        .send(recording_component("STOP", &rec.id, duration));
    let _ = st
        .updates
        .send(recording_component("SAVE", &rec.id, duration));
    ok(json!({"id": rec.id, "rec_duration_ns": duration}))
}

async fn recording_cancel(State(st): State<Arc<HttpState>>) -> Response {
    let rec = match take_recording(&st) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::INTERNAL_SERVER_ERROR, msg),
    };
    let duration = st.timeline.device_now_ns() - rec.started_ns;
    let _ = st
        .updates
        .send(recording_component("DISCARD", &rec.id, duration));
    ok(json!({}))
}

/// `{"name", "timestamp"?}`: the device stamps on arrival when no timestamp is given.
async fn event(State(st): State<Arc<HttpState>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Body is not JSON");
    };
    let Some(name) = v.get("name").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "Event needs a name");
    };
    let timestamp = match v.get("timestamp") {
        None | Some(Value::Null) => st.timeline.device_now_ns(),
        Some(t) => match t.as_i64() {
            Some(t) => t,
            None => return error(StatusCode::BAD_REQUEST, "timestamp must be integer ns"),
        },
    };
    let recording_id = st
        .recording
        .lock()
        .ok()
        .and_then(|r| r.as_ref().map(|r| r.id.clone()));
    let _ = st.updates.send(
        json!({"model": "Event", "data": {
            "name": name, "recording_id": recording_id, "timestamp": timestamp,
        }})
        .to_string(),
    );
    ok(json!({"timestamp": timestamp, "recording_id": recording_id}))
}
