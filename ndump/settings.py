"""Process-wide settings taken once from the environment (httpie's Environment).

Nothing else under ``ndump/`` reads ``os.environ``; ``cli`` calls
``Settings.from_environ()`` once and passes the result down.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


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
    max_sessions: int | None = None
    extract: str | None = None
    force: bool = False
    debug: bool = False
    hostname: str = field(default_factory=socket.gethostname)
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    clock: Callable[[], float] = time.time

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        state = Path(env.get("NDUMP_STATE_DIR", "/var/lib/ndump"))
        max_sessions = env.get("NDUMP_MAX_SESSIONS")
        return cls(
            state_dir=state,
            run_dir=Path(env.get("NDUMP_RUN_DIR", "/run/ndump")),
            dumpdates=Path(env.get("NDUMP_DUMPDATES", str(state / "dumpdates"))),
            tape=env.get("TAPE") or "/dev/nst0",
            rsh=env.get("RSH") or "ssh",
            rmt=env.get("RMT") or "/etc/rmt",
            stderr_is_tty=sys.stderr.isatty(),
            has_tty=_has_tty(),
            progress_interval=float(env.get("NDUMP_PROGRESS_INTERVAL", "300")),
            max_sessions=int(max_sessions) if max_sessions and max_sessions.isdigit() else None,
            extract=env.get("NDUMP_EXTRACT"),
            force=env.get("NDUMP_FORCE", "").upper() in ("Y", "YES", "1"),
            debug=env.get("NDUMP_DEBUG", "") not in ("", "0"),
        )
