"""Dump images ndump did not write, made from the published formats alone (no ndump code):

* ``to_big_endian(image)``: a little-endian Linux dump image as a big-endian machine
  (SPARC, old NetApp) writes it, field by field from FORMAT.md §1.3 and §4.4;
  ``compressed_to_big_endian(image)`` the same for a -z/-j/-y image (§8.1);
* ``BsdImage``: small images in the old BSD format (OFS_MAGIC 60011: the 4.1/4.2BSD
  header, V7 16-byte directory entries), in the 4.3BSD format (NFS_MAGIC without
  DR_NEWINODEFMT: 16-bit owner fields, 16-bit d_namlen) and in the FreeBSD/NetBSD UFS2
  format (FS_UFS2_MAGIC: 64-bit sizes and times), in either byte order. Layouts as in
  4.4BSD/FreeBSD ``protocols/dumprestore.h`` and the old-header conversion of classic
  restore's ``gethead()``.

    from foreign import to_big_endian, BsdImage
"""
from __future__ import annotations

import bz2
import struct
import zlib

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


def _decompress(algorithm: int, payload: bytes, size: int) -> bytes:
    if algorithm == 0:
        return zlib.decompress(payload)
    if algorithm == 1:
        return bz2.decompress(payload)
    import lzokay
    return lzokay.decompress(payload, size)


def _compress(algorithm: int, record: bytes) -> bytes:
    if algorithm == 0:
        return zlib.compress(record, 6)
    if algorithm == 1:
        return bz2.compress(record, 2)
    import lzokay
    return lzokay.compress(record)


def compressed_to_big_endian(image: bytes) -> bytes:
    """A compressed (dump -z/-j/-y) little-endian single-volume image, as a big-endian
    machine writes it (FORMAT §8.1): the logical blocks converted as above, each record
    after the first compressed again, its prefix a big-endian u32 whose bit-fields
    (compressed:1, flags:3, length:28) a big-endian C compiler packs from the top bit."""
    ntrec, = struct.unpack_from("<i", image, 896)
    size = ntrec * TP_BSIZE
    records, algorithms = [image[:size]], set()
    pos = size
    while pos < len(image):
        prefix, = struct.unpack_from("<I", image, pos)
        payload = image[pos + 4:pos + 4 + (prefix >> 4)]
        pos += 4 + (prefix >> 4)
        if prefix & 1:
            algorithms.add((prefix >> 1) & 7)
            payload = _decompress((prefix >> 1) & 7, payload, size)
        records.append(payload)
    algorithm, = algorithms
    logical = to_big_endian(b"".join(records))
    out = [logical[:size]]
    for at in range(size, len(logical), size):
        payload = _compress(algorithm, logical[at:at + size])
        out.append(struct.pack(">I", 1 << 31 | algorithm << 28 | len(payload)) + payload)
    return b"".join(out)


# -- old BSD and UFS2 images ---------------------------------------------------------------

class BsdImage:
    """A small dump in one of the BSD layouts, in byte order ``order`` ('<' or '>').

    ``layout``: "ofs" (OFS_MAGIC header, V7 directories), "4.3bsd" (NFS_MAGIC, TS_TAPE
    without DR_NEWINODEFMT, 16-bit owners, 16-bit d_namlen) or "ufs2" (FS_UFS2_MAGIC).

        img = BsdImage("ufs2", ">", date=1_700_000_000)
        img.dir(2, {"f": 3}); img.file(3, b"data", mtime=..., uid=...)
        data = img.build()
    """

    def __init__(self, layout: str, order: str, *, date: int = 1_600_000_000):
        assert layout in ("ofs", "4.3bsd", "ufs2") and order in "<>"
        self.layout, self.order, self.date = layout, order, date
        self.inodes: dict[int, tuple[dict, bytes]] = {}       # ino -> (attrs, data)

    def dir(self, ino: int, names: dict[str, int], parent: int = 2, **attrs) -> "BsdImage":
        entries = [(ino, "."), (parent, "..")] + [(i, n) for n, i in names.items()]
        attrs.setdefault("mode", 0o40755)
        self.inodes[ino] = (attrs, self._dir_data(entries))
        return self

    def file(self, ino: int, data: bytes, **attrs) -> "BsdImage":
        attrs.setdefault("mode", 0o100644)
        self.inodes[ino] = (attrs, data)
        return self

    def symlink(self, ino: int, target: str, **attrs) -> "BsdImage":
        attrs.setdefault("mode", 0o120777)
        self.inodes[ino] = (attrs, target.encode())
        return self

    # -- directory formats -------------------------------------------------------------
    def _dir_data(self, entries: list[tuple[int, str]]) -> bytes:
        o = self.order
        if self.layout == "ofs":                  # V7: u16 inode, 14-byte name
            return b"".join(struct.pack(o + "H14s", ino, name.encode()) for ino, name in entries)
        out = bytearray()
        last = 0
        for ino, name in entries:
            raw = name.encode()
            reclen = 8 + (len(raw) + 4) // 4 * 4
            if len(out) % 512 + reclen > 512:    # never across a 512-byte chunk
                self._stretch(out, last)
            last = len(out)
            if self.layout == "4.3bsd":
                head = struct.pack(o + "IHH", ino, reclen, len(raw))
            else:
                dtype = 4 if name in (".", "..") else 0          # DT_DIR, else DT_UNKNOWN
                head = struct.pack(o + "IHBB", ino, reclen, dtype, len(raw))
            out += head + raw + bytes(reclen - 8 - len(raw))
        self._stretch(out, last)
        return bytes(out)

    def _stretch(self, out: bytearray, last: int) -> None:
        pad = -len(out) % 512
        reclen, = struct.unpack_from(self.order + "H", out, last + 4)
        struct.pack_into(self.order + "H", out, last + 4, reclen + pad)
        out += bytes(pad)

    # -- headers -----------------------------------------------------------------------
    def _header(self, ctype: int, ino: int, attrs: dict, count: int, addr: bytes,
                tapea: int) -> bytes:
        o, b = self.order, bytearray(TP_BSIZE)
        magic = {"ofs": OFS_MAGIC, "4.3bsd": NFS_MAGIC, "ufs2": UFS2_MAGIC}[self.layout]
        mode, size = attrs.get("mode", 0), attrs.get("size", 0)
        uid, gid = attrs.get("uid", 0), attrs.get("gid", 0)
        atime, mtime = attrs.get("atime", self.date - 10), attrs.get("mtime", self.date - 20)
        if self.layout == "ofs":
            struct.pack_into(o + "iiiiiH2xi", b, 0, ctype, self.date, 0, 1, tapea, ino, magic)
            struct.pack_into(o + "HHHHii", b, 32, mode, attrs.get("nlink", 1), uid, gid, size,
                             attrs.get("rdev", 0))
            struct.pack_into(o + "iiii", b, 84, atime, mtime, mtime, count)
            b[100:100 + len(addr[:256])] = addr[:256]
        elif self.layout == "4.3bsd":
            struct.pack_into(o + "iiiiIIi", b, 0, ctype, self.date, 0, 1, tapea, ino, magic)
            struct.pack_into(o + "HhHHq", b, 32, mode, attrs.get("nlink", 1), uid, gid, size)
            struct.pack_into(o + "i4xi4xi", b, 48, atime, mtime, mtime)
            struct.pack_into(o + "i", b, 72, attrs.get("rdev", 0))
            struct.pack_into(o + "i", b, 160, count)
            b[164:164 + len(addr)] = addr
            self._names(b, 0, 1 if ctype == TS_TAPE else 0)   # DR_NEWHEADER only
        else:
            struct.pack_into(o + "iiiiiIi", b, 0, ctype, self.date & 0x7FFFFFFF, 0, 1,
                             tapea & 0x7FFFFFFF, ino, magic)
            struct.pack_into(o + "HhxxxxQ", b, 32, mode, attrs.get("nlink", 1), size)
            struct.pack_into(o + "iiii", b, 48, atime & 0x7FFFFFFF, attrs.get("atime_ns", 0),
                             mtime & 0x7FFFFFFF, attrs.get("mtime_ns", 0))
            struct.pack_into(o + "iiqqqi", b, 72, attrs.get("rdev", 0), 0, 0, atime, mtime,
                             attrs.get("extsize", 0))
            struct.pack_into(o + "I8xII", b, 132, attrs.get("bsd_flags", 0), uid, gid)
            struct.pack_into(o + "i", b, 160, count)
            b[164:164 + len(addr)] = addr
            self._names(b, 0, 3 if ctype == TS_TAPE else 2)
            struct.pack_into(o + "qqqq", b, 896, self.date, 0, tapea, 0)
        return _with_checksum(b, o)

    def _names(self, b: bytearray, level: int, flags: int) -> None:
        o = self.order
        b[676:676 + 7] = b"bsdtest"
        struct.pack_into(o + "i", b, 692, level)
        b[696:696 + 4] = b"/usr"
        b[760:760 + 9] = b"/dev/ad0a"
        b[824:824 + 7] = b"bsdhost"
        struct.pack_into(o + "i", b, 888, flags)

    def build(self) -> bytes:
        """TS_TAPE, TS_CLRI, TS_BITS, directories, files (ascending), TS_END to 10 blocks."""
        per = 256 if self.layout == "ofs" else 512        # c_addr entries per header
        maxino = max(self.inodes) + 1
        nmap = -(-maxino // 8192)
        bits = bytearray(nmap * TP_BSIZE)
        for ino in self.inodes:
            bits[(ino - 1) // 8] |= 1 << ((ino - 1) % 8)
        out = [self._header(TS_TAPE, 0, {}, 1, b"", 0)]
        for ctype in (TS_CLRI, TS_BITS):
            out.append(self._header(ctype, maxino, {"size": len(bits)}, nmap, b"", len(out)))
            out.append(bytes(bits))
        dirs = sorted(i for i, (a, _) in self.inodes.items() if a["mode"] & 0o170000 == S_IFDIR)
        files = sorted(i for i in self.inodes if i not in dirs)
        for ino in dirs + files:
            self._inode(out, ino, per)
        blocks = sum(len(x) for x in out) // TP_BSIZE
        for k in range(10 - blocks % 10):
            out.append(self._header(TS_END, maxino, {}, 0, b"", blocks + k))
        return b"".join(out)

    def _inode(self, out: list[bytes], ino: int, per: int) -> None:
        attrs, data = self.inodes[ino]
        ext = attrs.get("ext_data", b"")          # UFS2: after the data, from a block boundary
        attrs = dict(attrs, size=len(data), extsize=len(ext))
        data += bytes(-len(data) % TP_BSIZE) + ext
        nblocks = -(-len(data) // TP_BSIZE)
        data += bytes(nblocks * TP_BSIZE - len(data))
        first = True
        for start in range(0, max(nblocks, 1), per):
            count = min(per, nblocks - start)
            tapea = sum(len(x) for x in out) // TP_BSIZE
            out.append(self._header(TS_INODE if first else TS_ADDR, ino, attrs, count,
                                    b"\x01" * count, tapea))
            out.append(data[start * TP_BSIZE:(start + count) * TP_BSIZE])
            first = False


def bsd_extattr(order: str, namespace: int, name: str, value: bytes) -> bytes:
    """One FreeBSD ``struct extattr`` entry (sys/extattr.h): u32 length, u8 namespace,
    u8 content padding, u8 name length, name, zeros to 8 bytes, value, zeros to 8 bytes."""
    raw = name.encode()
    base = (7 + len(raw) + 7) // 8 * 8
    pad = -len(value) % 8
    head = struct.pack(order + "IBBB", base + len(value) + pad, namespace, pad, len(raw)) + raw
    return head + bytes(base - len(head)) + value + bytes(pad)
