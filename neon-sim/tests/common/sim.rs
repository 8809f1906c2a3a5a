//! The `neon-sim` binary of this package for one test, on ephemeral loopback ports, killed when
//! dropped. Include with `#[path = "common/sim.rs"] mod sim;`.

use std::path::Path;

pub use neon_sim::SimProcess as Sim;

pub fn start(fixture: &Path, extra: &[&str]) -> Sim {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    Sim::start(Path::new(env!("CARGO_BIN_EXE_neon-sim")), fixture, &extra)
        .unwrap_or_else(|e| panic!("{e}"))
}
