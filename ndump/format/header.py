"""The 1024-byte header block <-> Header (FORMAT.md §2; classic: dumprestore.h
``union u_spcl``).

Pure: bytes in, frozen dataclasses out.  Byte order is detected from the magic
(FORMAT §1.3); ndump always writes little-endian.

The ndump extension (FORMAT §11.1 item 18) lives in c_spare, which stock
restore never reads; it starts with the magic ``NDX1``:

* inode headers (TS_INODE, TS_ADDR): nanoseconds of atime/mtime/ctime, the high
  halves of their 64-bit seconds, the birth time, and a CRC-32 of the data
  blocks that follow this header;
* TS_TAPE: the dump's totals (data bytes, inodes, blocks) for restore's space
  check (SPEC §5.2).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields, replace

from ndump.errors import NdumpError
from ndump.format.constants import (
    CHECKSUM, DR_EXTATTRIBUTES, DR_METAONLY, FS_UFS2_MAGIC, NDX_MAGIC, NFS_MAGIC, OFS_MAGIC,
    TP_BSIZE,
    TS_ADDR, TS_INODE, TS_NAMES,
)
from ndump.format.inode import Inode, decode_rdev, encode_rdev, split_seconds

_LAYOUT = ("iiiiIIii"        # type date ddate volume tapea inumber magic checksum
           "HhHHQ"           # di_mode di_nlink di_ouid di_ogid di_size
           "iiiiii"          # atime mtime ctime (sec, usec)
           "12i3i"           # di_db di_ib
           "IIiII"           # di_flags di_blocks di_gen di_uid di_gid
           "8s"              # di_spare
           "i512s16si64s64s64s"  # count addr label level filesys dev host
           "iiii120s")       # flags firstrec ntrec extattributes spare
HEADER_LE = struct.Struct("<" + _LAYOUT)
HEADER_BE = struct.Struct(">" + _LAYOUT)
WORDS_LE = struct.Struct("<256i")
WORDS_BE = struct.Struct(">256i")
_MAGIC_AT = 24
_CKSUM_AT = 28
_EXT_INODE = struct.Struct("<4sIIIiiiqIII")
_EXT_TAPE = struct.Struct("<4sIQQQ")
_EXT_BIRTH = 1
_EXT_CRC = 2
_EXT_TOTALS = 1

assert HEADER_LE.size == TP_BSIZE


class HeaderError(NdumpError):
    """A block that should be a header is not one."""


class BadMagicError(HeaderError):
    pass


class BadChecksumError(HeaderError):
    pass


class BadTypeError(HeaderError):
    pass


@dataclass(frozen=True, slots=True)
class Totals:
    """What a dump holds, for restore's space and inode check (SPEC §5.2)."""
    data_bytes: int
    inodes: int
    blocks: int


@dataclass(frozen=True, slots=True)
class Header:
    """One header block (FORMAT §2.1).  ``addr`` is the raw 512-byte c_addr."""
    type: int
    date: int = 0
    ddate: int = 0
    volume: int = 1
    tapea: int = 0
    inumber: int = 0
    inode: Inode = field(default_factory=Inode)
    count: int = 0
    addr: bytes = bytes(512)
    label: str = "none"
    level: int = 0
    filesys: str = ""
    dev: str = ""
    host: str = ""
    flags: int = 0
    firstrec: int = 0
    ntrec: int = 10
    extattributes: int = 0
    data_crc: int | None = None
    totals: Totals | None = None
    extsize: int = 0          # UFS2: bytes of BSD extended attributes after the file's data

    @property
    def type_name(self) -> str:
        return TS_NAMES.get(self.type, f"type {self.type}")

    @property
    def is_extattr(self) -> bool:
        return bool(self.flags & DR_EXTATTRIBUTES)

    @property
    def is_metaonly(self) -> bool:
        return bool(self.flags & DR_METAONLY)

    @property
    def is_inode(self) -> bool:
        return self.type == TS_INODE and not self.flags & DR_EXTATTRIBUTES

    @property
    def inos(self) -> tuple[int, ...]:
        """The c_inos overlay of c_addr (TS_TAPE/TS_END volume table)."""
        return struct.unpack("<128I", self.addr)

    def present(self) -> int:
        """Number of data blocks following this header."""
        if self.type in (TS_INODE, TS_ADDR) and not self.flags & DR_EXTATTRIBUTES:
            n = max(0, min(self.count, 512))
            return n - self.addr[:n].count(0)
        return max(0, self.count)

    def pack(self) -> bytes:
        return pack_header(self)


def _cstr(value: str, size: int) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")[: size - 1]
    return raw + bytes(size - len(raw))


def _uncstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _spare_for(h: Header) -> bytes:
    if h.totals is not None:
        t = h.totals
        return _EXT_TAPE.pack(NDX_MAGIC, _EXT_TOTALS, t.data_bytes, t.inodes, t.blocks).ljust(120, b"\0")
    if h.type not in (TS_INODE, TS_ADDR):
        return bytes(120)
    return inode_spare(h.inode, h.data_crc)


def pack_header(h: Header) -> bytes:
    """Header -> 1024 bytes, little-endian, with a correct checksum."""
    buf = bytearray(b"".join((
        _PRE.pack(h.type, h.date, h.ddate, h.volume, h.tapea & 0xFFFFFFFF, h.inumber,
                  NFS_MAGIC, 0),
        pack_dinode(h.inode), _CNT.pack(h.count), h.addr,
        _MID.pack(_cstr(h.label, 16), h.level, _cstr(h.filesys, 64), _cstr(h.dev, 64),
                  _cstr(h.host, 64)),
        _TAIL.pack(h.flags, h.firstrec, h.ntrec, h.extattributes), _spare_for(h))))
    set_checksum(buf)
    return bytes(buf)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v >= 0x80000000 else v


def set_checksum(buf: bytearray) -> None:
    """Make the 256 little-endian words of ``buf`` sum to CHECKSUM (FORMAT §2.2)."""
    buf[_CKSUM_AT:_CKSUM_AT + 4] = b"\0\0\0\0"
    total = sum(WORDS_LE.unpack(buf))
    struct.pack_into("<i", buf, _CKSUM_AT, _s32(CHECKSUM - total))


_MAGICS = {struct.pack(order + "i", magic): (magic, order)
           for magic in (NFS_MAGIC, OFS_MAGIC, FS_UFS2_MAGIC) for order in "<>"}


def detect_format(block: bytes | memoryview) -> tuple[int, str] | None:
    """(magic, '<' or '>') when the block carries one of the dump magics (FORMAT §2.3)."""
    if len(block) < TP_BSIZE:
        return None
    return _MAGICS.get(bytes(block[_MAGIC_AT:_MAGIC_AT + 4]))


def detect_order(block: bytes | memoryview) -> str | None:
    """'<' or '>' when the block carries a dump magic in that order, else None."""
    found = detect_format(block)
    return found[1] if found else None


# The 256 words of a header summed as one big integer (FORMAT §2.2): the odd words
# are shifted onto the even ones, so each 64-bit lane holds a pair's sum (< 2**33),
# and halving folds add the lanes (the total stays below 2**41, so nothing crosses
# a lane).  Twice as fast as summing 256 Python ints: a restore checks every header.
_EVEN_WORDS = int.from_bytes(b"\xff\xff\xff\xff\0\0\0\0" * (TP_BSIZE // 8), "little")
_FOLDS = tuple((bits, (1 << bits) - 1) for bits in (4096, 2048, 1024, 512, 256, 128, 64))


def header_sum(block: bytes | memoryview, order: str = "<") -> int:
    """The sum of the first 1024 bytes of ``block`` as 32-bit words, modulo 2**32."""
    x = int.from_bytes(block[:TP_BSIZE], "little" if order == "<" else "big")
    lanes = (x & _EVEN_WORDS) + ((x >> 32) & _EVEN_WORDS)
    for bits, mask in _FOLDS:
        lanes = (lanes & mask) + (lanes >> bits)
    return lanes & 0xFFFFFFFF


def checksum_ok(block: bytes | memoryview, order: str = "<") -> bool:
    return len(block) >= TP_BSIZE and header_sum(block, order) == CHECKSUM


def is_header(block: bytes | memoryview, order: str = "<") -> bool:
    return detect_order(block) == order and checksum_ok(block, order)


def unpack_header(block: bytes | memoryview, order: str | None = None, *,
                  old_inodes: bool = False) -> Header:
    """1024 bytes -> Header; raises a HeaderError when they are not a header.

    Every layout stock restore reads is recognised by its magic (bsd.py for the old
    BSD and UFS2 ones); ``old_inodes`` takes owner and group from the 16-bit fields,
    as a dump whose TS_TAPE lacks DR_NEWINODEFMT (4.2BSD-4.3BSD) needs.  A reader of
    a whole dump uses a HeaderDecoder instead, which decodes the identification
    strings once.
    """
    return _unpack(block, order, old_inodes, None)


class HeaderDecoder:
    """unpack_header for the headers of one dump: the label, file system, device
    and host strings, the same in every header of a dump, are decoded once."""

    def __init__(self):
        self._ident: tuple[bytes, str, tuple] | None = None     # (raw, order, decoded)

    def unpack(self, block: bytes | memoryview, order: str | None = None, *,
               old_inodes: bool = False) -> Header:
        return _unpack(block, order, old_inodes, self)

    def ident(self, raw: bytes, order: str) -> tuple[str, int, str, str, str]:
        last = self._ident
        if last is not None and last[0] == raw and last[1] == order:
            return last[2]
        found = _ident(raw, order)
        self._ident = (raw, order, found)
        return found


def _unpack(block, order: str | None, old_inodes: bool, decoder: HeaderDecoder | None) -> Header:
    found = detect_format(block)
    if found is None or (order is not None and found[1] != order):
        raise BadMagicError("no dump magic")
    magic, order = found
    if not checksum_ok(block, order):
        total = header_sum(block, order)
        raise BadChecksumError(f"checksum error {total:o}")
    if magic != NFS_MAGIC:
        h = _unpack_bsd(bytes(block[:TP_BSIZE]), magic, order)
    else:
        v = (_READ_LE if order == "<" else _READ_BE).unpack_from(block)
        h = _build(v, block[904:908] == NDX_MAGIC and bytes(block[904:1024]), order, decoder)
        if old_inodes:
            uid, gid = struct.unpack_from(order + "HH", block, 36)
            h = replace(h, inode=replace(h.inode, uid=uid, gid=gid))
    if h.type not in TS_NAMES:
        raise BadTypeError(f"unknown header type {h.type}")
    return h


def _unpack_bsd(block: bytes, magic: int, order: str) -> Header:
    from ndump.format import bsd          # bsd.py builds on this module
    return (bsd.unpack_ofs if magic == OFS_MAGIC else bsd.unpack_ufs2)(block, order)


# What a reader needs of a header: the fields below, with the unused ones
# (magic, checksum, 16-bit ids, di_db[2:], di_ib, di_spare) skipped, and the
# identification strings + level kept as one 212-byte value decoded once per
# dump (see HeaderDecoder).  Offsets as in _LAYOUT; c_spare (904-1023) separately.
_READ_FIELDS = "iiiiII8xHh4xQiiiiiiii52xIIiII8xi512s212siiii"
_READ_LE = struct.Struct("<" + _READ_FIELDS)
_READ_BE = struct.Struct(">" + _READ_FIELDS)
assert _READ_LE.size == 904


def _ident(raw: bytes, order: str) -> tuple[str, int, str, str, str]:
    """(label, level, filesys, dev, host) from header bytes 676-887."""
    level, = struct.unpack_from(order + "i", raw, 16)
    return (_uncstr(raw[:16]), level, _uncstr(raw[20:84]), _uncstr(raw[84:148]),
            _uncstr(raw[148:212]))


def _build(v: tuple, spare: bytes | bool, order: str = "<",
           decoder: "HeaderDecoder | None" = None) -> Header:
    (htype, date, ddate, volume, tapea, inumber, mode, nlink, size,
     asec, ausec, msec, musec, csec, cusec, db0, db1, flags_i, blocks, gen, uid, gid,
     count, addr, ident, flags, firstrec, ntrec, extattr) = v
    ans, mns, cns = ausec * 1000, musec * 1000, cusec * 1000
    ahi = mhi = chi = 0
    birth = None
    crc = None
    totals = None
    if spare:                       # the ndump extension is present (module docstring)
        if htype in (TS_INODE, TS_ADDR):
            (_, ans2, mns2, cns2, ahi, mhi, chi, bsec, bns, ext_flags, dcrc) = _EXT_INODE.unpack_from(spare)
            if max(ans2, mns2, cns2) < 1_000_000_000:
                ans, mns, cns = ans2, mns2, cns2
            if ext_flags & _EXT_BIRTH:
                birth = (bsec, bns)
            if ext_flags & _EXT_CRC:
                crc = dcrc
        elif htype == 1:
            _, ext_flags, dbytes, inodes, nblocks = _EXT_TAPE.unpack_from(spare)
            if ext_flags & _EXT_TOTALS:
                totals = Totals(dbytes, inodes, nblocks)
    if not 0 <= ans < 1_000_000_000 or not 0 <= mns < 1_000_000_000 or not 0 <= cns < 1_000_000_000:
        ans = mns = cns = 0
    # positional, in field order (_READ_INODE, _READ_HEADER): a reader builds two a header
    inode = _read_inode(mode, nlink, size, uid, gid, (ahi << 32) + asec, ans,
                        (mhi << 32) + msec, mns, (chi << 32) + csec, cns,
                        decode_rdev(db0, db1) if mode & 0o170000 in (0o020000, 0o060000) else 0,
                        flags_i, blocks, gen, birth)
    label, level, filesys, dev, host = (decoder.ident(ident, order) if decoder is not None
                                        else _ident(ident, order))
    return _read_header(htype, date, ddate, volume, tapea, inumber, inode, count, addr,
                        label, level, filesys, dev, host, flags, firstrec, ntrec, extattr,
                        crc, totals, 0)


def _fast_constructor(cls, *, positional: bool = False):
    """A constructor for a frozen slots dataclass that skips its __init__.

    A frozen dataclass's __init__ sets every field through object.__setattr__,
    which made building Header + Inode cost ~8 us of each header read (a third
    of reading a 20k-file dump).  This builds a plain twin class with the same
    slots, whose __init__ sets them at attribute speed, and turns the instance
    into a ``cls`` by __class__ assignment (allowed: the layouts are the same),
    three times as fast as setting the slots through their descriptors.  Every
    field must be given (by keyword, or ``positional`` in field order).  Same
    objects, same equality and hash.
    """
    names = [f.name for f in fields(cls)]
    if tuple(cls.__slots__) != tuple(names):
        raise TypeError(f"{cls.__name__}: slots and fields differ")
    args = ", ".join(names)
    src = (f"class Twin:\n    __slots__ = slots\n    def __init__(self, {args}):\n"
           + "".join(f"        self.{n} = {n}\n" for n in names)
           + f"def make({'' if positional else '*, '}{args}):\n"
           + f"    o = Twin({args})\n    o.__class__ = cls\n    return o\n")
    scope = {"slots": cls.__slots__, "cls": cls}
    exec(src, scope)
    return scope["make"]


make_inode = _fast_constructor(Inode)
make_inode.__name__ = make_inode.__qualname__ = "make_inode"
make_inode.__doc__ = """make_inode(mode=, nlink=, size=, uid=, gid=, atime=, atime_ns=, mtime=,
mtime_ns=, ctime=, ctime_ns=, rdev=, flags=, blocks=, gen=, birth=) -> Inode

Every field by keyword, none checked, without the frozen dataclass __init__: the
dump writer builds one per file and the reader one per header, and Inode(...)
costs a third more of that per-file time."""
_new_header = _fast_constructor(Header)
make_inode_args = _fast_constructor(Inode, positional=True)
make_inode_args.__name__ = make_inode_args.__qualname__ = "make_inode_args"
make_inode_args.__doc__ = """make_inode with the 16 fields in Inode's order, positionally: the
dump writer's per-file constructor."""
_read_inode = _fast_constructor(Inode, positional=True)
_read_header = _fast_constructor(Header, positional=True)


# --------------------------------------------------------------------------
# fast path for the writer: the dump-wide and per-inode parts of a header are
# packed once, with their word sums, so each further header costs a few small
# packs (a 20k-file dump writes ~25k headers).

_PRE = struct.Struct("<iiiiIIii")          # bytes 0-31
_DIN = struct.Struct("<HhHHQiiiiii12i3iIIiII8s")   # 32-159
_MID = struct.Struct("<16si64s64s64s")     # 676-887
_TAIL = struct.Struct("<iiii")             # 888-903
_CNT = struct.Struct("<i")


def word_sum(data: bytes) -> int:
    return sum(memoryview(data).cast("I"))


def pack_dinode(i: Inode) -> bytes:
    """The 128-byte c_dinode (FORMAT §3)."""
    db0 = _s32(encode_rdev(i.rdev)) if i.is_device else 0
    return _DIN.pack(i.mode & 0xFFFF, max(-32768, min(i.nlink, 32767)), i.uid & 0xFFFF,
                     i.gid & 0xFFFF, i.size,
                     _low(i.atime), i.atime_ns // 1000,
                     _low(i.mtime), i.mtime_ns // 1000,
                     _low(i.ctime), i.ctime_ns // 1000,
                     db0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                     i.flags & 0xFFFFFFFF, i.blocks & 0xFFFFFFFF, _s32(i.gen),
                     i.uid & 0xFFFFFFFF, i.gid & 0xFFFFFFFF, _ZERO8)


class HeaderPacker:
    """Packs headers of one dump quickly; output equals pack_header's."""

    def __init__(self, *, date: int, ddate: int, level: int, label: str, filesys: str,
                 dev: str, host: str, ntrec: int):
        self.date, self.ddate, self.ntrec = date, ddate, ntrec
        self.mid = _MID.pack(_cstr(label, 16), level, _cstr(filesys, 64), _cstr(dev, 64),
                             _cstr(host, 64))
        self.mid_sum = word_sum(self.mid)
        # the words of an inode header that are the same in every one
        self._fixed_words = date + ddate + NFS_MAGIC + self.mid_sum + ntrec + _NDX_WORD
        self._addr_sums: dict[bytes, int] = {}

    def addr_sum(self, addr: bytes) -> int:
        s = self._addr_sums.get(addr)
        if s is None:
            s = word_sum(addr)
            if len(self._addr_sums) < 4096:
                self._addr_sums[addr] = s
        return s

    def inode_header(self, htype: int, volume: int, tapea: int, ino: int, i: Inode, count: int,
                     addr: bytes, flags: int, firstrec: int, extattr: int,
                     crc: int | None) -> bytes:
        """A TS_INODE or TS_ADDR header of inode ``i`` (its c_dinode and ndump
        extension included): file_header of its fields."""
        mode = i.mode
        db0 = _s32(encode_rdev(i.rdev)) if mode & 0o170000 in (0o020000, 0o060000) else 0
        return self.file_header(volume, tapea, ino, mode, i.nlink, i.uid, i.gid, i.size,
                                i.atime, i.atime_ns, i.mtime, i.mtime_ns, i.ctime, i.ctime_ns,
                                i.flags, i.blocks, i.birth, count, addr, flags, firstrec, crc,
                                htype=htype, db0=db0, gen=_s32(i.gen), extattr=extattr)

    def file_header(self, volume: int, tapea: int, ino: int, mode: int, nlink: int, uid: int,
                    gid: int, size: int, asec: int, ans: int, msec: int, mns: int, csec: int,
                    cns: int, iflags: int, blocks: int, birth: tuple[int, int] | None,
                    count: int, addr: bytes, flags: int, firstrec: int,
                    crc: int | None, *, htype: int = TS_INODE, db0: int = 0, gen: int = 0,
                    extattr: int = 0) -> bytes:
        """A TS_INODE or TS_ADDR header from the inode's field values in one pack,
        without an Inode object: the dump writer's per-file header (the defaults are
        a regular file's: no device number, generation or EA kind).  The checksum
        is summed from the field values rather than from the packed words."""
        if not -32768 <= nlink <= 32767:
            nlink = -32768 if nlink < 0 else 32767
        alow, ahi = (asec, 0) if -0x80000000 <= asec < 0x80000000 else split_seconds(asec)
        mlow, mhi = (msec, 0) if -0x80000000 <= msec < 0x80000000 else split_seconds(msec)
        clow, chi = (csec, 0) if -0x80000000 <= csec < 0x80000000 else split_seconds(csec)
        if birth is None:
            bsec = bns = ext_flags = 0
        else:
            bsec, bns = birth
            ext_flags = _EXT_BIRTH
        if crc is None:
            crc = 0
        else:
            ext_flags |= _EXT_CRC
        iflags &= 0xFFFFFFFF
        blocks &= 0xFFFFFFFF
        tapea &= 0xFFFFFFFF
        ausec, musec, cusec = ans // 1000, mns // 1000, cns // 1000
        m16, u16, g16 = mode & 0xFFFF, uid & 0xFFFF, gid & 0xFFFF
        # the 256 little-endian words, summed field by field (FORMAT §2.2); the
        # dump-wide ones summed once (_fixed_words)
        total = (self._fixed_words + htype + volume + tapea + ino + m16 + ((nlink & 0xFFFF) << 16)
                 + u16 + (g16 << 16) + size + (size >> 32) + alow + ausec + mlow + musec
                 + clow + cusec + db0 + iflags + blocks + gen + uid + gid + count
                 + self.addr_sum(addr) + flags + firstrec + extattr + ans + mns + cns + ahi
                 + mhi + chi + bsec + (bsec >> 32) + bns + ext_flags + crc)
        return _INODE_HEADER.pack(
            htype, self.date, self.ddate, volume, tapea, ino, NFS_MAGIC,
            _s32(CHECKSUM - total), m16, nlink, u16, g16, size, alow, ausec, mlow, musec,
            clow, cusec, db0, iflags, blocks, gen, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF,
            count, addr, self.mid, flags, firstrec, self.ntrec, extattr,
            NDX_MAGIC, ans, mns, cns, ahi, mhi, chi, bsec, bns, ext_flags, crc)


# HeaderPacker.inode_header's layout: _PRE, _DIN (di_db[1:], di_ib and di_spare
# zero), count, addr, _MID, _TAIL, _EXT_INODE and its padding
_INODE_HEADER = struct.Struct("<iiiiIIii" "HhHHQiiiiiii44x12xIIiII8x" "i512s212siiii"
                              "4sIIIiiiqIII72x")
assert _INODE_HEADER.size == TP_BSIZE
_NDX_WORD = int.from_bytes(NDX_MAGIC, "little")


_ZERO8 = bytes(8)


def _low(sec: int) -> int:
    return sec if -0x80000000 <= sec < 0x80000000 else split_seconds(sec)[0]


def inode_spare(i: Inode, crc: int | None) -> bytes:
    """The ndump extension of an inode header (module docstring)."""
    ext_flags = 0
    bsec = bns = 0
    if i.birth is not None:
        ext_flags |= _EXT_BIRTH
        bsec, bns = i.birth
    if crc is not None:
        ext_flags |= _EXT_CRC
    return _EXT_INODE.pack(NDX_MAGIC, i.atime_ns, i.mtime_ns, i.ctime_ns,
                           _high(i.atime), _high(i.mtime), _high(i.ctime), bsec, bns, ext_flags,
                           crc or 0) + _SPARE_PAD


_SPARE_PAD = bytes(120 - _EXT_INODE.size)


def _high(sec: int) -> int:
    return 0 if -0x80000000 <= sec < 0x80000000 else split_seconds(sec)[1]

# -- walking the header chain without decoding whole headers ---------------------
_LINK_LE = struct.Struct("<iiiiI")          # type date ddate volume tapea
_COUNT_LE = struct.Struct("<i")
_NFS_LE = struct.pack("<I", NFS_MAGIC)
_COUNT_AT, _ADDR_AT, _FLAGS_AT = 160, 164, 888


def chain_link(block: bytes | memoryview) -> tuple[int, int, int, int, bool, int] | None:
    """(type, date, volume, tapea, is_inode, blocks that follow) of a little-endian
    Linux header, or None when the block is not one (bad magic, checksum or type).

    The same answers as unpack_header(block, "<") and Header.present(), for the
    few fields a walk along the headers needs (restore/parallel.py), at a
    fraction of the cost.
    """
    if len(block) < TP_BSIZE or block[_MAGIC_AT:_MAGIC_AT + 4] != _NFS_LE \
            or not checksum_ok(block, "<"):
        return None
    htype, date, _, volume, tapea = _LINK_LE.unpack_from(block)
    if htype not in TS_NAMES:
        return None
    count, = _COUNT_LE.unpack_from(block, _COUNT_AT)
    flags, = _COUNT_LE.unpack_from(block, _FLAGS_AT)
    if htype in (TS_INODE, TS_ADDR) and not flags & DR_EXTATTRIBUTES:
        n = max(0, min(count, 512))
        present = n - bytes(block[_ADDR_AT:_ADDR_AT + n]).count(0)
        return htype, date, volume, tapea, htype == TS_INODE, present
    return htype, date, volume, tapea, False, max(0, count)
