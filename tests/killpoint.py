"""SIGKILL a running process at a point its output shows, without a race: the process
runs in short slices between SIGSTOP and SIGCONT, and the condition is looked at only
while it is stopped, so it cannot run on to its end between the look and the kill."""
from __future__ import annotations

import os
import signal
import subprocess
import time


def kill_when(proc: subprocess.Popen, condition, *, timeout: float = 120, what: str = "",
              slice_s: float = 0.005) -> None:
    """Run ``proc`` in slices until ``condition()`` holds while it is stopped, then kill it.
    Fails if the process ends first (it ran to its end before reaching the point)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            os.kill(proc.pid, signal.SIGSTOP)
            _wait_stopped(proc.pid)
            if condition():
                break
            assert proc.poll() is None, f"the process ended before {what or 'the kill point'}"
            assert time.monotonic() < deadline, f"timed out waiting for {what or 'the kill point'}"
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(slice_s)
    except ProcessLookupError:
        raise AssertionError(f"the process ended before {what or 'the kill point'}") from None
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the process ended with {proc.returncode}"


def _wait_stopped(pid: int) -> None:
    """Until /proc says the process is stopped (SIGSTOP is delivered asynchronously)."""
    for _ in range(2000):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            raise ProcessLookupError(pid) from None
        if state in ("T", "t", "Z", "X"):
            return
        time.sleep(0.0005)
