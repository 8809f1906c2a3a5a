//! End to end over the real `eyetrack` binary: `--flamegraph` writes an SVG of the pipeline's
//! stacks and the report carries the sample count and the sampler's own cost.

mod common;

use common::{eyetrack, tmp};

#[test]
fn a_run_writes_a_flamegraph_and_reports_its_cost() {
    let dir = tmp("run");
    let svg = dir.join("f.svg");
    let report = dir.join("r.json");
    let out = eyetrack()
        .args([
            "run",
            "--duration",
            "2s",
            "--as-fast-as-possible",
            "--resolution",
            "640x480",
            "--quiet",
            // A higher rate than the default so a short run surely samples the stages.
            "--flamegraph-hz",
            "499",
            "--flamegraph",
        ])
        .arg(&svg)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(&svg).unwrap();
    let head = text.trim_start();
    assert!(
        head.starts_with("<?xml") || head.starts_with("<svg"),
        "{head:.80}"
    );
    assert!(text.trim_end().ends_with("</svg>"));
    assert!(text.contains("pipeline::"), "pipeline frames in the graph");
    assert!(
        ["acquire", "process", "preview"]
            .iter()
            .any(|t| text.contains(&format!("<title>{t} ("))),
        "a stage thread is a root frame"
    );
    assert!(text.contains("resize=area"), "the title names the toggles");

    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let f = &r["flamegraph"];
    assert!(f["samples"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(f["frequency_hz"], 499);
    assert_eq!(f["path"], svg.to_str().unwrap());
    let pct = f["overhead_percent"].as_f64().unwrap();
    assert!(pct > 0.0 && pct < 50.0, "{f}");
    assert!(f["overhead_cpu_seconds"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn without_the_flag_the_field_is_null_and_bad_outputs_fail_early() {
    let dir = tmp("null");
    let report = dir.join("r.json");
    let out = eyetrack()
        .args(["run", "--duration", "0.2s", "--as-fast-as-possible"])
        .args(["--resolution", "320x240", "--quiet", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(r.as_object().unwrap().contains_key("flamegraph"));
    assert!(r["flamegraph"].is_null());

    let out = eyetrack()
        .args(["run", "--duration", "10s", "--quiet", "--flamegraph"])
        .arg(dir.join("missing/f.svg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flamegraph folder"), "{err}");

    let out = eyetrack()
        .args(["run", "--flamegraph-hz", "0", "--flamegraph", "x.svg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(dir).ok();
}
