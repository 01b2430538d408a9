"""Persistent mapping from filesystem inode numbers to dump inode numbers.

Rule (SPEC §3.1, FORMAT §11.1 item 5): the dumped directory is inode 2.  Every
other inode gets, the first time a dump of the tree sees it, the lowest unused
number from 3 up, in walk order (entries sorted by name, parents before
children); the pair is kept in the tree's map under ``STATE_DIR/inomap/`` and the
same inode gets the same number in every later dump, at every level, so that
``restore -r`` recognises renames and deletions.  A level-0 dump starts a new
chain: it forgets inodes that no longer exist, so their numbers are reused and
the numbers stay dense.  Keys are the filesystem inode number; objects on
another device inside the tree (mount points) are keyed by their path.
"""
from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import struct
from pathlib import Path

from ndump.format.constants import FIRST_INO

_MAGIC = b"NDIM1\n"
_PAIR = struct.Struct("<QI")
_SAVE_SLICE = 8192
FOREIGN = 1 << 63


def foreign_key(relpath: bytes) -> int:
    """Key for an object that is not on the dumped filesystem (a mount point)."""
    return FOREIGN | int.from_bytes(hashlib.blake2b(relpath, digest_size=7).digest(), "little")


class InodeMap:
    def __init__(self, path: Path | None, identifier: str):
        self.path = path
        self.identifier = identifier
        self.map: dict[int, int] = {}
        self._next = FIRST_INO
        self._lock_fd: int | None = None
        self.persistent = path is not None
        self.changed = False      # numbers given or forgotten since the map was loaded

    @classmethod
    def for_tree(cls, state_dir: Path, identifier: str) -> "InodeMap":
        name = hashlib.sha256(identifier.encode("utf-8", "surrogateescape")).hexdigest()[:24]
        return cls(state_dir / "inomap" / f"{name}.map", identifier)

    def open(self) -> None:
        """Lock the map (one dump of a tree assigns numbers at a time) and load it."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        self._load(data)

    def _load(self, data: bytes) -> None:
        if not data.startswith(_MAGIC):
            return
        body = data[len(_MAGIC):]
        ident_end = body.find(b"\n")
        pairs = body[ident_end + 1:]
        pairs = pairs[: len(pairs) - len(pairs) % _PAIR.size]
        self.map = {k: v for k, v in _PAIR.iter_unpack(pairs)}
        if self.map:
            self._next = max(self.map.values()) + 1

    def known(self, key: int) -> int | None:
        return self.map.get(key)

    def assign(self, keys, *, level0: bool, all_keys=None) -> None:
        """Give numbers to the keys not yet known, in the order given (walk order).

        At level 0, inodes not among ``all_keys()`` are forgotten first, so
        their numbers are reused (a level 0 starts a new chain).
        """
        free: list[int] = []
        if level0 and all_keys is not None and self.map:
            alive = bytearray(max(self.map.values()) + 1)
            m = self.map
            for k in all_keys():
                d = m.get(k)
                if d is not None:
                    alive[d] = 1
            gone = [k for k, d in m.items() if not alive[d] and k >= 0]
            free = sorted((m.pop(k) for k in gone), reverse=True)
            self.changed |= bool(gone)
        m = self.map
        for key in keys:
            if key not in m:
                self.changed = True
                if free:
                    m[key] = free.pop()
                else:
                    m[key] = self._next
                    self._next += 1

    def save(self) -> None:
        """Write the map, when it changed: an incremental of a tree whose files
        were only modified (no new inode) leaves the file as it was, unwritten
        and not synced."""
        if self.path is None or not self.changed:
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_MAGIC + self.identifier.encode("utf-8", "surrogateescape") + b"\n")
            # in slices: a million pairs packed at once held ~140 MB of small objects
            pairs = iter(self.map.items())
            while part := list(itertools.islice(pairs, _SAVE_SLICE)):
                f.write(b"".join([_PAIR.pack(k, v) for k, v in part if k > 0]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.changed = False

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
