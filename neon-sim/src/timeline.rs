//! The simulated device's one clock: fixture time zero is the sim's start, every session joins
//! that shared timeline (so world and gaze stay mutually consistent), and a loop pass k is the
//! fixture shifted by k periods. Also the per-stream facts the replay needs (clock, counts).

use std::path::Path;

use pipeline::fixture::{FixtureError, FixtureReader, PacketKind};
use tokio::time::Instant;

use super::config::ClockMode;
use super::rewrite;

/// Gap appended after the last packet before a loop pass starts again: about one video frame,
/// so timestamps keep strictly increasing across the wrap.
pub const LOOP_GAP_NS: u64 = 40_000_000;

#[derive(Clone, Debug)]
pub struct StreamFacts {
    pub name: String,
    pub sdp: String,
    /// RTP clock rate from the SDP's `a=rtpmap` (90 kHz if absent).
    pub clock_rate: u32,
    /// An H.264 `m=video` stream: sessions start at a keyframe.
    pub is_h264: bool,
    /// RTP packets in one pass; the sequence-number step per loop pass.
    pub rtp_packets: u64,
    pub kind: rewrite::PayloadKind,
    /// The control of the SDP's `m=audio`, if any: a SETUP of it on a connection that
    /// DESCRIBEd this stream plays the fixture's `audio` stream (the microphone).
    pub audio_control: Option<String>,
}

/// What the simulator learns about its fixture in one streaming pass at startup.
#[derive(Clone, Debug)]
pub struct FixtureFacts {
    pub start_unix_ns: i64,
    pub streams: Vec<StreamFacts>,
    pub last_arrival_ns: u64,
    /// Loop period: last arrival rounded up to a millisecond, plus [`LOOP_GAP_NS`].
    pub period_ns: u64,
    /// Damage found while scanning (the complete records before it are still served).
    pub trailing_error: Option<String>,
}

impl FixtureFacts {
    pub fn scan(path: &Path) -> Result<Self, FixtureError> {
        let mut r = FixtureReader::open(path)?;
        let header = r.header().clone();
        let mut streams: Vec<StreamFacts> = header
            .streams
            .iter()
            .map(|s| {
                let media = rewrite::stream_media(&s.name, &s.sdp);
                StreamFacts {
                    name: s.name.clone(),
                    clock_rate: media.as_ref().and_then(|m| m.clock_rate).unwrap_or(90_000),
                    is_h264: media
                        .as_ref()
                        .is_some_and(|m| m.media_type == "video" && m.is_encoding("H264")),
                    audio_control: rewrite::sdp_audio_control(&s.sdp),
                    sdp: s.sdp.clone(),
                    rtp_packets: 0,
                    kind: rewrite::PayloadKind::for_stream(&s.name),
                }
            })
            .collect();
        let mut last = 0;
        let trailing_error = loop {
            match r.next_packet() {
                Ok(Some(p)) => {
                    last = p.arrival_ns;
                    if p.kind == PacketKind::Rtp {
                        if let Some(s) = streams.get_mut(usize::from(p.stream)) {
                            s.rtp_packets += 1;
                        }
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        let period_ns = last.div_ceil(1_000_000) * 1_000_000 + LOOP_GAP_NS;
        Ok(FixtureFacts {
            start_unix_ns: header.start_unix_ns,
            streams,
            last_arrival_ns: last,
            period_ns,
            trailing_error,
        })
    }

    pub fn stream_index(&self, name: &str) -> Option<u8> {
        self.streams
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| u8::try_from(i).ok())
    }
}

/// The shared timeline, fixed at sim start.
#[derive(Clone, Debug)]
pub struct Timeline {
    pub start: Instant,
    pub start_unix_ns: i64,
    pub fixture_start_unix_ns: i64,
    pub period_ns: u64,
    pub looping: bool,
    pub clock: ClockMode,
}

impl Timeline {
    pub fn new(facts: &FixtureFacts, clock: ClockMode, looping: bool) -> Self {
        Timeline {
            start: Instant::now(),
            start_unix_ns: pipeline::time::UnixNanos::now().0,
            fixture_start_unix_ns: facts.start_unix_ns,
            period_ns: facts.period_ns.max(1),
            looping,
            clock,
        }
    }

    /// Nanoseconds of sim time elapsed at `now`.
    pub fn elapsed_ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_nanos() as u64
    }

    /// (loop pass, position within it) at `now`; `None` once a non-looping replay has ended.
    pub fn position(&self, now: Instant) -> Option<(u64, u64)> {
        let e = self.elapsed_ns(now);
        if self.looping {
            Some((e / self.period_ns, e % self.period_ns))
        } else if e < self.period_ns {
            Some((0, e))
        } else {
            None
        }
    }

    /// How much every Unix time of pass `pass` moves: the live shift plus whole periods.
    pub fn shift_ns(&self, pass: u64) -> i64 {
        let live = match self.clock {
            ClockMode::Live => self.start_unix_ns - self.fixture_start_unix_ns,
            ClockMode::Recorded => 0,
        };
        live + (pass * self.period_ns) as i64
    }

    /// When a packet of pass `pass` that arrived at `arrival_ns` is due.
    pub fn due(&self, pass: u64, arrival_ns: u64) -> Instant {
        self.start + std::time::Duration::from_nanos(pass * self.period_ns + arrival_ns)
    }

    /// The device's Unix clock now (time echo, event stamps): current time in live mode, the
    /// fixture's time in recorded mode.
    pub fn device_now_ns(&self) -> i64 {
        let e = self.elapsed_ns(Instant::now()) as i64;
        self.fixture_start_unix_ns + self.shift_ns(0) + e
    }

    /// RTP timestamp offset of pass `pass` on a `clock_rate` Hz clock (wrapping, as RTP does).
    pub fn rtp_offset(&self, pass: u64, clock_rate: u32) -> u32 {
        let ns = u128::from(pass) * u128::from(self.period_ns);
        (ns * u128::from(clock_rate) / 1_000_000_000) as u32
    }
}
