//! What travels between stages: a frame plus its metadata (the plan's FramePacket, 1.3) and the
//! gaze sample matched to it.

use std::sync::Arc;

use serde::Serialize;

use crate::frame::Frame;
use crate::sensors::GazeSample;
use crate::time::{MonoNanos, UnixNanos};

/// Timing facts about one camera frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FrameMeta {
    /// When the camera captured it, on the device clock.
    pub device_time: UnixNanos,
    /// The same instant on the host's monotonic clock, as well as the source can tell; the
    /// start of the end-to-end latency.
    pub capture_mono: MonoNanos,
    /// When the host had the whole frame.
    pub received_mono: MonoNanos,
    /// The camera's running frame number (gaps mean frames lost before us).
    pub camera_index: u64,
    /// How long the source waited for this frame (plan 1.3 `wait_ms`).
    pub wait_ns: u64,
}

/// A gaze sample paired with a frame, and how far apart they are in device time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MatchedGaze {
    pub sample: GazeSample,
    /// `gaze.time - frame.device_time` in nanoseconds (positive: gaze is newer).
    pub dt_ns: i64,
}

/// A frame on its way through the pipeline.
#[derive(Clone, Debug)]
pub struct FramePacket {
    pub frame: Arc<Frame>,
    pub meta: FrameMeta,
    pub gaze: Option<MatchedGaze>,
}

/// Takes the world video's H.264 access units as the device sent them (the passthrough
/// recorder, `record::Recorder`). Implementations never block the caller. Defined here, below
/// both, so the sources and the recorder never import each other.
pub trait AccessUnitSink: Send + Sync {
    /// `au`: one access unit in Annex B form (start codes, in-band SPS/PPS as received; the
    /// depacketizer's output). `device_time`: its capture time on the device clock.
    /// `received`: when the host had all of it. `is_idr`: it holds an IDR picture.
    fn access_unit(&self, au: &[u8], device_time: UnixNanos, received: MonoNanos, is_idr: bool);
}
