"""Crafted dump images for restore tests, written with ndump's FormatWriter.

    img = Craft()
    img.dir(2, {"a.txt": 3, "sub": 4})
    img.dir(4, {})
    img.file(3, b"hello", mode=0o644)
    data = img.build()

Directories list their entries as {name: inode} (bytes or str names, any
content: hostile images are the point); '.' and '..' are added first unless
``dots=False``.  Files are written in the order the format wants (directories,
then the rest, ascending).  ``offsets`` records where each header of each inode
landed, so a test can damage exactly one of them.
"""
from __future__ import annotations

import io
import stat

from ndump.format import (
    DT_DIR, DT_REG, DumpIdent, FormatWriter, Inode, MODE_TO_DT, TP_BSIZE, pack_dir,
    pack_ea_records, symlink_payload,
)

DATE = 1_700_000_000
CHUNK = 512


class _Sink:
    def __init__(self, ntrec: int):
        self.buf = io.BytesIO()
        self.offsets: dict[int, list[int]] = {}
        self.ntrec = ntrec

    def pad_blocks(self) -> int:
        return self.ntrec - self.buf.tell() // TP_BSIZE % self.ntrec

    def put(self, header, data, ino, nblocks):
        self.offsets.setdefault(ino, []).append(self.buf.tell())
        self.buf.write(header)
        if data is not None:
            self.buf.write(data)


def bitmap(inos, maxino: int) -> bytes:
    size = ((maxino + 7) // 8 + TP_BSIZE - 1) // TP_BSIZE * TP_BSIZE
    bits = bytearray(size)
    for n in inos:
        bits[(n - 1) >> 3] |= 1 << ((n - 1) & 7)
    return bytes(bits)


def inode(mode: int, size: int = 0, *, uid=0, gid=0, mtime_ns=1_600_000_000_123_456_789,
          atime_ns=1_500_000_000_987_654_321, rdev=0, flags=0, nlink=1) -> Inode:
    return Inode(mode=mode, nlink=nlink, size=size, uid=uid, gid=gid,
                 atime=atime_ns // 10**9, atime_ns=atime_ns % 10**9,
                 mtime=mtime_ns // 10**9, mtime_ns=mtime_ns % 10**9,
                 ctime=mtime_ns // 10**9, rdev=rdev, flags=flags)


class Craft:
    def __init__(self, *, date: int = DATE, ddate: int = 0, level: int = 0, ntrec: int = 10,
                 checksums: bool = True):
        self.ident = DumpIdent(date=date, ddate=ddate, level=level, label="crafted",
                               filesys="/crafted", dev="/dev/null", host="testhost", ntrec=ntrec)
        self.checksums = checksums
        self.dirs: dict[int, tuple[bytes, Inode, list]] = {}
        self.files: dict[int, tuple[Inode, list, list]] = {}   # ino -> (inode, chunks, xattrs)
        self.bits_override = None
        self.clri_override = None
        self.offsets: dict[int, list[int]] = {}
        self.metaonly: set[int] = set()      # inodes written as DR_METAONLY records (dump -m)
        self.twice: list[int] = []           # directories written a second time, after the others

    # -- directories ---------------------------------------------------------------
    def dir(self, ino: int, entries: dict, *, parent: int | None = None, dots: bool = True,
            mode: int = 0o755, xattrs=(), types: dict | None = None, **meta) -> "Craft":
        raw = []
        if dots:
            raw += [(ino, DT_DIR, b"."), (parent or 2, DT_DIR, b"..")]
        for name, child in entries.items():
            name = name.encode() if isinstance(name, str) else name
            dtype = (types or {}).get(name, DT_DIR if child in self.dirs else DT_REG)
            raw.append((child, dtype, name))
        data = pack_dir(raw)
        self.dirs[ino] = (data, inode(stat.S_IFDIR | mode, len(data), **meta), list(xattrs))
        return self

    # -- other inodes ----------------------------------------------------------------
    def file(self, ino: int, data: bytes = b"", *, mode: int = 0o644, xattrs=(), **meta) -> "Craft":
        """A regular file; all-zero 1 KiB pieces become holes."""
        pieces = (len(data) + TP_BSIZE - 1) // TP_BSIZE
        padded = data + bytes(pieces * TP_BSIZE - len(data))
        present = {i: padded[i * TP_BSIZE:(i + 1) * TP_BSIZE] for i in range(pieces)
                   if any(padded[i * TP_BSIZE:(i + 1) * TP_BSIZE])}
        return self._add(ino, inode(stat.S_IFREG | mode, len(data), **meta), pieces, present, xattrs)

    def sparse(self, ino: int, size: int, chunks: dict[int, bytes], *, mode: int = 0o644,
               xattrs=(), **meta) -> "Craft":
        """A sparse regular file: ``chunks`` {offset: bytes}, 1 KiB aligned; the rest holes."""
        present = {}
        for off, data in chunks.items():
            assert off % TP_BSIZE == 0
            padded = data + bytes(-len(data) % TP_BSIZE)
            for i in range(0, len(padded), TP_BSIZE):
                present[(off + i) // TP_BSIZE] = padded[i:i + TP_BSIZE]
        pieces = (size + TP_BSIZE - 1) // TP_BSIZE
        return self._add(ino, inode(stat.S_IFREG | mode, size, **meta), pieces, present, xattrs)

    def symlink(self, ino: int, target: bytes | str, *, xattrs=(), **meta) -> "Craft":
        target = target.encode() if isinstance(target, str) else target
        payload = symlink_payload(target)
        present = {i: payload[i * TP_BSIZE:(i + 1) * TP_BSIZE] for i in range(len(payload) // TP_BSIZE)}
        return self._add(ino, inode(stat.S_IFLNK | 0o777, len(target), **meta),
                         len(present), present, xattrs)

    def node(self, ino: int, ftype: int, *, mode: int = 0o644, rdev: int = 0, xattrs=(),
             **meta) -> "Craft":
        return self._add(ino, inode(ftype | mode, 0, rdev=rdev, **meta), 0, {}, xattrs)

    def _add(self, ino, ind, pieces, present, xattrs) -> "Craft":
        self.files[ino] = (ind, pieces, present, list(xattrs))
        return self

    # -- the image ---------------------------------------------------------------------
    def build(self, *, end: bool = True) -> bytes:
        sink = _Sink(self.ident.ntrec)
        w = FormatWriter(sink, self.ident)
        inos = sorted(self.dirs) + sorted(self.files)
        maxino = max(inos) + 1
        w.write_tape_header()
        w.write_maps(self.clri_override or bitmap(inos, maxino),
                     self.bits_override or bitmap(inos, maxino), maxino)
        for ino in sorted(self.dirs) + self.twice:
            data, ind, xattrs = self.dirs[ino]
            for off in range(0, len(data), TP_BSIZE):
                block = data[off:off + TP_BSIZE]
                w.write_chunk(ino, ind, off == 0, b"\x01", block + bytes(TP_BSIZE - len(block)),
                              crc=self.checksums)
            self._extattrs(w, ino, ind, xattrs, single=True)
        for ino in sorted(self.files):
            ind, pieces, present, xattrs = self.files[ino]
            self._chunks(w, ino, ind, pieces, present)
            self._extattrs(w, ino, ind, xattrs)
        if end:
            w.write_end(maxino)
        self.offsets = sink.offsets
        return sink.buf.getvalue()

    def _chunks(self, w, ino, ind, pieces, present) -> None:
        first = True
        for start in range(0, max(pieces, 1), CHUNK):
            n = min(CHUNK, pieces - start)
            addr = bytes(1 if start + i in present else 0 for i in range(n))
            data = b"".join(present[start + i] for i in range(n) if start + i in present)
            w.write_chunk(ino, ind, first, addr, data, crc=self.checksums,
                          metaonly=first and ino in self.metaonly)
            first = False

    @staticmethod
    def _extattrs(w, ino, ind, xattrs, single=False) -> None:
        if xattrs:
            records, skipped = pack_ea_records(xattrs, single=single)
            assert not skipped, skipped
            for rec in records:
                w.write_extattrs(ino, ind, rec)


__all__ = ["Craft", "bitmap", "inode", "DATE", "MODE_TO_DT"]
