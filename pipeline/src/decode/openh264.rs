//! The openh264 backend: Cisco's decoder built from the source bundled in the `openh264` crate
//! (x86 assembly through nasm at build time, NEON assembly on aarch64), driven through the
//! crate's raw API.
//!
//! The crate's `Decoder::decode` is not used: it cannot carry a timestamp through the decoder,
//! and in its default flush mode it pulls a picture out of the reorder buffer after every call,
//! which mis-orders streams with B-frames (design.md). Instead each access unit goes to
//! `DecodeFrameNoDelay` with our sequence number in `uiInBsTimeStamp`, which openh264 hands
//! back as the picture's `uiOutYuvTimeStamp`, and `FlushFrame` runs only at the end of the
//! stream. Error concealment stays off (the crate's default), so a damaged picture is reported
//! rather than smeared over, and pictures resume at the next IDR.
//!
//! If `nasm` is missing at build time the crate silently builds plain C, 2-3x slower; the
//! test `openh264_links_its_x86_assembly` catches that on x86_64.

use std::ptr;

use ::openh264::decoder::{Decoder as Oh264, DecoderConfig, Flush};
use ::openh264::OpenH264API;
use openh264_sys2 as sys;

use super::{
    Cause, DecodeError, DecodeStats, Decoded, Decoder, DecoderKind, DecoderOptions, Picture, Taken,
    Tracker, IN_FLIGHT,
};
use crate::frame::FramePool;

const KIND: DecoderKind = DecoderKind::Openh264;

/// openh264's decoder, single-threaded.
pub struct Openh264Decoder<T> {
    decoder: Oh264,
    tracker: Tracker<T>,
    low_delay: bool,
}

impl<T: Copy + Send> Openh264Decoder<T> {
    pub fn new(options: &DecoderOptions) -> Result<Self, DecodeError> {
        if options.threads > 1 {
            return Err(DecodeError::Open {
                kind: KIND,
                detail: format!(
                    "{} threads requested; this backend decodes on one thread (the openh264 \
                     crate marks its threading as experimental and prone to crash)",
                    options.threads
                ),
            });
        }
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder = Oh264::with_api_config(OpenH264API::from_source(), config).map_err(|e| {
            DecodeError::Open {
                kind: KIND,
                detail: e.to_string(),
            }
        })?;
        Ok(Openh264Decoder {
            decoder,
            tracker: Tracker::new(KIND),
            low_delay: options.low_delay,
        })
    }

    /// Hands out the picture openh264 returned, if any.
    fn picture(
        &mut self,
        dst: &[*mut u8; 3],
        info: &sys::SBufferInfo,
        pool: &mut FramePool,
        out: &mut Vec<Decoded<T>>,
    ) -> Result<(), DecodeError> {
        if info.iBufferStatus != 1 {
            return Ok(());
        }
        let pts = i64::try_from(info.uiOutYuvTimeStamp).unwrap_or(-1);
        let Some(Taken { seq, token, .. }) = self.tracker.take(pts)? else {
            return Ok(());
        };
        // SAFETY: the union's only member is the system buffer, what openh264 fills in.
        let buf = unsafe { info.UsrData.sSystemBuffer };
        if buf.iFormat != sys::videoFormatI420 {
            return Err(DecodeError::UnsupportedFormat {
                kind: KIND,
                au: seq,
                format: format!("openh264 video format {}", buf.iFormat),
            });
        }
        // SAFETY: with iBufferStatus 1, `dst` points at openh264's picture planes: `iHeight`
        // rows of `iStride[0]` bytes of luma and `iHeight / 2` rows of `iStride[1]` bytes per
        // chroma plane (both sides are even in 4:2:0), valid until the next call into the
        // decoder, which comes after this function returns.
        let picture = unsafe {
            Picture::from_raw(
                KIND,
                seq,
                i64::from(buf.iWidth),
                i64::from(buf.iHeight),
                dst.map(|p| p as *const u8),
                [buf.iStride[0], buf.iStride[1], buf.iStride[1]].map(i64::from),
            )?
        };
        self.tracker.emit(token, &picture, pool, out);
        Ok(())
    }

    fn frames_remaining(&mut self) -> Result<usize, DecodeError> {
        let mut n: std::os::raw::c_int = 0;
        // SAFETY: the option writes one int.
        let ret = unsafe {
            self.decoder.raw_api().get_option(
                sys::DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER,
                ptr::from_mut(&mut n).cast(),
            )
        };
        if ret != 0 {
            return Err(DecodeError::Backend {
                kind: KIND,
                what: "counting held-back pictures",
                cause: Cause::Openh264(ret as i32),
            });
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

impl<T: Copy + Send> Decoder<T> for Openh264Decoder<T> {
    fn kind(&self) -> DecoderKind {
        KIND
    }

    fn decode(
        &mut self,
        au: &[u8],
        token: T,
        pool: &mut FramePool,
        out: &mut Vec<Decoded<T>>,
    ) -> Result<(), DecodeError> {
        let submitted = self.tracker.submit(au, token, self.low_delay);
        let seq = submitted.seq;
        let mut first_err = submitted.error;
        let len = match i32::try_from(au.len()) {
            Ok(len) if len > 0 => len,
            // length 0 means "end of stream" to openh264
            Ok(_) => {
                first_err = first_err.or(self.tracker.corrupt(seq, Cause::Empty));
                return first_err.map_or(Ok(()), Err);
            }
            Err(_) => {
                let cause = Cause::Openh264(sys::dsInvalidArgument);
                first_err = first_err.or(self.tracker.corrupt(seq, cause));
                return first_err.map_or(Ok(()), Err);
            }
        };
        let mut dst = [ptr::null_mut::<u8>(); 3];
        let mut info = sys::SBufferInfo {
            uiInBsTimeStamp: seq,
            ..Default::default()
        };
        // SAFETY: `au` is readable for `len` bytes (openh264 copies what it keeps), `dst` has
        // room for three plane pointers and `info` is a valid SBufferInfo.
        let state = unsafe {
            self.decoder.raw_api().decode_frame_no_delay(
                au.as_ptr(),
                len,
                dst.as_mut_ptr(),
                &mut info,
            )
        };
        let errors = state & !sys::dsFramePending;
        if info.iBufferStatus != 1 && errors == 0 && submitted.in_order {
            // openh264 holds Main/High-profile pictures back for reordering; with no
            // reordering in this stream the held picture is this access unit's: take it now.
            match self.frames_remaining() {
                Ok(0) => {}
                Ok(_) => {
                    // SAFETY: as above; FlushFrame releases the oldest held picture.
                    let flushed = unsafe {
                        self.decoder
                            .raw_api()
                            .flush_frame(dst.as_mut_ptr(), &mut info)
                    };
                    if flushed != 0 {
                        first_err =
                            first_err.or(self.tracker.corrupt(seq, Cause::Openh264(flushed)));
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // A picture that comes out is an earlier, intact one (concealment is off): hand it out
        // before the error below closes the gate.
        if let Err(e) = self.picture(&dst, &info, pool, out) {
            first_err.get_or_insert(e);
        }
        if errors != 0 {
            first_err = first_err.or(self.tracker.corrupt(seq, Cause::Openh264(errors)));
        }
        first_err.map_or(Ok(()), Err)
    }

    fn flush(
        &mut self,
        pool: &mut FramePool,
        out: &mut Vec<Decoded<T>>,
    ) -> Result<(), DecodeError> {
        let mut first_err = None;
        // Bounded: each round releases one picture, and fewer than IN_FLIGHT can be held.
        for _ in 0..IN_FLIGHT {
            if self.frames_remaining()? == 0 {
                break;
            }
            let mut dst = [ptr::null_mut::<u8>(); 3];
            let mut info = sys::SBufferInfo::default();
            // SAFETY: as in `decode`; FlushFrame releases one held-back picture.
            let state = unsafe {
                self.decoder
                    .raw_api()
                    .flush_frame(dst.as_mut_ptr(), &mut info)
            };
            if state != 0 {
                first_err.get_or_insert(DecodeError::Backend {
                    kind: KIND,
                    what: "flushing",
                    cause: Cause::Openh264(state),
                });
                break;
            }
            if info.iBufferStatus != 1 {
                break;
            }
            if let Err(e) = self.picture(&dst, &info, pool, out) {
                first_err.get_or_insert(e);
            }
        }
        self.tracker.restart();
        first_err.map_or(Ok(()), Err)
    }

    fn mark_loss(&mut self) {
        self.tracker.mark_loss();
    }

    fn set_conceal(&mut self, on: bool) {
        self.tracker.set_conceal(on);
    }

    fn stats(&self) -> DecodeStats {
        self.tracker.stats()
    }
}

/// Names of the bits of an openh264 `DECODING_STATE`.
pub(crate) fn state_names(state: i32) -> impl Iterator<Item = &'static str> {
    const NAMES: [(i32, &str); 11] = [
        (sys::dsFramePending, "frame pending"),
        (sys::dsRefLost, "reference lost"),
        (sys::dsBitstreamError, "bitstream error"),
        (sys::dsDepLayerLost, "dependency layer lost"),
        (sys::dsNoParamSets, "no parameter sets"),
        (sys::dsDataErrorConcealed, "data error concealed"),
        (sys::dsRefListNullPtrs, "reference list null"),
        (sys::dsInvalidArgument, "invalid argument"),
        (sys::dsInitialOptExpected, "not initialised"),
        (sys::dsOutOfMemory, "out of memory"),
        (sys::dsDstBufNeedExpan, "output buffer too small"),
    ];
    NAMES
        .into_iter()
        .filter(move |(bit, _)| state & bit != 0)
        .map(|(_, name)| name)
}
