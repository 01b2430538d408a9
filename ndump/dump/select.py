"""Pass I and II: walk the tree and decide what goes in (classic: dump/traverse.c
mapfiles() and mapdirs()).

The walk stays on PATH's filesystem; another filesystem mounted inside is kept as
an empty directory.  Sockets are skipped with a note (SPEC §3.1).  A level-N
dump selects what changed (mtime or ctime, whole seconds) since the base date,
then every directory on the way to a selected inode (FORMAT §6.1).
"""
from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field

from ndump.format.constants import (
    DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, ROOTINO,
)
from ndump.format.inode import NODUMP_FL
from ndump.fsmeta import get_flags
from ndump.dump.inomap import InodeMap, foreign_key
from ndump.report import Reporter

_DTYPES = {stat.S_IFDIR: DT_DIR, stat.S_IFREG: DT_REG, stat.S_IFLNK: DT_LNK,
           stat.S_IFCHR: DT_CHR, stat.S_IFBLK: DT_BLK, stat.S_IFIFO: DT_FIFO}
ROOT_KEY = -1          # the dumped directory, whatever its inode number


@dataclass(slots=True)
class DirNode:
    relpath: bytes                # b"" for the root
    parent: int                   # key of the parent directory
    entries: list = field(default_factory=list)   # [(name, key, dtype)]
    changed: bool = True
    foreign: bool = False         # a mount point: dumped empty
    dumped: bool = False


@dataclass
class Selection:
    """What Pass I/II decided; keys are filesystem inode numbers (or foreign keys)."""
    dirs: dict[int, DirNode]
    files: dict[int, tuple[int, bytes]]        # key -> (parent dir key, name), selected files
    all_keys: set[int]
    data_bytes: int = 0
    inodes: int = 0
    blocks: int = 0

    def dumped_dirs(self) -> list[int]:
        return [k for k, d in self.dirs.items() if d.dumped]


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
    _new: list[int] = field(default_factory=list)

    def run(self) -> Selection:
        st = os.lstat(self.root)
        self.dev = st.st_dev
        root = DirNode(b"", ROOT_KEY, changed=True)
        dirs = {ROOT_KEY: root}
        files: dict[int, tuple[int, bytes]] = {}
        sel = Selection(dirs, files, {ROOT_KEY})
        stack = [ROOT_KEY]
        honor = self.level >= self.honor_level
        while stack:
            key = stack.pop()
            node = dirs[key]
            if node.foreign:
                continue
            for name, est in self._scan(node.relpath):
                if self._excluded(node.relpath, name, est, honor):
                    continue
                self._visit(key, node, name, est, sel, stack)
        self._map_numbers(sel)
        self._mark_dirs(sel)
        return sel

    def _scan(self, relpath: bytes):
        path = os.path.join(self.root, relpath) if relpath else self.root
        try:
            with os.scandir(path) as it:
                names = sorted(e.name for e in it)
        except OSError as e:
            self.reporter.file_problem(_show(relpath), f"cannot read directory: {e.strerror}")
            return
        for name in names:
            try:
                yield name, os.lstat(os.path.join(path, name))
            except FileNotFoundError:
                continue
            except OSError as e:
                self.reporter.file_problem(_show(os.path.join(relpath, name)), e.strerror or str(e))

    def _excluded(self, relpath: bytes, name: bytes, st: os.stat_result, honor: bool) -> bool:
        if stat.S_ISSOCK(st.st_mode):
            self.reporter.verbose(f"{_show(os.path.join(relpath, name))}: socket not dumped")
            return True
        if self.excludes:
            rel = os.fsdecode(os.path.join(relpath, name))
            for pat in self.excludes:
                if fnmatch.fnmatchcase(os.fsdecode(name), pat) or fnmatch.fnmatchcase(rel, pat) \
                        or fnmatch.fnmatchcase("/" + rel, pat):
                    return True
        if honor and (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and st.st_dev == self.dev:
            return self._nodump(os.path.join(self.root, relpath, name))
        return False

    def _nodump(self, path: bytes) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOATIME)
        except PermissionError:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return False
        except OSError:
            return False
        try:
            return bool(get_flags(fd) & NODUMP_FL)
        finally:
            os.close(fd)

    def _visit(self, parent: int, node: DirNode, name: bytes, st: os.stat_result,
               sel: Selection, stack: list[int]) -> None:
        relpath = os.path.join(node.relpath, name) if node.relpath else name
        fmt = stat.S_IFMT(st.st_mode)
        if st.st_dev != self.dev:
            if fmt != stat.S_IFDIR:
                return
            key = foreign_key(relpath)
            sel.dirs[key] = DirNode(relpath, parent, changed=True, foreign=True)
            self.reporter.info(f"{_show(relpath)}: another filesystem mounted here, dumped as an empty directory")
        else:
            key = st.st_ino
        node.entries.append((name, key, _DTYPES.get(fmt, 0)))
        if key in sel.all_keys:
            return                                   # another name of a hard link
        sel.all_keys.add(key)
        if self.inomap.known(key) is None:
            self._new.append(key)
        changed = self.level == 0 or max(st.st_mtime, st.st_ctime) >= self.base_date
        if fmt == stat.S_IFDIR:
            if key not in sel.dirs:
                sel.dirs[key] = DirNode(relpath, parent, changed=changed)
                stack.append(key)
            return
        if changed:
            sel.files[key] = (parent, name)
            sel.inodes += 1
            if fmt == stat.S_IFREG:
                sel.data_bytes += min(st.st_size, st.st_blocks * 512)
                sel.blocks += 1 + (min(st.st_size, st.st_blocks * 512) + 1023) // 1024 + (st.st_size >> 19)
            else:
                sel.blocks += 2

    def _map_numbers(self, sel: Selection) -> None:
        # keys are numbered in walk order; a stack walk is depth-first in sorted order
        self.inomap.assign(self._new, level0=self.level == 0, seen=sel.all_keys)
        self.inomap.map[ROOT_KEY] = ROOTINO

    def _mark_dirs(self, sel: Selection) -> None:
        """Pass II: a directory goes in when it changed or leads to something that did."""
        dirs = sel.dirs
        for parent, _name in sel.files.values():
            _mark_up(dirs, parent)
        for key, node in list(dirs.items()):
            if node.changed:
                _mark_up(dirs, key)
        for node in dirs.values():
            if node.dumped:
                sel.inodes += 1
                sel.blocks += 2 + len(node.entries) // 20


def _mark_up(dirs: dict[int, DirNode], key: int) -> None:
    while True:
        node = dirs[key]
        if node.dumped:
            return
        node.dumped = True
        if key == ROOT_KEY:
            return
        key = node.parent


def _show(relpath: bytes) -> str:
    return os.fsdecode(relpath) if relpath else "."
