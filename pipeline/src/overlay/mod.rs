//! Overlay stage: draws the gaze marker and the text HUD onto the preview frame, either by
//! rasterizing every frame (`draw`) or by blitting cached alpha sprites (`sprite`).
//!
//! Both modes are pixel-identical by construction: they share one coverage function per
//! element (marker: `marker::MarkerKey::alpha_at`; glyphs: the cached, pre-scaled ab_glyph
//! outline at an integer origin fed to one reused `ab_glyph_rasterizer::Rasterizer`, exactly as
//! `OutlinedGlyph::draw` does), one float-to-alpha quantization and one blend path
//! (`blend::blit`). Only *when* the coverage is computed differs: per frame in `draw`, once per
//! visual key in `sprite`.
//!
//! Format rules:
//! - I420: luma blends at full resolution; each chroma sample blends the colour's U/V with the
//!   **max** of the 2x2 luma alphas it covers (max, not mean, so a 1-2 px ring keeps its colour
//!   instead of fading to half-saturation). Colours convert with BT.601 limited range.
//! - Bgr24 / Rgba / Bgra: per-channel blend; the alpha byte of Rgba/Bgra is left as is (the
//!   preview is opaque, and the overlay should not change what a compositor sees).
//! - Gray8: [`OverlayError::NeedsColour`]; the caller converts first ("lazy colour": gray stays
//!   gray until a stage needs colour).
//!
//! Neither mode allocates per frame. [`Overlay::new`] and [`Overlay::set_style`] pre-warm
//! everything a normal stream needs: the outlines of all printable ASCII characters (0x20..=0x7E)
//! at the HUD size (plus their masks in sprite mode), pinned in the glyph cache so they are
//! never evicted, and in sprite mode both the worn and the not-worn marker sprite of the current
//! style. Draw mode still rasterizes every glyph and evaluates the marker every frame, into
//! buffers sized at pre-warm time. Characters outside printable ASCII are cached lazily: their
//! first appearance (or the first after eviction from the remaining LRU slots) allocates once.

mod blend;
mod hud;
mod marker;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::frame::{Frame, PixelFormat};

use blend::{blit, MaskRef, Paint};
use hud::HudRenderer;
use marker::{MarkerCache, MarkerFn, MarkerKey};

pub use hud::GLYPH_CACHE_CAP;
pub use marker::MARKER_CACHE_CAP;

/// How the overlay gets its pixels (`--overlay draw|sprite`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OverlayMode {
    /// Blit cached alpha sprites: cheapest in steady state.
    Sprite,
    /// Rasterize every frame: the original behaviour, kept as the reference and for comparison.
    Draw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MarkerShape {
    /// A ring of `thickness` px at `radius`.
    Circle,
    /// Two bars of `thickness` px reaching `radius` px from the centre.
    Cross,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rgb {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

/// Limits that keep a sprite (and a draw-mode bounding box) small enough to be harmless.
pub const MAX_RADIUS: u32 = 256;
pub const MAX_THICKNESS: u32 = 64;
pub const HUD_PX_RANGE: std::ops::RangeInclusive<f32> = 4.0..=128.0;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverlayStyle {
    pub shape: MarkerShape,
    /// Ring (or bar) distance from the centre, px. At most [`MAX_RADIUS`].
    pub radius: u32,
    /// Ring or bar width, px; 0 draws only the dot. At most [`MAX_THICKNESS`].
    pub thickness: u32,
    /// Filled centre dot radius, px; 0 draws no dot. At most [`MAX_RADIUS`].
    pub dot_radius: u32,
    /// Marker colour while the glasses are worn.
    pub worn: Rgb,
    /// Marker colour while they are not: a loud warning that the gaze is meaningless.
    pub not_worn: Rgb,
    pub hud: bool,
    /// HUD font size, px, within [`HUD_PX_RANGE`].
    pub hud_px: f32,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        OverlayStyle {
            shape: MarkerShape::Circle,
            radius: 10,
            thickness: 2,
            dot_radius: 2,
            worn: Rgb {
                r: 255,
                g: 255,
                b: 0,
            },
            not_worn: Rgb { r: 255, g: 0, b: 0 },
            hud: true,
            hud_px: 16.0,
        }
    }
}

impl OverlayStyle {
    fn validate(&self) -> Result<(), OverlayError> {
        if self.radius > MAX_RADIUS || self.dot_radius > MAX_RADIUS {
            return Err(OverlayError::InvalidStyle("radius above MAX_RADIUS"));
        }
        if self.thickness > MAX_THICKNESS {
            return Err(OverlayError::InvalidStyle("thickness above MAX_THICKNESS"));
        }
        if !HUD_PX_RANGE.contains(&self.hud_px) {
            return Err(OverlayError::InvalidStyle("hud_px outside HUD_PX_RANGE"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Hud<'a> {
    pub fps: f32,
    pub frame_index: u64,
    pub state: &'a str,
}

/// Cache counters for reports. Marker counters are all zero in draw mode (it evaluates the
/// marker per pixel); glyph counters count the glyph cache, which holds outlines in both modes
/// (and masks in sprite mode). Pre-warming in [`Overlay::new`] / [`Overlay::set_style`] counts
/// as neither a hit nor a miss, so misses in a stream of ASCII text and the style's two marker
/// colours stay at zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Marker sprite lookups served from the cache.
    pub hits: u64,
    pub misses: u64,
    /// Marker sprites held (at most [`MARKER_CACHE_CAP`]).
    pub entries: usize,
    pub glyph_hits: u64,
    pub glyph_misses: u64,
    /// Glyphs held (at most [`GLYPH_CACHE_CAP`]; the 95 printable ASCII ones always).
    pub glyph_entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay needs a colour frame, got {0:?}; convert first")]
    NeedsColour(PixelFormat),
    #[error("invalid overlay style: {0}")]
    InvalidStyle(&'static str),
    #[error("embedded HUD font failed to load: {0}")]
    Font(String),
}

pub struct Overlay {
    mode: OverlayMode,
    style: OverlayStyle,
    markers: MarkerCache,
    hud: HudRenderer,
}

impl Overlay {
    pub fn new(mode: OverlayMode, style: OverlayStyle) -> Result<Self, OverlayError> {
        style.validate()?;
        let mut overlay = Overlay {
            mode,
            hud: HudRenderer::new(style.hud_px, mode)?,
            style,
            markers: MarkerCache::new(),
        };
        overlay.warm_markers();
        Ok(overlay)
    }

    fn marker_key(&self, worn: bool) -> MarkerKey {
        MarkerKey {
            shape: self.style.shape,
            radius: self.style.radius,
            thickness: self.style.thickness,
            dot_radius: self.style.dot_radius,
            colour: if worn {
                self.style.worn
            } else {
                self.style.not_worn
            },
        }
    }

    /// Sprite mode: renders the current style's worn and not-worn sprites now, so neither is
    /// first drawn (and allocated) mid-stream. Not counted as cache hits or misses.
    fn warm_markers(&mut self) {
        if self.mode == OverlayMode::Sprite {
            for worn in [true, false] {
                let key = self.marker_key(worn);
                self.markers.warm(key);
            }
        }
    }

    pub fn mode(&self) -> OverlayMode {
        self.mode
    }

    pub fn style(&self) -> &OverlayStyle {
        &self.style
    }

    /// Restyles without dropping the marker cache: switching back to an earlier style is a hit.
    /// Pre-warms the new style's worn and not-worn sprites (sprite mode). A new `hud_px` empties
    /// the glyph cache and pre-warms printable ASCII at the new size.
    pub fn set_style(&mut self, style: OverlayStyle) -> Result<(), OverlayError> {
        style.validate()?;
        self.hud.set_px(style.hud_px);
        self.style = style;
        self.warm_markers();
        Ok(())
    }

    /// The HUD's dark box behind the text (on by default).
    pub fn set_hud_background(&mut self, on: bool) {
        self.hud.background = on;
    }

    /// x, y in the frame's pixel coordinates (the caller scales gaze from scene to preview).
    pub fn draw_gaze(
        &mut self,
        frame: &mut Frame,
        x: f32,
        y: f32,
        worn: bool,
    ) -> Result<(), OverlayError> {
        let key = self.marker_key(worn);
        let paint = Paint::new(key.colour, frame.format())?;
        let half = key.half();
        let Some((cx, cy)) = centre(x, y, half, frame.width(), frame.height()) else {
            return Ok(());
        };
        let (ox, oy) = (cx - half, cy - half);
        match self.mode {
            OverlayMode::Draw => blit(frame, ox, oy, &MarkerFn { key, half }, &paint),
            OverlayMode::Sprite => {
                let e = self.markers.get(key);
                let mask = MaskRef {
                    w: e.side,
                    h: e.side,
                    data: &e.mask,
                };
                blit(frame, ox, oy, &mask, &paint)
            }
        }
    }

    pub fn draw_hud(&mut self, frame: &mut Frame, hud: &Hud<'_>) -> Result<(), OverlayError> {
        if frame.format() == PixelFormat::Gray8 {
            return Err(OverlayError::NeedsColour(frame.format()));
        }
        if !self.style.hud {
            return Ok(());
        }
        self.hud.draw(frame, self.mode, hud)
    }

    /// sprite cache statistics (hits, misses, entries) for reports
    pub fn cache_stats(&self) -> CacheStats {
        let (glyph_hits, glyph_misses, glyph_entries) = self.hud.stats();
        CacheStats {
            hits: self.markers.hits,
            misses: self.markers.misses,
            entries: self.markers.len(),
            glyph_hits,
            glyph_misses,
            glyph_entries,
        }
    }
}

/// The integer centre both modes share, or `None` when the marker cannot touch the frame
/// (including NaN, infinities and coordinates too large for exact integer maths).
fn centre(x: f32, y: f32, half: i64, width: usize, height: usize) -> Option<(i64, i64)> {
    if !x.is_finite() || !y.is_finite() {
        return None;
    }
    let (rx, ry) = (x.round(), y.round());
    let reach = half as f32 + 1.0;
    if rx < -reach || ry < -reach || rx > width as f32 + reach || ry > height as f32 + reach {
        return None;
    }
    Some((rx as i64, ry as i64))
}
