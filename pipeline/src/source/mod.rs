//! Sources: where frames and sensor samples come from (the built-in synthetic scene now; fixture
//! replay and the Neon device later). A source yields items in arrival order.

use std::sync::Arc;

use crate::frame::Frame;
use crate::packet::FrameMeta;
use crate::profile::StageProfile;
use crate::sensors::{GazeSample, ImuSample};

pub mod synthetic;

/// One thing a source delivers.
#[derive(Debug, Clone)]
pub enum SourceItem {
    Frame { frame: Arc<Frame>, meta: FrameMeta },
    Gaze(GazeSample),
    Imu(ImuSample),
}

/// What a source says about itself, for reports and for sizing buffers downstream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceInfo {
    /// e.g. "synthetic".
    pub kind: String,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    pub format: crate::frame::PixelFormat,
    /// True when the frame stacks the scene over other tiles (eye images) and the scene is the
    /// top two thirds.
    pub tiled: bool,
    /// Stream length if known, in seconds.
    pub duration_s: Option<f64>,
}

/// A producer of frames and sensor samples.
///
/// `next_item` blocks until the next item is due (a paced source sleeps; a live one waits on
/// the network) and records its own phase timings (acquire, decode) into `profile`, since only
/// the source knows where waiting ends and work begins. `Ok(None)` is the end of the stream.
pub trait Source: Send {
    fn info(&self) -> SourceInfo;
    fn next_item(&mut self, profile: &mut StageProfile) -> Result<Option<SourceItem>, SourceError>;

    /// The pipeline tells the source, before the first item, how many of its frames can be
    /// held downstream at once, so a pooled source can allocate them all up front instead of
    /// growing mid-stream.
    fn reserve_in_flight(&mut self, _frames: usize) {}
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid source configuration: {0}")]
    Config(String),
    #[error("source I/O error: {0}")]
    Io(#[from] std::io::Error),
}
