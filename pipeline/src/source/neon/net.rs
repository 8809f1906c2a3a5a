//! The live client's network thread: a current-thread tokio runtime running one retina RTSP
//! session per sensor, forwarding raw packets to the pipeline, and reconnecting after losing
//! the device (protocol doc 10 "Rust client" items 6-7).
//!
//! retina has no reconnect and no no-data timeout of its own (design.md), so both live here: a
//! session that ends or errors, or a world stream without RTP for [`WORLD_SILENCE`] (others:
//! [`OTHER_SILENCE`], the official client's liveness limit, doc 4.3), tears every session down
//! (retina sends TEARDOWN in the background, policy `Always`), and the client starts over from
//! `/api/status` and a fresh DESCRIBE (new SPS/PPS, SSRC and RTP base) with capped backoff
//! until it succeeds or the pipeline stops. Packets cross to the pipeline's acquire thread
//! through a bounded channel; when the pipeline falls that far behind, the oldest packet goes
//! (counted). retina sends no RTCP receiver reports (its docs: UDP has none), so neither do we.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_util::StreamExt;
use retina::client::{
    PacketItem, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, TeardownPolicy,
    Transport,
};
use tokio::sync::watch;

use super::assemble::{Sensor, StreamSetup};
use super::status;
use super::tcp_relay::{self, RelayStats};
use super::RtspTransport;
use crate::fixture::PacketKind;
use crate::streams::StreamSet;
use crate::time::MonoNanos;

/// No world RTP for this long means the device is gone (or stalled): reconnect.
pub(crate) const WORLD_SILENCE: Duration = Duration::from_secs(2);
/// Liveness limit of the other streams (eye events send keepalives every second or so).
pub(crate) const OTHER_SILENCE: Duration = Duration::from_secs(10);
/// Wait before the first reconnect attempt; doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between attempts. Well under the 2 s the plan allows: a refused connection
/// costs one SYN on the LAN, and frames should resume within a second of the device's return,
/// which is this wait plus the handshakes plus the wait for the device's next IDR.
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// How long closing waits for the first TEARDOWN attempt of each session.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);
const WATCHDOG_TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub(crate) struct NetConfig {
    pub device: super::addr::DeviceAddr,
    pub transport: RtspTransport,
    /// Limit of each HTTP request and each RTSP step (DESCRIBE, SETUP, PLAY).
    pub request_timeout: Duration,
    /// The optional streams to set up; the others get no session at all.
    pub streams: StreamSet,
}

/// A packet as retina hands it over (its buffer is moved, not copied).
pub(crate) enum NetPacket {
    Rtp(retina::rtp::ReceivedPacket),
    Rtcp(retina::rtcp::ReceivedCompoundPacket),
}

impl NetPacket {
    pub(crate) fn kind(&self) -> PacketKind {
        match self {
            NetPacket::Rtp(_) => PacketKind::Rtp,
            NetPacket::Rtcp(_) => PacketKind::Rtcp,
        }
    }

    /// The whole packet, header included.
    pub(crate) fn data(&self) -> &[u8] {
        match self {
            NetPacket::Rtp(p) => p.raw(),
            NetPacket::Rtcp(p) => p.raw(),
        }
    }
}

pub(crate) struct NetItem {
    /// Same `Arc` for every packet of one session: a new one tells the assembler to reset.
    pub setup: Arc<StreamSetup>,
    pub packet: NetPacket,
    pub arrival: MonoNanos,
}

/// State the network thread shares with the source.
pub(crate) struct Link {
    pub connected: AtomicBool,
    pub reconnects: AtomicU64,
    pub channel_drops: AtomicU64,
    /// What the TCP relays fixed up (`--rtsp-transport tcp` only).
    pub tcp: Arc<RelayStats>,
    last_error: Mutex<Option<String>>,
    stop: watch::Sender<bool>,
}

impl Link {
    fn new() -> Self {
        Link {
            connected: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            channel_drops: AtomicU64::new(0),
            tcp: Arc::default(),
            last_error: Mutex::new(None),
            stop: watch::Sender::new(false),
        }
    }

    pub(crate) fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Why the device was last lost (or the last reconnect attempt failed).
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_error(&self, e: String) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(e);
        }
    }
}

/// What the first connection found.
pub(crate) struct FirstConnect {
    pub setups: Vec<Arc<StreamSetup>>,
    pub device_name: Option<String>,
}

/// The running network thread.
pub(crate) struct NetThread {
    pub link: Arc<Link>,
    pub rx: Receiver<NetItem>,
    handle: Option<JoinHandle<()>>,
}

impl NetThread {
    /// Connects (status, DESCRIBE/SETUP/PLAY of every sensor) and returns once streaming, or
    /// with the first connection's error.
    pub(crate) fn start(
        cfg: NetConfig,
        channel_capacity: usize,
    ) -> Result<(NetThread, FirstConnect), String> {
        let (tx, rx) = crossbeam_channel::bounded(channel_capacity.max(1));
        let link = Arc::new(Link::new());
        let (first_tx, first_rx) = std::sync::mpsc::sync_channel(1);
        let outlet = Outlet {
            tx,
            rx: rx.clone(),
            link: Arc::clone(&link),
        };
        let handle = std::thread::Builder::new()
            .name("neon-net".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = first_tx.send(Err(format!("cannot start tokio: {e}")));
                        return;
                    }
                };
                rt.block_on(run(cfg, outlet, first_tx));
            })
            .map_err(|e| format!("cannot start the network thread: {e}"))?;
        match first_rx.recv() {
            Ok(Ok(first)) => Ok((
                NetThread {
                    link,
                    rx,
                    handle: Some(handle),
                },
                first,
            )),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let _ = handle.join();
                Err("the network thread ended before connecting".into())
            }
        }
    }
}

impl Drop for NetThread {
    /// Stops streaming and waits for the TEARDOWNs (bounded by [`TEARDOWN_WAIT`]).
    fn drop(&mut self) {
        self.link.request_stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The sending end of the packet channel, with drop-oldest when full.
#[derive(Clone)]
struct Outlet {
    tx: Sender<NetItem>,
    /// A receiver too, to take the oldest item out when the channel is full.
    rx: Receiver<NetItem>,
    link: Arc<Link>,
}

impl Outlet {
    fn send(&self, item: NetItem) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) => {
                if self.rx.try_recv().is_ok() {
                    self.link.channel_drops.fetch_add(1, Ordering::Relaxed);
                }
                if self.tx.try_send(item).is_err() {
                    self.link.channel_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Only when the source is gone, which also stops this thread.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

struct Connection {
    sessions: Vec<(Arc<StreamSetup>, Session<retina::client::Playing>)>,
    group: Arc<SessionGroup>,
    device_name: Option<String>,
}

async fn run(
    cfg: NetConfig,
    outlet: Outlet,
    first_tx: std::sync::mpsc::SyncSender<Result<FirstConnect, String>>,
) {
    let link = Arc::clone(&outlet.link);
    let mut stop = link.stop.subscribe();
    let mut conn = match connect(&cfg, &link.tcp).await {
        Ok(c) => {
            let first = FirstConnect {
                setups: c.sessions.iter().map(|(s, _)| Arc::clone(s)).collect(),
                device_name: c.device_name.clone(),
            };
            link.connected.store(true, Ordering::Relaxed);
            if first_tx.send(Ok(first)).is_err() {
                return;
            }
            c
        }
        Err(e) => {
            let _ = first_tx.send(Err(e));
            return;
        }
    };
    loop {
        let group = Arc::clone(&conn.group);
        let reason = stream(conn, &outlet, &mut stop).await;
        if link.stopping() {
            let _ = tokio::time::timeout(TEARDOWN_WAIT, group.await_teardown()).await;
            return;
        }
        link.connected.store(false, Ordering::Relaxed);
        tracing::warn!(reason = %reason, "lost the device; reconnecting");
        link.set_error(reason);
        let lost_at = tokio::time::Instant::now();
        let mut attempts = 0u32;
        let mut backoff = BACKOFF_START;
        conn = loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let attempt = tokio::select! {
                r = connect(&cfg, &link.tcp) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            attempts += 1;
            match attempt {
                Ok(c) => {
                    tracing::info!(
                        after_ms = lost_at.elapsed().as_millis() as u64,
                        attempts,
                        "reconnected to the device"
                    );
                    link.reconnects.fetch_add(1, Ordering::Relaxed);
                    link.connected.store(true, Ordering::Relaxed);
                    break c;
                }
                Err(e) => {
                    link.set_error(e);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        };
    }
}

/// Streams until a session fails, a stream falls silent, or stop; returns why it ended. The
/// sessions are dropped on return, which starts their TEARDOWN.
async fn stream(conn: Connection, outlet: &Outlet, stop: &mut watch::Receiver<bool>) -> String {
    let start = MonoNanos::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut watched = Vec::with_capacity(conn.sessions.len());
    for (setup, session) in conn.sessions {
        let last = Arc::new(AtomicU64::new(start.0));
        let limit = if setup.sensor == Sensor::World {
            WORLD_SILENCE
        } else {
            OTHER_SILENCE
        };
        watched.push((setup.sensor, limit, Arc::clone(&last)));
        tasks.spawn(pump(session, setup, outlet.clone(), last));
    }
    let mut tick = tokio::time::interval(WATCHDOG_TICK);
    let reason = loop {
        tokio::select! {
            ended = tasks.join_next() => {
                break match ended {
                    Some(Ok(reason)) => reason,
                    Some(Err(e)) => format!("a session task failed: {e}"),
                    None => "no sessions".into(),
                };
            }
            _ = tick.tick() => {
                let now = MonoNanos::now();
                let silent = watched.iter().find(|(_, limit, last)| {
                    now.since(MonoNanos(last.load(Ordering::Relaxed))) > limit.as_nanos() as u64
                });
                if let Some((sensor, limit, _)) = silent {
                    break format!("no RTP on the {} stream for {} s", sensor.name(), limit.as_secs_f64());
                }
            }
            _ = stop.wait_for(|s| *s) => break "stopped".into(),
        }
    };
    tasks.shutdown().await;
    reason
}

/// Forwards one session's packets until it ends; returns why.
async fn pump(
    mut session: Session<retina::client::Playing>,
    setup: Arc<StreamSetup>,
    outlet: Outlet,
    last_rtp: Arc<AtomicU64>,
) -> String {
    let name = setup.sensor.name();
    loop {
        let packet = match session.next().await {
            Some(Ok(PacketItem::Rtp(p))) => {
                last_rtp.store(MonoNanos::now().0, Ordering::Relaxed);
                NetPacket::Rtp(p)
            }
            Some(Ok(PacketItem::Rtcp(p))) => NetPacket::Rtcp(p),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return format!("{name} session: {e}"),
            None => return format!("{name} session ended"),
        };
        outlet.send(NetItem {
            setup: Arc::clone(&setup),
            packet,
            arrival: MonoNanos::now(),
        });
    }
}

/// `/api/status`, then DESCRIBE/SETUP/PLAY of each DIRECT sensor the device lists.
async fn connect(cfg: &NetConfig, tcp: &Arc<RelayStats>) -> Result<Connection, String> {
    let (device, timeout) = (cfg.device.clone(), cfg.request_timeout);
    let status = tokio::task::spawn_blocking(move || status::fetch(&device, timeout))
        .await
        .map_err(|e| format!("status request: {e}"))?
        .map_err(|e| e.to_string())?;
    if status.url(Sensor::World).is_none() {
        return Err(format!(
            "{} lists no connected DIRECT world sensor in /api/status",
            cfg.device
        ));
    }
    let group = Arc::new(SessionGroup::default());
    let mut sessions = Vec::with_capacity(Sensor::ALL.len());
    for sensor in Sensor::ALL {
        if !sensor.wanted(&cfg.streams) {
            continue;
        }
        let Some(url) = status.url(sensor) else {
            // Asked for explicitly (off by default): say so rather than record nothing.
            if matches!(sensor, Sensor::Eyes) {
                return Err(format!(
                    "{} lists no connected DIRECT eyes sensor in /api/status (--eyes on)",
                    cfg.device
                ));
            }
            continue;
        };
        let opened = tokio::time::timeout(
            // DESCRIBE, SETUP and PLAY: three round trips.
            cfg.request_timeout * 3,
            open_session(sensor, url, cfg.transport, &group, tcp, cfg.request_timeout),
        )
        .await
        .map_err(|_| format!("{url}: no answer within {:?}", cfg.request_timeout * 3))??;
        sessions.push(opened);
    }
    Ok(Connection {
        sessions,
        group,
        device_name: status.device_name,
    })
}

async fn open_session(
    sensor: Sensor,
    url: &str,
    transport: RtspTransport,
    group: &Arc<SessionGroup>,
    tcp: &Arc<RelayStats>,
    timeout: Duration,
) -> Result<(Arc<StreamSetup>, Session<retina::client::Playing>), String> {
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{url}: {what}: {e}");
    let mut parsed = url::Url::parse(url).map_err(|e| err("bad URL", &e))?;
    if transport == RtspTransport::Tcp {
        // The phone's TCP quirks (module doc of tcp_relay): retina talks to the relay.
        parsed = tcp_relay::start(&parsed, Arc::clone(tcp), timeout)
            .await
            .map_err(|e| err("TCP relay", &e))?;
    }
    let options = SessionOptions::default()
        .user_agent(format!("eyetrack/{}", env!("CARGO_PKG_VERSION")))
        .teardown(TeardownPolicy::Always)
        .session_group(Arc::clone(group));
    let mut session = Session::describe(parsed, options)
        .await
        .map_err(|e| err("DESCRIBE", &e))?;
    let setup = StreamSetup::from_sdp(sensor, session.sdp()).map_err(|e| err("SDP", &e))?;
    let index = match sensor {
        Sensor::World | Sensor::Eyes => session.streams().iter().position(|s| s.media() == "video"),
        Sensor::Audio => {
            let i = session.streams().iter().position(|s| s.media() == "audio");
            if i.is_none() {
                // Doc 4.2: a world SDP without m=audio means the microphone is off.
                return Err(format!(
                    "{url}: the world SDP has no audio media (is the microphone on in the \
                     Companion app?) (--audio on)"
                ));
            }
            i
        }
        _ => (!session.streams().is_empty()).then_some(0),
    }
    .ok_or_else(|| format!("{url}: the SDP has no stream to set up"))?;
    let transport = match transport {
        RtspTransport::Udp => Transport::Udp(Default::default()),
        RtspTransport::Tcp => Transport::Tcp(Default::default()),
    };
    session
        .setup(index, SetupOptions::default().transport(transport))
        .await
        .map_err(|e| err("SETUP", &e))?;
    let playing = session
        .play(PlayOptions::default())
        .await
        .map_err(|e| err("PLAY", &e))?;
    Ok((Arc::new(setup), playing))
}
