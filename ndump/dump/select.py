"""Pass I and II: walk the tree and decide what goes in (classic: dump/traverse.c
mapfiles() and mapdirs()).

The walk stays on PATH's filesystem; another filesystem mounted inside is kept as
an empty directory.  Sockets are skipped with a note (SPEC §3.1).  A level-N
dump selects what changed (mtime or ctime, whole seconds) since the base date,
then every directory on the way to a selected inode (FORMAT §6.1).

Memory matters (a million files must dump in well under 500 MiB), so each
directory keeps its entries as parallel arrays, and files are found again by a
table indexed by dump inode number rather than by per-file objects.
"""
from __future__ import annotations

import fnmatch
import os
import stat
import sys
from array import array
from dataclasses import dataclass, field

from ndump.format.constants import DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, ROOTINO
from ndump.format.inode import NODUMP_FL
from ndump.fsmeta import Statx, entry_stat, get_flags
from ndump.dump.inomap import InodeMap, foreign_key
from ndump.dump.treefd import FILE_FLAGS, TreeFds
from ndump.errors import reason
from ndump.report import Reporter

_DTYPES = {stat.S_IFDIR: DT_DIR, stat.S_IFREG: DT_REG, stat.S_IFLNK: DT_LNK,
           stat.S_IFCHR: DT_CHR, stat.S_IFBLK: DT_BLK, stat.S_IFIFO: DT_FIFO}
_S_IFDIR, _S_IFREG, _S_IFSOCK = stat.S_IFDIR, stat.S_IFREG, stat.S_IFSOCK
ROOT_KEY = 0           # the dumped directory, whatever its inode number (no inode is 0)
# os.fsencode's encoding, without its per-name call
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


@dataclass(slots=True)
class DirNode:
    relpath: bytes                # b"" for the root
    parent: int                   # index of the parent directory in Selection.dirs
    names: list = field(default_factory=list)
    keys: array = field(default_factory=lambda: array("Q"))
    dtypes: bytearray = field(default_factory=bytearray)
    chosen: bytearray = field(default_factory=bytearray)   # 1: first name of a selected file
    key: int = ROOT_KEY
    changed: bool = True
    foreign: bool = False         # a mount point: dumped empty
    dumped: bool = False
    links: bool = False           # holds another name of a selected hard-linked file
    unreadable: bool = False      # Pass I could not list it (reported there)
    lost: bool = False            # gone when Pass III or IV came to it (reported once)


@dataclass
class Selection:
    """What Pass I/II decided.  ``files`` maps a dump inode number to
    ``(dir index << 32 | entry index) + 1`` of its first name (0: not selected)."""
    dirs: list[DirNode]
    files: array = field(default_factory=lambda: array("Q"))
    maxino: int = ROOTINO
    data_bytes: int = 0
    inodes: int = 0
    blocks: int = 0

    def file_entries(self, start: int = 0):
        """(dino, directory, entry index) of every selected file from dump inode
        ``start`` on, ascending dino."""
        files = self.files
        for dino in range(start, len(files)):
            where = files[dino]
            if where:
                where -= 1
                yield dino, self.dirs[where >> 32], where & 0xFFFFFFFF


@dataclass
class Walk:
    root: bytes
    level: int
    base_date: int
    honor_level: int
    excludes: tuple[str, ...]
    inomap: InodeMap
    reporter: Reporter
    dev: int = 0

    def run(self) -> Selection:
        self.dev = os.lstat(self.root).st_dev
        self._statx = Statx()
        self._entry_stat = entry_stat()
        sel = Selection([DirNode(b"", 0)])
        self._dir_index = {ROOT_KEY: 0}
        self._linked: set[int] = set()
        honor = self.level >= self.honor_level
        stack = [0]
        with TreeFds(self.root) as fds:
            while stack:
                di = stack.pop()
                node = sel.dirs[di]
                if not node.foreign:
                    self._scan(fds, di, node, sel, stack, honor)
        self._number(sel)
        self._mark_dirs(sel)
        return sel

    # -- Pass I --------------------------------------------------------------
    def _scan(self, fds: TreeFds, di: int, node: DirNode, sel: Selection, stack: list[int],
              honor: bool) -> None:
        """One directory's entries, one stat each.  The common case (a file or
        directory on this filesystem, neither excluded nor a mount point) is
        decided here with local variables only: Pass I pays it for every entry
        of the tree, at every level."""
        try:
            dfd = fds.open(node.relpath)
            names = _list(dfd)
        except OSError as e:
            node.unreadable = True
            self.reporter.file_problem(show_path(node.relpath), f"cannot read directory: {reason(e)}")
            return
        prefix = node.relpath + b"/" if node.relpath else b""
        lstat = os.lstat
        # with the nodump flag honoured, one statx gives the stat and the flag
        entry_stat = self._entry_stat if honor else None
        nodump = None
        excludes = bool(self.excludes)
        dev, level0, base = self.dev, self.level == 0, self.base_date
        dir_index, linked, dtypes_of = self._dir_index, self._linked, _DTYPES
        add_name, add_key = node.names.append, node.keys.append
        add_dtype, add_chosen = node.dtypes.append, node.chosen.append
        inodes = data_bytes = blocks = 0
        links = False
        for name in names:
            try:
                if entry_stat is None:
                    st = lstat(name, dir_fd=dfd)
                    mode, ino, st_dev, nlink, _, _, size, _, mtime, ctime = st
                else:
                    mode, ino, st_dev, nlink, size, nblocks, mtime, ctime, nodump = \
                        entry_stat(name, dfd)
            except FileNotFoundError:
                continue
            except OSError as e:
                self.reporter.file_problem(show_path(prefix + name), reason(e))
                continue
            fmt = mode & 0o170000
            # (sockets, -e patterns and the nodump flag: most names need none of them;
            # a flag statx reported clear needs no look either)
            if (excludes or (honor and nodump is not False) or fmt == _S_IFSOCK) \
                    and self._excluded(prefix + name, dfd, name, fmt, st_dev, honor, nodump):
                continue
            key = ino
            if fmt == _S_IFDIR:
                # a bind mount of this filesystem has its st_dev: statx tells (directories)
                if st_dev != dev or self._statx.mount_root(name, dfd):
                    key = self._foreign(prefix + name, st_dev)
            elif st_dev != dev:
                continue
            if len(name) >= 255:
                self.reporter.warning(f"{show_path(prefix + name)}: a 255-byte name; stock restore"
                                      " 0.4b47 cannot restore it (FORMAT §11.1 item 14), ndump"
                                      " restore can")
            add_name(name)
            add_key(key)
            add_dtype(dtypes_of.get(fmt, 0))
            # whole seconds, as classic dump compares them
            changed = level0 or mtime >= base or ctime >= base
            if fmt == _S_IFDIR:
                add_chosen(0)
                if key not in dir_index:
                    dir_index[key] = len(sel.dirs)
                    stack.append(len(sel.dirs))
                    sel.dirs.append(DirNode(prefix + name, di, key=key, changed=changed,
                                            foreign=key != ino))
                continue
            if nlink > 1:
                if key in linked:                    # another name of a hard link
                    add_chosen(0)
                    # classic dump marks the parents of every name of a dumped inode:
                    # restore -r must see this name too, or it keeps the old file here
                    links |= changed
                    continue
                linked.add(key)
            if not changed:
                add_chosen(0)
                continue
            add_chosen(1)
            inodes += 1
            if fmt == _S_IFREG:
                if entry_stat is None:
                    nblocks = st.st_blocks
                used = min(size, nblocks * 512)
                data_bytes += used
                blocks += 1 + (used + 1023) // 1024 + (size >> 19)
            else:
                blocks += 2
        node.links |= links
        sel.inodes += inodes
        sel.data_bytes += data_bytes
        sel.blocks += blocks

    def _foreign(self, relpath: bytes, st_dev: int) -> int:
        """The key of a directory something else is mounted on (and the warning that
        it is dumped empty)."""
        # a mount point, or a btrfs subvolume (its own st_dev): a snapshot of
        # this filesystem would not hold it either (SPEC §3.1)
        what = "a bind mount" if st_dev == self.dev else "another filesystem or btrfs subvolume"
        self.reporter.warning(f"{show_path(relpath)}: {what}; dumped as an empty directory")
        return foreign_key(relpath)

    def _excluded(self, relpath: bytes, dfd: int, name: bytes, fmt: int, st_dev: int,
                  honor: bool, nodump: bool | None = None) -> bool:
        if fmt == _S_IFSOCK:
            self.reporter.verbose(f"{show_path(relpath)}: socket not dumped")
            return True
        if self.excludes and _matches(self.excludes, name, relpath):
            self.reporter.verbose(f"{show_path(relpath)}: excluded")
            return True
        if honor and (fmt == _S_IFREG or fmt == _S_IFDIR) \
                and st_dev == self.dev and (nodump if nodump is not None
                                            else _nodump(self._statx, dfd, name)):
            self.reporter.verbose(f"{show_path(relpath)}: nodump flag set, not dumped")
            return True
        return False

    # -- numbering and Pass II -------------------------------------------------
    def _number(self, sel: Selection) -> None:
        """Dump inode numbers for every key (inomap rules), then the file table."""
        keys = (k for d in sel.dirs for k in d.keys)
        self.inomap.assign(keys, level0=self.level == 0,
                           all_keys=lambda: (k for d in sel.dirs for k in d.keys))
        m = self.inomap.map
        m[ROOT_KEY] = ROOTINO
        sel.maxino = max(m.values(), default=ROOTINO)
        files = array("Q", bytes(8 * (sel.maxino + 1)))
        for di, d in enumerate(sel.dirs):
            chosen, keys = d.chosen, d.keys
            if chosen.count(1) * 4 > len(chosen):
                for i, flag in enumerate(chosen):
                    if flag:
                        files[m[keys[i]]] = (di << 32 | i) + 1
                continue
            i = chosen.find(1)                      # an incremental chooses few
            while i >= 0:
                files[m[keys[i]]] = (di << 32 | i) + 1
                i = chosen.find(1, i + 1)
        sel.files = files

    def _mark_dirs(self, sel: Selection) -> None:
        """Pass II: a directory goes in when it changed or leads to something that did."""
        dirs = sel.dirs
        for di, d in enumerate(dirs):
            if d.changed or d.links or any(d.chosen):
                _mark_up(dirs, di)
        for d in dirs:
            if d.dumped:
                sel.inodes += 1
                sel.blocks += 2 + len(d.names) // 20


def _list(dfd: int) -> list[bytes]:
    """The names in a directory, sorted: through /proc they come as bytes (a
    directory descriptor gives str, encoded back name by name)."""
    try:
        names = os.listdir(b"/proc/self/fd/%d" % dfd)
    except OSError:
        names = [n.encode(_FS_ENCODING, _FS_ERRORS) for n in os.listdir(dfd)]
    names.sort()
    return names


def _mark_up(dirs: list[DirNode], di: int) -> None:
    while True:
        node = dirs[di]
        if node.dumped:
            return
        node.dumped = True
        if di == 0:
            return
        di = node.parent


def _matches(patterns: tuple[str, ...], name: bytes, relpath: bytes) -> bool:
    sname, srel = os.fsdecode(name), os.fsdecode(relpath)
    return any(fnmatch.fnmatchcase(sname, p) or fnmatch.fnmatchcase(srel, p)
               or fnmatch.fnmatchcase("/" + srel, p) for p in patterns)


def _nodump(statx: Statx, dfd: int, name: bytes) -> bool:
    known = statx.nodump_attribute(name, dir_fd=dfd)
    if known is not None:
        return known
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dfd)
    except OSError:
        return False
    try:
        return bool(get_flags(fd) & NODUMP_FL)
    finally:
        os.close(fd)


def show_path(relpath: bytes) -> str:
    """A path relative to the dumped directory, for messages: './a/b', as restore names it."""
    return "./" + relpath.decode(_FS_ENCODING, _FS_ERRORS) if relpath else "."
