//! The passthrough recorder (`--encoder passthrough`, issue 4): the device's own H.264 access
//! units copied into crash-safe Matroska without decoding or re-encoding, every one the device sent.
//!
//! The container work is libavformat's Matroska muxer with codec copy, the same muxer and cluster
//! settings as the in-process encoder ([`super::libav`]): given Annex B extradata it builds the
//! `avcC` record itself and rewrites each Annex B packet into length-prefixed NAL units, so no
//! container or bitstream code lives here. What this module adds is the stream logic a live
//! camera needs: start at an IDR, open a new file when the parameter sets change (a new
//! resolution after a reconnect), and keep timestamps increasing across clock jumps.
//!
//! Timestamps: Matroska counts milliseconds, so a packet's pts is its device capture time in ms
//! since the segment's first access unit (whose device time is the file's `DateUTC` and the
//! `EYETRACK_DEVICE_TIME_NS` tag), plus an offset that only changes when device time runs
//! backwards. Packets are written in arrival order with dts = pts, which is exact for streams
//! without picture reordering (the Neon's); B-frame streams keep their bytes but not their
//! presentation times (see `PtsClock`).

use std::path::{Path, PathBuf};

use ff::packet::Mut as _;
use ffmpeg_next as ff;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};

use super::libav::{init, io_or_lav, lav, sync_output};
use super::{file_len, fsync_path, EncodeError, SegmentSummary};
use crate::decode::annexb::{nal_units, NAL_PPS, NAL_SPS};
use crate::record::layout::{FileKind, TrialFiles};
use crate::time::UnixNanos;

/// `scene_passthrough_000.mkv`, `_001`, ... in an eyetrack-layout recording folder.
pub fn segment_path(dir: &Path, index: u32) -> PathBuf {
    TrialFiles::eyetrack(dir, 1).segment(FileKind::Passthrough, index)
}

/// Device-time step that counts as a gap in the stream (a stall or a reconnect): at least this,
/// and at least [`GAP_INTERVALS`] frame intervals.
pub const GAP_MIN_NS: i64 = 250_000_000;
pub const GAP_INTERVALS: i64 = 4;

/// Frame interval assumed before two access units have been seen (30 fps).
const DEFAULT_INTERVAL_MS: i64 = 33;

/// Why an access unit was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Before the first IDR, or after AUs were lost upstream until the next IDR: a decoder could
    /// not use it (its reference pictures are missing).
    BeforeIdr,
    /// An IDR with no SPS/PPS (or an unreadable SPS) while no segment was open: there is nothing
    /// to describe the stream with, so it waits for the next IDR.
    NoParameterSets,
    /// No bytes.
    Empty,
}

/// Why a new segment file was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenReason {
    /// The first IDR of the recording.
    First,
    /// An IDR came with different SPS/PPS than the open segment's (a new resolution or encoder
    /// setting, typically after a reconnect).
    ParameterSetsChanged,
}

/// A segment that was just opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub index: u32,
    pub width: u32,
    pub height: u32,
    pub reason: OpenReason,
}

/// One access unit written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Index of the segment file that holds it.
    pub segment: u32,
    /// Its pts in the segment, ms.
    pub pts_ms: i64,
    /// Set when this access unit opened a new segment.
    pub opened: Option<Opened>,
    /// Device time since the previous access unit written, when that is a gap (see
    /// [`GAP_MIN_NS`]): the file holds a long frame there.
    pub gap_ns: Option<i64>,
    /// How far device time went back from the previous access unit: its pts was moved forward
    /// to keep the file's timestamps increasing, and later ones follow on from it.
    pub backwards_ns: Option<i64>,
}

/// What became of one access unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Written(Written),
    Dropped(Dropped),
}

/// Totals of a [`Remuxer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemuxStats {
    pub written: u64,
    pub dropped_before_idr: u64,
    pub dropped_no_parameter_sets: u64,
    pub dropped_empty: u64,
    pub segments: u64,
    pub parameter_set_changes: u64,
    pub gaps: u64,
    /// Access units whose pts had to be moved forward (device time went back or stood still).
    pub pts_adjusted: u64,
    /// Discontinuities announced by the caller (access units lost before the remuxer).
    pub discontinuities: u64,
}

/// The SPS and PPS NAL units (without start codes) a segment was opened with, in stream order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ParameterSets {
    nals: Vec<Vec<u8>>,
}

impl ParameterSets {
    /// The SPS/PPS units in front of the access unit's first slice.
    fn of(au: &[u8]) -> Self {
        let mut nals = Vec::new();
        for nal in nal_units(au) {
            match nal.nal_type() {
                NAL_SPS | NAL_PPS => nals.push(nal.data.to_vec()),
                _ if nal.is_vcl() => break,
                _ => {}
            }
        }
        ParameterSets { nals }
    }

    /// `None` when the access unit carries no parameter sets, else whether they are exactly
    /// ours. Compares in place: no allocation for the repeats most encoders send with each IDR.
    fn matches(&self, au: &[u8]) -> Option<bool> {
        let mut i = 0;
        for nal in nal_units(au) {
            match nal.nal_type() {
                NAL_SPS | NAL_PPS => {
                    if self.nals.get(i).map(Vec::as_slice) != Some(nal.data) {
                        return Some(false);
                    }
                    i += 1;
                }
                _ if nal.is_vcl() => break,
                _ => {}
            }
        }
        (i > 0).then_some(i == self.nals.len())
    }

    fn has_sps_and_pps(&self) -> bool {
        let has = |t| {
            self.nals
                .iter()
                .any(|n| n.first().map(|h| h & 0x1f) == Some(t))
        };
        has(NAL_SPS) && has(NAL_PPS)
    }

    /// Picture size from the first SPS (7.4.2.1.1, cropping applied).
    fn size(&self) -> Option<(u32, u32)> {
        let sps = self
            .nals
            .iter()
            .find(|n| n.first().map(|h| h & 0x1f) == Some(NAL_SPS))?;
        let nal = RefNal::new(sps, &[], true);
        SeqParameterSet::from_bits(nal.rbsp_bits())
            .ok()?
            .pixel_dimensions()
            .ok()
            .filter(|&(w, h)| w > 0 && h > 0)
    }

    /// Annex B form: what the Matroska muxer turns into the `avcC` CodecPrivate.
    fn annex_b(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for n in &self.nals {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(n);
        }
        out
    }
}

/// Device time to the segment's millisecond pts.
///
/// Hand-written because it is the policy, not arithmetic: pts follows device time exactly
/// (a stall or reconnect stays visible as a long frame, and pts maps back to device time by
/// one offset), except where device time does not increase; there the access unit gets the
/// previous pts plus one frame interval and the offset shifts for the ones after it, so the
/// muxer never sees a timestamp going back. That is also what a B-frame stream's reordered
/// capture times would trigger: its bytes stay intact, its presentation times do not.
#[derive(Clone, Copy, Debug)]
struct PtsClock {
    base: UnixNanos,
    offset_ms: i64,
    last_pts: Option<i64>,
    interval_ms: i64,
}

impl PtsClock {
    fn new(base: UnixNanos) -> Self {
        PtsClock {
            base,
            offset_ms: 0,
            last_pts: None,
            interval_ms: DEFAULT_INTERVAL_MS,
        }
    }

    /// (pts, whether it had to be moved forward).
    fn pts(&mut self, t: UnixNanos, gap: bool) -> (i64, bool) {
        let ns = t.delta_ns(self.base);
        // round half up to whole ms
        let raw = ns.div_euclid(1_000_000) + i64::from(ns.rem_euclid(1_000_000) >= 500_000);
        let raw = raw.saturating_add(self.offset_ms);
        let (pts, adjusted) = match self.last_pts {
            Some(last) if raw <= last => {
                let pts = last + self.interval_ms;
                self.offset_ms += pts - raw;
                (pts, true)
            }
            Some(last) => {
                if !gap {
                    self.interval_ms = (raw - last).clamp(1, 1000);
                }
                (raw, false)
            }
            None => (raw, false),
        };
        self.last_pts = Some(pts);
        (pts, adjusted)
    }
}

/// One Matroska file of copied access units.
struct Segment {
    index: u32,
    path: PathBuf,
    octx: ff::format::context::Output,
    /// Reused for every access unit; its data points at the caller's bytes while it is written
    /// and is cleared right after (libavformat's `av_write_frame` does not keep or copy them).
    packet: ff::Packet,
    stream_tb: ff::Rational,
    params: ParameterSets,
    clock: PtsClock,
    aus: u64,
}

const MS: ff::Rational = ff::Rational(1, 1000);

impl Segment {
    fn open(
        index: u32,
        path: PathBuf,
        params: ParameterSets,
        (width, height): (u32, u32),
        first: UnixNanos,
    ) -> Result<Self, EncodeError> {
        init()?;
        let mut octx = ff::format::output_as(&path, "matroska").map_err(|e| io_or_lav(&path, e))?;
        let mut par = ff::codec::Parameters::new();
        par.set_medium(ff::media::Type::Video);
        par.set_id(ff::codec::Id::H264);
        let extradata = params.annex_b();
        let size = i32::try_from(extradata.len())
            .map_err(|_| EncodeError::Libav("parameter sets too large".into()))?;
        // SAFETY: `par` owns a valid AVCodecParameters; extradata is allocated with av_mallocz
        // (zeroed padding included, as the field requires) and freed with the parameters.
        unsafe {
            let p = par.as_mut_ptr();
            (*p).width = width as i32;
            (*p).height = height as i32;
            let pad = ff::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
            let buf = ff::ffi::av_mallocz(extradata.len() + pad) as *mut u8;
            if buf.is_null() {
                return Err(EncodeError::Libav("out of memory for extradata".into()));
            }
            std::ptr::copy_nonoverlapping(extradata.as_ptr(), buf, extradata.len());
            (*p).extradata = buf;
            (*p).extradata_size = size;
        }
        {
            let mut stream = octx
                .add_stream(ff::encoder::find(ff::codec::Id::None))
                .map_err(lav)?;
            stream.set_parameters(par);
            stream.set_time_base(MS);
        }
        let mut meta = ff::Dictionary::new();
        let st = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(first.0.max(0) as u64);
        meta.set(
            "creation_time",
            &humantime::format_rfc3339_micros(st).to_string(),
        );
        meta.set("EYETRACK_DEVICE_TIME_NS", &first.0.to_string());
        octx.set_metadata(meta);
        let mut mux_opts = ff::Dictionary::new();
        mux_opts.set("cluster_time_limit", &super::CLUSTER_MS.to_string());
        octx.write_header_with(mux_opts)
            .map_err(|e| io_or_lav(&path, e))?;
        let stream_tb = octx.stream(0).map_or(MS, |s| s.time_base());
        Ok(Segment {
            index,
            path,
            octx,
            packet: ff::Packet::empty(),
            stream_tb,
            params,
            clock: PtsClock::new(first),
            aus: 0,
        })
    }

    fn write(&mut self, au: &[u8], pts_ms: i64, key: bool) -> Result<(), EncodeError> {
        let size = i32::try_from(au.len())
            .map_err(|_| EncodeError::Libav(format!("access unit of {} bytes", au.len())))?;
        let pkt = &mut self.packet;
        // SAFETY: the packet has no buffer of its own (`buf` is null), so pointing it at the
        // caller's bytes makes libavformat read them in place; they outlive the call, and the
        // pointer is cleared before returning.
        unsafe {
            let p = pkt.as_mut_ptr();
            (*p).data = au.as_ptr() as *mut u8;
            (*p).size = size;
        }
        pkt.set_pts(Some(pts_ms));
        pkt.set_dts(Some(pts_ms));
        pkt.set_duration(self.clock.interval_ms);
        pkt.rescale_ts(MS, self.stream_tb);
        pkt.set_flags(if key {
            ff::packet::Flags::KEY
        } else {
            ff::packet::Flags::empty()
        });
        pkt.set_stream(0);
        pkt.set_position(-1);
        let result = pkt.write(&mut self.octx);
        // SAFETY: as above.
        unsafe {
            let p = pkt.as_mut_ptr();
            (*p).data = std::ptr::null_mut();
            (*p).size = 0;
        }
        result.map_err(|e| io_or_lav(&self.path, e))?;
        self.aus += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<SegmentSummary, EncodeError> {
        self.octx
            .write_trailer()
            .map_err(|e| io_or_lav(&self.path, e))?;
        fsync_path(&self.path)?;
        Ok(SegmentSummary {
            file: super::ffmpeg::file_name(&self.path),
            frames: self.aus,
            bytes: file_len(&self.path),
            end: "finished".into(),
        })
    }
}

/// The device's H.264 stream into segment files `scene_passthrough_NNN.mkv` in one folder.
pub struct Remuxer {
    files: TrialFiles,
    seg: Option<Segment>,
    next_index: u32,
    waiting_for_idr: bool,
    /// Device time of the last access unit written (across segments), for gap detection.
    last_time: Option<UnixNanos>,
    finished: Vec<SegmentSummary>,
    stats: RemuxStats,
}

impl Remuxer {
    /// Nothing is created until the first IDR arrives (its SPS/PPS describe the file).
    pub fn new(dir: &Path) -> Self {
        Self::with_files(TrialFiles::eyetrack(dir, 1))
    }

    /// Segment files named by a layout (`FileKind::Passthrough`).
    pub fn with_files(files: TrialFiles) -> Self {
        Remuxer {
            files,
            seg: None,
            next_index: 0,
            waiting_for_idr: true,
            last_time: None,
            finished: Vec::new(),
            stats: RemuxStats::default(),
        }
    }

    pub fn stats(&self) -> RemuxStats {
        self.stats
    }

    /// Access units were lost before they reached the remuxer: the ones until the next IDR
    /// refer to missing pictures and are dropped.
    pub fn discontinuity(&mut self) {
        self.stats.discontinuities += 1;
        self.waiting_for_idr = true;
    }

    /// Writes one access unit (Annex B, as the device sent it) captured at `device_time`.
    /// `is_idr`: it holds an IDR picture. An `Err` is an I/O or muxer failure of the open file.
    pub fn push(
        &mut self,
        au: &[u8],
        device_time: UnixNanos,
        is_idr: bool,
    ) -> Result<Pushed, EncodeError> {
        if au.is_empty() {
            self.stats.dropped_empty += 1;
            return Ok(Pushed::Dropped(Dropped::Empty));
        }
        if self.waiting_for_idr && !is_idr {
            self.stats.dropped_before_idr += 1;
            return Ok(Pushed::Dropped(Dropped::BeforeIdr));
        }
        let mut opened = None;
        if is_idr {
            let reason = match &self.seg {
                None => Some(OpenReason::First),
                Some(s) if s.params.matches(au) == Some(false) => {
                    Some(OpenReason::ParameterSetsChanged)
                }
                Some(_) => None,
            };
            if let Some(reason) = reason {
                match self.open(au, device_time, reason)? {
                    Some(o) => opened = Some(o),
                    None if self.seg.is_none() => {
                        self.stats.dropped_no_parameter_sets += 1;
                        self.waiting_for_idr = true;
                        return Ok(Pushed::Dropped(Dropped::NoParameterSets));
                    }
                    // Unusable new parameter sets: the open segment goes on; its decoder gets
                    // them in band.
                    None => {}
                }
            }
            self.waiting_for_idr = false;
        }
        let Some(seg) = self.seg.as_mut() else {
            self.stats.dropped_before_idr += 1;
            self.waiting_for_idr = true;
            return Ok(Pushed::Dropped(Dropped::BeforeIdr));
        };
        let step = self.last_time.map(|l| device_time.delta_ns(l));
        let gap_ns =
            step.filter(|&d| d > GAP_MIN_NS.max(GAP_INTERVALS * seg.clock.interval_ms * 1_000_000));
        let backwards_ns = step.filter(|&d| d < 0).map(|d| -d);
        let (pts_ms, adjusted) = seg.clock.pts(device_time, gap_ns.is_some());
        seg.write(au, pts_ms, is_idr)?;
        self.last_time = Some(device_time);
        self.stats.written += 1;
        self.stats.gaps += u64::from(gap_ns.is_some());
        self.stats.pts_adjusted += u64::from(adjusted);
        Ok(Pushed::Written(Written {
            segment: seg.index,
            pts_ms,
            opened,
            gap_ns,
            backwards_ns,
        }))
    }

    /// Opens the next segment at this IDR; `None` when its parameter sets are unusable.
    fn open(
        &mut self,
        au: &[u8],
        first: UnixNanos,
        reason: OpenReason,
    ) -> Result<Option<Opened>, EncodeError> {
        let params = ParameterSets::of(au);
        if !params.has_sps_and_pps() {
            return Ok(None);
        }
        let Some((width, height)) = params.size() else {
            return Ok(None);
        };
        if let Some(old) = self.seg.take() {
            self.finished.push(old.finish()?);
            self.stats.parameter_set_changes += 1;
        }
        let index = self.next_index;
        let path = self.files.segment(FileKind::Passthrough, index);
        self.seg = Some(Segment::open(index, path, params, (width, height), first)?);
        self.next_index += 1;
        self.stats.segments += 1;
        Ok(Some(Opened {
            index,
            width,
            height,
            reason,
        }))
    }

    /// Makes what was written durable (cluster closed, flushed, fsynced); returns how many
    /// access units the open segment holds on disk.
    pub fn sync(&mut self) -> Result<u64, EncodeError> {
        match self.seg.as_mut() {
            Some(s) => {
                sync_output(&mut s.octx, &s.path)?;
                Ok(s.aus)
            }
            None => Ok(0),
        }
    }

    /// Bytes in every segment file so far.
    pub fn bytes_written(&self) -> u64 {
        self.finished.iter().map(|s| s.bytes).sum::<u64>()
            + self.seg.as_ref().map_or(0, |s| file_len(&s.path))
    }

    /// The open segment's file, if any.
    pub fn current_path(&self) -> Option<&Path> {
        self.seg.as_ref().map(|s| s.path.as_path())
    }

    /// Finalizes the open segment; returns every segment of the recording. A failure to
    /// finalize is recorded in that segment's `end` (its clusters up to the last sync still play).
    pub fn finish(mut self) -> Vec<SegmentSummary> {
        if let Some(seg) = self.seg.take() {
            let path = seg.path.clone();
            let aus = seg.aus;
            match seg.finish() {
                Ok(s) => self.finished.push(s),
                Err(e) => self.finished.push(SegmentSummary {
                    file: super::ffmpeg::file_name(&path),
                    frames: aus,
                    bytes: file_len(&path),
                    end: format!("error: {e}"),
                }),
            }
        }
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn pts_follows_device_time_and_never_goes_back() {
        let t0 = UnixNanos(1_767_225_600 * SEC);
        let mut c = PtsClock::new(t0);
        assert_eq!(c.pts(t0, false), (0, false));
        assert_eq!(c.pts(t0.add_ns(33_333_333), false), (33, false));
        assert_eq!(c.pts(t0.add_ns(66_666_666), false), (67, false));
        // a 5 s gap stays a gap
        assert_eq!(c.pts(t0.add_ns(5 * SEC), true), (5000, false));
        // time runs back 2 s: one interval (from before the gap) after the last pts
        assert_eq!(c.pts(t0.add_ns(3 * SEC), false), (5034, true));
        // and later units keep the new offset
        assert_eq!(c.pts(t0.add_ns(3 * SEC + 33_000_000), false), (5067, false));
        // standing still also moves forward
        assert_eq!(c.pts(t0.add_ns(3 * SEC + 33_000_000), false), (5100, true));
    }

    #[test]
    fn parameter_sets_compare_in_place() {
        let au = [
            0, 0, 0, 1, 0x67, 0x42, 0x00, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x38, 0x80, 0, 0, 1, 0x65,
            0x88, 0x84,
        ];
        let p = ParameterSets::of(&au);
        assert_eq!(p.nals.len(), 2);
        assert!(p.has_sps_and_pps());
        assert_eq!(p.matches(&au), Some(true));
        let mut other = au;
        other[7] = 0x28; // level
        assert_eq!(p.matches(&other), Some(false));
        assert_eq!(p.matches(&[0, 0, 1, 0x41, 0x9a]), None);
        assert_eq!(&p.annex_b()[..5], &[0, 0, 0, 1, 0x67]);
    }
}
