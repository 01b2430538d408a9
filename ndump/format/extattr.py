"""Extended-attribute records <-> {name: value} (FORMAT.md §5), and ndump's one
POSIX ACL codec.

ACL values travel in the ext4 on-disk form (version 1); ``getxattr`` gives and
``setxattr`` takes the kernel's xattr form (version 2).  Both forms and the ACL
constants are here, so that the rest of ndump only sees the kernel's form
(parse_acl/pack_acl: that form <-> [(tag, perm, id)]; restore/perms.py uses them).
"""
from __future__ import annotations

import struct

from ndump.format.constants import NDUMP_XATTR_MAXSIZE, XATTR_MAXSIZE

EA_MAGIC_BLOCK = 0xEA020000
EA_MAGIC_INODE = 0xEA020001
ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"

_PREFIXES = {1: "user.", 4: "trusted.", 5: "lustre.", 6: "security."}
_ACL_INDEX = {2: ACL_ACCESS, 3: ACL_DEFAULT}
_ENTRY = struct.Struct("<BBHIII")
_HEADER = struct.Struct("<IIII16x")

# POSIX ACL tags (linux/posix_acl_xattr.h)
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 16, 32
ACL_UNDEFINED_ID = 0xFFFFFFFF
_ACL_XATTR_VERSION = 2          # the kernel's form: every entry (tag, perm, id)
_ACL_DISK_VERSION = 1           # ext4's: an id only for named users and groups
_ACL_HEADER = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")
_ACL_SHORT_ENTRY = struct.Struct("<HH")


class ExtAttrError(ValueError):
    pass


def name_index(name: str) -> tuple[int, bytes] | None:
    """Full attribute name -> (index, suffix); None when the format cannot carry it."""
    if name == ACL_ACCESS:
        return 2, b""
    if name == ACL_DEFAULT:
        return 3, b""
    for idx, prefix in _PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            suffix = name[len(prefix):].encode("utf-8", "surrogateescape")
            return (idx, suffix) if len(suffix) <= 255 else None
    return None


def parse_acl(value: bytes) -> list[tuple[int, int, int]]:
    """The kernel's ACL xattr form (version 2) -> [(tag, perm, id)]."""
    if len(value) < _ACL_HEADER.size or (len(value) - _ACL_HEADER.size) % _ACL_ENTRY.size:
        raise ExtAttrError("malformed ACL value")
    version, = _ACL_HEADER.unpack_from(value)
    if version != _ACL_XATTR_VERSION:
        raise ExtAttrError(f"ACL version {version} unknown")
    return list(_ACL_ENTRY.iter_unpack(value[_ACL_HEADER.size:]))


def pack_acl(entries: list[tuple[int, int, int]]) -> bytes:
    """[(tag, perm, id)] -> the kernel's ACL xattr form (version 2)."""
    return _ACL_HEADER.pack(_ACL_XATTR_VERSION) + b"".join(_ACL_ENTRY.pack(*e) for e in entries)


def acl_to_disk(value: bytes) -> bytes:
    """Kernel ACL xattr (version 2) -> ext4 on-disk form (version 1)."""
    out = bytearray(_ACL_HEADER.pack(_ACL_DISK_VERSION))
    for tag, perm, ident in parse_acl(value):
        if tag in (ACL_USER, ACL_GROUP):
            out += _ACL_ENTRY.pack(tag, perm, ident)
        else:
            out += _ACL_SHORT_ENTRY.pack(tag, perm)
    return bytes(out)


def acl_from_disk(value: bytes) -> bytes:
    """ext4 on-disk ACL (version 1) -> kernel xattr form (version 2)."""
    if len(value) < _ACL_HEADER.size:
        raise ExtAttrError("malformed ACL value")
    version, = _ACL_HEADER.unpack_from(value)
    if version == _ACL_XATTR_VERSION:
        return bytes(value)
    if version != _ACL_DISK_VERSION:
        raise ExtAttrError(f"ACL version {version} unknown")
    entries = []
    off = _ACL_HEADER.size
    while off < len(value):
        if off + _ACL_SHORT_ENTRY.size > len(value):
            raise ExtAttrError("truncated ACL entry")
        tag, perm = _ACL_SHORT_ENTRY.unpack_from(value, off)
        if tag in (ACL_USER, ACL_GROUP):
            if off + _ACL_ENTRY.size > len(value):
                raise ExtAttrError("truncated ACL entry")
            _, _, ident = _ACL_ENTRY.unpack_from(value, off)
            off += _ACL_ENTRY.size
        elif tag in (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER):
            ident = ACL_UNDEFINED_ID
            off += _ACL_SHORT_ENTRY.size
        else:
            raise ExtAttrError(f"unknown ACL tag {tag:#x}")
        entries.append((tag, perm, ident))
    return pack_acl(entries)


def entry_size(name: str, value: bytes) -> int:
    found = name_index(name)
    suffix = found[1] if found else name.encode()
    disk = len(value) if not found or found[0] not in (2, 3) else len(acl_to_disk(value))
    return ((16 + len(suffix) + 3) & ~3) + ((disk + 3) & ~3)


def pack_ea_records(attrs: list[tuple[str, bytes]], *, single: bool = False
                    ) -> tuple[list[bytes], list[str]]:
    """Attributes -> block-format EA records of at most 4096 bytes (FORMAT §5.4).

    Returns (records, names that could not be stored).  ``single`` keeps
    everything in one record (directories: stock restore keeps only the last).
    Each record's length is a multiple of 1024.  Storable names too big for
    4096 bytes are in the second list too: pack_big_ea_record can keep them.
    """
    items, skipped = _to_items(attrs)
    records: list[bytes] = []
    current: list[tuple[int, bytes, bytes, str]] = []
    for item in items:
        if _fits(current + [item]):
            current.append(item)
        elif not single and current and _fits([item]):
            records.append(_pack_block(current))
            current = [item]
        else:
            skipped.append(item[3])
    if current:
        records.append(_pack_block(current))
    return records, skipped


def _to_items(attrs: list[tuple[str, bytes]]) -> tuple[list, list[str]]:
    """(name, value) pairs -> ((index, suffix, on-medium value, name) items,
    names the format cannot carry)."""
    items: list[tuple[int, bytes, bytes, str]] = []
    skipped: list[str] = []
    for name, value in attrs:
        found = name_index(name)
        if found is None:
            skipped.append(name)
            continue
        idx, suffix = found
        if idx in (2, 3):
            try:
                value = acl_to_disk(value)
            except ExtAttrError:
                skipped.append(name)
                continue
        items.append((idx, suffix, bytes(value), name))
    return items, skipped


def _needed(items) -> int:
    return (32 + sum((16 + len(s) + 3) & ~3 for _, s, _, _ in items) + 4
            + sum((len(v) + 3) & ~3 for _, _, v, _ in items))


def _fits(items) -> bool:
    return _needed(items) <= XATTR_MAXSIZE


def _pack_block(items) -> bytes:
    size = (_needed(items) + 1023) & ~1023
    buf = bytearray(size)
    _HEADER.pack_into(buf, 0, EA_MAGIC_BLOCK, 1, 1, 0)
    pos = 32
    value_end = size
    for idx, suffix, value, _ in items:
        value_end -= (len(value) + 3) & ~3
        buf[value_end:value_end + len(value)] = value
        _ENTRY.pack_into(buf, pos, len(suffix), idx, value_end, 0, len(value), 0)
        buf[pos + 16:pos + 16 + len(suffix)] = suffix
        pos += (16 + len(suffix) + 3) & ~3
    return bytes(buf)


def pack_big_ea_record(attrs: list[tuple[str, bytes]]) -> tuple[bytes | None, list[str]]:
    """Attributes too big for stock restore's 4 KiB -> one block-format record of
    up to 64 KiB, for the ndump extension record (EXT_NDUMP_XATTR), which stock
    restore skips.  Returns (record or None, names that still could not be stored)."""
    candidates, skipped = _to_items(attrs)
    items: list = []
    for item in candidates:
        if _needed(items + [item]) <= NDUMP_XATTR_MAXSIZE - 1024:   # offsets stay 16-bit
            items.append(item)
        else:
            skipped.append(item[3])
    return (_pack_block(items) if items else None), skipped


def unpack_ea_record(data: bytes | memoryview, limit: int = XATTR_MAXSIZE
                     ) -> tuple[list[tuple[str, bytes]], list[str]]:
    """One EA record's data (di_size bytes) -> (attributes, problems).

    Reads both the block format and stock dump's in-inode format; ACLs come back
    in the kernel's version-2 form.  Bad entries are reported and skipped.
    """
    data = bytes(data[:limit])
    problems: list[str] = []
    if len(data) < 4:
        return [], ["EA record too short"]
    magic, = struct.unpack_from("<I", data)
    if magic == EA_MAGIC_BLOCK:
        pos, base = 32, 0
    elif magic == EA_MAGIC_INODE:
        pos, base = 4, 4
    else:
        return [], [f"bad EA magic {magic:#x}"]
    attrs: list[tuple[str, bytes]] = []
    while pos + 4 <= len(data) and data[pos:pos + 4] != b"\0\0\0\0":
        if pos + 16 > len(data):
            problems.append("EA entry past the end of the record")
            break
        nlen, idx, voff, _vblock, vsize, _hash = _ENTRY.unpack_from(data, pos)
        suffix = data[pos + 16:pos + 16 + nlen]
        pos += (16 + nlen + 3) & ~3
        start = base + voff
        if len(suffix) != nlen or start + vsize > len(data) or vsize > limit:
            problems.append("EA entry out of bounds")
            continue
        value = data[start:start + vsize]
        if b"\0" in suffix:            # no system call takes such a name
            problems.append("EA name with a NUL byte")
            continue
        name = _full_name(idx, suffix)
        if name is None:
            problems.append(f"unknown EA index {idx}")
            continue
        if idx in (2, 3):
            try:
                value = acl_from_disk(value)
            except ExtAttrError as e:
                problems.append(f"{name}: {e}")
                continue
        attrs.append((name, value))
    return attrs, problems


def _full_name(idx: int, suffix: bytes) -> str | None:
    if idx in _ACL_INDEX:
        return _ACL_INDEX[idx]
    prefix = _PREFIXES.get(idx)
    if prefix is None or not suffix:
        return None
    return prefix + suffix.decode("utf-8", "surrogateescape")
