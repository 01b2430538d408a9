"""A signal that arrives just before a read from a pipe starts must still end the read.

Python runs a signal's handler (ndump's raises Interrupted) in the main thread
between bytecodes; a read(2) the signal did not interrupt (it was delivered a
moment before the call began, or to another thread) blocks until data comes, and
a writer that holds the pipe open and sends nothing keeps it blocked forever.
The flaky tests/cli/test_first_hour.py SIGINT test hung that way under load.

Here the signal is raised in a helper thread while the main thread waits in the
read: the C-level handler has run, no system call of the main thread was
interrupted - the same state as in the race, made deterministic."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    from ndump.cli import _install_signals
    from ndump.errors import Interrupted
    from ndump.media.file import FileInput
    _install_signals()
    r, w = os.pipe()            # w stays open: the read would wait for ever
    os.write(w, b"x" * 100)
    inp = FileInput("a pipe", fd=r)
    assert inp.read(4096) == b"x" * 100       # what is there comes at once
    threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
    start = time.monotonic()
    try:
        inp.read(4096)
    except Interrupted as e:
        print(f"interrupted by {e.signo} after {time.monotonic() - start:.1f} s")
        sys.exit(3)
    sys.exit(0)
""")


def test_a_signal_that_misses_the_read_still_ends_it():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("interrupted by 2 after "), proc.stdout
    assert float(proc.stdout.split()[-2]) < 3.0
