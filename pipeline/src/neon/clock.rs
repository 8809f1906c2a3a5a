//! RTP time to device Unix time: typed, unwrapped RTP timestamps and the official client's
//! sender-report rule (protocol doc 5) with the Rust-client fixes of doc 10 item 4.
//!
//! The rule: `offset = unix(SR) - rtp(SR)/clock`, latest SR wins, `t = rtp/clock + offset`. Here it
//! is evaluated as `unix(SR) + (rtp - rtp(SR)) * 1e9 / clock` in 128-bit integers on 32-bit
//! unwrapped timestamps, so there is no float drift and no 13.3 h jump at the u32 wrap. Packets
//! that arrive before the first SR wait in a bounded queue ([`StampQueue`]) instead of being
//! dropped, and everything resets on an SSRC change or reconnect.

use std::collections::VecDeque;
use std::num::NonZeroU32;

use crate::neon::rtcp::SenderInfo;
use crate::time::UnixNanos;

/// An RTP clock rate in Hz, from the SDP `a=rtpmap` (never zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClockRate(NonZeroU32);

impl ClockRate {
    /// The usual video rate.
    pub const VIDEO: ClockRate = ClockRate(NonZeroU32::MIN.saturating_add(89_999));

    pub fn new(hz: u32) -> Option<Self> {
        NonZeroU32::new(hz).map(ClockRate)
    }

    pub fn hz(self) -> u32 {
        self.0.get()
    }

    /// Nanoseconds for a signed tick count, rounded to nearest (half away from zero).
    pub fn ticks_to_ns(self, ticks: i64) -> i64 {
        let num = i128::from(ticks) * 1_000_000_000;
        let den = i128::from(self.hz());
        let q = if num >= 0 {
            (num + den / 2) / den
        } else {
            -((-num + den / 2) / den)
        };
        q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Ticks for a signed nanosecond count, rounded to nearest; the sender side uses it to turn
    /// recorded Unix times into RTP timestamps (doc 10, simulator item 10).
    pub fn ns_to_ticks(self, ns: i64) -> i64 {
        let num = i128::from(ns) * i128::from(self.hz());
        let den = 1_000_000_000i128;
        let q = if num >= 0 {
            (num + den / 2) / den
        } else {
            -((-num + den / 2) / den)
        };
        q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// An RTP timestamp extended beyond 32 bits, with the clock it counts.
///
/// Extended values are comparable only within one [`TimestampUnwrapper`]'s lifetime (one SSRC
/// of one session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpTimestamp {
    extended: i64,
    clock: ClockRate,
}

impl RtpTimestamp {
    pub fn new(extended: i64, clock: ClockRate) -> Self {
        RtpTimestamp { extended, clock }
    }

    pub fn extended(self) -> i64 {
        self.extended
    }

    /// The 32-bit value on the wire.
    pub fn wire(self) -> u32 {
        self.extended as u32
    }

    pub fn clock(self) -> ClockRate {
        self.clock
    }

    /// `self - other` in nanoseconds (both on the same clock).
    pub fn ns_since(self, other: RtpTimestamp) -> i64 {
        self.clock
            .ticks_to_ns(self.extended.saturating_sub(other.extended))
    }
}

/// Extends u32 RTP timestamps by the signed 32-bit distance to the previous one, so a timestamp
/// up to 2^31 ticks (6.6 h at 90 kHz) either side of the last lands in the right cycle.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimestampUnwrapper {
    last: Option<i64>,
}

impl TimestampUnwrapper {
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(ts),
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
        };
        self.last = Some(ext);
        ext
    }

    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// Counters of an [`SrClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockStats {
    pub sender_reports: u64,
    /// SRs from another SSRC than the stream's packets (ignored; the Python client uses them).
    pub foreign_sender_reports: u64,
    pub ssrc_changes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    unix: UnixNanos,
    rtp: i64,
}

/// What [`SrClock::on_packet`] learned about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketTime {
    pub rtp: RtpTimestamp,
    /// `None` until the first SR of this SSRC.
    pub time: Option<UnixNanos>,
    /// The SSRC differed from the previous packets': timing state was reset first.
    pub ssrc_changed: bool,
}

/// The SR-anchored mapping from RTP to Unix time of one stream.
#[derive(Debug, Clone)]
pub struct SrClock {
    clock: ClockRate,
    ssrc: Option<u32>,
    unwrapper: TimestampUnwrapper,
    anchor: Option<Anchor>,
    stats: ClockStats,
}

impl SrClock {
    pub fn new(clock: ClockRate) -> Self {
        SrClock {
            clock,
            ssrc: None,
            unwrapper: TimestampUnwrapper::default(),
            anchor: None,
            stats: ClockStats::default(),
        }
    }

    pub fn clock(&self) -> ClockRate {
        self.clock
    }

    pub fn stats(&self) -> ClockStats {
        self.stats
    }

    pub fn is_anchored(&self) -> bool {
        self.anchor.is_some()
    }

    /// Forgets SSRC, unwrap state and anchor. Call on reconnect: the new session has a new random
    /// RTP base, and keeping the old offset (as the Python client does) mis-stamps its first
    /// packets.
    pub fn reset(&mut self) {
        self.ssrc = None;
        self.unwrapper.reset();
        self.anchor = None;
    }

    fn adopt_ssrc(&mut self, ssrc: u32) -> bool {
        match self.ssrc {
            Some(s) if s == ssrc => false,
            Some(_) => {
                self.reset();
                self.ssrc = Some(ssrc);
                self.stats.ssrc_changes += 1;
                true
            }
            None => {
                self.ssrc = Some(ssrc);
                false
            }
        }
    }

    /// Unwraps a packet's timestamp and stamps it if an SR has arrived.
    pub fn on_packet(&mut self, ssrc: u32, rtp_timestamp: u32) -> PacketTime {
        let ssrc_changed = self.adopt_ssrc(ssrc);
        let rtp = RtpTimestamp::new(self.unwrapper.unwrap(rtp_timestamp), self.clock);
        PacketTime {
            rtp,
            time: self.time_of(rtp),
            ssrc_changed,
        }
    }

    /// Takes an SR as the new anchor (latest wins, no smoothing, as the official client). An SR
    /// before any packet fixes the SSRC (the simulator sends one first, doc 10 item 7); an SR of
    /// another SSRC than the packets' is ignored and counted. Returns whether it was used.
    pub fn on_sender_report(&mut self, sr: &SenderInfo) -> bool {
        if self.ssrc.is_some_and(|s| s != sr.ssrc) {
            self.stats.foreign_sender_reports += 1;
            return false;
        }
        self.ssrc = Some(sr.ssrc);
        self.stats.sender_reports += 1;
        self.anchor = Some(Anchor {
            unix: sr.ntp.to_unix_nanos(),
            rtp: self.unwrapper.unwrap(sr.rtp_timestamp),
        });
        true
    }

    /// Device time of a wire (32-bit) timestamp within half the RTP range of the latest SR,
    /// without touching the unwrap state: for callers that see a timestamp again (an access
    /// unit after its packets).
    pub fn time_of_wire(&self, rtp_timestamp: u32) -> Option<UnixNanos> {
        let a = self.anchor?;
        let delta = i64::from(rtp_timestamp.wrapping_sub(a.rtp as u32) as i32);
        Some(a.unix.add_ns(self.clock.ticks_to_ns(delta)))
    }

    /// Device time of an (already unwrapped) timestamp under the latest SR.
    pub fn time_of(&self, rtp: RtpTimestamp) -> Option<UnixNanos> {
        let a = self.anchor?;
        Some(
            a.unix
                .add_ns(self.clock.ticks_to_ns(rtp.extended.saturating_sub(a.rtp))),
        )
    }
}

/// An item stamped with its device time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped<T> {
    pub time: UnixNanos,
    pub rtp: RtpTimestamp,
    pub item: T,
}

/// Counters of a [`StampQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StampQueueStats {
    /// Items that waited for the first SR and were stamped once it came.
    pub stamped_late: u64,
    /// Items dropped because the queue was full before any SR arrived.
    pub overflowed: u64,
    /// Items dropped unstamped on reset or SSRC change.
    pub discarded: u64,
}

/// An [`SrClock`] plus a bounded FIFO of items waiting for their first SR (doc 10 item 4:
/// "buffer packets until the first SR and stamp them afterwards instead of dropping them").
///
/// Push every packet's item, feed every SR, and pop after each: once anchored, items come out
/// in arrival order with their time. The queue is allocated once with its capacity.
#[derive(Debug)]
pub struct StampQueue<T> {
    clock: SrClock,
    /// (timestamp, arrived before any SR, item).
    queue: VecDeque<(RtpTimestamp, bool, T)>,
    capacity: usize,
    stats: StampQueueStats,
}

impl<T> StampQueue<T> {
    /// `capacity` bounds what waits for the first SR (about a second of the stream is plenty: the
    /// phone sends an SR about every second).
    pub fn new(clock: ClockRate, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        StampQueue {
            clock: SrClock::new(clock),
            queue: VecDeque::with_capacity(capacity),
            capacity,
            stats: StampQueueStats::default(),
        }
    }

    pub fn clock(&self) -> &SrClock {
        &self.clock
    }

    pub fn stats(&self) -> StampQueueStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn reset(&mut self) {
        self.stats.discarded += self.queue.len() as u64;
        self.queue.clear();
        self.clock.reset();
    }

    pub fn push(&mut self, ssrc: u32, rtp_timestamp: u32, item: T) {
        let t = self.clock.on_packet(ssrc, rtp_timestamp);
        if t.ssrc_changed {
            // Items of the old SSRC never saw an SR (else they would have been popped).
            self.stats.discarded += self.queue.len() as u64;
            self.queue.clear();
        }
        if self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.stats.overflowed += 1;
        }
        self.queue.push_back((t.rtp, t.time.is_none(), item));
    }

    pub fn on_sender_report(&mut self, sr: &SenderInfo) -> bool {
        self.clock.on_sender_report(sr)
    }

    /// The oldest item with its time, once the clock is anchored.
    pub fn pop(&mut self) -> Option<Stamped<T>> {
        let (rtp, _, _) = self.queue.front()?;
        let time = self.clock.time_of(*rtp)?;
        let (rtp, waited, item) = self.queue.pop_front()?;
        if waited {
            self.stats.stamped_late += 1;
        }
        Some(Stamped { time, rtp, item })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neon::rtcp::NtpTimestamp;
    use proptest::prelude::*;

    fn sr(ssrc: u32, unix_ns: i64, rtp: u32) -> SenderInfo {
        SenderInfo {
            ssrc,
            ntp: NtpTimestamp::from_unix_nanos(UnixNanos(unix_ns)),
            rtp_timestamp: rtp,
            packet_count: 0,
            octet_count: 0,
        }
    }

    const T0: i64 = 1_700_000_000_250_000_000;

    #[test]
    fn sender_report_rule_worked_numbers() {
        let mut c = SrClock::new(ClockRate::VIDEO);
        assert_eq!(c.on_packet(7, 3_000_000_000).time, None);
        assert!(c.on_sender_report(&sr(7, T0, 3_000_000_000)));
        // 4500 ticks at 90 kHz = 50 ms after the SR.
        assert_eq!(
            c.on_packet(7, 3_000_004_500).time,
            Some(UnixNanos(T0 + 50_000_000))
        );
        // 90000 ticks before the SR = 1 s earlier.
        assert_eq!(
            c.on_packet(7, 2_999_910_000).time,
            Some(UnixNanos(T0 - 1_000_000_000))
        );
        // One tick = 11111.1 ns, rounded to 11111.
        assert_eq!(
            c.on_packet(7, 3_000_000_001).time,
            Some(UnixNanos(T0 + 11_111))
        );
        // The latest SR wins: the phone's clock moved 2 ms against RTP.
        assert!(c.on_sender_report(&sr(7, T0 + 1_002_000_000, 3_000_090_000)));
        assert_eq!(
            c.on_packet(7, 3_000_094_500).time,
            Some(UnixNanos(T0 + 1_052_000_000))
        );
        assert_eq!(c.stats().sender_reports, 2);
    }

    #[test]
    fn sender_report_rule_across_the_u32_wrap() {
        let mut c = SrClock::new(ClockRate::VIDEO);
        // SR 296 ticks before the wrap, packet 704 ticks after it: 1000 ticks = 11.111 ms.
        assert!(c.on_sender_report(&sr(1, T0, 4_294_967_000)));
        let p = c.on_packet(1, 704);
        assert_eq!(p.rtp.extended(), (1i64 << 32) + 704);
        assert_eq!(p.rtp.wire(), 704);
        assert_eq!(p.time, Some(UnixNanos(T0 + 11_111_111)));
        // The official client's float rule without unwrap is off by 2^32 / 90000 s here.
        let py = (704.0 / 90_000.0 + (T0 as f64 / 1e9 - 4_294_967_000.0 / 90_000.0)) * 1e9;
        assert!((py - (T0 + 11_111_111) as f64).abs() > 47_000.0 * 1e9);
        // An SR after the wrap while packets are still before it (reordered SR): same result.
        let mut c = SrClock::new(ClockRate::VIDEO);
        c.on_packet(1, 4_294_967_000);
        assert!(c.on_sender_report(&sr(1, T0 + 11_111_111, 704)));
        assert_eq!(c.on_packet(1, 4_294_967_000).time, Some(UnixNanos(T0)));
    }

    #[test]
    fn ssrc_change_and_foreign_reports_reset_or_are_ignored() {
        let mut c = SrClock::new(ClockRate::new(1000).unwrap());
        assert!(c.on_sender_report(&sr(5, T0, 100)));
        assert!(!c.on_sender_report(&sr(6, 0, 0)));
        assert_eq!(c.stats().foreign_sender_reports, 1);
        assert_eq!(c.on_packet(5, 101).time, Some(UnixNanos(T0 + 1_000_000)));
        let p = c.on_packet(6, 50);
        assert!(p.ssrc_changed);
        assert_eq!(p.time, None);
        assert!(!c.is_anchored());
        c.reset();
        assert!(c.on_sender_report(&sr(9, T0, 0)));
    }

    #[test]
    fn stamp_queue_holds_items_until_the_first_sender_report() {
        let mut q = StampQueue::new(ClockRate::new(1000).unwrap(), 3);
        for i in 0..4u32 {
            q.push(1, 10 + i, i);
            assert!(q.pop().is_none());
        }
        // Capacity 3: the first item was dropped.
        assert_eq!(q.stats().overflowed, 1);
        assert_eq!(q.len(), 3);
        assert!(q.on_sender_report(&sr(1, T0, 10)));
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            got.iter().map(|s| (s.item, s.time.0)).collect::<Vec<_>>(),
            vec![
                (1, T0 + 1_000_000),
                (2, T0 + 2_000_000),
                (3, T0 + 3_000_000)
            ]
        );
        assert_eq!(q.stats().stamped_late, 3);
        q.push(1, 20, 9);
        assert_eq!(q.pop().map(|s| s.time), Some(UnixNanos(T0 + 10_000_000)));
        assert_eq!(q.stats().stamped_late, 3);
        // A new SSRC: old state gone, its items wait again.
        q.push(2, 0, 10);
        assert!(q.pop().is_none());
        q.reset();
        assert_eq!(q.stats().discarded, 1);
        assert!(q.is_empty());
    }

    #[test]
    fn ticks_and_nanoseconds_convert_both_ways() {
        let c = ClockRate::VIDEO;
        assert_eq!(c.ns_to_ticks(1_000_000_000), 90_000);
        // -5555 ns = -0.49995 ticks rounds to 0; -5556 ns = -0.50004 ticks to -1.
        assert_eq!(c.ns_to_ticks(-5_555), 0);
        assert_eq!(c.ns_to_ticks(-5_556), -1);
        assert_eq!(c.ticks_to_ns(-1), -11_111);
        assert_eq!(ClockRate::new(0), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Stepping through many wraps with random increments, the integer rule equals the exact
        /// rational value `unix(SR) + (ticks since SR) * 1e9 / clock` rounded to nearest.
        #[test]
        fn stamps_match_exact_arithmetic(start: u32, hz in 1u32..200_000,
                                         steps in proptest::collection::vec(0u32..1 << 30, 1..40)) {
            let clock = ClockRate::new(hz).unwrap();
            let mut c = SrClock::new(clock);
            prop_assert!(c.on_sender_report(&sr(3, T0, start)));
            let mut ticks: i128 = 0;
            let mut ts = start;
            for s in steps {
                ts = ts.wrapping_add(s);
                ticks += i128::from(s);
                let got = c.on_packet(3, ts).time.unwrap().0 as i128;
                let exact_num = ticks * 1_000_000_000;
                let want = T0 as i128 + (2 * exact_num + i128::from(hz)) / (2 * i128::from(hz));
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn ns_ticks_round_trip_within_half_a_tick(hz in 1u32..200_000, ns in -1i64 << 50..1i64 << 50) {
            let c = ClockRate::new(hz).unwrap();
            let back = c.ticks_to_ns(c.ns_to_ticks(ns));
            let half_tick = 500_000_000 / i64::from(hz) + 1;
            prop_assert!((back - ns).abs() <= half_tick);
        }
    }
}
