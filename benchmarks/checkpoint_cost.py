#!/usr/bin/env python3
"""What the checkpoints of restartable dumps cost a level-0 dump (issue 14: < 2 %).

Builds a corpus of files (random sizes, random data) in a scratch directory,
then dumps it to an image file in pairs of runs, alternating the order within
each pair: with the default checkpoint interval (NDUMP_CHECKPOINT_INTERVAL=5,
or --interval) and with checkpoints off (an interval longer than the dump).
Each run's time is the dump's wall time plus an fsync of the image after it:
a checkpoint fsyncs the image, so without the final fsync the run without
checkpoints would leave in the page cache what the other one had to write.
The target is the median ratio of the two below 1.02.  Also printed: the
checkpoints' own time as the dump measured it (``-v``: "N checkpoint(s) in S
seconds"), most of it the fsync of the data written since the last one.
Compare ratios, not absolute times: the machine may be shared.

    python3 benchmarks/checkpoint_cost.py [--files 3000] [--mib 400] [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_CKPT = re.compile(r"(\d+) checkpoint\(s\) in ([\d.]+) seconds")


def build(root: Path, files: int, mib: int, seed: int = 14) -> int:
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.2) for _ in range(files)]
    scale = mib * (1 << 20) / sum(weights)
    block = os.urandom(1 << 20)
    total = 0
    for i, w in enumerate(weights):
        d = root / f"d{i % 50:02d}"
        d.mkdir(parents=True, exist_ok=True)
        size = max(1, int(w * scale))
        with open(d / f"f{i:05d}", "wb") as f:
            left = size
            while left:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
        total += size
    return total


def dump(src: Path, image: Path, state: Path, interval: str) -> tuple[float, int, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO), NDUMP_STATE_DIR=str(state),
               NDUMP_RUN_DIR=str(state / "run"), NDUMP_CHECKPOINT_INTERVAL=interval)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ndump", "dump", "-0", "-v", "--snapshot",
                           "none", "--no-catalog", "-f", str(image), str(src)], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"ndump dump failed: {proc.stderr}")
    fd = os.open(image, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.monotonic() - started
    m = _CKPT.search(proc.stderr)
    return elapsed, int(m.group(1)) if m else 0, float(m.group(2)) if m else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--mib", type=int, default=400)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--interval", default="5")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ndump-ckpt-", dir=args.dir))
    try:
        src = scratch / "src"
        total = build(src, args.files, args.mib)
        print(f"corpus: {args.files} files, {total / (1 << 20):.0f} MiB; load"
              f" {os.getloadavg()[0]:.2f}")
        ratios, ck_share = [], []
        for run in range(args.runs):
            order = [args.interval, "1e9"] if run % 2 == 0 else ["1e9", args.interval]
            got = {}
            for interval in order:
                image = scratch / "image"
                got[interval] = dump(src, image, scratch / "state", interval)
                image.unlink()
            on, off = got[args.interval], got["1e9"]
            ratios.append(on[0] / off[0])
            ck_share.append(on[2] / on[0])
            print(f"run {run + 1}: checkpoints every {args.interval} s {on[0]:.2f} s"
                  f" ({on[1]} checkpoints, {on[2]:.3f} s in them), none {off[0]:.2f} s,"
                  f" ratio {ratios[-1]:.3f}")
        ratio = statistics.median(ratios)
        share = statistics.median(ck_share)
        print(f"checkpoints' own time {100 * share:.2f} % of the dump (mostly fsync);"
              f" load {os.getloadavg()[0]:.2f}")
        ok = ratio < 1.02
        print(f"{'PASS' if ok else 'FAIL'}: median ratio {ratio:.3f} (dump + fsync of the image,"
              f" with checkpoints / without): checkpointing costs {100 * (ratio - 1):+.1f} %"
              " of a level-0 dump (target < 2 %)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
