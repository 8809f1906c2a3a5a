//! H.264 decoding: one Annex B access unit in, zero or more pooled I420 frames out, behind one
//! trait with two in-process backends (libavcodec through ffmpeg-next, and Cisco's openh264).
//!
//! Both backends share the bookkeeping in this module: the token ring that maps a picture back
//! to the access unit it was coded in (decoders may hold pictures back, e.g. to reorder
//! B-frames), the "wait for the next IDR" gate that keeps damaged pictures away from the
//! preview, and the one stride-aware copy of the decoder's planes into a pooled [`Frame`].
//! The decode is most of the pipeline's CPU cost (design.md, "Facts measured"), so the backend
//! is a runtime choice (`--decoder`) and both are benched side by side.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

use crate::frame::{Frame, FramePool, PixelFormat, Plane};

pub mod aac;
pub mod annexb;
pub mod libav;
pub mod openh264;
mod stream;

/// Which decoder implementation runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    /// libavcodec in-process (FFmpeg's h264 decoder, what the official Python client runs
    /// through PyAV). The default: the fastest single-threaded decoder measured here (README,
    /// "Decoder").
    #[default]
    Libav,
    /// Cisco's openh264, built from the source bundled in the `openh264` crate (no system
    /// library needed; x86 assembly via nasm, NEON on aarch64).
    Openh264,
}

impl DecoderKind {
    pub const ALL: [DecoderKind; 2] = [DecoderKind::Libav, DecoderKind::Openh264];

    pub fn name(self) -> &'static str {
        match self {
            DecoderKind::Libav => "libav",
            DecoderKind::Openh264 => "openh264",
        }
    }
}

impl fmt::Display for DecoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DecoderKind {
    type Err = UnknownDecoder;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "libav" | "ffmpeg" | "libavcodec" => Ok(DecoderKind::Libav),
            "openh264" => Ok(DecoderKind::Openh264),
            _ => Err(UnknownDecoder(s.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown decoder {0:?} (expected libav or openh264)")]
pub struct UnknownDecoder(pub String);

/// How a decoder is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Decoding threads. Default 1: the pipeline runs acquire, process, preview and overlay on
    /// their own threads, and the target boxes have 2 (this CI machine) to 4 (Pi 5) cores, so
    /// a second decode thread competes with the other stages rather than using an idle core;
    /// libav's frame threading also holds back one picture per extra thread (latency) and
    /// costs more CPU in total than one thread (README, "Decoder"). openh264 supports only 1
    /// here (the crate marks its threading as experimental and prone to crash).
    pub threads: usize,
    /// The caller knows the stream has no B-frames (the Neon's has none: protocol doc section
    /// 8, "Video"), so no picture needs to wait for a later one. openh264 otherwise holds every
    /// Main/High-profile picture back by one access unit unless the SPS says no reordering
    /// happens (VUI `max_num_reorder_frames` 0); libavcodec already releases pictures at once
    /// unless the SPS asks for reordering, so this changes nothing there. A B-slice in the
    /// stream turns the shortcut off again.
    pub low_delay: bool,
    /// With `threads` > 1: slice threads (split one picture; only streams with several slices
    /// per picture gain) instead of frame threads (several pictures at once).
    pub slice_threads: bool,
    /// libav: hand out pictures in libavcodec's own buffers (the frame keeps a reference)
    /// instead of copying each into the pool (`--zero-copy`). Their rows are padded (a
    /// 1600-wide picture has 1664-byte luma rows), which every stage reads through strides.
    pub zero_copy: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            threads: 1,
            low_delay: false,
            slice_threads: false,
            zero_copy: false,
        }
    }
}

/// A decoded picture and the token of the access unit it was coded in.
#[derive(Clone, Debug)]
pub struct Decoded<T> {
    /// I420 exactly as decoded (display size, cropping applied, no colour conversion).
    pub frame: Arc<Frame>,
    pub token: T,
}

/// Running counts, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecodeStats {
    /// Access units fed to [`Decoder::decode`].
    pub access_units: u64,
    /// Pictures handed out.
    pub frames: u64,
    /// Errors returned to the caller (each put the decoder into "wait for the next IDR").
    pub errors: u64,
    /// Further backend errors while waiting for an IDR (pictures that reference the damaged
    /// one fail too); counted here instead of being returned one by one.
    pub errors_while_waiting: u64,
    /// Pictures decoded but not handed out because they came before the next IDR after a
    /// stream start, an error or [`Decoder::mark_loss`] (their references may be damaged).
    pub hidden: u64,
    /// Times the caller reported lost data ([`Decoder::mark_loss`]).
    pub losses: u64,
    /// Pictures handed out although a reference was missing or the backend flagged them as
    /// error-concealed, because the caller chose [`Decoder::set_conceal`].
    pub concealed: u64,
}

/// An H.264 decoder fed one access unit at a time.
///
/// Feed each access unit (Annex B: start-code delimited NAL units; SPS and PPS may come in the
/// same unit or in a unit of their own, e.g. from the SDP's `sprop-parameter-sets`) with a
/// caller-chosen token, typically the frame's metadata. Decoded pictures are pushed to `out`
/// as they come out, each with the token of the access unit that coded it; a picture can come
/// out one or more calls later than its access unit (reordering, frame threads), and
/// [`Decoder::flush`] returns the held-back ones at the end of the stream.
///
/// Output starts at the first IDR picture. A corrupt access unit returns an error (count it);
/// the decoder stays usable and hands out pictures again from the next IDR on, since
/// everything up to that references the damaged picture. Pictures are copied once, into frames
/// taken from `pool`; reuse `out` across calls and nothing is allocated on our side per frame.
pub trait Decoder<T>: Send {
    fn kind(&self) -> DecoderKind;

    /// Decodes one access unit. Pictures completed by it go to `out` (also when an error is
    /// returned for another picture of the same call).
    fn decode(
        &mut self,
        au: &[u8],
        token: T,
        pool: &mut FramePool,
        out: &mut Vec<Decoded<T>>,
    ) -> Result<(), DecodeError>;

    /// Returns every picture still held back, at the end of a stream. The decoder is then ready
    /// for a new stream, which must start at an IDR.
    fn flush(&mut self, pool: &mut FramePool, out: &mut Vec<Decoded<T>>)
        -> Result<(), DecodeError>;

    /// Tells the decoder data was lost before the next access unit (e.g. an RTP sequence gap):
    /// pictures are held back until the next IDR. Needed because a missing non-IDR picture is
    /// not always detectable in the bitstream (libavcodec conceals a `frame_num` gap silently).
    fn mark_loss(&mut self);

    /// Live streams with steady packet loss (a second-long GOP, a few % loss) would show no
    /// picture at all if every loss waited for the next IDR. With `on`, a missing reference
    /// (a `frame_num` gap, [`Decoder::mark_loss`]) and pictures libavcodec flags as
    /// error-concealed are handed out and counted as `concealed` instead of returning an error
    /// and waiting for an IDR. Errors the backend cannot decode past still do. openh264 reports
    /// lost references as errors of its own, so with it this changes little.
    fn set_conceal(&mut self, on: bool);

    /// Decode cheaper at a cost in picture quality (`--fast-decode`): libavcodec skips the
    /// deblocking loop filter and takes its non-conforming speed-ups (`flags2 fast`). Pictures
    /// then drift from the encoder's until the next IDR, so this is for a preview only.
    /// Returns false where the backend has no such mode (openh264), which then decodes fully.
    fn set_fast(&mut self, _on: bool) -> bool {
        false
    }

    fn stats(&self) -> DecodeStats;
}

/// Opens a decoder of the given kind.
pub fn open<T: Copy + Send + 'static>(
    kind: DecoderKind,
    options: &DecoderOptions,
) -> Result<Box<dyn Decoder<T>>, DecodeError> {
    Ok(match kind {
        DecoderKind::Libav => Box::new(libav::LibavDecoder::new(options)?),
        DecoderKind::Openh264 => Box::new(openh264::Openh264Decoder::new(options)?),
    })
}

/// Why an access unit was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// libavcodec refused the packet or failed while decoding it.
    Libav(ffmpeg_next::Error),
    /// libavcodec decoded the picture but flagged it damaged (`AVFrame.decode_error_flags`,
    /// `AV_FRAME_FLAG_CORRUPT`): it was error-concealed.
    LibavFlagged { decode_error_flags: i32 },
    /// openh264's `DECODING_STATE` bits.
    Openh264(i32),
    /// A reference picture is missing: the slice's `frame_num` skips ahead (H.264 7.4.3).
    FrameNumGap { expected: u32, found: u32 },
    /// An access unit with no bytes (openh264 would read it as end of stream).
    Empty,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cause::Libav(e) => write!(f, "libavcodec: {e}"),
            Cause::LibavFlagged { decode_error_flags } => write!(
                f,
                "libavcodec concealed errors in the picture (decode_error_flags {decode_error_flags:#x})"
            ),
            Cause::Openh264(state) => {
                write!(f, "openh264 state {state:#x}")?;
                let mut sep = " (";
                for name in openh264::state_names(state) {
                    f.write_str(sep)?;
                    f.write_str(name)?;
                    sep = ", ";
                }
                if sep == ", " {
                    f.write_str(")")?;
                }
                Ok(())
            }
            Cause::FrameNumGap { expected, found } => write!(
                f,
                "a reference picture is missing (frame_num {found}, expected {expected})"
            ),
            Cause::Empty => f.write_str("empty access unit"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot open the {kind} H.264 decoder: {detail}")]
    Open { kind: DecoderKind, detail: String },
    #[error("{kind}: access unit #{au} ({len} bytes) is corrupt: {cause}")]
    Corrupt {
        kind: DecoderKind,
        /// 0-based index of the access unit among those fed to this decoder.
        au: u64,
        len: usize,
        cause: Cause,
    },
    #[error("{kind}: the picture of access unit #{au} is {format}; only 8-bit 4:2:0 is supported")]
    UnsupportedFormat {
        kind: DecoderKind,
        au: u64,
        format: String,
    },
    #[error("{kind}: the picture of access unit #{au} ({width}x{height}) is malformed: {detail}")]
    BadPicture {
        kind: DecoderKind,
        au: u64,
        width: i64,
        height: i64,
        detail: &'static str,
    },
    #[error(
        "{kind}: a picture came out with timestamp {pts}, which matches no access unit in flight"
    )]
    LostToken { kind: DecoderKind, pts: i64 },
    #[error("{kind}: {what} failed: {cause}")]
    Backend {
        kind: DecoderKind,
        what: &'static str,
        cause: Cause,
    },
}

/// Access units whose pictures can be held back at once: the H.264 DPB holds at most 16, and
/// frame threads add one each. Twice that leaves room.
pub(crate) const IN_FLIGHT: usize = 64;

/// Largest picture side accepted from a backend; a sanity bound against garbage geometry
/// (H.264 level 6.2 tops out at 8192x4320).
const MAX_SIDE: i64 = 16384;

/// The bookkeeping both backends share: sequence numbers and tokens of access units in flight,
/// the IDR gate and the counters. Backends pass the sequence number through the decoder as the
/// picture's timestamp and get it back with the picture.
pub(crate) struct Tracker<T> {
    kind: DecoderKind,
    /// (sequence number, token, access unit length), at `seq % IN_FLIGHT`.
    slots: [Option<(u64, T, usize)>; IN_FLIGHT],
    next_seq: u64,
    /// Set from the start, after an error and after a reported loss; cleared by an IDR.
    awaiting_idr: bool,
    /// Pictures of access units before this one are hidden.
    show_from: u64,
    stats: DecodeStats,
    stream: stream::StreamState,
    b_slices_seen: bool,
    /// [`Decoder::set_conceal`].
    conceal: bool,
    /// A reference went missing since the last IDR: pictures until then count as concealed.
    damaged: bool,
}

/// An access unit registered with [`Tracker::submit`].
pub(crate) struct Submitted {
    pub(crate) seq: u64,
    /// A reference picture is missing before this access unit (still decode it: later
    /// pictures need the decoder's state, and the IDR gate hides the damage).
    pub(crate) error: Option<DecodeError>,
    /// Pictures leave the decoder in decoding order, so none needs to be held back.
    pub(crate) in_order: bool,
}

impl<T: Copy> Tracker<T> {
    pub(crate) fn new(kind: DecoderKind) -> Self {
        Tracker {
            kind,
            slots: [None; IN_FLIGHT],
            next_seq: 0,
            awaiting_idr: true,
            show_from: u64::MAX,
            stats: DecodeStats::default(),
            stream: stream::StreamState::default(),
            b_slices_seen: false,
            conceal: false,
            damaged: false,
        }
    }

    pub(crate) fn set_conceal(&mut self, on: bool) {
        self.conceal = on;
    }

    /// Whether a picture libavcodec flagged as damaged is handed out (and counted) anyway.
    pub(crate) fn conceals(&mut self) -> bool {
        if self.conceal {
            self.damaged = true;
        }
        self.conceal
    }

    pub(crate) fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Registers an access unit about to be decoded. `low_delay` is the caller's promise of
    /// no B-frames ([`DecoderOptions::low_delay`]).
    pub(crate) fn submit(&mut self, au: &[u8], token: T, low_delay: bool) -> Submitted {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots[(seq % IN_FLIGHT as u64) as usize] = Some((seq, token, au.len()));
        self.stats.access_units += 1;
        let facts = self.stream.inspect(au);
        self.b_slices_seen |= facts.b_slice;
        if self.awaiting_idr && facts.idr {
            self.awaiting_idr = false;
            self.show_from = seq;
        }
        if facts.idr {
            self.damaged = false;
        }
        let error = match facts.gap {
            Some(_) if self.conceal => {
                self.damaged = true;
                None
            }
            Some((expected, found)) => self.corrupt(seq, Cause::FrameNumGap { expected, found }),
            None => None,
        };
        Submitted {
            seq,
            error,
            in_order: (low_delay || facts.no_reordering) && !self.b_slices_seen,
        }
    }

    /// Sequence number of the access unit fed last.
    pub(crate) fn latest(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// Holds pictures back until the next IDR.
    pub(crate) fn restart(&mut self) {
        self.awaiting_idr = true;
        self.show_from = u64::MAX;
    }

    pub(crate) fn mark_loss(&mut self) {
        self.stats.losses += 1;
        if self.conceal {
            self.damaged = true;
        } else {
            self.restart();
        }
    }

    /// The backend failed on access unit `seq`. Returns the error to hand to the caller, or
    /// `None` when the decoder was already waiting for an IDR (the failure is a consequence).
    pub(crate) fn corrupt(&mut self, seq: u64, cause: Cause) -> Option<DecodeError> {
        let len = self.slot(seq).map_or(0, |(_, _, len)| len);
        self.fail(seq, len, cause)
    }

    /// [`Tracker::corrupt`] for a picture already taken.
    pub(crate) fn fail(&mut self, seq: u64, len: usize, cause: Cause) -> Option<DecodeError> {
        let waiting = self.awaiting_idr;
        self.restart();
        if waiting {
            self.stats.errors_while_waiting += 1;
            return None;
        }
        self.stats.errors += 1;
        Some(DecodeError::Corrupt {
            kind: self.kind,
            au: seq,
            len,
            cause,
        })
    }

    fn slot(&self, seq: u64) -> Option<(u64, T, usize)> {
        self.slots[(seq % IN_FLIGHT as u64) as usize].filter(|s| s.0 == seq)
    }

    /// A picture of access unit `pts` came out: what to hand it out with, or `None` when it is
    /// hidden by the IDR gate.
    pub(crate) fn take(&mut self, pts: i64) -> Result<Option<Taken<T>>, DecodeError> {
        let lost = DecodeError::LostToken {
            kind: self.kind,
            pts,
        };
        let Some((seq, token, len)) = u64::try_from(pts).ok().and_then(|seq| self.slot(seq)) else {
            return Err(lost);
        };
        self.slots[(seq % IN_FLIGHT as u64) as usize] = None;
        if seq < self.show_from {
            self.stats.hidden += 1;
            return Ok(None);
        }
        Ok(Some(Taken { seq, token, len }))
    }

    /// Copies a decoded picture into a pooled frame and hands it out.
    pub(crate) fn emit(
        &mut self,
        token: T,
        picture: &Picture<'_>,
        pool: &mut FramePool,
        out: &mut Vec<Decoded<T>>,
    ) {
        let frame = pool.fill::<std::convert::Infallible>(
            PixelFormat::I420,
            picture.width,
            picture.height,
            |frame| {
                for (dst, src) in frame.planes_mut().iter_mut().zip(&picture.planes) {
                    dst.copy_from(src);
                }
                Ok(())
            },
        );
        let Ok(frame) = frame;
        self.emit_frame(token, frame, out);
    }

    /// Hands out a picture already in a pooled frame (lent by the decoder, no copy).
    pub(crate) fn emit_frame(&mut self, token: T, frame: Arc<Frame>, out: &mut Vec<Decoded<T>>) {
        self.stats.frames += 1;
        if self.damaged {
            self.stats.concealed += 1;
        }
        out.push(Decoded { frame, token });
    }
}

/// A picture's access unit, as [`Tracker::take`] finds it.
pub(crate) struct Taken<T> {
    pub(crate) seq: u64,
    pub(crate) token: T,
    pub(crate) len: usize,
}

/// A decoder's picture, borrowed from the decoder's memory until its next call.
pub(crate) struct Picture<'a> {
    width: usize,
    height: usize,
    planes: [Plane<'a>; 3],
}

impl<'a> Picture<'a> {
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn height(&self) -> usize {
        self.height
    }

    /// Wraps a decoder's I420 planes.
    ///
    /// # Safety
    /// For each plane `i` with `strides[i] > 0`, `ptrs[i]` must point at memory that stays valid
    /// for `'a` and holds `stride * (rows - 1) + row_bytes` bytes, where rows and row bytes are
    /// those of plane `i` of an I420 image of `width` x `height`. Null pointers and geometry
    /// that cannot be right are rejected with an error (`BadPicture`), before any read.
    pub(crate) unsafe fn from_raw(
        kind: DecoderKind,
        au: u64,
        width: i64,
        height: i64,
        ptrs: [*const u8; 3],
        strides: [i64; 3],
    ) -> Result<Picture<'a>, DecodeError> {
        let bad = |detail| DecodeError::BadPicture {
            kind,
            au,
            width,
            height,
            detail,
        };
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return Err(bad("size out of range"));
        }
        let (w, h) = (width as usize, height as usize);
        let mut planes = [Plane {
            data: &[],
            stride: 0,
            width: 0,
            height: 0,
            bpp: 1,
        }; 3];
        for (i, plane) in planes.iter_mut().enumerate() {
            let (pw, ph) = PixelFormat::I420.plane_size(i, w, h);
            let stride = usize::try_from(strides[i]).map_err(|_| bad("negative stride"))?;
            if stride < pw {
                return Err(bad("stride shorter than a row"));
            }
            if ptrs[i].is_null() {
                return Err(bad("missing plane"));
            }
            let len = stride * (ph - 1) + pw;
            // SAFETY: the caller guarantees `len` readable bytes at `ptrs[i]` for `'a`.
            let data = unsafe { std::slice::from_raw_parts(ptrs[i], len) };
            *plane = Plane {
                data,
                stride,
                width: pw,
                height: ph,
                bpp: 1,
            };
        }
        Ok(Picture {
            width: w,
            height: h,
            planes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_parses_and_prints() {
        for kind in DecoderKind::ALL {
            assert_eq!(kind.to_string().parse::<DecoderKind>(), Ok(kind));
        }
        assert_eq!("FFmpeg".parse::<DecoderKind>(), Ok(DecoderKind::Libav));
        assert!("x264".parse::<DecoderKind>().is_err());
        assert_eq!(DecoderKind::default(), DecoderKind::Libav);
    }

    #[test]
    fn tracker_gates_on_idr_and_maps_tokens() {
        let idr = [0, 0, 0, 1, 0x65, 0x88];
        let p = [0, 0, 0, 1, 0x41, 0x9a];
        let mut t = Tracker::<u32>::new(DecoderKind::Libav);
        let s0 = t.submit(&p, 10, false).seq;
        assert!(t.take(s0 as i64).unwrap().is_none(), "before the first IDR");
        let s1 = t.submit(&idr, 11, false).seq;
        let s2 = t.submit(&p, 12, false).seq;
        let taken = t.take(s1 as i64).unwrap().unwrap();
        assert_eq!((taken.seq, taken.token, taken.len), (s1, 11, 6));
        assert!(t.take(s1 as i64).is_err(), "a token is handed out once");
        let err = t
            .corrupt(s2, Cause::Empty)
            .expect("first error is reported");
        assert!(matches!(err, DecodeError::Corrupt { au: 2, len: 6, .. }));
        assert!(t.take(s2 as i64).unwrap().is_none());
        let s3 = t.submit(&p, 13, false).seq;
        assert!(
            t.corrupt(s3, Cause::Empty).is_none(),
            "a follow-on error is only counted"
        );
        let s4 = t.submit(&idr, 14, false).seq;
        assert_eq!(t.take(s4 as i64).unwrap().unwrap().token, 14);
        assert!(t.take(-1).is_err());
        let st = t.stats();
        assert_eq!((st.errors, st.errors_while_waiting, st.hidden), (1, 1, 2));
    }

    #[test]
    fn picture_rejects_bad_geometry_before_reading() {
        let buf = [0u8; 64];
        let ok = [buf.as_ptr(); 3];
        let k = DecoderKind::Openh264;
        // SAFETY: 8x4 I420 with strides 8/4/4 needs at most 32 bytes per plane; buf has 64.
        let pic = unsafe { Picture::from_raw(k, 0, 8, 4, ok, [8, 4, 4]) }.unwrap();
        assert_eq!(pic.planes[1].width, 4);
        for (w, h, ptrs, strides) in [
            (0, 4, ok, [8, 4, 4]),
            (8, 4, ok, [7, 4, 4]),
            (8, 4, ok, [8, -4, 4]),
            (
                8,
                4,
                [buf.as_ptr(), std::ptr::null(), buf.as_ptr()],
                [8, 4, 4],
            ),
            (1 << 20, 4, ok, [8, 4, 4]),
        ] {
            // SAFETY: every case is rejected before memory is read.
            let r = unsafe { Picture::from_raw(k, 0, w, h, ptrs, strides) };
            assert!(
                matches!(r, Err(DecodeError::BadPicture { .. })),
                "{w}x{h} {strides:?}"
            );
        }
    }
}
