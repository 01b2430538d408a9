"""LVM snapshots of the logical volume behind PATH's mount (SPEC §3.4).

The sequence, each step checked before the next (the argv are pinned by
tests/snapshot/test_lvm_fake.py against recorded lvm2 behaviour, tests/data/lvm/):

    lvs --noheadings --nosuffix --units b --separator '|' -o vg_name,lv_name,lv_size,lv_attr,lv_path,origin SOURCE
    vgs --noheadings --nosuffix --units b -o vg_free VG
    lvcreate -s -n ndump_snapshot_for_backup.N -L SIZEm VG/LV
    mount -t FSTYPE -o ro,noload (ext3/ext4) | ro,nouuid,norecovery (xfs) | ro  /dev/VG/ndump_snapshot_for_backup.N RUN_DIR/mnt/snapshot_for_backup.N
    ... the dump reads RUN_DIR/mnt/snapshot_for_backup.N + PATH's place in its filesystem ...
    umount RUN_DIR/mnt/snapshot_for_backup.N
    lvremove -f VG/ndump_snapshot_for_backup.N

The LV is called ``ndump_snapshot_for_backup.N``: lvm2 refuses LV names that
start with "snapshot" ("Names starting "snapshot" are reserved", recorded), so
the SPEC name is kept behind a prefix; the mount point and the records use the
plain name.  The snapshot size (``--snapshot-size``) defaults to 10 % of the LV,
at least 64 MiB, at most the LV's size; a bare number is MiB, as for lvcreate
-L; ``N%`` is a share of the LV.  ext3/ext4 are mounted without journal replay
(``noload``), XFS with ``nouuid`` (the snapshot has its origin's UUID) and
``norecovery``, so the read-only snapshot is never written to.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ndump.errors import SnapshotError, UsageError
from ndump.report import Reporter
from ndump.settings import Settings
from ndump.snapshot import detect, registry, tools

MiB = 1 << 20
MIN_SIZE = 64 * MiB
DEFAULT_SHARE = 10                      # percent of the origin LV
LV_PREFIX = "ndump_"
LVS_FIELDS = "vg_name,lv_name,lv_size,lv_attr,lv_path,origin"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", re.I)
_UNITS = {"": MiB, "k": 1 << 10, "m": MiB, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@dataclass(frozen=True)
class LogicalVolume:
    vg: str
    name: str
    size: int
    attr: str
    path: str
    origin: str = ""

    @property
    def full(self) -> str:
        return f"{self.vg}/{self.name}"

    @property
    def is_snapshot(self) -> bool:
        return self.attr[:1] in ("s", "S") or (self.attr[:1] == "V" and bool(self.origin))


def parse_size(text: str) -> tuple[str, float]:
    """``--snapshot-size``: ("percent", p) for "N%", else ("bytes", n); bare numbers are MiB."""
    text = text.strip()
    if text.endswith("%"):
        try:
            pct = float(text[:-1])
        except ValueError:
            pct = -1
        if not 0 < pct <= 100:
            raise UsageError(f"--snapshot-size {text}: a share must be more than 0% and at most 100%")
        return "percent", pct
    m = _SIZE.fullmatch(text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--snapshot-size {text}: give a size such as 512M, 2G or 10%")
    return "bytes", float(m.group(1)) * _UNITS[m.group(2).lower()]


def snapshot_size(spec: str | None, lv_size: int) -> int:
    """Bytes to ask lvcreate for, rounded up to a whole MiB."""
    if spec is None:
        want = max(lv_size * DEFAULT_SHARE // 100, MIN_SIZE)
        want = min(want, max(lv_size, MiB))
    else:
        kind, value = parse_size(spec)
        want = int(lv_size * value / 100) if kind == "percent" else int(value)
    return max(-(-want // MiB), 1) * MiB


def human(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def mount_options(fstype: str) -> str:
    if fstype in ("ext3", "ext4"):
        return "ro,noload"
    if fstype == "xfs":
        return "ro,nouuid,norecovery"
    return "ro"


# --- lvm2 queries -------------------------------------------------------------------------------

def lookup(spec: str) -> tuple[LogicalVolume | None, str]:
    """The LV named by ``spec`` (VG/LV, /dev/VG/LV, /dev/mapper/VG-LV), or (None, lvs' reason)."""
    res = tools.run("lvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
                    "-o", LVS_FIELDS, spec)
    rows = [ln.strip().split("|") for ln in res.stdout.splitlines() if ln.strip()]
    if not res.ok or not rows or len(rows[0]) < 5:
        return None, res.reason() if not res.ok else f"lvs printed nothing for {spec}"
    vg, name, size, attr, path, *rest = rows[0]
    try:
        nbytes = int(float(size))
    except ValueError:
        return None, f"lvs printed an unreadable size {size!r} for {spec}"
    return LogicalVolume(vg, name, nbytes, attr, path, rest[0] if rest else ""), ""


def vg_free(vg: str) -> int:
    res = tools.check("vgs", "--noheadings", "--nosuffix", "--units", "b", "-o", "vg_free", vg,
                      what=f"cannot read the free space of volume group {vg}")
    try:
        return int(float(res.stdout.split()[0]))
    except (IndexError, ValueError):
        raise SnapshotError(f"vgs printed no free space for volume group {vg}") from None


def behind(mount: detect.Mount, settings: Settings, path: str) -> LogicalVolume | None:
    """The LV that ``mount`` is on, None when it is not on LVM. SnapshotError when it is (or
    may be) but lvm2 is missing or cannot be used."""
    kind = detect.dm_kind(mount.source)
    if kind in (None, "other"):
        return None
    if not tools.have("lvs"):
        if kind == "lvm" or mount.source.startswith("/dev/mapper/"):
            tools.require(["lvs"], f"an LVM snapshot of {path} (on {mount.source})")
        return None
    if not settings.is_root:
        raise SnapshotError(f"an LVM snapshot of {path} (on {mount.source}) needs root (run as"
                            " root, or use --snapshot none to dump the live tree)")
    lv, why = lookup(mount.source)
    if lv is None and kind == "lvm":
        raise SnapshotError(f"lvs cannot find the logical volume {mount.source}: {why}")
    return lv


# --- a snapshot ndump creates -----------------------------------------------------------------------

def create(path: str, mount: detect.Mount, lv: LogicalVolume, size_spec: str | None,
           settings: Settings, reporter: Reporter):
    """lvcreate -s, mount read-only; returns (held record, root to read)."""
    tools.require(["vgs", "lvcreate", "lvremove", "mount", "umount"], f"an LVM snapshot of {path}")
    size = snapshot_size(size_spec, lv.size)
    free = vg_free(lv.vg)
    if free < size:
        raise SnapshotError(
            f"volume group {lv.vg} has {human(free)} free, the snapshot of {lv.full} needs"
            f" {human(size)}: free space in {lv.vg}, give a smaller --snapshot-size,"
            " or use --snapshot none")

    def plan(name: str) -> dict:
        return {"vg": lv.vg, "lv": LV_PREFIX + name, "origin_lv": lv.full,
                "device": f"/dev/{lv.vg}/{LV_PREFIX}{name}", "fstype": mount.fstype,
                "mountpoint": str(settings.run_dir / "mnt" / name), "size": size}

    held = registry.claim(settings, "lvm", path, plan)
    data = held.record.data
    done: list[str] = []
    try:
        tools.check("lvcreate", "-s", "-n", data["lv"], "-L", f"{size // MiB}m", lv.full,
                    what=f"cannot create an LVM snapshot of {lv.full}")
        done.append("lv")
        os.makedirs(data["mountpoint"], mode=0o700, exist_ok=True)
        done.append("mount")
        tools.check("mount", "-t", mount.fstype, "-o", mount_options(mount.fstype),
                    data["device"], data["mountpoint"],
                    what=f"cannot mount LVM snapshot {lv.vg}/{data['lv']} read-only")
    except BaseException as e:
        _undo(held, done, reporter)
        if isinstance(e, OSError):
            raise SnapshotError(f"cannot take an LVM snapshot of {path}: {e.strerror or e}") from None
        raise
    reporter.info(f"reading {path} from LVM snapshot {lv.vg}/{data['lv']} ({human(size)})"
                  f" mounted on {data['mountpoint']}")
    return held, _counterpart(data["mountpoint"], "/", mount, path)


def _counterpart(mounted_at: str, mounted_fsroot: str, origin_mount: detect.Mount, path: str) -> str:
    """Where ``path`` (on origin_mount) is under a mount of the same filesystem's image."""
    inside = origin_mount.fs_path(os.path.realpath(path))
    rel = os.path.relpath(inside, mounted_fsroot)
    if rel.startswith(".."):
        raise SnapshotError(f"{path} is not inside the part of the snapshot mounted on {mounted_at}")
    return mounted_at if rel == "." else os.path.join(mounted_at, rel)


def _undo(held: registry.Held, done: list[str], reporter: Reporter) -> None:
    try:
        if "mount" in done:
            unmount(held.record.data["mountpoint"])
        if "lv" in done:
            _lvremove(held.record.data)
    except SnapshotError as e:
        reporter.warning(f"{e}; the next ndump run will try again")
        held.close()
        return
    held.forget()


def unmount(mountpoint: str) -> None:
    """umount (a mount point that is not mounted is fine), then remove the directory."""
    if not os.path.isdir(mountpoint):
        return
    res = tools.run("umount", mountpoint)
    if not res.ok and "not mounted" not in res.stderr:
        raise SnapshotError(f"cannot unmount {mountpoint}: {res.reason()}")
    try:
        os.rmdir(mountpoint)
    except OSError:
        pass


def _lvremove(data: dict) -> None:
    res = tools.run("lvremove", "-f", f"{data['vg']}/{data['lv']}")
    if not res.ok and "Failed to find logical volume" not in res.stderr:
        raise SnapshotError(f"cannot remove LVM snapshot {data['vg']}/{data['lv']}: {res.reason()}")


def remove(data: dict) -> None:
    """The end of a dump: unmount and remove the snapshot ndump created."""
    unmount(data["mountpoint"])
    _lvremove(data)


def remove_leftover(data: dict) -> None:
    """After a crash: the same, but first make sure the LV is still a snapshot (never remove
    anything else that may have taken the name)."""
    unmount(data["mountpoint"])
    lv, _ = lookup(f"{data['vg']}/{data['lv']}")
    if lv is None:
        return
    if not lv.is_snapshot:
        raise SnapshotError(f"{lv.full} is not a snapshot (attributes {lv.attr}); not removing it")
    _lvremove(data)


# --- an existing snapshot (--snapshot VG/LV) ---------------------------------------------------------

def looks_like_lv(spec: str) -> bool:
    return bool(re.fullmatch(r"[^/\s]+/[^/\s]+", spec)) or spec.startswith(("/dev/mapper/", "/dev/"))


def existing(path: str, spec: str, settings: Settings, reporter: Reporter):
    """PATH's counterpart in an existing LVM snapshot, mounted read-only by ndump unless it
    is mounted already; returns (held record or None, root to read)."""
    tools.require(["lvs", "mount", "umount"], f"dumping {path} from LVM snapshot {spec}")
    if not settings.is_root:
        raise SnapshotError(f"dumping from LVM snapshot {spec} needs root")
    snap, why = lookup(spec)
    if snap is None:
        raise SnapshotError(f"snapshot {spec} not found: {why}")
    if not snap.is_snapshot:
        raise SnapshotError(f"{snap.full} is not an LVM snapshot (attributes {snap.attr})")
    mount = detect.find_mount(path)
    lv = behind(mount, settings, path)
    if lv is None:
        raise SnapshotError(f"{path} is not on an LVM logical volume, so {spec} cannot be its snapshot")
    if (snap.vg, snap.origin) != (lv.vg, lv.name):
        raise SnapshotError(f"{snap.full} is a snapshot of {snap.vg}/{snap.origin}, not of"
                            f" {lv.full} which holds {path}")
    already = detect.mounts_of(source=snap.path)
    if already:
        reporter.info(f"reading {path} from LVM snapshot {snap.full} mounted on {already[0].target}")
        return None, _counterpart(already[0].target, already[0].fsroot, mount, path)
    name = f"mount.{snap.vg}-{snap.name}.{os.getpid()}"
    mountpoint = str(settings.run_dir / "mnt" / name)
    held = registry.hold(settings, name, "mount", path, {"mountpoint": mountpoint, "lv": snap.full})
    try:
        os.makedirs(mountpoint, mode=0o700, exist_ok=True)
        tools.check("mount", "-t", mount.fstype, "-o", mount_options(mount.fstype), snap.path,
                    mountpoint, what=f"cannot mount LVM snapshot {snap.full} read-only")
    except BaseException as e:
        _undo(held, ["mount"], reporter)
        if isinstance(e, OSError):
            raise SnapshotError(f"cannot mount {snap.full}: {e.strerror or e}") from None
        raise
    reporter.info(f"reading {path} from LVM snapshot {snap.full} mounted on {mountpoint}")
    return held, _counterpart(mountpoint, "/", mount, path)
