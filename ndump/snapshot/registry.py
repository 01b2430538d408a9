"""Records of the snapshots (and snapshot mounts) ndump made, for cleanup after a crash.

A dump killed with SIGKILL, or a machine that lost power, leaves its snapshot
behind; the next ndump run must find it and remove it (SPEC §3.4).  Before
ndump creates anything it writes a record under ``STATE_DIR/snapshots/``:

    NAME.json   what was (or is about to be) made and how to undo it: kind, owning
                pid, the dumped path, kind-specific paths, ``kept``
    NAME.lock   held with flock(LOCK_EX) by the owning process for the snapshot's life

The records live under the state directory, not the run directory, because a
snapshot survives a reboot and so must the note of it.  Whether the owner is
alive is decided by the lock, not by the pid (which a reboot or a long uptime
reuses): the kernel drops the lock when the process dies, however it dies.

A record whose lock can be taken is stale: its owner is gone.  It is cleaned up
unless a restartable dump context still holds the snapshot (``held_by_context``,
the hook that restartable contexts, SPEC §6, fill in).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ndump.errors import SnapshotError
from ndump.settings import Settings
from ndump.snapshot import naming


def _json():
    import json        # imported where a record is read or written: most runs have none
    return json

SUBDIR = "snapshots"


def held_by_context(name: str, settings: Settings | None = None) -> bool:
    """Whether a restartable dump context (SPEC §6) still holds snapshot ``name``: one
    under ``settings.state_dir / "contexts"`` that reached Pass IV and was not deleted.
    Such a snapshot is kept by ``remove_stale`` until the context is deleted (``ndump
    contexts delete ID`` then runs ``remove_stale``) or its restarted dump completes."""
    if settings is None:
        return False
    from ndump.contexts import holds_snapshot
    return holds_snapshot(name, settings)


@dataclass
class Record:
    name: str
    kind: str                      # "btrfs" | "lvm" | "mount" (an LVM snapshot ndump mounted)
    origin: str                    # the dumped PATH
    pid: int = field(default_factory=os.getpid)
    created: float = field(default_factory=time.time)
    kept: bool = False             # kept for a restartable context
    data: dict = field(default_factory=dict)


class Held:
    """A record this process holds (its lock is ours)."""

    def __init__(self, directory: Path, record: Record, fd: int):
        self.directory = directory
        self.record = record
        self._fd: int | None = fd

    @property
    def json_path(self) -> Path:
        return self.directory / f"{self.record.name}.json"

    def save(self) -> None:
        tmp = self.directory / f".{self.record.name}.json.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            _json().dump(asdict(self.record), f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.json_path)
        _fsync_dir(self.directory)

    def forget(self) -> None:
        """The snapshot is gone: delete the record, then let go of the lock."""
        for suffix in (".json", ".lock"):
            try:
                os.unlink(self.directory / f"{self.record.name}{suffix}")
            except FileNotFoundError:
                pass
        self.close()

    def keep(self) -> None:
        """Leave the snapshot and its record for a restartable context; drop the lock."""
        self.record.kept = True
        self.save()
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _directory(settings: Settings) -> Path:
    return settings.state_dir / SUBDIR


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(directory: Path, name: str) -> int | None:
    """flock NAME.lock without waiting; None when another process holds it."""
    from ndump.contexts.store import try_lock
    return try_lock(directory / f"{name}.lock")


def _prepare(settings: Settings) -> Path:
    directory = _directory(settings)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SnapshotError(f"cannot keep snapshot records in {directory}: {e.strerror}"
                            " (they let a later run remove a snapshot left by a killed dump)") from None
    return directory


def claim(settings: Settings, kind: str, origin: str,
          plan: Callable[[str], dict | None]) -> Held:
    """Take the next free snapshot_for_backup.N and record it before anything is created.

    ``plan(name)`` returns the kind-specific data for that name, or None when the name is
    in use on the filesystem (the next number is tried)."""
    directory = _prepare(settings)

    def take(name: str) -> Held | None:
        if (directory / f"{name}.json").exists() or held_by_context(name, settings):
            return None
        data = plan(name)
        if data is None:
            return None
        fd = _lock(directory, name)
        if fd is None:
            return None
        held = Held(directory, Record(name=name, kind=kind, origin=origin, data=data), fd)
        held.save()
        return held

    return naming.claim(settings, take)


def hold(settings: Settings, name: str, kind: str, origin: str, data: dict) -> Held:
    """Record something that is not counted (the mount of a snapshot ndump did not create)."""
    directory = _prepare(settings)
    fd = _lock(directory, name)
    if fd is None:
        raise SnapshotError(f"{name} is in use by another ndump process")
    held = Held(directory, Record(name=name, kind=kind, origin=origin, data=data), fd)
    held.save()
    return held


def take(settings: Settings, name: str) -> Held:
    """Hold again the record of a snapshot kept for a restartable context (its owner is
    gone); raises SnapshotError when there is no such record or another process holds it."""
    directory = _directory(settings)
    path = directory / f"{name}.json"
    if not path.exists():
        raise SnapshotError(f"snapshot {name} is gone (no record of it in {directory})")
    fd = _lock(directory, name)
    if fd is None:
        raise SnapshotError(f"snapshot {name} is in use by another ndump process")
    try:
        record = Record(**_json().loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as e:
        os.close(fd)
        raise SnapshotError(f"cannot read the record of snapshot {name} ({path}: {e})") from None
    return Held(directory, record, fd)


def stale(settings: Settings) -> Iterator[Held | str]:
    """Records whose owner is gone, each locked by us while the caller handles it.
    A record that cannot be read is yielded as its file name (str)."""
    directory = _directory(settings)
    try:
        names = sorted(p.name[:-5] for p in directory.glob("*.json") if not p.name.startswith("."))
    except OSError:
        return
    for name in names:
        try:
            fd = _lock(directory, name)
        except OSError:
            continue
        if fd is None:
            continue                          # its owner is alive
        path = directory / f"{name}.json"
        try:
            record = Record(**_json().loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:             # cleaned up by another run meanwhile
            Held(directory, Record(name=name, kind="", origin=""), fd).forget()
            continue
        except (OSError, ValueError, TypeError):
            os.close(fd)
            yield str(path)
            continue
        held = Held(directory, record, fd)
        try:
            yield held
        finally:
            held.close()


def live(settings: Settings) -> list[Record]:
    """Every record, for listings and tests (without touching locks)."""
    out = []
    for path in sorted(_directory(settings).glob("*.json")):
        try:
            out.append(Record(**_json().loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return out
