//! The Neon wire protocol as bytes, without sockets: RTP/RTCP, RTP-to-Unix time, H.264
//! (de)packetization, the gaze/IMU/eye-event payloads and SDP (protocol doc sections 4-7, 10).
//!
//! Every concern has a parse side for receivers (the RTSP client, in-process fixture replay) and a
//! build side for senders (fixture synthesis, the device simulator). Parsers take borrowed bytes,
//! never panic, and return errors with context (sequence number, offset, length) for the caller to
//! count; per-packet paths reuse buffers and allocate nothing once warm.
//!
//! A receiver's chain for one stream, e.g. world video over UDP:
//! [`rtp::RtpPacket::parse`] -> [`rtp::SeqUnwrapper`] -> [`rtp::ReorderBuffer`] ->
//! [`h264::Depacketizer`] (SPS/PPS from [`sdp`]) -> access unit stamped by [`clock::SrClock`]
//! (fed [`rtcp`] sender reports). Gaze, IMU and eye events go through [`clock::StampQueue`] and
//! [`gaze`], [`imu`], [`events`] instead of the depacketizer.

pub mod aac;
pub mod clock;
pub mod events;
pub mod gaze;
pub mod h264;
pub mod imu;
pub mod interleaved;
pub mod rtcp;
pub mod rtp;
pub mod sdp;

pub use clock::{ClockRate, RtpTimestamp, SrClock, StampQueue, Stamped};
pub use events::{EventError, EyeEvent};
pub use gaze::{GazeError, NeonGaze};
pub use h264::{AccessUnit, Depacketizer, H264Error, Packetizer, RtpPacketizer};
pub use imu::{ImuError, ImuPacket};
pub use rtcp::{NtpTimestamp, RtcpError, RtcpPacket, SenderInfo};
pub use rtp::{ReorderBuffer, RtpError, RtpHeader, RtpPacket, SeqUnwrapper};
pub use sdp::{MediaDescription, SdpError, SessionDescription};
