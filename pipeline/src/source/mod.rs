//! Sources: where frames and sensor samples come from (the built-in synthetic scene, fixture
//! replay and the Neon device). A source yields items in arrival order.

use std::sync::Arc;

use crate::frame::Frame;
use crate::packet::FrameMeta;
use crate::profile::{Counters, StageProfile};
use crate::run_control::Control;
use crate::sensors::{GazeSample, ImuSample};
use crate::time::UnixNanos;

pub mod neon;
pub mod spec;
pub mod synthetic;

/// One thing a source delivers.
#[derive(Debug, Clone)]
pub enum SourceItem {
    Frame {
        frame: Arc<Frame>,
        meta: FrameMeta,
    },
    Gaze(GazeSample),
    Imu(ImuSample),
    /// A picture of the eye cameras (`--eyes on`; two 192x192 IR images side by side), decoded
    /// only while something records or previews it.
    EyeFrame {
        frame: Arc<Frame>,
        meta: FrameMeta,
    },
    /// Decoded scene-microphone audio (`--audio on`), one RTP packet's worth.
    Audio {
        block: Arc<crate::streams::AudioBlock>,
        meta: crate::streams::AudioMeta,
    },
    /// Something for the recording's events.csv: a stream gap, a reconnect, an eye event.
    /// Rare (a few per second at most), so the detail may be an owned string.
    Event {
        kind: &'static str,
        detail: String,
        device_time: Option<UnixNanos>,
        /// When the event ended, for events with a span (fixations, saccades, blinks).
        end_time: Option<UnixNanos>,
    },
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

    /// The source has the camera's H.264 in hand (a Neon stream, a fixture replay), so
    /// `--encoder passthrough` can record it as sent. Checked before streaming.
    fn delivers_h264(&self) -> bool {
        false
    }

    /// Set once, before the first item, when a recorder wants the world video as received: the
    /// source then calls `sink.access_unit` for every access unit it decodes, in arrival order,
    /// from the thread that calls `next_item`. Sources without H.264 ignore it.
    fn set_access_unit_sink(&mut self, _sink: Arc<dyn AccessUnitSink>) {}

    /// The pipeline hands the source its counters (a network source publishes loss, decode
    /// and reconnect counts there) and its control switches (`disconnected` for the preview),
    /// before the first item.
    fn bind(&mut self, _counters: &Arc<Counters>, _control: &Arc<Control>) {}
}

pub use crate::packet::AccessUnitSink;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid source configuration: {0}")]
    Config(String),
    #[error("source I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Fixture(#[from] crate::fixture::FixtureError),
    /// The network client cannot reach or use the device.
    #[error("{0}")]
    Network(String),
}
