//! One playing RTSP session: joins the shared timeline at its current position (video at the
//! next keyframe), sends the latest SR first, then paces the stream's recorded RTP/RTCP by their
//! arrival times, moved onto the timeline, with the configured faults applied.
//!
//! Records are read synchronously from the fixture's `BufReader` inside the async task: a read is
//! a copy out of a 64 KiB buffer over a page-cached file, far below a packet interval, and it
//! keeps one reader (and one packet buffer) per session instead of a thread.

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pipeline::fixture::{FixtureError, FixtureReader, PacketKind};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::rewrite;
use super::timeline::{FixtureFacts, StreamFacts, Timeline};

/// `--loss`, `--jitter`, `--stall`, resolved to stream indices.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub loss_pct: f64,
    pub jitter_ms: f64,
    pub seed: u64,
    /// (stream index, sim time from which it sends no RTP)
    pub stalls: Vec<(u8, Duration)>,
    /// Send one junk packet per this period (`--garbage-every`).
    pub garbage_every: Option<Duration>,
    /// `--tcp-no-interleaved-echo`: TCP SETUP replies leave out `interleaved=`.
    pub tcp_no_interleaved_echo: bool,
    /// `--tcp-stray-400-every N`: a stray 400 reply after every N interleaved packets.
    pub tcp_stray_400_every: Option<u64>,
}

/// The reply the phone writes into the interleaved stream (official client PR #90): no CSeq,
/// as it answers no request the client sent.
pub const STRAY_400: &[u8] = b"RTSP/1.0 400 Bad Request\r\nServer: Pupil Invisible RTSP Server\r\n\
Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nBad Request";

/// The junk `--garbage-every` sends, in turn: what a confused or hostile sender could put on
/// the client's ports. `n` picks the kind; the RTP channel and the RTCP channel alternate.
fn junk_packet(n: u64, rng: &mut Pcg64Mcg, out: &mut Vec<u8>) -> PacketKind {
    out.clear();
    match n % 3 {
        // random bytes of random length
        0 => {
            let len = rng.random_range(1..1400usize);
            out.extend((0..len).map(|_| rng.random::<u8>()));
        }
        // an RTP version byte, then too few bytes for a header
        1 => out.extend_from_slice(&[0x80, 0x60, 0x12]),
        // a well-formed RTP header from another source (foreign SSRC), junk payload
        _ => {
            out.extend_from_slice(&[0x80, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
            out.extend((0..64).map(|_| rng.random::<u8>()));
        }
    }
    if (n / 3).is_multiple_of(2) {
        PacketKind::Rtp
    } else {
        PacketKind::Rtcp
    }
}

/// Where a session's packets go.
pub enum Sink {
    Udp {
        rtp: Arc<UdpSocket>,
        rtcp: Arc<UdpSocket>,
        rtp_to: SocketAddr,
        rtcp_to: SocketAddr,
    },
    /// `$`-framed on the RTSP connection (RFC 2326 10.12).
    Tcp {
        writer: Arc<Mutex<OwnedWriteHalf>>,
        rtp_channel: u8,
        rtcp_channel: u8,
    },
}

impl Sink {
    /// Sends one packet. UDP errors are ignored (a phone keeps sending into a closed port); a
    /// TCP error ends the session.
    async fn send(
        &self,
        kind: PacketKind,
        data: &[u8],
        frame: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        match self {
            Sink::Udp {
                rtp,
                rtcp,
                rtp_to,
                rtcp_to,
            } => {
                let _ = match kind {
                    PacketKind::Rtp => rtp.send_to(data, rtp_to).await,
                    PacketKind::Rtcp => rtcp.send_to(data, rtcp_to).await,
                };
                Ok(())
            }
            Sink::Tcp {
                writer,
                rtp_channel,
                rtcp_channel,
            } => {
                let ch = match kind {
                    PacketKind::Rtp => *rtp_channel,
                    PacketKind::Rtcp => *rtcp_channel,
                };
                let len = u16::try_from(data.len()).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "packet over 64 KiB")
                })?;
                frame.clear();
                frame.push(b'$');
                frame.push(ch);
                frame.extend_from_slice(&len.to_be_bytes());
                frame.extend_from_slice(data);
                writer.lock().await.write_all(frame).await
            }
        }
    }
}

impl Sink {
    /// `--tcp-stray-400-every`: the stray reply between two frames (TCP only).
    async fn send_stray_400(&self) -> std::io::Result<()> {
        match self {
            Sink::Udp { .. } => Ok(()),
            Sink::Tcp { writer, .. } => writer.lock().await.write_all(STRAY_400).await,
        }
    }
}

/// A packet held by the session, with the loop pass it belongs to.
struct Held {
    pass: u64,
    kind: PacketKind,
    arrival_ns: u64,
    data: Vec<u8>,
}

/// A session positioned on the timeline, ready to play.
pub struct Cursor {
    reader: FixtureReader<BufReader<File>>,
    stream: u8,
    facts: StreamFacts,
    timeline: Arc<Timeline>,
    /// Latest SR before the start, sent at once so timing is known before the first RTP.
    first_sr: Option<Held>,
    next: Option<Held>,
    pass: u64,
}

/// `seq` and `rtptime` of the first RTP packet, for PLAY's `RTP-Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpInfo {
    pub seq: u16,
    pub rtptime: u32,
}

impl Cursor {
    /// Scans from the fixture start to the timeline's current position; a video stream starts
    /// at the first keyframe at or after it. `Ok(None)` when a non-looping replay has ended or
    /// the stream has nothing to start from.
    pub fn prepare(
        path: &Path,
        facts: &FixtureFacts,
        timeline: Arc<Timeline>,
        stream: u8,
        now: Instant,
    ) -> Result<Option<Cursor>, FixtureError> {
        let Some(sfacts) = facts.streams.get(usize::from(stream)).cloned() else {
            return Ok(None);
        };
        let Some((mut pass, mut pos)) = timeline.position(now) else {
            return Ok(None);
        };
        let mut reader = FixtureReader::open(path)?;
        let mut sr: Option<Held> = None;
        let mut empty_passes = 0;
        loop {
            let p = match reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) | Err(_) => {
                    // a pass without a usable start: go round once more, then give up
                    empty_passes += 1;
                    if !timeline.looping || empty_passes > 2 {
                        return Ok(None);
                    }
                    reader.rewind()?;
                    pass += 1;
                    pos = 0;
                    continue;
                }
            };
            if p.stream != stream {
                continue;
            }
            match p.kind {
                PacketKind::Rtcp => {
                    let held = sr.get_or_insert_with(|| Held {
                        pass,
                        kind: PacketKind::Rtcp,
                        arrival_ns: 0,
                        data: Vec::new(),
                    });
                    held.pass = pass;
                    held.arrival_ns = p.arrival_ns;
                    held.data.clear();
                    held.data.extend_from_slice(p.data);
                }
                PacketKind::Rtp => {
                    if p.arrival_ns >= pos && (!sfacts.is_h264 || rewrite::starts_keyframe(p.data))
                    {
                        let next = Held {
                            pass,
                            kind: PacketKind::Rtp,
                            arrival_ns: p.arrival_ns,
                            data: p.data.to_vec(),
                        };
                        return Ok(Some(Cursor {
                            reader,
                            stream,
                            facts: sfacts,
                            timeline,
                            first_sr: sr,
                            next: Some(next),
                            pass,
                        }));
                    }
                }
            }
        }
    }

    /// What the first RTP packet will carry, after moving it onto the timeline.
    pub fn rtp_info(&self) -> Option<RtpInfo> {
        let next = self.next.as_ref()?;
        let mut data = next.data.clone();
        move_packet(
            &self.timeline,
            &self.facts,
            next.pass,
            next.kind,
            &mut data,
            &mut Vec::new(),
        );
        rewrite::rtp_seq_ts(&data).map(|(seq, rtptime)| RtpInfo { seq, rtptime })
    }

    /// Reads the next record of this stream into `held`, rewinding at the end when looping.
    fn advance(&mut self, mut held: Held) -> Option<Held> {
        let mut rewinds = 0;
        loop {
            match self.reader.next_packet() {
                Ok(Some(p)) if p.stream == self.stream => {
                    held.pass = self.pass;
                    held.kind = p.kind;
                    held.arrival_ns = p.arrival_ns;
                    held.data.clear();
                    held.data.extend_from_slice(p.data);
                    return Some(held);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    rewinds += 1;
                    if !self.timeline.looping || rewinds > 1 || self.reader.rewind().is_err() {
                        return None;
                    }
                    self.pass += 1;
                }
            }
        }
    }

    /// Plays until the replay ends or the sink fails. Allocates nothing per packet.
    pub async fn play(mut self, sink: Sink, faults: Arc<Faults>, session_no: u64) {
        let mut rng = Pcg64Mcg::seed_from_u64(faults.seed ^ session_no.wrapping_mul(0x9E37_79B9));
        let stall_at = faults
            .stalls
            .iter()
            .filter(|(s, _)| *s == self.stream)
            .map(|(_, t)| *t)
            .min();
        let mut frame = Vec::with_capacity(2048);
        let mut scratch = Vec::with_capacity(256);
        if let Some(mut sr) = self.first_sr.take() {
            move_packet(
                &self.timeline,
                &self.facts,
                sr.pass,
                sr.kind,
                &mut sr.data,
                &mut scratch,
            );
            if sink.send(sr.kind, &sr.data, &mut frame).await.is_err() {
                return;
            }
        }
        let mut last_send = Instant::now();
        let mut next_junk = faults.garbage_every.map(|p| Instant::now() + p);
        let mut junk_sent = 0u64;
        let mut junk = Vec::with_capacity(1400);
        let mut current = self.next.take();
        let mut sent = 0u64;
        while let Some(mut held) = current {
            let mut due = self.timeline.due(held.pass, held.arrival_ns);
            if faults.jitter_ms > 0.0 {
                due += Duration::from_secs_f64(rng.random_range(0.0..faults.jitter_ms) / 1e3);
            }
            // jitter delays but never reorders
            let due = due.max(last_send);
            tokio::time::sleep_until(due).await;
            last_send = due;
            if let (Some(at), Some(period)) = (next_junk, faults.garbage_every) {
                if due >= at {
                    let kind = junk_packet(junk_sent, &mut rng, &mut junk);
                    junk_sent += 1;
                    next_junk = Some(at + period);
                    if sink.send(kind, &junk, &mut frame).await.is_err() {
                        return;
                    }
                }
            }
            let mut skip = false;
            if held.kind == PacketKind::Rtp {
                if let Some(at) = stall_at {
                    skip |= self.timeline.elapsed_ns(Instant::now()) >= at.as_nanos() as u64;
                }
                if faults.loss_pct > 0.0 {
                    skip |= rng.random_range(0.0..100.0) < faults.loss_pct;
                }
            }
            if !skip {
                move_packet(
                    &self.timeline,
                    &self.facts,
                    held.pass,
                    held.kind,
                    &mut held.data,
                    &mut scratch,
                );
                if sink.send(held.kind, &held.data, &mut frame).await.is_err() {
                    return;
                }
                sent += 1;
                if faults
                    .tcp_stray_400_every
                    .is_some_and(|n| sent.is_multiple_of(n))
                    && sink.send_stray_400().await.is_err()
                {
                    return;
                }
            }
            current = self.advance(held);
        }
    }
}

/// Moves a recorded packet of loop pass `pass` onto the timeline (see [`rewrite`]).
fn move_packet(
    timeline: &Timeline,
    facts: &StreamFacts,
    pass: u64,
    kind: PacketKind,
    data: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    let shift = timeline.shift_ns(pass);
    let ts_add = timeline.rtp_offset(pass, facts.clock_rate);
    match kind {
        PacketKind::Rtp => {
            if pass > 0 {
                let seq_add = (pass.wrapping_mul(facts.rtp_packets)) as u16;
                rewrite::shift_rtp(data, seq_add, ts_add);
            }
            if shift != 0 {
                rewrite::shift_payload_times(facts.kind, data, shift, scratch);
            }
        }
        PacketKind::Rtcp => {
            if shift != 0 || ts_add != 0 {
                rewrite::shift_sender_reports(data, shift, ts_add);
            }
        }
    }
}
