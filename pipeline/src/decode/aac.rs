//! AAC to 16-bit PCM with libavcodec's AAC decoder (the scene microphone, protocol doc 6.4),
//! and AAC encoding for fixtures. The decoder is set up from the SDP's AudioSpecificConfig
//! (fmtp `config=`), as RFC 3640 streams carry no in-band configuration.
//!
//! libavcodec rather than a Rust AAC decoder: it is already linked for H.264, it is the decoder
//! the official client runs (PyAV), and symphonia's AAC support is limited to its own
//! demuxers' framing. Samples come out as libav's planar float and are converted to
//! interleaved i16 (what the WAV recording stores) into a buffer the caller reuses.

use std::ptr;

use ff::ffi;
use ffmpeg_next as ff;

#[derive(Debug, thiserror::Error)]
pub enum AacDecodeError {
    #[error("AAC decoder: {0}")]
    Open(String),
    #[error("AAC access unit of {bytes} bytes: {source}")]
    Decode {
        bytes: usize,
        #[source]
        source: ff::Error,
    },
    #[error("AAC decoder returned sample format {0}, which is not handled")]
    Format(&'static str),
    #[error("AAC encoder: {0}")]
    Encode(String),
}

/// Largest access unit copied into the reused packet without growing it (an 8 kHz frame is
/// a few hundred bytes; 48 kHz stereo at 256 kbit/s about 1.5 KB).
const PACKET_CAPACITY: usize = 8 * 1024;

/// Sets `extradata` on a codec context (libav frees it with the context).
///
/// # Safety
/// `ctx` must be a valid, not yet opened codec context.
unsafe fn set_extradata(ctx: *mut ffi::AVCodecContext, data: &[u8]) -> Result<(), String> {
    let size = i32::try_from(data.len()).map_err(|_| "config too large".to_string())?;
    let pad = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: av_mallocz returns a zeroed buffer of the requested size or null; the context
    // takes ownership and frees it in avcodec_free_context.
    unsafe {
        let buf = ffi::av_mallocz(data.len() + pad) as *mut u8;
        if buf.is_null() {
            return Err("out of memory for the AudioSpecificConfig".into());
        }
        ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        (*ctx).extradata = buf;
        (*ctx).extradata_size = size;
    }
    Ok(())
}

/// libavcodec's AAC decoder with a reused packet and frame.
pub struct AacDecoder {
    decoder: ff::decoder::Audio,
    packet: ff::Packet,
    frame: ff::frame::Audio,
    sample_rate: u32,
    channels: u16,
}

impl AacDecoder {
    /// `config`: the AudioSpecificConfig bytes (fmtp `config=` decoded from hex).
    pub fn new(config: &[u8]) -> Result<Self, AacDecodeError> {
        let open = |e: String| AacDecodeError::Open(e);
        ff::init().map_err(|e| open(e.to_string()))?;
        ff::util::log::set_level(ff::util::log::Level::Quiet);
        let codec = ff::decoder::find(ff::codec::Id::AAC)
            .ok_or_else(|| open("this libavcodec has no AAC decoder".into()))?;
        let mut ctx = ff::codec::Context::new_with_codec(codec);
        // SAFETY: the context is valid and not opened yet.
        unsafe { set_extradata(ctx.as_mut_ptr(), config) }.map_err(open)?;
        let decoder = ctx
            .decoder()
            .open_as(codec)
            .and_then(|d| d.audio())
            .map_err(|e| open(e.to_string()))?;
        let sample_rate = decoder.rate();
        let channels = decoder.channels();
        Ok(AacDecoder {
            decoder,
            packet: new_packet(PACKET_CAPACITY).map_err(|e| open(e.to_string()))?,
            frame: ff::frame::Audio::empty(),
            sample_rate,
            channels,
        })
    }

    /// Sample rate as configured (updated from decoded frames).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Decodes one access unit and appends its samples (interleaved i16) to `out`; returns
    /// the number of sample frames appended.
    pub fn decode(&mut self, au: &[u8], out: &mut Vec<i16>) -> Result<usize, AacDecodeError> {
        let err = |source| AacDecodeError::Decode {
            bytes: au.len(),
            source,
        };
        self.load(au).map_err(err)?;
        self.decoder.send_packet(&self.packet).map_err(err)?;
        let mut frames = 0;
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    frames += self.append(out)?;
                    // SAFETY: the frame is valid; unref returns its buffer to libav now.
                    unsafe { ffi::av_frame_unref(self.frame.as_mut_ptr()) };
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(err(e)),
            }
        }
        Ok(frames)
    }

    /// Copies `au` into the reused packet (a new buffer only when libav still holds the old
    /// one or the unit is larger).
    fn load(&mut self, au: &[u8]) -> Result<(), ff::Error> {
        let size = i32::try_from(au.len()).map_err(|_| ff::Error::InvalidData)?;
        // SAFETY: `packet` owns a valid AVPacket; `buf` is only read when non-null.
        let reusable = unsafe {
            let pkt = ff::packet::Mut::as_mut_ptr(&mut self.packet);
            let buf = (*pkt).buf;
            !buf.is_null()
                && ffi::av_buffer_is_writable(buf) == 1
                && (*buf).size >= au.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize
        };
        if !reusable {
            self.packet = new_packet(au.len().max(PACKET_CAPACITY))?;
        }
        // SAFETY: the buffer is ours alone and holds `au.len()` bytes plus the padding.
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
            (*pkt).pts = ffi::AV_NOPTS_VALUE;
            (*pkt).dts = ffi::AV_NOPTS_VALUE;
        }
        Ok(())
    }

    /// Converts the decoded frame to interleaved i16 at the end of `out`.
    fn append(&mut self, out: &mut Vec<i16>) -> Result<usize, AacDecodeError> {
        let f = &self.frame;
        let n = f.samples();
        let ch = usize::from(f.channels().max(1));
        self.sample_rate = f.rate();
        self.channels = ch as u16;
        let planar = f.is_planar();
        let planes = f.planes();
        let fmt = f.format();
        let bytes = fmt.bytes();
        // Plane `p`'s sample `i` as f32, 0.0 where the frame is shorter than it says.
        let sample = |p: usize, i: usize| -> f32 {
            if p >= planes {
                return 0.0;
            }
            let d = f.data(p);
            let at = i * bytes;
            let Some(b) = d.get(at..at + bytes) else {
                return 0.0;
            };
            match fmt {
                ff::format::Sample::F32(_) => f32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                ff::format::Sample::I16(_) => f32::from(i16::from_ne_bytes([b[0], b[1]])) / 32768.0,
                ff::format::Sample::I32(_) => {
                    i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0
                }
                _ => 0.0,
            }
        };
        if !matches!(
            fmt,
            ff::format::Sample::F32(_) | ff::format::Sample::I16(_) | ff::format::Sample::I32(_)
        ) {
            return Err(AacDecodeError::Format(fmt.name()));
        }
        out.reserve(n * ch);
        for i in 0..n {
            for c in 0..ch {
                let v = if planar {
                    sample(c, i)
                } else {
                    sample(0, i * ch + c)
                };
                out.push((v.clamp(-1.0, 1.0) * 32767.0).round() as i16);
            }
        }
        Ok(n)
    }
}

fn new_packet(capacity: usize) -> Result<ff::Packet, ff::Error> {
    let cap = i32::try_from(capacity).map_err(|_| ff::Error::InvalidData)?;
    let mut packet = ff::Packet::empty();
    // SAFETY: av_new_packet initialises the packet with a fresh buffer of `capacity` bytes plus
    // zeroed padding, or fails without touching it.
    let ret = unsafe { ffi::av_new_packet(ff::packet::Mut::as_mut_ptr(&mut packet), cap) };
    if ret < 0 {
        return Err(ff::Error::from(ret));
    }
    Ok(packet)
}

/// AAC-LC encoded with libavcodec's native `aac` encoder, for synthetic fixtures.
pub struct EncodedAac {
    /// The AudioSpecificConfig (the encoder's extradata): fmtp `config=`.
    pub config: Vec<u8>,
    pub sample_rate: u32,
    /// Raw access units (no ADTS), each [`crate::neon::aac::SAMPLES_PER_FRAME`] samples.
    pub frames: Vec<Vec<u8>>,
}

/// Encodes mono samples (-1.0..1.0) at `sample_rate` to AAC-LC at `bit_rate` bit/s.
pub fn encode_mono(
    samples: &[f32],
    sample_rate: u32,
    bit_rate: usize,
) -> Result<EncodedAac, AacDecodeError> {
    let e = |s: String| AacDecodeError::Encode(s);
    ff::init().map_err(|x| e(x.to_string()))?;
    ff::util::log::set_level(ff::util::log::Level::Quiet);
    let codec = ff::encoder::find(ff::codec::Id::AAC).ok_or_else(|| e("no AAC encoder".into()))?;
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(|x| e(x.to_string()))?;
    let rate = i32::try_from(sample_rate).map_err(|_| e("sample rate".into()))?;
    enc.set_rate(rate);
    enc.set_format(ff::format::Sample::F32(ff::format::sample::Type::Planar));
    enc.set_channel_layout(ff::ChannelLayout::MONO);
    enc.set_bit_rate(bit_rate);
    enc.set_time_base(ff::Rational(1, rate));
    // Raw access units with the config out of band, as RTP carries them (RFC 3640).
    enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    let mut enc = enc.open_as(codec).map_err(|x| e(x.to_string()))?;
    // SAFETY: the opened encoder's context is valid; extradata is read, not kept.
    let config = unsafe {
        let c = enc.as_ptr();
        match ((*c).extradata, usize::try_from((*c).extradata_size)) {
            (p, Ok(n)) if !p.is_null() && n > 0 => std::slice::from_raw_parts(p, n).to_vec(),
            _ => return Err(e("the encoder gave no AudioSpecificConfig".into())),
        }
    };
    let frame_size = (enc.frame_size() as usize).max(1);
    let mut frame = ff::frame::Audio::new(
        ff::format::Sample::F32(ff::format::sample::Type::Planar),
        frame_size,
        ff::ChannelLayout::MONO,
    );
    frame.set_rate(sample_rate);
    let mut packet = ff::Packet::empty();
    let mut frames = Vec::new();
    let mut drain = |enc: &mut ff::encoder::Audio, frames: &mut Vec<Vec<u8>>| {
        while enc.receive_packet(&mut packet).is_ok() {
            if let Some(d) = packet.data() {
                frames.push(d.to_vec());
            }
        }
    };
    for (k, chunk) in samples.chunks(frame_size).enumerate() {
        let plane = frame.plane_mut::<f32>(0);
        plane.fill(0.0);
        plane[..chunk.len()].copy_from_slice(chunk);
        frame.set_pts(Some((k * frame_size) as i64));
        enc.send_frame(&frame).map_err(|x| e(x.to_string()))?;
        drain(&mut enc, &mut frames);
    }
    enc.send_eof().map_err(|x| e(x.to_string()))?;
    drain(&mut enc, &mut frames);
    Ok(EncodedAac {
        config,
        sample_rate,
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_encoding_and_decoding() {
        let rate = 8000;
        let tone: Vec<f32> = (0..rate * 2)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
            .collect();
        let enc = encode_mono(&tone, rate, 24_000).unwrap();
        let asc = crate::neon::aac::AudioSpecificConfig::parse(&enc.config).unwrap();
        assert_eq!(
            (asc.sample_rate, asc.channels, asc.object_type),
            (8000, 1, 2)
        );
        assert!(enc.frames.len() >= 16, "{} frames", enc.frames.len());
        let mut dec = AacDecoder::new(&enc.config).unwrap();
        let mut pcm = Vec::new();
        for f in &enc.frames {
            dec.decode(f, &mut pcm).unwrap();
        }
        assert_eq!(dec.sample_rate(), 8000);
        assert_eq!(dec.channels(), 1);
        assert_eq!(pcm.len(), enc.frames.len() * 1024);
        // the middle second is a loud tone, not silence
        let mid = &pcm[8000..16000];
        let rms = (mid.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 8000.0).sqrt();
        assert!(rms > 0.3 * 32767.0 * 0.5, "rms {rms}");
        // garbage is an error, not a panic
        assert!(dec.decode(&[0xff; 40], &mut pcm).is_err() || pcm.len() % 1024 == 0);
    }
}
