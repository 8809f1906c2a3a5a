//! The in-process encoder (the plan's PyAV question, 2.4): libavcodec's libx264 and libavformat's
//! Matroska (or fragmented MP4) muxer through ffmpeg-next, so no second process and no pipe copy.
//!
//! libavcodec rather than openh264: the same x264 at the same settings as the subprocess backend
//! (so the comparison isolates the pipe and the process, which is the plan's question), the
//! muxer comes with it, and it is what Debian and Raspberry Pi OS ship; openh264's encoder has
//! no CRF mode and would still need a hand-written container writer.

use std::path::{Path, PathBuf};
use std::sync::Once;

use ffmpeg_next as ff;

use super::{
    check_shape, file_len, fsync_path, EncodeError, EncoderSpec, SegmentSummary, VideoEncoder,
};
use crate::color;
use crate::frame::{Frame, FrameView, PixelFormat};

pub struct LibavEncoder {
    spec: EncoderSpec,
    path: PathBuf,
    octx: ff::format::context::Output,
    encoder: ff::encoder::Video,
    /// Reused for every frame: planes copied in once.
    frame: ff::frame::Video,
    packet: ff::Packet,
    /// BGR input (the plan's colour path) converted here; x264 takes only planar YUV.
    yuv: Option<Frame>,
    encoder_tb: ff::Rational,
    stream_tb: ff::Rational,
    frames_in: u64,
    packets_out: u64,
}

pub(super) fn lav(e: ff::Error) -> EncodeError {
    EncodeError::Libav(e.to_string())
}

/// libav logs to stderr by default; a library must not print, and every failure reaches the
/// caller as an error value anyway.
pub fn init() -> Result<(), EncodeError> {
    static INIT: Once = Once::new();
    let mut result = Ok(());
    INIT.call_once(|| {
        result = ff::init().map_err(lav);
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
    result
}

impl LibavEncoder {
    pub fn open(spec: &EncoderSpec, path: &Path) -> Result<Self, EncodeError> {
        init()?;
        let codec = ff::encoder::find_by_name("libx264").ok_or_else(|| {
            EncodeError::Unavailable(
                "libav: this FFmpeg build has no libx264 encoder; use --encoder ffmpeg".into(),
            )
        })?;
        let container = super::Container::for_path(path);
        let mut octx =
            ff::format::output_as(path, container.muxer()).map_err(|e| io_or_lav(path, e))?;
        let global_header = octx
            .format()
            .flags()
            .contains(ff::format::Flags::GLOBAL_HEADER);
        let fps = spec.fps.max(1) as i32;
        let encoder_tb = ff::Rational(1, fps);
        let mut enc = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(lav)?;
        enc.set_width(spec.width as u32);
        enc.set_height(spec.height as u32);
        enc.set_format(ff::format::Pixel::YUV420P);
        enc.set_time_base(encoder_tb);
        enc.set_frame_rate(Some(ff::Rational(fps, 1)));
        if global_header {
            enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = ff::Dictionary::new();
        opts.set("preset", "ultrafast");
        opts.set("crf", &spec.crf.to_string());
        if let Some(n) = spec.threads {
            opts.set("threads", &n.to_string());
        }
        let before = crate::resources::thread_ids();
        let encoder = enc.open_as_with(codec, opts).map_err(lav)?;
        // x264 starts its threads in avcodec_open2 (none with one thread, which encodes on the
        // caller's): named, they show apart in the per-thread CPU table.
        crate::resources::name_new_threads(&before, "x264");
        {
            let mut stream = octx.add_stream(codec).map_err(lav)?;
            stream.set_parameters(&encoder);
            stream.set_time_base(encoder_tb);
        }
        let mut mux_opts = ff::Dictionary::new();
        for (k, v) in container.muxer_options() {
            mux_opts.set(k, &v);
        }
        octx.write_header_with(mux_opts)
            .map_err(|e| io_or_lav(path, e))?;
        let stream_tb = octx
            .stream(0)
            .map(|s| s.time_base())
            .unwrap_or(ff::Rational(1, 1000));
        let frame = ff::frame::Video::new(
            ff::format::Pixel::YUV420P,
            spec.width as u32,
            spec.height as u32,
        );
        let yuv = (spec.input != PixelFormat::I420)
            .then(|| Frame::new(PixelFormat::I420, spec.width, spec.height));
        Ok(LibavEncoder {
            spec: spec.clone(),
            path: path.to_owned(),
            octx,
            encoder,
            frame,
            packet: ff::Packet::empty(),
            yuv,
            encoder_tb,
            stream_tb,
            frames_in: 0,
            packets_out: 0,
        })
    }

    fn drain(&mut self) -> Result<(), EncodeError> {
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            self.packet.set_stream(0);
            self.packet.rescale_ts(self.encoder_tb, self.stream_tb);
            self.packet
                .write_interleaved(&mut self.octx)
                .map_err(|e| io_or_lav(&self.path, e))?;
            self.packets_out += 1;
        }
        Ok(())
    }
}

/// libav reports I/O failures as errno values: a full disk must be told apart from the rest.
pub(super) fn io_or_lav(path: &Path, e: ff::Error) -> EncodeError {
    match e {
        ff::Error::Other { errno } if errno == nix::libc::ENOSPC || errno == nix::libc::EDQUOT => {
            EncodeError::DiskFull(path.to_owned())
        }
        ff::Error::Other { errno } => EncodeError::Io {
            path: path.to_owned(),
            source: std::io::Error::from_raw_os_error(errno),
        },
        e => lav(e),
    }
}

/// Makes everything muxed so far durable: a null packet makes the Matroska muxer close its open
/// cluster, avio_flush pushes the bytes to the kernel, fsync puts them on the disk. Shared with
/// the passthrough remuxer.
pub(super) fn sync_output(
    octx: &mut ff::format::context::Output,
    path: &Path,
) -> Result<(), EncodeError> {
    // SAFETY: the context is open (header written) and owned by the caller.
    unsafe {
        let ctx = octx.as_mut_ptr();
        let rc = ff::ffi::av_write_frame(ctx, std::ptr::null_mut());
        if rc < 0 {
            return Err(io_or_lav(path, ff::Error::from(rc)));
        }
        if !(*ctx).pb.is_null() {
            ff::ffi::avio_flush((*ctx).pb);
            let err = (*(*ctx).pb).error;
            if err < 0 {
                return Err(io_or_lav(path, ff::Error::from(err)));
            }
        }
    }
    fsync_path(path)
}

impl VideoEncoder for LibavEncoder {
    fn encode(&mut self, frame: &FrameView<'_>) -> Result<(), EncodeError> {
        check_shape(&self.spec, frame)?;
        let yuv_view;
        let src = match self.yuv.as_mut() {
            Some(buf) => {
                color::convert(frame, buf, PixelFormat::I420)
                    .map_err(|e| EncodeError::Libav(format!("colour conversion: {e}")))?;
                yuv_view = buf.view();
                &yuv_view
            }
            None => frame,
        };
        // The encoder may still reference the previous frame's buffer: make ours writable
        // (a no-op unless it is shared) before copying the planes in.
        // SAFETY: av_frame_make_writable only reallocates the frame's own buffers.
        let rc = unsafe { ff::ffi::av_frame_make_writable(self.frame.as_mut_ptr()) };
        if rc < 0 {
            return Err(lav(ff::Error::from(rc)));
        }
        for i in 0..3 {
            let p = src.plane(i);
            let stride = self.frame.stride(i);
            let dst = self.frame.data_mut(i);
            let row = p.row_bytes();
            for y in 0..p.height {
                dst[y * stride..y * stride + row].copy_from_slice(p.row(y));
            }
        }
        self.frame.set_pts(Some(self.frames_in as i64));
        self.encoder.send_frame(&self.frame).map_err(lav)?;
        self.frames_in += 1;
        self.drain()
    }

    fn sync(&mut self) -> Result<u64, EncodeError> {
        sync_output(&mut self.octx, &self.path)?;
        Ok(self.packets_out)
    }

    fn finish(mut self: Box<Self>) -> Result<SegmentSummary, EncodeError> {
        self.encoder.send_eof().map_err(lav)?;
        self.drain()?;
        self.octx
            .write_trailer()
            .map_err(|e| io_or_lav(&self.path, e))?;
        fsync_path(&self.path)?;
        Ok(SegmentSummary {
            file: super::ffmpeg::file_name(&self.path),
            frames: self.packets_out,
            bytes: file_len(&self.path),
            end: "finished".into(),
        })
    }

    fn bytes_written(&self) -> u64 {
        file_len(&self.path)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
