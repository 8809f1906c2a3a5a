//! bench-scenarios: runs the eyetrack pipeline through scenarios and optimization toggles and
//! writes comparative reports. The runner arrives with its own issue; this crate builds now so
//! the workspace layout is final.

pub use pipeline;
