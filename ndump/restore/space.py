"""Space and inode check before a restore writes anything (SPEC §5.2; ONTAP
dump's FORCE; no classic counterpart).

Need: the data bytes to restore plus a headroom of 100 MiB, or 10 % of the
filesystem's size where that is smaller (a small extraction fits a small
filesystem), and one free inode per file and directory to restore.  The bytes come, in this order of preference, from

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
from ndump.format import (
    TP_BSIZE, TP_NINDIR, TS_ADDR, TS_END, TS_INODE, TS_TAPE, HeaderError, unpack_header,
)
from ndump.media import volume_name

RESERVE = 100 << 20                 # SPEC §5.2: bytes kept free beyond the data,
RESERVE_SHARE = 10                  # or 1/10 of the filesystem where that is less


@dataclass(frozen=True)
class Need:
    data_bytes: int | None          # None: not known
    inodes: int
    source: str                     # where data_bytes came from, for -v; else why not known


@dataclass(frozen=True)
class Have:
    free_bytes: int
    free_inodes: int | None         # None: no inode limit
    mount: Path
    size: int = 0                   # bytes the filesystem holds in all

    @property
    def reserve(self) -> int:
        """The headroom kept free beyond the data (SPEC §5.2)."""
        return min(RESERVE, self.size // RESERVE_SHARE) if self.size else RESERVE


def check(dump, tree, sel, reporter, target: Path, *, whole: bool) -> None:
    """Raise NoSpaceError when ``target`` cannot hold ``sel`` (``whole``: the whole
    dump is selected); warn when the need is not known."""
    have = free_space(target)
    if have is None:
        return                   # no target: opening it says so
    need = measure(dump, tree, sel, whole=whole)
    if need.data_bytes is None:
        reporter.warning(f"cannot check the space on {have.mount}: the dump records no totals"
                         f" and {need.source}")
    else:
        reporter.verbose(f"space check: need {human(need.data_bytes)} + {human(have.reserve)} and"
                         f" {need.inodes} inodes ({need.source}), have {human(have.free_bytes)}"
                         + (f" and {have.free_inodes} inodes" if have.free_inodes is not None else ""))
        if need.data_bytes + have.reserve > have.free_bytes:
            raise NoSpaceError(f"need {human(need.data_bytes)} + {human(have.reserve)} on {have.mount},"
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
    scanned, why = scan(dump, sel.leaves)
    if scanned is not None:
        return Need(scanned + dir_bytes, inodes, "a quick pass over the image")
    if totals is not None:
        return Need(totals.data_bytes + dir_bytes, inodes, "the whole dump's totals")
    return Need(None, inodes, why)


def _dir_size(tree, e) -> int:
    """From the names in the tree ('.' and '..' besides), not di_size (which a hostile
    dump can make anything)."""
    if tree.dirs.get(e.ino) is None:
        return 4096
    return 4096 + (len(e.children) + 2) * 32 // 4096 * 4096


class _Unmeasurable(Exception):
    """Why the quick pass cannot measure the input (the text goes in the warning)."""


def scan(dump, leaves: dict) -> tuple[int | None, str]:
    """(bytes, "") from a header-only pass over the image, or (None, the reason).

    The pass starts at the header of the first file (the block the reader read last)
    and reads the image with pread: the reader's position does not move.  A -M set is
    measured volume after volume (PREFIX001, PREFIX002, ...): the data blocks of the
    last header of a volume go on after the next volume's TS_TAPE (FORMAT §7.2).
    """
    fd = getattr(dump.medium, "fd", None)
    reader = dump.reader
    try:
        if reader.compressed:
            raise _Unmeasurable("the image is compressed (its data sizes show only when it is read)")
        if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Unmeasurable("the input is not a regular file (a pipe, tape or remote drive"
                                " cannot be read twice)")
        if reader.volume != 1:
            raise _Unmeasurable(f"the restore starts on volume {reader.volume}")
        return _scan_volumes(dump, fd, leaves), ""
    except _Unmeasurable as e:
        return None, str(e)
    except (OSError, HeaderError) as e:
        return None, f"the image cannot be measured ({e})"


def _scan_volumes(dump, fd: int, leaves: dict) -> int:
    order = dump.reader.order
    total, ended, over = _scan(fd, (dump.reader.blocks_read - 1) * TP_BSIZE, leaves, order)
    volume = 1
    while not ended:
        volume += 1
        if not dump.multi:
            raise _Unmeasurable(f"the dump goes on to volume {volume}, which is not at hand"
                                " before the restore asks for it (-M PREFIX names volume files)")
        name = volume_name(dump.spec, volume, True)
        try:
            vfd = os.open(name, os.O_RDONLY)
        except OSError as e:
            raise _Unmeasurable(f"volume {volume} ({name}) cannot be opened: {e.strerror}") from None
        try:
            h = unpack_header(os.pread(vfd, TP_BSIZE, 0), order)
            if h.type != TS_TAPE or h.volume != volume or h.date != dump.tape.date:
                raise _Unmeasurable(f"{name} is not volume {volume} of this dump")
            more, ended, over = _scan(vfd, TP_BSIZE * (1 + over), leaves, order)
            total += more
        finally:
            os.close(vfd)
    return total


def _scan(fd: int, pos: int, leaves: dict, order: str) -> tuple[int, bool, int]:
    """(data bytes, whether TS_END was met, data blocks that run past the volume's end)."""
    size = os.fstat(fd).st_size
    total = 0
    while pos + TP_BSIZE <= size:
        h = unpack_header(os.pread(fd, TP_BSIZE, pos), order)
        pos += TP_BSIZE
        if h.type == TS_END:
            return total, True, 0
        if h.type in (TS_INODE, TS_ADDR) and not h.is_extattr:
            n = h.present()
            if h.inumber in leaves and not h.inode.is_dir:
                total += n * TP_BSIZE
            pos += n * TP_BSIZE
        elif h.is_extattr:
            pos += max(0, min(h.count, TP_NINDIR)) * TP_BSIZE
        else:
            raise _Unmeasurable(f"a {h.type_name} header in the middle of the image"
                                f" (block {pos // TP_BSIZE - 1})")
    return total, False, max(0, pos - size) // TP_BSIZE


# -- what the target has ---------------------------------------------------------------
def free_space(path: Path) -> Have | None:
    """Free bytes (for an unprivileged user) and inodes of the filesystem holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    inodes = st.f_favail if st.f_files else None
    return Have(st.f_bavail * st.f_frsize, inodes, mount_point(path), st.f_blocks * st.f_frsize)


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
    if run.options.dry_run:
        return
    if run.options.force:
        run.reporter.verbose("--force: no space or inode check")
        return
    check(run.dump, tree, sel, run.reporter, run.target_path(), whole=run.whole_tree)
