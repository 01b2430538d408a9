"""A signal that arrives just before a read from or a write to a pipe, a socket or
rmt starts must still end it.

Python runs a signal's handler (ndump's raises Interrupted) in the main thread
between bytecodes; a read(2) the signal did not interrupt (it was delivered a
moment before the call began, or to another thread) blocks until data comes, and
a writer that holds the pipe open and sends nothing keeps it blocked forever.
The flaky tests/cli/test_first_hour.py SIGINT test hung that way under load.

Here the signal is raised in a helper thread while the main thread waits in the
read: the C-level handler has run, no system call of the main thread was
interrupted - the same state as in the race, made deterministic. The write side
(ndump dump -f - into a reader that stopped reading, rmt that stopped answering)
was open to the same race before media/waits.py."""
from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ndump.errors import MediaError
from ndump.media.file import FileOutput

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


WRITE_PIPE = """
    r, w = os.pipe()            # r stays open and unread: the pipe fills, the write would wait
    out = FileOutput("a pipe", fd=w)
    out.write(b"x" * 100)
    threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
    start = time.monotonic()
    try:
        out.write(b"y" * 4_000_000)
    except Interrupted as e:
        print(f"interrupted by {e.signo} after {time.monotonic() - start:.1f} s")
        sys.exit(3)
"""

WRITE_SOCKET = WRITE_PIPE.replace("r, w = os.pipe()", "r, w = (s.detach() for s in socket.socketpair())")

RMT_READ = """
    from ndump.media.rmt import RemoteDrive
    from ndump.settings import Settings
    # an rsh that connects and then never answers (a stalled network)
    settings = Settings.from_environ({"RSH": sys.argv[1], "RMT": "/usr/sbin/rmt"})
    threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
    start = time.monotonic()
    try:
        RemoteDrive("host:/dev/nst0", settings, write=True)
    except Interrupted as e:
        print(f"interrupted by {e.signo} after {time.monotonic() - start:.1f} s")
        sys.exit(3)
"""

PRELUDE = """
    import os, signal, socket, sys, threading, time
    from ndump.cli import _install_signals
    from ndump.errors import Interrupted
    from ndump.media.file import FileOutput
    _install_signals()
"""


def _interrupted(script: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-c", script, *args], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("interrupted by 2 after "), proc.stdout
    assert float(proc.stdout.split()[-2]) < 3.0


def test_a_signal_that_misses_the_read_still_ends_it():
    _interrupted(SCRIPT)


@pytest.mark.parametrize("body", [WRITE_PIPE, WRITE_SOCKET], ids=["pipe", "socket"])
def test_a_signal_that_misses_the_write_still_ends_it(body):
    _interrupted(textwrap.dedent(PRELUDE) + textwrap.dedent(body))


def test_a_signal_ends_a_wait_for_rmt_that_does_not_answer(tmp_path):
    rsh = tmp_path / "rsh"
    rsh.write_text("#!/bin/sh\nexec sleep 60\n")
    rsh.chmod(0o755)
    _interrupted(textwrap.dedent(PRELUDE) + textwrap.dedent(RMT_READ), str(rsh))


def _slow_reader(fd: int, sink: list) -> None:
    rng = random.Random(7)
    with os.fdopen(fd, "rb", buffering=0) as f:
        while chunk := f.read(rng.choice((1, 100, 4096, 70000))):
            sink.append(chunk)
            if rng.random() < 0.01:
                time.sleep(0.01)


@pytest.mark.parametrize("kind", ["pipe", "socket"])
def test_every_byte_arrives_in_order_through_a_slow_reader(kind):
    if kind == "pipe":
        r, w = os.pipe()
    else:
        r, w = (s.detach() for s in socket.socketpair())
    data = random.Random(3).randbytes(5_000_000)
    got: list = []
    reader = threading.Thread(target=_slow_reader, args=(r, got))
    reader.start()
    out = FileOutput("a pipe", fd=w)
    for i in range(0, len(data), 65536 + 1000):
        out.write(data[i:i + 65536 + 1000])
    out.close()
    reader.join(30)
    assert hashlib.sha256(b"".join(got)).digest() == hashlib.sha256(data).digest()


def test_a_reader_that_is_gone_is_a_broken_pipe_at_once():
    r, w = os.pipe()
    out = FileOutput("a pipe", fd=w)
    out.write(b"x" * 10_000)         # the pipe holds it, nobody reads
    os.close(r)
    start = time.monotonic()
    with pytest.raises(MediaError, match="broken pipe"):
        out.write(b"y" * 1_000_000)
    assert time.monotonic() - start < 2
    out.close()
