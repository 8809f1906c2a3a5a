//! The run-time switches (`Control`) that the stages read and whoever drives the pipeline (CLI,
//! control API, tests) flips, kept below every stage so none of them imports the coordinator.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::live_config::LiveConfig;
use crate::streams::StreamSwitches;

/// Frames processed per frame offered while reduced processing is in force (plan 1.6).
pub const REDUCED_EVERY: u64 = 10;

/// Run-time switches other parts of the program (the CLI, the control API, tests) flip while the
/// pipeline runs.
#[derive(Debug)]
pub struct Control {
    pub preview_visible: AtomicBool,
    pub recording: AtomicBool,
    pub paused: AtomicBool,
    pub stop: AtomicBool,
    /// A network source lost its device and is reconnecting; the preview says so.
    pub disconnected: AtomicBool,
    /// Preview box, overlay look and the next recording's rate and size, changeable while
    /// running (the control API's `/config`); unset, the pipeline's configuration holds.
    pub live: LiveConfig,
    /// Run-time on/off of the optional streams (gaze, IMU, events, eyes, audio).
    pub streams: StreamSwitches,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            preview_visible: AtomicBool::new(true),
            recording: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            disconnected: AtomicBool::new(false),
            live: LiveConfig::default(),
            streams: StreamSwitches::default(),
        }
    }
}

impl Control {
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    /// A stop was asked for (signal, API, an error); the stages are ending.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
