//! Options that may change while the pipeline runs (the control API's `GET`/`PUT /config`): the
//! preview box, the overlay's appearance, the recorded frame rate and size of the next trial, and
//! the stream enables (gaze, imu, events, eyes, audio; kept in [`StreamSwitches`]).
//!
//! One mutex-guarded value plus a generation counter: the preview stage compares the counter
//! once per frame (one atomic load) and copies the values only after a change; the recorder
//! reads them at each start. Changes are validated field by field here, so a refusal names the
//! field (the key is the same as the `eyetrack run` flag and the config file key).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::cli::{parse_record_size as record_size, parse_rgb as rgb, parse_size as size};
use crate::overlay::{MarkerShape, OverlayStyle, Rgb};
use crate::streams::{Stream, StreamSwitches};

/// The run-time changeable values.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveValues {
    pub preview_size: (usize, usize),
    pub marker: MarkerShape,
    pub marker_radius: u32,
    pub marker_thickness: u32,
    pub worn_color: Rgb,
    pub not_worn_color: Rgb,
    pub hud: bool,
    /// Recording, from the next start on.
    pub record_fps: u32,
    /// Recording, from the next start on; `None` = the scene's size.
    pub record_size: Option<(usize, usize)>,
}

impl LiveValues {
    /// The preview's overlay style with these values (the rest as `base`).
    pub fn overlay_style(&self, base: &OverlayStyle) -> OverlayStyle {
        OverlayStyle {
            shape: self.marker,
            radius: self.marker_radius,
            thickness: self.marker_thickness,
            worn: self.worn_color,
            not_worn: self.not_worn_color,
            hud: self.hud,
            ..base.clone()
        }
    }

    /// As JSON, keys as the flags are named.
    pub fn to_json(&self) -> Value {
        let rgb = |c: Rgb| format!("{:02x}{:02x}{:02x}", c.r, c.g, c.b);
        let size = |(w, h): (usize, usize)| format!("{w}x{h}");
        json!({
            "preview-size": size(self.preview_size),
            "marker": match self.marker {
                MarkerShape::Circle => "circle",
                MarkerShape::Cross => "cross",
            },
            "marker-radius": self.marker_radius,
            "marker-thickness": self.marker_thickness,
            "worn-color": rgb(self.worn_color),
            "not-worn-color": rgb(self.not_worn_color),
            "hud": self.hud,
            "record-fps": self.record_fps,
            "record-size": self.record_size.map(size),
        })
    }
}

/// A refused change: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The keys `PUT /config` accepts (the stream enables are [`Stream::name`]s).
pub const KEYS: &[&str] = &[
    "preview-size",
    "marker",
    "marker-radius",
    "marker-thickness",
    "worn-color",
    "not-worn-color",
    "hud",
    "record-fps",
    "record-size",
    "gaze",
    "imu",
    "events",
    "eyes",
    "audio",
];

/// The stream enables as JSON (`"gaze": true`, ...), beside [`LiveValues::to_json`]'s keys.
pub fn streams_json(sw: &StreamSwitches, into: &mut Value) {
    if let Some(obj) = into.as_object_mut() {
        for s in Stream::ALL {
            obj.insert(s.name().into(), Value::Bool(sw.is_on(s)));
        }
    }
}

/// The stream switches a patch asks for, validated: booleans, and on only for a stream the run
/// set up (its RTSP session exists only if it was asked for at start, see [`crate::streams`]).
fn stream_patch(
    obj: &Map<String, Value>,
    sw: &StreamSwitches,
) -> Result<Vec<(Stream, bool)>, FieldError> {
    let mut out = Vec::new();
    for s in Stream::ALL {
        let Some(value) = obj.get(s.name()) else {
            continue;
        };
        let err = |message: String| FieldError {
            field: s.name().into(),
            message,
        };
        let on = value
            .as_bool()
            .ok_or_else(|| err(format!("expects true or false, not {value}")))?;
        if on && !sw.is_set_up(s) {
            return Err(err(format!(
                "was not set up at start; switching it on needs a restart with --{} on",
                s.name()
            )));
        }
        out.push((s, on));
    }
    Ok(out)
}

/// The shared, changeable values; generation 0 means never set (the pipeline's configuration
/// holds).
#[derive(Debug, Default)]
pub struct LiveConfig {
    values: Mutex<Option<LiveValues>>,
    generation: AtomicU64,
}

impl LiveConfig {
    /// Sets every value (at start, from the run's flags).
    pub fn set(&self, v: LiveValues) {
        if let Ok(mut g) = self.values.lock() {
            *g = Some(v);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// The values, if ever set.
    pub fn get(&self) -> Option<LiveValues> {
        self.values.lock().ok().and_then(|g| g.clone())
    }

    /// Bumped by every change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Applies the fields of a JSON object, all or none: the first field that is unknown or out
    /// of range is the error and nothing changes. Stream enables go to `streams`. Returns the
    /// new values.
    pub fn apply(&self, patch: &Value, streams: &StreamSwitches) -> Result<LiveValues, FieldError> {
        let obj = patch.as_object().ok_or_else(|| FieldError {
            field: "body".into(),
            message: "must be a JSON object of the fields to change".into(),
        })?;
        let mut g = self.values.lock().map_err(|_| FieldError {
            field: "config".into(),
            message: "unavailable".into(),
        })?;
        let Some(current) = g.as_ref() else {
            return Err(FieldError {
                field: "config".into(),
                message: "this pipeline was started without run-time configuration".into(),
            });
        };
        let switches = stream_patch(obj, streams)?;
        let next = patched(current, obj)?;
        *g = Some(next.clone());
        for (s, on) in switches {
            streams.set(s, on);
        }
        self.generation.fetch_add(1, Ordering::Release);
        Ok(next)
    }
}

fn patched(current: &LiveValues, obj: &Map<String, Value>) -> Result<LiveValues, FieldError> {
    let mut v = current.clone();
    for (key, value) in obj {
        let err = |message: String| FieldError {
            field: key.clone(),
            message,
        };
        let text = || {
            value
                .as_str()
                .ok_or_else(|| err(format!("expects a string, not {value}")))
        };
        let int = |lo: u64, hi: u64| {
            value
                .as_u64()
                .filter(|n| (lo..=hi).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| err(format!("{value} is not an integer in {lo}..={hi}")))
        };
        match key.as_str() {
            "preview-size" => v.preview_size = size(text()?).map_err(err)?,
            "marker" => {
                v.marker = match text()? {
                    "circle" => MarkerShape::Circle,
                    "cross" => MarkerShape::Cross,
                    other => return Err(err(format!("'{other}' is not circle or cross"))),
                }
            }
            "marker-radius" => v.marker_radius = int(1, 200)?,
            "marker-thickness" => v.marker_thickness = int(1, 50)?,
            "worn-color" => v.worn_color = rgb(text()?).map_err(err)?,
            "not-worn-color" => v.not_worn_color = rgb(text()?).map_err(err)?,
            "hud" => {
                v.hud = value
                    .as_bool()
                    .ok_or_else(|| err(format!("expects true or false, not {value}")))?
            }
            "record-fps" => v.record_fps = int(1, 30)?,
            // Checked and applied by [`stream_patch`] (they live in the stream switches).
            "gaze" | "imu" | "events" | "eyes" | "audio" => {}
            "record-size" => v.record_size = Some(record_size(text()?).map_err(err)?),
            other => {
                return Err(err(format!(
                    "unknown field '{other}'; changeable while running: {}",
                    KEYS.join(", ")
                )))
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> LiveValues {
        LiveValues {
            preview_size: (640, 360),
            marker: MarkerShape::Circle,
            marker_radius: 10,
            marker_thickness: 2,
            worn_color: Rgb {
                r: 255,
                g: 255,
                b: 0,
            },
            not_worn_color: Rgb { r: 255, g: 0, b: 0 },
            hud: true,
            record_fps: 5,
            record_size: None,
        }
    }

    #[test]
    fn changes_apply_all_or_nothing_and_errors_name_the_field() {
        let c = LiveConfig::default();
        let sw = StreamSwitches::default();
        assert!(c.apply(&json!({"hud": false}), &sw).is_err(), "never set");
        c.set(values());
        let g0 = c.generation();
        let v = c
            .apply(
                &json!({"preview-size": "320x240", "record-fps": 10, "worn-color": "00ff00"}),
                &sw,
            )
            .unwrap();
        assert_eq!(v.preview_size, (320, 240));
        assert_eq!(v.record_fps, 10);
        assert_eq!(v.worn_color, Rgb { r: 0, g: 255, b: 0 });
        assert!(c.generation() > g0);
        let e = c
            .apply(&json!({"hud": false, "record-fps": 99}), &sw)
            .unwrap_err();
        assert_eq!(e.field, "record-fps");
        assert!(c.get().unwrap().hud, "nothing applied, hud included");
        assert_eq!(c.get().unwrap().record_fps, 10);
        assert_eq!(
            c.apply(&json!({"record-size": "15x16"}), &sw)
                .unwrap_err()
                .field,
            "record-size"
        );
        let e = c.apply(&json!({"colour": 1}), &sw).unwrap_err();
        assert!(e.message.contains("unknown field 'colour'"), "{e}");
        assert_eq!(c.apply(&json!([1]), &sw).unwrap_err().field, "body");
        assert_eq!(c.get().unwrap().to_json()["preview-size"], "320x240");
    }

    #[test]
    fn stream_enables_switch_only_what_was_set_up() {
        let c = LiveConfig::default();
        c.set(values());
        let sw = StreamSwitches::default();
        c.apply(&json!({"gaze": false, "imu": false}), &sw).unwrap();
        assert!(!sw.is_on(Stream::Gaze) && !sw.is_on(Stream::Imu));
        let e = c.apply(&json!({"eyes": true}), &sw).unwrap_err();
        assert_eq!(e.field, "eyes");
        assert!(e.message.contains("--eyes on"), "{e}");
        // all or none: a bad value elsewhere leaves the switches alone
        let e = c.apply(&json!({"gaze": true, "hud": 3}), &sw).unwrap_err();
        assert_eq!(e.field, "hud");
        assert!(!sw.is_on(Stream::Gaze));
        assert_eq!(
            c.apply(&json!({"audio": "off"}), &sw).unwrap_err().field,
            "audio"
        );
        c.apply(&json!({"gaze": true, "eyes": false}), &sw).unwrap();
        let mut j = c.get().unwrap().to_json();
        streams_json(&sw, &mut j);
        assert_eq!(
            (j["gaze"].clone(), j["imu"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(j["eyes"], json!(false));
    }
}
