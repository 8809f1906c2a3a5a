//! Pairs each video frame with a gaze sample by device time, by the rule the official Neon
//! client uses (`receive_matched_scene_video_frame_and_gaze`, protocol doc section 7).

use std::collections::VecDeque;

use crate::packet::MatchedGaze;
use crate::sensors::GazeSample;
use crate::time::UnixNanos;

/// Cache size of the official client; older samples fall off the front.
pub const CACHE_LEN: usize = 200;

/// The official client's matcher.
///
/// For a frame at time t it takes samples off the front of the cache until one is newer than
/// t and returns that one; if none is newer it returns the last one it took. Everything taken
/// is consumed. So a frame gets the first sample *after* it (not the nearest), or else the
/// newest older one, with no tolerance: we reproduce that so recordings line up with what
/// Pupil Labs' own tools would have paired, and keep the time difference so users can judge.
#[derive(Debug)]
pub struct GazeMatcher {
    cache: VecDeque<GazeSample>,
    /// The newest sample ever seen, used when the cache has been drained by an earlier frame.
    last_taken: Option<GazeSample>,
}

impl Default for GazeMatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl GazeMatcher {
    pub fn new() -> Self {
        GazeMatcher {
            cache: VecDeque::with_capacity(CACHE_LEN),
            last_taken: None,
        }
    }

    pub fn push(&mut self, sample: GazeSample) {
        if self.cache.len() == CACHE_LEN {
            self.cache.pop_front();
        }
        self.cache.push_back(sample);
    }

    /// The sample for a frame captured at `frame_time`, or `None` if no gaze has arrived yet.
    ///
    /// When the cache is empty (every sample consumed by earlier frames) the official client
    /// returns nothing new and its caller keeps showing the previous result; we return that
    /// previous sample explicitly so the overlay and the CSV always say which sample was used.
    pub fn match_frame(&mut self, frame_time: UnixNanos) -> Option<MatchedGaze> {
        let mut taken = None;
        while let Some(s) = self.cache.pop_front() {
            let newer = s.time > frame_time;
            taken = Some(s);
            if newer {
                break;
            }
        }
        if let Some(s) = taken {
            self.last_taken = Some(s);
        }
        self.last_taken.map(|sample| MatchedGaze {
            sample,
            dt_ns: sample.time.delta_ns(frame_time),
        })
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Starting a stream clears the cache in the official client; so does a reconnect here.
    pub fn clear(&mut self) {
        self.cache.clear();
        self.last_taken = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(t: i64) -> GazeSample {
        GazeSample {
            time: UnixNanos(t),
            x: t as f32,
            y: 0.0,
            worn: true,
            pupil_mm: None,
        }
    }

    #[test]
    fn returns_first_sample_after_the_frame_not_the_nearest() {
        let mut m = GazeMatcher::new();
        for t in [90, 99, 130] {
            m.push(g(t));
        }
        // 99 is nearer to 100, but the rule takes the first newer one.
        let r = m.match_frame(UnixNanos(100)).unwrap();
        assert_eq!(r.sample.time, UnixNanos(130));
        assert_eq!(r.dt_ns, 30);
        assert!(m.is_empty(), "everything taken is consumed");
    }

    #[test]
    fn falls_back_to_newest_older_sample() {
        let mut m = GazeMatcher::new();
        m.push(g(10));
        m.push(g(20));
        let r = m.match_frame(UnixNanos(25)).unwrap();
        assert_eq!(r.sample.time, UnixNanos(20));
        assert_eq!(r.dt_ns, -5);
    }

    #[test]
    fn samples_after_the_match_stay_for_the_next_frame() {
        let mut m = GazeMatcher::new();
        for t in [10, 40, 45, 70] {
            m.push(g(t));
        }
        assert_eq!(m.match_frame(UnixNanos(33)).unwrap().sample.time.0, 40);
        assert_eq!(m.len(), 2);
        assert_eq!(m.match_frame(UnixNanos(66)).unwrap().sample.time.0, 70);
    }

    #[test]
    fn empty_cache_repeats_previous_sample_or_none() {
        let mut m = GazeMatcher::new();
        assert!(m.match_frame(UnixNanos(5)).is_none());
        m.push(g(3));
        m.match_frame(UnixNanos(5));
        let r = m.match_frame(UnixNanos(38)).unwrap();
        assert_eq!(r.sample.time.0, 3);
        assert_eq!(r.dt_ns, -35);
    }

    #[test]
    fn cache_is_bounded() {
        let mut m = GazeMatcher::new();
        for t in 0..1000 {
            m.push(g(t));
        }
        assert_eq!(m.len(), CACHE_LEN);
        assert_eq!(m.match_frame(UnixNanos(-1)).unwrap().sample.time.0, 800);
    }
}
