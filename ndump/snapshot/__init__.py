"""Snapshot-consistent dumps (SPEC §3.4): open_snapshot(path, mode, settings, reporter).

    with open_snapshot("/srv", "auto", settings, reporter) as snap:
        walk(snap.root)              # the dump reads here; the header records snap.origin

``mode`` is ``auto`` (btrfs: a read-only snapshot of PATH's subvolume; LVM: a
snapshot of the LV behind the mount, mounted read-only; anything else: the live
tree with a one-line warning), ``none`` (the live tree), or the NAME of an
existing snapshot (a btrfs snapshot directory, or an LVM snapshot ``VG/LV``),
which ndump reads and never creates nor deletes.

What ndump creates is named ``snapshot_for_backup.N`` (naming.py), recorded
before it is made (registry.py) and removed when the ``with`` block ends, on
success, on error and on ``Interrupted`` (SIGINT/SIGTERM/SIGHUP).  A snapshot
left by a killed dump is removed by the next run (``remove_stale``, which
``open_snapshot`` calls first), unless a restartable context still holds it
(``held_by_context``, the hook for SPEC §6).  Every failure is a one-line
``SnapshotError`` raised before the dump writes anything.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ndump.errors import SnapshotError
from ndump.report import Reporter
from ndump.settings import Settings
from ndump.snapshot import registry     # btrfs, lvm, detect: imported where used (start-up)
from ndump.snapshot.registry import held_by_context

__all__ = ["Snapshot", "open_snapshot", "reopen_kept", "remove_stale", "held_by_context",
           "SnapshotError"]


@dataclass
class Snapshot:
    """What a dump reads (``root``) in place of ``origin``, and how to let go of it."""
    origin: str                       # the PATH that was asked for (absolute)
    root: str                         # the directory to read: origin's counterpart
    name: str | None = None           # snapshot_for_backup.N, the NAME given, or None (live)
    kind: str | None = None           # "btrfs" | "lvm" | None (live)
    created: bool = False             # made by ndump (and so removed by it)
    settings: Settings | None = field(default=None, repr=False)
    reporter: Reporter | None = field(default=None, repr=False)
    _held: registry.Held | None = field(default=None, repr=False)
    _kept: bool = field(default=False, repr=False)

    @property
    def live(self) -> bool:
        return self.kind is None

    @property
    def directory(self) -> str | None:
        """The btrfs snapshot's own directory (``root`` lies in it); None otherwise."""
        if self.kind != "btrfs":
            return None
        if self._held is not None:
            return self._held.record.data.get("snapshot")
        return os.path.abspath(self.name) if self.name else None

    def keep(self) -> None:
        """Keep the snapshot after the dump (a restartable context holds it, SPEC §6)."""
        self._kept = True

    def release(self) -> None:
        """Remove what ndump made (unmount, delete); idempotent. A snapshot that cannot be
        removed is reported and left to the next run; a kept one stays with its record."""
        held, self._held = self._held, None
        if held is None:
            return
        if self._kept:
            held.keep()
            return
        try:
            with _deferred_signals():
                _remove(held.record, self.settings)
        except SnapshotError as e:
            if self.reporter is not None:
                self.reporter.warning(f"{e}; the next ndump run will remove it")
            held.close()
            return
        held.forget()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP while a snapshot is made or removed, so that neither ndump
    nor the tool it runs (lvcreate, btrfs) stops half way; they arrive right after."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _scratch(settings: Settings, name: str) -> str:
    return str(settings.run_dir / "mnt" / name)


def _remove(record: registry.Record, settings: Settings, *, leftover: bool = False) -> None:
    from ndump.snapshot import btrfs, lvm
    if record.kind == "btrfs":
        btrfs.remove(record.data, _scratch(settings, record.name))
    elif record.kind == "lvm":
        (lvm.remove_leftover if leftover else lvm.remove)(record.data)
    elif record.kind == "mount":
        lvm.unmount(record.data["mountpoint"])
    else:
        raise SnapshotError(f"unknown snapshot record kind {record.kind!r}")


def _describe(record: registry.Record) -> str:
    if record.kind == "btrfs":
        return f"btrfs snapshot {record.data.get('snapshot')}"
    if record.kind == "lvm":
        return f"LVM snapshot {record.data.get('vg')}/{record.data.get('lv')}"
    return f"mount of {record.data.get('lv')} on {record.data.get('mountpoint')}"


def remove_stale(settings: Settings, reporter: Reporter) -> list[str]:
    """Remove what killed dumps left (their records' locks are free); returns the names removed.
    Never raises: what cannot be removed now is reported and tried again next run."""
    removed = []
    for held in registry.stale(settings):
        if isinstance(held, str):
            reporter.warning(f"cannot read snapshot record {held}; remove it by hand",
                             once=f"bad-record:{held}")
            continue
        rec = held.record
        if registry.held_by_context(rec.name, settings):
            reporter.verbose(f"{_describe(rec)} is kept for a restartable dump context")
            continue
        try:
            _remove(rec, settings, leftover=True)
        except (SnapshotError, OSError) as e:
            reporter.warning(f"cannot remove {_describe(rec)} left by dump pid {rec.pid} of"
                             f" {rec.origin}: {e}; will try again next run")
            continue
        held.forget()
        removed.append(rec.name)
        reporter.warning(f"removed {_describe(rec)} left by an interrupted dump"
                         f" (pid {rec.pid}) of {rec.origin}")
    return removed


def open_snapshot(path: str, mode: str, settings: Settings, reporter: Reporter, *,
                  size: str | None = None) -> Snapshot:
    """The snapshot to dump ``path`` from (see the module docstring); use it with ``with``."""
    origin = os.path.abspath(path)
    if size is not None:
        from ndump.snapshot import lvm
        lvm.parse_size(size)                  # a bad --snapshot-size is an error whatever the fs
    snap = None
    try:
        with _deferred_signals():
            remove_stale(settings, reporter)
            if mode == "none":
                snap = Snapshot(origin, origin)
            elif mode == "auto":
                snap = _auto(origin, size, settings, reporter)
            else:
                snap = _named(origin, mode, settings, reporter)
        return snap
    except BaseException:                     # a signal held back above arrives here
        if snap is not None:
            snap.release()
        raise


def reopen_kept(origin: str, name: str, rel: str, settings: Settings,
                reporter: Reporter) -> Snapshot:
    """The btrfs snapshot ``name`` that a restartable dump context kept (SPEC §6), held
    by this process again: released (removed) at the end of the ``with`` block unless
    ``keep()`` is called.  Raises SnapshotError when it is gone."""
    from ndump.snapshot import btrfs
    held = registry.take(settings, name)
    try:
        with _deferred_signals():
            if held.record.kind != "btrfs":
                raise SnapshotError(f"snapshot {name} is a {held.record.kind} snapshot;"
                                    " only btrfs snapshots are kept for a restart")
            snapdir = btrfs.reopen(held.record.data, _scratch(settings, name))
            held.save()
        if not os.path.isdir(snapdir):
            raise SnapshotError(f"snapshot {name} is gone ({snapdir} does not exist)")
    except BaseException:
        held.close()
        raise
    root = snapdir if rel == "." else os.path.join(snapdir, rel)
    reporter.info(f"reading {origin} from btrfs snapshot {snapdir} (kept for the restart)")
    return _made(origin, root, "btrfs", held, settings, reporter)


def _auto(origin: str, size: str | None, settings: Settings, reporter: Reporter) -> Snapshot:
    from ndump.snapshot import btrfs, detect, lvm
    mount = detect.find_mount(origin)
    if mount.fstype == "btrfs":
        held, root = btrfs.create(origin, mount, settings, reporter)
        return _made(origin, root, "btrfs", held, settings, reporter)
    lv = lvm.behind(mount, settings, origin)
    if lv is not None:
        held, root = lvm.create(origin, mount, lv, size, settings, reporter)
        return _made(origin, root, "lvm", held, settings, reporter)
    where = f"{mount.fstype} ({mount.source})" if mount.source not in ("", "none") else mount.fstype
    # expected on most filesystems, every night: verbose output, so cron mails stay empty
    reporter.verbose(f"{origin} is on {where}, which cannot be snapshotted (not btrfs, not LVM):"
                     " dumping the live tree")
    if size is not None:
        reporter.warning("--snapshot-size ignored: no LVM snapshot is taken")
    return Snapshot(origin, origin)


def _made(origin, root, kind, held, settings, reporter) -> Snapshot:
    return Snapshot(origin, root, name=held.record.name, kind=kind, created=True,
                    settings=settings, reporter=reporter, _held=held)


def _named(origin: str, name: str, settings: Settings, reporter: Reporter) -> Snapshot:
    from ndump.snapshot import btrfs, lvm
    if os.path.isdir(name):
        root = btrfs.existing(origin, name, reporter)
        return Snapshot(origin, root, name=name, kind="btrfs")
    if lvm.looks_like_lv(name):
        held, root = lvm.existing(origin, name, settings, reporter)
        return Snapshot(origin, root, name=name, kind="lvm", settings=settings,
                        reporter=reporter, _held=held)
    raise SnapshotError(f"snapshot {name} not found: not a directory (btrfs snapshot) nor an"
                        " LVM snapshot VG/LV")
