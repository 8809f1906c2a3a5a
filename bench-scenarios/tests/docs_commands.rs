//! Runs every shell command the documentation shows, so a documented command that stops working
//! fails CI.
//!
//! **What runs.** Every fenced code block whose info string is `sh` in README.md, docs/*.md,
//! and the READMEs of bench-scenarios/, neon-sim/, fixtures/ and reports/. A block is split into
//! commands (lines ending in `\` joined; blank lines and `#` comment lines dropped) and run by
//! one bash per block, so `cd`, variables and `&` jobs carry from one command of a block to the
//! next. After each command the exit status is checked: it must be 0. Output-only or non-shell
//! blocks use another info string (`text`, `console`, `toml`, `rust`, ...).
//!
//! **Where.** Each block runs in its own scratch folder holding a symlink to every top-level entry
//! of the repository except `reports/`, which is a real folder of symlinks to the committed
//! reports. Paths such as `fixtures/...` and `ci/...` work as from the repository root, and what a
//! command writes with a relative path (`r.json`, `out/`, the default `reports/run-*`) lands in
//! the scratch folder. `TMPDIR`, `XDG_CONFIG_HOME` and `XDG_CACHE_HOME` point into it too (no
//! user config file changes a run). The test fails if `fixtures/` or `reports/` of the
//! repository gained a file.
//!
//! **Rewrite rules**, per simple command (the test prints each command and what it ran instead):
//! - `cargo build --release --bins` -> `true`: this test's build already has the binaries
//!   (debug ones, in the same target folder); the test never makes a release build (CI time).
//! - `ci/setup` -> `true`: it installs system packages (apt, sudo); `ci/test` runs it first.
//! - `target/release/{eyetrack,bench-scenarios,neon-sim}` -> the binaries of this build, next to
//!   `bench-scenarios` (`eyetrack` and `neon-sim` are built with `cargo build` first). Any other
//!   `target/release/` path is refused.
//! - `--duration X` -> `--duration 2s` (`bench-scenarios run`: 1s).
//! - `bench-scenarios run` gets `--duration 1s --repeat 1 --flamegraphs off --sweep none`
//!   (replacing given values; explicit `--variant`s still run).
//! - `bench-scenarios soak` gets `--targets report`, and `--case junk-device` (one second)
//!   unless it names its cases; `tests/soak.rs` runs the suite itself.
//! - `cargo bench ARGS [-- BENCH-ARGS]` -> `cargo bench --profile dev ARGS -- --test
//!   [BENCH-ARGS]`: criterion's test mode (every bench once) on the build the tests share.
//! - `cargo` runs in the repository itself (from the scratch folder it would see the workspace
//!   under other paths and rebuild it); other cargo subcommands are refused: use the binaries.
//!
//! **Refused** (the block needs a skip marker, or to be written against neon-sim): traffic to
//! anything but loopback (`neon://`, `http(s)://`, `rtsp://` hosts other than 127.0.0.1, localhost and
//! [::1], `--source discover`, IPv4 literals outside 127/8), `sudo`, `apt`, `apt-get`, and
//! `ci/test` (it runs this test).
//!
//! **Markers.** `<!-- docs-test: skip: REASON -->` on a line before a block (blank lines between
//! allowed) skips it; each skipped block is printed with its reason. A marker with anything else
//! after `docs-test:`, or with no `sh` block after it, fails the test.
//!
//! **Background jobs.** When a block's commands end (or one fails), bash's EXIT trap sends
//! SIGTERM to the jobs it still has and waits for them. Each block's bash also leads its own
//! process group: after the block (or at its limit of 150 s, 900 s for a block that runs cargo
//! and may compile) what is left of the group gets SIGTERM, and SIGKILL 5 s later.
//!
//! **One run at a time.** The examples use fixed ports (a Neon's 8080, 8086 and 12321, the
//! control API on 7000), so the test holds a machine-wide lock (`flock` on
//! `/tmp/eyetrack-docs-commands.lock`) while it runs blocks: a second run, e.g. another
//! checkout's `cargo test --workspace`, waits for it.
//!
//! `DOCS_COMMANDS_ONLY=TEXT` runs only the blocks whose `FILE:LINE` contains TEXT (e.g.
//! `docs/recording.md`), to try one doc quickly.
//!
//! Three more tests check that every relative link in those files reaches an existing file (and
//! heading, for `#anchor`s), that every docs/*.md starts with a `# Title` line and a sentence and
//! is linked from README.md, and the rewrite rules above.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt as _;

#[path = "common/bins.rs"]
mod bins;

const BLOCK_LIMIT: Duration = Duration::from_secs(150);
/// A block that runs cargo may compile first (`cargo bench` builds its bench target, which
/// `cargo test` does not): on a fresh checkout of a loaded 2-core machine that alone took over
/// 150 s.
const CARGO_BLOCK_LIMIT: Duration = Duration::from_secs(900);
const BINARIES: [&str; 3] = ["eyetrack", "bench-scenarios", "neon-sim"];
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The markdown files whose `sh` blocks are run, relative to the repository root.
fn doc_files() -> Vec<PathBuf> {
    let root = repo();
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| p.strip_prefix(&root).unwrap().to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    for f in [
        "bench-scenarios/README.md",
        "neon-sim/README.md",
        "fixtures/README.md",
        "reports/README.md",
    ] {
        if root.join(f).exists() {
            files.push(PathBuf::from(f));
        }
    }
    files
}

// ---------------------------------------------------------------------------------------------
// Markdown

struct Block {
    file: PathBuf,
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    lines: Vec<String>,
    skip: Option<String>,
}

/// Fenced blocks of one file, with their skip markers. Errors: bad or dangling markers, an
/// unclosed fence.
fn parse_blocks(file: &Path, text: &str) -> Result<Vec<Block>, Vec<String>> {
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut open: Option<(char, usize, usize, Block)> = None; // fence char, length, indent
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        if let Some((ch, len, ind, mut block)) = open.take() {
            let run = trimmed.chars().take_while(|&c| c == ch).count();
            if run >= len && trimmed[run..].trim().is_empty() {
                blocks.push(block);
            } else {
                let strip = raw.len() - raw.trim_start_matches(' ').len();
                block.lines.push(raw[strip.min(ind)..].to_string());
                open = Some((ch, len, ind, block));
            }
            continue;
        }
        let fence = ['`', '~']
            .into_iter()
            .find(|&c| trimmed.chars().take_while(|&x| x == c).count() >= 3);
        if let Some(ch) = fence {
            let len = trimmed.chars().take_while(|&c| c == ch).count();
            let lang = trimmed[len..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            let skip = match pending.take() {
                Some((m, _)) if lang != "sh" => {
                    errors.push(format!(
                        "{}:{m}: a docs-test marker before a `{lang}` block (markers go before `sh` blocks)",
                        file.display()
                    ));
                    None
                }
                Some((_, reason)) => Some(reason),
                None => None,
            };
            let block = Block {
                file: file.to_path_buf(),
                line: n,
                lang,
                lines: Vec::new(),
                skip,
            };
            open = Some((ch, len, indent, block));
            continue;
        }
        let t = raw.trim();
        if t.is_empty() {
            continue;
        }
        if let Some((m, _)) = pending.take() {
            errors.push(format!(
                "{}:{m}: a docs-test marker with no block after it",
                file.display()
            ));
        }
        if t.starts_with("<!--") && t.contains("docs-test:") {
            match parse_marker(t) {
                Ok(reason) => pending = Some((n, reason)),
                Err(e) => errors.push(format!("{}:{n}: {e}", file.display())),
            }
        }
    }
    if let Some((_, _, _, b)) = open {
        errors.push(format!("{}:{}: unclosed fence", file.display(), b.line));
    }
    if let Some((m, _)) = pending {
        errors.push(format!(
            "{}:{m}: a docs-test marker with no block after it",
            file.display()
        ));
    }
    if errors.is_empty() {
        Ok(blocks)
    } else {
        Err(errors)
    }
}

/// `<!-- docs-test: skip: REASON -->` -> REASON.
fn parse_marker(line: &str) -> Result<String, String> {
    let body = line
        .split_once("docs-test:")
        .map(|(_, b)| b)
        .and_then(|b| b.trim_end().strip_suffix("-->"))
        .ok_or_else(|| format!("malformed docs-test marker {line:?}"))?
        .trim();
    match body.strip_prefix("skip:").map(str::trim) {
        Some(reason) if !reason.is_empty() => Ok(reason.to_string()),
        _ => Err(format!(
            "unknown docs-test marker {line:?} (the only one is `<!-- docs-test: skip: REASON -->`)"
        )),
    }
}

/// A block's commands: continuation lines joined, blank and comment lines dropped.
fn commands(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in lines {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part.trim());
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Shell words

/// Splits a command line into words at unquoted whitespace, keeping each word's raw text
/// (quotes included), and drops an unquoted `#` comment.
fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in cmd.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => {
                escaped = true;
                cur.push(c);
            }
            '\'' if !double => {
                single = !single;
                cur.push(c);
            }
            '"' if !single => {
                double = !double;
                cur.push(c);
            }
            '#' if !single && !double && cur.is_empty() => break,
            c if c.is_whitespace() && !single && !double => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const OPERATORS: [&str; 5] = ["&&", "||", ";", "|", "&"];

/// What a command runs instead, or why it cannot run here.
fn rewrite(cmd: &str, bins: &Path) -> Result<String, String> {
    let ws = words(cmd);
    let mut out: Vec<String> = Vec::new();
    let mut changed = false;
    for simple in ws.split_inclusive(|w| OPERATORS.contains(&w.as_str())) {
        let (body, op) = match simple.last() {
            Some(l) if OPERATORS.contains(&l.as_str()) => {
                (&simple[..simple.len() - 1], Some(l.clone()))
            }
            _ => (simple, None),
        };
        let (new, ch) = rewrite_simple(body, bins)?;
        changed |= ch;
        out.extend(new);
        out.extend(op);
    }
    Ok(if changed {
        out.join(" ")
    } else {
        cmd.to_string()
    })
}

fn rewrite_simple(words: &[String], bins: &Path) -> Result<(Vec<String>, bool), String> {
    for w in words {
        check_loopback(w)?;
    }
    let mut w: Vec<String> = words.to_vec();
    // The program: the first word that is not a VAR=value assignment.
    let Some(p) = w.iter().position(|x| !is_assignment(x)) else {
        return Ok((w, false));
    };
    let prog = w[p].clone();
    let arg = |i: usize| w.get(p + i).map(String::as_str);
    match prog.as_str() {
        "ci/test" => return Err("`ci/test` runs this test (recursion)".into()),
        "sudo" | "apt" | "apt-get" => {
            return Err(format!("`{prog}` installs system packages"));
        }
        "ci/setup" => return Ok((vec!["true".into()], true)),
        "cargo" => {
            if w[p..] == ["cargo", "build", "--release", "--bins"] {
                return Ok((vec!["true".into()], true));
            }
            if arg(1) != Some("bench") {
                return Err(format!(
                    "`{}`: the test runs only `cargo build --release --bins` and `cargo bench`; \
                     run the binaries (target/release/...) instead",
                    w[p..].join(" ")
                ));
            }
            w.splice(p + 2..p + 2, ["--profile".into(), "dev".into()]);
            match w.iter().position(|x| x == "--") {
                Some(i) => w.insert(i + 1, "--test".into()),
                None => w.extend(["--".into(), "--test".into()]),
            }
            return Ok((w, true));
        }
        _ => {}
    }
    if w.iter().any(|x| x.contains("target/release/")) {
        let name = prog.strip_prefix("target/release/").unwrap_or("");
        if !BINARIES.contains(&name) {
            return Err(format!(
                "`{prog}`: only target/release/{{{}}} map to this test's build",
                BINARIES.join(",")
            ));
        }
        w[p] = bins.join(name).display().to_string();
        let sub = w.get(p + 1).cloned();
        match (name, sub.as_deref()) {
            ("bench-scenarios", Some("run")) => {
                for (flag, value) in [
                    ("--duration", "1s"),
                    ("--repeat", "1"),
                    ("--flamegraphs", "off"),
                    ("--sweep", "none"),
                ] {
                    set_flag(&mut w, flag, value);
                }
            }
            ("bench-scenarios", Some("soak")) => {
                replace_flag(&mut w, "--duration", "2s");
                set_flag(&mut w, "--targets", "report");
                if !w.iter().any(|x| x == "--case" || x.starts_with("--case=")) {
                    w.extend(["--case", "junk-device"].map(Into::into));
                }
            }
            _ => {
                replace_flag(&mut w, "--duration", "2s");
            }
        }
        return Ok((w, true));
    }
    let changed = replace_flag(&mut w, "--duration", "2s");
    Ok((w, changed))
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Replaces the value of `flag` (as `--flag V` or `--flag=V`); false if it is not there.
fn replace_flag(w: &mut [String], flag: &str, value: &str) -> bool {
    let mut found = false;
    let mut i = 0;
    while i < w.len() {
        if w[i] == flag && i + 1 < w.len() {
            w[i + 1] = value.to_string();
            found = true;
            i += 1;
        } else if w[i].starts_with(&format!("{flag}=")) {
            w[i] = format!("{flag}={value}");
            found = true;
        }
        i += 1;
    }
    found
}

fn set_flag(w: &mut Vec<String>, flag: &str, value: &str) {
    if !replace_flag(w, flag, value) {
        w.push(flag.to_string());
        w.push(value.to_string());
    }
}

/// Refuses words that would send traffic anywhere but to loopback.
fn check_loopback(word: &str) -> Result<(), String> {
    let w: String = word.chars().filter(|&c| c != '\'' && c != '"').collect();
    for scheme in ["neon://", "http://", "https://", "rtsp://"] {
        for (at, _) in w.match_indices(scheme) {
            let rest = &w[at + scheme.len()..];
            let host = if rest.starts_with('[') {
                rest.find(']').map_or(rest, |e| &rest[..=e])
            } else {
                rest.split([':', '/', '?']).next().unwrap_or("")
            };
            if !LOOPBACK_HOSTS.contains(&host) {
                return Err(format!(
                    "`{word}` reaches {host:?}, not loopback: mark the block, or write it against neon-sim"
                ));
            }
        }
    }
    if w == "discover" || w == "--source=discover" {
        return Err("`--source discover` browses mDNS on the LAN: mark the block".into());
    }
    for cand in w.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
        let parts: Vec<&str> = cand.split('.').collect();
        if parts.len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u16>().is_ok_and(|v| v < 256))
            && parts[0] != "127"
        {
            return Err(format!(
                "`{word}` names {cand}, not loopback: mark the block, or write it against neon-sim"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running

/// eyetrack and neon-sim of this build, next to bench-scenarios (built by `bins`: cargo builds
/// only this package's binaries for its tests).
fn build_bins() -> PathBuf {
    let dir = bins::eyetrack().parent().expect("a folder").to_path_buf();
    assert_eq!(bins::neon_sim().parent(), Some(dir.as_path()));
    for b in BINARIES {
        assert!(dir.join(b).exists(), "no {b} in {}", dir.display());
    }
    dir
}

/// A scratch copy of the repository root: symlinks, except `reports/` (a folder of symlinks).
fn scratch(at: &Path) -> PathBuf {
    let work = at.join("work");
    std::fs::create_dir_all(work.join("reports")).unwrap();
    for e in std::fs::read_dir(repo()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "reports" {
            for r in std::fs::read_dir(e.path()).unwrap() {
                let r = r.unwrap();
                std::os::unix::fs::symlink(r.path(), work.join("reports").join(r.file_name()))
                    .unwrap();
            }
        } else {
            std::os::unix::fs::symlink(e.path(), work.join(&name)).unwrap();
        }
    }
    for d in ["tmp", "config", "cache"] {
        std::fs::create_dir_all(at.join(d)).unwrap();
    }
    work
}

/// Holds the machine-wide lock while it lives (a `flock` child that ends when its stdin closes,
/// also when this process dies).
struct RunLock(std::process::Child);

fn run_lock() -> RunLock {
    let path = Path::new("/tmp/eyetrack-docs-commands.lock");
    let mut child = Command::new("flock")
        .arg(path)
        .args(["-c", "echo locked; exec cat >/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock (util-linux) runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked", "flock on {}", path.display());
    RunLock(child)
}

impl Drop for RunLock {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The bash script of one block: each command echoed, run and its exit status checked.
fn script(cmds: &[String]) -> String {
    // The EXIT trap stops and reaps the block's `&` jobs (an init that reaps nothing would keep
    // them as zombies); the process-group kill after the block is the safety net.
    let mut s = String::from(
        "set -o pipefail\n\
         cargo() { (cd \"$DOCS_TEST_REPO\" && command cargo \"$@\"); }\n\
         trap 'j=$(jobs -p); [ -n \"$j\" ] && kill $j 2>/dev/null; wait' EXIT\n",
    );
    for (i, c) in cmds.iter().enumerate() {
        let n = i + 1;
        let echo = sq(&format!("[docs-test] {n} $ {c}"));
        writeln!(s, "printf '\\n%s\\n' {echo}").unwrap();
        writeln!(s, "{c}").unwrap();
        writeln!(
            s,
            "__docs_rc=$?; if [ \"$__docs_rc\" -ne 0 ]; then \
             printf '\\n[docs-test] command {n} exited %s\\n' \"$__docs_rc\"; exit 97; fi"
        )
        .unwrap();
    }
    s.push_str("printf '\\n[docs-test] all commands exited 0\\n'\n");
    s
}

/// Whether a process of the group still runs (zombies left to a non-reaping init do not count).
fn group_alive(pgid: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
    })
}

fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("bash")
        .args(["-c", &format!("kill -{sig} -- -{pgid} 2>/dev/null")])
        .status();
}

/// Runs one block's commands; Err with the reason and the log's tail.
fn run_block(cmds: &[String], dir: &Path) -> Result<(), String> {
    let limit = if cmds
        .iter()
        .any(|c| c.split_whitespace().any(|w| w == "cargo"))
    {
        CARGO_BLOCK_LIMIT
    } else {
        BLOCK_LIMIT
    };
    let work = scratch(dir);
    let log_path = dir.join("log.txt");
    let log = File::create(&log_path).unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script(cmds))
        .current_dir(&work)
        .env("DOCS_TEST_REPO", repo())
        .env("TMPDIR", dir.join("tmp"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("EYETRACK_CONTROL_TOKEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let pgid = child.id();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever the block left running (its `&` jobs, or everything on a timeout).
    signal_group(pgid, "TERM");
    let t1 = Instant::now();
    while group_alive(pgid) && t1.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if group_alive(pgid) {
        signal_group(pgid, "KILL");
    }
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let failed = match status {
        None => Some(format!("did not finish within {} s", limit.as_secs())),
        Some(s) if s.success() => None,
        Some(s) => Some(
            text.lines()
                .rev()
                .find(|l| l.starts_with("[docs-test] command "))
                .map_or(format!("bash exited {s}"), str::to_string),
        ),
    };
    match failed {
        None => Ok(()),
        Some(why) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(120)..].join("\n");
            Err(format!("{why}\n--- last lines of its output ---\n{tail}"))
        }
    }
}

/// Every file under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

fn all_blocks() -> Vec<Block> {
    let root = repo();
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    for f in doc_files() {
        let text = std::fs::read_to_string(root.join(&f)).unwrap();
        match parse_blocks(&f, &text) {
            Ok(b) => blocks.extend(b),
            Err(e) => errors.extend(e),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    blocks
}

#[test]
fn every_sh_block_runs() {
    let t0 = Instant::now();
    let blocks: Vec<Block> = all_blocks()
        .into_iter()
        .filter(|b| b.lang == "sh")
        .collect();
    assert!(!blocks.is_empty(), "no sh blocks found");
    let bins = build_bins();
    println!(
        "eyetrack and neon-sim built in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let lock = run_lock();
    println!(
        "docs-test lock taken after {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let root = repo();
    let watched = ["fixtures", "reports"].map(|d| (d, tree(&root.join(d))));
    let scratch_root = tempfile::Builder::new()
        .prefix("docs-commands-")
        .tempdir()
        .unwrap();

    let only = std::env::var("DOCS_COMMANDS_ONLY").ok();
    let (mut ran, mut commands_run, mut skipped, mut failures) = (0, 0, Vec::new(), Vec::new());
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("{}:{}", b.file.display(), b.line);
        if only.as_ref().is_some_and(|o| !at.contains(o.as_str())) {
            continue;
        }
        let cmds = commands(&b.lines);
        if let Some(reason) = &b.skip {
            println!("\n== {at}: SKIPPED ({reason})");
            for c in &cmds {
                println!("   $ {c}");
            }
            skipped.push((at, reason.clone()));
            continue;
        }
        println!("\n== {at}: {} command(s)", cmds.len());
        let mut run = Vec::new();
        let mut refused = Vec::new();
        for c in &cmds {
            println!("   $ {c}");
            match rewrite(c, &bins) {
                Ok(r) => {
                    if &r != c {
                        println!("     runs: {r}");
                    }
                    run.push(r);
                }
                Err(e) => {
                    println!("     REFUSED: {e}");
                    refused.push(e);
                }
            }
        }
        if cmds.is_empty() {
            failures.push(format!("{at}: an sh block without a command"));
            continue;
        }
        if !refused.is_empty() {
            failures.push(format!(
                "{at}: cannot run here ({}); mark it `<!-- docs-test: skip: REASON -->` if it \
                 truly cannot",
                refused.join("; ")
            ));
            continue;
        }
        let dir = scratch_root.path().join(format!("block-{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        let tb = Instant::now();
        let result = run_block(&run, &dir);
        let secs = tb.elapsed().as_secs_f64();
        ran += 1;
        commands_run += run.len();
        match result {
            Ok(()) => println!("   ok ({secs:.1} s)"),
            Err(e) => {
                println!("   FAILED ({secs:.1} s): {e}");
                failures.push(format!("{at}: {}", e.lines().next().unwrap_or("")));
            }
        }
    }

    for (d, before) in &watched {
        let after = tree(&root.join(d));
        let new: Vec<_> = after.difference(before).collect();
        if !new.is_empty() {
            failures.push(format!(
                "the commands wrote into the repository's {d}/: {new:?}"
            ));
        }
    }
    println!(
        "\ndocs commands: {ran} block(s) with {commands_run} command(s) run, {} block(s) skipped, \
         {} failure(s), {:.0} s",
        skipped.len(),
        failures.len(),
        t0.elapsed().as_secs_f64()
    );
    for (at, reason) in &skipped {
        println!("  skipped {at}: {reason}");
    }
    drop(lock);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Links

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Headings and prose lines of a markdown file (fenced blocks left out).
fn prose(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for line in text.lines() {
        let t = line.trim_start();
        let run = |ch| t.chars().take_while(|&c| c == ch).count();
        match fence {
            Some((ch, len)) => {
                if run(ch) >= len && t[run(ch)..].trim().is_empty() {
                    fence = None;
                }
            }
            None => match ['`', '~'].into_iter().find(|&c| run(c) >= 3) {
                Some(ch) => fence = Some((ch, run(ch))),
                None => out.push(line),
            },
        }
    }
    out
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter_map(|l| {
            let h = l.trim_start_matches('#');
            (h.len() < l.len() && h.starts_with(' ')).then(|| slug(h))
        })
        .collect()
}

/// Link targets `](...)` in prose, outside inline code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let no_code: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = no_code.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

#[test]
fn relative_links_resolve() {
    let root = repo();
    let mut bad = Vec::new();
    for f in doc_files() {
        let text = std::fs::read_to_string(root.join(&f)).unwrap();
        for l in links(&text) {
            if l.contains("://") || l.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = l.split_once('#').unwrap_or((&l, ""));
            let target = if path.is_empty() {
                root.join(&f)
            } else {
                root.join(f.parent().unwrap()).join(path)
            };
            if !target.exists() {
                bad.push(format!("{}: {l}: no such file", f.display()));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|x| x == "md") {
                let t = std::fs::read_to_string(&target).unwrap();
                if !anchors(&t).contains(anchor) {
                    bad.push(format!("{}: {l}: no such heading", f.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn docs_have_titles_and_are_linked_from_the_readme() {
    let root = repo();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let linked: BTreeSet<String> = links(&readme).into_iter().collect();
    let mut bad = Vec::new();
    for f in doc_files().into_iter().filter(|f| f.starts_with("docs")) {
        let text = std::fs::read_to_string(root.join(&f)).unwrap();
        let mut lines = text.lines();
        if !lines.next().is_some_and(|l| l.starts_with("# ")) {
            bad.push(format!(
                "{}: does not start with a `# Title` line",
                f.display()
            ));
        }
        if !lines
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| !l.starts_with('#') && !l.starts_with("```") && !l.starts_with('|'))
        {
            bad.push(format!(
                "{}: no sentence after the title saying what it covers",
                f.display()
            ));
        }
        if !linked.contains(&f.display().to_string()) {
            bad.push(format!("{}: not linked from README.md", f.display()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn rewrite_rules() {
    let bins = Path::new("/b");
    let r = |c: &str| rewrite(c, bins);
    assert_eq!(
        r("ci/setup && cargo build --release --bins && target/release/bench-scenarios run").unwrap(),
        "true && true && /b/bench-scenarios run --duration 1s --repeat 1 --flamegraphs off --sweep none"
    );
    assert_eq!(
        r("target/release/eyetrack run --source synthetic --duration 10s --report r.json   # x")
            .unwrap(),
        "/b/eyetrack run --source synthetic --duration 2s --report r.json"
    );
    assert_eq!(
        r("target/release/bench-scenarios soak --duration 30m").unwrap(),
        "/b/bench-scenarios soak --duration 2s --targets report --case junk-device"
    );
    assert_eq!(
        r("cargo bench -p bench-scenarios --bench stages   # criterion").unwrap(),
        "cargo bench --profile dev -p bench-scenarios --bench stages -- --test"
    );
    assert_eq!(r("kill %1 && wait %1").unwrap(), "kill %1 && wait %1");
    assert_eq!(
        r("curl -s localhost:7000/status | grep '#x'").unwrap(),
        "curl -s localhost:7000/status | grep '#x'"
    );
    for bad in [
        "ci/test",
        "target/release/eyetrack run --source neon://192.168.1.20",
        "target/release/eyetrack run --source discover",
        "curl http://10.0.0.2:8080/api/status",
        "target/release/eyetrack run --control 0.0.0.0:7000",
        "sudo apt-get install ffmpeg",
        "cargo run -p pipeline --bin eyetrack",
        "target/release/other",
    ] {
        assert!(r(bad).is_err(), "{bad} should be refused");
    }
    assert!(r("target/release/eyetrack run --source 'neon://[::1]:8080'").is_ok());
    assert_eq!(
        commands(&[
            "# c".into(),
            "a \\".into(),
            "  b".into(),
            "".into(),
            "c".into()
        ]),
        ["a b", "c"]
    );
    assert!(parse_marker("<!-- docs-test: skip: why -->").is_ok());
    assert!(parse_marker("<!-- docs-test: skp: why -->").is_err());
    assert!(parse_marker("<!-- docs-test: skip: -->").is_err());
}
