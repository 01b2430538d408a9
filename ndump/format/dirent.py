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


@dataclass(frozen=True, slots=True)
class DirEntry:
    ino: int
    dtype: int
    name: bytes


def dirsiz(namelen: int) -> int:
    """Minimum record length for a name (classic DIRSIZ)."""
    return 8 + ((namelen + 1 + 3) & ~3)


def pack_dir(entries: list[tuple[int, int, bytes]]) -> bytes:
    """Entries (``.`` and ``..`` first) -> directory data, a multiple of 512 bytes."""
    out = bytearray()
    chunk_start = 0
    last = -1                      # offset of the previous entry, for stretching
    for ino, dtype, name in entries:
        size = dirsiz(len(name))
        if len(out) + size > chunk_start + DIRBLKSIZ:
            _stretch(out, last, chunk_start + DIRBLKSIZ)
            chunk_start += DIRBLKSIZ
        last = len(out)
        out += _ENTRY.pack(ino, size, dtype, len(name)) + name + bytes(size - 8 - len(name))
    if last >= 0:
        _stretch(out, last, chunk_start + DIRBLKSIZ)
    return bytes(out)


def _stretch(out: bytearray, at: int, end: int) -> None:
    pad = end - len(out)
    if pad <= 0:
        return
    reclen = struct.unpack_from("<H", out, at + 4)[0]
    struct.pack_into("<H", out, at + 4, reclen + pad)
    out += bytes(pad)


def unpack_dir(data: bytes | memoryview, order: str = "<") -> tuple[list[DirEntry], int]:
    """Directory data -> (entries, number of mangled chunks skipped).

    Validation follows classic restore (reclen a multiple of 4, at least DIRSIZ,
    inside its chunk); a bad entry skips the rest of its 512-byte chunk.
    Entries with inode 0 are empty slots.
    """
    entry = _ENTRY if order == "<" else _ENTRY_BE
    size = len(data)
    entries: list[DirEntry] = []
    mangled = 0
    pos = 0
    while pos + 8 <= size:
        ino, reclen, dtype, namlen = entry.unpack_from(data, pos)
        chunk_end = (pos // DIRBLKSIZ + 1) * DIRBLKSIZ
        if (reclen % 4 or reclen < dirsiz(namlen) or pos + reclen > min(chunk_end, size)
                or namlen == 0):
            mangled += 1
            pos = chunk_end
            continue
        if ino:
            entries.append(DirEntry(ino, dtype, bytes(data[pos + 8:pos + 8 + namlen])))
        pos += reclen
    return entries, mangled
