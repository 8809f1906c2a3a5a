//! The gaze marker's coverage function and the bounded LRU cache of its pre-rendered masks.
//! Draw mode evaluates the function per pixel; sprite mode stores it once per visual key.

use super::blend::Coverage;
use super::{MarkerShape, Rgb};

/// Maximum number of cached marker sprites (the plan's bound).
pub const MARKER_CACHE_CAP: usize = 20;

/// Everything that changes a marker's pixels. Colour is part of the key because the plan caches
/// coloured sprites; the mask alone would not need it, but worn/not-worn then hit separately.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MarkerKey {
    pub shape: MarkerShape,
    pub radius: u32,
    pub thickness: u32,
    pub dot_radius: u32,
    pub colour: Rgb,
}

impl MarkerKey {
    /// Distance from the centre pixel to the mask edge; one spare pixel holds the AA fringe.
    pub fn half(&self) -> i64 {
        let ring = if self.thickness == 0 {
            0
        } else {
            i64::from(self.radius) + i64::from(self.thickness.div_ceil(2)) + 1
        };
        ring.max(i64::from(self.dot_radius) + 1)
    }

    pub fn side(&self) -> usize {
        (2 * self.half() + 1) as usize
    }

    /// Alpha at offset (`dx`, `dy`) from the integer centre. Pixel centres sit on integer
    /// offsets, so the function is symmetric and the same for every frame position.
    #[inline]
    pub fn alpha_at(&self, dx: i64, dy: i64) -> u8 {
        let (fx, fy) = ((dx as f32).abs(), (dy as f32).abs());
        let d = (fx * fx + fy * fy).sqrt();
        let half_t = self.thickness as f32 * 0.5;
        let line = if self.thickness == 0 {
            0.0
        } else {
            match self.shape {
                MarkerShape::Circle => band(half_t - (d - self.radius as f32).abs()),
                MarkerShape::Cross => {
                    let r = self.radius as f32;
                    let h = band(half_t - fy) * band(r - fx);
                    let v = band(half_t - fx) * band(r - fy);
                    h.max(v)
                }
            }
        };
        let dot = if self.dot_radius == 0 {
            0.0
        } else {
            band(self.dot_radius as f32 - d)
        };
        quantize(line.max(dot))
    }
}

/// Coverage of a pixel whose centre is `signed_dist` inside an edge (box filter of width 1).
#[inline]
fn band(signed_dist: f32) -> f32 {
    (signed_dist + 0.5).clamp(0.0, 1.0)
}

/// The one float-to-alpha rule shared by markers and glyphs.
#[inline]
pub(crate) fn quantize(c: f32) -> u8 {
    (c.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Draw mode: the coverage function itself, evaluated on the fly over the marker's box.
pub(crate) struct MarkerFn {
    pub key: MarkerKey,
    pub half: i64,
}

impl Coverage for MarkerFn {
    fn width(&self) -> i64 {
        2 * self.half + 1
    }
    fn height(&self) -> i64 {
        2 * self.half + 1
    }
    #[inline]
    fn alpha(&self, x: i64, y: i64) -> u8 {
        let side = 2 * self.half + 1;
        if x < 0 || y < 0 || x >= side || y >= side {
            return 0;
        }
        self.key.alpha_at(x - self.half, y - self.half)
    }
}

pub(crate) struct MarkerEntry {
    pub key: MarkerKey,
    pub side: usize,
    pub mask: Vec<u8>,
    last_used: u64,
}

/// LRU cache with at most [`MARKER_CACHE_CAP`] entries; eviction reuses the evicted mask's
/// buffer, so only a style never seen before (and bigger than any evicted) allocates.
pub(crate) struct MarkerCache {
    entries: Vec<MarkerEntry>,
    clock: u64,
    pub hits: u64,
    pub misses: u64,
}

impl MarkerCache {
    pub fn new() -> Self {
        MarkerCache {
            entries: Vec::with_capacity(MARKER_CACHE_CAP),
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&mut self, key: MarkerKey) -> &MarkerEntry {
        self.lookup(key, true)
    }

    /// Makes sure `key` is cached (and most recently used) without counting a hit or miss.
    pub fn warm(&mut self, key: MarkerKey) {
        self.lookup(key, false);
    }

    fn lookup(&mut self, key: MarkerKey, count: bool) -> &MarkerEntry {
        self.clock += 1;
        let idx = match self.entries.iter().position(|e| e.key == key) {
            Some(i) => {
                self.hits += u64::from(count);
                i
            }
            None => {
                self.misses += u64::from(count);
                let i = if self.entries.len() < MARKER_CACHE_CAP {
                    self.entries.push(MarkerEntry {
                        key,
                        side: 0,
                        mask: Vec::new(),
                        last_used: 0,
                    });
                    self.entries.len() - 1
                } else {
                    self.entries
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.last_used)
                        .map_or(0, |(i, _)| i)
                };
                render(&mut self.entries[i], key);
                i
            }
        };
        let entry = &mut self.entries[idx];
        entry.last_used = self.clock;
        entry
    }
}

fn render(entry: &mut MarkerEntry, key: MarkerKey) {
    let half = key.half();
    let side = key.side();
    entry.key = key;
    entry.side = side;
    entry.mask.clear();
    entry.mask.reserve_exact(side * side);
    for y in 0..side as i64 {
        for x in 0..side as i64 {
            entry.mask.push(key.alpha_at(x - half, y - half));
        }
    }
}
