//! Secret flags (`--control-token`) never reach a file a run writes, its logs or `config show`:
//! the real binary records, reports, samples a flamegraph and logs at debug level, then every
//! byte it wrote, and every line it logged, is searched for the token. (JSON logs hold the
//! same messages; `tests/common/control.rs` finds the server's address in text logs.)

mod common;
#[path = "common/control.rs"]
mod control;

use std::path::{Path, PathBuf};

use common::{eyetrack, tmp};

const CLI_TOKEN: &str = "cli-token-3f9a1c77e2b54d08";
const FILE_TOKEN: &str = "file-token-8d21b6c0a4e94f13";

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn no_file_a_run_writes_and_no_log_line_holds_the_token() {
    let dir = tmp("secrets");
    let config = dir.join("c.toml");
    // The config file is the user's own, the one place the token may be: not searched.
    std::fs::write(&config, format!("control-token = \"{FILE_TOKEN}\"\n")).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (rec, report, svg, snap) = (
        out.join("rec"),
        out.join("report.json"),
        out.join("flame.svg"),
        out.join("snap.ppm"),
    );
    let token_flag = format!("--control-token={CLI_TOKEN}");
    let run_flags: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "--source",
        "synthetic",
        "--resolution",
        "320x240",
        "--duration",
        "60s",
        "--record",
        rec.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
        "--snapshot",
        snap.to_str().unwrap(),
        "--log-format",
        "text",
        "--log-level",
        "debug",
        "-q",
        "--control-token",
        FILE_TOKEN,
        &token_flag,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // `config show` with the same flags (and `--control`, which the token requires).
    let shown = eyetrack()
        .args(["config", "show"])
        .args(&run_flags)
        .args(["--control", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    for t in [CLI_TOKEN, FILE_TOKEN] {
        assert!(!contains(&shown.stdout, t), "config show printed {t}");
        assert!(!contains(&shown.stderr, t), "config show logged {t}");
    }
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("# control-token (set; a secret, not shown)"),
        "{text}"
    );

    let mut cmd = eyetrack();
    cmd.env_remove("EYETRACK_CONTROL_TOKEN");
    let argv: Vec<&str> = std::iter::once("run")
        .chain(run_flags.iter().map(String::as_str))
        .collect();
    let s = control::start(cmd, &argv);
    // The token is in force (the last one given wins), so the search below is not vacuous.
    assert_eq!(s.get("/status").status, 401);
    let auth = format!("Bearer {CLI_TOKEN}");
    assert!(control::wait_until(
        std::time::Duration::from_secs(30),
        || {
            let r = s.get_with("/status", &[("Authorization", &auth)]);
            r.status == 200 && r.json()["frames_displayed"].as_u64() > Some(5)
        }
    ));
    let stderr = std::sync::Arc::clone(&s.stderr);
    let st = s.stop();
    assert!(st.success(), "{st}; {:?}", stderr.lock().unwrap());

    let mut written = Vec::new();
    files_under(&out, &mut written);
    for f in [&report, &svg, &snap] {
        assert!(
            written.contains(f),
            "{} not written: {written:?}",
            f.display()
        );
    }
    assert!(
        written.iter().any(|p| p.ends_with("session.json")),
        "{written:?}"
    );
    for path in &written {
        let bytes = std::fs::read(path).unwrap();
        for t in [CLI_TOKEN, FILE_TOKEN] {
            assert!(!contains(&bytes, t), "{} holds {t}", path.display());
        }
    }
    let log = stderr.lock().unwrap().join("\n");
    assert!(
        log.contains("control API and preview on"),
        "the logs were read: {log}"
    );
    for t in [CLI_TOKEN, FILE_TOKEN] {
        assert!(!log.contains(t), "a log line holds {t}: {log}");
    }
    // What is stored instead: the command line with the value redacted.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let line: Vec<&str> = report["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(line.contains(&"--control-token=<redacted>"), "{line:?}");
    let i = line.iter().position(|a| *a == "--control-token").unwrap();
    assert_eq!(line[i + 1], "<redacted>", "{line:?}");
    std::fs::remove_dir_all(&dir).ok();
}
