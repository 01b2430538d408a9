"""Space and inode check before a restore writes anything (SPEC §5.2; ONTAP
dump's FORCE; no classic counterpart).

Need: the data bytes to restore plus 100 MiB, and one free inode per file and
directory to restore.  The bytes come, in this order of preference, from

* a quick pass over a seekable, uncompressed image: read each header, seek
  over its data, add up the data blocks of the selected inodes (exact; also
  works for stock dump images, which carry no totals);
* the totals that ndump dump records in the TS_TAPE header extension (the
  whole dump's: an upper bound when only some paths are restored);

and otherwise restore says that it cannot check and goes on.  Filesystems that
report no inode limit (btrfs: f_files == 0) pass the inode check.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ndump.errors import NoSpaceError
from ndump.format import TP_BSIZE, TP_NINDIR, TS_ADDR, TS_END, TS_INODE, HeaderError, unpack_header

RESERVE = 100 << 20                 # SPEC §5.2: bytes kept free beyond the data


@dataclass(frozen=True)
class Need:
    data_bytes: int | None          # None: not known
    inodes: int
    source: str                     # where data_bytes came from, for -v


@dataclass(frozen=True)
class Have:
    free_bytes: int
    free_inodes: int | None         # None: no inode limit
    mount: Path


def check(dump, tree, sel, reporter, target: Path, *, whole: bool) -> None:
    """Raise NoSpaceError when ``target`` cannot hold ``sel`` (``whole``: the whole
    dump is selected); warn when the need is not known."""
    have = free_space(target)
    if have is None:
        return                   # no target: opening it says so
    need = measure(dump, tree, sel, whole=whole)
    if need.data_bytes is None:
        reporter.warning(f"cannot check the space on {have.mount}: the dump records no totals"
                         " and the input cannot be measured (not a seekable uncompressed image)")
    else:
        reporter.verbose(f"space check: need {human(need.data_bytes)} + 100 MiB and"
                         f" {need.inodes} inodes ({need.source}), have {human(have.free_bytes)}"
                         + (f" and {have.free_inodes} inodes" if have.free_inodes is not None else ""))
        if need.data_bytes + RESERVE > have.free_bytes:
            raise NoSpaceError(f"need {human(need.data_bytes)} + 100 MiB on {have.mount},"
                               f" have {human(have.free_bytes)} (--force skips this check)")
    if have.free_inodes is not None and need.inodes > have.free_inodes:
        raise NoSpaceError(f"need {need.inodes} inodes on {have.mount}, have {have.free_inodes}"
                           " free (--force skips this check)")


# -- what the restore needs ------------------------------------------------------------
def measure(dump, tree, sel, *, whole: bool) -> Need:
    """Bytes and inodes for the selection ``sel`` of ``tree``."""
    inodes = len(sel.leaves) + sum(1 for e in sel.dirs if e.parent is not None)
    dir_bytes = sum(_dir_size(tree, e) for e in sel.dirs if e.parent is not None)
    totals = dump.tape.totals
    if totals is not None and whole:
        return Need(totals.data_bytes + dir_bytes, inodes, "the dump's totals")
    scanned = scan(dump, sel.leaves)
    if scanned is not None:
        return Need(scanned + dir_bytes, inodes, "a quick pass over the image")
    if totals is not None:
        return Need(totals.data_bytes + dir_bytes, inodes, "the whole dump's totals")
    return Need(None, inodes, "unknown")


def _dir_size(tree, e) -> int:
    """From the entries, not di_size (which a hostile dump can make anything)."""
    rec = tree.dirs.get(e.ino)
    return 4096 + (len(rec.entries) * 32 // 4096 * 4096 if rec is not None else 0)


def scan(dump, leaves: dict) -> int | None:
    """Data bytes of the inodes in ``leaves``, from a header-only pass; None if impossible.

    The pass starts at the header of the first file (the block the reader read last)
    and reads the image with pread: the reader's position does not move.
    """
    fd = getattr(dump.medium, "fd", None)
    reader = dump.reader
    if fd is None or reader.compressed or dump.multi or reader.volume != 1:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        return _scan(fd, (reader.blocks_read - 1) * TP_BSIZE, st.st_size, leaves, reader.order)
    except (OSError, HeaderError):
        return None


def _scan(fd: int, pos: int, size: int, leaves: dict, order: str) -> int | None:
    total = 0
    while pos + TP_BSIZE <= size:
        h = unpack_header(os.pread(fd, TP_BSIZE, pos), order)
        pos += TP_BSIZE
        if h.type == TS_END:
            return total
        if h.type in (TS_INODE, TS_ADDR) and not h.is_extattr:
            n = h.present()
            if h.inumber in leaves and not h.inode.is_dir:
                total += n * TP_BSIZE
            pos += n * TP_BSIZE
        elif h.is_extattr:
            pos += max(0, min(h.count, TP_NINDIR)) * TP_BSIZE
        else:
            return None      # a volume header or map in the file part: not a plain image
    return None


# -- what the target has ---------------------------------------------------------------
def free_space(path: Path) -> Have | None:
    """Free bytes (for an unprivileged user) and inodes of the filesystem holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    inodes = st.f_favail if st.f_files else None
    return Have(st.f_bavail * st.f_frsize, inodes, mount_point(path))


def mount_point(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    try:
        dev = os.stat(p).st_dev
        while p != p.parent and os.stat(p.parent).st_dev == dev:
            p = p.parent
    except OSError:
        pass
    return p


def human(n: int) -> str:
    """12.4 GiB, 100 MiB, 512 B."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} {unit}" if unit == "B" or value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def before_write(run, tree, sel) -> None:
    """The check as run_restore does it: not with -N or --force (option or NDUMP_FORCE)."""
    force = run.o.force if run.o.force is not None else run.settings.force
    if run.o.dry_run:
        return
    if force:
        run.r.verbose("--force: no space or inode check")
        return
    check(run.dump, tree, sel, run.r, run.target_path(), whole=getattr(run, "whole_tree", True))
