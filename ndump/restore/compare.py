"""restore -C: compare the dump with the files on disk (classic: restore/tape.c
comparefile(), cmpfiles()).

Each difference is a per-file problem: "size changed", "mode changed",
"tape and disk copies are different", ...  Nothing is written.  Names are
reached through directory descriptors and never followed when they are
symbolic links.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ndump.format import (
    ACL_ACCESS, ACL_DEFAULT, NODUMP_FL, FormatReader, Hole, Inode, InodeRecord,
)
from ndump.fsmeta import Statx, get_flags
from ndump.report import Reporter
from ndump.restore.dirs import Entry, Tree
from ndump.restore.extract import ExtractList
from ndump.restore.options import PRECISIONS
from ndump.restore.target import DirFds, reason

# names at the top that restore -r and mkfs make, not the dump
_TOP_NAMES = frozenset({b"restoresymtable", b"lost+found"})
_COMPARED_XATTRS = ("user.", "trusted.", "security.", ACL_ACCESS, ACL_DEFAULT)


class _Comparer:
    def __init__(self, reader: FormatReader, tree: Tree, root_fd: int, reporter: Reporter,
                 precision: str = "auto"):
        self.reader = reader
        self.tree = tree
        self.fds = DirFds(root_fd, tree.root, limit=128)
        self.reporter = reporter
        self.precision = precision
        self.below_us: list[Entry] = []     # auto: mtimes that differ only below 1 us
        self.mtime_differences = 0          # ... and those that differ more

    def differs(self, e: Entry, what: str) -> None:
        self.reporter.file_problem(e.spath(), what)

    def lstat(self, e: Entry) -> os.stat_result | None:
        try:
            if e.parent is None:
                return os.stat(self.fds.root_fd)
            return os.stat(e.name, dir_fd=self.fds.get(e.parent), follow_symlinks=False)
        except OSError as err:
            self.differs(e, f"does not exist ({reason(err)})")
            return None

    def inode(self, e: Entry, inode: Inode, st: os.stat_result, *, times: bool) -> bool:
        """Type, mode, owner (and for files mtime); False when the type differs."""
        if stat.S_IFMT(st.st_mode) != stat.S_IFMT(inode.mode):
            self.differs(e, "type changed")
            return False
        if stat.S_ISLNK(inode.mode):
            pass                            # a symlink's mode means nothing on Linux
        elif stat.S_IMODE(st.st_mode) != inode.mode & 0o7777:
            self.differs(e, "mode changed")
        if st.st_uid != inode.uid:
            self.differs(e, "uid changed")
        if st.st_gid != inode.gid:
            self.differs(e, "gid changed")
        if times and not self.same_mtime(e, st, inode):
            self.differs(e, "mtime changed")
        return True

    def same_mtime(self, e: Entry, st: os.stat_result, inode: Inode) -> bool:
        if inode.mtime_ns == 0:
            # stock dumps carry whole seconds (usec 0): compare at the precision carried
            return st.st_mtime_ns // 1_000_000_000 == inode.mtime
        unit = PRECISIONS.get(self.precision, 1)
        disk, tape = st.st_mtime_ns, inode.mtime_total_ns
        if disk // unit == tape // unit:
            return True
        if self.precision == "auto" and disk // 1000 == tape // 1000:
            self.below_us.append(e)         # decided at the end (finish)
            return True
        self.mtime_differences += 1
        return False

    def finish(self) -> None:
        """auto: below-microsecond differences are differences only if others are."""
        if not self.below_us:
            return
        if self.mtime_differences:
            for e in self.below_us:
                self.differs(e, "mtime changed (below the microsecond)")
            return
        self.reporter.info(f"{len(self.below_us)} files differ from the dump only below the"
                           " microsecond, as after a restore that sets times to the microsecond"
                           " (stock restore): times compared to the microsecond"
                           " (--time-precision ns shows them)")

    # -- directories -------------------------------------------------------------
    def dirs(self, dirs: list[Entry], *, extras: bool) -> None:
        for e in dirs:
            rec = self.tree.dirs.get(e.ino)
            st = self.lstat(e) if rec is not None else None
            if st is None:
                e.failed = True
                continue
            if self.inode(e, rec.inode, st, times=False) and extras:
                self.extra_names(e)

    def extra_names(self, e: Entry) -> None:
        """Names on disk that the dumped directory does not hold."""
        try:
            on_disk = map(os.fsencode, os.listdir(self.fds.get(e)))
        except OSError as err:
            self.differs(e, f"cannot be read ({reason(err)})")
            return
        known = {c.name for c in e.children}
        if e.parent is None:
            known |= _TOP_NAMES
        dfd = self.fds.get(e)
        for name in sorted(set(on_disk) - known):
            if _is_socket(dfd, name):
                continue                    # dump never holds sockets
            if _has_nodump(dfd, name):
                continue                    # left out by the dump on purpose (chattr +d)
            path = e.spath() + "/" + name.decode("utf-8", "surrogateescape")
            self.reporter.file_problem(path, "not on the tape (made after the dump)")

    # -- files -------------------------------------------------------------------
    def run(self, rec: InodeRecord | None, leaves: dict[int, list[Entry]]) -> None:
        while rec is not None:
            names = leaves.pop(rec.ino, None)
            names = [e for e in names or () if not e.parent.failed]
            if not names:
                self.reader.skip(rec)
            else:
                self.fds.next_op()
                self.file(rec, names[0])
                if len(names) > 1:
                    self.links(names)
                if rec.damaged:
                    self.differs(names[0], "damaged on the tape: " + "; ".join(rec.damaged))
            rec = self.reader.next_record()

    def links(self, names: list[Entry]) -> None:
        """The other names of a hard-linked inode must be the same file on disk."""
        first = self.lstat_quiet(names[0])
        for e in names[1:]:
            st = self.lstat(e)
            if st is not None and first is not None and (st.st_dev, st.st_ino) != first:
                self.differs(e, f"is no longer a hard link to {names[0].spath()}")

    def lstat_quiet(self, e: Entry) -> tuple[int, int] | None:
        try:
            st = os.stat(e.name, dir_fd=self.fds.get(e.parent), follow_symlinks=False)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def file(self, rec: InodeRecord, e: Entry) -> None:
        inode = rec.inode
        st = self.lstat(e)
        if st is None or not self.inode(e, inode, st, times=True):
            self.reader.skip(rec)
            return
        if stat.S_ISREG(inode.mode):
            self.contents(rec, e, st)
        elif stat.S_ISLNK(inode.mode):
            target = self.reader.read_all(rec).split(b"\0", 1)[0]
            if os.readlink(e.name, dir_fd=self.fds.get(e.parent)) != target:
                self.differs(e, "symbolic link target changed")
        else:
            self.reader.skip(rec)
            if stat.S_ISCHR(inode.mode) or stat.S_ISBLK(inode.mode):
                if st.st_rdev != inode.rdev:
                    self.differs(e, "device number changed")
        self.xattrs(rec, e)

    def contents(self, rec: InodeRecord, e: Entry, st: os.stat_result) -> None:
        gen = self.reader.file_data(rec)
        if st.st_size != rec.inode.size:
            self.differs(e, "size changed")
            _drain(gen)
            return
        fd = os.open(e.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=self.fds.get(e.parent))
        try:
            same = _same_data(fd, gen)
        finally:
            os.close(fd)
        _drain(gen)
        if not same:
            self.differs(e, "tape and disk copies are different")

    def xattrs(self, rec: InodeRecord, e: Entry) -> None:
        if stat.S_ISLNK(rec.inode.mode):
            return
        path = b"/proc/self/fd/%d/%s" % (self.fds.get(e.parent), e.name)
        try:
            names = os.listxattr(path, follow_symlinks=False)
            disk = {n: os.getxattr(path, n, follow_symlinks=False)
                    for n in names if n.startswith(_COMPARED_XATTRS)}
        except OSError:
            disk = {}
        if disk != dict(rec.xattrs):
            self.differs(e, "extended attributes or ACLs changed")


def compare(reader: FormatReader, tree: Tree, sel: ExtractList, first: InodeRecord | None,
            path: Path, reporter: Reporter, *, precision: str = "auto") -> None:
    """Compare the selected part of the dump with the tree at ``path``; each
    difference is a per-file problem, names on disk the dump lacks included.
    ``precision`` (TIME_PRECISIONS) is how closely modification times must agree."""
    root_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    c = _Comparer(reader, tree, root_fd, reporter, precision)
    # extra names are looked for only when the whole dump is compared
    whole = len(sel.dirs) == sum(1 for e in tree.walk() if e.is_dir)
    try:
        c.dirs(sel.dirs, extras=whole)
        c.run(first, sel.leaves)
        c.finish()
    finally:
        c.fds.close()
        os.close(root_fd)


def _is_socket(dfd: int, name: bytes) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _has_nodump(dfd: int, name: bytes) -> bool:
    """Whether the name on disk carries the nodump flag (dump leaves such files out)."""
    flag = Statx().nodump_attribute(name, dir_fd=dfd)
    if flag is not None:
        return flag
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return False
    try:
        return bool(get_flags(fd) & NODUMP_FL)
    except OSError:
        return False
    finally:
        os.close(fd)


def _same_data(fd: int, pieces) -> bool:
    for piece in pieces:
        if piece.__class__ is Hole:
            if not _zeros_on_disk(fd, piece.size):
                return False
        elif _read_exactly(fd, len(piece)) != piece:
            return False
    return True


def _zeros_on_disk(fd: int, n: int) -> bool:
    """The next n bytes read as zeros (a hole may be a gigabyte: read it in pieces)."""
    while n > 0:
        step = min(n, 1 << 20)
        disk = _read_exactly(fd, step)
        if len(disk) != step or disk.count(0) != step:
            return False
        n -= step
    return True


def _read_exactly(fd: int, n: int) -> bytes:
    parts = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _drain(gen) -> None:
    for _ in gen:
        pass
