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
from ndump.fsmeta import Statx, get_flags
from ndump.dump.inomap import InodeMap, foreign_key
from ndump.dump.treefd import FILE_FLAGS, TreeFds
from ndump.errors import reason
from ndump.report import Reporter

_DTYPES = {stat.S_IFDIR: DT_DIR, stat.S_IFREG: DT_REG, stat.S_IFLNK: DT_LNK,
           stat.S_IFCHR: DT_CHR, stat.S_IFBLK: DT_BLK, stat.S_IFIFO: DT_FIFO}
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
        try:
            dfd = fds.open(node.relpath)
            # names of a directory descriptor come as str (surrogateescape): back to bytes
            names = sorted([n.encode(_FS_ENCODING, _FS_ERRORS) for n in os.listdir(dfd)])
        except OSError as e:
            node.unreadable = True
            self.reporter.file_problem(show_path(node.relpath), f"cannot read directory: {reason(e)}")
            return
        prefix = node.relpath + b"/" if node.relpath else b""
        lstat = os.lstat
        # with the nodump flag honoured, one statx gives the stat and the flag
        statx_lstat = self._statx.lstat if honor else None
        nodump = None
        excludes = bool(self.excludes)
        for name in names:
            try:
                if statx_lstat is None:
                    st = lstat(name, dir_fd=dfd)
                else:
                    st, nodump = statx_lstat(name, dfd)
            except FileNotFoundError:
                continue
            except OSError as e:
                self.reporter.file_problem(show_path(prefix + name), reason(e))
                continue
            # (sockets, -e patterns and the nodump flag: most names need none of them;
            # a flag statx reported clear needs no look either)
            if (excludes or (honor and nodump is not False)
                    or st.st_mode & 0o170000 == stat.S_IFSOCK) \
                    and self._excluded(prefix + name, dfd, name, st, honor, nodump):
                continue
            # a bind mount of this filesystem has its st_dev: statx tells (directories)
            mounted = stat.S_ISDIR(st.st_mode) and st.st_dev == self.dev \
                and self._statx.mount_root(name, dfd)
            self._visit(di, node, name, prefix + name, st, sel, stack, mounted)

    def _excluded(self, relpath: bytes, dfd: int, name: bytes, st: os.stat_result, honor: bool,
                  nodump: bool | None = None) -> bool:
        fmt = st.st_mode & 0o170000
        if fmt == stat.S_IFSOCK:
            self.reporter.verbose(f"{show_path(relpath)}: socket not dumped")
            return True
        if self.excludes and _matches(self.excludes, name, relpath):
            self.reporter.verbose(f"{show_path(relpath)}: excluded")
            return True
        if honor and (fmt == stat.S_IFREG or fmt == stat.S_IFDIR) \
                and st.st_dev == self.dev and (nodump if nodump is not None
                                               else _nodump(self._statx, dfd, name)):
            self.reporter.verbose(f"{show_path(relpath)}: nodump flag set, not dumped")
            return True
        return False

    def _visit(self, di: int, node: DirNode, name: bytes, relpath: bytes, st: os.stat_result,
               sel: Selection, stack: list[int], mounted: bool = False) -> None:
        fmt = st.st_mode & 0o170000
        if st.st_dev != self.dev or mounted:
            if fmt != stat.S_IFDIR:
                return
            key = foreign_key(relpath)
            # a mount point, or a btrfs subvolume (its own st_dev): a snapshot of
            # this filesystem would not hold it either (SPEC §3.1)
            what = "a bind mount" if st.st_dev == self.dev else \
                "another filesystem or btrfs subvolume"
            self.reporter.warning(f"{show_path(relpath)}: {what}; dumped as an empty directory")
        else:
            key = st.st_ino
        if len(name) >= 255:
            self.reporter.warning(f"{show_path(relpath)}: a 255-byte name; stock restore 0.4b47"
                                  " cannot restore it (FORMAT §11.1 item 14), ndump restore can")
        node.names.append(name)
        node.keys.append(key)
        node.dtypes.append(_DTYPES.get(fmt, 0))
        changed = self.level == 0 or max(st.st_mtime, st.st_ctime) >= self.base_date
        if fmt == stat.S_IFDIR:
            node.chosen.append(0)
            if key not in self._dir_index:
                self._dir_index[key] = len(sel.dirs)
                stack.append(len(sel.dirs))
                sel.dirs.append(DirNode(relpath, di, key=key, changed=changed,
                                        foreign=key != st.st_ino))
            return
        if st.st_nlink > 1:
            if key in self._linked:                  # another name of a hard link
                node.chosen.append(0)
                # classic dump marks the parents of every name of a dumped inode:
                # restore -r must see this name too, or it keeps the old file here
                node.links |= changed
                return
            self._linked.add(key)
        node.chosen.append(1 if changed else 0)
        if changed:
            sel.inodes += 1
            if fmt == stat.S_IFREG:
                used = min(st.st_size, st.st_blocks * 512)
                sel.data_bytes += used
                sel.blocks += 1 + (used + 1023) // 1024 + (st.st_size >> 19)
            else:
                sel.blocks += 2

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
            for i, flag in enumerate(d.chosen):
                if flag:
                    files[m[d.keys[i]]] = (di << 32 | i) + 1
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
