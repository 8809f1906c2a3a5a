//! The scene microphone's AAC on the wire (protocol doc 6.4): RFC 3640 `mpeg4-generic` payloads
//! in AAC-hbr mode (AU headers, then the access units) and the AudioSpecificConfig of the fmtp
//! `config=` parameter. Parse side for receivers, build side for fixtures and the simulator.
//!
//! Hand-written because it is a few bit fields: the AU-header section is at most a few dozen
//! bits of fixed-width fields (RFC 3640 3.2.1), and the AudioSpecificConfig's first three
//! fields (ISO/IEC 14496-3 1.6.2.1) are all a receiver needs; retina has an AAC depacketizer,
//! but only behind its demuxed session API, which the raw per-sensor sessions here do not use.
//! Nothing here panics on input bytes: every length is checked and errors carry the offending
//! offset or size for the caller to count.

use thiserror::Error;

/// Most access units one packet may carry. At 8 kHz one AAC frame is 128 ms, so even a
/// one-second bundle is 8; anything beyond this is a corrupt header length.
pub const MAX_AUS_PER_PACKET: usize = 64;

/// Samples per AAC-LC frame (ISO/IEC 14496-3, `frameLengthFlag` 0; the doc's 1024 samples).
pub const SAMPLES_PER_FRAME: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AacError {
    #[error("AAC payload of {len} bytes is too short for its AU-headers-length field")]
    TooShort { len: usize },
    #[error("AU-headers-length {bits} bits does not fit the {len}-byte payload")]
    HeadersLength { bits: u16, len: usize },
    #[error("AU-header section of {bits} bits is not a whole number of {per} bit headers")]
    HeaderBits { bits: u16, per: u32 },
    #[error("{count} AU headers in one packet (at most {MAX_AUS_PER_PACKET})")]
    TooManyAus { count: usize },
    #[error("access unit {index} of {size} bytes runs past the payload end ({remaining} left)")]
    AuSize {
        index: usize,
        size: usize,
        remaining: usize,
    },
    #[error("AU-Index(-delta) {value} at header {index}: interleaving is not supported")]
    Interleaved { index: usize, value: u32 },
    #[error("fmtp sizelength {size_length}/indexlength {index_length} is not usable")]
    Mode { size_length: u32, index_length: u32 },
    #[error("config is not hex at character {at}")]
    ConfigHex { at: usize },
    #[error("AudioSpecificConfig of {len} bytes is too short")]
    ConfigShort { len: usize },
    #[error("AudioSpecificConfig sampling frequency index {0} is reserved")]
    ConfigRate(u8),
    #[error("the payload is too large for a 16-bit AU-headers-length")]
    TooLarge,
    #[error("the audio media has no fmtp config= (AudioSpecificConfig)")]
    NoConfig,
    #[error("fmtp {key}={value:?} is not a number")]
    Fmtp { key: &'static str, value: String },
}

/// The AU-header layout from fmtp (RFC 3640 4.1). The phone's is AAC-hbr: 13-bit sizes and
/// 3-bit indices, which the official client assumes whatever the fmtp says; this reads the
/// fmtp where it has the values and falls back to AAC-hbr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuHeaderLayout {
    pub size_length: u32,
    pub index_length: u32,
    pub index_delta_length: u32,
}

impl Default for AuHeaderLayout {
    fn default() -> Self {
        AuHeaderLayout::HBR
    }
}

impl AuHeaderLayout {
    /// AAC-hbr (RFC 3640 3.3.6).
    pub const HBR: AuHeaderLayout = AuHeaderLayout {
        size_length: 13,
        index_length: 3,
        index_delta_length: 3,
    };

    /// From fmtp values (each `None` takes AAC-hbr's); sizes of 1..=16 bits and indices of
    /// 0..=8 bits are accepted.
    pub fn from_fmtp(
        size_length: Option<u32>,
        index_length: Option<u32>,
        index_delta_length: Option<u32>,
    ) -> Result<Self, AacError> {
        let l = AuHeaderLayout {
            size_length: size_length.unwrap_or(13),
            index_length: index_length.unwrap_or(3),
            index_delta_length: index_delta_length.unwrap_or(3),
        };
        if !(1..=16).contains(&l.size_length) || l.index_length > 8 || l.index_delta_length > 8 {
            return Err(AacError::Mode {
                size_length: l.size_length,
                index_length: l.index_length,
            });
        }
        Ok(l)
    }
}

/// Reads big-endian bit fields; the caller checks the section length first.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    /// Up to 32 bits; bits past the end read as zero (callers never ask for them).
    fn read(&mut self, n: u32) -> u32 {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.pos / 8).copied().unwrap_or(0);
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        v
    }
}

/// One RTP payload's access units, borrowed from it.
#[derive(Debug, Clone)]
pub struct AacPayload<'a> {
    sizes: [u16; MAX_AUS_PER_PACKET],
    count: usize,
    data: &'a [u8],
}

impl<'a> AacPayload<'a> {
    /// Splits a payload (after the RTP header) into its access units (RFC 3640 3.2.1-3.2.3).
    /// A fragmented access unit (one header whose size exceeds the data) is an error: at
    /// 8 kHz mono an AAC frame is far below the MTU, so the phone never needs to fragment.
    pub fn parse(payload: &'a [u8], layout: &AuHeaderLayout) -> Result<Self, AacError> {
        if !(1..=16).contains(&layout.size_length)
            || layout.index_length > 8
            || layout.index_delta_length > 8
        {
            return Err(AacError::Mode {
                size_length: layout.size_length,
                index_length: layout.index_length,
            });
        }
        let len = payload.len();
        let [hi, lo, ..] = *payload else {
            return Err(AacError::TooShort { len });
        };
        let bits = u16::from_be_bytes([hi, lo]);
        let header_bytes = usize::from(bits).div_ceil(8);
        let data = payload
            .get(2 + header_bytes..)
            .ok_or(AacError::HeadersLength { bits, len })?;
        let first = layout.size_length + layout.index_length;
        let next = layout.size_length + layout.index_delta_length;
        let bits32 = u32::from(bits);
        // The first header is longer when the index is; every later one has the delta.
        let count = if bits32 == 0 {
            0
        } else if bits32 < first || !(bits32 - first).is_multiple_of(next) {
            return Err(AacError::HeaderBits { bits, per: next });
        } else {
            1 + ((bits32 - first) / next) as usize
        };
        if count > MAX_AUS_PER_PACKET {
            return Err(AacError::TooManyAus { count });
        }
        let mut reader = Bits {
            data: &payload[2..2 + header_bytes],
            pos: 0,
        };
        let mut sizes = [0u16; MAX_AUS_PER_PACKET];
        let mut remaining = data.len();
        for (i, slot) in sizes.iter_mut().take(count).enumerate() {
            let size = reader.read(layout.size_length) as usize;
            let index = reader.read(if i == 0 {
                layout.index_length
            } else {
                layout.index_delta_length
            });
            if index != 0 {
                return Err(AacError::Interleaved {
                    index: i,
                    value: index,
                });
            }
            if size > remaining {
                return Err(AacError::AuSize {
                    index: i,
                    size,
                    remaining,
                });
            }
            remaining -= size;
            // size_length is at most 16 bits, so the size fits.
            *slot = size as u16;
        }
        Ok(AacPayload { sizes, count, data })
    }

    /// Number of access units.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The access units in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let data = self.data;
        self.sizes[..self.count]
            .iter()
            .scan(0usize, move |off, &s| {
                let start = *off;
                *off += usize::from(s);
                data.get(start..*off)
            })
    }
}

/// Writes one AAC-hbr payload (13-bit sizes, 3-bit zero indices) holding `aus` into `out`.
pub fn write_payload(aus: &[&[u8]], out: &mut Vec<u8>) -> Result<(), AacError> {
    if aus.len() > MAX_AUS_PER_PACKET {
        return Err(AacError::TooManyAus { count: aus.len() });
    }
    let bits = aus.len() * 16;
    out.extend_from_slice(
        &u16::try_from(bits)
            .map_err(|_| AacError::TooLarge)?
            .to_be_bytes(),
    );
    for au in aus {
        let size = u16::try_from(au.len())
            .ok()
            .filter(|s| *s < (1 << 13))
            .ok_or(AacError::TooLarge)?;
        out.extend_from_slice(&(size << 3).to_be_bytes());
    }
    for au in aus {
        out.extend_from_slice(au);
    }
    Ok(())
}

/// The fields of an AudioSpecificConfig a receiver needs (ISO/IEC 14496-3 1.6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// 2 = AAC-LC.
    pub object_type: u8,
    pub sample_rate: u32,
    /// `channelConfiguration` (1 = mono, 2 = stereo; 0 = defined in-band).
    pub channels: u8,
}

/// Sampling frequencies by index (ISO/IEC 14496-3 1.6.3.3).
const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

impl AudioSpecificConfig {
    pub fn parse(b: &[u8]) -> Result<Self, AacError> {
        let short = AacError::ConfigShort { len: b.len() };
        let mut r = Bits { data: b, pos: 0 };
        let need = |bits: usize| {
            if b.len() * 8 < bits {
                Err(short.clone())
            } else {
                Ok(())
            }
        };
        need(13)?;
        let mut object_type = r.read(5) as u8;
        let mut used = 5;
        if object_type == 31 {
            need(19)?;
            object_type = 32 + r.read(6) as u8;
            used += 6;
        }
        let index = r.read(4) as u8;
        used += 4;
        let sample_rate = if index == 15 {
            need(used + 24 + 4)?;
            used += 24;
            r.read(24)
        } else {
            *RATES
                .get(usize::from(index))
                .ok_or(AacError::ConfigRate(index))?
        };
        need(used + 4)?;
        let channels = r.read(4) as u8;
        Ok(AudioSpecificConfig {
            object_type,
            sample_rate,
            channels,
        })
    }
}

/// What a receiver takes from an `mpeg4-generic` media's fmtp (RFC 3640 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacFormat {
    /// The AudioSpecificConfig bytes (the decoder's extradata).
    pub config: Vec<u8>,
    pub asc: AudioSpecificConfig,
    pub layout: AuHeaderLayout,
}

impl AacFormat {
    pub fn from_media(m: &super::sdp::MediaDescription) -> Result<Self, AacError> {
        let config = config_from_hex(m.fmtp_value("config").ok_or(AacError::NoConfig)?)?;
        let asc = AudioSpecificConfig::parse(&config)?;
        let num = |key: &'static str| -> Result<Option<u32>, AacError> {
            m.fmtp_value(key)
                .map(|v| {
                    v.trim().parse::<u32>().map_err(|_| AacError::Fmtp {
                        key,
                        value: v.to_owned(),
                    })
                })
                .transpose()
        };
        let layout = AuHeaderLayout::from_fmtp(
            num("sizelength")?,
            num("indexlength")?,
            num("indexdeltalength")?,
        )?;
        Ok(AacFormat {
            config,
            asc,
            layout,
        })
    }
}

/// Decodes the fmtp `config=` hex string.
pub fn config_from_hex(hex: &str) -> Result<Vec<u8>, AacError> {
    let hex = hex.trim();
    let digit = |i: usize| {
        hex.as_bytes()
            .get(i)
            .and_then(|c| (*c as char).to_digit(16))
            .ok_or(AacError::ConfigHex { at: i })
    };
    if !hex.len().is_multiple_of(2) {
        return Err(AacError::ConfigHex { at: hex.len() });
    }
    (0..hex.len() / 2)
        .map(|i| Ok((digit(2 * i)? * 16 + digit(2 * i + 1)?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_several_access_units() {
        let aus: [&[u8]; 3] = [b"first", b"", b"third unit"];
        let mut p = Vec::new();
        write_payload(&aus, &mut p).unwrap();
        assert_eq!(&p[..2], &[0, 48]);
        let parsed = AacPayload::parse(&p, &AuHeaderLayout::HBR).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed.iter().collect::<Vec<_>>(), aus.to_vec());
    }

    #[test]
    fn rejects_bad_lengths_with_context() {
        let mut p = Vec::new();
        write_payload(&[b"abcdef"], &mut p).unwrap();
        p.truncate(p.len() - 2);
        assert_eq!(
            AacPayload::parse(&p, &AuHeaderLayout::HBR).unwrap_err(),
            AacError::AuSize {
                index: 0,
                size: 6,
                remaining: 4
            }
        );
        assert_eq!(
            AacPayload::parse(&[0], &AuHeaderLayout::HBR).unwrap_err(),
            AacError::TooShort { len: 1 }
        );
        // 17 header bits: not a whole header
        assert!(matches!(
            AacPayload::parse(&[0, 17, 0, 0, 0], &AuHeaderLayout::HBR),
            Err(AacError::HeaderBits { .. })
        ));
        // an AU-Index of 1 (interleaving)
        assert!(matches!(
            AacPayload::parse(&[0, 16, 0, 1, 0], &AuHeaderLayout::HBR),
            Err(AacError::Interleaved { .. })
        ));
        assert!(AuHeaderLayout::from_fmtp(Some(0), None, None).is_err());
    }

    #[test]
    fn reads_the_configs_a_device_sends() {
        // AAC-LC, 8 kHz, mono: the doc's 8 kHz mono stream
        let c = AudioSpecificConfig::parse(&config_from_hex("1588").unwrap()).unwrap();
        assert_eq!(
            c,
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 8000,
                channels: 1
            }
        );
        // AAC-LC 48 kHz stereo
        let c = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!((c.sample_rate, c.channels), (48000, 2));
        assert!(config_from_hex("15g8").is_err());
        assert!(config_from_hex("158").is_err());
        assert!(AudioSpecificConfig::parse(&[0x15]).is_err());
        assert_eq!(
            AudioSpecificConfig::parse(&[0x16, 0x88]).unwrap_err(),
            AacError::ConfigRate(13)
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..300),
                                size in 0u32..20, index in 0u32..10) {
            let layout = AuHeaderLayout { size_length: size, index_length: index,
                                          index_delta_length: index };
            if let Ok(p) = AacPayload::parse(&payload, &layout) {
                let total: usize = p.iter().map(<[u8]>::len).sum();
                prop_assert!(total <= payload.len());
                prop_assert_eq!(p.iter().count(), p.len());
            }
            let _ = AudioSpecificConfig::parse(&payload);
        }

        #[test]
        fn what_is_written_parses_back(aus in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..200), 0..8)) {
            let refs: Vec<&[u8]> = aus.iter().map(Vec::as_slice).collect();
            let mut p = Vec::new();
            write_payload(&refs, &mut p).unwrap();
            let parsed = AacPayload::parse(&p, &AuHeaderLayout::HBR).unwrap();
            prop_assert_eq!(parsed.iter().collect::<Vec<_>>(), refs);
        }
    }
}
