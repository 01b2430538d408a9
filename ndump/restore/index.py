"""Index an existing dump image into the catalog (`ndump catalog add`, SPEC §7;
classic counterpart: none, stock restore -t is the nearest).

The image is read once from start to end: its directories give the names, and
the position of each TS_INODE header (volume, byte offset on that volume) is
noted as it passes.  Works for stock dump images as well as ndump's; for a
compressed image the offset is in the uncompressed block stream.
"""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from ndump.catalog import Catalog, CatalogError, FileRow, NewDump, medium_spec
from ndump.errors import Outcome, StartupError, UsageError
from ndump.format import TP_BSIZE, DumpFormatError
from ndump.media import volume_name
from ndump.report import Reporter
from ndump.restore.dirs import DirRecord, Tree, _dir_entries
from ndump.restore.volumes import DumpInput
from ndump.settings import Settings


class _IndexInput(DumpInput):
    """A DumpInput that notes where each volume begins in the block count."""

    def __init__(self, *args, **kwargs):
        self.starts: dict[int, int] = {1: 0}
        super().__init__(*args, **kwargs)

    def _next_volume(self, number: int):
        self.starts[number] = self.reader.blocks_read
        return super()._next_volume(number)

    def offset(self, volume: int, block: int) -> int:
        """Byte offset on ``volume`` of the dump's block number ``block``."""
        if volume == 1:
            return block * TP_BSIZE
        return (1 + block - self.starts.get(volume, block)) * TP_BSIZE


def index_image(spec: str, catalog: Catalog, settings: Settings, reporter: Reporter, *,
                multi: bool = False) -> tuple[int, int]:
    """Read the image and record it; returns (dump id, file rows).  An image
    indexed before (same dump date, level and tree) replaces its old rows."""
    with _IndexInput(spec, reporter, settings, multi=multi) as dump:
        dump.read_maps()
        dirs, where, complete = _scan(dump, reporter)
        tape = dump.tape
        tree_name = tape.filesys.split(" (dir ", 1)[0]
        old = catalog.dump_made(date=tape.date, level=tape.level, tree=tree_name)
        new = NewDump(tree=tree_name, level=tape.level, date=tape.date, base_date=tape.ddate,
                      label=tape.label, host=tape.host, medium=medium_spec(spec), multi=multi,
                      ntrec=tape.ntrec or 10,
                      compression="compressed" if dump.reader.compressed else None,
                      status="running")
        tree = Tree(dirs, dump.reader.maxino, lambda path, why: None)
        rows = list(_rows(tree, where))
        dump_id = catalog.begin_dump(new)
        try:
            n = catalog.add_files(dump_id, rows)
            catalog.finish_dump(dump_id, status="indexed" if complete else "partial",
                                volumes=dump.reader.volume, files=n,
                                nbytes=sum(r.size for r in rows if stat.S_ISREG(r.type)))
        except CatalogError:
            catalog.forget_dump(dump_id)
            raise
        if old is not None:
            catalog.forget_dump(old.id)
        return dump_id, n


def _scan(dump: _IndexInput, reporter: Reporter):
    """Every inode record: directories kept, positions noted -> (dirs, where, complete)."""
    reader = dump.reader
    dirs: dict[int, DirRecord] = {}
    where: dict[int, tuple] = {}
    try:
        while True:
            reader.peek_header()
            block, volume = reader.blocks_read - 1, reader.volume
            rec = reader.next_record()
            if rec is None:
                return dirs, where, True
            i = rec.inode
            where[rec.ino] = (stat.S_IFMT(i.mode), i.size, i.mtime, i.ctime, volume,
                              dump.offset(volume, block))
            if i.is_dir and rec.ino not in dirs:
                entries, damaged = _dir_entries(reader, rec)
                dirs[rec.ino] = DirRecord(rec.ino, i, entries, rec.xattrs, damaged)
            else:
                reader.skip(rec)
    except DumpFormatError as e:
        if not dirs:
            raise StartupError(f"{dump.name}: {e}") from None
        reporter.warning(f"{dump.name}: {e}; indexed what was read")
        return dirs, where, False


def _rows(tree: Tree, where: dict[int, tuple]):
    for e in tree.walk():
        pos = where.get(e.ino)
        if pos is None:
            continue
        path = e.path()
        text = "." if path == b"." else path[2:].decode("utf-8", "backslashreplace")
        yield FileRow(text, e.ino, *pos)



def add_images(catalog_path: Path, images: list[str], settings: Settings, reporter: Reporter, *,
               multi: bool = False) -> Outcome:
    """`ndump catalog add`: index each image; one that cannot be read is a problem."""
    with Catalog(catalog_path) as catalog:
        for image in images:
            try:
                dump_id, n = index_image(image, catalog, settings, reporter, multi=multi)
            except StartupError as e:
                if isinstance(e, CatalogError):
                    raise
                reporter.file_problem(image, str(e))
                continue
            d = catalog.dump(dump_id)
            reporter.info(f"{image}: level {d.level} dump of {d.tree} of {time.ctime(d.date)}:"
                          f" {n} names (dump {dump_id})")
    return Outcome(reporter.problems)


def rebuild(catalog_path: Path, images: list[str], settings: Settings, reporter: Reporter, *,
            multi: bool = False) -> Outcome:
    """`ndump catalog rebuild`: a new catalog from the images (by default the image
    files the old one lists), put in place of the old one when complete."""
    if not images:
        images, multi = _recorded_images(catalog_path)
    path = Path(catalog_path)
    fresh = path.with_name(path.name + ".rebuild")
    for stale in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
        stale.unlink(missing_ok=True)
    outcome = add_images(fresh, images, settings, reporter, multi=multi)
    if len(outcome.problems) >= len(images):
        for stale in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
            stale.unlink(missing_ok=True)
        raise StartupError(f"no image could be read; catalog {path} left as it was")
    for old in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        old.unlink(missing_ok=True)
    os.replace(fresh, path)
    reporter.info(f"catalog {path} rebuilt from {len(images) - len(outcome.problems)} image(s)")
    return outcome


def _recorded_images(catalog_path: Path) -> tuple[list[str], bool]:
    try:
        with Catalog(catalog_path, writable=False) as old:
            dumps = old.dumps()
    except CatalogError as e:
        raise UsageError(f"{e}: name the images to rebuild it from") from None
    multi = {bool(d.multi) for d in dumps}
    if len(multi) > 1:
        raise UsageError("the catalog lists both -M volume sets and single images:"
                         " name the images to rebuild it from")
    media = sorted({d.medium for d in dumps if d.medium.startswith("/")
                    and os.path.isfile(volume_name(d.medium, 1, bool(d.multi)))})
    if not media:
        raise UsageError(f"catalog {catalog_path} lists no image file that still exists:"
                         " name the images to rebuild it from")
    return media, multi.pop()
