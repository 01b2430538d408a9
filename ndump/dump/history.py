"""File history: what a dump tells the catalog (SPEC §7; classic: dump -A,
ONTAP's file history).

While Pass III/IV run, the tree writer reports the block of each inode's
TS_INODE header (``on_inode``), kept in flat arrays indexed by dump inode so
that a million files cost ~40 MB and no per-file object.  When the dump is
done, the names come from the Selection and go to the catalog in batches.

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
        self.seconds = 0.0               # spent on the catalog (for -v and the benchmark)
        self._starts = [0]               # first logical block of each volume after its TS_TAPE
        self._block = array("q")
        self._size = array("q")
        self._mode = array("I")
        self._mtime = array("q")
        self._ctime = array("q")

    # -- life cycle ----------------------------------------------------------
    def begin(self, new: NewDump, maxino: int) -> None:
        started = time.monotonic()
        try:
            self.catalog = Catalog(self.path)
            self.dump_id = self.catalog.begin_dump(new)
        except CatalogError as e:
            self._give_up(e)
            return
        self.seconds = time.monotonic() - started
        n = maxino + 1
        self._block = array("q", [-1]) * n
        self._size = array("q", bytes(8 * n))
        self._mode = array("I", bytes(4 * n))
        self._mtime = array("q", bytes(8 * n))
        self._ctime = array("q", bytes(8 * n))

    def _give_up(self, e: CatalogError) -> None:
        self.rep.warning(f"{e}; the dump goes on without file history", once="catalog")
        if self.catalog is not None:
            self.catalog.close()
        self.catalog = None

    @property
    def active(self) -> bool:
        return self.catalog is not None

    # -- during the dump -------------------------------------------------------
    def on_inode(self, dino: int, block: int, inode) -> None:
        """The TS_INODE header of ``dino`` is logical block ``block`` of the dump."""
        self._block[dino] = block
        self._size[dino] = inode.size
        self._mode[dino] = inode.mode
        self._mtime[dino] = inode.mtime
        self._ctime[dino] = inode.ctime

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
    def finish(self, sel: Selection | None, inomap: dict | None, *, status: str,
               volumes: int) -> None:
        if self.catalog is None:
            return
        started = time.monotonic()
        try:
            files = self.catalog.add_rows(self.dump_id, self.rows(sel, inomap)) if sel else 0
            self.catalog.finish_dump(self.dump_id, status=status, volumes=volumes, files=files,
                                     nbytes=sel.data_bytes if sel else None)
        except CatalogError as e:
            self._give_up(e)
            return
        self.catalog.close()
        self.catalog = None
        self.seconds += time.monotonic() - started
        self.rep.verbose(f"file history: {files} names recorded in {self.path}"
                         f" in {self.seconds:.3f} s")

    def rows(self, sel: Selection, m: dict) -> Iterator[tuple]:
        """(dump, path, name, ino, type, size, mtime, ctime, volume, offset, crc) per
        dumped name: the catalog's fast path, a few microseconds a name."""
        block, size, mode = self._block, self._size, self._mode
        mtime, ctime = self._mtime, self._ctime
        did = self.dump_id
        one_volume = len(self._starts) == 1
        position = self.position
        n = len(block)
        for node in sel.dirs:
            if node.dumped:
                dino = m[node.key]
                if block[dino] >= 0:
                    path = _text(node.relpath) if node.relpath else "."
                    yield (did, path, path.rpartition("/")[2], *self._facts(dino))
            prefix = _text(node.relpath) + "/" if node.relpath else ""
            for name, key, dtype in zip(node.names, node.keys, node.dtypes):
                if dtype == DT_DIR:
                    continue
                dino = m[key]
                if dino >= n:
                    continue
                b = block[dino]
                if b < 0:
                    continue
                vol, off = (1, b * TP_BSIZE) if one_volume else position(b)
                text = _text(name)
                yield (did, prefix + text, text, dino, mode[dino] & 0o170000, size[dino],
                       mtime[dino], ctime[dino], vol, off, None)

    def _facts(self, dino: int) -> tuple:
        vol, off = self.position(self._block[dino])
        return (dino, stat.S_IFMT(self._mode[dino]), self._size[dino], self._mtime[dino],
                self._ctime[dino], vol, off, None)


def _text(path: bytes) -> str:
    """Names are bytes; the catalog keeps UTF-8 text (undecodable bytes as \\xNN)."""
    return path.decode("utf-8", "backslashreplace")
