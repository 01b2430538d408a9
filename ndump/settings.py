"""Process-wide settings taken once from the environment (httpie's Environment).

Nothing else under ``ndump/`` reads ``os.environ``; ``cli`` calls
``Settings.from_environ()`` once and passes the result down.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ndump.errors import StartupError

_YES = ("Y", "YES", "1", "TRUE")
_NO = ("", "N", "NO", "0", "FALSE")


def _has_tty() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass(frozen=True)
class Settings:
    state_dir: Path = Path("/var/lib/ndump")
    run_dir: Path = Path("/run/ndump")
    dumpdates: Path = Path("/var/lib/ndump/dumpdates")
    tape: str = "/dev/nst0"
    rsh: str = "ssh"
    rmt: str = "/etc/rmt"
    stderr_is_tty: bool = False
    has_tty: bool = False
    progress_interval: float = 300.0
    checkpoint_interval: float = 5.0      # restartable dumps: seconds between checkpoints
    max_sessions: int | None = None
    extract: str | None = None
    force: bool = False
    debug: bool = False
    hostname: str = field(default_factory=lambda: os.uname().nodename)   # gethostname(2), without socket's import
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    clock: Callable[[], float] = time.time

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Raises StartupError naming the variable when a value makes no sense."""
        env = os.environ if environ is None else environ
        state = Path(env.get("NDUMP_STATE_DIR", "/var/lib/ndump"))
        return cls(
            state_dir=state,
            run_dir=Path(env.get("NDUMP_RUN_DIR", "/run/ndump")),
            dumpdates=Path(env.get("NDUMP_DUMPDATES", str(state / "dumpdates"))),
            tape=env.get("TAPE") or "/dev/nst0",
            rsh=env.get("RSH") or "ssh",
            rmt=env.get("RMT") or "/etc/rmt",
            stderr_is_tty=sys.stderr.isatty(),
            has_tty=_has_tty(),
            progress_interval=_seconds("NDUMP_PROGRESS_INTERVAL",
                                       env.get("NDUMP_PROGRESS_INTERVAL"), 300.0),
            checkpoint_interval=_seconds("NDUMP_CHECKPOINT_INTERVAL",
                                         env.get("NDUMP_CHECKPOINT_INTERVAL"), 5.0),
            max_sessions=_count("NDUMP_MAX_SESSIONS", env.get("NDUMP_MAX_SESSIONS")),
            extract=_choice("NDUMP_EXTRACT", env.get("NDUMP_EXTRACT"), ("N", "Y", "E")),
            force=_yes_no("NDUMP_FORCE", env.get("NDUMP_FORCE")),
            debug=env.get("NDUMP_DEBUG", "") not in ("", "0"),
        )


def _bad(name: str, value: str, want: str) -> StartupError:
    return StartupError(f"environment variable {name}={value!r}: {want}")


def _yes_no(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().upper()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise _bad(name, raw, "give Y or N")


def _choice(name: str, raw: str | None, choices: tuple[str, ...]) -> str | None:
    value = (raw or "").strip().upper()
    if not value:
        return None
    if value not in choices:
        raise _bad(name, raw, "give " + ", ".join(choices[:-1]) + " or " + choices[-1])
    return value


def _count(name: str, raw: str | None) -> int | None:
    value = (raw or "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise _bad(name, raw, "give a whole number, 1 or more")
    return int(value)


def _seconds(name: str, raw: str | None, default: float) -> float:
    value = (raw or "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise _bad(name, raw, "give a number of seconds, 0 or more")
    return seconds
