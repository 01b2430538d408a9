"""A byte-swapped (big-endian) image, as SPARC or PowerPC dump wrote them (FORMAT §1.3),
restores like its little-endian original."""
from __future__ import annotations

import os
import stat
import struct

from craft import Craft
from ndump.format import TP_BSIZE, TS_ADDR, TS_INODE, is_header, unpack_header

# (offset, count, size) of the numeric header fields, FORMAT §1.3
_SWAPPED = [(0, 8, 4), (32, 4, 2), (40, 1, 8), (48, 29, 4), (692, 1, 4), (888, 4, 4)]
_CODE = {2: "H", 4: "I", 8: "Q"}


def _swap_header(block: bytes) -> bytes:
    out = bytearray(block)
    for off, count, size in _SWAPPED:
        fmt = f"{count}{_CODE[size]}"
        struct.pack_into(">" + fmt, out, off, *struct.unpack_from("<" + fmt, block, off))
    struct.pack_into(">i", out, 28, 0)
    total = sum(struct.unpack(">256i", bytes(out)))
    struct.pack_into(">i", out, 28, (84446 - total + 2**31) % 2**32 - 2**31)
    return bytes(out)


def _swap_dir_block(block: bytes) -> bytes:
    out = bytearray(block)
    pos = 0
    while pos + 8 <= len(block):
        ino, reclen = struct.unpack_from("<IH", block, pos)
        if reclen < 8:
            break
        struct.pack_into(">IH", out, pos, ino, reclen)
        pos += reclen
    return bytes(out)


def to_big_endian(image: bytes) -> bytes:
    out = []
    pos = 0
    while pos < len(image):
        block = image[pos:pos + TP_BSIZE]
        pos += TP_BSIZE
        assert is_header(block), f"block {pos // TP_BSIZE - 1} is not a header"
        h = unpack_header(block)
        out.append(_swap_header(block))
        n = h.present() if h.type in (TS_INODE, TS_ADDR) else max(0, h.count)
        if h.type == 1 or h.type == 5:
            n = 0
        for _ in range(n):
            data = image[pos:pos + TP_BSIZE]
            pos += TP_BSIZE
            is_dir_data = h.inode.is_dir and not h.is_extattr and h.type in (TS_INODE, TS_ADDR)
            out.append(_swap_dir_block(data) if is_dir_data else data)
    return b"".join(out)


def test_big_endian_image_restores(restore, image_file, tmp_path):
    img = Craft(checksums=False)
    img.dir(2, {"f": 3, "d": 4, "sl": 6})
    img.dir(4, {"g": 5}, mode=0o750)
    data = os.urandom(3000)
    img.file(3, data, xattrs=[("user.k", b"v")])
    img.file(5, b"g" * 10)
    img.symlink(6, "f")
    little = img.build()
    r = restore(image_file(to_big_endian(little), "be.dump"), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    assert (out / "f").read_bytes() == data
    assert os.getxattr(out / "f", "user.k") == b"v"
    assert (out / "d/g").read_bytes() == b"g" * 10
    assert stat.S_IMODE(os.stat(out / "d").st_mode) == 0o750
    assert os.readlink(out / "sl") == "f"
    assert os.stat(out / "f").st_mtime_ns // 1000 == 1_600_000_000_123_456       # >= usec
