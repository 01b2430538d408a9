"""Helpers of the guest tests (a module of its own, so that the tests import it by a
name no other test directory uses)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def sh(*argv, check: bool = True, input: str | None = None, cwd=None, timeout: float = 300,
       env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a tool, text output; with ``check`` a failure raises AssertionError with its output."""
    argv = [str(a) for a in argv]
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, cwd=cwd,
                          errors="surrogateescape", timeout=timeout, env=env,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}\n--- stdout:\n"
                             f"{proc.stdout[-3000:]}\n--- stderr:\n{proc.stderr[-3000:]}")
    return proc


def ndump_argv(*args) -> list[str]:
    """The ndump installed from the wheel into this venv (its console script)."""
    return [str(Path(sys.prefix) / "bin" / "ndump"), *map(str, args)]


def start_ndump(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(ndump_argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def wait_for(probe, what: str, timeout: float = 120, proc: subprocess.Popen | None = None):
    """Poll ``probe`` until it returns something true; fail (with ``proc``'s output if it
    ended) after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ndump exited {proc.returncode} before {what}:\n{out}\n{err}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


def snapshot_mounts() -> list[tuple[str, str, str]]:
    """(device, mount point, options) of the mounts of ndump's LVM snapshots."""
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, _fs, opts, *_ = line.split()
            if "ndump_snapshot_for_backup" in dev:
                out.append((dev, mnt, opts))
    return out
