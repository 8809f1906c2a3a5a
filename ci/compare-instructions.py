#!/usr/bin/env python3
"""Instruction-count gate: compares the Ir of every gungraun bench against the committed baseline.

gungraun's own baselines live as callgrind output under its home directory (machine paths, one
file tree per bench), which is not something to commit and review. So the gate keeps one small
JSON per architecture (bench -> Ir) in bench-scenarios/benches/baseline/ and compares here.

usage: compare-instructions.py check|update BASELINE.json GUNGRAUN_HOME [THRESHOLD_PERCENT]
exit: 0 ok, 1 regression or bench set changed, 2 usage / missing results
"""
import json
import pathlib
import subprocess
import sys


def collect(home: pathlib.Path) -> dict:
    """bench key -> total Ir, from the summary.json files of one gungraun run."""
    out = {}
    for f in sorted(home.rglob("summary.json")):
        d = json.loads(f.read_text())
        key = f"{d['group']}::{d['function_name']}.{d['id']}"
        for prof in d.get("profiles", []):
            if prof.get("tool") == "Callgrind":
                out[key] = int(prof["data"]["total"]["metrics"]["Ir"]["values"]["new"])
    return out


def rustc_version() -> str:
    try:
        return subprocess.run(["rustc", "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in ("check", "update"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, baseline_path, home = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    threshold = float(sys.argv[4]) if len(sys.argv) == 5 else 5.0
    current = collect(home)
    if not current:
        print(f"compare-instructions: no gungraun summaries under {home}", file=sys.stderr)
        return 2

    if mode == "update":
        baseline_path.parent.mkdir(parents=True, exist_ok=True)
        baseline_path.write_text(json.dumps({
            "note": "Ir per gungraun bench; refresh only on purpose with ci/bench-instructions --update",
            "rustc": rustc_version(),
            "benches": current,
        }, indent=2, sort_keys=True) + "\n")
        print(f"compare-instructions: wrote {len(current)} benches to {baseline_path}")
        return 0

    if not baseline_path.exists():
        # A new architecture (the first run on a Raspberry Pi): the counts are reported, not
        # gated. Counts of one architecture say nothing about another's, so there is nothing
        # to compare against until this machine's own baseline is committed.
        print(f"{'bench':<58} {'Ir':>12}")
        for key in sorted(current):
            print(f"{key:<58} {current[key]:>12}")
        print(f"compare-instructions: no baseline {baseline_path} for this architecture, so"
              f" the {len(current)} counts above are reported, not gated; create one with"
              " ci/bench-instructions --update on this machine and commit it")
        return 0
    base = json.loads(baseline_path.read_text())
    expected = base["benches"]
    failed = False
    print(f"{'bench':<58} {'baseline Ir':>12} {'Ir':>12} {'change':>8}")
    for key in sorted(set(expected) | set(current)):
        if key not in current:
            print(f"{key:<58} {expected[key]:>12} {'missing':>12}")
            failed = True
            continue
        if key not in expected:
            print(f"{key:<58} {'new':>12} {current[key]:>12}")
            failed = True
            continue
        old, new = expected[key], current[key]
        pct = (new - old) * 100.0 / old if old else 0.0
        flag = ""
        if pct > threshold:
            flag = "  REGRESSION"
            failed = True
        elif pct < -threshold:
            flag = "  improved: refresh the baseline"
        print(f"{key:<58} {old:>12} {new:>12} {pct:>+7.2f}%{flag}")
    if failed:
        rustc = rustc_version()
        print(f"compare-instructions: FAILED (threshold +{threshold}% Ir)."
              " A bench added or removed, or a deliberate cost change, needs"
              " `ci/bench-instructions --update` and a reviewed commit of the baseline.")
        if base.get("rustc") != rustc:
            print(f"note: baseline made with {base.get('rustc')}, this is {rustc}; a compiler"
                  " change alone can move instruction counts")
        return 1
    print(f"compare-instructions: ok, {len(current)} benches within +{threshold}% Ir")
    return 0


if __name__ == "__main__":
    sys.exit(main())
