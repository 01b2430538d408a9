"""File history: what a dump tells the catalog (SPEC §7; classic: dump -A,
ONTAP's file history).

While Pass III/IV run, the tree writer reports the block of each inode's
TS_INODE header (``on_inode``), kept in flat arrays indexed by dump inode so
that a million files cost ~40 MB and no per-file object.  A writer thread
turns the inodes already on the medium into rows (a file's first name comes
from the Selection's table) and inserts them in batches while the dump goes
on: SQLite releases the GIL while it works, so most of the cost runs beside
the dump.  At the end the thread adds the rest, the directories and the other
names of hard links.

A catalog that is missing, locked, corrupt or read-only never stops a dump:
the first failure is one warning and the dump goes on without it.
"""
from __future__ import annotations

import stat
import threading
import time
from array import array
from bisect import bisect_right
from pathlib import Path
from typing import Callable, Iterator

from ndump.catalog import BATCH, Catalog, CatalogError, NewDump
from ndump.format.constants import DT_DIR, TP_BSIZE
from ndump.report import Reporter
from ndump.dump.select import Selection

_POLL = 0.05                     # seconds between the writer thread's looks at the dump
_EVERYTHING = 1 << 62


class FileHistory:
    def __init__(self, path: Path, reporter: Reporter):
        self.path = Path(path)
        self.rep = reporter
        self.catalog: Catalog | None = None
        self.dump_id: int | None = None
        self.seconds = 0.0               # the dump's own time spent on the catalog (-v)
        self.names = 0
        self._starts = [0]               # first logical block of each volume after its TS_TAPE
        self._block = array("q")
        self._size = array("q")
        self._mode = array("I")
        self._mtime = array("q")
        self._ctime = array("q")
        self._seen = 0                   # the file (not directory) Pass IV is writing
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._abort = False
        self._error: CatalogError | None = None

    # -- life cycle ----------------------------------------------------------
    def begin(self, new: NewDump, sel: Selection, inomap: dict,
              placed: Callable[[], int]) -> None:
        """Open the catalog and start the writer; ``placed()`` is the number of
        logical blocks already on the medium."""
        started = time.monotonic()
        try:
            self.catalog = Catalog(self.path)
            self.dump_id = self.catalog.begin_dump(new)
        except CatalogError as e:
            self._give_up(e)
            return
        n = sel.maxino + 1
        self._block = array("q", [-1]) * n
        self._size = array("q", bytes(8 * n))
        self._mode = array("I", bytes(4 * n))
        self._mtime = array("q", bytes(8 * n))
        self._ctime = array("q", bytes(8 * n))
        self._thread = threading.Thread(target=self._write, args=(sel, inomap, placed),
                                        name="ndump-file-history", daemon=True)
        self._thread.start()
        self.seconds = time.monotonic() - started

    def _give_up(self, e: CatalogError) -> None:
        self.rep.warning(f"{e}; the dump goes on without file history", once="catalog")
        if self.catalog is not None:
            self.catalog.close()
        self.catalog = None

    @property
    def active(self) -> bool:
        return self.catalog is not None

    # -- during the dump (main thread) ------------------------------------------
    def on_inode(self, dino: int, block: int, inode) -> None:
        """The TS_INODE header of ``dino`` is logical block ``block`` of the dump."""
        self._block[dino] = block
        self._size[dino] = inode.size
        self._mode[dino] = inode.mode
        self._mtime[dino] = inode.mtime
        self._ctime[dino] = inode.ctime
        if inode.mode & 0o170000 != 0o040000:
            # Pass IV goes up the inode numbers: every file below this one is done
            # (Pass III's directories, in their own order, say nothing about files)
            self._seen = dino

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

    # -- at the end (main thread) -------------------------------------------------
    def finish(self, *, status: str, volumes: int, nbytes: int | None = None) -> None:
        """Let the writer add the rest and wait for it; ``status`` 'aborted' stops it."""
        if self.catalog is None:
            return
        started = time.monotonic()
        self._abort = status == "aborted"
        self._done.set()
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
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

    # -- the writer thread ---------------------------------------------------------
    def _write(self, sel: Selection, m: dict, placed: Callable[[], int]) -> None:
        try:
            self._write_rows(sel, m, placed)
        except CatalogError as e:
            self._error = e

    def _write_rows(self, sel: Selection, m: dict, placed: Callable[[], int]) -> None:
        files = sel.files
        batch: list[tuple] = []
        dino = 0
        while not self._abort:
            done = self._done.wait(_POLL)
            if self._abort:
                return
            dino = self._file_rows(sel, files, dino, len(files) if done else self._seen,
                                   _EVERYTHING if done else placed(), batch)
            if len(batch) >= BATCH or done:
                self.names += self.catalog.add_rows(self.dump_id, batch)
                batch.clear()
            if done:
                break
        if not self._abort:
            self.names += self.catalog.add_rows(self.dump_id, self._other_rows(sel, m))
            self.catalog.checkpoint()

    def _file_rows(self, sel: Selection, files, dino: int, below: int, placed: int,
                   out: list) -> int:
        """Rows of the first names of the dumped files from ``dino`` on, below
        inode ``below`` and on the medium already; returns where to go on."""
        block, size, mode = self._block, self._size, self._mode
        mtime, ctime, dirs = self._mtime, self._ctime, sel.dirs
        did = self.dump_id
        one_volume = len(self._starts) == 1
        while dino < below:
            where = files[dino]
            b = block[dino]
            if where and b >= 0:
                if b >= placed:
                    break
                where -= 1
                node = dirs[where >> 32]
                text = _text(node.names[where & 0xFFFFFFFF])
                path = _text(node.relpath) + "/" + text if node.relpath else text
                vol, off = (1, b * TP_BSIZE) if one_volume else self.position(b)
                out.append((did, path, text, dino, mode[dino] & 0o170000, size[dino],
                            mtime[dino], ctime[dino], vol, off, None))
            dino += 1
        return dino

    def _other_rows(self, sel: Selection, m: dict) -> Iterator[tuple]:
        """The directories, and the names of dumped inodes that are not their first
        (hard links): the entries not 'chosen' by the walk."""
        block, did = self._block, self.dump_id
        n = len(block)
        for node in sel.dirs:
            if node.dumped:
                dino = m[node.key]
                if block[dino] >= 0:
                    path = _text(node.relpath) if node.relpath else "."
                    yield (did, path, path.rpartition("/")[2], *self._facts(dino))
            chosen = node.chosen
            i = chosen.find(0)
            while i >= 0:
                if node.dtypes[i] != DT_DIR:
                    dino = m[node.keys[i]]
                    if dino < n and block[dino] >= 0:
                        text = _text(node.names[i])
                        path = _text(node.relpath) + "/" + text if node.relpath else text
                        yield (did, path, text, *self._facts(dino))
                i = chosen.find(0, i + 1)

    def _facts(self, dino: int) -> tuple:
        vol, off = self.position(self._block[dino])
        return (dino, stat.S_IFMT(self._mode[dino]), self._size[dino], self._mtime[dino],
                self._ctime[dino], vol, off, None)


def _text(path: bytes) -> str:
    """Names are bytes; the catalog keeps UTF-8 text (undecodable bytes as \\xNN)."""
    return path.decode("utf-8", "backslashreplace")
