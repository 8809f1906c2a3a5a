//! The time-echo server (protocol doc 8): per 8-byte request (client ms, u64 BE) it answers the
//! same 8 bytes followed by the device's own ms clock, on one connection for many rounds.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::timeline::Timeline;

pub async fn serve(mut stream: TcpStream, timeline: Arc<Timeline>) {
    let mut req = [0u8; 8];
    while stream.read_exact(&mut req).await.is_ok() {
        let device_ms = timeline.device_now_ns().div_euclid(1_000_000) as u64;
        let mut reply = [0u8; 16];
        reply[..8].copy_from_slice(&req);
        reply[8..].copy_from_slice(&device_ms.to_be_bytes());
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}
