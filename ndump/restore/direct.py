"""Direct access restore (SPEC §7; classic counterpart: the QFA positions of
Solaris ufsrestore, ONTAP's DAR): ``restore -x -A CATALOG`` on an image file
(or a -M set of them) reads the directories as usual, then seeks to the
header of each requested inode, as the catalog recorded it, instead of
reading the whole dump.

Requested inodes that lie close together are read in one run (a gap of less
than GAP bytes is read through rather than sought over).  Every position is
checked before it is trusted: the block there must be the TS_INODE header of
that inode from this dump.  Whatever the catalog cannot place is then
restored by reading the rest of the dump as a plain -x would, so the result
is always that of a plain -x.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ndump.catalog import Catalog, CatalogError, medium_spec
from ndump.errors import StartupError
from ndump.format import TP_BSIZE, TS_INODE, FormatReader, HeaderError, unpack_header
from ndump.media import open_input, volume_name
from ndump.report import Reporter

GAP = 1 << 20


@dataclass
class Plan:
    """Where this dump's inodes are, and the volume files to read them from."""
    positions: dict[int, tuple[int, int]]     # ino -> (volume, byte offset)
    date: int
    spec: str
    multi: bool
    fds: dict[int, int] = field(default_factory=dict)      # volume -> fd
    media: list = field(default_factory=list)              # media this module opened
    bytes_read: int = 0
    seeks: int = 0

    def close(self) -> None:
        for medium in self.media:
            try:
                medium.close()
            except OSError:
                pass
        self.media = []


def plan(dump, catalog_path: Path, reporter: Reporter, settings) -> Plan | None:
    """A Plan for reading ``dump`` directly, or None (with a warning saying why
    the whole dump is read instead)."""
    why = _unusable(dump)
    if why is None:
        try:
            with Catalog(catalog_path, writable=False) as cat:
                tape = dump.tape
                known = cat.dump_made(date=tape.date, level=tape.level, host=tape.host,
                                      tree=tape.filesys.split(" (dir ", 1)[0],
                                      medium=medium_spec(dump.spec))
                positions = cat.positions(known.id) if known is not None else {}
        except CatalogError as e:
            why = str(e)
        else:
            if known is None:
                why = f"catalog {catalog_path} does not know this dump (catalog add indexes it)"
    if why is not None:
        reporter.warning(f"direct access not used: {why}; reading the whole dump")
        return None
    p = Plan(positions, dump.tape.date, dump.spec, dump.multi)
    p.fds[1] = dump.medium.fd
    reporter.verbose(f"direct access through {catalog_path}: {len(positions)} inodes placed")
    return p


def _unusable(dump) -> str | None:
    fd = getattr(dump.medium, "fd", None)
    if fd is None or dump.spec == "-":
        return "the input is not an image file"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "the input is not an image file"
    except OSError as e:
        return e.strerror.lower()
    if dump.reader.compressed:
        return "the dump is compressed"
    if dump.reader.volume != 1:
        return "the dump does not start on volume 1"
    return None


def run(p: Plan, ex, leaves: dict, reporter: Reporter) -> None:
    """Extract the inodes of ``leaves`` that the plan places; they leave ``leaves``.
    What is left is for a sequential pass."""
    reader = ex.reader
    try:
        for cluster in _clusters(p, leaves):
            _read_cluster(p, ex, cluster, leaves, reporter)
    finally:
        ex.reader = reader
        p.close()
    reporter.verbose(f"direct access: {p.bytes_read} bytes read in {p.seeks} runs")


def _clusters(p: Plan, leaves: dict) -> list[list[tuple[int, int, int]]]:
    wanted = sorted((*p.positions[ino], ino) for ino in leaves if ino in p.positions)
    out: list[list[tuple[int, int, int]]] = []
    for vol, off, ino in wanted:
        last = out[-1][-1] if out else None
        if last is not None and last[0] == vol and off - last[1] <= GAP:
            out[-1].append((vol, off, ino))
        else:
            out.append([(vol, off, ino)])
    return out


def _read_cluster(p: Plan, ex, cluster, leaves: dict, reporter: Reporter) -> None:
    fd = _volume_fd(p, cluster[0][0], reporter)
    while cluster and not (fd is not None and _header_at(p, fd, cluster[0][1], cluster[0][2])):
        cluster = cluster[1:]        # not where the catalog says: left for the sequential pass
    if not cluster:
        return
    off = cluster[0][1]
    mine = {i: leaves.pop(i) for _, _, i in cluster}
    start = off // TP_BSIZE
    tape_block = _pread(p, fd, TP_BSIZE, 0)
    source = _Span(p, fd, tape_block, off)
    reader = FormatReader(source, next_volume=lambda n: _next_volume(p, n, reporter),
                          verify_crc=ex.reader.verify_crc,
                          on_problem=lambda text: reporter.warning(text))
    ex.reader = reader
    p.seeks += 1
    try:
        ex.run(reader.next_record(), mine, stop_block=cluster[-1][1] // TP_BSIZE + 1,
               base=start - 1)
    finally:
        leaves.update(mine)          # not found where the catalog said: read on later


def _header_at(p: Plan, fd: int, off: int, ino: int) -> bool:
    block = _pread(p, fd, TP_BSIZE, off)
    try:
        h = unpack_header(block)
    except HeaderError:
        return False
    return h.type == TS_INODE and h.inumber == ino and h.date == p.date and not h.is_extattr


def _volume_fd(p: Plan, vol: int, reporter: Reporter) -> int | None:
    if vol in p.fds:
        return p.fds[vol]
    if not p.multi:
        return None
    try:
        medium = open_input(volume_name(p.spec, vol, True))
    except StartupError as e:
        reporter.warning(f"direct access: cannot open volume {vol}: {e}")
        return None
    p.media.append(medium)
    p.fds[vol] = medium.fd
    return medium.fd


def _next_volume(p: Plan, number: int, reporter: Reporter):
    fd = _volume_fd(p, number, reporter)
    return None if fd is None else _Span(p, fd, b"", 0)


def _pread(p: Plan, fd: int, n: int, off: int) -> bytes:
    data = os.pread(fd, n, off)
    p.bytes_read += len(data)
    return data


class _Span:
    """read(n) for a FormatReader: ``first`` (a volume header), then the volume
    from byte ``pos`` on."""

    def __init__(self, p: Plan, fd: int, first: bytes, pos: int):
        self.p = p
        self.fd = fd
        self.pending = first
        self.pos = pos

    def __call__(self, n: int) -> bytes:
        if self.pending:
            out, self.pending = self.pending, b""
            return out
        data = _pread(self.p, self.fd, n, self.pos)
        self.pos += len(data)
        return data
