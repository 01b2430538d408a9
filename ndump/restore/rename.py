"""EXTRACT N|Y|E (SPEC §5.1): which names a writing restore starts from, and
``SRC=DEST`` renames (ONTAP dump's EXTRACT=E; no classic counterpart).

N restores the whole tree, Y the named paths (what ``-x paths`` means), E the
named ``SRC=DEST`` pairs, each SRC (a file, a directory and everything under
it) under the new name DEST.  A rename moves the entry in the in-memory name
tree before anything is written; directories DEST needs that the dump does
not have are made as new directories (mode 0755, owned by the restoring user).
"""
from __future__ import annotations

import os
import stat
import time

from ndump.errors import UsageError
from ndump.format import Inode
from ndump.restore.dirs import DirRecord, Entry, Tree, canon, canon_parts

EXTRACT_MODES = ("N", "Y", "E")


def extract_mode(options) -> str:
    """The EXTRACT value for a run (``options``: RestoreOptions): the one the command
    line resolved (--extract, else NDUMP_EXTRACT), else the default: N for -r/-R and
    for -x without names, Y for -x with names, E when pairs are given."""
    mode, value, paths, renames = options.mode, options.extract, options.paths, options.renames
    if value is None or value == "":
        if renames:
            return "E"
        return "Y" if paths and mode == "x" else "N"
    value = value.strip().upper()
    if value not in EXTRACT_MODES:
        raise UsageError(f"--extract takes N, Y or E (got {value!r})")
    if mode in ("r", "R") and value != "N":
        raise UsageError(f"-{mode} restores the whole tree: --extract {value} needs -x")
    if value == "N" and paths and mode == "x":
        raise UsageError("--extract N restores the whole tree and takes no file names")
    if value == "Y" and not paths and mode == "x":
        raise UsageError("--extract Y needs the names of the files to extract")
    if value == "E" and not (paths or renames) and mode == "x":
        raise UsageError("--extract E needs SRC=DEST pairs")
    return value


def parse_pairs(paths: tuple[str, ...]) -> list[tuple[str, str]]:
    """'SRC=DEST' arguments -> [(SRC, DEST)]; both must name something below the root."""
    pairs = []
    for arg in paths:
        src, sep, dest = arg.partition("=")
        if not sep:
            raise UsageError(f"--extract E takes SRC=DEST pairs (got {arg!r})")
        for what, path in (("source", src), ("new name", dest)):
            parts = canon_parts(path)
            if not parts:
                raise UsageError(f"{arg!r}: the {what} must name something below the dump's root")
            if b".." in parts:
                raise UsageError(f"{arg!r}: the {what} may not contain '..'")
        pairs.append((src, dest))
    return pairs


class Renamer:
    """Applies SRC=DEST pairs to a Tree; returns the moved entries (the starts)."""

    def __init__(self, tree: Tree, complain):
        self.tree = tree
        self.complain = complain
        self._next_ino = max(tree.maxino, max(tree.dirs, default=0)) + 1

    def apply(self, pairs: list[tuple[str, str]]) -> list[Entry]:
        starts = []
        for src, dest in pairs:
            e = self._one(src, dest)
            if e is not None:
                starts.append(e)
        return starts

    def _one(self, src: str, dest: str) -> Entry | None:
        e = self.tree.lookup(src)
        if e is None:
            self.complain(canon(src), "not on the tape")
            return None
        if e.parent is None:
            raise UsageError(f"{src}={dest}: the dump's root cannot be renamed")
        parts = canon_parts(dest)
        parent = self._dest_parent(parts[:-1], e, f"{src}={dest}")
        _detach(e)
        old = next((c for c in parent.children if c.name == parts[-1]), None)
        if old is not None:
            _detach(old)         # the dump's own DEST is replaced by SRC
        e.name = parts[-1]
        e.parent = parent
        parent.children.append(e)
        _redepth(e)
        return e

    def _dest_parent(self, parts: list[bytes], moving: Entry, pair: str) -> Entry:
        """The directory DEST goes into, made in the tree where the dump has none."""
        p = self.tree.root
        for part in parts:
            if p is moving:
                raise UsageError(f"{pair}: the new name lies inside the source")
            child = next((c for c in p.children if c.name == part), None)
            if child is None:
                child = self._new_dir(p, part)
            elif not child.is_dir:
                raise UsageError(f"{pair}: {child.spath()} is not a directory in the dump")
            p = child
        if p is moving:
            raise UsageError(f"{pair}: the new name lies inside the source")
        return p

    def _new_dir(self, parent: Entry, name: bytes) -> Entry:
        ino = self._next_ino
        self._next_ino += 1
        now = time.time_ns()
        inode = Inode(mode=stat.S_IFDIR | 0o755, nlink=2, uid=os.geteuid(), gid=os.getegid(),
                      atime=now // 10**9, atime_ns=now % 10**9,
                      mtime=now // 10**9, mtime_ns=now % 10**9, ctime=now // 10**9)
        self.tree.dirs[ino] = DirRecord(ino, inode, [])
        e = Entry(name, parent, ino, True)
        parent.children.append(e)
        self.tree.by_ino[ino] = [e]
        return e


def _detach(e: Entry) -> None:
    siblings = e.parent.children
    for i, c in enumerate(siblings):
        if c is e:
            del siblings[i]
            return


def _redepth(start: Entry) -> None:
    stack = [start]
    while stack:
        e = stack.pop()
        e.depth = e.parent.depth + 1
        if e.children:
            stack.extend(e.children)


def starts(run, tree: Tree) -> list[Entry]:
    """Where a writing restore (-x) starts, by EXTRACT mode."""
    options = run.options
    value = extract_mode(options)
    if value == "E":
        pairs = list(options.renames) or parse_pairs(options.paths)
        return Renamer(tree, run.reporter.file_problem).apply(pairs)
    return run.starts(tree) if value == "Y" else [tree.root]
