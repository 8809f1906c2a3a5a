//! Typed timestamps: device time (Unix nanoseconds, the Neon's clock) and host monotonic time.
//! Keeping them apart in the type system stops the classic mix-up of the two clocks.

use serde::Serialize;

/// A device timestamp in nanoseconds since the Unix epoch (the clock the Neon stamps data with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct UnixNanos(pub i64);

impl UnixNanos {
    /// The host's wall clock now; used where a source has no device clock of its own.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UnixNanos(d.as_nanos() as i64)
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// Signed difference `self - other` in nanoseconds.
    pub fn delta_ns(self, other: UnixNanos) -> i64 {
        self.0.saturating_sub(other.0)
    }

    pub fn add_ns(self, ns: i64) -> Self {
        UnixNanos(self.0.saturating_add(ns))
    }
}

/// Host monotonic time (CLOCK_MONOTONIC) in nanoseconds. Comparable across processes on one
/// machine, which is what lets other loggers align their rows with ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct MonoNanos(pub u64);

impl MonoNanos {
    pub fn now() -> Self {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        MonoNanos(ts)
    }

    /// Nanoseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: MonoNanos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn add_ns(self, ns: u64) -> Self {
        MonoNanos(self.0.saturating_add(ns))
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_moves_forward() {
        let a = MonoNanos::now();
        let b = MonoNanos::now();
        assert!(b >= a);
        assert!(a.0 > 0);
        assert_eq!(a.since(b.add_ns(5)), 0);
    }

    #[test]
    fn unix_delta_is_signed() {
        assert_eq!(UnixNanos(10).delta_ns(UnixNanos(25)), -15);
        assert!(UnixNanos::now().0 > 1_600_000_000_000_000_000);
    }
}
