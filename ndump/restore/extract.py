"""Create what the tape holds, in tape order (classic: restore/restore.c
createleaves()/createfiles(), tape.c extractfile()/getfile(), utilities.c
linkit()).

Per file: create the first name (O_CREAT|O_EXCL|O_NOFOLLOW relative to its
directory's descriptor), write the data with holes kept as holes, then owner,
mode, attributes, the other names as hard links, times, and the inode flags
last (immutable/append-only would forbid the rest).  Directories get their
metadata at the very end, deepest first, after all of their contents.

An interrupted restore never leaves a partial file under its final name: a
regular file of 64 KiB or more is written under a temporary name beside its own
and renamed once complete (even a SIGKILL leaves only the temporary); a smaller
one is created under its own name, and removed when a signal or the end of the
dump stops it half way.  An existing name is replaced atomically in the same way.
"""
from __future__ import annotations

import array
import os
import stat
from typing import Iterator

from ndump.fsmeta import SETTABLE_FLAGS
from ndump.format import DumpFormatError, FormatReader, Hole, Inode, InodeRecord, MAX_SYMLINK
from ndump.report import Reporter
from ndump.restore.dirs import Entry, Tree
from ndump.restore.target import (
    NO_SPACE, O_NEWFILE, Target, check_space, reason, type_name, unlink_quietly,
)

_SEEK_CUR = os.SEEK_CUR
_NODE_TYPES = (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK)
TEMP_MIN_SIZE = 64 * 1024       # from this size on, a new file is written under a temporary name


class ExtractList:
    """What to restore: directories to create (parents first) and, per inode,
    the names to give it (classic: the NEW/EXTRACT marks of restore.c)."""

    def __init__(self):
        self.dirs: list[Entry] = []
        self.leaves: dict[int, list[Entry]] = {}

    @classmethod
    def of(cls, tree: Tree, starts: list[Entry], in_bits) -> "ExtractList":
        sel = cls()
        leaves = sel.leaves
        # a walk meets each name once: the set is needed only where starts may overlap
        seen: set[int] | None = set() if len(starts) > 1 else None
        for start in starts:
            for anc in _ancestors(start):
                if seen is None or id(anc) not in seen:
                    if seen is not None:
                        seen.add(id(anc))
                    sel.dirs.append(anc)
            for e in tree.walk(start):
                if seen is not None:
                    if id(e) in seen:
                        continue
                    seen.add(id(e))
                if e.is_dir:
                    sel.dirs.append(e)
                elif in_bits(e.ino):
                    names = leaves.get(e.ino)
                    if names is None:
                        leaves[e.ino] = [e]      # a list of one: no room kept for more
                    else:
                        names.append(e)
        sel.dirs.sort(key=lambda e: e.depth)   # stable: parents before children
        return sel


class ModeTable:
    """Inode -> mode of the restored inodes, for the symbol table: a mapping that
    keeps them 4 bytes an inode number in an array (a dict costs ~100 bytes an
    entry: 100 MB for a million files).  Inode numbers far beyond those stored (a
    sparse or hostile numbering) go to a dict, so the array stays small."""

    _HAS = 1 << 16                       # marks a stored slot: mode 0 is a mode too
    _FLAT_FREE = 1 << 16                 # inode numbers this low always go in the array

    def __init__(self, pairs=()):
        self._flat = array.array("I")
        self._more: dict[int, int] = {}
        self._count = 0
        for ino, mode in pairs:
            self[ino] = mode

    def __setitem__(self, ino: int, mode: int) -> None:
        flat = self._flat
        if 0 <= ino < len(flat) and 0 <= mode < 0x10000 and not self._more:    # the usual case
            if not flat[ino]:
                self._count += 1
            flat[ino] = mode | 0x10000
            return
        if 0 <= mode < self._HAS and ino >= 0:
            if len(flat) <= ino <= max(self._FLAT_FREE, 8 * self._count):
                flat.frombytes(bytes(4 * (max(ino + 1, 2 * len(flat)) - len(flat))))
            if ino < len(flat):
                if self._more and self._more.pop(ino, None) is not None:
                    self._count -= 1
                if not flat[ino]:
                    self._count += 1
                flat[ino] = mode | self._HAS
                return
        if 0 <= ino < len(flat) and flat[ino]:
            flat[ino] = 0
            self._count -= 1
        if ino not in self._more:
            self._count += 1
        self._more[ino] = mode

    def get(self, ino: int, default=None):
        flat = self._flat
        if 0 <= ino < len(flat) and flat[ino]:
            return flat[ino] & 0xFFFF
        return self._more.get(ino, default)

    def __getitem__(self, ino: int) -> int:
        mode = self.get(ino)
        if mode is None:
            raise KeyError(ino)
        return mode

    def __contains__(self, ino) -> bool:
        return self.get(ino) is not None

    def __len__(self) -> int:
        return self._count

    def items(self):
        for ino, v in enumerate(self._flat):
            if v:
                yield ino, v & 0xFFFF
        yield from self._more.items()

    def keys(self):
        return (ino for ino, _ in self.items())

    __iter__ = keys


def _ancestors(e: Entry) -> list[Entry]:
    chain = []
    p = e.parent
    while p is not None:
        chain.append(p)
        p = p.parent
    return list(reversed(chain))


class Extractor:
    """Writes one dump's files under a Target (None: -N, write nothing)."""

    def __init__(self, reader: FormatReader, tree: Tree, target: Target | None,
                 reporter: Reporter, *, keep_existing: bool = False, progress=None):
        self.reader = reader
        self.tree = tree
        self.target = target
        self.reporter = reporter
        self.keep_existing = keep_existing
        self.modes = ModeTable()             # inode -> mode, for the symbol table
        self.made_dirs: list[Entry] = []
        self._progress = progress or (lambda: None)
        self._per_file = reporter.verbosity >= 2

    # -- messages ----------------------------------------------------------------
    def problem(self, e: Entry, text: str) -> None:
        self.reporter.file_problem(e.spath(), text)

    def _os_problem(self, e: Entry, err: OSError) -> None:
        check_space(err, e.spath())
        self.problem(e, reason(err))

    # -- directories ---------------------------------------------------------------
    def make_dirs(self, dirs: list[Entry]) -> None:
        """Create (or merge into) the directories, parents first."""
        for e in dirs:
            if e.parent is None:
                self.made_dirs.append(e)
                continue
            if e.parent.failed:
                e.failed = True
                continue
            if self._per_file:
                self.reporter.verbose(f"make node {e.spath()}", 2)
            if self.target is None:
                self.made_dirs.append(e)
                continue
            self.target.fds.next_op()
            try:
                self.target.make_dir(e)
            except OSError as err:
                e.failed = True
                check_space(err, e.spath())
                self.problem(e, f"cannot create directory: {reason(err)}; its contents are not restored")
                continue
            self.made_dirs.append(e)

    def finish_dirs(self, *, set_root: bool) -> None:
        """Directory owner, mode, attributes, times and flags, deepest first."""
        self.reporter.verbose("Set directory mode, owner, and times.")
        if self.target is None:
            return
        self.target.drop_private()
        for e in sorted(self.made_dirs, key=lambda d: d.depth, reverse=True):
            rec = self.tree.dirs.get(e.ino)
            if e.failed or rec is None or (e.parent is None and not set_root):
                continue
            self.target.fds.next_op()
            try:
                self._dir_attrs(e, rec.inode, rec.xattrs)
            except OSError as err:
                self._os_problem(e, err)

    def _dir_attrs(self, e: Entry, inode: Inode, xattrs) -> None:
        self.target.attrs_fd(self.target.fds.get(e), inode, xattrs, e)

    # -- files ---------------------------------------------------------------------
    def run(self, rec: InodeRecord | None, leaves: dict[int, list[Entry]], *,
            stop_block: int | None = None, base: int = 0) -> InodeRecord | None:
        """Extract records until the end of the tape; ``leaves`` loses what is done.

        With ``stop_block``, stop before the first record whose header is at
        that block of the medium or later (its position is ``base`` +
        blocks read - 1: a parallel worker's reader starts mid-dump), and
        return that record, unread (None: the dump ended).
        Raises DumpFormatError (truncated or unreadable tape), MediaError or
        OutOfSpaceError, which end the restore; everything else is per file.
        """
        reader = self.reader
        modes = self.modes
        done = 0
        while rec is not None:
            if stop_block is not None and base + reader.blocks_read - 1 >= stop_block:
                return rec
            names = leaves.pop(rec.ino, None)
            if names is None:
                reader.skip(rec)
                if rec.ino in self.tree.dirs and not rec.inode.is_dir:
                    self._contradiction(rec)
            else:
                modes[rec.ino] = rec.inode.mode
                self._extract(rec, names)
                done += 1
                if not done & 15 or rec.inode.size >= 1 << 20:   # a big file moves the bar
                    self._progress()
            rec = reader.next_record()
        return None

    def note_mode(self, ino: int, mode: int) -> None:
        """Record a restored inode's mode."""
        self.modes[ino] = mode

    def _extract(self, rec: InodeRecord, names: list[Entry]) -> None:
        if len(names) > 1 or names[0].parent.failed:
            names = [e for e in names if not e.parent.failed]
            if not names:
                self.reader.skip(rec)
                return
        if self.target is not None:
            self.target.fds.next_op()
        mode = rec.inode.mode
        ftype = stat.S_IFMT(mode)
        if self._per_file:
            self.reporter.verbose(f"extract file {names[0].spath()}", 2)
        if self.target is None:
            self.reader.skip(rec)
        elif rec.header.is_metaonly:
            self._metaonly(rec, names)
        elif ftype == stat.S_IFREG:
            self._regular(rec, names)
        elif ftype == stat.S_IFLNK:
            self._symlink(rec, names)
        elif ftype in _NODE_TYPES:
            self.reader.skip(rec)
            self._named(rec, names, None)
        else:
            self.reader.skip(rec)
            what = "a directory found among the files" if ftype == stat.S_IFDIR else f"unknown file type {mode:o}"
            self.problem(names[0], f"{what}; skipped")
            return
        if rec.damaged:
            self.problem(names[0], "damaged on the tape: " + "; ".join(dict.fromkeys(rec.damaged)))

    # regular files: the hot path of a restore ------------------------------------
    def _regular(self, rec: InodeRecord, names: list[Entry]) -> None:
        try:
            data = self.reader.whole_data(rec)      # most files: one buffer, one write
        except DumpFormatError:
            self.problem(names[0], "incomplete: the dump ends inside this file")
            raise
        gen = self.reader.file_data(rec) if data is None else (data,) if data else ()
        opened = self._open_first(names, rec.ino, rec.inode)
        if opened is None:
            _drain(gen)
            return
        i, e, dfd, fd, temp = opened
        t = self.target
        inode = rec.inode
        partial = temp is None          # under its own name, and not complete yet
        try:
            _write_data(fd, gen, inode.size)
            t.owner_fd(fd, inode, e.parent)
            if rec.xattrs:
                t.xattrs(fd, rec.xattrs, e)
            t.mode_fd(fd, inode, e.parent)
            partial = False
            if temp is not None:
                t.replace(dfd, temp, e.name)
                temp = None
            if i + 1 < len(names):
                self._links(e, fd, names[i + 1:])
            t.times_fd(fd, inode)
            if inode.flags & SETTABLE_FLAGS:
                t.flags_fd(fd, inode.flags, e)
        except OSError as err:
            if err.errno in NO_SPACE:
                self.problem(e, "not restored: the target is full")
                if temp is None:
                    unlink_quietly(dfd, e.name)     # an unfinished file only takes room
                check_space(err, e.spath())
            _drain(gen)
            self.problem(e, reason(err))
        except DumpFormatError:
            self.problem(e, "incomplete: the dump ends inside this file")
            if partial:
                unlink_quietly(dfd, e.name)
            raise
        except BaseException:           # a signal (Interrupted): no partial file under its name
            if partial:
                unlink_quietly(dfd, e.name)
            raise
        finally:
            os.close(fd)
            if temp is not None:
                unlink_quietly(dfd, temp)

    def _open_first(self, names: list[Entry], ino: int, inode: Inode):
        """Create the first name that can be created -> (index, entry, dfd, fd, temp)."""
        t = self.target
        for i, e in enumerate(names):
            try:
                dfd = t.fds.get(e.parent)
                mode = t.create_mode(inode, e.parent)
                if inode.size >= TEMP_MIN_SIZE and not t.exists(dfd, e.name):
                    temp = t.temp_name(dfd, ino)      # renamed when complete
                    return i, e, dfd, os.open(temp, O_NEWFILE, mode, dir_fd=dfd), temp
                try:
                    return i, e, dfd, os.open(e.name, O_NEWFILE, mode, dir_fd=dfd), None
                except FileExistsError:
                    if t.finished_before(dfd, e.name, inode):
                        self.reporter.verbose(f"{e.spath()}: restored by the interrupted run", 2)
                        return None
                    temp = self._temp_for(dfd, e, ino)
                    if temp is None:
                        continue
                    return i, e, dfd, os.open(temp, O_NEWFILE, mode, dir_fd=dfd), temp
            except OSError as err:
                self._os_problem(e, err)
        return None

    def _temp_for(self, dfd: int, e: Entry, ino: int) -> bytes | None:
        """A temporary name for replacing an existing file; None: leave it alone."""
        if self.keep_existing:
            self.reporter.verbose(f"{e.spath()}: exists, kept", 2)
            return None
        if self.target.existing_is_dir(dfd, e.name):
            self.problem(e, "an existing directory is in the way; not replaced")
            return None
        return self.target.temp_name(dfd, ino)

    def _links(self, first: Entry, fd: int, others: list[Entry]) -> None:
        """The other names of a hard-linked inode (classic createlinks()), made from
        the open file: whatever its first name holds by now does not matter."""
        t = self.target
        for e in others:
            try:
                dfd = t.fds.get(e.parent)
                try:
                    t.link_fd(fd, dfd, e.name)
                except FileExistsError:
                    temp = self._temp_for(dfd, e, first.ino)
                    if temp is not None:
                        t.link_fd(fd, dfd, temp)
                        t.replace(dfd, temp, e.name)
            except OSError as err:
                check_space(err, e.spath())
                self.problem(e, f"cannot link to {first.spath()}: {reason(err)}")

    # symlinks, devices, fifos, sockets: made privately, then linked into place --------
    def _symlink(self, rec: InodeRecord, names: list[Entry]) -> None:
        if rec.inode.size > MAX_SYMLINK:     # hostile di_size: never read it into memory
            self.reader.skip(rec)
            self.problem(names[0], f"symbolic link of {rec.inode.size} bytes; skipped")
            return
        data = self.reader.read_all(rec)
        target = data.split(b"\0", 1)[0]
        if not target or len(target) > MAX_SYMLINK:
            self.problem(names[0], "symbolic link with an empty or too long target; skipped")
            return
        self._named(rec, names, target)

    def _named(self, rec: InodeRecord, names: list[Entry], symlink: bytes | None) -> None:
        self.target.make_node(names, rec.inode, rec.xattrs, symlink=symlink,
                         problem=self.problem, os_problem=self._os_problem)

    def _contradiction(self, rec: InodeRecord) -> None:
        """An inode the directory pass called a directory comes back as something else."""
        names = self.tree.by_ino.get(rec.ino) if hasattr(self.tree, "by_ino") else None
        where = names[0].spath() if names else f"(inode {rec.ino})"
        self.problem_path(where, f"inode {rec.ino} is a directory in the directory pass and a"
                          f" {type_name(stat.S_IFMT(rec.inode.mode))} in the file pass;"
                          " the second record is ignored")

    def problem_path(self, path: str, text: str) -> None:
        self.reporter.file_problem(path, text)

    # metadata-only records (dump -m, FORMAT §2.4) ----------------------------------
    def _metaonly(self, rec: InodeRecord, names: list[Entry]) -> None:
        self.reader.skip(rec)
        e = names[0]
        try:
            why = self.target.metadata_only(e, rec.inode, rec.xattrs)
        except FileNotFoundError:
            self.problem(e, "metadata-only record for a file that does not exist; skipped")
            return
        except OSError as err:
            self._os_problem(e, err)
            return
        if why is not None:
            self.problem(e, why)


def _write_data(fd: int, pieces: Iterator, size: int) -> None:
    """Data pieces -> fd; Hole runs become real holes (lseek), trailing ones ftruncate."""
    write = os.write
    lseek = os.lseek
    hole_at_end = False
    for piece in pieces:
        if piece.__class__ is Hole:
            lseek(fd, piece.size, _SEEK_CUR)
            hole_at_end = True
            continue
        n = write(fd, piece)
        if n != len(piece):
            _write_rest(fd, memoryview(piece)[n:])
        hole_at_end = False
    if hole_at_end:
        os.ftruncate(fd, size)


def _write_rest(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _drain(gen: Iterator) -> None:
    for _ in gen:
        pass

