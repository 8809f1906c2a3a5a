//! Blending of an alpha coverage source onto every colour format the overlay supports; both
//! overlay modes go through this one path, which is what makes their pixels agree.

use crate::frame::{Frame, PixelFormat};

use super::{OverlayError, Rgb};

/// Something that yields 8-bit alpha on a `width` x `height` grid. Positions outside the grid
/// must yield 0: the I420 chroma rule samples 2x2 blocks that can straddle the edge.
pub(crate) trait Coverage {
    fn width(&self) -> i64;
    fn height(&self) -> i64;
    fn alpha(&self, x: i64, y: i64) -> u8;
}

/// A stored alpha mask (sprite marker, cached or scratch glyph).
pub(crate) struct MaskRef<'a> {
    pub w: usize,
    pub h: usize,
    pub data: &'a [u8],
}

impl Coverage for MaskRef<'_> {
    fn width(&self) -> i64 {
        self.w as i64
    }
    fn height(&self) -> i64 {
        self.h as i64
    }
    #[inline]
    fn alpha(&self, x: i64, y: i64) -> u8 {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return 0;
        }
        self.data
            .get(y as usize * self.w + x as usize)
            .copied()
            .unwrap_or(0)
    }
}

/// Constant alpha rectangle (the HUD's background box).
pub(crate) struct Solid {
    pub w: i64,
    pub h: i64,
    pub a: u8,
}

impl Coverage for Solid {
    fn width(&self) -> i64 {
        self.w
    }
    fn height(&self) -> i64 {
        self.h
    }
    #[inline]
    fn alpha(&self, x: i64, y: i64) -> u8 {
        if x < 0 || y < 0 || x >= self.w || y >= self.h {
            0
        } else {
            self.a
        }
    }
}

/// A colour resolved once per draw call for the target format, so the per-pixel loop only
/// blends bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Paint {
    /// Colour bytes in the packed format's channel order (unused for I420).
    pub packed: [u8; 3],
    pub y: u8,
    pub u: u8,
    pub v: u8,
}

impl Paint {
    pub fn new(c: Rgb, format: PixelFormat) -> Result<Self, OverlayError> {
        let packed = match format {
            PixelFormat::Bgr24 | PixelFormat::Bgra => [c.b, c.g, c.r],
            PixelFormat::Rgba => [c.r, c.g, c.b],
            PixelFormat::I420 => [0; 3],
            PixelFormat::Gray8 => return Err(OverlayError::NeedsColour(format)),
        };
        let (y, u, v) = rgb_to_yuv601(c);
        Ok(Paint { packed, y, u, v })
    }
}

/// BT.601 limited range ("studio swing", Y 16..235, UV 16..240) in 8-bit fixed point: what
/// the Pi's and most webcams' I420 streams use, so an overlay colour matches its RGB preview.
pub(crate) fn rgb_to_yuv601(c: Rgb) -> (u8, u8, u8) {
    let (r, g, b) = (i32::from(c.r), i32::from(c.g), i32::from(c.b));
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    (
        y.clamp(0, 255) as u8,
        u.clamp(0, 255) as u8,
        v.clamp(0, 255) as u8,
    )
}

/// `dst + (src - dst) * a / 255`, rounded, exact at a = 0 and a = 255.
#[inline]
pub(crate) fn mix(dst: u8, src: u8, a: u8) -> u8 {
    let a = u32::from(a);
    let x = u32::from(dst) * (255 - a) + u32::from(src) * a + 128;
    ((x + (x >> 8)) >> 8) as u8
}

/// Blends `src` (top-left at frame pixel `ox`, `oy`, may be partly or wholly outside) in
/// `paint` onto `frame`. I420 chroma takes the max of the 2x2 luma alphas it covers.
pub(crate) fn blit(
    frame: &mut Frame,
    ox: i64,
    oy: i64,
    src: &impl Coverage,
    paint: &Paint,
) -> Result<(), OverlayError> {
    let format = frame.format();
    let (fw, fh) = (frame.width() as i64, frame.height() as i64);
    let x0 = ox.max(0);
    let y0 = oy.max(0);
    let x1 = ox.saturating_add(src.width()).min(fw);
    let y1 = oy.saturating_add(src.height()).min(fh);
    if x0 >= x1 || y0 >= y1 {
        return Ok(());
    }
    match format {
        PixelFormat::Gray8 => Err(OverlayError::NeedsColour(format)),
        PixelFormat::Bgr24 | PixelFormat::Rgba | PixelFormat::Bgra => {
            let bpp = format.bytes_per_pixel();
            let [mut plane, _, _] = frame.planes_mut();
            for y in y0..y1 {
                let row = plane.row_mut(y as usize);
                let sy = y - oy;
                for x in x0..x1 {
                    let a = src.alpha(x - ox, sy);
                    if a == 0 {
                        continue;
                    }
                    let i = x as usize * bpp;
                    let px = &mut row[i..i + 3];
                    px[0] = mix(px[0], paint.packed[0], a);
                    px[1] = mix(px[1], paint.packed[1], a);
                    px[2] = mix(px[2], paint.packed[2], a);
                }
            }
            Ok(())
        }
        PixelFormat::I420 => {
            let [mut yp, mut up, mut vp] = frame.planes_mut();
            for y in y0..y1 {
                let row = yp.row_mut(y as usize);
                let sy = y - oy;
                for x in x0..x1 {
                    let a = src.alpha(x - ox, sy);
                    if a != 0 {
                        let px = &mut row[x as usize];
                        *px = mix(*px, paint.y, a);
                    }
                }
            }
            let cx0 = x0 >> 1;
            let cy0 = y0 >> 1;
            let cx1 = ((x1 + 1) >> 1).min(up.width as i64);
            let cy1 = ((y1 + 1) >> 1).min(up.height as i64);
            for cy in cy0..cy1 {
                let ly = 2 * cy - oy;
                let (urow, vrow) = (up.row_mut(cy as usize), vp.row_mut(cy as usize));
                for cx in cx0..cx1 {
                    let lx = 2 * cx - ox;
                    let a = src
                        .alpha(lx, ly)
                        .max(src.alpha(lx + 1, ly))
                        .max(src.alpha(lx, ly + 1))
                        .max(src.alpha(lx + 1, ly + 1));
                    if a != 0 {
                        let i = cx as usize;
                        urow[i] = mix(urow[i], paint.u, a);
                        vrow[i] = mix(vrow[i], paint.v, a);
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_exact_at_ends_and_rounds() {
        for d in [0u8, 1, 77, 128, 254, 255] {
            for s in [0u8, 3, 200, 255] {
                assert_eq!(mix(d, s, 0), d);
                assert_eq!(mix(d, s, 255), s);
            }
        }
        assert_eq!(mix(0, 255, 128), 128);
    }

    #[test]
    fn bt601_limited_range_primaries() {
        assert_eq!(rgb_to_yuv601(Rgb { r: 0, g: 0, b: 0 }), (16, 128, 128));
        assert_eq!(
            rgb_to_yuv601(Rgb {
                r: 255,
                g: 255,
                b: 255
            }),
            (235, 128, 128)
        );
        let (y, u, v) = rgb_to_yuv601(Rgb { r: 255, g: 0, b: 0 });
        assert_eq!(y, 82);
        assert!(
            (89..=91).contains(&u) && (239..=240).contains(&v),
            "{u} {v}"
        );
    }
}
