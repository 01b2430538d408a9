"""Directories from the tape -> an in-memory name tree (classic: restore/dirs.c
extractdirs(), treescan(), pathsearch(); the entry tree of symtab.c).

All directories precede all files on the tape (FORMAT §4.1), so the whole name
tree is known before the first file arrives.  Hostile names are dropped here,
once, so nothing later has to think about them: names with '/' or NUL, '.' and
'..' beyond the first two entries, duplicate names, bad inode numbers and
directory loops (a directory reachable under two names).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ndump.format import (
    DIRBLKSIZ, MAX_DIR_SIZE, ROOTINO, DirEntry, FormatReader, Hole, InodeRecord, Inode, unpack_dir,
)

Complain = Callable[[str, str], None]      # (path, reason)
_ENTRY_LE = struct.Struct("<IHBB")         # struct direct's fixed part (FORMAT §4.4)
_ENTRY_BE = struct.Struct(">IHBB")


@dataclass(slots=True)
class DirRecord:
    """A directory as read from the tape."""
    ino: int
    inode: Inode
    entries: list[DirEntry]
    xattrs: list[tuple[str, bytes]] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


class Entry:
    """One name in the tree (classic struct entry).  Identity matters: the
    same inode may have several Entry objects (hard links)."""
    __slots__ = ("name", "parent", "ino", "is_dir", "children", "depth", "failed")

    def __init__(self, name: bytes, parent: "Entry | None", ino: int, is_dir: bool):
        self.name = name
        self.parent = parent
        self.ino = ino
        self.is_dir = is_dir
        self.children: list[Entry] | None = [] if is_dir else None
        self.depth = parent.depth + 1 if parent is not None else 0
        self.failed = False          # could not be created: skip what is below

    def path(self) -> bytes:
        """'.' for the root, './a/b' below it (the classic spelling)."""
        parts = []
        e = self
        while e.parent is not None:
            parts.append(e.name)
            e = e.parent
        parts.append(b".")
        return b"/".join(reversed(parts))

    def spath(self) -> str:
        return self.path().decode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return f"Entry({self.path()!r}, ino={self.ino})"


def read_dirs(reader: FormatReader, complain: Complain, dirs: dict[int, DirRecord]
              ) -> InodeRecord | None:
    """Read the directory part of the tape into ``dirs`` (by inode).

    Returns the first non-directory record (None when the tape holds no
    files), which the caller must handle next.  If the tape ends early the
    reader's error propagates and ``dirs`` keeps what was read.
    """
    for rec in _dir_records(reader, complain, dirs):
        if not rec.inode.is_dir:
            return rec
        entries, damaged = _dir_entries(reader, rec)
        dirs[rec.ino] = DirRecord(rec.ino, rec.inode, entries, rec.xattrs, damaged)
    return None


def read_dir_bytes(reader: FormatReader, complain: Complain, dirs: dict[int, bytes],
                   damaged: dict[int, list[str]]) -> InodeRecord | None:
    """read_dirs() for a listing: each directory kept as its raw bytes (about 24
    bytes a name, against ~300 for a parsed entry), its problems in ``damaged``."""
    for rec in _dir_records(reader, complain, dirs):
        if not rec.inode.is_dir:
            return rec
        data, problems = _dir_data(reader, rec)
        dirs[rec.ino] = data
        if problems:
            damaged[rec.ino] = problems
    return None


def _dir_records(reader: FormatReader, complain: Complain, dirs: dict) -> Iterator[InodeRecord]:
    """The directory records at the start of the tape, each once, then the first
    other record; a directory's second copy is skipped (with a complaint)."""
    while True:
        rec = reader.next_record()
        if rec is None:
            return
        if rec.inode.is_dir and rec.ino in dirs:
            reader.skip(rec)
            complain(f"(inode {rec.ino})", "directory appears twice on the tape, second copy ignored")
            continue
        yield rec
        if not rec.inode.is_dir:
            return


def iter_dir(data: bytes | list[tuple[int, bytes]], order: str, mangled: list[int] | None = None
             ) -> Iterator[tuple[int, bytes]]:
    """(inode, name) of the entries of raw directory data, as unpack_dir() finds
    them (its checks: a bad entry skips the rest of its 512-byte chunk), without
    making an object per entry; ``mangled[0]`` counts the chunks skipped.  A
    directory _dir_data() had to parse in full comes as its (inode, name) list."""
    if not isinstance(data, bytes):
        yield from data
        return
    unpack = (_ENTRY_LE if order == "<" else _ENTRY_BE).unpack_from
    size = len(data)
    pos = 0
    while pos + 8 <= size:
        ino, reclen, _, namlen = unpack(data, pos)
        chunk_end = pos - pos % DIRBLKSIZ + DIRBLKSIZ
        if (reclen & 3 or reclen < 8 + ((namlen + 4) & ~3) or pos + reclen > size
                or pos + reclen > chunk_end or namlen == 0):
            if mangled is not None:
                mangled[0] += 1
            pos = chunk_end
            continue
        if ino:
            yield ino, data[pos + 8:pos + 8 + namlen]
        pos += reclen


def _dir_bytes(reader: FormatReader, rec: InodeRecord) -> bytes | None:
    """A directory's data, or None (skipped) when its size is not believable."""
    if rec.inode.size > MAX_DIR_SIZE:
        reader.skip(rec)
        return None
    parts = []
    hole = 0
    for piece in reader.file_data(rec):
        # holes in a directory cannot hold entries; zeros keep the 512-byte chunking,
        # and a trailing hole (a hostile di_size) is never made into bytes at all
        if isinstance(piece, Hole):
            hole += piece.size
            continue
        if hole:
            parts.append(bytes(hole))
            hole = 0
        parts.append(bytes(piece))
    return b"".join(parts)


def _unbelievable(rec: InodeRecord) -> str:
    return f"directory size {rec.inode.size} is not believable; entries ignored"


def _dir_data(reader: FormatReader, rec: InodeRecord
              ) -> tuple[bytes | list[tuple[int, bytes]], list[str]]:
    """The raw data of a Linux-layout directory whose entries all check; anything
    else (old BSD layouts, stock dump's 255-byte names, damage) parsed in full by
    _parse(), so that a listing sees what extraction sees."""
    data = _dir_bytes(reader, rec)
    if data is None:
        return b"", [_unbelievable(rec)]
    mangled = [0]
    if reader.dir_format == "new":
        for _ in iter_dir(data, reader.order, mangled):
            pass
        if not mangled[0]:
            return data, list(rec.damaged)
    entries, damaged = _parse(reader, rec, data)
    return [(e.ino, e.name) for e in entries if e.ino], damaged


def _dir_entries(reader: FormatReader, rec: InodeRecord) -> tuple[list[DirEntry], list[str]]:
    data = _dir_bytes(reader, rec)
    if data is None:
        return [], [_unbelievable(rec)]
    return _parse(reader, rec, data)


def _parse(reader: FormatReader, rec: InodeRecord, data: bytes) -> tuple[list[DirEntry], list[str]]:
    entries, mangled = unpack_dir(data, reader.order, reader.dir_format)
    damaged = list(rec.damaged)
    for e in entries:
        if e.lost:      # stock dump 0.4b47's 255-byte names (format/dirent.py)
            reader.note(f"directory inode {rec.ino}: stock dump wrote over {e.lost} of the 255"
                        f" bytes of the name of inode {e.ino}; they are given as '?'")
    if mangled:
        damaged.append(f"mangled directory: {mangled} damaged chunk(s) skipped")
    return entries, damaged


class Tree:
    """The name tree of one dump, rooted at inode 2."""

    def __init__(self, dirs: dict[int, DirRecord], maxino: int, complain: Complain, *,
                 release: bool = False):
        """``release``: drop each directory's parsed entries once its names are in the
        tree (a -x or -r needs only the tree; the shell and -C read them again)."""
        self.dirs = dirs
        self.maxino = maxino
        self.root = Entry(b".", None, ROOTINO, True)
        self._by_ino: dict[int, list[Entry]] | None = None
        self._complain = complain
        self._build(release)

    @property
    def by_ino(self) -> dict[int, list[Entry]]:
        """Inode -> its names, in the order they were built; made when first asked for
        (about 115 bytes a name, which a full -r or -x does not need)."""
        if self._by_ino is None:
            index = {ROOTINO: [self.root]}
            stack = [self.root]
            while stack:
                for child in stack.pop().children:
                    names = index.get(child.ino)
                    if names is None:
                        index[child.ino] = [child]
                    else:
                        names.append(child)
                    if child.is_dir:
                        stack.append(child)
            self._by_ino = index
        return self._by_ino

    # -- building ------------------------------------------------------------
    def _build(self, release: bool) -> None:
        seen_dirs = {ROOTINO}
        stack = [self.root]
        while stack:
            parent = stack.pop()
            rec = self.dirs.get(parent.ino)
            if rec is None:
                continue            # not on this tape (lost, or unchanged in an incremental)
            if rec.damaged:
                for reason in rec.damaged:
                    self._complain(parent.spath(), reason)
            names: set[bytes] = set()
            for position, de in enumerate(rec.entries):
                child = self._child(parent, position, de, names, seen_dirs)
                if child is None:
                    continue
                parent.children.append(child)
                if child.is_dir:
                    stack.append(child)
            if release:
                rec.entries = []

    def _child(self, parent: Entry, position: int, de: DirEntry, names: set[bytes],
               seen_dirs: set[int]) -> Entry | None:
        name = de.name
        if name in (b".", b".."):
            if position > 1:
                self._bad(parent, name, f"extra '{name.decode()}' entry")
            return None
        if b"/" in name or b"\0" in name:
            self._bad(parent, name, "name contains '/' or NUL")
            return None
        if name in names:
            self._bad(parent, name, "duplicate name in directory")
            return None
        if de.ino < ROOTINO or de.ino >= self.maxino:
            self._bad(parent, name, f"bad inode number {de.ino}")
            return None
        names.add(name)
        is_dir = de.ino in self.dirs
        if is_dir:
            if de.ino in seen_dirs:
                self._bad(parent, name, f"directory loop (inode {de.ino} already has a name)")
                return None
            seen_dirs.add(de.ino)
        return Entry(name, parent, de.ino, is_dir)

    def _bad(self, parent: Entry, name: bytes, reason: str) -> None:
        shown = name.replace(b"\0", b"\\0").decode("utf-8", "backslashreplace")
        self._complain(f"{parent.spath()}/{shown}", f"{reason}; skipped")

    # -- queries ---------------------------------------------------------------
    def lookup(self, path: str | bytes) -> Entry | None:
        """A path as the user gives it ('a/b', '/a/b', './a/b') -> its entry."""
        e = self.root
        for part in canon_parts(path):
            if part == b"..":
                e = e.parent or e
                continue
            if e.children is None:
                return None
            for child in e.children:
                if child.name == part:
                    e = child
                    break
            else:
                return None
        return e

    def walk(self, start: Entry | None = None) -> Iterator[Entry]:
        """Pre-order, entries in tape order (classic treescan())."""
        stack = [start or self.root]
        while stack:
            e = stack.pop()
            yield e
            if e.children:
                stack.extend(reversed(e.children))


def canon_parts(path: str | bytes) -> list[bytes]:
    raw = path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
    return [p for p in raw.split(b"/") if p not in (b"", b".")]


def canon(path: str | bytes) -> str:
    """The classic spelling of a requested name: './a/b' (classic canon())."""
    parts = canon_parts(path)
    return "/".join(["."] + [p.decode("utf-8", "surrogateescape") for p in parts])
