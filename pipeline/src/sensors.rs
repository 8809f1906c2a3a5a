//! Sensor samples that travel beside the video: gaze and IMU, stamped on the device clock.
//! Sources produce them; gaze matching and (later) the CSV writers consume them.

use serde::Serialize;

use crate::time::UnixNanos;

/// One gaze sample, in scene-camera pixel coordinates (origin top-left).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GazeSample {
    pub time: UnixNanos,
    pub x: f32,
    pub y: f32,
    /// Whether the glasses were on the head; the overlay colours the indicator by it.
    pub worn: bool,
    /// Pupil diameters in mm (left, right), when the device sends eye state (protocol doc
    /// 6.1, the 65-, 89- and 105-byte variants); recorded in the logger layout's GAZEDATA.
    pub pupil_mm: Option<[f32; 2]>,
}

/// One IMU sample as the Neon reports it: gyro in deg/s, acceleration in g, orientation as a
/// unit quaternion (w, x, y, z).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ImuSample {
    pub time: UnixNanos,
    pub gyro_dps: [f32; 3],
    pub accel_g: [f32; 3],
    pub quaternion: [f32; 4],
}
