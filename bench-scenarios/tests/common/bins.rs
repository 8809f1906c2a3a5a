//! The `eyetrack` and `neon-sim` binaries of the same build, for bench-scenarios' end-to-end
//! tests: cargo builds only this package's binaries for its tests, so each is built here once
//! per test process (a no-op when up to date). Include with `#[path = "common/bins.rs"] mod
//! bins;`.
#![allow(dead_code)] // each test binary starts the binaries it needs

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn eyetrack() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| built("pipeline", "eyetrack")).clone()
}

pub fn neon_sim() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| built("neon-sim", "neon-sim")).clone()
}

/// Builds `bin` of `package` in this build's profile; its path beside this package's binary.
fn built(package: &str, bin: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", package, "--bin", bin])
        .args(if cfg!(debug_assertions) {
            &[][..]
        } else {
            &["--release"][..]
        })
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p {package} --bin {bin}");
    PathBuf::from(env!("CARGO_BIN_EXE_bench-scenarios")).with_file_name(bin)
}
