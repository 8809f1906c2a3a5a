//! eyetrack's frame pipeline: sources, the frame model, the processing stages and the profiler
//! that times them. The `eyetrack` binary is a thin CLI over this library.

pub mod color;
pub mod frame;
pub mod packet;
pub mod profile;
pub mod sensors;
pub mod source;
pub mod time;
