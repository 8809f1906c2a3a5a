//! The `eyetrack` binary of the same build, for bench-scenarios' end-to-end tests: cargo builds
//! only this package's binaries for its tests, so it is built here once per test process (a
//! no-op when up to date). Include with `#[path = "common/bins.rs"] mod bins;`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn eyetrack() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "pipeline", "--bin", "eyetrack"])
                .args(if cfg!(debug_assertions) {
                    &[][..]
                } else {
                    &["--release"][..]
                })
                .status()
                .expect("cargo runs");
            assert!(status.success());
            PathBuf::from(env!("CARGO_BIN_EXE_bench-scenarios")).with_file_name("eyetrack")
        })
        .clone()
}
