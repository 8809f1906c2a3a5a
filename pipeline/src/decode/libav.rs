//! The libavcodec backend: FFmpeg's H.264 decoder in-process through `ffmpeg-next`, the same
//! decoder the official Python client runs through PyAV.
//!
//! Access units go in as packets directly, without libavcodec's H.264 parser: the parser only
//! exists to find picture boundaries in an unframed byte stream, and our callers already hand
//! over whole access units (the RTP depacketizer by timestamp change, fixture replay through
//! [`super::annexb::split_access_units`]). A whole picture per packet also lets the decoder
//! finish the picture when the packet ends, where the parser would hold it until the next
//! access unit starts (the official client's one-frame delay, protocol doc section 5).
//!
//! libavcodec logs to stderr by default; opening this decoder sets its (process-wide) log level
//! to quiet, since errors come back as [`DecodeError`]s and counters instead.

use std::ptr;

use ff::ffi;
use ffmpeg_next as ff;

use super::{
    Cause, DecodeError, DecodeStats, Decoded, Decoder, DecoderKind, DecoderOptions, Picture, Taken,
    Tracker,
};
use crate::frame::{FramePool, LentHandle, PixelFormat};

const KIND: DecoderKind = DecoderKind::Libav;

/// First size of the reusable packet buffer; it grows to the largest access unit seen (an IDR
/// of the Neon's 1600x1200 stream is on the order of 100 KB).
const MIN_PACKET: usize = 64 * 1024;

/// libavcodec's H.264 decoder with its reusable packet and frame.
pub struct LibavDecoder<T> {
    decoder: ff::decoder::Video,
    /// Reused while libavcodec holds no reference to its buffer (checked per access unit), so
    /// the compressed bytes are copied once into a padded buffer and nothing is allocated.
    packet: ff::Packet,
    /// Usable bytes of `packet`'s buffer (the zeroed padding libavcodec needs comes on top).
    capacity: usize,
    frame: ff::frame::Video,
    tracker: Tracker<T>,
    low_delay: bool,
    fast: bool,
    zero_copy: bool,
}

impl<T: Copy + Send> LibavDecoder<T> {
    pub fn new(options: &DecoderOptions) -> Result<Self, DecodeError> {
        let open_err = |detail: String| DecodeError::Open { kind: KIND, detail };
        ff::init().map_err(|e| open_err(e.to_string()))?;
        ff::util::log::set_level(ff::util::log::Level::Quiet);
        let codec = ff::decoder::find(ff::codec::Id::H264)
            .ok_or_else(|| open_err("this libavcodec has no H.264 decoder".into()))?;
        let mut ctx = ff::codec::Context::new_with_codec(codec);
        let threads = options.threads.max(1);
        // Frame threads by default, not slice threads: one slice per picture is common for
        // camera encoders, and slice threading does nothing for those.
        ctx.set_threading(ff::threading::Config {
            kind: match (threads > 1, options.slice_threads) {
                (false, _) => ff::threading::Type::None,
                (true, false) => ff::threading::Type::Frame,
                (true, true) => ff::threading::Type::Slice,
            },
            count: threads,
            ..Default::default()
        });
        let before = if threads > 1 {
            crate::resources::thread_ids()
        } else {
            Vec::new()
        };
        let decoder = ctx
            .decoder()
            .open_as(codec)
            .and_then(|d| d.video())
            .map_err(|e| open_err(e.to_string()))?;
        if threads > 1 {
            // libavcodec starts its worker threads in avcodec_open2; named, their CPU shows
            // apart from the thread that feeds them in the report's per-thread table.
            crate::resources::name_new_threads(&before, "libav-decode");
        }
        Ok(LibavDecoder {
            decoder,
            packet: ff::Packet::empty(),
            capacity: 0,
            frame: ff::frame::Video::empty(),
            tracker: Tracker::new(KIND),
            low_delay: options.low_delay,
            fast: false,
            zero_copy: options.zero_copy,
        })
    }

    /// Copies `au` into the packet, with `seq` as its timestamp (it comes back on the picture).
    fn load_packet(&mut self, au: &[u8], seq: u64) -> Result<(), Cause> {
        let too_big = Cause::Libav(ff::Error::Other {
            errno: ff::util::error::EFBIG,
        });
        let size = i32::try_from(au.len()).map_err(|_| too_big)?;
        // SAFETY: `packet` owns a valid AVPacket; `buf` is only dereferenced when non-null.
        let reusable = unsafe {
            let buf = (*ff::packet::Mut::as_mut_ptr(&mut self.packet)).buf;
            !buf.is_null() && ffi::av_buffer_is_writable(buf) == 1 && au.len() <= self.capacity
        };
        if !reusable {
            let capacity = au.len().next_power_of_two().max(MIN_PACKET);
            let cap_i32 = i32::try_from(capacity).map_err(|_| too_big)?;
            let mut packet = ff::Packet::empty();
            // SAFETY: av_new_packet initialises the packet with a fresh buffer of `capacity`
            // bytes plus zeroed padding, or fails without touching it.
            let ret =
                unsafe { ffi::av_new_packet(ff::packet::Mut::as_mut_ptr(&mut packet), cap_i32) };
            if ret < 0 {
                return Err(Cause::Libav(ff::Error::from(ret)));
            }
            self.packet = packet;
            self.capacity = capacity;
        }
        // SAFETY: the buffer is ours alone (writable, i.e. referenced once) and holds
        // `capacity + AV_INPUT_BUFFER_PADDING_SIZE` bytes, and `au.len() <= capacity`.
        unsafe {
            let pkt = ff::packet::Mut::as_mut_ptr(&mut self.packet);
            let data = (*(*pkt).buf).data;
            ptr::copy_nonoverlapping(au.as_ptr(), data, au.len());
            ptr::write_bytes(
                data.add(au.len()),
                0,
                ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize,
            );
            (*pkt).data = data;
            (*pkt).size = size;
            (*pkt).pts = seq as i64;
            (*pkt).dts = ffi::AV_NOPTS_VALUE;
            (*pkt).flags = 0;
        }
        Ok(())
    }

    /// Takes every picture libavcodec has ready. The first error is kept in `first_err`.
    fn drain(
        &mut self,
        pool: &mut FramePool,
        out: &mut Vec<Decoded<T>>,
        first_err: &mut Option<DecodeError>,
    ) {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    let r = self.picture(pool, out);
                    // SAFETY: the frame is valid; unref hands its buffer back to libavcodec's
                    // pool now rather than at the next receive.
                    unsafe { ffi::av_frame_unref(self.frame.as_mut_ptr()) };
                    if let Err(e) = r {
                        first_err.get_or_insert(e);
                    }
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => {
                    // Frame threads report a picture's decode error here, late.
                    let seq = self.tracker.latest();
                    if let Some(err) = self.tracker.corrupt(seq, Cause::Libav(e)) {
                        first_err.get_or_insert(err);
                    }
                    break;
                }
            }
        }
    }

    /// Hands out the picture in `self.frame`.
    fn picture(
        &mut self,
        pool: &mut FramePool,
        out: &mut Vec<Decoded<T>>,
    ) -> Result<(), DecodeError> {
        // SAFETY: `frame` holds a picture just returned by avcodec_receive_frame.
        let f = unsafe { &*self.frame.as_ptr() };
        let pts = if f.pts != ffi::AV_NOPTS_VALUE {
            f.pts
        } else {
            f.best_effort_timestamp
        };
        let Some(Taken { seq, token, len }) = self.tracker.take(pts)? else {
            return Ok(());
        };
        if (f.decode_error_flags != 0 || f.flags & ffi::AV_FRAME_FLAG_CORRUPT != 0)
            && !self.tracker.conceals()
        {
            let cause = Cause::LibavFlagged {
                decode_error_flags: f.decode_error_flags,
            };
            return self.tracker.fail(seq, len, cause).map_or(Ok(()), Err);
        }
        let yuv420 = [
            ffi::AVPixelFormat::AV_PIX_FMT_YUV420P as i32,
            ffi::AVPixelFormat::AV_PIX_FMT_YUVJ420P as i32,
        ];
        if !yuv420.contains(&f.format) {
            return Err(DecodeError::UnsupportedFormat {
                kind: KIND,
                au: seq,
                format: format!("{:?}", self.frame.format()),
            });
        }
        // SAFETY: a decoded yuv420p AVFrame has `height` rows of `linesize[0]` bytes in plane
        // 0 and `ceil(height / 2)` rows of `linesize[1|2]` in planes 1 and 2, valid until the
        // frame is unreferenced, which happens after this function returns.
        let picture = unsafe {
            Picture::from_raw(
                KIND,
                seq,
                i64::from(f.width),
                i64::from(f.height),
                [f.data[0], f.data[1], f.data[2]].map(|p| p as *const u8),
                [f.linesize[0], f.linesize[1], f.linesize[2]].map(i64::from),
            )?
        };
        if self.zero_copy {
            let (w, h) = (picture.width(), picture.height());
            // SAFETY: the frame is ours; the pointer is used only inside the `lend` below.
            let src = unsafe { self.frame.as_mut_ptr() };
            let lent = pool.lend(|frame| {
                // SAFETY: `make` returns a fresh AVFrame that the frame frees once (av_frame_free)
                // and unrefs between pictures; `fill` moves this picture's references into it,
                // so its planes (checked by Picture::from_raw above) stay valid until then.
                unsafe {
                    frame.lend(
                        PixelFormat::I420,
                        w,
                        h,
                        || {
                            let p = std::ptr::NonNull::new(ffi::av_frame_alloc())?;
                            Some(LentHandle::new(p.cast(), unref_frame, free_frame))
                        },
                        |handle| {
                            let dst = handle.cast::<ffi::AVFrame>();
                            ffi::av_frame_move_ref(dst, src);
                            let d = &*dst;
                            (
                                [d.data[0], d.data[1], d.data[2]].map(|p| p as *const u8),
                                [d.linesize[0], d.linesize[1], d.linesize[2]]
                                    .map(|l| l.max(0) as usize),
                            )
                        },
                    )
                }
            });
            if let Some(frame) = lent {
                self.tracker.emit_frame(token, frame, out);
                return Ok(());
            }
            // No AVFrame could be allocated: copy as without zero-copy.
        }
        self.tracker.emit(token, &picture, pool, out);
        Ok(())
    }
}

/// [`LentHandle`] release: gives libavcodec its picture buffer back, keeps the AVFrame.
unsafe fn unref_frame(p: *mut std::ffi::c_void) {
    // SAFETY: `p` is the AVFrame made in `picture` (LentHandle's contract).
    unsafe { ffi::av_frame_unref(p.cast()) };
}

/// [`LentHandle`] free: the AVFrame itself, once.
unsafe fn free_frame(p: *mut std::ffi::c_void) {
    let mut f = p.cast::<ffi::AVFrame>();
    // SAFETY: as above; av_frame_free unrefs and frees it and nulls our copy of the pointer.
    unsafe { ffi::av_frame_free(&mut f) };
}

impl<T: Copy + Send> Decoder<T> for LibavDecoder<T> {
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
        // An empty packet would mean "end of stream" to libavcodec.
        let loaded = if au.is_empty() {
            Err(Cause::Empty)
        } else {
            self.load_packet(au, seq)
        };
        if let Err(cause) = loaded {
            first_err = first_err.or(self.tracker.corrupt(seq, cause));
            return first_err.map_or(Ok(()), Err);
        }
        let mut sent = self.decoder.send_packet(&self.packet);
        if matches!(sent, Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN) {
            // Cannot happen while every call drains, but the API allows it: drain, then retry.
            self.drain(pool, out, &mut first_err);
            sent = self.decoder.send_packet(&self.packet);
        }
        if let Err(e) = sent {
            first_err = first_err.or(self.tracker.corrupt(seq, Cause::Libav(e)));
        }
        self.drain(pool, out, &mut first_err);
        first_err.map_or(Ok(()), Err)
    }

    fn flush(
        &mut self,
        pool: &mut FramePool,
        out: &mut Vec<Decoded<T>>,
    ) -> Result<(), DecodeError> {
        let mut first_err = None;
        match self.decoder.send_eof() {
            Ok(()) | Err(ff::Error::Eof) => self.drain(pool, out, &mut first_err),
            Err(e) => {
                first_err = Some(DecodeError::Backend {
                    kind: KIND,
                    what: "end of stream",
                    cause: Cause::Libav(e),
                })
            }
        }
        // avcodec_flush_buffers: leaves draining mode so a new stream can follow.
        self.decoder.flush();
        self.tracker.restart();
        first_err.map_or(Ok(()), Err)
    }

    fn mark_loss(&mut self) {
        self.tracker.mark_loss();
    }

    fn set_conceal(&mut self, on: bool) {
        self.tracker.set_conceal(on);
    }

    fn set_fast(&mut self, on: bool) -> bool {
        if on != self.fast {
            self.fast = on;
            // SAFETY: the context is open and ours; the h264 decoder reads skip_loop_filter and
            // flags2 per slice, and frame threads copy them from this context per packet
            // (update_context_from_user), so changing them between packets is allowed.
            unsafe {
                let ctx = self.decoder.as_mut_ptr();
                (*ctx).skip_loop_filter = if on {
                    ffi::AVDiscard::AVDISCARD_ALL
                } else {
                    ffi::AVDiscard::AVDISCARD_DEFAULT
                };
                let fast = ffi::AV_CODEC_FLAG2_FAST;
                (*ctx).flags2 = if on {
                    (*ctx).flags2 | fast
                } else {
                    (*ctx).flags2 & !fast
                };
            }
        }
        true
    }

    fn stats(&self) -> DecodeStats {
        self.tracker.stats()
    }
}
