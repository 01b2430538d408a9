"""format/dirent.py (FORMAT §4.4)."""
import struct

from ndump.format import dirsiz, pack_dir, unpack_dir


def test_dirsiz():
    assert dirsiz(1) == 12 and dirsiz(2) == 12 and dirsiz(10) == 20 and dirsiz(255) == 264


def test_entries_never_cross_512_and_last_is_stretched():
    entries = [(2, 4, b"."), (2, 4, b"..")] + [(10 + i, 8, b"name%04d" % i) for i in range(150)]
    data = pack_dir(entries)
    assert len(data) % 512 == 0
    pos = 0
    while pos < len(data):
        _ino, reclen = struct.unpack_from("<IH", data, pos)
        assert reclen % 4 == 0 and pos // 512 == (pos + reclen - 1) // 512
        pos += reclen
    assert pos == len(data)
    back, mangled = unpack_dir(data)
    assert mangled == 0
    assert [(e.ino, e.dtype, e.name) for e in back] == entries


def test_mangled_entry_skips_its_chunk_only():
    entries = [(2, 4, b"."), (2, 4, b"..")] + [(10 + i, 8, b"f" * 40) for i in range(40)]
    data = bytearray(pack_dir(entries))
    struct.pack_into("<H", data, 12 + 4, 3)          # reclen of ".." not a multiple of 4
    back, mangled = unpack_dir(bytes(data))
    assert mangled == 1
    assert back[0].name == b"." and all(e.ino >= 10 for e in back[1:])
    assert len(back) > 20


def test_stock_255_byte_name_with_reclen_8_does_not_crash():
    data = bytearray(pack_dir([(2, 4, b"."), (2, 4, b".."), (12, 8, b"x" * 255)]))
    struct.pack_into("<H", data, 24 + 4, 8)
    back, mangled = unpack_dir(bytes(data))
    assert [e.name for e in back] == [b".", b".."] and mangled == 1
