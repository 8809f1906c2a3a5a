//! The short soak and fault suite over the real binaries, as CI runs it: every case of
//! `bench-scenarios soak` passes (or is skipped with its reason), and the report says so.

#[path = "common/bins.rs"]
mod bins;

use std::process::Command;

#[test]
fn short_soak_suite_passes_every_case() {
    let out = std::env::temp_dir().join(format!("bench-scenarios-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    // Run from the repository root, where the committed fixture is.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The soak command finds neon-sim next to itself; it is another package's binary.
    bins::neon_sim();
    let o = Command::new(env!("CARGO_BIN_EXE_bench-scenarios"))
        .current_dir(&root)
        // Drops depend on what else this shared machine runs: reported, not judged, here.
        .args([
            "soak",
            "--duration",
            "20s",
            "--targets",
            "report",
            "--eyetrack",
        ])
        .arg(bins::eyetrack())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
    assert!(
        o.status.success(),
        "{summary}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "continuous-recording",
            "network-interruptions",
            "control-start-stop",
            "encoder-killed",
            "disk-full",
            "cpu-contention",
            "rtp-garbage",
            "junk-device",
            "control-malformed",
        ]
    );
    for c in cases {
        match c["verdict"].as_str().unwrap() {
            "pass" => assert!(!c["checks"].as_array().unwrap().is_empty(), "{c}"),
            "skip" => assert!(c["skip_reason"].is_string(), "{c}"),
            v => panic!("{} {v}: {summary}", c["name"]),
        }
        // Every case that recorded checked its recordings with ffprobe and a CSV parser.
        if c["figures"].get("recordings").is_some() {
            assert!(
                c["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["what"] == "every video decodes and every CSV parses"),
                "{c}"
            );
        }
    }
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("| continuous-recording ") && l.contains("| pass ")),
        "the summary table has a row per case: {summary}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
