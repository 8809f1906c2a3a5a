//! H.264 Annex B byte streams (ITU-T H.264 annex B): NAL units between start codes, and their
//! grouping into access units (7.4.1.2.3) so a decoder can be fed one picture at a time.
//!
//! Hand-written on purpose: the whole job is a start-code search (done by `memchr::memmem`) plus
//! the few-line boundary rule below, over borrowed slices and without allocating; the parser
//! crates (h264-reader's push-based `AnnexBReader`, libav's parser) would need callbacks or a
//! copy per unit to give the same borrowed access units.
//!
//! The boundary rule is 7.4.1.2.3 restricted to what single-layer streams use: after a VCL NAL
//! unit of the current picture, an access unit delimiter, SPS, PPS, SEI or NAL types 14-18, or a
//! VCL NAL unit whose `first_mb_in_slice` is 0, opens the next access unit. (Arbitrary slice
//! order, allowed only in the Baseline profile, could start a picture with a non-zero
//! `first_mb_in_slice`; the Neon streams Main/High, and a misgrouped AU only costs one
//! decoder error, never a panic.)

use memchr::memmem;

/// `nal_unit_type` of a coded slice of a non-IDR picture.
pub const NAL_SLICE: u8 = 1;
/// `nal_unit_type` of a coded slice of an IDR picture (a point where decoding can resume).
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// One NAL unit found in a byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NalUnit<'a> {
    /// Offset in the stream of the unit's start code, leading zero bytes included: the place
    /// where the stream can be cut in front of this unit.
    pub start: usize,
    /// Header byte and payload, without the start code and without trailing zero bytes.
    pub data: &'a [u8],
}

impl NalUnit<'_> {
    /// `nal_unit_type` (the low five bits of the header byte).
    pub fn nal_type(&self) -> u8 {
        self.data.first().map_or(0, |b| b & 0x1f)
    }

    /// A coded slice (types 1-5), i.e. part of a picture rather than a parameter set or SEI.
    pub fn is_vcl(&self) -> bool {
        (1..=5).contains(&self.nal_type())
    }

    /// True for a slice whose `first_mb_in_slice` is 0, the first slice of a picture. The field
    /// is the first ue(v) after the header, and ue(v) 0 is the single bit `1`; emulation
    /// prevention bytes cannot occur this early, so the top bit of byte 1 is the answer.
    pub fn starts_picture(&self) -> bool {
        self.is_vcl() && self.data.get(1).is_some_and(|b| b & 0x80 != 0)
    }
}

/// NAL units of an Annex B byte stream, in order. Bytes before the first start code are
/// skipped, as are empty units (two start codes in a row).
pub fn nal_units(stream: &[u8]) -> NalUnits<'_> {
    let first = memmem::find(stream, START_CODE);
    NalUnits {
        stream,
        finder: memmem::Finder::new(START_CODE),
        next_code: first.map(|p| (leading_zeros_start(stream, p), p)),
    }
}

const START_CODE: &[u8] = &[0, 0, 1];

/// The index where the zero bytes in front of the `00 00 01` at `code` begin, stopping at `floor`.
fn zeros_back_to(stream: &[u8], code: usize, floor: usize) -> usize {
    let mut s = code;
    while s > floor && stream[s - 1] == 0 {
        s -= 1;
    }
    s
}

fn leading_zeros_start(stream: &[u8], code: usize) -> usize {
    zeros_back_to(stream, code, 0)
}

/// Iterator returned by [`nal_units`].
#[derive(Clone)]
pub struct NalUnits<'a> {
    stream: &'a [u8],
    finder: memmem::Finder<'static>,
    /// (cut position, position of `00 00 01`) of the next unit's start code.
    next_code: Option<(usize, usize)>,
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = NalUnit<'a>;

    fn next(&mut self) -> Option<NalUnit<'a>> {
        loop {
            let (start, code) = self.next_code?;
            let payload = code + START_CODE.len();
            let rest = self.stream.get(payload..).unwrap_or_default();
            let (end, following) = match self.finder.find(rest) {
                Some(rel) => {
                    let next = payload + rel;
                    let cut = zeros_back_to(self.stream, next, payload);
                    (cut, Some((cut, next)))
                }
                None => (self.stream.len(), None),
            };
            self.next_code = following;
            // trailing zero bytes (trailing_zero_8bits, B.1) belong to no unit
            let end = zeros_back_to(self.stream, end, payload);
            if end > payload {
                return Some(NalUnit {
                    start,
                    data: &self.stream[payload..end],
                });
            }
        }
    }
}

/// Access units of an Annex B byte stream, each a borrowed slice that starts with its first
/// start code (so it is itself a valid Annex B stream, what both decoder backends take).
pub fn split_access_units(stream: &[u8]) -> AccessUnits<'_> {
    AccessUnits {
        stream,
        nals: nal_units(stream),
        au_start: None,
        seen_vcl: false,
    }
}

/// Iterator returned by [`split_access_units`].
#[derive(Clone)]
pub struct AccessUnits<'a> {
    stream: &'a [u8],
    nals: NalUnits<'a>,
    /// Cut position where the access unit being collected begins.
    au_start: Option<usize>,
    /// The access unit being collected has a slice already.
    seen_vcl: bool,
}

impl<'a> Iterator for AccessUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        for nal in self.nals.by_ref() {
            let opens_next =
                matches!(nal.nal_type(), NAL_SEI..=NAL_AUD | 14..=18) || nal.starts_picture();
            let start = *self.au_start.get_or_insert(nal.start);
            let finished = self.seen_vcl && opens_next;
            if finished {
                self.au_start = Some(nal.start);
            }
            self.seen_vcl = nal.is_vcl() || (self.seen_vcl && !finished);
            if finished {
                return Some(&self.stream[start..nal.start]);
            }
        }
        let start = self.au_start.take()?;
        Some(&self.stream[start..])
    }
}

/// True when the access unit holds a slice of an IDR picture, where a decoder whose references
/// were damaged can start over.
pub fn contains_idr(au: &[u8]) -> bool {
    nal_units(au).any(|n| n.nal_type() == NAL_IDR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    const SPS: &[u8] = &[0x67, 0x4d, 0x00, 0x1e];
    const PPS: &[u8] = &[0x68, 0xee, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
    /// first_mb_in_slice = 0 (top bit set)
    const P0: &[u8] = &[0x41, 0x9a, 0x01];
    /// first_mb_in_slice != 0 (second slice of the same picture)
    const P1: &[u8] = &[0x41, 0x40, 0x22];
    const AUD: &[u8] = &[0x09, 0xf0];
    const SEI: &[u8] = &[0x06, 0x05, 0x01];

    fn stream(nals: &[(&[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (nal, long) in nals {
            if *long {
                out.push(0);
            }
            out.extend_from_slice(&[0, 0, 1]);
            out.extend_from_slice(nal);
        }
        out
    }

    #[test]
    fn nal_units_strip_start_codes_and_trailing_zeros() {
        let mut s = stream(&[(SPS, true), (PPS, false), (IDR, true)]);
        s.extend_from_slice(&[0, 0]); // trailing_zero_8bits
        let nals: Vec<_> = nal_units(&s).collect();
        assert_eq!(nals.len(), 3);
        assert_eq!(nals[0].data, SPS);
        assert_eq!(nals[0].start, 0);
        assert_eq!(nals[1].data, PPS);
        assert_eq!(nals[1].start, 4 + SPS.len());
        assert_eq!(nals[2].data, IDR);
        assert_eq!(nals[2].nal_type(), NAL_IDR);
        // a 4-byte start code: the cut is at its zero_byte
        assert_eq!(&s[nals[2].start..nals[2].start + 4], &[0, 0, 0, 1]);
    }

    #[test]
    fn garbage_before_the_first_start_code_and_empty_units_are_skipped() {
        let mut s = vec![0xff, 0x12, 0x00];
        s.extend_from_slice(&stream(&[(SPS, false)]));
        s.extend_from_slice(&[0, 0, 1, 0, 0, 1]);
        s.extend_from_slice(PPS);
        let nals: Vec<_> = nal_units(&s).map(|n| n.data).collect();
        assert_eq!(nals, vec![SPS, PPS]);
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(nal_units(&[0, 0]).count(), 0);
    }

    #[test]
    fn access_units_group_parameter_sets_with_the_following_picture() {
        let s = stream(&[
            (SPS, true),
            (PPS, true),
            (SEI, true),
            (IDR, true),
            (P0, true),
            (P1, false), // second slice of the same picture
            (AUD, true),
            (P0, true),
            (P0, true),
        ]);
        let aus: Vec<_> = split_access_units(&s).collect();
        assert_eq!(aus.len(), 4);
        let types = |au: &[u8]| nal_units(au).map(|n| n.nal_type()).collect::<Vec<_>>();
        assert_eq!(types(aus[0]), vec![7, 8, 6, 5]);
        assert_eq!(types(aus[1]), vec![1, 1]);
        assert_eq!(types(aus[2]), vec![9, 1]);
        assert_eq!(types(aus[3]), vec![1]);
        // the pieces are the whole stream, in order, each opening with a start code
        assert_eq!(aus.concat(), s);
        assert!(aus.iter().all(|au| au.starts_with(&[0, 0, 0, 1])));
        assert!(contains_idr(aus[0]));
        assert!(!contains_idr(aus[1]));
    }

    #[test]
    fn parameter_sets_alone_are_one_access_unit() {
        let s = stream(&[(SPS, true), (PPS, true)]);
        let aus: Vec<_> = split_access_units(&s).collect();
        assert_eq!(aus, vec![&s[..]]);
        assert_eq!(split_access_units(&[]).count(), 0);
        assert_eq!(split_access_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn random_bytes_never_panic_and_cover_the_stream() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        for round in 0..2000 {
            let len = rng.random_range(0..200);
            let mut buf: Vec<u8> = (0..len)
                .map(|_| {
                    // mostly zeros and ones so start codes occur often
                    match rng.random_range(0..4) {
                        0 | 1 => 0,
                        2 => 1,
                        _ => rng.random(),
                    }
                })
                .collect();
            if round % 3 == 0 {
                buf.splice(0..0, [0, 0, 1, 0x65]);
            }
            let aus: Vec<_> = split_access_units(&buf).collect();
            if let Some(first) = nal_units(&buf).next() {
                assert_eq!(aus.concat(), &buf[first.start..]);
            } else {
                assert!(aus.is_empty());
            }
            for nal in nal_units(&buf) {
                assert!(!nal.data.is_empty());
                let _ = (nal.is_vcl(), nal.starts_picture());
            }
        }
    }
}
