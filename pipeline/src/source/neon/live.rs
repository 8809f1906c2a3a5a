//! `--source neon://HOST[:PORT]`: the live Neon client as a pipeline [`Source`]. The network
//! thread ([`super::net`]) receives; this side, on the pipeline's acquire thread, assembles and
//! decodes, turns connection losses into `disconnected` / `reconnected` / `stream_gap` events
//! (events.csv) and the preview's `disconnected` flag, and publishes the counters.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use super::addr::DeviceAddr;
use super::assemble::{Assembler, DecodePolicy, LossPolicy, Sensor, NOMINAL_FPS};
use super::net::{NetConfig, NetThread};
use super::{FrameAccounting, RtspTransport};
use crate::decode::DecoderKind;
use crate::frame::PixelFormat;
use crate::profile::{Counters, StageProfile};
use crate::run_control::Control;
use crate::source::{Source, SourceError, SourceInfo, SourceItem};
use crate::streams::StreamSet;
use crate::time::{MonoNanos, UnixNanos};

pub use super::addr::DEFAULT_HTTP_PORT;

#[derive(Clone, Debug)]
pub struct NeonConfig {
    /// The device's HTTP API.
    pub device: DeviceAddr,
    pub transport: RtspTransport,
    pub decoder: DecoderKind,
    /// What the world stream does after packet loss.
    pub loss: LossPolicy,
    /// Decoding threads and the cheaper modes while nothing records (the decode toggles).
    pub decode: DecodePolicy,
    /// Stop after this much stream (device) time from the first frame.
    pub duration: Option<Duration>,
    /// Limit of each HTTP request and RTSP step.
    pub request_timeout: Duration,
    /// Packets that may wait between the network thread and the pipeline (about 1.5 s of the
    /// world stream at 1300 packets/s by default).
    pub channel_capacity: usize,
    /// Optional streams to set up (`--gaze`, `--imu`, `--events`, `--eyes`, `--audio`).
    pub streams: StreamSet,
}

impl NeonConfig {
    pub fn new(device: DeviceAddr) -> Self {
        NeonConfig {
            device,
            transport: RtspTransport::Udp,
            decoder: DecoderKind::default(),
            loss: LossPolicy::default(),
            decode: DecodePolicy::default(),
            duration: None,
            request_timeout: Duration::from_secs(3),
            channel_capacity: 2048,
            streams: StreamSet::default(),
        }
    }
}

/// How long the source waits on the channel before looking at the link state again.
const POLL: Duration = Duration::from_millis(100);
/// With `--duration`, a device that never comes back ends the run this long after the
/// duration would have (wall time), instead of waiting forever.
const DURATION_GRACE: Duration = Duration::from_secs(10);

pub struct NeonSource {
    net: NetThread,
    assembler: Assembler,
    info: SourceInfo,
    cfg: NeonConfig,
    accounting: FrameAccounting,
    counters: Option<Arc<Counters>>,
    control: Option<Arc<Control>>,
    /// Items to hand out before anything else (link events).
    pending: VecDeque<SourceItem>,
    was_connected: bool,
    /// Since when the device has been lost, and the last frame's device time then.
    lost: Option<(MonoNanos, Option<UnixNanos>)>,
    /// A reconnect happened; the next frame closes the gap with a `stream_gap` event.
    gap_open: Option<(MonoNanos, Option<UnixNanos>)>,
    last_frame: Option<(MonoNanos, UnixNanos)>,
    /// First frame: device time (for `--duration`) and host time (for the grace limit).
    first_frame: Option<(UnixNanos, MonoNanos)>,
    ended: bool,
}

impl NeonSource {
    /// Connects to the device and starts streaming; fails if the first connection fails.
    pub fn connect(cfg: NeonConfig) -> Result<Self, SourceError> {
        // Before any connection: a combination the decoder cannot follow is a config error.
        cfg.loss.check(cfg.decoder).map_err(SourceError::Config)?;
        let (net, first) = NetThread::start(
            NetConfig {
                device: cfg.device.clone(),
                transport: cfg.transport,
                request_timeout: cfg.request_timeout,
                streams: cfg.streams,
            },
            cfg.channel_capacity,
        )
        .map_err(|e| SourceError::Network(format!("Neon at {}: {e}", cfg.device)))?;
        let world = first
            .setups
            .iter()
            .find(|s| s.sensor == Sensor::World)
            .ok_or_else(|| SourceError::Network("no world stream".into()))?;
        let format = world.video_format();
        let fps = format
            .and_then(|f| f.2)
            .or(world.framerate)
            .unwrap_or(NOMINAL_FPS);
        let mut assembler = Assembler::new(cfg.decoder, cfg.loss, fps, 16)
            .map_err(|e| SourceError::Config(e.to_string()))?;
        assembler
            .set_decode_policy(cfg.decode)
            .map_err(|e| SourceError::Config(e.to_string()))?;
        let mut src = NeonSource {
            net,
            assembler,
            info: SourceInfo {
                kind: format!(
                    "neon ({}, {})",
                    first.device_name.as_deref().unwrap_or("unnamed"),
                    match cfg.transport {
                        RtspTransport::Udp => "udp",
                        RtspTransport::Tcp => "tcp",
                    }
                ),
                width: 0,
                height: 0,
                fps,
                format: PixelFormat::I420,
                tiled: false,
                duration_s: cfg.duration.map(|d| d.as_secs_f64()),
            },
            cfg,
            accounting: FrameAccounting::default(),
            counters: None,
            control: None,
            pending: VecDeque::new(),
            was_connected: true,
            lost: None,
            gap_open: None,
            last_frame: None,
            first_frame: None,
            ended: false,
        };
        match format {
            Some((w, h, _)) => (src.info.width, src.info.height) = (w, h),
            // No SPS in the SDP: the size is known once the first picture is decoded.
            None => src.size_from_first_frame()?,
        }
        Ok(src)
    }

    fn size_from_first_frame(&mut self) -> Result<(), SourceError> {
        let mut profile = StageProfile::new(false);
        let deadline = MonoNanos::now().add_ns(10_000_000_000);
        while MonoNanos::now() < deadline {
            match self.next_item(&mut profile)? {
                Some(item) => {
                    if let SourceItem::Frame { frame, .. } = &item {
                        (self.info.width, self.info.height) = (frame.width(), frame.height());
                        self.pending.push_back(item);
                        return Ok(());
                    }
                    self.pending.push_back(item);
                }
                None => break,
            }
        }
        Err(SourceError::Network(
            "the world SDP has no SPS and no picture was decoded within 10 s".into(),
        ))
    }

    /// Turns link state changes into events and the preview flag.
    fn check_link(&mut self) {
        let connected = self.net.link.connected.load(Ordering::Relaxed);
        if connected == self.was_connected {
            return;
        }
        self.was_connected = connected;
        let now = MonoNanos::now();
        let last_time = self.last_frame.map(|(_, t)| t);
        if !connected {
            self.set_disconnected(true);
            self.lost = Some((now, last_time));
            let why = self.net.link.last_error().unwrap_or_default();
            self.pending.push_back(SourceItem::Event {
                kind: "disconnected",
                detail: format!("lost the device ({why}); reconnecting"),
                device_time: last_time,
                end_time: None,
            });
        } else {
            self.set_disconnected(false);
            let since = self.lost.take();
            let n = self.net.link.reconnects.load(Ordering::Relaxed);
            self.pending.push_back(SourceItem::Event {
                kind: "reconnected",
                detail: format!(
                    "sessions re-established after {:.2} s (reconnect {n})",
                    since.map_or(0.0, |(t, _)| now.since(t) as f64 / 1e9)
                ),
                device_time: None,
                end_time: None,
            });
            self.gap_open = Some(self.last_frame.map_or((now, None), |(m, t)| (m, Some(t))));
        }
    }

    fn set_disconnected(&self, v: bool) {
        if let Some(c) = &self.control {
            c.disconnected.store(v, Ordering::Relaxed);
        }
    }

    fn publish(&self) {
        if let Some(c) = &self.counters {
            self.assembler.publish(c);
            let l = &self.net.link;
            c.net_reconnects
                .store(l.reconnects.load(Ordering::Relaxed), Ordering::Relaxed);
            c.net_channel_drops
                .store(l.channel_drops.load(Ordering::Relaxed), Ordering::Relaxed);
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            c.net_tcp_stray_responses
                .store(load(&l.tcp.stray_responses), Ordering::Relaxed);
            c.net_tcp_resyncs
                .store(load(&l.tcp.resyncs), Ordering::Relaxed);
            c.net_tcp_assumed_interleaved
                .store(load(&l.tcp.assumed_interleaved), Ordering::Relaxed);
        }
    }

    /// A frame on its way out: `--duration`, the gap event after a reconnect, accounting.
    fn on_frame(&mut self, mut item: SourceItem, profile: &mut StageProfile) -> Option<SourceItem> {
        let SourceItem::Frame { meta, .. } = &item else {
            return Some(item);
        };
        let (t, received) = (meta.device_time, meta.received_mono);
        let (first, _) = *self
            .first_frame
            .get_or_insert_with(|| (t, MonoNanos::now()));
        if let Some(d) = self.cfg.duration {
            // Saturating: a library caller may pass any Duration (the CLI caps it at a year).
            if t.delta_ns(first) >= i64::try_from(d.as_nanos()).unwrap_or(i64::MAX) {
                self.ended = true;
                return None;
            }
        }
        if let Some((m, before)) = self.gap_open.take() {
            let detail = format!(
                "no frames for {:.2} s{}",
                received.since(m) as f64 / 1e9,
                before.map_or(String::new(), |b| format!(
                    " ({:.2} s of device time)",
                    t.delta_ns(b) as f64 / 1e9
                ))
            );
            self.pending.push_back(SourceItem::Event {
                kind: "stream_gap",
                detail,
                device_time: before,
                end_time: None,
            });
        }
        self.last_frame = Some((received, t));
        self.accounting.finish(&mut item, profile);
        self.publish();
        Some(item)
    }

    /// `--duration` in wall time as a last resort when the device stays away.
    fn past_grace(&self) -> bool {
        match (self.cfg.duration, self.first_frame) {
            (Some(d), Some((_, m))) => {
                let limit = d.saturating_add(DURATION_GRACE).as_nanos();
                u128::from(MonoNanos::now().since(m)) > limit
            }
            _ => false,
        }
    }
}

impl Source for NeonSource {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn delivers_h264(&self) -> bool {
        true
    }

    fn set_access_unit_sink(&mut self, sink: Arc<dyn crate::source::AccessUnitSink>) {
        self.assembler.set_sink(sink);
    }

    fn reserve_in_flight(&mut self, frames: usize) {
        self.assembler
            .preallocate(frames, self.info.width, self.info.height);
    }

    fn bind(&mut self, counters: &Arc<Counters>, control: &Arc<Control>) {
        self.counters = Some(Arc::clone(counters));
        self.control = Some(Arc::clone(control));
        self.assembler.set_control(Arc::clone(control));
        let lost = !self.net.link.connected.load(Ordering::Relaxed);
        self.set_disconnected(lost);
    }

    fn next_item(&mut self, profile: &mut StageProfile) -> Result<Option<SourceItem>, SourceError> {
        self.accounting.enter();
        loop {
            if self.ended {
                self.publish();
                return Ok(None);
            }
            self.check_link();
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if let Some(item) = self.assembler.pop() {
                match self.on_frame(item, profile) {
                    Some(item) => {
                        // A gap event queued by this frame goes first.
                        if let Some(ev) = self.pending.pop_front() {
                            self.pending.push_back(item);
                            return Ok(Some(ev));
                        }
                        return Ok(Some(item));
                    }
                    None => continue,
                }
            }
            if self.past_grace() {
                self.ended = true;
                continue;
            }
            let t = MonoNanos::now();
            match self.net.rx.recv_timeout(POLL) {
                Ok(item) => {
                    self.accounting.waited(MonoNanos::now().since(t));
                    let ns = self.assembler.push(
                        &item.setup,
                        item.packet.kind(),
                        item.packet.data(),
                        item.arrival,
                        profile,
                    );
                    self.accounting.decoded(ns);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.accounting.waited(MonoNanos::now().since(t));
                    self.publish();
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(SourceError::Network(format!(
                        "the network thread stopped: {}",
                        self.net.link.last_error().unwrap_or_default()
                    )));
                }
            }
        }
    }
}
