//! neon-sim: a loopback Neon Companion that serves a recorded fixture the way the phone serves
//! its sensors (HTTP API, status WebSocket, RTSP over UDP or TCP, time echo), with fault flags.
//!
//! One timeline for the whole device ([`timeline`]); each RTSP session joins it where it is and
//! paces the fixture's packets by their recorded arrival times ([`session`]). Protocol facts are
//! from `shared/docs/neon-realtime-protocol.md` (checklist 10, "Loopback simulator").
//!
//! A crate of its own because both the pipeline's end-to-end tests and the harness need a
//! device, not each other: the binary `neon-sim` serves a fixture from the command line, and
//! [`LoopbackSim`] serves one inside a test process.

pub mod config;
pub mod echo;
pub mod gate;
pub mod http;
pub mod process;
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
pub use process::SimProcess;
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

// The binary's command line (`neon-sim FIXTURE [FLAGS]`), here so that a `LoopbackSim` takes
// exactly the flags the binary documents. The doc comment below is the binary's --help.
/// A loopback Neon Companion serving a recorded fixture (.etfx).
///
/// Prints `neon-sim: http=IP:PORT rtsp=IP:PORT time_echo=IP:PORT streams=... period_ms=N` once
/// it listens, then serves until killed. Every session joins one shared timeline (fixture start =
/// sim start); video sessions start at the next keyframe.
#[derive(clap::Parser, Debug)]
#[command(name = "neon-sim", version)]
pub struct Cli {
    #[command(flatten)]
    pub cfg: SimConfig,
}

/// A simulator in this process on ephemeral loopback ports, with a tokio runtime of its own:
/// for tests and for trying eyetrack from Rust without a device. Serves until dropped; dropping
/// it ends every session at once, as a device that vanishes does.
pub struct LoopbackSim {
    /// HOST:PORT of the HTTP API, the RTSP server and the time echo.
    pub http: SocketAddr,
    pub rtsp: SocketAddr,
    pub time_echo: SocketAddr,
    /// Length of one pass through the fixture (ms).
    pub period_ms: i64,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LoopbackSim {
    /// Serves `fixture` with the binary's `flags` (e.g. `["--loss", "2"]`); the three ports are
    /// ephemeral unless `flags` set them.
    pub fn start(fixture: &std::path::Path, flags: &[&str]) -> Result<LoopbackSim, SimError> {
        use clap::Parser;
        let mut argv: Vec<std::ffi::OsString> = vec!["neon-sim".into(), fixture.into()];
        for p in ["--http-port", "--rtsp-port", "--time-echo-port"] {
            argv.extend([p.into(), "0".into()]);
        }
        argv.extend(flags.iter().map(Into::into));
        let cli = Cli::try_parse_from(argv).map_err(|e| SimError::Config(e.to_string()))?;
        Self::with_config(cli.cfg)
    }

    /// Serves with a configuration built in code.
    pub fn with_config(cfg: SimConfig) -> Result<LoopbackSim, SimError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("neon-sim")
            .enable_all()
            .build()
            .map_err(|e| SimError::Config(format!("tokio runtime: {e}")))?;
        let h = runtime.block_on(start(cfg))?;
        Ok(LoopbackSim {
            http: h.http,
            rtsp: h.rtsp,
            time_echo: h.time_echo,
            period_ms: i64::try_from(h.facts.period_ns / 1_000_000).unwrap_or(i64::MAX),
            runtime: Some(runtime),
        })
    }

    /// `neon://` URL of this simulator, for `eyetrack run --source`.
    pub fn url(&self) -> String {
        format!("neon://{}", self.http)
    }
}

impl Drop for LoopbackSim {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }
}
