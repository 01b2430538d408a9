"""The logical dump stream: FormatWriter and FormatReader (FORMAT.md §4; classic:
dump/tape.c + traverse.c on the write side, restore/tape.c on the read side).

The writer hands headers and data to a sink (dump/volumes.py), which cuts them
into records and volumes.  The reader takes blocks from a ``BlockSource`` per
volume and gives back inode records whose data it streams (classic getfile()).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from ndump.errors import ExitStatus, RunEndingError
from ndump.format.constants import (
    DR_COMPRESSED, DR_EXTATTRIBUTES, DR_METAONLY, EXT_NDUMP_XATTR, NDUMP_XATTR_MAXSIZE, DR_NEWHEADER, DR_NEWINODEFMT, EXT_XATTR, ROOTINO,
    FS_UFS2_MAGIC, NFS_MAGIC, OFS_MAGIC,
    TP_BSIZE, TP_NINDIR, TS_ADDR, TS_BITS, TS_CLRI, TS_END, TS_INODE, TS_TAPE, XATTR_MAXSIZE,
)
from ndump.format.bsd import unpack_bsd_extattrs
from ndump.format.extattr import unpack_ea_record
from ndump.format.header import (
    Header, HeaderDecoder, HeaderError, HeaderPacker, Totals, detect_format, pack_header,
    unpack_header,
)
from ndump.format.inode import Inode
from ndump.format.records import BlockSource, RecordError, UnsupportedCompressionError

ALL_PRESENT = b"\x01" * TP_NINDIR
_NO_ADDR = bytes(TP_NINDIR)           # the c_addr of an empty file (one object: its sum is cached)
# the c_addr of a chunk of n blocks, all present, by n (one object each: sums cached)
_FULL_ADDR = [_NO_ADDR] + [ALL_PRESENT[:n] + bytes(TP_NINDIR - n) for n in range(1, TP_NINDIR + 1)]


@dataclass(frozen=True, slots=True)
class DumpIdent:
    """Dump-wide header fields (FORMAT §2.7), the same in every header."""
    date: int
    ddate: int = 0
    level: int = 0
    label: str = "none"
    filesys: str = ""
    dev: str = ""
    host: str = ""
    ntrec: int = 10
    compressed: bool = False


class BlockSink(Protocol):
    def put(self, header: bytes, data: bytes | memoryview | None, ino: int, nblocks: int) -> None:
        """One header and the ``nblocks`` data blocks that follow it."""

    def pad_blocks(self) -> int:
        """TS_END blocks that fill the current record (at least one): only the
        sink knows where its volume's records begin."""


class FormatWriter:
    """Writes one dump's blocks, in the order FORMAT §4.1 requires."""

    def __init__(self, sink: BlockSink, ident: DumpIdent):
        self.sink = sink
        self.ident = ident
        self.tapea = 0
        self.volume = 1
        self.firstrec = 0
        self._flags = DR_NEWINODEFMT | (DR_COMPRESSED if ident.compressed else 0)
        self._packer = HeaderPacker(date=ident.date, ddate=ident.ddate, level=ident.level,
                                    label=ident.label, filesys=ident.filesys, dev=ident.dev,
                                    host=ident.host, ntrec=ident.ntrec)

    def _header(self, htype: int, ino: int, inode: Inode, count: int, addr: bytes,
                flags: int = 0, ext: int = 0, crc: int | None = None,
                totals: Totals | None = None) -> bytes:
        i = self.ident
        h = Header(type=htype, date=i.date, ddate=i.ddate, volume=self.volume, tapea=self.tapea,
                   inumber=ino, inode=inode, count=count, addr=addr, label=i.label,
                   level=i.level, filesys=i.filesys, dev=i.dev, host=i.host,
                   flags=self._flags | flags, firstrec=self.firstrec, ntrec=i.ntrec,
                   extattributes=ext, data_crc=crc, totals=totals)
        return pack_header(h)

    def _inode_header(self, htype: int, ino: int, inode: Inode, count: int, addr: bytes,
                      flags: int, ext: int, crc: int | None) -> bytes:
        """Fast path for TS_INODE/TS_ADDR (HeaderPacker.inode_header)."""
        return self._packer.inode_header(htype, self.volume, self.tapea, ino, inode, count, addr,
                                         self._flags | flags, self.firstrec, ext, crc)

    def _put(self, header: bytes, data, ino: int, nblocks: int) -> None:
        self.sink.put(header, data, ino, nblocks)
        self.tapea += 1 + nblocks

    def volume_header(self, *, count: int = 1, ino: int = 0, totals: Totals | None = None,
                      tapea: int | None = None, consume: bool = True) -> bytes:
        """TS_TAPE for the current volume (FORMAT §4.2, §7.2).

        A volume after the first takes the number of the first block it displaces
        and consumes none (``tapea``, ``consume=False``), like stock dump after an
        end of medium.
        """
        saved = self.tapea
        if tapea is not None:
            self.tapea = tapea
        block = self._header(TS_TAPE, ino, Inode(), count, bytes(512),
                             flags=DR_NEWHEADER, totals=totals)
        self.tapea = saved + 1 if consume else saved
        return block

    def start_volume(self, volume: int, firstrec: int) -> None:
        self.volume = volume
        self.firstrec = firstrec

    def write_tape_header(self, totals: Totals | None = None) -> None:
        block = self.volume_header(totals=totals)
        self.sink.put(block, None, 0, 0)

    def write_maps(self, clri: bytes, bits: bytes, maxino: int) -> None:
        """TS_CLRI then TS_BITS, equal sizes (FORMAT §4.3)."""
        for htype, bitmap in ((TS_CLRI, clri), (TS_BITS, bits)):
            count = len(bitmap) // TP_BSIZE
            inode = Inode(size=len(bitmap))
            ino = maxino if htype == TS_CLRI else ROOTINO
            self._put(self._header(htype, ino, inode, count, bytes(512)), bitmap, ino, count)

    def write_chunk(self, ino: int, inode: Inode, first: bool, addr: bytes, data,
                    *, metaonly: bool = False, crc: bool = True,
                    known_crc: int | None = None) -> None:
        """One TS_INODE (first) or TS_ADDR header and its present data blocks.
        ``known_crc``: the CRC-32 of ``data``, exactly the present blocks, computed
        already (by the dump's read-ahead thread)."""
        count = len(addr)
        nblocks = count - addr.count(0)
        if nblocks and len(data) != nblocks * TP_BSIZE:
            if len(data) > nblocks * TP_BSIZE:
                raise ValueError("more data than the block map describes")
            data = bytes(data) + bytes(nblocks * TP_BSIZE - len(data))
            known_crc = None
        if known_crc is not None and crc and nblocks:
            dcrc = known_crc
        else:
            dcrc = zlib.crc32(data) if crc and nblocks else None
        full_addr = (_NO_ADDR if not count else addr + bytes(512 - count) if count < 512
                     else addr)
        header = self._inode_header(TS_INODE if first else TS_ADDR, ino, inode, count, full_addr,
                                    DR_METAONLY if metaonly else 0, 0, dcrc)
        self._put(header, data if nblocks else None, ino, nblocks)

    def write_file(self, ino: int, mode: int, nlink: int, uid: int, gid: int, size: int,
                   asec: int, ans: int, msec: int, mns: int, csec: int, cns: int, iflags: int,
                   blocks: int, birth: tuple[int, int] | None, data: bytes | None,
                   crc: int | None) -> None:
        """write_chunk of a regular file's only chunk, every block present, from the
        inode's field values (no Inode object: the dump's per-file path).  ``data``:
        the file's bytes padded to whole blocks (at most TP_NINDIR), None when it is
        empty; ``crc``: the CRC-32 of ``data`` or None."""
        count = len(data) >> 10 if data is not None else 0
        header = self._packer.file_header(self.volume, self.tapea, ino, mode, nlink, uid, gid,
                                          size, asec, ans, msec, mns, csec, cns, iflags, blocks,
                                          birth, count, _FULL_ADDR[count], self._flags,
                                          self.firstrec, crc)
        self.sink.put(header, data, ino, count)
        self.tapea += 1 + count

    def write_extattrs(self, ino: int, inode: Inode, record: bytes, ext: int = EXT_XATTR) -> None:
        """One EA record (FORMAT §4.6); ``record`` is a multiple of 1024 bytes.
        ``ext=EXT_NDUMP_XATTR`` marks a record over 4 KiB that stock restore skips."""
        count = len(record) // TP_BSIZE
        ea_inode = _with_size(inode, len(record))
        header = self._header(TS_INODE, ino, ea_inode, count, ALL_PRESENT[:count] + bytes(512 - count),
                              flags=DR_EXTATTRIBUTES, ext=ext)
        self._put(header, record, ino, count)

    def write_end(self, maxino: int) -> None:
        """TS_END headers up to the end of the current record (FORMAT §4.8)."""
        for _ in range(self.sink.pad_blocks()):
            self._put(self._header(TS_END, maxino, Inode(), 0, bytes(512)), None, maxino, 0)


def _with_size(inode: Inode, size: int) -> Inode:
    from dataclasses import replace
    return replace(inode, size=size)


# --------------------------------------------------------------------------
# reading

class DumpFormatError(RunEndingError):
    """The stream cannot be read on (after the first header)."""
    exit_status = ExitStatus.ABORTED


class NotADumpError(DumpFormatError):
    """The first block is not a dump volume header."""
    exit_status = ExitStatus.STARTUP


class UnreadableDumpError(DumpFormatError):
    """A dump this installation cannot decode at all (a compression it lacks)."""
    exit_status = ExitStatus.STARTUP


class TruncatedError(DumpFormatError):
    """The dump ended before its TS_END and no further volume was given."""


@dataclass(frozen=True, slots=True)
class Hole:
    """A run of bytes that is a hole in the file."""
    size: int


@dataclass(slots=True)
class InodeRecord:
    """One dumped inode: its TS_INODE header, and what reading it found."""
    header: Header
    xattrs: list[tuple[str, bytes]] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    done: bool = False
    bsd_ext: bytearray | None = None    # UFS2: the extended-attribute area after the data

    @property
    def ino(self) -> int:
        return self.header.inumber

    @property
    def inode(self) -> Inode:
        return self.header.inode


NextVolume = Callable[[int], "Callable[[int], bytes] | None"]

# what wrote the dump, from its first header (FORMAT §2.3; format/bsd.py)
LAYOUT_LINUX = "linux"      # NFS_MAGIC, DR_NEWINODEFMT: Linux dump, 4.4BSD, FreeBSD UFS1 before 5.0
LAYOUT_43BSD = "4.3bsd"     # NFS_MAGIC without DR_NEWINODEFMT: 16-bit owners, old directories
LAYOUT_OFS = "ofs"          # OFS_MAGIC: the old header, V7 directories
LAYOUT_UFS2 = "ufs2"        # FS_UFS2_MAGIC: FreeBSD/NetBSD


def _layout(magic: int, tape: Header) -> str:
    if magic == OFS_MAGIC:
        return LAYOUT_OFS
    if magic == FS_UFS2_MAGIC:
        return LAYOUT_UFS2
    return LAYOUT_LINUX if tape.flags & DR_NEWINODEFMT else LAYOUT_43BSD


class FormatReader:
    """Reads one dump from a chain of volumes (FORMAT §4.9).

    ``read`` is volume 1's read(n).  ``next_volume(n)`` is asked for volume n's
    read(n) when a volume ends before TS_END; it returns None when there is none.
    ``on_problem`` receives one-line descriptions of damage found on the way.
    """

    def __init__(self, read: Callable[[int], bytes], *, next_volume: NextVolume | None = None,
                 on_problem: Callable[[str], None] | None = None, verify_crc: bool = True):
        self._next_volume = next_volume
        self._problem = on_problem or (lambda msg: None)
        self.verify_crc = verify_crc
        self._peeked: Header | None = None
        self.blocks_read = 0
        self.ended = False
        self._headers = HeaderDecoder()
        self._src = BlockSource(read)
        try:
            first = self._src.probe_first()
        except UnsupportedCompressionError as e:
            raise UnreadableDumpError(str(e)) from None
        self.tape = self._first_header(first)
        magic, self.order = detect_format(first) or (NFS_MAGIC, "<")
        self.layout = _layout(magic, self.tape)
        self._old_inodes = self.layout == LAYOUT_43BSD
        self.dir_format = {LAYOUT_OFS: "v7", LAYOUT_43BSD: "old"}.get(self.layout, "new")
        self.volume = self.tape.volume
        self.clri = b""
        self.bits = b""
        self.maxino = 0

    @property
    def compressed(self) -> bool:
        return self._src.compressed

    def note(self, text: str) -> None:
        """Report damage found by a caller decoding what this reader read (one line)."""
        self._problem(text)

    def _first_header(self, first: bytes) -> Header:
        if len(first) < TP_BSIZE:
            if not first:
                raise NotADumpError("empty input")
            found = detect_format(first[:28].ljust(TP_BSIZE, b"\0"))
            if found:
                raise NotADumpError(f"cut short: it ends after {len(first)} of the {TP_BSIZE}"
                                    f" bytes of a dump header, magic {found[0]}")
            raise NotADumpError(f"only {len(first)} bytes, fewer than one dump header")
        try:
            h = unpack_header(first)
        except HeaderError as e:
            raise NotADumpError(f"not a dump image ({e})") from None
        if h.type != TS_TAPE:
            raise NotADumpError(f"not a dump image (first header is {h.type_name})")
        self.blocks_read = 1
        return h

    # -- blocks ------------------------------------------------------------
    def _read_blocks(self, n: int) -> bytes | memoryview:
        """Exactly n blocks, crossing into the next volume when one ends."""
        try:
            data = self._src.read_blocks(n)
        except UnsupportedCompressionError as e:
            raise UnreadableDumpError(str(e)) from None     # not damage: nothing can be read
        except RecordError as e:
            self._problem(str(e))
            data = b""
        if len(data) == n * TP_BSIZE:
            self.blocks_read += n
            return data
        parts = [bytes(data)]
        got = len(data) // TP_BSIZE
        self.blocks_read += got
        while got < n:
            self._change_volume()
            more = self._src.read_blocks(n - got)
            got += len(more) // TP_BSIZE
            self.blocks_read += len(more) // TP_BSIZE
            parts.append(bytes(more))
        return b"".join(parts)

    def _change_volume(self) -> None:
        want = self.volume + 1
        read = self._next_volume(want) if self._next_volume else None
        if read is None:
            raise TruncatedError(f"the dump ends early, at block {self.blocks_read}"
                                 f" of volume {self.volume}, without an end marker")
        src = BlockSource(read)
        first = src.probe_first()
        try:
            h = self._headers.unpack(first, old_inodes=self._old_inodes)
        except HeaderError:
            raise DumpFormatError(f"volume {want} does not start with a dump header") from None
        if h.type != TS_TAPE or h.volume != want:
            raise DumpFormatError(f"wrong volume: wanted volume {want}, got volume {h.volume}")
        if h.date != self.tape.date or h.ddate != self.tape.ddate:
            raise DumpFormatError(f"wrong dump date on volume {want}")
        self._src = src
        self.volume = want
        # drop blocks rewritten after an end-of-medium (FORMAT §7.3)
        dup = self.blocks_read - h.firstrec if 0 < h.firstrec < self.blocks_read else 0
        if dup:
            self._src.read_blocks(dup)

    # -- headers -----------------------------------------------------------
    def _block_is_header(self, block) -> Header | None:
        try:
            h = self._headers.unpack(block, old_inodes=self._old_inodes)
        except HeaderError:
            return None
        return h if h.date == self.tape.date else None

    def next_header(self) -> Header:
        """The next header, resynchronising past damaged blocks (FORMAT §11.2 item 10)."""
        if self._peeked is not None:
            h, self._peeked = self._peeked, None
            return h
        block = self._read_blocks(1)
        h = self._block_is_header(block)
        skipped = 0
        while h is None or h.type == TS_TAPE:
            skipped += 1
            block = self._read_blocks(1)
            h = self._block_is_header(block)
        if skipped:
            self._problem(f"resync: skipped {skipped} blocks of damaged or unexpected data")
        return h

    def peek_header(self) -> Header:
        if self._peeked is None:
            self._peeked = self.next_header()
        return self._peeked

    # -- the fixed part: maps ----------------------------------------------
    def read_maps(self) -> None:
        """TS_CLRI and TS_BITS (FORMAT §4.3); sets clri, bits and maxino."""
        h = self.next_header()
        if h.type != TS_CLRI:
            raise DumpFormatError(f"cannot find file removal list (found {h.type_name})")
        self.clri = self._map_data(h)
        self.maxino = len(self.clri) * 8 + 1
        h = self.peek_header()
        if h.type == TS_END:
            self.bits = bytes(len(self.clri))
            return
        h = self.next_header()
        if h.type != TS_BITS:
            raise DumpFormatError(f"cannot find file dump list (found {h.type_name})")
        bits = self._map_data(h)
        self.bits = bits[:len(self.clri)].ljust(len(self.clri), b"\0")

    def _map_data(self, h: Header) -> bytes:
        count = max(0, h.count)
        if count > 1 << 16:
            raise DumpFormatError(f"absurd map size ({count} blocks)")
        return bytes(self._read_blocks(count))

    # -- inodes ------------------------------------------------------------
    def next_record(self) -> InodeRecord | None:
        """The next inode's record, or None at the end of the dump."""
        while True:
            h = self.next_header()
            if h.type == TS_END:
                self.ended = True
                return None
            if h.type == TS_INODE and not h.flags & DR_EXTATTRIBUTES:
                return InodeRecord(h)
            # a TS_ADDR or EA record without its inode: its start was damaged
            self._skip_blocks(h)
            self._problem(f"skipped a {h.type_name} record of inode {h.inumber}"
                          " whose inode header is missing")

    def _skip_blocks(self, h: Header) -> None:
        n = h.present() if h.type in (TS_INODE, TS_ADDR) else 0
        if h.is_extattr:
            n = max(0, min(h.count, XATTR_MAXSIZE // TP_BSIZE))
        if n:
            self._read_blocks(n)

    def file_data(self, rec: InodeRecord) -> Iterator[bytes | memoryview | Hole]:
        """Yields the inode's data up to di_size: bytes and Hole runs (classic getfile).

        Afterwards rec.xattrs holds its extended attributes and rec.damaged what
        went wrong on the way.
        """
        remaining = rec.inode.size if not rec.header.is_metaonly else 0
        h = rec.header
        while True:
            yield from self._chunk_pieces(rec, h, remaining)
            remaining -= min(remaining, max(0, min(h.count, TP_NINDIR)) * TP_BSIZE)
            nxt = self.peek_header()
            if nxt.type == TS_ADDR and nxt.inumber == rec.ino:
                h = self.next_header()
                continue
            break
        if remaining > 0:
            if not rec.header.inode.is_dir:
                yield Hole(remaining)
            if rec.inode.is_reg and rec.header.count:
                rec.damaged.append(f"missing blocks at the end, {remaining} bytes taken as a hole")
        if rec.header.extsize:
            self._bsd_extattrs(rec)
        self._read_extattrs(rec)
        rec.done = True

    def whole_data(self, rec: InodeRecord) -> bytes | memoryview | None:
        """All of a file's data as one buffer when its first header holds all of it
        with every block present (most files are so); None, with nothing read, for
        any other record (then file_data()).  Like file_data(), it reads the whole
        record, so that rec.xattrs and rec.damaged are complete afterwards."""
        h = rec.header
        size = h.inode.size
        count = h.count
        if (not 0 <= count <= TP_NINDIR or count * TP_BSIZE < size or h.flags & DR_METAONLY
                or h.extsize or h.addr.find(0, 0, count) >= 0):
            return None
        data = self._read_blocks(count) if count else b""
        if h.data_crc is not None and self.verify_crc and zlib.crc32(data) != h.data_crc:
            rec.damaged.append(f"data checksum mismatch in the chunk at block {h.tapea}")
        while True:     # further TS_ADDR headers of the inode hold nothing of its size
            nxt = self.peek_header()
            if nxt.type != TS_ADDR or nxt.inumber != rec.ino:
                break
            for _ in self._chunk_pieces(rec, self.next_header(), 0):
                pass
        self._read_extattrs(rec)
        rec.done = True
        return data[:size] if size < len(data) else data

    @staticmethod
    def _keep_bsd_ext(rec: InodeRecord, data, span: int) -> None:
        """UFS2: blocks after the file's data hold its extended attributes (FreeBSD getfile)."""
        if rec.bsd_ext is None:
            rec.bsd_ext = bytearray()
        rec.bsd_ext += data[-(-span // TP_BSIZE) * TP_BSIZE:]

    def _bsd_extattrs(self, rec: InodeRecord) -> None:
        raw = bytes(rec.bsd_ext or b"")[:rec.header.extsize]
        rec.bsd_ext = None
        attrs, skipped, damaged = unpack_bsd_extattrs(raw, self.order)
        rec.xattrs.extend(attrs)
        if damaged:
            rec.damaged.append("its UFS2 extended attributes are damaged")
        if skipped:
            self._problem(f"inode {rec.ino}: {skipped} UFS2 system extended attribute(s)"
                          " (BSD ACLs, which Linux cannot take) left out")

    def _chunk_pieces(self, rec: InodeRecord, h: Header, remaining: int):
        count = max(0, min(h.count, TP_NINDIR))
        addr = h.addr
        i = 0
        crc = 0
        while i < count:
            # runs found with bytes methods: a per-entry Python loop costs ~10 us a header
            present = addr[i] != 0
            if present:
                j = addr.find(0, i, count)
                if j < 0:
                    j = count
            else:
                j = count - len(addr[i:count].lstrip(b"\0"))
            run = j - i
            span = min(run * TP_BSIZE, max(0, remaining))
            if present:
                data = self._read_blocks(run)
                if h.data_crc is not None and self.verify_crc:
                    crc = zlib.crc32(data, crc)
                if span:
                    yield data[:span] if span < len(data) else data
                if rec.header.extsize and span < len(data):
                    self._keep_bsd_ext(rec, data, span)
            elif span:
                yield Hole(span)
            remaining -= span
            i = j
        if h.data_crc is not None and self.verify_crc and crc != h.data_crc:
            rec.damaged.append(f"data checksum mismatch in the chunk at block {h.tapea}")

    def skip(self, rec: InodeRecord) -> None:
        """Consume an inode's data and attributes without using them."""
        if not rec.done:
            for _ in self.file_data(rec):
                pass

    def read_all(self, rec: InodeRecord) -> bytes:
        """An inode's data as one bytes object (directories, symlinks)."""
        parts = []
        for piece in self.file_data(rec):
            parts.append(bytes(piece.size) if isinstance(piece, Hole) else bytes(piece))
        return b"".join(parts)

    def _read_extattrs(self, rec: InodeRecord) -> None:
        while True:
            nxt = self.peek_header()
            if not (nxt.type == TS_INODE and nxt.flags & DR_EXTATTRIBUTES and nxt.inumber == rec.ino):
                return
            h = self.next_header()
            # every kind's blocks are consumed, so that a record we do not read
            # (MacOS kinds 1, 2) keeps the stream in step
            count = max(0, min(h.count, NDUMP_XATTR_MAXSIZE // TP_BSIZE))
            data = bytes(self._read_blocks(count)) if count else b""
            limit = {EXT_XATTR: XATTR_MAXSIZE, EXT_NDUMP_XATTR: NDUMP_XATTR_MAXSIZE}.get(h.extattributes)
            if limit is None:
                continue
            if h.inode.size > limit:
                rec.damaged.append("EA record too big")
                continue
            attrs, problems = unpack_ea_record(data[:h.inode.size], limit)
            rec.xattrs.extend(attrs)
            rec.damaged.extend(problems)
