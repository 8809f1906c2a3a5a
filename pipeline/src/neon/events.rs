//! Eye-event RTP payloads (protocol doc 6.3): saccades, fixations, their onsets, blinks and
//! keepalives, big-endian with exact sizes; decode to a typed enum and encode back.
//!
//! Hand-written for the same reason as gaze: fixed big-endian layouts. Unknown types and wrong
//! sizes are error values to count and skip (doc 10 item 8), not the end of the stream.

use thiserror::Error;

pub const TYPE_SACCADE: i32 = 0;
pub const TYPE_FIXATION: i32 = 1;
pub const TYPE_SACCADE_ONSET: i32 = 2;
pub const TYPE_FIXATION_ONSET: i32 = 3;
pub const TYPE_BLINK: i32 = 4;
pub const TYPE_KEEPALIVE: i32 = 5;

/// Sizes including the 4-byte type field.
pub const COMPLETED_LEN: usize = 60;
pub const ONSET_LEN: usize = 12;
pub const BLINK_LEN: usize = 20;
pub const KEEPALIVE_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("eye event payload of {len} bytes has no 4-byte type field")]
    TooShort { len: usize },
    #[error("eye event type {event_type} is unknown ({len} bytes)")]
    UnknownType { event_type: i32, len: usize },
    #[error("eye event type {event_type} has {len} bytes, expected {expected}")]
    WrongSize {
        event_type: i32,
        len: usize,
        expected: usize,
    },
}

/// A finished saccade or fixation. Positions in scene pixels, velocities in px/s; times are the
/// phone's Unix ns (use these, not the RTP time, doc 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CompletedEvent {
    pub start_ns: i64,
    pub end_ns: i64,
    pub start: [f32; 2],
    pub end: [f32; 2],
    pub mean: [f32; 2],
    pub amplitude_px: f32,
    pub amplitude_deg: f32,
    pub mean_velocity: f32,
    pub peak_velocity: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EyeEvent {
    Saccade(CompletedEvent),
    Fixation(CompletedEvent),
    SaccadeOnset {
        start_ns: i64,
    },
    FixationOnset {
        start_ns: i64,
    },
    Blink {
        start_ns: i64,
        end_ns: i64,
    },
    /// Sent to beat the client's 10 s silence timeout; its body (if any) carries nothing.
    Keepalive,
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    b.get(at..at + 8)
        .and_then(|s| s.first_chunk::<8>())
        .map_or(0, |s| i64::from_be_bytes(*s))
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    b.get(at..at + 4)
        .and_then(|s| s.first_chunk::<4>())
        .map_or(0.0, |s| f32::from_be_bytes(*s))
}

impl EyeEvent {
    pub fn event_type(&self) -> i32 {
        match self {
            EyeEvent::Saccade(_) => TYPE_SACCADE,
            EyeEvent::Fixation(_) => TYPE_FIXATION,
            EyeEvent::SaccadeOnset { .. } => TYPE_SACCADE_ONSET,
            EyeEvent::FixationOnset { .. } => TYPE_FIXATION_ONSET,
            EyeEvent::Blink { .. } => TYPE_BLINK,
            EyeEvent::Keepalive => TYPE_KEEPALIVE,
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, EventError> {
        let len = payload.len();
        let Some(t) = payload.first_chunk::<4>() else {
            return Err(EventError::TooShort { len });
        };
        let event_type = i32::from_be_bytes(*t);
        let expect = |expected: usize| {
            if len == expected {
                Ok(())
            } else {
                Err(EventError::WrongSize {
                    event_type,
                    len,
                    expected,
                })
            }
        };
        match event_type {
            TYPE_SACCADE | TYPE_FIXATION => {
                expect(COMPLETED_LEN)?;
                let f = |i: usize| f32_at(payload, 20 + 4 * i);
                let e = CompletedEvent {
                    start_ns: i64_at(payload, 4),
                    end_ns: i64_at(payload, 12),
                    start: [f(0), f(1)],
                    end: [f(2), f(3)],
                    mean: [f(4), f(5)],
                    amplitude_px: f(6),
                    amplitude_deg: f(7),
                    mean_velocity: f(8),
                    peak_velocity: f(9),
                };
                Ok(if event_type == TYPE_SACCADE {
                    EyeEvent::Saccade(e)
                } else {
                    EyeEvent::Fixation(e)
                })
            }
            TYPE_SACCADE_ONSET | TYPE_FIXATION_ONSET => {
                expect(ONSET_LEN)?;
                let start_ns = i64_at(payload, 4);
                Ok(if event_type == TYPE_SACCADE_ONSET {
                    EyeEvent::SaccadeOnset { start_ns }
                } else {
                    EyeEvent::FixationOnset { start_ns }
                })
            }
            TYPE_BLINK => {
                expect(BLINK_LEN)?;
                Ok(EyeEvent::Blink {
                    start_ns: i64_at(payload, 4),
                    end_ns: i64_at(payload, 12),
                })
            }
            TYPE_KEEPALIVE => Ok(EyeEvent::Keepalive),
            _ => Err(EventError::UnknownType { event_type, len }),
        }
    }

    /// Appends the payload to `out`; a keepalive is the bare 4-byte type.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.event_type().to_be_bytes());
        match *self {
            EyeEvent::Saccade(e) | EyeEvent::Fixation(e) => {
                out.extend_from_slice(&e.start_ns.to_be_bytes());
                out.extend_from_slice(&e.end_ns.to_be_bytes());
                let floats = [
                    e.start[0],
                    e.start[1],
                    e.end[0],
                    e.end[1],
                    e.mean[0],
                    e.mean[1],
                    e.amplitude_px,
                    e.amplitude_deg,
                    e.mean_velocity,
                    e.peak_velocity,
                ];
                for v in floats {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            EyeEvent::SaccadeOnset { start_ns } | EyeEvent::FixationOnset { start_ns } => {
                out.extend_from_slice(&start_ns.to_be_bytes());
            }
            EyeEvent::Blink { start_ns, end_ns } => {
                out.extend_from_slice(&start_ns.to_be_bytes());
                out.extend_from_slice(&end_ns.to_be_bytes());
            }
            EyeEvent::Keepalive => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_a_fixation_field_by_field() {
        let mut b = Vec::new();
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1_760_676_790_000_000_000i64.to_be_bytes());
        b.extend_from_slice(&1_760_676_790_250_000_000i64.to_be_bytes());
        for i in 0..10 {
            b.extend_from_slice(&(i as f32 + 0.5).to_be_bytes());
        }
        let EyeEvent::Fixation(f) = EyeEvent::decode(&b).unwrap() else {
            panic!("not a fixation");
        };
        assert_eq!(f.start_ns, 1_760_676_790_000_000_000);
        assert_eq!(f.end_ns, 1_760_676_790_250_000_000);
        assert_eq!(
            (f.start, f.end, f.mean),
            ([0.5, 1.5], [2.5, 3.5], [4.5, 5.5])
        );
        assert_eq!(
            (
                f.amplitude_px,
                f.amplitude_deg,
                f.mean_velocity,
                f.peak_velocity
            ),
            (6.5, 7.5, 8.5, 9.5)
        );
        let mut back = Vec::new();
        EyeEvent::Fixation(f).encode(&mut back);
        assert_eq!(back, b);
    }

    #[test]
    fn sizes_and_types_are_checked() {
        let blink = [&4i32.to_be_bytes()[..], &[0; 16]].concat();
        assert_eq!(
            EyeEvent::decode(&blink),
            Ok(EyeEvent::Blink {
                start_ns: 0,
                end_ns: 0
            })
        );
        assert_eq!(
            EyeEvent::decode(&blink[..19]),
            Err(EventError::WrongSize {
                event_type: 4,
                len: 19,
                expected: 20
            })
        );
        let onset = [&2i32.to_be_bytes()[..], &7i64.to_be_bytes()].concat();
        assert_eq!(
            EyeEvent::decode(&onset),
            Ok(EyeEvent::SaccadeOnset { start_ns: 7 })
        );
        assert_eq!(
            EyeEvent::decode(&[0, 0, 0, 5, 1, 2, 3]),
            Ok(EyeEvent::Keepalive)
        );
        assert_eq!(
            EyeEvent::decode(&[0, 0, 0, 6]),
            Err(EventError::UnknownType {
                event_type: 6,
                len: 4
            })
        );
        assert_eq!(
            EyeEvent::decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(EventError::UnknownType {
                event_type: -1,
                len: 4
            })
        );
        assert_eq!(
            EyeEvent::decode(&[0, 0, 5]),
            Err(EventError::TooShort { len: 3 })
        );
    }

    fn event_strategy() -> impl Strategy<Value = EyeEvent> {
        let completed = (
            any::<i64>(),
            any::<i64>(),
            proptest::collection::vec(any::<u32>(), 10),
        )
            .prop_map(|(s, e, f)| {
                let v = |i: usize| f32::from_bits(f[i]);
                CompletedEvent {
                    start_ns: s,
                    end_ns: e,
                    start: [v(0), v(1)],
                    end: [v(2), v(3)],
                    mean: [v(4), v(5)],
                    amplitude_px: v(6),
                    amplitude_deg: v(7),
                    mean_velocity: v(8),
                    peak_velocity: v(9),
                }
            });
        prop_oneof![
            completed.clone().prop_map(EyeEvent::Saccade),
            completed.prop_map(EyeEvent::Fixation),
            any::<i64>().prop_map(|start_ns| EyeEvent::SaccadeOnset { start_ns }),
            any::<i64>().prop_map(|start_ns| EyeEvent::FixationOnset { start_ns }),
            (any::<i64>(), any::<i64>())
                .prop_map(|(start_ns, end_ns)| EyeEvent::Blink { start_ns, end_ns }),
            Just(EyeEvent::Keepalive),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..72),
                                       t in 0u8..8) {
            // Put a plausible type in front half the time so every branch is reached.
            let mut b = b;
            if b.len() >= 4 && t < 6 {
                b[..4].copy_from_slice(&i32::from(t).to_be_bytes());
            }
            if let Ok(e) = EyeEvent::decode(&b) {
                let mut back = Vec::new();
                e.encode(&mut back);
                if e != EyeEvent::Keepalive {
                    prop_assert_eq!(back, b);
                }
            }
        }

        /// Typed -> bytes -> typed, floats compared by bit pattern via re-encoding.
        #[test]
        fn encode_decode_round_trip(e in event_strategy()) {
            let mut bytes = Vec::new();
            e.encode(&mut bytes);
            let back = EyeEvent::decode(&bytes).unwrap();
            let mut again = Vec::new();
            back.encode(&mut again);
            prop_assert_eq!(again, bytes);
            prop_assert_eq!(back.event_type(), e.event_type());
        }
    }
}
