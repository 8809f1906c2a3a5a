//! eyetrack's frame pipeline: sources, the frame model, the processing stages and the profiler
//! that times them. The `eyetrack` binary is a thin CLI over this library.

pub mod child;
pub mod cli;
pub mod color;
pub mod config;
pub mod control;
pub mod coordinator;
pub mod decode;
pub mod dedupe;
pub mod fixture;
pub mod flamegraph;
pub mod frame;
pub mod gaze_match;
pub mod live_config;
pub mod logging;
pub mod neon;
pub mod overlay;
pub mod packet;
pub mod platform;
pub mod preview;
pub mod process;
pub mod profile;
pub mod record;
pub mod report;
pub mod resources;
pub mod run;
pub mod run_control;
pub mod sensors;
pub mod source;
pub mod streams;
pub mod targets;
pub mod time;
pub mod toggles;
