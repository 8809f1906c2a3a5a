//! `eyetrack fixture record`: a live device's RTP and RTCP, as received by the same network
//! client the pipeline streams with, written to an `.etfx` fixture with arrival times.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::net::{NetConfig, NetThread};
use super::RtspTransport;
use crate::fixture::{FixtureHeader, FixtureWriter, StreamInfo};
use crate::time::{MonoNanos, UnixNanos};

/// What a recording session wrote.
#[derive(Debug, Serialize)]
pub struct RecordSummary {
    pub streams: Vec<String>,
    pub packets: u64,
    pub seconds: f64,
    pub reconnects: u64,
    /// Packets the network thread dropped because the writer fell behind (should be 0).
    pub channel_drops: u64,
}

/// Records `duration` of the device at `device` into `output`. The SDP kept per stream is
/// the first session's; after a reconnect the device may describe a new session (new SPS,
/// SSRC and RTP base), which a replay handles as the live client does: by the packets.
pub fn record(
    device: &super::addr::DeviceAddr,
    transport: RtspTransport,
    duration: Duration,
    output: &Path,
    made_by: String,
    streams: crate::streams::StreamSet,
) -> Result<RecordSummary, String> {
    let (net, first) = NetThread::start(
        NetConfig {
            device: device.clone(),
            transport,
            request_timeout: Duration::from_secs(5),
            streams,
        },
        8192,
    )
    .map_err(|e| format!("Neon at {device}: {e}"))?;
    let start_mono = MonoNanos::now();
    let header = FixtureHeader {
        start_unix_ns: UnixNanos::now().0,
        streams: first
            .setups
            .iter()
            .map(|s| StreamInfo {
                name: s.sensor.name().to_owned(),
                sdp: s.sdp.clone(),
            })
            .collect(),
        made_by,
    };
    let names: Vec<String> = header.streams.iter().map(|s| s.name.clone()).collect();
    let mut w = FixtureWriter::create(output, &header).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut packets = 0u64;
    while t0.elapsed() < duration {
        let Ok(item) = net.rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let Some(stream) = names.iter().position(|n| n == item.setup.sensor.name()) else {
            continue;
        };
        let arrival = item.arrival.since(start_mono);
        w.write_packet(
            stream as u8,
            item.packet.kind(),
            arrival,
            item.packet.data(),
        )
        .map_err(|e| e.to_string())?;
        packets += 1;
    }
    let reconnects = net
        .link
        .reconnects
        .load(std::sync::atomic::Ordering::Relaxed);
    let channel_drops = net
        .link
        .channel_drops
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(net);
    w.finish().map_err(|e| e.to_string())?;
    Ok(RecordSummary {
        streams: names,
        packets,
        seconds: t0.elapsed().as_secs_f64(),
        reconnects,
        channel_drops,
    })
}
