//! Gaze RTP payloads (protocol doc 6.1): the six big-endian variants told apart by length,
//! decoded into one typed struct and encoded back byte for byte.
//!
//! Hand-written: fixed-layout big-endian floats; a serialization crate would add nothing. An
//! unknown length is an error value for the caller to count and skip (doc 10 item 8), where the
//! Python client ends the stream.

use thiserror::Error;

use crate::sensors::GazeSample;
use crate::time::UnixNanos;

/// The `worn` byte the phone sends when the glasses are on the head.
pub const WORN: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum GazeError {
    #[error("gaze payload of {len} bytes matches no known variant (9, 17, 25, 65, 89, 105)")]
    UnknownLength { len: usize },
    #[error("gaze fields present match no wire variant (binocular {binocular}, dual {dual}, eye state {eye_state}, eyelids {eyelids})")]
    UnencodableCombination {
        binocular: bool,
        dual: bool,
        eye_state: bool,
        eyelids: bool,
    },
}

/// A point in scene-camera pixels, origin top-left.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// Per-eye 3D state (the E block): pupil diameter in mm, eyeball centre (mm, scene-camera
/// frame) and optical axis.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EyeState {
    pub pupil_diameter_mm: f32,
    pub eyeball_center_mm: [f32; 3],
    pub optical_axis: [f32; 3],
}

/// Per-eye lid state (the L block): lid angles in radians, aperture in mm.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Eyelid {
    pub angle_top_rad: f32,
    pub angle_bottom_rad: f32,
    pub aperture_mm: f32,
}

/// Left and right values, left first as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PerEye<T> {
    pub left: T,
    pub right: T,
}

/// One gaze packet. Which fields are present says which wire variant it was.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NeonGaze {
    /// Binocular gaze; absent only in the 17-byte dual-monocular variant.
    pub binocular: Option<Point>,
    /// The raw `worn` byte (255 = worn); kept raw so re-encoding reproduces the bytes.
    pub worn: u8,
    pub dual_monocular: Option<PerEye<Point>>,
    pub eye_state: Option<PerEye<EyeState>>,
    pub eyelids: Option<PerEye<Eyelid>>,
}

/// Big-endian f32 reader over a payload whose length was checked up front.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn f(&mut self) -> f32 {
        let v = match self.b.get(self.pos..self.pos + 4) {
            Some(&[a, b, c, d]) => f32::from_be_bytes([a, b, c, d]),
            _ => 0.0,
        };
        self.pos += 4;
        v
    }
    fn u8(&mut self) -> u8 {
        let v = self.b.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }
    fn point(&mut self) -> Point {
        Point {
            x: self.f(),
            y: self.f(),
        }
    }
    fn eye(&mut self) -> EyeState {
        EyeState {
            pupil_diameter_mm: self.f(),
            eyeball_center_mm: [self.f(), self.f(), self.f()],
            optical_axis: [self.f(), self.f(), self.f()],
        }
    }
    fn lid(&mut self) -> Eyelid {
        Eyelid {
            angle_top_rad: self.f(),
            angle_bottom_rad: self.f(),
            aperture_mm: self.f(),
        }
    }
    fn per_eye<T>(&mut self, mut f: impl FnMut(&mut Self) -> T) -> PerEye<T> {
        let left = f(self);
        let right = f(self);
        PerEye { left, right }
    }
}

impl NeonGaze {
    pub fn is_worn(&self) -> bool {
        self.worn == WORN
    }

    /// Decodes one payload by its length (doc 6.1 table).
    pub fn decode(payload: &[u8]) -> Result<Self, GazeError> {
        let mut r = Reader { b: payload, pos: 0 };
        let mut g = NeonGaze::default();
        match payload.len() {
            9 => {
                g.binocular = Some(r.point());
                g.worn = r.u8();
            }
            17 => {
                let left = r.point();
                g.worn = r.u8();
                let right = r.point();
                g.dual_monocular = Some(PerEye { left, right });
            }
            25 => {
                g.binocular = Some(r.point());
                g.worn = r.u8();
                g.dual_monocular = Some(r.per_eye(Reader::point));
            }
            65 | 89 | 105 => {
                g.binocular = Some(r.point());
                g.worn = r.u8();
                g.eye_state = Some(r.per_eye(Reader::eye));
                if payload.len() >= 89 {
                    g.eyelids = Some(r.per_eye(Reader::lid));
                }
                if payload.len() == 105 {
                    g.dual_monocular = Some(r.per_eye(Reader::point));
                }
            }
            len => return Err(GazeError::UnknownLength { len }),
        }
        Ok(g)
    }

    /// Wire length of the variant these fields select.
    pub fn encoded_len(&self) -> Result<usize, GazeError> {
        let b = self.binocular.is_some();
        let d = self.dual_monocular.is_some();
        let e = self.eye_state.is_some();
        let l = self.eyelids.is_some();
        Ok(match (b, d, e, l) {
            (true, false, false, false) => 9,
            (false, true, false, false) => 17,
            (true, true, false, false) => 25,
            (true, false, true, false) => 65,
            (true, false, true, true) => 89,
            (true, true, true, true) => 105,
            _ => {
                return Err(GazeError::UnencodableCombination {
                    binocular: b,
                    dual: d,
                    eye_state: e,
                    eyelids: l,
                })
            }
        })
    }

    /// Appends the payload to `out` (the inverse of [`decode`](Self::decode)).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), GazeError> {
        let len = self.encoded_len()?;
        let start = out.len();
        let f = |out: &mut Vec<u8>, v: f32| out.extend_from_slice(&v.to_be_bytes());
        let point = |out: &mut Vec<u8>, p: Point| {
            f(out, p.x);
            f(out, p.y);
        };
        if len == 17 {
            if let Some(d) = self.dual_monocular {
                point(out, d.left);
                out.push(self.worn);
                point(out, d.right);
            }
            return Ok(());
        }
        if let Some(p) = self.binocular {
            point(out, p);
        }
        out.push(self.worn);
        if let Some(e) = self.eye_state {
            for eye in [e.left, e.right] {
                f(out, eye.pupil_diameter_mm);
                eye.eyeball_center_mm.iter().for_each(|&v| f(out, v));
                eye.optical_axis.iter().for_each(|&v| f(out, v));
            }
        }
        if let Some(l) = self.eyelids {
            for lid in [l.left, l.right] {
                f(out, lid.angle_top_rad);
                f(out, lid.angle_bottom_rad);
                f(out, lid.aperture_mm);
            }
        }
        if let Some(d) = self.dual_monocular {
            point(out, d.left);
            point(out, d.right);
        }
        debug_assert_eq!(out.len() - start, len);
        Ok(())
    }

    /// The gaze point the pipeline uses: the binocular point, or for the 17-byte
    /// dual-monocular variant (no binocular point on the wire) the mean of the two eyes'
    /// points, so a phone set to dual monocular still gives a gaze stream instead of every
    /// sample being counted as unknown.
    pub fn point(&self) -> Option<Point> {
        self.binocular.or_else(|| {
            self.dual_monocular.map(|d| Point {
                x: (d.left.x + d.right.x) / 2.0,
                y: (d.left.y + d.right.y) / 2.0,
            })
        })
    }

    /// The pipeline's sample at `time`: [`point`](Self::point), worn, pupil diameters.
    pub fn to_sample(&self, time: UnixNanos) -> Option<GazeSample> {
        let p = self.point()?;
        Some(GazeSample {
            time,
            x: p.x,
            y: p.y,
            worn: self.is_worn(),
            pupil_mm: self
                .eye_state
                .map(|e| [e.left.pupil_diameter_mm, e.right.pupil_diameter_mm]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn eye_state_gives_the_sample_its_pupil_diameters() {
        let mut g = NeonGaze {
            binocular: Some(Point { x: 1.0, y: 2.0 }),
            worn: WORN,
            ..NeonGaze::default()
        };
        assert_eq!(g.to_sample(UnixNanos(1)).unwrap().pupil_mm, None);
        let mut eye = PerEye::<EyeState>::default();
        eye.left.pupil_diameter_mm = 3.25;
        eye.right.pupil_diameter_mm = 4.5;
        g.eye_state = Some(eye);
        let mut wire = Vec::new();
        g.encode(&mut wire).unwrap();
        assert_eq!(wire.len(), 65);
        let back = NeonGaze::decode(&wire).unwrap();
        assert_eq!(
            back.to_sample(UnixNanos(1)).unwrap().pupil_mm,
            Some([3.25, 4.5])
        );
    }

    #[test]
    fn decodes_the_nine_byte_variant() {
        let mut b = Vec::new();
        b.extend_from_slice(&800.5f32.to_be_bytes());
        b.extend_from_slice(&600.25f32.to_be_bytes());
        b.push(255);
        let g = NeonGaze::decode(&b).unwrap();
        assert_eq!(
            g.binocular,
            Some(Point {
                x: 800.5,
                y: 600.25
            })
        );
        assert!(g.is_worn());
        assert!(g.dual_monocular.is_none() && g.eye_state.is_none());
        let s = g.to_sample(UnixNanos(5)).unwrap();
        assert_eq!(
            (s.x, s.y, s.worn, s.time),
            (800.5, 600.25, true, UnixNanos(5))
        );
    }

    #[test]
    fn decodes_field_order_of_every_variant() {
        // Each f32 slot holds its index so a swapped field shows up.
        for len in [9usize, 17, 25, 65, 89, 105] {
            let floats = (len - 1) / 4;
            let mut b = Vec::new();
            let worn_at = 2; // after two floats in every variant
            for i in 0..floats {
                if i == worn_at {
                    b.push(7);
                }
                b.extend_from_slice(&(i as f32).to_be_bytes());
            }
            if floats == worn_at {
                b.push(7);
            }
            assert_eq!(b.len(), len);
            let g = NeonGaze::decode(&b).unwrap();
            assert_eq!(g.worn, 7);
            assert!(!g.is_worn());
            match len {
                17 => {
                    let d = g.dual_monocular.unwrap();
                    assert_eq!((d.left.x, d.left.y, d.right.x, d.right.y), (0., 1., 2., 3.));
                    assert_eq!(g.point(), Some(Point { x: 1., y: 2. }));
                }
                _ => assert_eq!(g.binocular, Some(Point { x: 0., y: 1. })),
            }
            if len == 25 {
                assert_eq!(g.dual_monocular.unwrap().right, Point { x: 4., y: 5. });
            }
            if len >= 65 {
                let e = g.eye_state.unwrap();
                assert_eq!(e.left.pupil_diameter_mm, 2.);
                assert_eq!(e.left.optical_axis, [6., 7., 8.]);
                assert_eq!(e.right.pupil_diameter_mm, 9.);
                assert_eq!(e.right.eyeball_center_mm, [10., 11., 12.]);
            }
            if len >= 89 {
                let l = g.eyelids.unwrap();
                assert_eq!(l.left.angle_top_rad, 16.);
                assert_eq!(l.right.aperture_mm, 21.);
            }
            if len == 105 {
                let d = g.dual_monocular.unwrap();
                assert_eq!((d.left.x, d.right.y), (22., 25.));
            }
            let mut back = Vec::new();
            g.encode(&mut back).unwrap();
            assert_eq!(back, b, "variant {len}");
        }
    }

    #[test]
    fn unknown_lengths_and_combinations_are_errors() {
        for len in [0usize, 8, 10, 21, 77, 106] {
            assert_eq!(
                NeonGaze::decode(&vec![0; len]),
                Err(GazeError::UnknownLength { len })
            );
        }
        let g = NeonGaze {
            eyelids: Some(PerEye::default()),
            ..Default::default()
        };
        assert!(g.encode(&mut Vec::new()).is_err());
    }

    /// Big-endian bytes of the fields named in protocol doc 6.1, in table order.
    struct Wire(Vec<u8>);
    impl Wire {
        fn f(mut self, v: f32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn b(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        /// E block: pupil diameter, eyeball centre xyz, optical axis xyz.
        fn eye(self, base: f32) -> Self {
            (0..7).fold(self, |w, i| w.f(base + i as f32))
        }
        /// L block: lid angle top, lid angle bottom, aperture.
        fn lid(self, base: f32) -> Self {
            (0..3).fold(self, |w, i| w.f(base + i as f32))
        }
    }

    /// One payload of each documented length, built field by field from the doc's table (not
    /// with `encode`): x, y and worn come out of every one, and each variant's extra fields.
    #[test]
    fn every_documented_length_gives_a_sample() {
        let w = || Wire(Vec::new());
        let cases: Vec<(Vec<u8>, (f32, f32), u8)> = vec![
            // 9: x y B
            (w().f(800.0).f(600.0).b(255).0, (800.0, 600.0), 255),
            // 17: left x y, B, right x y (no binocular point: the mean of the eyes)
            (
                w().f(790.0).f(590.0).b(255).f(810.0).f(610.0).0,
                (800.0, 600.0),
                255,
            ),
            // 25: x y B, left x y, right x y
            (
                w().f(801.0).f(601.0).b(0).f(1.0).f(2.0).f(3.0).f(4.0).0,
                (801.0, 601.0),
                0,
            ),
            // 65: x y B, E_left, E_right
            (
                w().f(802.0).f(602.0).b(255).eye(10.0).eye(20.0).0,
                (802.0, 602.0),
                255,
            ),
            // 89: 65 + L_left, L_right
            (
                w().f(803.0)
                    .f(603.0)
                    .b(255)
                    .eye(10.0)
                    .eye(20.0)
                    .lid(30.0)
                    .lid(40.0)
                    .0,
                (803.0, 603.0),
                255,
            ),
            // 105: 89 + left x y, right x y
            (
                w().f(804.0)
                    .f(604.0)
                    .b(255)
                    .eye(10.0)
                    .eye(20.0)
                    .lid(30.0)
                    .lid(40.0)
                    .f(50.0)
                    .f(51.0)
                    .f(52.0)
                    .f(53.0)
                    .0,
                (804.0, 604.0),
                255,
            ),
        ];
        let lens: Vec<usize> = cases.iter().map(|c| c.0.len()).collect();
        assert_eq!(lens, [9, 17, 25, 65, 89, 105]);
        for (bytes, (x, y), worn) in &cases {
            let len = bytes.len();
            let g = NeonGaze::decode(bytes).unwrap_or_else(|e| panic!("{len}: {e}"));
            let s = g
                .to_sample(UnixNanos(7))
                .unwrap_or_else(|| panic!("{len}: no sample"));
            assert_eq!((s.x, s.y, s.worn), (*x, *y, *worn == WORN), "{len} bytes");
            if len >= 65 {
                let e = g.eye_state.unwrap();
                assert_eq!(s.pupil_mm, Some([10.0, 20.0]), "{len}");
                assert_eq!(e.left.eyeball_center_mm, [11.0, 12.0, 13.0]);
                assert_eq!(e.right.optical_axis, [24.0, 25.0, 26.0]);
            }
            if len >= 89 {
                let l = g.eyelids.unwrap();
                assert_eq!((l.left.angle_top_rad, l.right.aperture_mm), (30.0, 42.0));
            }
            match len {
                17 => {
                    let d = g.dual_monocular.unwrap();
                    assert_eq!((d.left.x, d.right.y), (790.0, 610.0));
                }
                25 => assert_eq!(g.dual_monocular.unwrap().right, Point { x: 3.0, y: 4.0 }),
                105 => assert_eq!(g.dual_monocular.unwrap().left, Point { x: 50.0, y: 51.0 }),
                _ => {}
            }
        }
        // Any other length is an error value (counted by the client), never a panic.
        assert_eq!(
            NeonGaze::decode(&[0u8; 33]),
            Err(GazeError::UnknownLength { len: 33 })
        );
    }

    fn bits(g: &NeonGaze) -> Vec<u8> {
        let mut v = Vec::new();
        g.encode(&mut v).unwrap();
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes: no panic; a decodable payload re-encodes to the same bytes (NaN payloads
        /// included, since f32 bit patterns are carried unchanged).
        #[test]
        fn decode_encode_round_trip(len in prop::sample::select(vec![0usize, 9, 17, 25, 64, 65, 89, 105, 120]),
                                    fill in proptest::collection::vec(any::<u8>(), 120)) {
            let b = &fill[..len];
            match NeonGaze::decode(b) {
                Ok(g) => prop_assert_eq!(bits(&g), b.to_vec()),
                Err(GazeError::UnknownLength { len: l }) => prop_assert_eq!(l, len),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }

        #[test]
        fn arbitrary_lengths_never_panic(b in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = NeonGaze::decode(&b);
        }

        /// Typed -> bytes -> typed (floats compared by bits).
        #[test]
        fn encode_decode_round_trip(variant in 0usize..6, worn: u8,
                                    f in proptest::collection::vec(any::<u32>(), 26)) {
            let v = |i: usize| f32::from_bits(f[i]);
            let p = |i: usize| Point { x: v(i), y: v(i + 1) };
            let eye = |i: usize| EyeState { pupil_diameter_mm: v(i),
                eyeball_center_mm: [v(i + 1), v(i + 2), v(i + 3)],
                optical_axis: [v(i + 4), v(i + 5), v(i + 6)] };
            let lid = |i: usize| Eyelid { angle_top_rad: v(i), angle_bottom_rad: v(i + 1), aperture_mm: v(i + 2) };
            let (b, d, e, l) = [(true, false, false, false), (false, true, false, false),
                (true, true, false, false), (true, false, true, false), (true, false, true, true),
                (true, true, true, true)][variant];
            let g = NeonGaze {
                binocular: b.then(|| p(0)),
                worn,
                dual_monocular: d.then(|| PerEye { left: p(2), right: p(4) }),
                eye_state: e.then(|| PerEye { left: eye(6), right: eye(13) }),
                eyelids: l.then(|| PerEye { left: lid(20), right: lid(23) }),
            };
            let bytes = bits(&g);
            prop_assert_eq!(bytes.len(), g.encoded_len().unwrap());
            let back = NeonGaze::decode(&bytes).unwrap();
            prop_assert_eq!(bits(&back), bytes);
        }
    }
}
