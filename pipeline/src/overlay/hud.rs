//! The text HUD: the embedded DejaVu Sans Mono font, text layout at integer glyph origins and
//! the bounded per-character cache of scaled outlines (both modes) and coverage masks (sprite
//! mode). Draw mode rasterizes the cached outlines every frame with one reused rasterizer;
//! sprite mode rasterizes them once through the same routine.

use std::fmt::Write as _;

use ab_glyph::{point, Font, FontRef, OutlineCurve, Point, PxScale, PxScaleFont, ScaleFont};
use ab_glyph_rasterizer::Rasterizer;

use super::blend::{blit, MaskRef, Paint, Solid};
use super::marker::quantize;
use super::{Hud, OverlayError, OverlayMode, Rgb};
use crate::frame::Frame;

/// Embedded so the HUD looks the same on every machine; licence in `assets/fonts/`.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// Distinct characters kept (outlines, and masks in sprite mode): the 95 printable ASCII
/// characters, pinned, plus up to 33 others cached lazily, so the bound only matters for
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

/// First and last character pre-warmed at construction and on every size change: printable
/// ASCII. Their entries are pinned (never evicted), so ASCII text never rasterizes an outline
/// or fills a cache slot mid-stream.
const ASCII_FIRST: char = ' ';
const ASCII_LAST: char = '~';
const ASCII_COUNT: usize = ASCII_LAST as usize - ASCII_FIRST as usize + 1;
/// Slots left for lazily cached characters outside printable ASCII (LRU among themselves).
const EXTRA_CAP: usize = GLYPH_CACHE_CAP - ASCII_COUNT;

/// The index of a pinned ASCII entry, if `ch` is printable ASCII.
#[inline]
fn ascii_slot(ch: char) -> Option<usize> {
    (ASCII_FIRST..=ASCII_LAST)
        .contains(&ch)
        .then(|| ch as usize - ASCII_FIRST as usize)
}

/// One character at the renderer's size: its outline, already scaled and translated into its
/// own pixel box exactly as ab_glyph's `OutlinedGlyph::draw` feeds the rasterizer, and (sprite
/// mode) the coverage mask rasterized from it.
struct GlyphEntry {
    ch: char,
    /// Pixel box relative to an integer origin at (0, 0).
    min_x: i64,
    min_y: i64,
    w: usize,
    h: usize,
    advance: f32,
    curves: Vec<OutlineCurve>,
    /// Sprite mode only; empty in draw mode, which rasterizes `curves` every frame.
    mask: Vec<u8>,
    last_used: u64,
}

impl GlyphEntry {
    fn empty() -> Self {
        GlyphEntry {
            ch: '\0',
            min_x: 0,
            min_y: 0,
            w: 0,
            h: 0,
            advance: 0.0,
            curves: Vec::new(),
            mask: Vec::new(),
            last_used: 0,
        }
    }

    /// Loads `ch`'s outline at `scale` with its origin at (0, 0). Integer origins make the
    /// result independent of where the glyph lands, which is what lets both modes cache it.
    fn load(&mut self, font: &FontRef<'static>, scale: PxScale, ch: char) {
        let scaled = font.as_scaled(scale);
        let id = font.glyph_id(ch);
        self.ch = ch;
        self.advance = scaled.h_advance(id);
        self.curves.clear();
        self.mask.clear();
        let Some(outline) = font.outline(id) else {
            (self.min_x, self.min_y, self.w, self.h) = (0, 0, 0, 0);
            return;
        };
        // The same arithmetic, in the same order, as ab_glyph's `outline_glyph` + `draw`, so
        // the rasterizer sees bit-identical points.
        let factor = scaled.scale_factor();
        let b = outline.px_bounds(factor, point(0.0, 0.0));
        let (h_factor, v_factor) = (factor.horizontal, -factor.vertical);
        let offset = point(0.0, 0.0) - b.min;
        let place = |p: &Point| point(p.x * h_factor, p.y * v_factor) + offset;
        self.curves.extend(outline.curves.iter().map(|c| match c {
            OutlineCurve::Line(p0, p1) => OutlineCurve::Line(place(p0), place(p1)),
            OutlineCurve::Quad(p0, p1, p2) => OutlineCurve::Quad(place(p0), place(p1), place(p2)),
            OutlineCurve::Cubic(p0, p1, p2, p3) => {
                OutlineCurve::Cubic(place(p0), place(p1), place(p2), place(p3))
            }
        }));
        self.min_x = b.min.x as i64;
        self.min_y = b.min.y as i64;
        self.w = b.width().max(0.0) as usize;
        self.h = b.height().max(0.0) as usize;
    }

    /// Rasterizes the cached outline into `out` (row-major alpha, `w` x `h`) with the reused
    /// `rasterizer`. The one glyph coverage routine: draw mode calls it every frame, sprite
    /// mode once per cached character, so the two agree by construction. Allocates nothing
    /// once `rasterizer` and `out` have held a glyph at least this large.
    fn rasterize(&self, rasterizer: &mut Rasterizer, out: &mut Vec<u8>) {
        out.clear();
        out.resize(self.w * self.h, 0);
        if self.w == 0 || self.h == 0 {
            return;
        }
        rasterizer.reset(self.w, self.h);
        for c in &self.curves {
            match *c {
                OutlineCurve::Line(p0, p1) => rasterizer.draw_line(p0, p1),
                OutlineCurve::Quad(p0, p1, p2) => rasterizer.draw_quad(p0, p1, p2),
                OutlineCurve::Cubic(p0, p1, p2, p3) => rasterizer.draw_cubic(p0, p1, p2, p3),
            }
        }
        rasterizer.for_each_pixel(|i, c| {
            if let Some(p) = out.get_mut(i) {
                *p = quantize(c);
            }
        });
    }
}

/// Per-character outline (and, in sprite mode, mask) cache at the renderer's font size, at
/// most [`GLYPH_CACHE_CAP`] entries: the printable ASCII range is pinned and pre-warmed, the
/// remaining slots hold other characters lazily (LRU among themselves). So ASCII text never
/// allocates; the first appearance of a non-ASCII character allocates its entry once (and
/// again only if it has been evicted).
struct GlyphCache {
    sprites: bool,
    ascii: Vec<GlyphEntry>,
    extra: Vec<GlyphEntry>,
    clock: u64,
    hits: u64,
    misses: u64,
}

impl GlyphCache {
    fn new(sprites: bool) -> Self {
        GlyphCache {
            sprites,
            ascii: Vec::with_capacity(ASCII_COUNT),
            extra: Vec::with_capacity(EXTRA_CAP),
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    fn len(&self) -> usize {
        self.ascii.len() + self.extra.len()
    }

    /// Drops every entry and loads (and in sprite mode rasterizes) printable ASCII at `scale`.
    /// Pre-warming is neither a hit nor a miss. Leaves `rasterizer` and `scratch` large enough
    /// for any ASCII glyph, so draw mode never grows them for ASCII text.
    fn warm(
        &mut self,
        font: &FontRef<'static>,
        scale: PxScale,
        rasterizer: &mut Rasterizer,
        scratch: &mut Vec<u8>,
    ) {
        self.extra.clear();
        self.ascii.clear();
        let mut largest = 0;
        for ch in ASCII_FIRST..=ASCII_LAST {
            let mut e = GlyphEntry::empty();
            e.load(font, scale, ch);
            if self.sprites {
                let mut mask = Vec::new();
                e.rasterize(rasterizer, &mut mask);
                e.mask = mask;
            }
            largest = largest.max(e.w * e.h);
            self.ascii.push(e);
        }
        // Size the shared buffers once for the largest ASCII glyph.
        rasterizer.reset(largest, 1);
        scratch.reserve(largest.saturating_sub(scratch.len()));
    }

    fn get(
        &mut self,
        font: &FontRef<'static>,
        scale: PxScale,
        ch: char,
        rasterizer: &mut Rasterizer,
    ) -> &GlyphEntry {
        self.clock += 1;
        if let Some(i) = ascii_slot(ch) {
            if i < self.ascii.len() {
                self.hits += 1;
                self.ascii[i].last_used = self.clock;
                return &self.ascii[i];
            }
        }
        let idx = match self.extra.iter().position(|e| e.ch == ch) {
            Some(i) => {
                self.hits += 1;
                i
            }
            None => {
                self.misses += 1;
                let i = if self.extra.len() < EXTRA_CAP {
                    self.extra.push(GlyphEntry::empty());
                    self.extra.len() - 1
                } else {
                    self.extra
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.last_used)
                        .map_or(0, |(i, _)| i)
                };
                let e = &mut self.extra[i];
                e.load(font, scale, ch);
                if self.sprites {
                    let mut mask = std::mem::take(&mut e.mask);
                    e.rasterize(rasterizer, &mut mask);
                    e.mask = mask;
                }
                i
            }
        };
        let e = &mut self.extra[idx];
        e.last_used = self.clock;
        e
    }

    /// The pen advance of `ch`, from the cache for printable ASCII.
    fn advance(&self, scaled: &PxScaleFont<&FontRef<'static>>, ch: char) -> f32 {
        match ascii_slot(ch).and_then(|i| self.ascii.get(i)) {
            Some(e) => e.advance,
            None => scaled.h_advance(scaled.glyph_id(ch)),
        }
    }
}

pub(crate) struct HudRenderer {
    font: FontRef<'static>,
    scale: PxScale,
    px: f32,
    cache: GlyphCache,
    /// The one rasterizer, reset per glyph (its buffer is reused).
    rasterizer: Rasterizer,
    /// Reused for the formatted HUD line.
    text: String,
    /// Draw mode's per-glyph raster target, reused frame to frame.
    scratch: Vec<u8>,
    pub background: bool,
}

impl HudRenderer {
    /// Loads the font and pre-warms printable ASCII at `px` (outlines; masks too in sprite
    /// mode).
    pub fn new(px: f32, mode: OverlayMode) -> Result<Self, OverlayError> {
        let font =
            FontRef::try_from_slice(FONT_BYTES).map_err(|e| OverlayError::Font(e.to_string()))?;
        let mut hud = HudRenderer {
            font,
            scale: PxScale::from(px),
            px,
            cache: GlyphCache::new(mode == OverlayMode::Sprite),
            rasterizer: Rasterizer::new(0, 0),
            text: String::with_capacity(128),
            scratch: Vec::new(),
            background: true,
        };
        hud.warm();
        Ok(hud)
    }

    fn warm(&mut self) {
        self.cache.warm(
            &self.font,
            self.scale,
            &mut self.rasterizer,
            &mut self.scratch,
        );
    }

    /// Changing the size drops every cached glyph and pre-warms printable ASCII again.
    pub fn set_px(&mut self, px: f32) {
        if px != self.px {
            self.px = px;
            self.scale = PxScale::from(px);
            self.warm();
        }
    }

    pub fn stats(&self) -> (u64, u64, usize) {
        (self.cache.hits, self.cache.misses, self.cache.len())
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
            let width: f32 = text.chars().map(|c| self.cache.advance(&scaled, c)).sum();
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
            let e = self
                .cache
                .get(&self.font, self.scale, ch, &mut self.rasterizer);
            pen += e.advance;
            let data = match mode {
                // Rasterize the cached outline every frame.
                OverlayMode::Draw => {
                    e.rasterize(&mut self.rasterizer, &mut self.scratch);
                    &self.scratch
                }
                OverlayMode::Sprite => &e.mask,
            };
            let mask = MaskRef {
                w: e.w,
                h: e.h,
                data,
            };
            blit(frame, ox + e.min_x, baseline + e.min_y, &mask, text_paint)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached-outline path must give exactly what ab_glyph's own `outline_glyph` + `draw`
    /// gives (the pre-change rasterization), for every pre-warmed character and a few others.
    #[test]
    fn cached_outline_matches_ab_glyph_draw() {
        let font = FontRef::try_from_slice(FONT_BYTES).unwrap();
        let mut rasterizer = Rasterizer::new(0, 0);
        let chars = (ASCII_FIRST..=ASCII_LAST).chain("ÀéøÿΩ€".chars());
        for px in [4.0, 9.5, 16.0, 31.0, 128.0] {
            let scale = PxScale::from(px);
            for ch in chars.clone() {
                let mut e = GlyphEntry::empty();
                e.load(&font, scale, ch);
                let mut ours = Vec::new();
                e.rasterize(&mut rasterizer, &mut ours);

                let glyph = font
                    .glyph_id(ch)
                    .with_scale_and_position(scale, point(0.0, 0.0));
                let (mut reference, mut bbox) = (Vec::new(), (0, 0, 0, 0));
                if let Some(outlined) = font.outline_glyph(glyph) {
                    let b = outlined.px_bounds();
                    let (w, h) = (b.width().max(0.0) as usize, b.height().max(0.0) as usize);
                    reference.resize(w * h, 0);
                    outlined.draw(|x, y, c| reference[y as usize * w + x as usize] = quantize(c));
                    bbox = (b.min.x as i64, b.min.y as i64, w, h);
                }
                assert_eq!((e.min_x, e.min_y, e.w, e.h), bbox, "{ch:?} at {px}");
                assert_eq!(ours, reference, "{ch:?} at {px}");
            }
        }
    }
}
