//! Helpers shared by the end-to-end tests that run the real `eyetrack` binary.

use std::path::PathBuf;
use std::process::Command;

pub fn eyetrack() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eyetrack"))
}

/// A fresh folder per test process and name, under the system temp dir.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eyetrack-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}
