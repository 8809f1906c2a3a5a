//! neon-sim: a loopback Neon Companion that serves a recorded fixture the way the phone serves
//! its sensors (HTTP API, status WebSocket, RTSP over UDP or TCP, time echo), with fault flags.
//!
//! One timeline for the whole device ([`timeline`]); each RTSP session joins it where it is and
//! paces the fixture's packets by their recorded arrival times ([`session`]). Protocol facts are
//! from `shared/docs/neon-realtime-protocol.md` (checklist 10, "Loopback simulator").

pub mod config;
pub mod echo;
pub mod gate;
pub mod http;
pub mod rewrite;
pub mod rtsp;
pub mod session;
pub mod timeline;

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use pipeline::fixture::FixtureError;

pub use config::{ClockMode, SimConfig};
use session::Faults;
use timeline::{FixtureFacts, Timeline};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("fixture {path}: {source}")]
    Fixture {
        path: String,
        #[source]
        source: FixtureError,
    },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// A running simulator; dropping it does not stop the tasks (they end with the runtime).
pub struct SimHandle {
    pub http: SocketAddr,
    pub rtsp: SocketAddr,
    pub time_echo: SocketAddr,
    pub facts: Arc<FixtureFacts>,
    pub timeline: Arc<Timeline>,
}

impl SimHandle {
    /// The one startup line tests and scripts parse.
    pub fn ports_line(&self) -> String {
        format!(
            "neon-sim: http={} rtsp={} time_echo={} streams={} period_ms={}",
            self.http,
            self.rtsp,
            self.time_echo,
            self.facts
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            self.facts.period_ns / 1_000_000
        )
    }
}

/// Scans the fixture, binds the three ports and starts serving. Must run inside a tokio runtime.
pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
    let path = cfg.fixture.clone();
    let scan_path = path.clone();
    let facts = tokio::task::spawn_blocking(move || FixtureFacts::scan(&scan_path))
        .await
        .map_err(|e| SimError::Config(format!("fixture scan task: {e}")))?
        .map_err(|source| SimError::Fixture {
            path: path.display().to_string(),
            source,
        })?;
    let mut stalls = Vec::new();
    for s in &cfg.stalls {
        let idx = facts.stream_index(&s.stream).ok_or_else(|| {
            SimError::Config(format!(
                "--stall names stream '{}', the fixture has {}",
                s.stream,
                facts
                    .streams
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        stalls.push((idx, s.at));
    }
    if let (Some(every), Some(for_)) = (cfg.drop_every, cfg.drop_for) {
        if every <= for_ {
            return Err(SimError::Config(format!(
                "--drop-every {every:?} must be longer than --drop-for {for_:?}"
            )));
        }
    }
    if !(cfg.jitter.is_finite() && cfg.jitter >= 0.0) {
        return Err(SimError::Config(format!(
            "--jitter {} must be >= 0",
            cfg.jitter
        )));
    }
    let faults = Arc::new(Faults {
        loss_pct: cfg.loss,
        jitter_ms: cfg.jitter,
        seed: cfg.seed,
        stalls,
        garbage_every: cfg.garbage_every,
        tcp_no_interleaved_echo: cfg.tcp_no_interleaved_echo,
        tcp_stray_400_every: cfg.tcp_stray_400_every,
    });
    let bind = |port: u16, what: &'static str| {
        let addr = SocketAddr::V4(SocketAddrV4::new(cfg.bind, port));
        gate::bind(addr).map_err(|source| SimError::Bind { addr, what, source })
    };
    let http_l = bind(cfg.http_port, "HTTP")?;
    let rtsp_l = bind(cfg.rtsp_port, "RTSP")?;
    let echo_l = bind(cfg.time_echo_port, "time echo")?;
    let addr_of = |l: &tokio::net::TcpListener, what| {
        l.local_addr().map_err(|source| SimError::Bind {
            addr: SocketAddr::V4(SocketAddrV4::new(cfg.bind, 0)),
            what,
            source,
        })
    };
    let (http, rtsp, time_echo) = (
        addr_of(&http_l, "HTTP")?,
        addr_of(&rtsp_l, "RTSP")?,
        addr_of(&echo_l, "time echo")?,
    );

    let facts = Arc::new(facts);
    let timeline = Arc::new(Timeline::new(&facts, cfg.clock, cfg.r#loop));
    let (gate_tx, gate_rx) = gate::new_gate();

    let info = http::DeviceInfo {
        ip: cfg.bind.to_string(),
        rtsp_port: rtsp.port(),
        time_echo_port: time_echo.port(),
        // The microphone is no sensor of its own: it is the world URL's m=audio (doc 2.1).
        sensors: facts
            .streams
            .iter()
            .map(|s| s.name.clone())
            .filter(|n| n != "audio")
            .collect(),
    };
    let router = http::router(info, Arc::clone(&timeline), gate_rx.clone());
    tokio::spawn(gate::accept_loop(
        http_l,
        gate_rx.clone(),
        move |stream, _| {
            let svc = TowerToHyperService::new(router.clone());
            async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            }
        },
    ));

    let shared = Arc::new(rtsp::RtspShared {
        path: cfg.fixture.clone(),
        facts: Arc::clone(&facts),
        timeline: Arc::clone(&timeline),
        faults,
        ip: cfg.bind,
        port: rtsp.port(),
        sessions: AtomicU64::new(1),
    });
    tokio::spawn(gate::accept_loop(
        rtsp_l,
        gate_rx.clone(),
        move |stream, peer| rtsp::serve(stream, peer, Arc::clone(&shared)),
    ));

    let tl = Arc::clone(&timeline);
    tokio::spawn(gate::accept_loop(echo_l, gate_rx, move |stream, _| {
        echo::serve(stream, Arc::clone(&tl))
    }));

    if let (Some(at), Some(for_)) = (cfg.drop_at, cfg.drop_for) {
        let plan = gate::DropPlan {
            at,
            for_,
            every: cfg.drop_every,
            count: cfg.drop_count,
        };
        tokio::spawn(gate::run_drop(gate_tx, timeline.start, plan));
    } else {
        // keep the sender alive so watchers never see the gate vanish
        tokio::spawn(async move {
            gate_tx.closed().await;
        });
    }
    Ok(SimHandle {
        http,
        rtsp,
        time_echo,
        facts,
        timeline,
    })
}
