"""Dump images ndump did not write, made from the published formats alone (no ndump code):

* ``to_big_endian(image)``: a little-endian Linux dump image as a big-endian machine
  (SPARC, old NetApp) writes it, field by field from FORMAT.md §1.3 and §4.4;
* ``BsdImage``: small images in the old BSD format (OFS_MAGIC 60011: the 4.1/4.2BSD
  header, V7 16-byte directory entries), in the 4.3BSD format (NFS_MAGIC without
  DR_NEWINODEFMT: 16-bit owner fields, 16-bit d_namlen) and in the FreeBSD/NetBSD UFS2
  format (FS_UFS2_MAGIC: 64-bit sizes and times), in either byte order. Layouts as in
  4.4BSD/FreeBSD ``protocols/dumprestore.h`` and the old-header conversion of classic
  restore's ``gethead()``.

    from foreign import to_big_endian, BsdImage
"""
from __future__ import annotations

import struct

TP_BSIZE = 1024
CHECKSUM = 84446
OFS_MAGIC, NFS_MAGIC, UFS2_MAGIC = 60011, 60012, 0x19540119
TS_TAPE, TS_INODE, TS_BITS, TS_ADDR, TS_END, TS_CLRI = 1, 2, 3, 4, 5, 6
S_IFDIR, S_IFREG, S_IFLNK = 0o040000, 0o100000, 0o120000


# -- little -> big endian (FORMAT §1.3) ----------------------------------------------------

# (offset, count, size) of the numeric header fields
_HEADER_FIELDS = [(0, 8, 4), (32, 4, 2), (40, 1, 8), (48, 29, 4), (692, 1, 4), (888, 4, 4)]
_CODE = {2: "H", 4: "I", 8: "Q"}


def _sum_words(block: bytes, order: str) -> int:
    return sum(struct.unpack(order + "256I", block)) & 0xFFFFFFFF


def _with_checksum(block: bytearray, order: str) -> bytes:
    struct.pack_into(order + "I", block, 28, 0)
    struct.pack_into(order + "I", block, 28, (CHECKSUM - _sum_words(bytes(block), order)) & 0xFFFFFFFF)
    return bytes(block)


def swap_header(block: bytes) -> bytes:
    """One little-endian header -> big-endian, checksum recomputed over big-endian words."""
    out = bytearray(block)
    for off, count, size in _HEADER_FIELDS:
        fmt = f"{count}{_CODE[size]}"
        struct.pack_into(">" + fmt, out, off, *struct.unpack_from("<" + fmt, block, off))
    ctype, = struct.unpack_from("<i", block, 0)
    if ctype in (TS_TAPE, TS_END):                # c_inos, the volume table
        struct.pack_into(">128I", out, 164, *struct.unpack_from("<128I", block, 164))
    return _with_checksum(out, ">")


def swap_dir_block(block: bytes) -> bytes:
    """d_ino and d_reclen of every entry of each 512-byte chunk (FORMAT §4.4)."""
    out = bytearray(block)
    for chunk in range(0, len(block), 512):
        pos = chunk
        while pos + 8 <= chunk + 512:
            ino, reclen = struct.unpack_from("<IH", block, pos)
            struct.pack_into(">IH", out, pos, ino, reclen)
            if reclen < 8 or reclen % 4:
                break
            pos += reclen
    return bytes(out)


def _data_blocks(block: bytes) -> tuple[int, bool]:
    """(data blocks after this LE header, whether they are directory data)."""
    ctype, count, mode, flags = (struct.unpack_from("<i", block, 0)[0],
                                 struct.unpack_from("<i", block, 160)[0],
                                 struct.unpack_from("<H", block, 32)[0],
                                 struct.unpack_from("<i", block, 888)[0])
    if ctype in (TS_CLRI, TS_BITS):
        return count, False
    if ctype not in (TS_INODE, TS_ADDR):
        return 0, False
    if flags & 0x8000:                            # extended-attribute record
        return count, False
    n = min(max(count, 0), 512)
    return n - block[164:164 + n].count(0), mode & 0o170000 == S_IFDIR


def to_big_endian(image: bytes) -> bytes:
    """A whole uncompressed single-volume little-endian image, converted."""
    out = []
    pos = 0
    while pos + TP_BSIZE <= len(image):
        block = image[pos:pos + TP_BSIZE]
        pos += TP_BSIZE
        magic, = struct.unpack_from("<i", block, 24)
        assert magic == NFS_MAGIC and _sum_words(block, "<") == CHECKSUM, \
            f"block {pos // TP_BSIZE - 1} is not a header"
        out.append(swap_header(block))
        n, is_dir = _data_blocks(block)
        for _ in range(n):
            data = image[pos:pos + TP_BSIZE]
            pos += TP_BSIZE
            out.append(swap_dir_block(data) if is_dir else data)
    return b"".join(out)
