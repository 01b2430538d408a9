"""Directory data <-> [(ino, type, name)] (FORMAT.md §4.4; classic: BSD struct direct).

Entries are packed into 512-byte chunks that no entry crosses; the last entry of
each chunk is stretched to the chunk's end.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ndump.format.constants import DIRBLKSIZ

_ENTRY = struct.Struct("<IHBB")
_ENTRY_BE = struct.Struct(">IHBB")
_OLD_ENTRY = {o: struct.Struct(o + "IHH") for o in "<>"}     # 4.2BSD-4.3BSD: 16-bit d_namlen
_V7_ENTRY = {o: struct.Struct(o + "H14s") for o in "<>"}     # OFS dumps: V7 16-byte entries
DIR_FORMATS = ("new", "old", "v7")


@dataclass(frozen=True, slots=True)
class DirEntry:
    ino: int
    dtype: int
    name: bytes
    lost: int = 0        # bytes of the name that could not be recovered (given as '?')


def dirsiz(namelen: int) -> int:
    """Minimum record length for a name (classic DIRSIZ)."""
    return 8 + ((namelen + 1 + 3) & ~3)


def pack_dir(entries: list[tuple[int, int, bytes]]) -> bytes:
    """Entries (``.`` and ``..`` first) -> directory data, a multiple of 512 bytes.

    Each entry is packed once, when the next one tells whether it ends its chunk
    (then it is stretched to the chunk's end)."""
    pack = _ENTRY.pack
    out = []
    used = 0                       # bytes of the current chunk, the pending entry's included
    pend = None                    # the previous entry, not packed yet
    for ino, dtype, name in entries:
        size = 8 + ((len(name) + 4) & ~3)          # dirsiz
        if pend is not None:
            pino, preclen, pdtype, pname = pend
            if used + size > DIRBLKSIZ:
                preclen += DIRBLKSIZ - used
                used = 0
            out.append(pack(pino, preclen, pdtype, len(pname)) + pname.ljust(preclen - 8, b"\0"))
        used += size
        pend = ino, size, dtype, name
    if pend is not None:
        pino, preclen, pdtype, pname = pend
        preclen += DIRBLKSIZ - used
        out.append(pack(pino, preclen, pdtype, len(pname)) + pname.ljust(preclen - 8, b"\0"))
    return b"".join(out)


def unpack_dir(data: bytes | memoryview, order: str = "<", fmt: str = "new"
               ) -> tuple[list[DirEntry], int]:
    """Directory data -> (entries, number of mangled chunks skipped).

    ``fmt`` is the entry layout: "new" (4.4BSD and Linux: 8-bit d_type and d_namlen),
    "old" (4.2BSD-4.3BSD: a 16-bit d_namlen, no type) or "v7" (the 16-byte entries of
    OFS dumps: 16-bit inode, 14-byte name).

    Validation follows classic restore (reclen a multiple of 4, at least DIRSIZ,
    inside its chunk); a bad entry skips the rest of its 512-byte chunk.
    Entries with inode 0 are empty slots.

    One malformed entry is recognised instead: a 255-byte name as stock dump
    0.4b47 writes it (FORMAT §11.1 item 14), whose d_reclen is 264 cut to 8 bits
    (8), or that plus the stretch to its chunk's end.  Its name starts where the
    next entry starts; the entries after it are kept, and its name is put back
    from the bytes they did not write over (``DirEntry.lost`` counts the others,
    given as ``?``).
    """
    if fmt == "v7":
        return _unpack_v7(data, order), 0
    entry = _ENTRY if order == "<" else _ENTRY_BE
    old = _OLD_ENTRY[order] if fmt == "old" else None
    size = len(data)
    found: list[tuple[int, int, int, int, bool]] = []   # (pos, ino, dtype, namlen, long)
    mangled = 0
    pos = 0
    while pos + 8 <= size:
        if old is None:
            ino, reclen, dtype, namlen = entry.unpack_from(data, pos)
        else:
            (ino, reclen, namlen), dtype = old.unpack_from(data, pos), 0
        chunk_end = (pos // DIRBLKSIZ + 1) * DIRBLKSIZ
        if _is_stock_long_name(pos, reclen, namlen, chunk_end):
            found.append((pos, ino, dtype, namlen, True))
            pos += reclen
            continue
        if (reclen % 4 or reclen < dirsiz(namlen) or pos + reclen > min(chunk_end, size)
                or namlen == 0):
            mangled += 1
            pos = chunk_end
            continue
        found.append((pos, ino, dtype, namlen, False))
        pos += reclen
    entries = [_entry(data, found, i) for i, f in enumerate(found) if f[1]]
    return _unique_recovered(entries), mangled


def _unique_recovered(entries: list[DirEntry]) -> list[DirEntry]:
    """Two recovered names that differ only in lost bytes would read the same: the
    later one gets its inode number in place of its first '?'s."""
    if not any(e.lost for e in entries):
        return entries
    seen = {e.name for e in entries if not e.lost}
    out = []
    for e in entries:
        if e.lost and e.name in seen:
            tag = b"%d" % e.ino
            at = e.name.index(b"?")
            name = e.name[:at] + tag + e.name[at + len(tag):]
            e = DirEntry(e.ino, e.dtype, name[:len(e.name)], e.lost)
        seen.add(e.name)
        out.append(e)
    return out


def _unpack_v7(data: bytes | memoryview, order: str) -> list[DirEntry]:
    entry = _V7_ENTRY[order]
    out = []
    for pos in range(0, len(data) - 15, 16):
        ino, raw = entry.unpack_from(data, pos)
        name = raw.split(b"\0", 1)[0]
        if ino and name:
            out.append(DirEntry(ino, 0, name))
    return out


_LONG_NAME = 255
_STOCK_LONG_RECLEN = dirsiz(_LONG_NAME) & 0xFF     # 8


def _is_stock_long_name(pos: int, reclen: int, namlen: int, chunk_end: int) -> bool:
    if namlen != _LONG_NAME or reclen >= dirsiz(_LONG_NAME):
        return False
    return reclen == _STOCK_LONG_RECLEN or (reclen % 4 == 0 and reclen > 8
                                            and pos + reclen == chunk_end)


def _entry(data, found, i: int) -> DirEntry:
    pos, ino, dtype, namlen, long = found[i]
    start = pos + 8
    if not long:
        return DirEntry(ino, dtype, bytes(data[start:start + namlen]))
    # stock dump wrote each later entry (header, name, NUL) over this name
    name = bytearray(bytes(data[start:start + namlen]).ljust(namlen, b"\0"))
    have = max(0, min(namlen, len(data) - start))
    lost = bytearray(have) + b"\1" * (namlen - have)
    for later in found[i + 1:]:
        lpos, _, _, lnamlen, llong = later
        if lpos >= start + namlen:
            break
        end = min(lpos + 8 + lnamlen + 1, start + namlen)
        lost[lpos - start:end - start] = b"\1" * (end - lpos)
    count = 0
    for k, flag in enumerate(lost):
        if flag or name[k] in (0, 0x2F):        # written over, or not a name byte
            name[k] = 0x3F
            count += 1
    return DirEntry(ino, dtype, bytes(name), count)
