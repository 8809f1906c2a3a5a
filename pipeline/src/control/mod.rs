//! The control HTTP API and browser preview (`eyetrack run --control ADDR`): binding policy,
//! the server's own thread and runtime, and the handles it shares with the running pipeline.
//!
//! The server runs on one thread with a current-thread tokio runtime (a handful of requests a
//! second and a few preview viewers need no more); JPEG encoding for the preview has its own
//! thread so a slow encode never stalls a request. Nothing here runs when `--control` is
//! absent, and with it the pipeline stages only gain the live per-phase totals
//! ([`crate::profile::LivePhases`]).
//!
//! Concerns, one file each: [`auth`] (bind policy, bearer token, Origin/Host checks),
//! [`routes`] (the endpoints and their JSON errors), [`status`] (what `/status` reports and
//! the 1 Hz sampler behind it), [`metrics`] (Prometheus exposition), [`preview`] (the MJPEG
//! stream and its encoder thread) and [`jpeg`] (planar frames into the JPEG encoder).

pub mod auth;
pub mod jpeg;
pub mod metrics;
pub mod preview;
pub mod routes;
pub mod status;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::coordinator::{Control, LatestPreview, RunningPipeline};
use crate::profile::{Counters, LivePhases};
use crate::record::{Recorder, RecordingSummary};
use crate::source::SourceInfo;

/// Largest request body any endpoint accepts (the JSON bodies are a few dozen bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Shortest bearer token accepted for a non-loopback bind (a guessable token on a network is
/// no protection).
pub const MIN_REMOTE_TOKEN_LEN: usize = 16;

/// How the control server is exposed.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    pub addr: SocketAddr,
    /// Explicit consent to listen on a non-loopback address (`--control-allow-remote`).
    pub allow_remote: bool,
    /// When set, every request needs `Authorization: Bearer <token>` (RFC 6750).
    pub token: Option<crate::cli::Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "control API: {addr} is not a loopback address; serving the network needs \
         --control-allow-remote and a token (--control-token or EYETRACK_CONTROL_TOKEN)"
    )]
    RemoteNotAllowed { addr: SocketAddr },
    #[error(
        "control API: {addr} is not a loopback address and no token is set (--control-token \
         or EYETRACK_CONTROL_TOKEN)"
    )]
    RemoteNeedsToken { addr: SocketAddr },
    #[error("control API: the token must be at least {MIN_REMOTE_TOKEN_LEN} characters")]
    WeakToken,
    #[error("control API: the token must be visible ASCII without spaces")]
    BadToken,
    #[error("control API: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("control API: cannot start its {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What the server reads and drives in the running pipeline.
#[derive(Clone)]
pub struct PipelineHandles {
    pub control: Arc<Control>,
    pub counters: Arc<Counters>,
    pub latest: Arc<LatestPreview>,
    pub recorder: Option<Arc<Recorder>>,
    pub source: SourceInfo,
    /// Present when the pipeline was started with [`crate::coordinator::PipelineConfig`]'s
    /// `live_phases`.
    pub phases: Option<Arc<LivePhases>>,
}

impl PipelineHandles {
    pub fn new(running: &RunningPipeline, phases: Option<Arc<LivePhases>>) -> Self {
        PipelineHandles {
            control: Arc::clone(running.control()),
            counters: Arc::clone(running.counters()),
            latest: Arc::clone(running.latest_preview()),
            recorder: running.recorder().cloned(),
            source: running.source_info().clone(),
            phases,
        }
    }
}

/// A listening socket, bound before the pipeline starts so a taken port fails the run before
/// anything streams.
pub struct BoundControl {
    listener: std::net::TcpListener,
    cfg: ControlConfig,
}

impl BoundControl {
    /// Checks the bind policy and the token, then binds.
    pub fn bind(cfg: ControlConfig) -> Result<Self, ControlError> {
        auth::check_bind_policy(&cfg)?;
        let listener =
            std::net::TcpListener::bind(cfg.addr).map_err(|source| ControlError::Bind {
                addr: cfg.addr,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ControlError::Bind {
                addr: cfg.addr,
                source,
            })?;
        Ok(BoundControl { listener, cfg })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> Result<SocketAddr, ControlError> {
        self.listener
            .local_addr()
            .map_err(|source| ControlError::Bind {
                addr: self.cfg.addr,
                source,
            })
    }

    /// Starts serving the pipeline behind `handles` on the server's own thread.
    pub fn serve(self, handles: PipelineHandles) -> Result<ControlServer, ControlError> {
        let addr = self.local_addr()?;
        let preview =
            preview::PreviewEncoder::start(Arc::clone(&handles.latest), handles.source.fps)
                .map_err(|source| ControlError::Start {
                    what: "preview encoder thread",
                    source,
                })?;
        let state = Arc::new(routes::AppState {
            status: status::StatusState::new(),
            summaries: Mutex::new(Vec::new()),
            preview: preview.feed(),
            auth: auth::AuthPolicy::new(self.cfg.token.clone(), addr),
            handles,
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ControlError::Start {
                what: "runtime",
                source,
            })?;
        let listener = self.listener;
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                runtime.block_on(routes::serve(listener, thread_state, stop_rx));
            })
            .map_err(|source| ControlError::Start {
                what: "thread",
                source,
            })?;
        Ok(ControlServer {
            addr,
            state,
            stop: stop_tx,
            thread: Some(thread),
            preview: Some(preview),
        })
    }
}

/// A serving control API; [`ControlServer::shutdown`] ends it.
pub struct ControlServer {
    addr: SocketAddr,
    state: Arc<routes::AppState>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    preview: Option<preview::PreviewEncoder>,
}

impl ControlServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last error the API saw (a failed start, a recording a fault ended).
    pub fn last_error(&self) -> Option<String> {
        self.state.status.last_error()
    }

    /// Stops serving (open preview streams end) and returns the recordings stopped through the
    /// API, for the run's report.
    pub fn shutdown(mut self) -> Vec<RecordingSummary> {
        self.stop_all();
        self.state
            .summaries
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    fn stop_all(&mut self) {
        let _ = self.stop.send(true);
        if let Some(p) = self.preview.take() {
            p.stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_all();
    }
}
