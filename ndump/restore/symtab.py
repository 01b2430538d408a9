"""``restoresymtable``: what a -r restore leaves for the next incremental and
for -R (classic: restore/symtab.c dumpsymtable()/initsymtable(); FORMAT §6.3).

Classic restore writes its in-memory structs; ndump writes its own format,
safe to read back: a first line naming the format, then one JSON document.
It holds the name tree by dump inode (each directory's names and their
inodes), the mode of every restored inode, the dump date (c_date, which the
next incremental's c_ddate must equal) and that dump's own base date.
Names are bytes; in JSON they are strings decoded with surrogateescape.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field

from ndump.errors import StartupError
from ndump.restore.dirs import Tree

NAME = b"restoresymtable"
MAGIC = "ndump-restoresymtable"
VERSION = 1
EXTRACTING = "extracting"      # written before the files; -R resumes from it
COMPLETE = "complete"
MAX_BYTES = 1 << 31


class SymtabError(StartupError):
    """restoresymtable is missing, foreign or damaged."""


class NoSymtabError(SymtabError):
    """There is no restoresymtable in the target."""


@dataclass
class SymbolTable:
    dumpdate: int                # c_date of the dump last restored
    dumptime: int                # c_ddate of that dump (0 for a level 0)
    level: int
    volume: int
    maxino: int
    ntrec: int
    state: str = EXTRACTING
    dirs: dict[int, list[tuple[bytes, int]]] = field(default_factory=dict)
    modes: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_tree(cls, tree: Tree | None, tape, *, volume: int, modes: dict[int, int],
                  state: str) -> "SymbolTable":
        """The table for a restored tree (``tree`` None: just the dump's identity)."""
        table = cls(dumpdate=tape.date, dumptime=tape.ddate, level=tape.level, volume=volume,
                    maxino=tree.maxino if tree else 0, ntrec=tape.ntrec, state=state)
        if tree is None:
            return table
        # views of the tree and the modes, read while the table is written: a copy
        # would cost a few hundred bytes a name at the end of a restore (its peak)
        table.dirs = _TreeDirs(tree)
        table.modes = _Modes(tree.dirs, modes)
        return table

    # -- writing -----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())

    def chunks(self):
        """The file's bytes in pieces (one a directory, modes a thousand at a time):
        the whole document is never in memory at once.  Joined, they are one JSON
        document as json.dumps writes it."""
        def enc(value) -> bytes:
            return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")

        head = {k: getattr(self, k) for k in ("dumpdate", "dumptime", "level", "volume",
                                              "maxino", "ntrec", "state")}
        yield f"{MAGIC} {VERSION}\n".encode("ascii") + enc(head)[:-1] + b',"dirs":['
        sep = b""
        for ino, names in self.dirs.items():
            yield sep + enc([ino, [[_s(n), child] for n, child in names]])
            sep = b","
        yield b'],"modes":['
        sep = b""
        batch: list = []
        for pair in self.modes.items():
            batch.append(pair)
            if len(batch) == 1000:
                yield sep + enc(batch)[1:-1]
                sep, batch = b",", []
        if batch:
            yield sep + enc(batch)[1:-1]
        yield b"]}\n"

    def save(self, dir_fd: int) -> None:
        """Write atomically (temporary name, fsync, rename) at the target's top."""
        # a fresh name (O_EXCL): never a file, link or fifo someone put there
        temp = NAME + b".tmp-%d-%s" % (os.getpid(), os.urandom(4).hex().encode())
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
        try:
            pending: list[bytes] = []
            size = 0
            for chunk in self.chunks():
                pending.append(chunk)
                size += len(chunk)
                if size >= 1 << 20:
                    _write_all(fd, b"".join(pending))
                    pending, size = [], 0
            _write_all(fd, b"".join(pending))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    # -- reading -----------------------------------------------------------------
    @classmethod
    def from_bytes(cls, raw: bytes) -> "SymbolTable":
        first, _, body = raw.partition(b"\n")
        if first != f"{MAGIC} {VERSION}".encode():
            raise SymtabError("restoresymtable was not written by this version of ndump restore")
        try:
            doc = json.loads(body)
            table = cls(**{k: _int(doc[k]) for k in ("dumpdate", "dumptime", "level", "volume",
                                                     "maxino", "ntrec")},
                        state=str(doc["state"]))
            for ino, names in doc["dirs"]:
                table.dirs[_int(ino)] = [(_name(n), _int(child)) for n, child in names]
            for ino, mode in doc["modes"]:
                table.modes[_int(ino)] = _int(mode)
        except (ValueError, KeyError, TypeError) as e:
            raise SymtabError(f"restoresymtable is damaged ({e})") from None
        except RecursionError:          # JSON nested deeper than Python recurses
            raise SymtabError("restoresymtable is damaged (nested too deep)") from None
        if table.state not in (EXTRACTING, COMPLETE):
            raise SymtabError("restoresymtable is damaged (unknown state)")
        return table

    @classmethod
    def load(cls, dir_fd: int) -> "SymbolTable":
        try:
            fd = os.open(NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            raise NoSymtabError("cannot find restoresymtable: run restore -r with a level 0 dump first") from None
        except OSError as e:
            raise SymtabError(f"cannot open restoresymtable: {os.strerror(e.errno).lower()}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SymtabError("restoresymtable is not a regular file")
            chunks = []
            total = 0
            while chunk := os.read(fd, 1 << 20):
                total += len(chunk)
                if total > MAX_BYTES:
                    raise SymtabError("restoresymtable is too large")
                chunks.append(chunk)
        finally:
            os.close(fd)
        return cls.from_bytes(b"".join(chunks))


class _TreeDirs:
    """table.dirs of a restored tree, made as it is read: directory inode ->
    [(name, inode)] of its names, for the directories and names that exist."""

    def __init__(self, tree: Tree):
        self._tree = tree

    def items(self):
        for e in self._tree.walk():
            if e.children is not None and not e.failed:
                yield e.ino, [(c.name, c.ino) for c in e.children if not c.failed]


class _Modes:
    """table.modes of a restored tree: the directories' modes from the tape, updated
    by those of the inodes restored (as dict.update would, without the copy)."""

    def __init__(self, dirs: dict, modes: dict[int, int]):
        self._dirs = dirs
        self._modes = modes

    def items(self):
        modes = self._modes
        for ino, rec in self._dirs.items():
            yield ino, modes.get(ino, rec.inode.mode)
        dirs = self._dirs
        for ino, mode in modes.items():
            if ino not in dirs:
                yield ino, mode


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _s(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def _int(v) -> int:
    if type(v) is not int or v < 0:
        raise ValueError(f"bad number {v!r}")
    return v


def _name(v) -> bytes:
    if type(v) is not str:
        raise ValueError("bad name")
    raw = v.encode("utf-8", "surrogateescape")
    if not raw or b"/" in raw or b"\0" in raw or raw in (b".", b".."):
        raise ValueError(f"bad name {v!r}")
    return raw
