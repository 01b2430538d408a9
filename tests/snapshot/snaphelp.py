"""Helpers for the snapshot tests (imported by tests/snapshot/conftest.py and the tests)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def sh(*argv, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {proc.returncode}:"
                             f" {proc.stdout}{proc.stderr}")
    return proc


def mounts_under(root: Path) -> list[str]:
    """Mount points at or under root, innermost (latest) first."""
    root_s = str(root.resolve())
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            target = line.split()[4].encode().decode("unicode_escape")
            if target == root_s or target.startswith(root_s + "/"):
                found.append(target)
    return found[::-1]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Btrfs:
    img: Path
    mnt: Path           # the top level (subvolid 5) is mounted here
    vol: Path           # a subvolume: mnt/vol
    base: Path          # a short directory for more mount points (mnt is base/m)

    def subvolumes(self) -> list[str]:
        out = sh("btrfs", "subvolume", "list", self.mnt).stdout
        return [line.split(" path ", 1)[1] for line in out.splitlines() if " path " in line]

    def snapshots(self) -> list[str]:
        """ndump's snapshots (names under .ndump-snapshots), sorted."""
        return sorted(p.rsplit("/", 1)[1] for p in self.subvolumes()
                      if p.startswith(".ndump-snapshots/"))


def stderr_of(proc: subprocess.Popen) -> str:
    proc.err_file.flush()
    return Path(proc.err_file.name).read_text(errors="replace")
