"""File history: what a dump tells the catalog (SPEC §7; classic: dump -A,
ONTAP's file history).

While Pass III/IV run, the tree writer reports the block of each inode's
TS_INODE header (``on_inode``), kept in flat arrays indexed by dump inode so
that a million files cost ~40 MB and no per-file object.  When the dump is
done, the names come from the Selection and go to the catalog in batches,
about two microseconds a name.  (A writer thread inserting beside Pass IV was
tried: the GIL hand-offs cost the dump more than the inserts it moved.)

A catalog that is missing, locked, corrupt or read-only never stops a dump:
the first failure is one warning and the dump goes on without it.
"""
from __future__ import annotations

import stat
import time
from array import array
from bisect import bisect_right
from pathlib import Path
from typing import Iterator

from ndump.catalog import Catalog, CatalogError, NewDump
from ndump.format.constants import DT_DIR, TP_BSIZE
from ndump.report import Reporter
from ndump.dump.select import Selection

class FileHistory:
    def __init__(self, path: Path, reporter: Reporter):
        self.path = Path(path)
        self.rep = reporter
        self.catalog: Catalog | None = None
        self.dump_id: int | None = None
        self.seconds = 0.0               # the dump's time spent on the catalog (-v)
        self.names = 0
        self._sel: Selection | None = None
        self._map: dict = {}
        self._starts = [0]               # first logical block of each volume after its TS_TAPE
        self._block = array("q")
        self._size = array("q")
        self._mode = array("I")
        self._mtime = array("q")
        self._ctime = array("q")
        # a restartable dump's checkpointer: the inodes noted since its last checkpoint
        self.pending: list[int] | None = None

    # -- life cycle ----------------------------------------------------------
    def begin(self, new: NewDump, sel: Selection, inomap: dict) -> None:
        started = time.monotonic()
        try:
            self.catalog = Catalog(self.path)
            self.dump_id = self.catalog.begin_dump(new)
        except CatalogError as e:
            self._give_up(e)
            return
        self._sel, self._map = sel, inomap
        n = sel.maxino + 1
        self._block = array("q", [-1]) * n
        self._size = array("q", bytes(8 * n))
        self._mode = array("I", bytes(4 * n))
        self._mtime = array("q", bytes(8 * n))
        self._ctime = array("q", bytes(8 * n))
        self.seconds = time.monotonic() - started

    def _give_up(self, e: CatalogError) -> None:
        self.rep.warning(f"{e}; the dump goes on without file history", once="catalog")
        if self.catalog is not None:
            self.catalog.close()
        self.catalog = None

    @property
    def active(self) -> bool:
        return self.catalog is not None

    # -- during the dump -------------------------------------------------------
    def on_inode(self, dino: int, block: int, mode: int, size: int, mtime: int,
                 ctime: int) -> None:
        """The TS_INODE header of ``dino`` is logical block ``block`` of the dump
        (the inode's fields as values: the writer makes no Inode for most files)."""
        self._block[dino] = block
        self._size[dino] = size
        self._mode[dino] = mode
        self._mtime[dino] = mtime
        self._ctime[dino] = ctime
        if self.pending is not None:
            self.pending.append(dino)

    def volume_started(self, volume: int, blocks_before: int) -> None:
        """Volume ``volume`` begins; ``blocks_before`` blocks are on the earlier ones,
        their TS_TAPE headers included (which take no logical block number)."""
        while len(self._starts) < volume:
            self._starts.append(blocks_before - (len(self._starts) - 1))

    def position(self, block: int) -> tuple[int, int]:
        """(volume, byte offset on it) of a logical block."""
        v = bisect_right(self._starts, block)
        if v == 1:
            return 1, block * TP_BSIZE
        return v, (1 + block - self._starts[v - 1]) * TP_BSIZE

    # -- at the end ------------------------------------------------------------
    def finish(self, *, status: str, volumes: int, nbytes: int | None = None) -> None:
        """Record the names (none for an aborted dump) and the dump's status."""
        if self.catalog is None:
            return
        started = time.monotonic()
        try:
            if status != "aborted":
                self.names = self.catalog.add_rows(self.dump_id, self.rows())
            self.catalog.finish_dump(self.dump_id, status=status, volumes=volumes,
                                     files=self.names, nbytes=nbytes)
        except CatalogError as e:
            self._give_up(e)
            return
        self.catalog.close()
        self.catalog = None
        self.seconds += time.monotonic() - started
        self.rep.verbose(f"file history: {self.names} names recorded in {self.path}"
                         f" in {self.seconds:.3f} s")

    def rows(self) -> Iterator[tuple]:
        """(dump, path, name, ino, type, size, mtime, ctime, volume, offset) per
        dumped name, directories included."""
        block, size, mode = self._block, self._size, self._mode
        mtime, ctime, m = self._mtime, self._ctime, self._map
        did = self.dump_id
        one_volume = len(self._starts) == 1
        position = self.position
        n = len(block)
        for node in self._sel.dirs:
            rel = _text(node.relpath) if node.relpath else ""
            if node.dumped:
                dino = m[node.key]
                if block[dino] >= 0:
                    yield (did, rel or ".", rel.rpartition("/")[2] or ".", *self._facts(dino))
            if not node.names:
                continue
            prefix = rel + "/" if rel else ""
            # one decode per directory (names hold no NUL)
            texts = _text(b"\0".join(node.names)).split("\0")
            for text, key, dtype in zip(texts, node.keys, node.dtypes):
                if dtype == DT_DIR:
                    continue
                dino = m[key]
                if dino >= n:
                    continue
                b = block[dino]
                if b < 0:
                    continue
                vol, off = (1, b * TP_BSIZE) if one_volume else position(b)
                yield (did, prefix + text, text, dino, mode[dino] & 0o170000, size[dino],
                       mtime[dino], ctime[dino], vol, off)

    def _facts(self, dino: int) -> tuple:
        vol, off = self.position(self._block[dino])
        return (dino, stat.S_IFMT(self._mode[dino]), self._size[dino], self._mtime[dino],
                self._ctime[dino], vol, off)


def _text(path: bytes) -> str:
    """Names are bytes; the catalog keeps UTF-8 text (undecodable bytes as \\xNN)."""
    return path.decode("utf-8", "backslashreplace")
