//! The text HUD: the embedded DejaVu Sans Mono font, text layout at integer glyph origins and
//! the bounded per-character coverage cache used in sprite mode.

use std::collections::HashMap;
use std::fmt::Write as _;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};

use super::blend::{blit, MaskRef, Paint, Solid};
use super::marker::quantize;
use super::{Hud, OverlayError, OverlayMode, Rgb};
use crate::frame::Frame;

/// Embedded so the HUD looks the same on every machine; licence in `assets/fonts/`.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// Distinct characters kept rasterized; a HUD uses about 20, so the bound only matters for
/// unusual state strings.
pub const GLYPH_CACHE_CAP: usize = 128;
/// Gap between the frame corner and the background box.
const MARGIN: i64 = 2;
/// Gap between the box edge and the text.
const PAD: i64 = 3;
const TEXT: Rgb = Rgb {
    r: 255,
    g: 255,
    b: 255,
};
const BOX: Rgb = Rgb { r: 0, g: 0, b: 0 };
/// Dark but see-through, so the scene under the HUD stays visible.
const BOX_ALPHA: u8 = 160;

struct GlyphEntry {
    ch: char,
    min_x: i64,
    min_y: i64,
    w: usize,
    h: usize,
    mask: Vec<u8>,
    last_used: u64,
}

/// LRU cache of glyph coverage, keyed by character (the font size is fixed per renderer).
struct GlyphCache {
    index: HashMap<char, usize>,
    entries: Vec<GlyphEntry>,
    clock: u64,
    hits: u64,
    misses: u64,
}

impl GlyphCache {
    fn new() -> Self {
        GlyphCache {
            index: HashMap::with_capacity(GLYPH_CACHE_CAP),
            entries: Vec::with_capacity(GLYPH_CACHE_CAP),
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
    }

    fn get(&mut self, font: &FontRef<'static>, scale: PxScale, ch: char) -> &GlyphEntry {
        self.clock += 1;
        let idx = match self.index.get(&ch) {
            Some(&i) => {
                self.hits += 1;
                i
            }
            None => {
                self.misses += 1;
                let i = if self.entries.len() < GLYPH_CACHE_CAP {
                    self.entries.push(GlyphEntry {
                        ch,
                        min_x: 0,
                        min_y: 0,
                        w: 0,
                        h: 0,
                        mask: Vec::new(),
                        last_used: 0,
                    });
                    self.entries.len() - 1
                } else {
                    let i = self
                        .entries
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.last_used)
                        .map_or(0, |(i, _)| i);
                    self.index.remove(&self.entries[i].ch);
                    i
                };
                let e = &mut self.entries[i];
                let (min_x, min_y, w, h) = rasterize(font, scale, ch, &mut e.mask);
                (e.ch, e.min_x, e.min_y, e.w, e.h) = (ch, min_x, min_y, w, h);
                self.index.insert(ch, i);
                i
            }
        };
        let e = &mut self.entries[idx];
        e.last_used = self.clock;
        e
    }
}

/// Rasterizes `ch` with its origin at (0, 0) into `out` (row-major alpha) and returns the
/// pixel box (min x, min y, width, height) relative to that origin. Integer origins make the
/// result independent of where the glyph lands, which is what lets sprite mode cache it.
fn rasterize(
    font: &FontRef<'static>,
    scale: PxScale,
    ch: char,
    out: &mut Vec<u8>,
) -> (i64, i64, usize, usize) {
    out.clear();
    let glyph = font
        .glyph_id(ch)
        .with_scale_and_position(scale, point(0.0, 0.0));
    let Some(outlined) = font.outline_glyph(glyph) else {
        return (0, 0, 0, 0);
    };
    let b = outlined.px_bounds();
    let (w, h) = (b.width().max(0.0) as usize, b.height().max(0.0) as usize);
    out.resize(w * h, 0);
    outlined.draw(|x, y, c| {
        if let Some(p) = out.get_mut(y as usize * w + x as usize) {
            *p = quantize(c);
        }
    });
    (b.min.x as i64, b.min.y as i64, w, h)
}

pub(crate) struct HudRenderer {
    font: FontRef<'static>,
    scale: PxScale,
    px: f32,
    cache: GlyphCache,
    /// Reused for the formatted HUD line.
    text: String,
    /// Draw mode's per-glyph raster target, reused frame to frame.
    scratch: Vec<u8>,
    pub background: bool,
}

impl HudRenderer {
    pub fn new(px: f32) -> Result<Self, OverlayError> {
        let font =
            FontRef::try_from_slice(FONT_BYTES).map_err(|e| OverlayError::Font(e.to_string()))?;
        let side = (px.ceil() as usize + 4) * 2;
        Ok(HudRenderer {
            font,
            scale: PxScale::from(px),
            px,
            cache: GlyphCache::new(),
            text: String::with_capacity(128),
            scratch: Vec::with_capacity(side * side),
            background: true,
        })
    }

    /// Changing the size invalidates every cached glyph.
    pub fn set_px(&mut self, px: f32) {
        if px != self.px {
            self.px = px;
            self.scale = PxScale::from(px);
            self.cache.clear();
        }
    }

    pub fn stats(&self) -> (u64, u64, usize) {
        (self.cache.hits, self.cache.misses, self.cache.entries.len())
    }

    pub fn draw(
        &mut self,
        frame: &mut Frame,
        mode: OverlayMode,
        hud: &Hud<'_>,
    ) -> Result<(), OverlayError> {
        let text_paint = Paint::new(TEXT, frame.format())?;
        let box_paint = Paint::new(BOX, frame.format())?;
        self.text.clear();
        // Writing into a String cannot fail.
        let _ = write!(
            self.text,
            "{:.1} fps  #{}  {}",
            hud.fps, hud.frame_index, hud.state
        );
        let text = std::mem::take(&mut self.text);
        let result = self.draw_text(frame, mode, &text, &text_paint, &box_paint);
        self.text = text;
        result
    }

    fn draw_text(
        &mut self,
        frame: &mut Frame,
        mode: OverlayMode,
        text: &str,
        text_paint: &Paint,
        box_paint: &Paint,
    ) -> Result<(), OverlayError> {
        let scaled = self.font.as_scaled(self.scale);
        let ascent = scaled.ascent().ceil() as i64;
        let descent = (-scaled.descent()).ceil() as i64;
        let left = (MARGIN + PAD) as f32;
        if self.background {
            let width: f32 = text
                .chars()
                .map(|c| scaled.h_advance(scaled.glyph_id(c)))
                .sum();
            let bg = Solid {
                w: width.ceil() as i64 + 2 * PAD,
                h: ascent + descent + 2 * PAD,
                a: BOX_ALPHA,
            };
            blit(frame, MARGIN, MARGIN, &bg, box_paint)?;
        }
        let baseline = MARGIN + PAD + ascent;
        let frame_w = frame.width() as f32;
        let mut pen = left;
        for ch in text.chars() {
            if pen > frame_w {
                break;
            }
            let ox = pen.round() as i64;
            pen += scaled.h_advance(scaled.glyph_id(ch));
            match mode {
                OverlayMode::Draw => {
                    let (min_x, min_y, w, h) =
                        rasterize(&self.font, self.scale, ch, &mut self.scratch);
                    let mask = MaskRef {
                        w,
                        h,
                        data: &self.scratch,
                    };
                    blit(frame, ox + min_x, baseline + min_y, &mask, text_paint)?;
                }
                OverlayMode::Sprite => {
                    let e = self.cache.get(&self.font, self.scale, ch);
                    let mask = MaskRef {
                        w: e.w,
                        h: e.h,
                        data: &e.mask,
                    };
                    blit(frame, ox + e.min_x, baseline + e.min_y, &mask, text_paint)?;
                }
            }
        }
        Ok(())
    }
}
