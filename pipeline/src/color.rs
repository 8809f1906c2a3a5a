//! Colour conversions between the pipeline's pixel formats (YUV 4:2:0, gray, packed BGR/RGBA/BGRA),
//! delegated to the `yuv` crate's run-time dispatched SIMD kernels (NEON on aarch64, AVX2/SSE on x86).
//!
//! YUV <-> RGB uses **BT.601, limited range** (Y in 16..=235, chroma in 16..=240): what H.264
//! camera streams, the Neon's scene camera included, are encoded with. Gray8 is treated as a
//! full-range intensity image: gray -> packed colour replicates the value into every channel, and
//! gray -> I420 copies it into Y with neutral chroma (128), as a gray camera feeding a YUV encoder
//! would.
//!
//! Every conversion reads the source planes in place with their strides (a crop of a larger frame
//! is converted without a copy first) and writes into the caller's reusable [`Frame`], so a call
//! allocates nothing once the destination has grown to size.

use yuv::{
    BufferStoreMut, YuvConversionMode, YuvError, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use crate::frame::{Frame, FrameView, PixelFormat, Plane};

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;
/// The crate's default: exact enough for round trips within a couple of levels, still SIMD-fast.
const MODE: YuvConversionMode = YuvConversionMode::Balanced;

#[derive(Debug, thiserror::Error)]
pub enum ColorError {
    #[error("no colour conversion from {from:?} to {to:?}")]
    Unsupported { from: PixelFormat, to: PixelFormat },
    #[error("image too large for the converter: {width}x{height}")]
    TooLarge { width: usize, height: usize },
    #[error("colour conversion failed: {0}")]
    Backend(#[from] YuvError),
}

/// Whether [`convert`] handles `from -> to`; lets callers pick a path before they have a frame.
pub fn is_supported(from: PixelFormat, to: PixelFormat) -> bool {
    use PixelFormat::*;
    from == to
        || matches!(
            (from, to),
            (I420, Bgr24 | Rgba | Bgra | Gray8)
                | (Gray8, Bgr24 | Rgba | Bgra | I420)
                | (Rgba | Bgra, Bgr24)
                | (Bgr24 | Rgba | Bgra, I420)
        )
}

/// Converts any supported src into dst (dst is reset to `to` at src's size). Supported:
/// I420 -> Bgr24/Rgba/Bgra/Gray8; Gray8 -> Bgr24/Rgba/Bgra/I420 (I420: copy Y, chroma 128);
/// Rgba/Bgra -> Bgr24; Bgr24 -> I420; Rgba/Bgra -> I420; same format -> plain copy.
/// Unsupported pairs -> [`ColorError::Unsupported`].
pub fn convert(src: &FrameView<'_>, dst: &mut Frame, to: PixelFormat) -> Result<(), ColorError> {
    use PixelFormat::*;
    let from = src.format;
    if !is_supported(from, to) {
        return Err(ColorError::Unsupported { from, to });
    }
    let (width, height) = (src.width, src.height);
    let w32 = u32::try_from(width).map_err(|_| ColorError::TooLarge { width, height })?;
    let h32 = u32::try_from(height).map_err(|_| ColorError::TooLarge { width, height })?;
    // stride arithmetic in the crate is u32 too
    if u32::try_from(width * 4).is_err() {
        return Err(ColorError::TooLarge { width, height });
    }
    dst.reset(to, width, height);
    if width == 0 || height == 0 {
        // nothing to convert; the crate rejects empty images
        return Ok(());
    }
    if from == to {
        for (i, mut d) in dst
            .planes_mut()
            .into_iter()
            .enumerate()
            .take(to.plane_count())
        {
            d.copy_from(&src.planes[i]);
        }
        return Ok(());
    }
    match (from, to) {
        (I420, Bgr24 | Rgba | Bgra) => {
            let image = planar(src, w32, h32);
            let out = dst.plane_mut(0);
            let stride = out.stride as u32;
            let kernel = match to {
                Bgr24 => yuv::yuv420_to_bgr,
                Rgba => yuv::yuv420_to_rgba,
                _ => yuv::yuv420_to_bgra,
            };
            kernel(&image, out.data, stride, RANGE, MATRIX)?;
        }
        (I420, Gray8) => dst.plane_mut(0).copy_from(&src.planes[0]),
        (Gray8, Bgr24 | Rgba | Bgra) => {
            let s = src.planes[0];
            let mut out = dst.plane_mut(0);
            let bpp = to.bytes_per_pixel();
            for y in 0..height {
                let row = s.row(y);
                let o = out.row_mut(y);
                if bpp == 3 {
                    for (px, &g) in o.chunks_exact_mut(3).zip(row) {
                        px.copy_from_slice(&[g, g, g]);
                    }
                } else {
                    for (px, &g) in o.chunks_exact_mut(4).zip(row) {
                        px.copy_from_slice(&[g, g, g, 255]);
                    }
                }
            }
        }
        (Gray8, I420) => {
            let [mut y, mut u, mut v] = dst.planes_mut();
            y.copy_from(&src.planes[0]);
            u.fill(128);
            v.fill(128);
        }
        (Rgba | Bgra, Bgr24) => {
            let s = src.planes[0];
            let out = dst.plane_mut(0);
            let stride = out.stride as u32;
            let kernel = if from == Rgba {
                yuv::rgba_to_bgr
            } else {
                yuv::bgra_to_bgr
            };
            kernel(s.span(), s.stride as u32, out.data, stride, w32, h32)?;
        }
        (Bgr24 | Rgba | Bgra, I420) => {
            let s = src.planes[0];
            let [y, u, v] = dst.planes_mut();
            let mut image = YuvPlanarImageMut {
                y_stride: y.stride as u32,
                y_plane: BufferStoreMut::Borrowed(y.data),
                u_stride: u.stride as u32,
                u_plane: BufferStoreMut::Borrowed(u.data),
                v_stride: v.stride as u32,
                v_plane: BufferStoreMut::Borrowed(v.data),
                width: w32,
                height: h32,
            };
            let kernel = match from {
                Bgr24 => yuv::bgr_to_yuv420,
                Rgba => yuv::rgba_to_yuv420,
                _ => yuv::bgra_to_yuv420,
            };
            kernel(&mut image, s.span(), s.stride as u32, RANGE, MATRIX, MODE)?;
        }
        _ => return Err(ColorError::Unsupported { from, to }),
    }
    Ok(())
}

fn planar<'a>(src: &FrameView<'a>, width: u32, height: u32) -> YuvPlanarImage<'a, u8> {
    let p = |i: usize| -> Plane<'a> { src.planes[i] };
    YuvPlanarImage {
        y_plane: p(0).span(),
        y_stride: p(0).stride as u32,
        u_plane: p(1).span(),
        u_stride: p(1).stride as u32,
        v_plane: p(2).span(),
        v_stride: p(2).stride as u32,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i420(width: usize, height: usize, f: impl Fn(usize, usize, usize) -> u8) -> Frame {
        let mut frame = Frame::new(PixelFormat::I420, width, height);
        for (i, mut p) in frame.planes_mut().into_iter().enumerate() {
            for y in 0..p.height {
                for (x, b) in p.row_mut(y).iter_mut().enumerate() {
                    *b = f(i, x, y);
                }
            }
        }
        frame
    }

    fn solid_i420(y: u8, u: u8, v: u8) -> Frame {
        i420(8, 8, |i, _, _| [y, u, v][i])
    }

    fn smooth(i: usize, x: usize, y: usize) -> u8 {
        match i {
            // in gamut everywhere, so no channel clips on the way through RGB
            0 => (90 + x + y / 2) as u8,
            1 => (112 + x / 4) as u8,
            _ => (140 - y / 4) as u8,
        }
    }

    #[test]
    fn limited_range_white_and_black() {
        let mut out = Frame::new(PixelFormat::Bgr24, 1, 1);
        convert(
            &solid_i420(235, 128, 128).view(),
            &mut out,
            PixelFormat::Bgr24,
        )
        .unwrap();
        assert!(
            out.data().iter().all(|&b| b >= 254),
            "{:?}",
            &out.data()[..3]
        );
        convert(
            &solid_i420(16, 128, 128).view(),
            &mut out,
            PixelFormat::Bgr24,
        )
        .unwrap();
        assert!(out.data().iter().all(|&b| b <= 1), "{:?}", &out.data()[..3]);
    }

    #[test]
    fn bt601_red() {
        // BT.601 limited-range pure red: Y=81, Cb=90, Cr=240
        let mut out = Frame::new(PixelFormat::Rgba, 1, 1);
        convert(&solid_i420(81, 90, 240).view(), &mut out, PixelFormat::Rgba).unwrap();
        let px = &out.data()[..4];
        assert!(
            px[0] >= 250 && px[1] <= 4 && px[2] <= 4 && px[3] == 255,
            "{px:?}"
        );
        let mut bgr = Frame::new(PixelFormat::Bgr24, 1, 1);
        convert(
            &solid_i420(81, 90, 240).view(),
            &mut bgr,
            PixelFormat::Bgr24,
        )
        .unwrap();
        let px = &bgr.data()[..3];
        assert!(px[2] >= 250 && px[0] <= 4 && px[1] <= 4, "{px:?}");
        // and back: red BGR -> I420 gives the BT.601 code values
        let red_px = [0, 0, 255].repeat(4);
        let red = FrameView::from_packed_bytes(PixelFormat::Bgr24, 2, 2, &red_px).unwrap();
        let mut yuv = Frame::new(PixelFormat::I420, 1, 1);
        convert(&red, &mut yuv, PixelFormat::I420).unwrap();
        let (y, u, v) = (
            yuv.plane(0).row(0)[0],
            yuv.plane(1).row(0)[0],
            yuv.plane(2).row(0)[0],
        );
        assert!(
            y.abs_diff(81) <= 1 && u.abs_diff(90) <= 1 && v.abs_diff(240) <= 1,
            "{y} {u} {v}"
        );
    }

    #[test]
    fn round_trip_i420_bgr_i420_is_close_on_smooth_content() {
        let src = i420(64, 48, smooth);
        for packed in [PixelFormat::Bgr24, PixelFormat::Rgba, PixelFormat::Bgra] {
            let mut mid = Frame::new(packed, 1, 1);
            convert(&src.view(), &mut mid, packed).unwrap();
            let mut back = Frame::new(PixelFormat::I420, 1, 1);
            convert(&mid.view(), &mut back, PixelFormat::I420).unwrap();
            let worst = src
                .data()
                .iter()
                .zip(back.data())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst <= 3, "{packed:?}: max diff {worst}");
        }
    }

    #[test]
    fn gray_replicates_and_feeds_i420() {
        let data: Vec<u8> = (0..12).map(|i| i * 20).collect();
        let gray = FrameView::from_packed_bytes(PixelFormat::Gray8, 4, 3, &data).unwrap();
        let mut out = Frame::new(PixelFormat::Bgr24, 1, 1);
        convert(&gray, &mut out, PixelFormat::Bgr24).unwrap();
        for (px, &g) in out.data().chunks_exact(3).zip(&data) {
            assert_eq!(px, &[g, g, g]);
        }
        convert(&gray, &mut out, PixelFormat::Bgra).unwrap();
        for (px, &g) in out.data().chunks_exact(4).zip(&data) {
            assert_eq!(px, &[g, g, g, 255]);
        }
        convert(&gray, &mut out, PixelFormat::I420).unwrap();
        assert_eq!(out.format(), PixelFormat::I420);
        assert_eq!(&out.data()[..12], &data[..]);
        assert!(out.data()[12..].iter().all(|&c| c == 128));
    }

    #[test]
    fn strided_view_matches_tight_copy() {
        let big = i420(40, 30, |i, x, y| (x * 7 + y * 3 + i * 50) as u8);
        let crop = big.view().crop_rows(6, 14);
        assert!(!crop.planes[0].data.is_empty());
        let mut tight = Frame::new(PixelFormat::I420, 1, 1);
        tight.copy_from(&crop);
        for to in [PixelFormat::Bgr24, PixelFormat::Rgba, PixelFormat::Bgra] {
            let mut a = Frame::new(to, 1, 1);
            let mut b = Frame::new(to, 1, 1);
            convert(&crop, &mut a, to).unwrap();
            convert(&tight.view(), &mut b, to).unwrap();
            assert_eq!(a.data(), b.data(), "{to:?}");
            // packed -> I420 from a strided packed view
            let mut packed_big = Frame::new(to, 1, 1);
            convert(&big.view(), &mut packed_big, to).unwrap();
            let pcrop = packed_big.view().crop_rows(6, 14);
            let mut ptight = Frame::new(to, 1, 1);
            ptight.copy_from(&pcrop);
            let mut c = Frame::new(PixelFormat::I420, 1, 1);
            let mut d = Frame::new(PixelFormat::I420, 1, 1);
            convert(&pcrop, &mut c, PixelFormat::I420).unwrap();
            convert(&ptight.view(), &mut d, PixelFormat::I420).unwrap();
            assert_eq!(c.data(), d.data(), "{to:?} -> I420");
        }
    }

    #[test]
    fn rgba_bgra_to_bgr_shuffles() {
        let rgba = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let v = FrameView::from_packed_bytes(PixelFormat::Rgba, 2, 1, &rgba).unwrap();
        let mut out = Frame::new(PixelFormat::Bgr24, 1, 1);
        convert(&v, &mut out, PixelFormat::Bgr24).unwrap();
        assert_eq!(out.data(), &[3, 2, 1, 7, 6, 5]);
        let v = FrameView::from_packed_bytes(PixelFormat::Bgra, 2, 1, &rgba).unwrap();
        convert(&v, &mut out, PixelFormat::Bgr24).unwrap();
        assert_eq!(out.data(), &[1, 2, 3, 5, 6, 7]);
    }

    #[test]
    fn same_format_copies_and_odd_sizes_work() {
        let src = i420(7, 5, smooth);
        let mut out = Frame::new(PixelFormat::Gray8, 1, 1);
        convert(&src.view(), &mut out, PixelFormat::I420).unwrap();
        assert_eq!(out.data(), src.data());
        convert(&src.view(), &mut out, PixelFormat::Bgr24).unwrap();
        assert_eq!(out.data().len(), 7 * 5 * 3);
    }

    #[test]
    fn unsupported_pair_is_an_error() {
        let bgr = Frame::new(PixelFormat::Bgr24, 4, 4);
        let mut out = Frame::new(PixelFormat::Gray8, 1, 1);
        let err = convert(&bgr.view(), &mut out, PixelFormat::Rgba).unwrap_err();
        assert!(matches!(
            err,
            ColorError::Unsupported {
                from: PixelFormat::Bgr24,
                to: PixelFormat::Rgba
            }
        ));
        assert!(convert(&bgr.view(), &mut out, PixelFormat::Gray8).is_err());
    }

    #[test]
    fn no_reallocation_when_capacity_suffices() {
        let src = i420(32, 32, smooth);
        let mut out = Frame::new(PixelFormat::Rgba, 32, 32);
        let ptr = out.data().as_ptr();
        convert(&src.view(), &mut out, PixelFormat::Bgr24).unwrap();
        convert(&src.view(), &mut out, PixelFormat::Rgba).unwrap();
        assert_eq!(out.data().as_ptr(), ptr);
    }
}
