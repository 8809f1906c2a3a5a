//! Neon sources: the live RTSP client (`neon://HOST[:PORT]`, `discover`) and the in-process
//! replay of a recorded fixture (`fixture:PATH`), both built on one [`assemble::Assembler`].
//!
//! The live client ([`live::NeonSource`]) asks the device's HTTP API for its sensor URLs
//! ([`status`]), runs one retina RTSP session per sensor on a small tokio runtime of its own
//! ([`net`]), and hands raw packets through a bounded channel to the pipeline's acquire thread,
//! where the assembler depacketizes, decodes and stamps them. The replay ([`replay`]) reads the
//! same packets from a file and feeds the same assembler, so a fixture exercises exactly the
//! code a device does. Device discovery over mDNS is in [`discover`].

pub mod addr;
pub mod assemble;
pub mod discover;
pub mod extra;
mod intake;
pub mod live;
mod net;
pub mod record;
pub mod replay;
pub mod status;
mod tcp_relay;

pub use addr::{DeviceAddr, DEFAULT_HTTP_PORT};
pub use assemble::{Assembler, AssemblerStats, DecodePolicy, LossPolicy, Sensor, StreamSetup};
pub use live::{NeonConfig, NeonSource};
pub use replay::{FixtureConfig, FixtureSource};

use crate::profile::{Phase, StageProfile};
use crate::source::SourceItem;
use crate::time::MonoNanos;

/// RTP transport of the RTSP sessions (protocol doc 4.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// RTP over UDP, as the device advertises (`rtsp://`) and the official client uses.
    #[default]
    Udp,
    /// RTP interleaved in the RTSP TCP connection.
    Tcp,
}

/// Splits a source's time between two frames into waiting (blocked on the network or on the
/// replay's pacing), decoding and the rest (receiving, parsing, depacketizing): the rest is the
/// frame's [`Phase::Acquire`] sample, the wait its `wait_ns`.
#[derive(Debug, Default)]
struct FrameAccounting {
    since: Option<MonoNanos>,
    wait_ns: u64,
    decode_ns: u64,
}

impl FrameAccounting {
    fn enter(&mut self) {
        self.since.get_or_insert_with(MonoNanos::now);
    }

    fn waited(&mut self, ns: u64) {
        self.wait_ns += ns;
    }

    fn decoded(&mut self, ns: u64) {
        self.decode_ns += ns;
    }

    /// Stamps a frame on its way out and starts the next interval.
    fn finish(&mut self, item: &mut SourceItem, profile: &mut StageProfile) {
        let SourceItem::Frame { meta, .. } = item else {
            return;
        };
        let now = MonoNanos::now();
        let total = self.since.map_or(0, |s| now.since(s));
        profile.record_ns(
            Phase::Acquire,
            total.saturating_sub(self.wait_ns + self.decode_ns),
        );
        meta.wait_ns = self.wait_ns;
        *self = FrameAccounting {
            since: Some(now),
            ..FrameAccounting::default()
        };
    }
}
