#!/usr/bin/env python3
"""Compares two preview snapshots (binary PPM, as `eyetrack run --snapshot` writes them).

ci/aarch64 uses it to check that the aarch64 build (under qemu) shows the same preview as the
x86_64 build for the same fixture. Prints the size, the largest absolute difference of any
channel of any pixel, and how many channel values differ at all.

usage: compare-snapshots.py A.ppm B.ppm MAX_ABS_DIFF
exit: 0 within MAX_ABS_DIFF, 1 larger or different sizes, 2 usage / unreadable file
"""
import sys


def read_ppm(path: str) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of a P6 file with maxval 255 and no comments."""
    with open(path, "rb") as f:
        data = f.read()
    fields = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise ValueError(f"{path}: cut-off PPM header")
        fields.append(data[start:pos])
    pos += 1  # the single whitespace byte before the raster
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"{path}: not a binary 8-bit PPM (P6, maxval 255)")
    width, height = int(fields[1]), int(fields[2])
    raster = data[pos:]
    if len(raster) != width * height * 3:
        raise ValueError(f"{path}: {len(raster)} raster bytes, expected {width * height * 3}")
    return width, height, raster


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        a = read_ppm(sys.argv[1])
        b = read_ppm(sys.argv[2])
        limit = int(sys.argv[3])
    except (OSError, ValueError) as e:
        print(f"compare-snapshots: {e}", file=sys.stderr)
        return 2
    if a[:2] != b[:2]:
        print(f"compare-snapshots: sizes differ: {a[0]}x{a[1]} vs {b[0]}x{b[1]}")
        return 1
    worst = 0
    differing = 0
    for x, y in zip(a[2], b[2]):
        d = abs(x - y)
        if d:
            differing += 1
            worst = max(worst, d)
    total = len(a[2])
    verdict = "ok" if worst <= limit else "FAILED"
    print(f"compare-snapshots: {verdict}: {a[0]}x{a[1]}, max abs difference per channel"
          f" {worst} (tolerance {limit}), {differing} of {total} channel values differ")
    return 0 if worst <= limit else 1


if __name__ == "__main__":
    sys.exit(main())
