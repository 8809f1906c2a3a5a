//! Helpers shared by the end-to-end tests that run the real `eyetrack` binary.

use std::path::PathBuf;
use std::process::Command;

/// The real `eyetrack` binary. Under `ci/aarch64` this test runs as an aarch64 binary inside
/// qemu-aarch64 and so is the `eyetrack` it starts: `EYETRACK_TEST_RUNNER` (e.g. `qemu-aarch64
/// -cpu cortex-a76`) names the emulator to start it through, since no binfmt_misc handler
/// does that on an x86_64 CI machine.
pub fn eyetrack() -> Command {
    let bin = env!("CARGO_BIN_EXE_eyetrack");
    let runner = std::env::var("EYETRACK_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut cmd = Command::new(emulator);
            cmd.args(words).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// A fresh folder per test process and name, under the system temp dir.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eyetrack-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}
