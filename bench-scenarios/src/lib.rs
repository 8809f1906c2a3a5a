//! bench-scenarios: runs the eyetrack pipeline through the plan's scenarios and the optimization
//! toggles, each variant in its own process, and writes comparative reports.

pub mod aggregate;
pub mod compare;
pub mod floor;
pub mod h264clip;
pub mod html;
pub mod runner;
pub mod soak;
pub mod tables;
pub mod variants;

pub use pipeline;
