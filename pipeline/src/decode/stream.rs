//! What the decoder wrappers need to know about an H.264 stream besides its pixels: where the
//! IDR pictures are, whether a reference picture went missing, and whether pictures may be
//! reordered. Read with h264-reader: SPS and PPS when they change, and the first fields of
//! each picture's first slice header (7.3.3), never the slice data.
//!
//! The missing-picture check exists because libavcodec conceals a `frame_num` gap (a lost
//! reference picture, 7.4.3) without flagging anything: every picture up to the next IDR would
//! be handed out damaged. openh264 reports the gap itself; doing the check here gives both
//! backends the same behaviour.

use h264_reader::nal::pps::{PicParamSetId, PicParameterSet};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};
use h264_reader::rbsp::BitRead;
use h264_reader::Context;

use super::annexb::{nal_units, NAL_IDR, NAL_PPS, NAL_SPS};

/// What one access unit says about the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AuFacts {
    /// It holds an IDR picture: decoding can start over here.
    pub idr: bool,
    /// (expected, found) `frame_num` when a reference picture is missing before this one.
    pub gap: Option<(u32, u32)>,
    /// Its SPS promises pictures leave the decoder in decoding order: Baseline profile (no
    /// B-slices) or a VUI `max_num_reorder_frames` of 0.
    pub no_reordering: bool,
    /// It holds a B-slice.
    pub b_slice: bool,
}

/// Parameter sets seen so far and the `frame_num` of the last reference picture.
#[derive(Default)]
pub(crate) struct StreamState {
    ctx: Context,
    /// The last SPS and PPS as bytes, so repeats (often one per IDR) are not parsed again:
    /// parsing allocates, comparing does not.
    last_sps: Vec<u8>,
    last_pps: Vec<u8>,
    /// PrevRefFrameNum (7.4.3); `None` until the first picture.
    prev_ref_frame_num: Option<u32>,
}

impl StreamState {
    /// Reads the access unit's parameter sets and first slice header. Unreadable parts are
    /// skipped: the decoder itself reports a broken picture.
    pub(crate) fn inspect(&mut self, au: &[u8]) -> AuFacts {
        let mut facts = AuFacts::default();
        let mut seen_slice = false;
        for nal in nal_units(au) {
            match nal.nal_type() {
                NAL_SPS => self.sps(nal.data),
                NAL_PPS => self.pps(nal.data),
                _ if nal.starts_picture() && !seen_slice => {
                    seen_slice = true;
                    if let Some(slice) = self.slice(nal.data) {
                        facts = self.picture(nal.nal_type() == NAL_IDR, nal.data[0], slice);
                    } else {
                        facts.idr = nal.nal_type() == NAL_IDR;
                    }
                }
                _ => {}
            }
        }
        facts
    }

    fn sps(&mut self, data: &[u8]) {
        if self.last_sps == data {
            return;
        }
        let nal = RefNal::new(data, &[], true);
        if let Ok(sps) = SeqParameterSet::from_bits(nal.rbsp_bits()) {
            self.ctx.put_seq_param_set(sps);
            self.last_sps.clear();
            self.last_sps.extend_from_slice(data);
            // a new sequence: frame_num starts over at its IDR
            self.prev_ref_frame_num = None;
        }
    }

    fn pps(&mut self, data: &[u8]) {
        if self.last_pps == data {
            return;
        }
        let nal = RefNal::new(data, &[], true);
        if let Ok(pps) = PicParameterSet::from_bits(&self.ctx, nal.rbsp_bits()) {
            self.ctx.put_pic_param_set(pps);
            self.last_pps.clear();
            self.last_pps.extend_from_slice(data);
        }
    }

    /// `slice_type`, `frame_num` and the SPS facts of a picture's first slice.
    fn slice(&self, data: &[u8]) -> Option<SliceFacts> {
        let nal = RefNal::new(data, &[], true);
        let mut r = nal.rbsp_bits();
        let _first_mb_in_slice = r.read_ue("first_mb_in_slice").ok()?;
        let slice_type = r.read_ue("slice_type").ok()?;
        let pps_id = PicParamSetId::from_u32(r.read_ue("pic_parameter_set_id").ok()?).ok()?;
        let pps = self.ctx.pps_by_id(pps_id)?;
        let sps = self.ctx.sps_by_id(pps.seq_parameter_set_id)?;
        if sps.chroma_info.separate_colour_plane_flag {
            let _colour_plane_id: u8 = r.read::<2, u8>("colour_plane_id").ok()?;
        }
        let bits = u32::from(sps.log2_max_frame_num());
        let frame_num: u32 = r.read_var(bits, "frame_num").ok()?;
        let reorder = sps
            .vui_parameters
            .as_ref()
            .and_then(|v| v.bitstream_restrictions.as_ref())
            .map(|b| b.max_num_reorder_frames);
        Some(SliceFacts {
            b_slice: slice_type % 5 == 1,
            frame_num,
            max_frame_num: 1u32 << bits,
            gaps_allowed: sps.gaps_in_frame_num_value_allowed_flag,
            no_reordering: u8::from(sps.profile_idc) == 66 || reorder == Some(0),
        })
    }

    /// Applies the `frame_num` rule of 7.4.3: a picture's `frame_num` is PrevRefFrameNum or
    /// one more (modulo MaxFrameNum) unless reference pictures are missing.
    ///
    /// Not handled: memory_management_control_operation 5 resets PrevRefFrameNum to 0, and
    /// finding it means parsing the whole slice header (the weighted-prediction tables that
    /// come first would cost allocations per picture with h264-reader). An encoder using it
    /// would see pictures held back until the next IDR after each use; x264 does not use it.
    fn picture(&mut self, idr: bool, header: u8, s: SliceFacts) -> AuFacts {
        let mut gap = None;
        if !idr && !s.gaps_allowed {
            if let Some(prev) = self.prev_ref_frame_num {
                let next = (prev + 1) % s.max_frame_num;
                if s.frame_num != prev && s.frame_num != next {
                    gap = Some((next, s.frame_num));
                }
            }
        }
        let nal_ref_idc = (header >> 5) & 3;
        if idr || nal_ref_idc != 0 || gap.is_some() {
            self.prev_ref_frame_num = Some(s.frame_num);
        }
        AuFacts {
            idr,
            gap,
            no_reordering: s.no_reordering,
            b_slice: s.b_slice,
        }
    }
}

struct SliceFacts {
    b_slice: bool,
    frame_num: u32,
    max_frame_num: u32,
    gaps_allowed: bool,
    no_reordering: bool,
}
