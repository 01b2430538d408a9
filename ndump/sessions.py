"""Session slots: how many dump and restore sessions may run at once (SPEC §3.6).

The limit follows the machine's memory (``session_limit``): less than 16 GiB →
4; 16 GiB up to 24 GiB → 16; 24 GiB or more → 32.  ``--max-sessions`` or
``NDUMP_MAX_SESSIONS`` override it.

Slots are files under ``RUN_DIR/sessions/`` (``slot.0``, ``slot.1``, ...).  A
session holds one with ``flock(LOCK_EX)`` for its whole life and writes who it
is into it (pid, command, path) for the messages.  The kernel drops a flock
when its process dies, however it dies, so a crashed or SIGKILLed session never
holds a slot.  Taking a slot happens under ``RUN_DIR/sessions/lock``: the
sessions already running are counted (every slot whose lock is taken) and the
new one is refused when they reach the limit, whatever limit each of them was
started with.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from ndump.errors import SessionLimitError, StartupError
from ndump.settings import Settings

GiB = 1 << 30
SUBDIR = "sessions"
# (memory below this, limit): SPEC §3.6
_TABLE = ((16 * GiB, 4), (24 * GiB, 16))
_TOP_LIMIT = 32


def session_limit(mem_bytes: int) -> int:
    """The number of sessions a machine with ``mem_bytes`` of memory may run at once."""
    for below, limit in _TABLE:
        if mem_bytes < below:
            return limit
    return _TOP_LIMIT


def memory_bytes() -> int:
    """Physical memory of this machine (sysconf; MemTotal from /proc/meminfo if that fails)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def effective_limit(settings: Settings, max_sessions: int | None = None) -> tuple[int, str]:
    """(limit, where it comes from) — for the refusal message."""
    if max_sessions is not None:
        return max_sessions, "--max-sessions"
    if settings.max_sessions is not None:
        return settings.max_sessions, "NDUMP_MAX_SESSIONS"
    mem = memory_bytes()
    return session_limit(mem), f"the limit for {mem / GiB:.1f} GiB of memory"


class Session:
    """One held slot; release() (or the end of a ``with`` block) frees it."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self._fd: int | None = fd

    @property
    def slot(self) -> int | None:
        tail = self.path.name.rpartition(".")[2]
        return int(tail) if tail.isdigit() else None

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _who(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def open_session(settings: Settings, command: str, what: str = "",
                 max_sessions: int | None = None, reporter=None) -> Session:
    """Take a session slot for ``command`` ("dump"/"restore") on ``what`` (a path), or raise
    SessionLimitError naming the limit and how to raise it.

    A user other than root who cannot write the run directory (/run/ndump belongs to
    root) runs without a slot, with a warning through ``reporter`` if one is given."""
    limit, source = effective_limit(settings, max_sessions)
    if limit < 1:
        raise StartupError(f"the session limit must be at least 1, not {limit} ({source})")
    directory = settings.run_dir / SUBDIR
    try:
        directory.mkdir(parents=True, exist_ok=True)
        guard = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if not settings.is_root and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            if reporter is not None:
                reporter.warning(f"session limits not applied: cannot use {directory}"
                                 f" ({e.strerror}; NDUMP_RUN_DIR names another run directory)",
                                 once="sessions")
            return Session(directory / "none", None)
        raise StartupError(f"cannot use the session slots in {directory}: {e.strerror}") from None
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        return _take(directory, limit, source, command, what)
    finally:
        os.close(guard)


def _take(directory: Path, limit: int, source: str, command: str, what: str) -> Session:
    # slots are slot.0 .. slot.(limit-1); higher ones exist only when the limit was lowered
    # while sessions ran: they count while locked and are removed once free
    existing = {int(p.name[5:]) for p in directory.glob("slot.*") if p.name[5:].isdigit()}
    busy: list[Path] = []
    free: tuple[Path, int] | None = None
    for n in sorted(existing | set(range(limit))):
        path = directory / f"slot.{n}"
        fd = _try_lock(path)
        if fd is None:
            busy.append(path)
        elif free is None and n < limit:
            free = (path, fd)
        else:
            if n >= limit:
                path.unlink(missing_ok=True)
            os.close(fd)
    if len(busy) >= limit:
        if free is not None:
            os.close(free[1])
        running = "; ".join(w for w in (_who(p) for p in busy[:3]) if w)
        raise SessionLimitError(
            f"too many sessions: {len(busy)} dump/restore session(s) already running, the limit is"
            f" {limit} ({source}); wait for one to finish, or raise the limit with --max-sessions N"
            f" or NDUMP_MAX_SESSIONS=N" + (f" (running: {running})" if running else ""))
    assert free is not None
    path, fd = free
    info = f"{command} pid {os.getpid()} {what} since {time.strftime('%Y-%m-%d %H:%M:%S')}".strip()
    os.ftruncate(fd, 0)
    os.pwrite(fd, (info + "\n").encode("utf-8", "surrogateescape"), 0)
    return Session(path, fd)
