//! The config file over the real `eyetrack` binary: `config show` covers every flag of
//! `eyetrack run`, the command line wins over the file, an unknown key is a clear error, and the
//! output of `config show` read back as a config file gives the same configuration.

mod common;

use std::collections::BTreeSet;

use common::{eyetrack, tmp};

/// `eyetrack config show ARGS` with no default config file in reach.
fn show(args: &[&str]) -> std::process::Output {
    let home = tmp("config-home");
    eyetrack()
        .env("XDG_CONFIG_HOME", &home)
        .env("HOME", &home)
        .args(["config", "show"])
        .args(args)
        .output()
        .unwrap()
}

fn show_ok(args: &[&str]) -> String {
    let out = show(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The key lines (set or commented), without the header.
fn body(shown: &str) -> String {
    shown
        .lines()
        .skip_while(|l| l.starts_with("# eyetrack run:") || l.starts_with("# Keys are"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_run_flag_is_a_key_of_config_show() {
    // The flags as `eyetrack run --help` lists them, independently of how show finds them.
    let help = eyetrack().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let flags: BTreeSet<String> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| {
            w.trim_end_matches([',', '.', ')', ':', '`', '\''])
                .split(['=', '[', '<'])
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    assert!(
        flags.contains("record-fps") && flags.contains("layout"),
        "{flags:?}"
    );
    let shown = show_ok(&[]);
    let keys: BTreeSet<String> = shown
        .lines()
        .map(|l| l.trim_start_matches("# "))
        .filter_map(|l| l.split([' ', '=']).next())
        .map(str::to_owned)
        .collect();
    for flag in &flags {
        if flag == "help" || flag == "config" {
            continue;
        }
        assert!(
            keys.contains(flag),
            "--{flag} is missing from `config show`:\n{shown}"
        );
    }
}

#[test]
fn the_command_line_overrides_the_file() {
    let dir = tmp("config-precedence");
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "layout = \"logger\"\nrecord-fps = 7\nmarker-radius = 12\nrecord = \"/tmp/somewhere\"\nquiet = true\n",
    )
    .unwrap();
    let shown = show_ok(&["--config", file.to_str().unwrap(), "--record-fps", "9"]);
    assert!(
        shown.contains(&format!("(config file: {})", file.display())),
        "{shown}"
    );
    assert!(shown.contains("\nrecord-fps = 9\n"), "{shown}");
    assert!(shown.contains("\nlayout = \"logger\"\n"), "{shown}");
    assert!(shown.contains("\nmarker-radius = 12\n"), "{shown}");
    assert!(shown.contains("\nquiet = true\n"), "{shown}");
    // Unset flags show the default the layout gives them.
    assert!(
        shown.contains("# preview-size (not set)  # 640x480 with --layout logger"),
        "{shown}"
    );
    assert!(
        shown.contains("# marker-thickness (not set)  # 1 with --layout logger"),
        "{shown}"
    );
    // The default location is read when --config is not given.
    let home = tmp("config-default-home");
    std::fs::create_dir_all(home.join("eyetrack")).unwrap();
    std::fs::write(home.join("eyetrack/config.toml"), "marker-radius = 31\n").unwrap();
    let out = eyetrack()
        .env("XDG_CONFIG_HOME", &home)
        .args(["config", "show", "--marker-radius", "32"])
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        s.contains("config.toml)") && s.contains("\nmarker-radius = 32\n"),
        "{s}"
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_the_file() {
    let dir = tmp("config-errors");
    let cases = [
        ("recrod-fps = 5\n", "unknown key 'recrod-fps'"),
        ("record_fps = 5\n", "did you mean 'record-fps'"),
        ("record-fps = 99\n", "key 'record-fps'"),
        ("layout = \"mine\"\n", "key 'layout'"),
        ("quiet = 1\n", "key 'quiet'"),
        ("record-fps = \n", "not valid TOML"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = show(&["--config", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(needle), "{text}: {err}");
        assert!(
            err.contains(file.to_str().unwrap()),
            "{text}: names the file: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    // `run` reads the file the same way, before anything streams.
    let file = dir.join("bad0.toml");
    let out = eyetrack()
        .args([
            "run",
            "--duration",
            "1s",
            "--config",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key 'recrod-fps'"));
}

#[test]
fn config_show_reads_back_to_the_same_configuration() {
    let dir = tmp("config-roundtrip");
    let first = show_ok(&[
        "--layout",
        "logger",
        "--record",
        "/tmp/x y",
        "--record-fps",
        "12",
        "--fps",
        "2.5",
        "--worn-color",
        "00ff00",
        "--duration",
        "90s",
        "--quiet",
        "--prefix",
        "P1",
        "--dedupe",
        "off",
    ]);
    let file = dir.join("shown.toml");
    std::fs::write(&file, &first).unwrap();
    let second = show_ok(&["--config", file.to_str().unwrap()]);
    assert_eq!(body(&first), body(&second));
    assert!(
        first.contains("\nrecord = \"/tmp/x y\"\n") && first.contains("\nfps = 2.5\n"),
        "{first}"
    );
}
