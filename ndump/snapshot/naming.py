"""The snapshot_for_backup.N counter under the run directory (SPEC §3.4).

N starts at 0, grows by one for each snapshot ndump creates, and starts again
at 0 after a reboot because it lives under the run directory (/run/ndump, a
tmpfs).  The counter file is read and advanced under an exclusive flock, so
concurrent dumps get distinct numbers.  A number whose name is still in use
(a snapshot kept from before a reboot, or a record not yet cleaned up) is
skipped: ``claim`` asks the caller whether a name is free and lets it take the
name while the lock is held.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from ndump.errors import SnapshotError
from ndump.settings import Settings

PREFIX = "snapshot_for_backup"
COUNTER_FILE = "snapshot_counter"
_MAX_TRIES = 10_000

T = TypeVar("T")


def snapshot_name(n: int) -> str:
    return f"{PREFIX}.{n}"


def is_ndump_name(name: str) -> bool:
    head, dot, tail = name.rpartition(".")
    return head == PREFIX and dot == "." and tail.isdigit()


@contextmanager
def _locked_counter(settings: Settings) -> Iterator[int]:
    run_dir = settings.run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / COUNTER_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise SnapshotError(f"cannot use the snapshot counter in {run_dir}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _read(fd: int) -> int:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else 0


def _write(fd: int, value: int) -> None:
    data = f"{value}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def claim(settings: Settings, take: Callable[[str], T | None]) -> T:
    """Give the next free name to ``take(name)``, which returns something (the name is then
    used and the counter advances past it) or None (the name is in use: try the next)."""
    with _locked_counter(settings) as fd:
        n = _read(fd)
        for _ in range(_MAX_TRIES):
            result = take(snapshot_name(n))
            n += 1
            if result is not None:
                _write(fd, n)
                return result
    raise SnapshotError(f"no free snapshot name after {_MAX_TRIES} tries"
                        f" (see {settings.run_dir / COUNTER_FILE})")


def peek(settings: Settings) -> int:
    """The number the next snapshot will get, at most (for messages and tests)."""
    with _locked_counter(settings) as fd:
        return _read(fd)
