//! The preview frame into JPEG: a stride-aware adapter from the frame model to jpeg-encoder's
//! row interface, and the multipart part (header + JPEG) the MJPEG stream sends.
//!
//! The preview is I420 in the default pipeline (gray is coloured into I420 at preview size,
//! `coordinator::render`), and JPEG stores YCbCr 4:2:0 too: the adapter hands the Y, U and V
//! rows to the encoder as they are, so the default path does no colour conversion. Packed
//! formats (the `--color-path bgr` preview) go through jpeg-encoder's own RGB to YCbCr.

use bytes::{BufMut, BytesMut};
use jpeg_encoder::{Encoder, ImageBuffer, JpegColorType, SamplingFactor};

use crate::frame::{FrameView, PixelFormat};

/// Quality of the preview JPEG: a 640x360 preview is about 30-50 KB at 75.
pub const QUALITY: u8 = 75;

#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    #[error("preview {width}x{height} is too large for JPEG (65535 at most)")]
    TooLarge { width: usize, height: usize },
    #[error("preview frame is empty")]
    Empty,
    #[error("JPEG encoding: {0}")]
    Encode(#[from] jpeg_encoder::EncodingError),
}

/// A frame view as jpeg-encoder's input.
struct FrameImage<'a> {
    view: FrameView<'a>,
    width: u16,
    height: u16,
}

impl ImageBuffer for FrameImage<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        match self.view.format {
            PixelFormat::Gray8 => JpegColorType::Luma,
            _ => JpegColorType::Ycbcr,
        }
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let (y, w) = (usize::from(y), usize::from(self.width));
        let v = &self.view;
        match v.format {
            PixelFormat::Gray8 => buffers[0].extend_from_slice(&v.plane(0).row(y)[..w]),
            PixelFormat::I420 => {
                buffers[0].extend_from_slice(&v.plane(0).row(y)[..w]);
                // The encoder wants full-width chroma rows and subsamples them itself (4:2:0
                // sampling factor): repeating each sample makes its average the sample.
                let (u, cr) = (v.plane(1).row(y / 2), v.plane(2).row(y / 2));
                for x in 0..w {
                    buffers[1].push(u[x / 2]);
                    buffers[2].push(cr[x / 2]);
                }
            }
            PixelFormat::Bgr24 | PixelFormat::Rgba | PixelFormat::Bgra => {
                let bpp = v.format.bytes_per_pixel();
                let rgb_order = v.format == PixelFormat::Rgba;
                for px in v.plane(0).row(y)[..w * bpp].chunks_exact(bpp) {
                    let (r, g, b) = if rgb_order {
                        (px[0], px[1], px[2])
                    } else {
                        (px[2], px[1], px[0])
                    };
                    let (yy, cb, cr) = jpeg_encoder::rgb_to_ycbcr(r, g, b);
                    buffers[0].push(yy);
                    buffers[1].push(cb);
                    buffers[2].push(cr);
                }
            }
        }
    }
}

/// The header of one multipart part, with room for the length patched in after encoding (the
/// padding is optional whitespace after the value, RFC 9110 section 5.5).
const PART_HEAD: &[u8] = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ";
const LEN_FIELD: usize = 10;

/// Appends one MJPEG part (`--frame` header, JPEG, CRLF) to `out`; returns where the JPEG
/// starts. Encodes straight into `out`, so the JPEG is written once and never copied.
pub fn encode_part(view: &FrameView<'_>, out: &mut BytesMut) -> Result<usize, JpegError> {
    let start = out.len();
    out.put_slice(PART_HEAD);
    let len_at = out.len();
    out.put_slice(&[b' '; LEN_FIELD]);
    out.put_slice(b"\r\n\r\n");
    let jpeg_at = out.len();
    encode(view, out)?;
    let jpeg_len = out.len() - jpeg_at;
    write_decimal(&mut out[len_at..len_at + LEN_FIELD], jpeg_len);
    out.put_slice(b"\r\n");
    Ok(jpeg_at - start)
}

/// Writes `n` left-aligned into `field` (which holds spaces), without a temporary string.
fn write_decimal(field: &mut [u8], n: usize) {
    let mut digits = [0u8; 20];
    let (mut i, mut n) = (digits.len(), n);
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let d = &digits[i..];
    let k = d.len().min(field.len());
    field[..k].copy_from_slice(&d[..k]);
}

/// Appends a JPEG of `view` to `out`.
pub fn encode(view: &FrameView<'_>, out: &mut BytesMut) -> Result<(), JpegError> {
    let (width, height) = (view.width, view.height);
    if width == 0 || height == 0 {
        return Err(JpegError::Empty);
    }
    let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(JpegError::TooLarge { width, height });
    };
    let mut enc = Encoder::new(out.writer(), QUALITY);
    if view.format != PixelFormat::Gray8 {
        enc.set_sampling_factor(SamplingFactor::F_2_2);
    }
    enc.encode_image(FrameImage {
        view: *view,
        width: w,
        height: h,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    /// A frame with a bright square on a dark background, in `format`.
    fn square(format: PixelFormat) -> Frame {
        let mut src = Frame::new(PixelFormat::I420, 64, 48);
        {
            let [mut y, mut u, mut v] = src.planes_mut();
            for row in 0..48 {
                for (x, p) in y.row_mut(row).iter_mut().enumerate() {
                    *p = if (16..32).contains(&x) && (8..24).contains(&row) {
                        220
                    } else {
                        30
                    };
                }
            }
            u.fill(128);
            v.fill(128);
        }
        if format == PixelFormat::I420 {
            return src;
        }
        let mut out = Frame::new(format, 1, 1);
        crate::color::convert(&src.view(), &mut out, format).unwrap();
        out
    }

    #[test]
    fn every_preview_format_encodes_a_delimited_jpeg_part() {
        for format in [
            PixelFormat::I420,
            PixelFormat::Gray8,
            PixelFormat::Bgr24,
            PixelFormat::Rgba,
            PixelFormat::Bgra,
        ] {
            let f = square(format);
            let mut out = BytesMut::new();
            let at = encode_part(&f.view(), &mut out).unwrap();
            let text = String::from_utf8_lossy(&out[..at]);
            let len: usize = text
                .split("Content-Length:")
                .nth(1)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let jpeg = &out[at..];
            assert_eq!(jpeg.len(), len + 2, "{format:?}");
            assert_eq!(&jpeg[..2], &[0xff, 0xd8], "SOI {format:?}");
            assert_eq!(&jpeg[len - 2..len], &[0xff, 0xd9], "EOI {format:?}");
            assert_eq!(&jpeg[len..], b"\r\n");
        }
    }

    #[test]
    fn different_frames_give_different_jpegs() {
        let a = square(PixelFormat::I420);
        let mut b = square(PixelFormat::I420);
        b.plane_mut(0).fill(200);
        let (mut ja, mut jb) = (BytesMut::new(), BytesMut::new());
        encode(&a.view(), &mut ja).unwrap();
        encode(&b.view(), &mut jb).unwrap();
        assert_ne!(ja, jb);
        assert!(matches!(
            encode(&Frame::new(PixelFormat::I420, 70_000, 2).view(), &mut ja),
            Err(JpegError::TooLarge { .. })
        ));
    }
}
