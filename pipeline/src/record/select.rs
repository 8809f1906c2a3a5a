//! Frame selection (plan 3.1): which camera frames become recorded frames, in timer mode (a
//! fixed output rate, repeating the latest frame) or camera mode (unique frames, thinned).

use serde::Serialize;

use crate::time::UnixNanos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FrameSelection {
    /// A fixed output rate; when the camera is slower, the latest frame repeats (marked in the
    /// timing CSV). Keeps a video's clock steady for playback against other streams.
    Timer,
    /// Unique camera frames only, thinned to the recording rate by frame-index ratio: no
    /// repeats, frame-accurate analysis, smaller files.
    Camera,
}

/// What to do with one incoming camera frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Output slots this frame fills; 0 = skip it.
    pub emit: u32,
    /// Output slots that had no new frame and must repeat the previous one, emitted before
    /// this frame's own slots.
    pub repeat_previous: u32,
}

/// Timer mode runs on the stream's own clock (device time), not the host's, so the same
/// recording comes out of a paced live run and an as-fast-as-possible replay, and a stalled
/// camera's missing slots are filled with repeats of the last frame once time moves on.
#[derive(Debug)]
pub struct Selector {
    mode: FrameSelection,
    period_ns: i64,
    /// How early a frame may come and still take a slot: half a camera frame interval (at
    /// most half an output period). Device times are RTP ticks (90 kHz) mapped to ns, so a
    /// 30 fps camera's frames land a nanosecond before or after the ns grid of a 30 fps
    /// recording at random; without the slack every third slot repeated the previous frame
    /// while the frame meant for it was skipped (seen on every imported fixture).
    early_ns: i64,
    ratio: u64,
    /// Device time of output slot 0.
    start: Option<UnixNanos>,
    /// The next output slot to fill.
    next_slot: u64,
    /// A frame has been emitted, so there is something to repeat.
    have_previous: bool,
    last_camera_index: Option<u64>,
}

/// Longest run of repeats timer mode writes after a gap (e.g. a reconnect): beyond this the
/// clock jumps instead, so a long outage becomes a gap event rather than minutes of one image.
pub const MAX_REPEATS: u32 = 300;

impl Selector {
    /// `record_fps` is the output rate; `camera_fps` the source's nominal rate (camera mode's
    /// thinning ratio).
    pub fn new(mode: FrameSelection, record_fps: u32, camera_fps: f64) -> Self {
        let fps = record_fps.max(1);
        let ratio = if camera_fps > 0.0 {
            ((camera_fps / fps as f64).round() as u64).max(1)
        } else {
            1
        };
        let period_ns = 1_000_000_000 / fps as i64;
        let camera_period_ns = if camera_fps.is_finite() && camera_fps > 0.0 {
            (1e9 / camera_fps) as i64
        } else {
            period_ns
        };
        Selector {
            mode,
            period_ns,
            early_ns: camera_period_ns.min(period_ns) / 2,
            ratio,
            start: None,
            next_slot: 0,
            have_previous: false,
            last_camera_index: None,
        }
    }

    pub fn mode(&self) -> FrameSelection {
        self.mode
    }

    /// Decides for the next camera frame, given in arrival order.
    pub fn offer(&mut self, device_time: UnixNanos, camera_index: u64) -> Decision {
        let skip = Decision {
            emit: 0,
            repeat_previous: 0,
        };
        if self.last_camera_index == Some(camera_index) {
            return skip;
        }
        self.last_camera_index = Some(camera_index);
        match self.mode {
            FrameSelection::Camera => {
                if camera_index.is_multiple_of(self.ratio) {
                    Decision {
                        emit: 1,
                        repeat_previous: 0,
                    }
                } else {
                    skip
                }
            }
            FrameSelection::Timer => {
                let start = *self.start.get_or_insert(device_time);
                let elapsed = device_time.delta_ns(start);
                if elapsed < 0 {
                    // Time went backwards (a reconnect with a new clock): restart the grid.
                    self.start = Some(device_time);
                    self.next_slot = 0;
                    return self.offer_again(device_time);
                }
                // Slots whose time has come: every slot k with k * period <= elapsed + slack.
                let due = (elapsed.saturating_add(self.early_ns) / self.period_ns) as u64 + 1;
                if due <= self.next_slot {
                    return skip;
                }
                let pending = due - self.next_slot;
                // The newest due slot takes this frame; the earlier ones had no fresher frame
                // than the previous one.
                let mut repeats = if self.have_previous { pending - 1 } else { 0 };
                if repeats > MAX_REPEATS as u64 {
                    repeats = 0;
                }
                self.next_slot = due;
                self.have_previous = true;
                Decision {
                    emit: 1,
                    repeat_previous: repeats as u32,
                }
            }
        }
    }

    fn offer_again(&mut self, device_time: UnixNanos) -> Decision {
        let idx = self.last_camera_index.take().unwrap_or(0);
        self.offer(device_time, idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sel: &mut Selector, fps: f64, frames: u64) -> (u64, u64) {
        let (mut out, mut rep) = (0, 0);
        for i in 0..frames {
            let t = UnixNanos(1_000_000_000_000 + (i as f64 * 1e9 / fps) as i64);
            let d = sel.offer(t, i);
            out += d.emit as u64 + d.repeat_previous as u64;
            rep += d.repeat_previous as u64;
        }
        (out, rep)
    }

    #[test]
    fn timer_mode_thins_30_to_5_fps_without_repeats() {
        let mut s = Selector::new(FrameSelection::Timer, 5, 30.0);
        // 12 s of camera frames -> 60 output slots.
        assert_eq!(run(&mut s, 30.0, 360), (60, 0));
    }

    #[test]
    fn timer_mode_at_the_camera_rate_keeps_every_frame_despite_rounding() {
        // RTP ticks (3000 per frame at 90 kHz) to ns and back: some frames land 1 ns before
        // the recording's grid of 33_333_333 ns slots, others after.
        for fps in [30u32, 10, 5] {
            let mut s = Selector::new(FrameSelection::Timer, fps, 30.0);
            let (mut out, mut rep) = (0u64, 0u64);
            for i in 0..600i64 {
                let t = UnixNanos(
                    1_767_225_600_000_000_000 + i * 3000 * 1_000_000_000 / 90_000 - (i % 3),
                );
                let d = s.offer(t, i as u64);
                out += u64::from(d.emit + d.repeat_previous);
                rep += u64::from(d.repeat_previous);
            }
            assert_eq!((out, rep), (600 * u64::from(fps) / 30, 0), "at {fps} fps");
        }
    }

    #[test]
    fn timer_mode_repeats_when_the_camera_is_slower() {
        let mut s = Selector::new(FrameSelection::Timer, 30, 10.0);
        // 3 s at 10 fps into a 30 fps output: 88 slots up to the last frame's time, 2 of every
        // 3 are repeats.
        let (out, rep) = run(&mut s, 10.0, 30);
        assert_eq!(out, 88);
        assert_eq!(rep, 58);
    }

    #[test]
    fn camera_mode_keeps_unique_frames_by_ratio() {
        let mut s = Selector::new(FrameSelection::Camera, 5, 30.0);
        assert_eq!(run(&mut s, 30.0, 360), (60, 0));
        let mut s = Selector::new(FrameSelection::Camera, 30, 10.0);
        assert_eq!(
            run(&mut s, 10.0, 30),
            (30, 0),
            "never repeats, never invents"
        );
    }

    #[test]
    fn the_same_camera_frame_twice_is_selected_once() {
        let mut s = Selector::new(FrameSelection::Camera, 30, 30.0);
        assert_eq!(s.offer(UnixNanos(0), 0).emit, 1);
        assert_eq!(s.offer(UnixNanos(0), 0).emit, 0);
    }

    #[test]
    fn a_long_gap_jumps_instead_of_repeating_for_minutes() {
        let sec = 1_000_000_000;
        let none = Decision {
            emit: 1,
            repeat_previous: 0,
        };
        let mut s = Selector::new(FrameSelection::Timer, 5, 30.0);
        assert_eq!(s.offer(UnixNanos(10 * sec), 0).emit, 1);
        assert_eq!(s.offer(UnixNanos(610 * sec), 1), none);
        // Time going backwards (a new device clock) restarts the grid.
        assert_eq!(s.offer(UnixNanos(sec), 2), none);
        assert_eq!(s.offer(UnixNanos(sec + sec / 5), 3), none);
    }
}
