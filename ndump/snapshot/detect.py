"""Which filesystem, btrfs subvolume or LVM logical volume holds a path.

The mount table comes from ``findmnt`` (util-linux), or from
``/proc/self/mountinfo`` where findmnt is missing.  For a mount, ``fsroot`` is
the directory of the filesystem that is mounted there (``/`` for a whole
filesystem; ``/vol`` for a btrfs subvolume mounted with ``subvol=vol``, or a
bind mount of ``vol``), so the path of any file *inside its filesystem* is
``fsroot + (path - target)``; the snapshot code uses that to find PATH's
counterpart in a snapshot mounted elsewhere.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ndump.errors import SnapshotError

BTRFS_SUBVOL_ROOT_INO = 256        # BTRFS_FIRST_FREE_OBJECTID: the root of every subvolume
_FINDMNT_COLUMNS = "TARGET,SOURCE,FSTYPE,FSROOT,MAJ:MIN"
_PAIR = re.compile(r'([A-Z:_]+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Mount:
    target: str        # the mount point
    source: str        # device (without btrfs' "[/subvol]" suffix), or "tmpfs", "none", ...
    fstype: str
    fsroot: str        # the directory of the filesystem mounted at target
    majmin: str        # st_dev of the superblock, "MAJ:MIN" (the same for every mount of a btrfs)

    def fs_path(self, path: str) -> str:
        """``path`` (at or under target) as a path inside its filesystem."""
        rel = os.path.relpath(path, self.target)
        inside = self.fsroot if rel == "." else os.path.join(self.fsroot, rel)
        return os.path.normpath(inside)


def find_mount(path: str) -> Mount:
    """The mount that holds ``path`` (which must exist)."""
    from ndump.snapshot import tools       # (subprocess: only where a tool runs)
    real = os.path.realpath(path)
    res = tools.run("findmnt", "-n", "-P", "-v", "-o", _FINDMNT_COLUMNS, "--target", real)
    if res.returncode == 127:
        return _mountinfo_lookup(real)
    mounts = _parse_findmnt(res.stdout)
    if not res.ok or not mounts:
        raise SnapshotError(f"cannot find the filesystem of {path}: {res.reason()}")
    return mounts[-1]


def mounts_of(*, fstype: str | None = None, source: str | None = None) -> list[Mount]:
    """Every mount of a filesystem type, or of a device (empty when none)."""
    argv = ["findmnt", "-n", "-P", "-v", "-o", _FINDMNT_COLUMNS]
    argv += ["-t", fstype] if fstype else []
    argv += ["--source", source] if source else []
    from ndump.snapshot import tools
    res = tools.run(*argv)
    if res.returncode == 127:
        found = _read_mountinfo()
        if source:
            real = os.path.realpath(source)
            found = [m for m in found if os.path.realpath(m.source) == real]
        return [m for m in found if fstype is None or m.fstype == fstype]
    return _parse_findmnt(res.stdout) if res.ok else []


def is_mounted(directory: str) -> bool:
    real = os.path.realpath(directory)
    return any(m.target == real for m in _read_mountinfo())


def subvolume_root(path: str, stop: str) -> str:
    """The root of the btrfs subvolume that holds ``path``: its highest ancestor on the same
    st_dev (every subvolume has its own), not above ``stop``."""
    cur = os.path.realpath(path)
    stop = os.path.realpath(stop)
    dev = os.lstat(cur).st_dev
    while cur != stop and cur != "/":
        parent = os.path.dirname(cur)
        if os.lstat(parent).st_dev != dev:
            break
        cur = parent
    return cur


def is_subvolume_root(path: str) -> bool:
    return os.lstat(path).st_ino == BTRFS_SUBVOL_ROOT_INO


def dm_kind(source: str) -> str | None:
    """For a device-mapper device: "lvm" when the kernel says it is an LVM LV, "other" when it
    is another kind (crypt, multipath), "unknown" when sysfs cannot tell; None when the
    source is not a device-mapper device at all."""
    real = os.path.realpath(source) if source.startswith("/") else source
    name = os.path.basename(real)
    if not (source.startswith("/dev/mapper/") or re.fullmatch(r"dm-\d+", name)):
        return None
    try:
        with open(f"/sys/block/{name}/dm/uuid", encoding="ascii", errors="replace") as f:
            uuid = f.read().strip()
    except OSError:
        return "unknown"
    return "lvm" if uuid.startswith("LVM-") else "other"


# --- parsing ------------------------------------------------------------------------------

def _unescape_findmnt(value: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def _parse_findmnt(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        pairs = {k: _unescape_findmnt(v) for k, v in _PAIR.findall(line)}
        if "TARGET" in pairs:
            mounts.append(Mount(pairs["TARGET"], pairs.get("SOURCE", ""), pairs.get("FSTYPE", ""),
                                pairs.get("FSROOT") or "/", pairs.get("MAJ:MIN", "")))
    return mounts


def _unescape_mountinfo(value: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), value)


def parse_mountinfo(text: str) -> list[Mount]:
    """Lines of /proc/self/mountinfo (proc(5)) → mounts, in mount order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        mounts.append(Mount(target=_unescape_mountinfo(fields[4]),
                            source=_unescape_mountinfo(fields[sep + 2]), fstype=fields[sep + 1],
                            fsroot=_unescape_mountinfo(fields[3]), majmin=fields[2]))
    return mounts


def _read_mountinfo() -> list[Mount]:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return parse_mountinfo(f.read())
    except OSError as e:
        raise SnapshotError(f"cannot read the mount table: {e.strerror}") from None


def _mountinfo_lookup(real: str) -> Mount:
    best = mount_in(_read_mountinfo(), real)
    if best is None:
        raise SnapshotError(f"cannot find the filesystem of {real} in /proc/self/mountinfo")
    return best


def mount_in(mounts: list[Mount], real: str) -> Mount | None:
    """The mount of ``mounts`` (in mount order) that holds the resolved path ``real``."""
    best = None
    for m in mounts:                     # later mounts hide earlier ones at the same place
        if real == m.target or real.startswith(m.target.rstrip("/") + "/"):
            if best is None or len(m.target) >= len(best.target):
                best = m
    return best
