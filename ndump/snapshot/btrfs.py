"""Read-only btrfs snapshots of the subvolume that holds PATH (SPEC §3.4).

Where the snapshot goes: ``TOP/.ndump-snapshots/snapshot_for_backup.N``, where
TOP is the top level of PATH's btrfs filesystem (subvolid 5).  btrfs can only
place a snapshot on the same filesystem, and the top level is the one place
outside every subvolume one may dump (the common layouts mount ``subvol=@home``
on /home, whose parent directory belongs to another subvolume or even another
filesystem).  When some mount already shows the top level (``mount /dev/sdb1
/srv``, Debian's default) that mount is used; otherwise ndump mounts the top
level privately under ``RUN_DIR/mnt/NAME`` (``-o subvolid=5``) for the life of
the snapshot.  The ``.ndump-snapshots`` directory is made once (mode 0700) and
left in place.  A dump of the top level itself sees it, with the snapshots of
concurrent dumps inside it as empty directories.

PATH's counterpart in the snapshot: PATH is found inside its filesystem through
the mount's fsroot (detect.Mount.fs_path), then its subvolume is the highest
ancestor, seen from TOP, with the same st_dev; the snapshot root plus PATH
relative to that subvolume is what the dump reads.
"""
from __future__ import annotations

import fcntl
import os
import re
import uuid

from ndump.errors import SnapshotError
from ndump.report import Reporter
from ndump.settings import Settings
from ndump.snapshot import detect, registry, tools

SNAPDIR = ".ndump-snapshots"
_IOC_FS_INFO = 0x8400941F          # _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args), 1024 bytes


def fsid(path: str) -> str | None:
    """The filesystem UUID (BTRFS_IOC_FS_INFO), or None when it cannot be asked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buf = bytearray(1024)
        fcntl.ioctl(fd, _IOC_FS_INFO, buf)
        return str(uuid.UUID(bytes=bytes(buf[16:32])))
    except OSError:
        return None
    finally:
        os.close(fd)


def _top_mounts(majmin: str, want_fsid: str | None) -> list[detect.Mount]:
    return [m for m in detect.mounts_of(fstype="btrfs")
            if m.fsroot == "/" and os.path.isdir(m.target)
            and (m.majmin == majmin if want_fsid is None else fsid(m.target) == want_fsid)]


def create(path: str, mount: detect.Mount, settings: Settings, reporter: Reporter):
    """Snapshot the subvolume of ``path``; returns (held record, root to read)."""
    tools.require(["btrfs"], f"a btrfs snapshot of {path}")
    if not settings.is_root:
        raise SnapshotError(f"a btrfs snapshot of {path} needs root (run as root, or use"
                            " --snapshot none to dump the live tree)")
    real = os.path.realpath(path)
    fs_path = mount.fs_path(real)
    tops = _top_mounts(mount.majmin, None)
    top = tops[0].target if tops else None
    the_fsid = fsid(real)

    def plan(name: str) -> dict | None:
        top_dir = top or str(settings.run_dir / "mnt" / name)
        dest = os.path.join(top_dir, SNAPDIR, name)
        if top and os.path.lexists(dest):
            return None
        return {"top": top_dir, "mounted_top": top is None, "source": mount.source,
                "fsid": the_fsid, "snapshot": dest}

    held = registry.claim(settings, "btrfs", path, plan)
    data = held.record.data
    done: list[str] = []
    try:
        if data["mounted_top"]:
            _mount_top(data["top"], mount.source)
            done.append("mount")
        inside = os.path.join(data["top"], fs_path.lstrip("/"))
        src = detect.subvolume_root(inside, data["top"])
        rel = os.path.relpath(inside, src)
        os.makedirs(os.path.join(data["top"], SNAPDIR), mode=0o700, exist_ok=True)
        if os.path.lexists(data["snapshot"]):      # made by someone else: never touch it
            raise SnapshotError(f"{data['snapshot']} already exists and was not made by this"
                                " ndump; remove it, or use --snapshot none")
        done.append("snapshot")
        tools.check("btrfs", "subvolume", "snapshot", "-r", src, data["snapshot"],
                    what=f"cannot take a btrfs snapshot of {src}")
    except BaseException as e:
        _undo(held, done, reporter)
        if isinstance(e, OSError):
            raise SnapshotError(f"cannot take a btrfs snapshot of {path}:"
                                f" {e.strerror or e}") from None
        raise
    root = data["snapshot"] if rel == "." else os.path.join(data["snapshot"], rel)
    reporter.info(f"reading {path} from btrfs snapshot {data['snapshot']}")
    return held, root


def _mount_top(directory: str, source: str, *, by_uuid: str | None = None) -> None:
    tools.require(["mount", "umount"], "mounting the top level of a btrfs filesystem")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    device = f"UUID={by_uuid}" if by_uuid else source
    tools.check("mount", "-t", "btrfs", "-o", "subvolid=5,nodev,nosuid,noexec", device, directory,
                what=f"cannot mount the top level of the btrfs filesystem on {device}")


def remove(data: dict, scratch: str) -> None:
    """Delete the snapshot, then unmount the top level if ndump mounted it. Works for the
    owner at the end of a dump and for a later run after a crash or a reboot (then the
    top level is found again, or mounted again on ``scratch``, by the filesystem's UUID)."""
    top, we_mounted = _locate_top(data, scratch)
    dest = os.path.join(top, SNAPDIR, os.path.basename(data["snapshot"]))
    try:
        if os.path.lexists(dest):
            tools.check("btrfs", "subvolume", "delete", dest,
                        what=f"cannot delete btrfs snapshot {dest}")
    finally:
        if we_mounted:
            _unmount(top)


def reopen(data: dict, scratch: str) -> str:
    """The directory of a snapshot kept for a restartable dump (SPEC §6), its top level
    found again, or mounted again on ``scratch`` after a reboot; ``data`` (the record's)
    is updated so that ``remove`` finds and unmounts it later."""
    top, mounted = _locate_top(data, scratch)
    data["top"], data["mounted_top"] = top, mounted
    data["snapshot"] = os.path.join(top, SNAPDIR, os.path.basename(data["snapshot"]))
    return data["snapshot"]


def _locate_top(data: dict, scratch: str) -> tuple[str, bool]:
    top = data["top"]
    want = data.get("fsid")
    if detect.is_mounted(top) and (want is None or fsid(top) == want):
        return top, bool(data.get("mounted_top"))
    if data.get("mounted_top") and os.path.isdir(top):
        try:
            os.rmdir(top)                    # an empty mount point left by a crash
        except OSError:
            pass
    if want:
        tops = _top_mounts("", want)
        if tops:
            return tops[0].target, False
    if not want and not data.get("source"):
        raise SnapshotError(f"cannot find the filesystem of {data['snapshot']}")
    _mount_top(scratch, data.get("source", ""), by_uuid=want)
    return scratch, True


def _unmount(directory: str) -> None:
    tools.check("umount", directory, what=f"cannot unmount {directory}")
    try:
        os.rmdir(directory)
    except OSError:
        pass


def _undo(held: registry.Held, done: list[str], reporter: Reporter) -> None:
    """Undo a half-made snapshot; the record goes only when everything was undone."""
    data = held.record.data
    try:
        if "snapshot" in done and os.path.lexists(data["snapshot"]):
            tools.check("btrfs", "subvolume", "delete", data["snapshot"],
                        what=f"cannot delete btrfs snapshot {data['snapshot']}")
        if "mount" in done:
            _unmount(data["top"])
    except SnapshotError as e:
        reporter.warning(f"{e}; the next ndump run will try again")
        held.close()
        return
    held.forget()


# --- an existing snapshot (--snapshot PATH) ----------------------------------------------------

def existing(path: str, snapshot: str, reporter: Reporter) -> str:
    """PATH's counterpart inside an existing btrfs snapshot, checked to be a snapshot of
    PATH's subvolume; the snapshot is only read."""
    snap = os.path.realpath(snapshot)
    if detect.find_mount(snap).fstype != "btrfs" or not detect.is_subvolume_root(snap):
        raise SnapshotError(f"{snapshot} is not a btrfs snapshot (not the top of a btrfs subvolume)")
    mount = detect.find_mount(path)
    if mount.fstype != "btrfs":
        raise SnapshotError(f"{snapshot} is a btrfs snapshot, but {path} is on {mount.fstype},"
                            " not btrfs")
    sub = detect.subvolume_root(path, mount.target)
    if not detect.is_subvolume_root(sub):
        raise SnapshotError(f"cannot find the btrfs subvolume that holds {path} (a bind mount?);"
                            f" dump {snapshot} directly")
    _check_parent(snapshot, snap, sub, reporter)
    rel = os.path.relpath(os.path.realpath(path), sub)
    root = snap if rel == "." else os.path.join(snap, rel)
    if not os.path.isdir(root):
        raise SnapshotError(f"snapshot {snapshot} has no {rel} (the counterpart of {path})")
    reporter.info(f"reading {path} from existing btrfs snapshot {snapshot}")
    return root


def _subvolume_uuids(path: str) -> tuple[str, str] | None:
    res = tools.run("btrfs", "subvolume", "show", path)
    if not res.ok:
        return None
    fields = dict(re.findall(r"^\s*(UUID|Parent UUID):\s*(\S+)", res.stdout, re.M))
    return fields.get("UUID", "-"), fields.get("Parent UUID", "-")


def _check_parent(given: str, snap: str, sub: str, reporter: Reporter) -> None:
    if not tools.have("btrfs"):
        reporter.warning(f"btrfs-progs is not installed: cannot check that {given} is a snapshot"
                         f" of {sub}", once="btrfs-parent")
        return
    mine, theirs = _subvolume_uuids(snap), _subvolume_uuids(sub)
    if mine is None or theirs is None:
        reporter.verbose(f"cannot ask btrfs whether {given} is a snapshot of {sub}")
        return
    if mine[1] != theirs[0]:
        raise SnapshotError(f"{given} is not a snapshot of {sub} (the subvolume that holds the"
                            " dumped path); dump it directly, or name the right snapshot")
