//! The crate's file-level import graph (issue 14): stages never reach back up into the
//! coordinator, `record/` and `source/` never import each other, and no import cycle runs
//! through `coordinator.rs`, `record/` or `source/`.
//!
//! The graph is read from the source text, the way a newcomer reads it: every `use crate::`,
//! `use super::` and `use self::` tree and every `crate::a::b` path in code (not in comments)
//! is an edge from the file to the file that defines the module it names. A path that names an
//! item (`crate::record::Recorder`) resolves to the deepest module file that exists. Run it
//! alone with `cargo test -p pipeline --test import_graph -- --nocapture` to see the cycles of
//! the whole crate (printed, not judged, outside the areas above).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src`-relative file paths (`record/mod.rs`) and the files each imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The crate's `src`, or another tree's (`IMPORT_GRAPH_SRC=/path/to/pipeline/src`), e.g. an
/// older revision's, to see what the check says about it.
fn src_root() -> PathBuf {
    std::env::var_os("IMPORT_GRAPH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `record/mod.rs` -> `["record"]`, `lib.rs` -> `[]`. Binaries
/// (`bin/`) are their own crates: they import the library by name, never by `crate::`.
fn module_of(rel: &str) -> Option<Vec<String>> {
    if rel.starts_with("bin/") {
        return None;
    }
    let no_ext = rel.strip_suffix(".rs")?;
    let mut parts: Vec<String> = no_ext.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    Some(parts)
}

/// The file that defines module `path`, or of its deepest existing ancestor (`path` may end in
/// item names). `None` for the crate root.
fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let base = path[..n].join("/");
        for cand in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            if files.contains(&cand) {
                return Some(cand);
            }
        }
    }
    None
}

/// The text without comments (line and block) and without string and char literals, so a path
/// mentioned in a doc comment or a message is no edge.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                // A raw string r"..." / r#"..."# is skipped by its closing quote as well; they
                // hold no `crate::` paths in this crate's code.
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                // A char literal ('x', '\n', '\''); lifetimes ('a) pass through.
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{D, E}}`, without the leading keyword) into full paths.
fn expand_tree(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut p = prefix.to_vec();
        p.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_tree(&p, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_tree(&p, &inner[start..], out);
    } else {
        let name = tree.split(" as ").next().unwrap_or("").trim();
        if name.is_empty() {
            return;
        }
        let mut p = prefix.to_vec();
        p.extend(name.split("::").map(|s| s.trim().to_owned()));
        if p.last().is_some_and(|l| l == "self" || l == "*") {
            p.pop();
        }
        out.push(p);
    }
}

/// Turns a path that starts with `crate`, `super` or `self` into one from the crate root, seen
/// from module `here`. Other paths (std, external crates) give `None`.
fn absolute(path: &[String], here: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &path[1..];
        }
        Some("self") => {
            base = here.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            base = here.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every module path a file names: its use trees and its inline `crate::`/`super::` paths.
fn imports(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // use statements (possibly `pub use`, possibly over several lines).
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before_ok = rest[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = &rest[i + 4..];
        if before_ok {
            let end = after.find(';').unwrap_or(after.len());
            let tree = after[..end].trim();
            if tree.starts_with("crate::")
                || tree.starts_with("super::")
                || tree.starts_with("self::")
            {
                expand_tree(&[], tree, &mut out);
            }
        }
        rest = after;
    }
    // Inline paths: crate::a::b, super::a (outside use statements they are the same edges).
    for key in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(j) = code[from..].find(key) {
            let start = from + j;
            from = start + key.len();
            if code[..start].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let tail = &code[start..];
            let len = tail
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(tail.len());
            let path: Vec<String> = tail[..len]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            out.push(path);
        }
    }
    out
}

fn graph() -> Graph {
    let root = src_root();
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    let rel = |p: &Path| {
        p.strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/")
    };
    let files: BTreeSet<String> = paths.iter().map(|p| rel(p)).collect();
    let mut g = Graph::new();
    for p in &paths {
        let r = rel(p);
        let Some(here) = module_of(&r) else { continue };
        let text = std::fs::read_to_string(p).expect("read source");
        // Test modules may reach anywhere: they are not part of the stage's dependencies.
        let code = code_only(text.split("#[cfg(test)]").next().unwrap_or(&text));
        let edges = g.entry(r.clone()).or_default();
        for path in imports(&code) {
            let Some(abs) = absolute(&path, &here) else {
                continue;
            };
            if let Some(f) = file_of(&abs, &files) {
                if f != r {
                    edges.insert(f);
                }
            }
        }
    }
    g
}

/// Strongly connected components with more than one file (Tarjan), each sorted.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(es) = t.g.get(v) {
            for w in es {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The areas whose files must be in no cycle and must not import the coordinator.
fn guarded(file: &str) -> bool {
    file == "coordinator.rs" || file.starts_with("record/") || file.starts_with("source/")
}

#[test]
fn stages_never_import_the_coordinator_and_no_cycle_runs_through_them() {
    let g = graph();
    assert!(
        g.len() > 50,
        "read only {} files: wrong src folder?",
        g.len()
    );
    // The reader itself: these edges exist today and must be found.
    assert!(
        g["coordinator.rs"].contains("record/mod.rs"),
        "{:?}",
        g["coordinator.rs"]
    );
    assert!(g["source/neon/assemble.rs"].contains("decode/mod.rs"));

    let upward: Vec<String> = g
        .iter()
        .filter(|(f, _)| f.starts_with("record/") || f.starts_with("source/"))
        .filter(|(_, es)| es.contains("coordinator.rs"))
        .map(|(f, _)| f.clone())
        .collect();
    assert!(
        upward.is_empty(),
        "stage files import the coordinator (move what they need below it): {upward:?}"
    );

    // The recorder writes what it receives and knows nothing of the device (its HTTP API, its
    // RTSP sessions); the sources know nothing of recording. Shared types live below both.
    let across: Vec<(String, String)> = g
        .iter()
        .flat_map(|(f, es)| es.iter().map(move |e| (f.clone(), e.clone())))
        .filter(|(f, e)| {
            (f.starts_with("record/") && e.starts_with("source/"))
                || (f.starts_with("source/") && e.starts_with("record/"))
        })
        .collect();
    assert!(
        across.is_empty(),
        "record/ and source/ import each other: {across:?}"
    );

    let all = cycles(&g);
    for c in &all {
        println!("import cycle: {}", c.join(" <-> "));
    }
    let bad: Vec<&Vec<String>> = all
        .iter()
        .filter(|c| c.iter().any(|f| guarded(f)))
        .collect();
    assert!(
        bad.is_empty(),
        "import cycles through coordinator.rs, record/ or source/: {bad:#?}"
    );
}

#[test]
fn the_reader_finds_cycles_and_use_trees() {
    // A cycle the test must see, so it cannot pass by finding nothing.
    let mut g = Graph::new();
    g.entry("a.rs".into()).or_default().insert("b.rs".into());
    g.entry("b.rs".into()).or_default().insert("c.rs".into());
    g.entry("c.rs".into()).or_default().insert("a.rs".into());
    g.entry("d.rs".into()).or_default().insert("a.rs".into());
    assert_eq!(cycles(&g), vec![vec!["a.rs", "b.rs", "c.rs"]]);

    let code = code_only(
        "use crate::record::{encoder::{EncoderKind, libav}, Recorder};\n\
         // use crate::coordinator::Control;\n\
         let x = \"crate::preview\"; use super::extra::EyesStream; f(crate::time::now());",
    );
    let mut got: Vec<String> = imports(&code).iter().map(|p| p.join("::")).collect();
    got.sort();
    got.dedup();
    assert_eq!(
        got,
        [
            "crate::record",
            "crate::record::Recorder",
            "crate::record::encoder::EncoderKind",
            "crate::record::encoder::libav",
            "crate::time::now",
            "super::extra::EyesStream",
        ]
    );
}
