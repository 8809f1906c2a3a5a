//! The built-in synthetic source: a seeded, file-free scene camera (panned procedural texture with
//! sensor noise, optional eye tiles) plus 200 Hz gaze and ~110 Hz IMU on a repeating timeline.
//!
//! Everything costly is built once in [`SyntheticSource::new`]; a frame is then a strided copy of
//! a texture window with a noise table added at a per-frame offset, into a pooled buffer, so the
//! source costs about what a hardware decoder hand-off would and allocates nothing per frame.
//! Frame bytes and sample values are a pure function of the seed (device times are offset by the
//! wall clock at construction), which is what lets tests and benchmarks compare runs.
//!
//! The timeline repeats every [`CYCLE_S`] seconds: motion (pan), static (fixed window, fresh
//! noise), frozen (bit-identical frames, for duplicate detection); gaze is marked not-worn during
//! [`NOT_WORN_S`] of each cycle, which deliberately does not overlap the frozen part.

use std::f64::consts::{PI, TAU};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{Source, SourceError, SourceInfo, SourceItem};
use crate::color;
use crate::frame::{Frame, FramePool, PixelFormat};
use crate::packet::FrameMeta;
use crate::profile::{Phase, StageProfile};
use crate::sensors::{GazeSample, ImuSample};
use crate::time::{MonoNanos, UnixNanos};

/// Length of one timeline cycle, seconds of stream time.
pub const CYCLE_S: f64 = 10.0;
/// Motion runs from the start of a cycle to here.
pub const MOTION_END_S: f64 = 6.0;
/// Static runs from [`MOTION_END_S`] to here; frozen from here to [`CYCLE_S`].
pub const STATIC_END_S: f64 = 8.0;
/// Within each cycle the glasses are off the head during `[start, end)`.
pub const NOT_WORN_S: (f64, f64) = (3.0, 4.0);
pub const GAZE_PERIOD_NS: u64 = 5_000_000;
pub const IMU_HZ: f64 = 110.0;
/// Largest accepted frame rate; beyond it the "camera" would be unlike any real one.
pub const MAX_FPS: f64 = 240.0;
/// Largest accepted side, to keep a typo from allocating gigabytes of texture.
pub const MAX_SIDE: usize = 8192;
/// Neon scene camera horizontal field of view, used to turn pan speed into gyro rates.
const SCENE_HFOV_DEG: f64 = 103.0;
/// How far the per-frame noise offset can move; enough that consecutive frames never align.
const NOISE_SLACK: usize = 1 << 16;
const POOL_CAPACITY: usize = 8;

/// Where a stream time falls in the repeating timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Segment {
    /// The camera pans (smooth, varying speed and direction).
    Motion,
    /// Fixed window, fresh sensor noise every frame: frames differ only slightly.
    Static,
    /// Bit-identical frames, as from a stalled camera or a repeating decoder.
    Frozen,
}

pub fn segment_at(t_s: f64) -> Segment {
    let u = t_s.rem_euclid(CYCLE_S);
    if u < MOTION_END_S {
        Segment::Motion
    } else if u < STATIC_END_S {
        Segment::Static
    } else {
        Segment::Frozen
    }
}

/// Pupil diameters (left, right) in mm at `t_s`: a slow swing between about 2.5 and 4.5 mm,
/// the right eye a little larger, so the recorded columns carry values that move.
pub fn pupil_mm_at(t_s: f64) -> [f32; 2] {
    let d = 3.5 + (t_s * 0.7).sin();
    [d as f32, (d + 0.1) as f32]
}

/// Whether the synthetic wearer has the glasses on at stream time `t_s`.
pub fn worn_at(t_s: f64) -> bool {
    let u = t_s.rem_euclid(CYCLE_S);
    !(NOT_WORN_S.0..NOT_WORN_S.1).contains(&u)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SyntheticFormat {
    I420,
    Gray,
    Bgr,
    Rgba,
    Bgra,
    /// I420, scene on top (width x height) and two eye tiles below (height / 2 rows), like the
    /// Neon's stacked scene+eyes stream.
    Tiled,
}

impl SyntheticFormat {
    pub fn pixel_format(self) -> PixelFormat {
        match self {
            SyntheticFormat::I420 | SyntheticFormat::Tiled => PixelFormat::I420,
            SyntheticFormat::Gray => PixelFormat::Gray8,
            SyntheticFormat::Bgr => PixelFormat::Bgr24,
            SyntheticFormat::Rgba => PixelFormat::Rgba,
            SyntheticFormat::Bgra => PixelFormat::Bgra,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct SyntheticConfig {
    /// Scene width in pixels.
    pub width: usize,
    /// Scene height in pixels (the tiled frame is 1.5x this).
    pub height: usize,
    pub fps: f64,
    pub format: SyntheticFormat,
    /// Stream length; `None` runs forever.
    pub duration: Option<Duration>,
    pub seed: u64,
    /// Deliver items at their stream time (like a camera) rather than as fast as possible.
    pub paced: bool,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            width: 1600,
            height: 1200,
            fps: 30.0,
            format: SyntheticFormat::I420,
            duration: None,
            seed: 1,
            paced: true,
        }
    }
}

impl SyntheticConfig {
    fn validate(&self) -> Result<(), SourceError> {
        let err = |m: String| Err(SourceError::Config(m));
        if self.width == 0 || self.height == 0 {
            return err(format!(
                "synthetic size {}x{} must be non-zero",
                self.width, self.height
            ));
        }
        if self.width > MAX_SIDE || self.height > MAX_SIDE {
            return err(format!(
                "synthetic size {}x{} exceeds {MAX_SIDE} per side",
                self.width, self.height
            ));
        }
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= MAX_FPS) {
            return err(format!(
                "synthetic fps {} must be in (0, {MAX_FPS}]",
                self.fps
            ));
        }
        if self.format != SyntheticFormat::Gray && (self.width | self.height) & 1 != 0 {
            return err(format!(
                "synthetic size {}x{} must be even for {:?} (4:2:0 chroma)",
                self.width, self.height, self.format
            ));
        }
        Ok(())
    }
}

/// A seeded generator for one purpose (`stream`) and one index, so any frame's or cycle's random
/// choices can be made without replaying the ones before it.
fn rng_for(seed: u64, stream: u64, index: u64) -> Pcg64Mcg {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(23)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ index.wrapping_mul(0xA24B_AED4_963E_E407).rotate_left(11);
    Pcg64Mcg::seed_from_u64(mixed)
}

const STREAM_TEXTURE: u64 = 1;
const STREAM_NOISE_TABLE: u64 = 2;
const STREAM_PAN: u64 = 3;
const STREAM_WOBBLE: u64 = 4;
const STREAM_FRAME_NOISE: u64 = 5;
const STREAM_FROZEN_NOISE: u64 = 6;
const STREAM_GAZE: u64 = 7;
const STREAM_IMU: u64 = 8;
const STREAM_EYES: u64 = 9;

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

fn smootherstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * x * (x * (x * 6.0 - 15.0) + 10.0)
}

/// The camera path: window offsets into the texture as a function of stream time. Each cycle
/// moves between two anchors on roughly opposite sides of the texture (so every motion segment
/// really moves), with a perpendicular wobble; static and frozen hold the end anchor.
#[derive(Clone, Copy, Debug)]
struct PanPath {
    seed: u64,
    /// Largest window offsets (texture size minus frame size).
    max_x: f64,
    max_y: f64,
}

impl PanPath {
    fn anchor(&self, k: u64) -> (f64, f64) {
        let mut rng = rng_for(self.seed, STREAM_PAN, k);
        let theta = k as f64 * PI + rng.random_range(-PI / 3.0..PI / 3.0);
        let r = rng.random_range(0.6..1.0);
        let (cx, cy) = (self.max_x / 2.0, self.max_y / 2.0);
        (cx + r * cx * theta.cos(), cy + r * cy * theta.sin())
    }

    fn at(&self, t_s: f64) -> (f64, f64) {
        let t_s = t_s.max(0.0);
        let k = (t_s / CYCLE_S).floor() as u64;
        let u = t_s - k as f64 * CYCLE_S;
        let a = self.anchor(k);
        let b = self.anchor(k + 1);
        if u >= MOTION_END_S {
            return b;
        }
        let s = smootherstep(u / MOTION_END_S);
        let mut rng = rng_for(self.seed, STREAM_WOBBLE, k);
        let amp = rng.random_range(0.08..0.2) * self.max_x.min(self.max_y);
        let freq = rng.random_range(0.25..0.6);
        let phase = rng.random_range(0.0..TAU);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = dx.hypot(dy).max(1e-9);
        let (px, py) = (-dy / len, dx / len);
        // zero at both ends of the segment, so speed stays continuous into the static part
        let w = amp * (PI * u / MOTION_END_S).sin() * (TAU * freq * u + phase).sin();
        (
            (a.0 + dx * s + px * w).clamp(0.0, self.max_x),
            (a.1 + dy * s + py * w).clamp(0.0, self.max_y),
        )
    }

    fn velocity(&self, t_s: f64) -> (f64, f64) {
        let h = 1e-3;
        let a = self.at(t_s - h);
        let b = self.at(t_s + h);
        ((b.0 - a.0) / (2.0 * h), (b.1 - a.1) / (2.0 * h))
    }
}

/// Fixation/saccade state machine over the scene. Fixations lock onto a point of the world, so
/// while the camera pans the gaze drifts across the image the way a fixated object would.
#[derive(Debug)]
struct GazeGen {
    rng: Pcg64Mcg,
    width: f64,
    height: f64,
    state: GazeState,
}

#[derive(Debug, Clone, Copy)]
enum GazeState {
    Fixation {
        until_s: f64,
        at: (f64, f64),
        pan0: (f64, f64),
    },
    Saccade {
        start_s: f64,
        end_s: f64,
        from: (f64, f64),
        to: (f64, f64),
    },
}

impl GazeGen {
    fn new(seed: u64, width: usize, height: usize) -> Self {
        GazeGen {
            rng: rng_for(seed, STREAM_GAZE, 0),
            width: width as f64,
            height: height as f64,
            state: GazeState::Fixation {
                until_s: 0.2,
                at: (width as f64 / 2.0, height as f64 / 2.0),
                pan0: (f64::NAN, f64::NAN),
            },
        }
    }

    fn clamp(&self, p: (f64, f64)) -> (f64, f64) {
        (
            p.0.clamp(0.0, self.width - 1.0),
            p.1.clamp(0.0, self.height - 1.0),
        )
    }

    /// The gaze at `t_s`; calls must come in increasing time order.
    fn sample(&mut self, t_s: f64, pan: &PanPath) -> (f64, f64) {
        loop {
            match self.state {
                GazeState::Fixation { until_s, at, pan0 } => {
                    let pan0 = if pan0.0.is_nan() { pan.at(0.0) } else { pan0 };
                    let now_pan = pan.at(t_s.min(until_s));
                    let p = self.clamp((at.0 - (now_pan.0 - pan0.0), at.1 - (now_pan.1 - pan0.1)));
                    if t_s < until_s {
                        let jx = self.rng.random_range(-1.5..1.5);
                        let jy = self.rng.random_range(-1.5..1.5);
                        return self.clamp((p.0 + jx, p.1 + jy));
                    }
                    let to = (
                        self.rng.random_range(0.05..0.95) * self.width,
                        self.rng.random_range(0.05..0.95) * self.height,
                    );
                    let dur = self.rng.random_range(0.020..0.060);
                    self.state = GazeState::Saccade {
                        start_s: until_s,
                        end_s: until_s + dur,
                        from: p,
                        to,
                    };
                }
                GazeState::Saccade {
                    start_s,
                    end_s,
                    from,
                    to,
                } => {
                    if t_s < end_s {
                        let s = smoothstep((t_s - start_s) / (end_s - start_s));
                        return self
                            .clamp((from.0 + (to.0 - from.0) * s, from.1 + (to.1 - from.1) * s));
                    }
                    let dur = self.rng.random_range(0.150..0.400);
                    self.state = GazeState::Fixation {
                        until_s: end_s + dur,
                        at: to,
                        pan0: pan.at(end_s),
                    };
                }
            }
        }
    }
}

/// Pupil placement for the eye tiles; held constant while frozen so those frames stay identical.
#[derive(Clone, Copy, Debug, PartialEq)]
struct EyeParams {
    /// Gaze in -0.5..0.5 of the scene.
    gx: f64,
    gy: f64,
    /// Pupil radius as a fraction of tile height.
    pupil: f64,
    worn: bool,
}

/// Everything built once: textures, noise table, eye backgrounds.
struct Scene {
    width: usize,
    height: usize,
    tex_w: usize,
    tex: Vec<u8>,
    ctex_w: usize,
    ctex_u: Vec<u8>,
    ctex_v: Vec<u8>,
    noise: Vec<i8>,
    /// Eye tile size and backgrounds (empty unless tiled).
    eye_w: usize,
    eye_h: usize,
    eyes: [Vec<u8>; 2],
}

/// Multi-octave value noise in 0..1, normalized to use the whole range.
fn fbm(rng: &mut Pcg64Mcg, w: usize, h: usize, base_cell: usize) -> Vec<f32> {
    let mut acc = vec![0f32; w * h];
    let mut amp = 1.0f32;
    let mut cell = base_cell.max(2);
    let mut tmp = Vec::new();
    loop {
        let gw = w / cell + 2;
        let gh = h / cell + 2;
        let lattice: Vec<f32> = (0..gw * gh).map(|_| rng.random::<f32>()).collect();
        let cols: Vec<(usize, f32)> = (0..w)
            .map(|x| {
                let f = (x % cell) as f64 / cell as f64;
                (x / cell, smoothstep(f) as f32)
            })
            .collect();
        tmp.resize(gw, 0.0);
        for y in 0..h {
            let iy = y / cell;
            let fy = smoothstep((y % cell) as f64 / cell as f64) as f32;
            let r0 = &lattice[iy * gw..(iy + 1) * gw];
            let r1 = &lattice[(iy + 1) * gw..(iy + 2) * gw];
            for ((t, &a), &b) in tmp.iter_mut().zip(r0).zip(r1) {
                *t = a + (b - a) * fy;
            }
            let row = &mut acc[y * w..(y + 1) * w];
            for (v, &(ix, fx)) in row.iter_mut().zip(&cols) {
                let a = tmp[ix];
                *v += amp * (a + (tmp[ix + 1] - a) * fx);
            }
        }
        amp *= 0.6;
        if cell <= 3 {
            break;
        }
        cell /= 2;
    }
    let (lo, hi) = acc
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(1e-6);
    acc.iter_mut().for_each(|v| *v = (*v - lo) / span);
    acc
}

/// Hard-edged shapes (rectangles, discs, stripe patches) over the noise: edges and fine
/// periodic detail are what resizers and perceptual hashes react to.
fn add_shapes(rng: &mut Pcg64Mcg, acc: &mut [f32], w: usize, h: usize) {
    let count = w * h / 40_000 + 4;
    let min_dim = w.min(h) as f64;
    for _ in 0..count {
        let kind = rng.random_range(0..3u32);
        let cx = rng.random_range(0.0..w as f64);
        let cy = rng.random_range(0.0..h as f64);
        let r = rng.random_range((min_dim / 80.0).max(2.0)..(min_dim / 12.0).max(3.0));
        let ry = r * rng.random_range(0.5..1.5);
        let level = rng.random::<f32>();
        let period = rng.random_range(2..9usize);
        let x0 = (cx - r).max(0.0) as usize;
        let x1 = ((cx + r) as usize).min(w);
        let y0 = (cy - ry).max(0.0) as usize;
        let y1 = ((cy + ry) as usize).min(h);
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = ((x as f64 - cx) / r, (y as f64 - cy) / ry);
                let (inside, l) = match kind {
                    0 => (true, level),
                    1 => (dx * dx + dy * dy <= 1.0, level),
                    _ => (
                        true,
                        if (x + y / 2) / period % 2 == 0 {
                            level
                        } else {
                            1.0 - level
                        },
                    ),
                };
                if inside {
                    let v = &mut acc[y * w + x];
                    *v = 0.3 * *v + 0.7 * l;
                }
            }
        }
    }
}

fn to_luma(v: f32) -> u8 {
    (16.0 + 219.0 * v.clamp(0.0, 1.0)).round() as u8
}

impl Scene {
    fn new(cfg: &SyntheticConfig) -> (Scene, PanPath) {
        let (w, h) = (cfg.width, cfg.height);
        // pan room on each side, even so chroma offsets stay exact
        let mx = (w / 4).max(2) & !1;
        let my = (h / 4).max(2) & !1;
        let (tex_w, tex_h) = (w + 2 * mx, h + 2 * my);
        let mut rng = rng_for(cfg.seed, STREAM_TEXTURE, 0);
        let mut acc = fbm(&mut rng, tex_w, tex_h, (w / 8).max(4));
        add_shapes(&mut rng, &mut acc, tex_w, tex_h);
        let tex: Vec<u8> = acc.iter().map(|&v| to_luma(v)).collect();
        drop(acc);

        let (ctex_w, ctex_h) = (tex_w / 2, tex_h / 2);
        let lam = |f: f64| ctex_w as f64 * f;
        let (l1, l2, l3, l4) = (lam(0.7), lam(0.45), lam(0.6), lam(0.9));
        let phases: [f64; 4] = std::array::from_fn(|_| rng.random_range(0.0..TAU));
        let mut ctex_u = vec![128u8; ctex_w * ctex_h];
        let mut ctex_v = vec![128u8; ctex_w * ctex_h];
        for y in 0..ctex_h {
            for x in 0..ctex_w {
                let (xf, yf) = (x as f64, y as f64);
                let u = 128.0
                    + 55.0 * (TAU * xf / l1 + phases[0]).sin()
                    + 30.0 * (TAU * yf / l2 + phases[1]).sin();
                let v = 128.0
                    + 55.0 * (TAU * yf / l3 + phases[2]).sin()
                    + 30.0 * (TAU * (xf + yf) / l4 + phases[3]).sin();
                ctex_u[y * ctex_w + x] = u.clamp(16.0, 240.0) as u8;
                ctex_v[y * ctex_w + x] = v.clamp(16.0, 240.0) as u8;
            }
        }

        // sensor-like noise: sum of four 2-bit uniforms, centred: -6..=6, sigma ~2.2
        let mut rng = rng_for(cfg.seed, STREAM_NOISE_TABLE, 0);
        let mut noise = vec![0i8; w * h + NOISE_SLACK];
        for chunk in noise.chunks_mut(8) {
            let r = rng.random::<u64>();
            for (i, n) in chunk.iter_mut().enumerate() {
                let b = (r >> (8 * i)) as u8;
                *n = ((b & 3) + ((b >> 2) & 3) + ((b >> 4) & 3) + (b >> 6)) as i8 - 6;
            }
        }

        let (eye_w, eye_h, eyes) = if cfg.format == SyntheticFormat::Tiled {
            let (ew, eh) = (w / 2, h / 2);
            let mut rng = rng_for(cfg.seed, STREAM_EYES, 0);
            let mut make = || {
                let skin = fbm(&mut rng, ew, eh, (eh / 3).max(4));
                let mut img = vec![0u8; ew * eh];
                let (cx, cy) = (ew as f64 / 2.0, eh as f64 / 2.0);
                let (rx, ry) = (ew as f64 * 0.38, eh as f64 * 0.3);
                for y in 0..eh {
                    for x in 0..ew {
                        let (dx, dy) = ((x as f64 - cx) / rx, (y as f64 - cy) / ry);
                        let eye = if dx * dx + dy * dy <= 1.0 { 35.0 } else { 0.0 };
                        img[y * ew + x] = (45.0 + 40.0 * skin[y * ew + x] as f64 + eye) as u8;
                    }
                }
                img
            };
            let left = make();
            let right = make();
            (ew, eh, [left, right])
        } else {
            (0, 0, [Vec::new(), Vec::new()])
        };

        let scene = Scene {
            width: w,
            height: h,
            tex_w,
            tex,
            ctex_w,
            ctex_u,
            ctex_v,
            noise,
            eye_w,
            eye_h,
            eyes,
        };
        let pan = PanPath {
            seed: cfg.seed,
            max_x: (2 * mx) as f64,
            max_y: (2 * my) as f64,
        };
        (scene, pan)
    }

    /// Scene luma: texture window at (ox, oy) plus noise from table offset `n0`.
    fn render_luma(&self, dst: &mut [u8], stride: usize, ox: usize, oy: usize, n0: usize) {
        let w = self.width;
        for y in 0..self.height {
            let src = &self.tex[(oy + y) * self.tex_w + ox..][..w];
            let nz = &self.noise[n0 + y * w..][..w];
            add_noise(&mut dst[y * stride..][..w], src, nz);
        }
    }

    fn render_chroma(
        &self,
        u: &mut [u8],
        v: &mut [u8],
        strides: (usize, usize),
        ox: usize,
        oy: usize,
    ) {
        let (cw, ch) = (self.width / 2, self.height / 2);
        let (cx, cy) = (ox / 2, oy / 2);
        for y in 0..ch {
            let s = (cy + y) * self.ctex_w + cx;
            u[y * strides.0..][..cw].copy_from_slice(&self.ctex_u[s..s + cw]);
            v[y * strides.1..][..cw].copy_from_slice(&self.ctex_v[s..s + cw]);
        }
    }

    /// Eye tile `i` into luma rows starting at `dst` (already offset to the tile's top-left).
    fn render_eye(&self, i: usize, dst: &mut [u8], stride: usize, p: &EyeParams, n0: usize) {
        let (ew, eh) = (self.eye_w, self.eye_h);
        let base = &self.eyes[i];
        for y in 0..eh {
            let nz = &self.noise[n0 + y * ew..][..ew];
            add_noise(&mut dst[y * stride..][..ew], &base[y * ew..][..ew], nz);
        }
        if !p.worn {
            return;
        }
        let (ewf, ehf) = (ew as f64, eh as f64);
        let cx = ewf / 2.0 + p.gx * ewf * 0.5;
        let cy = ehf / 2.0 + p.gy * ehf * 0.4;
        let pupil = p.pupil * ehf;
        draw_disc(dst, stride, (ew, eh), (cx, cy), pupil * 2.2, |d| {
            30 + (d >> 3)
        });
        draw_disc(dst, stride, (ew, eh), (cx, cy), pupil, |d| 8 + (d >> 4));
        let glint = (ehf * 0.015).max(1.0);
        let (gx, gy) = (cx - pupil * 0.4, cy - pupil * 0.4);
        draw_disc(dst, stride, (ew, eh), (gx, gy), glint, |_| 250);
    }
}

/// Adds signed noise with saturation; a straight zip so it auto-vectorizes.
#[inline]
fn add_noise(dst: &mut [u8], src: &[u8], noise: &[i8]) {
    for ((d, &s), &n) in dst.iter_mut().zip(src).zip(noise) {
        *d = s.saturating_add_signed(n);
    }
}

fn draw_disc(
    dst: &mut [u8],
    stride: usize,
    (w, h): (usize, usize),
    (cx, cy): (f64, f64),
    r: f64,
    shade: impl Fn(u8) -> u8,
) {
    let y0 = (cy - r).floor().max(0.0) as usize;
    let y1 = ((cy + r).ceil().max(0.0) as usize).min(h);
    for y in y0..y1 {
        let dy = y as f64 + 0.5 - cy;
        let half = r * r - dy * dy;
        if half <= 0.0 {
            continue;
        }
        let half = half.sqrt();
        let x0 = (cx - half).round().max(0.0) as usize;
        let x1 = ((cx + half).round().max(0.0) as usize).min(w);
        if x0 >= x1 {
            continue;
        }
        for d in &mut dst[y * stride + x0..y * stride + x1] {
            *d = shade(*d);
        }
    }
}

enum Next {
    Frame,
    Gaze,
    Imu,
}

/// The built-in default source; see the module docs.
pub struct SyntheticSource {
    cfg: SyntheticConfig,
    scene: Scene,
    pan: PanPath,
    gaze: GazeGen,
    imu_rng: Pcg64Mcg,
    pool: FramePool,
    /// I420 rendering target for the packed-colour formats.
    scratch: Frame,
    eye: EyeParams,
    last_gaze: (f64, f64, bool),
    base_time: UnixNanos,
    start_mono: Option<MonoNanos>,
    end_ns: Option<u64>,
    next_frame: u64,
    next_gaze: u64,
    next_imu: u64,
    px_per_deg: f64,
}

impl SyntheticSource {
    pub fn new(cfg: SyntheticConfig) -> Result<Self, SourceError> {
        cfg.validate()?;
        let (scene, pan) = Scene::new(&cfg);
        let scratch = if cfg.format.pixel_format().is_packed() {
            Frame::new(PixelFormat::I420, cfg.width, cfg.height)
        } else {
            Frame::new(PixelFormat::Gray8, 0, 0)
        };
        Ok(SyntheticSource {
            gaze: GazeGen::new(cfg.seed, cfg.width, cfg.height),
            imu_rng: rng_for(cfg.seed, STREAM_IMU, 0),
            pool: FramePool::new(POOL_CAPACITY),
            scratch,
            eye: EyeParams {
                gx: 0.0,
                gy: 0.0,
                pupil: 0.09,
                worn: true,
            },
            last_gaze: (cfg.width as f64 / 2.0, cfg.height as f64 / 2.0, true),
            base_time: UnixNanos::now(),
            start_mono: None,
            end_ns: cfg
                .duration
                .map(|d| d.as_nanos().min(u64::MAX as u128) as u64),
            next_frame: 0,
            next_gaze: 0,
            next_imu: 0,
            px_per_deg: cfg.width as f64 / SCENE_HFOV_DEG,
            scene,
            pan,
            cfg,
        })
    }

    /// Device time of stream time zero (the wall clock at construction).
    pub fn base_time(&self) -> UnixNanos {
        self.base_time
    }

    /// Frames the internal pool has allocated; flat after warm-up.
    pub fn pool_allocations(&self) -> u64 {
        self.pool.allocations()
    }

    fn frame_time_ns(&self, k: u64) -> u64 {
        (k as f64 * 1e9 / self.cfg.fps).round() as u64
    }

    fn imu_time_ns(k: u64) -> u64 {
        (k as f64 * 1e9 / IMU_HZ).round() as u64
    }

    fn frame_height(&self) -> usize {
        match self.cfg.format {
            SyntheticFormat::Tiled => self.cfg.height + self.cfg.height / 2,
            _ => self.cfg.height,
        }
    }

    /// Renders frame `k` at stream time `t_ns` into a pooled frame.
    fn render(&mut self, k: u64, t_ns: u64) -> Result<std::sync::Arc<Frame>, SourceError> {
        let t_s = t_ns as f64 / 1e9;
        let segment = segment_at(t_s);
        let (px, py) = self.pan.at(t_s);
        let ox = ((px / 2.0).round() as usize * 2).min(self.pan.max_x as usize);
        let oy = ((py / 2.0).round() as usize * 2).min(self.pan.max_y as usize);
        let mut rng = if segment == Segment::Frozen {
            rng_for(self.cfg.seed, STREAM_FROZEN_NOISE, (t_s / CYCLE_S) as u64)
        } else {
            rng_for(self.cfg.seed, STREAM_FRAME_NOISE, k)
        };
        let n_scene = rng.random_range(0..NOISE_SLACK);
        let n_eyes = [
            rng.random_range(0..NOISE_SLACK),
            rng.random_range(0..NOISE_SLACK),
        ];
        if segment != Segment::Frozen {
            let (gx, gy, worn) = self.last_gaze;
            self.eye = EyeParams {
                gx: gx / self.cfg.width as f64 - 0.5,
                gy: gy / self.cfg.height as f64 - 0.5,
                pupil: 0.09 + 0.012 * (TAU * 0.3 * t_s).sin(),
                worn,
            };
        }

        let (w, h) = (self.cfg.width, self.cfg.height);
        let full_h = self.frame_height();
        let format = self.cfg.format;
        let SyntheticSource {
            scene,
            pool,
            scratch,
            eye,
            ..
        } = self;
        let render_i420 = |f: &mut Frame| {
            let [y, u, v] = f.planes_mut();
            scene.render_luma(y.data, y.stride, ox, oy, n_scene);
            scene.render_chroma(u.data, v.data, (u.stride, v.stride), ox, oy);
            if format == SyntheticFormat::Tiled {
                let (ew, eh) = (scene.eye_w, scene.eye_h);
                for (i, n0) in n_eyes.into_iter().enumerate() {
                    let start = h * y.stride + i * ew;
                    scene.render_eye(i, &mut y.data[start..], y.stride, eye, n0);
                }
                debug_assert!(h + eh <= full_h);
                for c in [u, v] {
                    for row in h / 2..c.height {
                        c.data[row * c.stride..][..c.width].fill(128);
                    }
                }
            }
        };
        let out = match format {
            SyntheticFormat::I420 | SyntheticFormat::Tiled => {
                pool.fill::<SourceError>(PixelFormat::I420, w, full_h, |f| {
                    render_i420(f);
                    Ok(())
                })?
            }
            SyntheticFormat::Gray => pool.fill::<SourceError>(PixelFormat::Gray8, w, h, |f| {
                let y = f.plane_mut(0);
                scene.render_luma(y.data, y.stride, ox, oy, n_scene);
                Ok(())
            })?,
            SyntheticFormat::Bgr | SyntheticFormat::Rgba | SyntheticFormat::Bgra => {
                scratch.reset(PixelFormat::I420, w, h);
                render_i420(scratch);
                let to = format.pixel_format();
                pool.fill(to, w, h, |f| {
                    color::convert(&scratch.view(), f, to)
                        .map_err(|e| SourceError::Config(format!("synthetic colour: {e}")))
                })?
            }
        };
        Ok(out)
    }

    fn imu_sample(&mut self, t_ns: u64) -> ImuSample {
        let t_s = t_ns as f64 / 1e9;
        let (vx, vy) = self.pan.velocity(t_s);
        let (px, py) = self.pan.at(t_s);
        let ppd = self.px_per_deg;
        // window moving right = head turning right (negative yaw about z, up); down = pitch down
        let yaw_deg = -(px - self.pan.max_x / 2.0) / ppd;
        let pitch_deg = -(py - self.pan.max_y / 2.0) / ppd;
        let rng = &mut self.imu_rng;
        let mut n = |s: f64| rng.random_range(-s..s) as f32;
        let gyro_dps = [
            (-vy / ppd) as f32 + n(0.3),
            n(0.3),
            (-vx / ppd) as f32 + n(0.3),
        ];
        let pitch = pitch_deg.to_radians();
        let accel_g = [
            n(0.02),
            (-pitch.sin()) as f32 + n(0.02),
            pitch.cos() as f32 + n(0.02),
        ];
        let (hy, hp) = (yaw_deg.to_radians() / 2.0, pitch / 2.0);
        // q = q_yaw(z) * q_pitch(x)
        let q = [
            hy.cos() * hp.cos(),
            hy.cos() * hp.sin(),
            hy.sin() * hp.sin(),
            hy.sin() * hp.cos(),
        ];
        let norm = q.iter().map(|c| c * c).sum::<f64>().sqrt().max(1e-12);
        ImuSample {
            time: self.base_time.add_ns(t_ns as i64),
            gyro_dps,
            accel_g,
            quaternion: q.map(|c| (c / norm) as f32),
        }
    }
}

impl Source for SyntheticSource {
    fn reserve_in_flight(&mut self, frames: usize) {
        // The pool hands out frames of the delivered format and full (tiled) height.
        let format = self.cfg.format.pixel_format();
        let (w, h) = (self.cfg.width, self.frame_height());
        // One more than downstream holds: the frame being rendered.
        self.pool.preallocate(frames + 1, format, w, h);
    }

    fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "synthetic".to_string(),
            width: self.cfg.width,
            height: self.frame_height(),
            fps: self.cfg.fps,
            format: self.cfg.format.pixel_format(),
            tiled: self.cfg.format == SyntheticFormat::Tiled,
            duration_s: self.cfg.duration.map(|d| d.as_secs_f64()),
        }
    }

    fn next_item(&mut self, profile: &mut StageProfile) -> Result<Option<SourceItem>, SourceError> {
        let tf = self.frame_time_ns(self.next_frame);
        let tg = self.next_gaze * GAZE_PERIOD_NS;
        let ti = Self::imu_time_ns(self.next_imu);
        // ties go frame, gaze, IMU: a stable order keeps runs comparable
        let (next, t_ns) = if tf <= tg && tf <= ti {
            (Next::Frame, tf)
        } else if tg <= ti {
            (Next::Gaze, tg)
        } else {
            (Next::Imu, ti)
        };
        if self.end_ns.is_some_and(|end| t_ns >= end) {
            return Ok(None);
        }
        let start = *self.start_mono.get_or_insert_with(MonoNanos::now);
        let due = start.add_ns(t_ns);
        let mut wait_ns = 0;
        if self.cfg.paced {
            let now = MonoNanos::now();
            if now < due {
                std::thread::sleep(Duration::from_nanos(due.since(now)));
                wait_ns = MonoNanos::now().since(now);
            }
        }
        let device_time = self.base_time.add_ns(t_ns as i64);
        let item = match next {
            Next::Frame => {
                let k = self.next_frame;
                self.next_frame += 1;
                let capture_mono = if self.cfg.paced {
                    due
                } else {
                    MonoNanos::now()
                };
                let span = profile.start();
                let frame = self.render(k, t_ns)?;
                profile.finish(Phase::Acquire, span);
                let received_mono = MonoNanos::now();
                SourceItem::Frame {
                    frame,
                    meta: FrameMeta {
                        device_time,
                        capture_mono,
                        received_mono,
                        camera_index: k,
                        wait_ns,
                    },
                }
            }
            Next::Gaze => {
                self.next_gaze += 1;
                let t_s = t_ns as f64 / 1e9;
                let (x, y) = self.gaze.sample(t_s, &self.pan);
                let worn = worn_at(t_s);
                self.last_gaze = (x, y, worn);
                SourceItem::Gaze(GazeSample {
                    time: device_time,
                    x: x as f32,
                    y: y as f32,
                    worn,
                    pupil_mm: worn.then(|| pupil_mm_at(t_s)),
                })
            }
            Next::Imu => {
                self.next_imu += 1;
                SourceItem::Imu(self.imu_sample(t_ns))
            }
        };
        Ok(Some(item))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn cfg(width: usize, height: usize, format: SyntheticFormat, secs: f64) -> SyntheticConfig {
        SyntheticConfig {
            width,
            height,
            format,
            duration: Some(Duration::from_secs_f64(secs)),
            paced: false,
            ..SyntheticConfig::default()
        }
    }

    fn drain(src: &mut SyntheticSource) -> Vec<SourceItem> {
        let mut profile = StageProfile::new(false);
        let mut items = Vec::new();
        while let Some(item) = src.next_item(&mut profile).unwrap() {
            items.push(item);
        }
        items
    }

    fn frames(items: &[SourceItem]) -> Vec<(Arc<Frame>, FrameMeta)> {
        items
            .iter()
            .filter_map(|i| match i {
                SourceItem::Frame { frame, meta } => Some((Arc::clone(frame), *meta)),
                _ => None,
            })
            .collect()
    }

    fn item_time(i: &SourceItem) -> UnixNanos {
        match i {
            SourceItem::Frame { meta, .. } => meta.device_time,
            SourceItem::Gaze(g) => g.time,
            SourceItem::Imu(s) => s.time,
            other => unreachable!("the synthetic source emits no {other:?}"),
        }
    }

    /// Items with device times made relative to stream start, for comparing two sources.
    fn normalized(items: &[SourceItem], base: UnixNanos) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                SourceItem::Frame { frame, meta } => format!(
                    "F{} {} {:?}",
                    meta.camera_index,
                    meta.device_time.delta_ns(base),
                    frame.data()
                ),
                SourceItem::Gaze(g) => {
                    format!("G{} {} {} {}", g.time.delta_ns(base), g.x, g.y, g.worn)
                }
                SourceItem::Event { kind, .. } => format!("E{kind}"),
                SourceItem::EyeFrame { .. } | SourceItem::Audio { .. } => "X".to_string(),
                SourceItem::Imu(m) => format!(
                    "I{} {:?} {:?} {:?}",
                    m.time.delta_ns(base),
                    m.gyro_dps,
                    m.accel_g,
                    m.quaternion
                ),
            })
            .collect()
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.abs_diff(*y) as u64)
            .sum::<u64>() as f64
            / a.len() as f64
    }

    #[test]
    fn segments_and_worn_follow_the_timeline() {
        assert_eq!(segment_at(0.0), Segment::Motion);
        assert_eq!(segment_at(5.99), Segment::Motion);
        assert_eq!(segment_at(6.0), Segment::Static);
        assert_eq!(segment_at(8.5), Segment::Frozen);
        assert_eq!(segment_at(13.0), Segment::Motion);
        assert_eq!(segment_at(19.99), Segment::Frozen);
        assert!(worn_at(2.9) && !worn_at(3.5) && worn_at(4.0) && !worn_at(13.2));
        for i in 0..100 {
            let t = i as f64 * 0.1;
            assert!(worn_at(t) || segment_at(t) != Segment::Frozen);
        }
    }

    #[test]
    fn same_seed_is_bit_identical_and_other_seed_differs() {
        let c = cfg(160, 120, SyntheticFormat::Tiled, 0.5);
        let mut a = SyntheticSource::new(c.clone()).unwrap();
        let mut b = SyntheticSource::new(c.clone()).unwrap();
        let ia = drain(&mut a);
        let ib = drain(&mut b);
        assert!(frames(&ia).len() >= 10);
        assert_eq!(
            normalized(&ia, a.base_time()),
            normalized(&ib, b.base_time())
        );

        let mut other = SyntheticSource::new(SyntheticConfig { seed: 2, ..c }).unwrap();
        let io = drain(&mut other);
        let fa = frames(&ia);
        let fo = frames(&io);
        assert_ne!(fa[0].0.data(), fo[0].0.data());
        assert_ne!(
            normalized(&ia[1..40], a.base_time()),
            normalized(&io[1..40], other.base_time())
        );
    }

    #[test]
    fn frozen_identical_static_noisy_motion_moves() {
        let mut src = SyntheticSource::new(cfg(320, 240, SyntheticFormat::Tiled, 10.0)).unwrap();
        let fr = frames(&drain(&mut src));
        assert_eq!(fr.len(), 300);
        let t =
            |f: &(Arc<Frame>, FrameMeta)| f.1.device_time.delta_ns(src.base_time()) as f64 / 1e9;
        let pick = |seg: Segment| -> Vec<&(Arc<Frame>, FrameMeta)> {
            fr.iter().filter(|f| segment_at(t(f)) == seg).collect()
        };
        let frozen = pick(Segment::Frozen);
        assert!(frozen.len() >= 59, "{}", frozen.len());
        for f in &frozen[1..] {
            assert_eq!(
                f.0.data(),
                frozen[0].0.data(),
                "frozen frames must not change"
            );
        }
        let stat = pick(Segment::Static);
        let mut static_diff: f64 = 0.0;
        // the scene only: the eye tiles below keep moving with the gaze
        let scene_len = 320 * 240;
        for pair in stat.windows(2) {
            let (a, b) = (
                &pair[0].0.data()[..scene_len],
                &pair[1].0.data()[..scene_len],
            );
            assert_ne!(a, b, "static frames carry fresh noise");
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap_or(0);
            assert!(
                worst <= 12,
                "static frames differ by noise only, got {worst}"
            );
            static_diff = static_diff.max(mean_abs_diff(a, b));
        }
        // the middle of the motion segment, where the pan is fastest
        let motion: Vec<_> = pick(Segment::Motion)
            .into_iter()
            .filter(|f| (2.0..4.0).contains(&t(f)))
            .collect();
        // at this small size the pan moves ~1 px a frame, so some neighbours share a window
        let motion_diff = motion
            .windows(2)
            .map(|p| mean_abs_diff(&p[0].0.data()[..scene_len], &p[1].0.data()[..scene_len]))
            .sum::<f64>()
            / (motion.len() - 1) as f64;
        assert!(
            motion_diff > 2.0 * static_diff,
            "motion {motion_diff} vs static {static_diff}"
        );
    }

    #[test]
    fn ten_seconds_have_the_right_rates_order_and_bounds() {
        let (w, h) = (320, 240);
        let mut src = SyntheticSource::new(cfg(w, h, SyntheticFormat::I420, 10.0)).unwrap();
        let items = drain(&mut src);
        let mut n = (0, 0, 0);
        let mut not_worn = 0;
        for pair in items.windows(2) {
            assert!(item_time(&pair[0]) <= item_time(&pair[1]), "time order");
        }
        for item in &items {
            match item {
                SourceItem::Frame { frame, meta } => {
                    assert_eq!(meta.camera_index, n.0);
                    assert_eq!(frame.format(), PixelFormat::I420);
                    n.0 += 1;
                }
                SourceItem::Gaze(g) => {
                    n.1 += 1;
                    assert!(
                        g.x >= 0.0 && g.x < w as f32 && g.y >= 0.0 && g.y < h as f32,
                        "{g:?}"
                    );
                    not_worn += usize::from(!g.worn);
                }
                SourceItem::Imu(m) => {
                    n.2 += 1;
                    let norm: f32 = m.quaternion.iter().map(|c| c * c).sum();
                    assert!((norm - 1.0).abs() < 1e-4);
                    let g: f32 = m.accel_g.iter().map(|c| c * c).sum::<f32>().sqrt();
                    assert!((g - 1.0).abs() < 0.1, "{m:?}");
                }
                other => panic!("unexpected item {other:?}"),
            }
        }
        assert_eq!(n.0, 300);
        assert!((1995..=2005).contains(&n.1), "{}", n.1);
        assert!((1090..=1110).contains(&n.2), "{}", n.2);
        // 1 s of 5 ms samples
        assert!((195..=205).contains(&not_worn), "{not_worn}");
    }

    #[test]
    fn gyro_follows_the_pan() {
        let mut src = SyntheticSource::new(cfg(320, 240, SyntheticFormat::Gray, 10.0)).unwrap();
        let t_ns = 3_000_000_000;
        let (vx, _) = src.pan.velocity(3.0);
        let s = src.imu_sample(t_ns);
        let expect = -vx / src.px_per_deg;
        assert!(
            expect.abs() > 1.0,
            "pan should be moving mid-motion: {expect}"
        );
        assert!(
            (s.gyro_dps[2] as f64 - expect).abs() < 0.5,
            "{s:?} vs {expect}"
        );
        let still = src.imu_sample(7_000_000_000);
        assert!(still.gyro_dps.iter().all(|g| g.abs() < 0.5), "{still:?}");
    }

    #[test]
    fn every_format_has_its_pixel_format_and_size() {
        let cases = [
            (SyntheticFormat::I420, PixelFormat::I420, 240),
            (SyntheticFormat::Gray, PixelFormat::Gray8, 240),
            (SyntheticFormat::Bgr, PixelFormat::Bgr24, 240),
            (SyntheticFormat::Rgba, PixelFormat::Rgba, 240),
            (SyntheticFormat::Bgra, PixelFormat::Bgra, 240),
            (SyntheticFormat::Tiled, PixelFormat::I420, 360),
        ];
        let mut profile = StageProfile::new(true);
        for (fmt, pf, fh) in cases {
            let mut src = SyntheticSource::new(cfg(320, 240, fmt, 1.0)).unwrap();
            let info = src.info();
            assert_eq!((info.format, info.width, info.height), (pf, 320, fh));
            assert_eq!(info.tiled, fmt == SyntheticFormat::Tiled);
            match src.next_item(&mut profile).unwrap() {
                Some(SourceItem::Frame { frame, .. }) => {
                    assert_eq!(
                        (frame.format(), frame.width(), frame.height()),
                        (pf, 320, fh)
                    );
                }
                other => panic!("first item should be a frame, got {other:?}"),
            }
        }
        assert_eq!(profile.count(Phase::Acquire), 6);
    }

    #[test]
    fn default_tiled_is_1600x1800_with_dark_eyes_below() {
        let c = SyntheticConfig {
            format: SyntheticFormat::Tiled,
            paced: false,
            ..SyntheticConfig::default()
        };
        let mut src = SyntheticSource::new(c).unwrap();
        let info = src.info();
        assert_eq!((info.width, info.height, info.tiled), (1600, 1800, true));
        let Some(SourceItem::Frame { frame, .. }) =
            src.next_item(&mut StageProfile::new(false)).unwrap()
        else {
            panic!("expected a frame");
        };
        assert_eq!((frame.width(), frame.height()), (1600, 1800));
        let y = frame.plane(0);
        let mean = |rows: std::ops::Range<usize>| {
            let n = rows.len() * 1600;
            rows.map(|r| y.row(r).iter().map(|&b| b as u64).sum::<u64>())
                .sum::<u64>() as f64
                / n as f64
        };
        let (scene, eyes) = (mean(0..1200), mean(1200..1800));
        assert!(
            eyes < scene,
            "eye tiles should be darker: {eyes} vs {scene}"
        );
        assert!(frame.plane(1).row(700).iter().all(|&c| c == 128));
    }

    #[test]
    fn invalid_configs_are_config_errors() {
        let bad = [
            SyntheticConfig {
                width: 0,
                ..SyntheticConfig::default()
            },
            SyntheticConfig {
                fps: 0.0,
                ..SyntheticConfig::default()
            },
            SyntheticConfig {
                fps: 241.0,
                ..SyntheticConfig::default()
            },
            SyntheticConfig {
                fps: f64::NAN,
                ..SyntheticConfig::default()
            },
            SyntheticConfig {
                width: 321,
                ..SyntheticConfig::default()
            },
            SyntheticConfig {
                height: 9,
                format: SyntheticFormat::Bgr,
                ..SyntheticConfig::default()
            },
        ];
        for c in bad {
            match SyntheticSource::new(c.clone()) {
                Err(SourceError::Config(msg)) => assert!(msg.contains("synthetic"), "{msg}"),
                Err(e) => panic!("{c:?}: wrong error {e}"),
                Ok(_) => panic!("{c:?} should be rejected"),
            }
        }
        let odd_gray = SyntheticConfig {
            width: 161,
            height: 121,
            format: SyntheticFormat::Gray,
            ..SyntheticConfig::default()
        };
        assert!(SyntheticSource::new(odd_gray).is_ok());
    }

    #[test]
    fn pool_recycles_when_frames_are_dropped() {
        let mut src = SyntheticSource::new(cfg(160, 120, SyntheticFormat::Bgr, 100.0)).unwrap();
        let mut profile = StageProfile::new(false);
        let mut seen = 0;
        while seen < 100 {
            if let Some(SourceItem::Frame { .. }) = src.next_item(&mut profile).unwrap() {
                seen += 1;
            }
        }
        // the pool's whole capacity on first use, and nothing after
        assert_eq!(src.pool_allocations(), POOL_CAPACITY as u64);
    }

    #[test]
    fn paced_mode_keeps_to_stream_time() {
        let c = SyntheticConfig {
            width: 64,
            height: 48,
            duration: Some(Duration::from_millis(500)),
            paced: true,
            ..SyntheticConfig::default()
        };
        let mut src = SyntheticSource::new(c).unwrap();
        let t0 = std::time::Instant::now();
        let items = drain(&mut src);
        let elapsed = t0.elapsed().as_secs_f64();
        let last = item_time(items.last().unwrap()).delta_ns(src.base_time()) as f64 / 1e9;
        assert!(last > 0.49, "{last}");
        assert!(elapsed >= last - 0.005, "elapsed {elapsed} < stream {last}");
        // samples in between take most of the waiting; frames still wait for their slot
        let waited: u64 = frames(&items).iter().map(|f| f.1.wait_ns).sum();
        assert!(waited > 0, "frames should have waited");
        for (_, m) in frames(&items) {
            assert!(m.received_mono >= m.capture_mono);
        }
    }

    /// Release-build timing: `cargo test -p pipeline --lib --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_render_and_conversion_ms() {
        let mut profile = StageProfile::new(false);
        for fmt in [
            SyntheticFormat::I420,
            SyntheticFormat::Tiled,
            SyntheticFormat::Bgr,
        ] {
            let t0 = std::time::Instant::now();
            let mut src = SyntheticSource::new(SyntheticConfig {
                format: fmt,
                paced: false,
                ..SyntheticConfig::default()
            })
            .unwrap();
            let build = t0.elapsed();
            let n = 300;
            let mut total = Duration::ZERO;
            let mut seen = 0;
            while seen < n {
                let t = std::time::Instant::now();
                let item = src.next_item(&mut profile).unwrap();
                if let Some(SourceItem::Frame { .. }) = item {
                    total += t.elapsed();
                    seen += 1;
                }
            }
            println!(
                "synthetic {fmt:?}: startup {:.1} ms, {:.3} ms/frame",
                build.as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3 / n as f64
            );
        }
        let mut src = SyntheticSource::new(SyntheticConfig {
            paced: false,
            ..SyntheticConfig::default()
        })
        .unwrap();
        let Some(SourceItem::Frame { frame, .. }) = src.next_item(&mut profile).unwrap() else {
            panic!("expected a frame");
        };
        for to in [PixelFormat::Bgr24, PixelFormat::Rgba] {
            let mut out = Frame::new(to, 1600, 1200);
            let t = std::time::Instant::now();
            for _ in 0..100 {
                color::convert(&frame.view(), &mut out, to).unwrap();
            }
            println!(
                "convert 1600x1200 I420 -> {to:?}: {:.3} ms",
                t.elapsed().as_secs_f64() * 10.0
            );
        }
    }
}
