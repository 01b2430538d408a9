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


def _stock_dir(entries, order="<"):
    """Directory data the way stock dump 0.4b47 converts it (FORMAT §11.1 item 14): the
    record length of a 255-byte name computed in 8 bits (8), each entry written as
    header + name + NUL at its offset, the previous entry stretched to the chunk end."""
    buf = bytearray(1024)
    offset = prev = 0
    for ino, dtype, name in entries:
        reclen = dirsiz(len(name)) & 0xFF
        if (offset + reclen - 1) // 512 != offset // 512:
            pad = 512 - offset % 512
            old, = struct.unpack_from(order + "H", buf, prev + 4)
            struct.pack_into(order + "H", buf, prev + 4, old + pad)
            offset += pad
        buf[offset:offset + 8 + len(name) + 1] = (struct.pack(order + "IHBB", ino, reclen, dtype,
                                                               len(name)) + name + b"\0")
        prev, offset = offset, offset + reclen
    pad = 512 - offset % 512
    old, = struct.unpack_from(order + "H", buf, prev + 4)
    struct.pack_into(order + "H", buf, prev + 4, old + pad)
    return bytes(buf[:offset + pad])


LONG = b"".join(b"%03d-" % i for i in range(70))[:255]
AFTER = [(13, 8, b"owned"), (14, 8, "utf8_ünï".encode()), (15, 8, b"z-last")]


def _check_long(e, real=LONG):
    assert len(e.name) == 255 and e.lost == e.name.count(b"?")
    assert all(a == b or a == ord("?") for a, b in zip(e.name, real))


def test_stock_255_byte_name_keeps_the_entries_after_it():
    data = _stock_dir([(2, 4, b"."), (2, 4, b".."), (12, 8, LONG)] + AFTER)
    back, mangled = unpack_dir(data)
    assert mangled == 0
    assert [e.ino for e in back] == [2, 2, 12, 13, 14, 15]
    assert [e.name for e in back[3:]] == [n for _, _, n in AFTER]
    _check_long(back[2])
    # the three entries after it wrote 8+5+1, 8+10+1 and 8+6+1 bytes over its start,
    # with the padding of the first two (2 and 1 bytes) left as they were
    assert back[2].lost == 48 and back[2].name[51:] == LONG[51:]
    assert back[2].name[14:16] == LONG[14:16] and back[2].name[35] == LONG[35]


def test_stock_255_byte_name_big_endian():
    data = _stock_dir([(2, 4, b"."), (2, 4, b".."), (12, 8, LONG)] + AFTER, order=">")
    back, mangled = unpack_dir(data, ">")
    assert mangled == 0 and [e.ino for e in back] == [2, 2, 12, 13, 14, 15]
    _check_long(back[2])


def test_stock_255_byte_name_last_in_its_chunk_is_stretched():
    first = [(2, 4, b"."), (2, 4, b"..")] + [(20 + i, 8, b"f%02d" % i) for i in range(30)]
    data = _stock_dir(first + [(12, 8, LONG), (13, 8, b"next-chunk")])
    back, mangled = unpack_dir(data)
    assert mangled == 0
    assert [e.ino for e in back][-2:] == [12, 13]
    _check_long(back[-2])


def test_stock_255_byte_name_last_in_directory_is_whole():
    data = _stock_dir([(2, 4, b"."), (2, 4, b".."), (13, 8, b"a"), (12, 8, LONG)])
    back, mangled = unpack_dir(data)
    assert mangled == 0 and back[-1].name == LONG and back[-1].lost == 0


def test_other_short_reclens_are_still_mangled():
    for namlen, reclen in ((254, 8), (255, 12), (255, 6)):
        data = bytearray(pack_dir([(2, 4, b"."), (2, 4, b".."), (12, 8, b"x" * namlen)]))
        struct.pack_into("<H", data, 24 + 4, reclen)
        back, mangled = unpack_dir(bytes(data))
        assert [e.name for e in back] == [b".", b".."] and mangled == 1, (namlen, reclen)


def test_old_and_v7_directory_formats():
    for order in "<>":
        old = (struct.pack(order + "IHH", 2, 12, 1) + b".\0\0\0"
               + struct.pack(order + "IHH", 2, 500, 2) + b"..\0\0" + bytes(488))
        back, mangled = unpack_dir(old, order, "old")
        assert mangled == 0 and [(e.ino, e.dtype, e.name) for e in back] == [(2, 0, b"."), (2, 0, b"..")]
        v7 = b"".join(struct.pack(order + "H14s", ino, name) for ino, name in
                      ((5, b"."), (2, b".."), (0, b"gone"), (9, b"fourteen-chars")))
        back, mangled = unpack_dir(v7, order, "v7")
        assert [(e.ino, e.name) for e in back] == [(5, b"."), (2, b".."), (9, b"fourteen-chars")]


def test_recovered_names_that_would_read_the_same_are_kept_apart():
    first = _stock_dir([(2, 4, b"."), (2, 4, b".."), (12, 8, LONG)] + AFTER)
    lost = [k for k, c in enumerate(unpack_dir(first)[0][2].name) if c == ord("?")]
    other = bytes(ord("X") if k in lost else c for k, c in enumerate(LONG))
    # a second 512-byte chunk laid out the same way: its name loses the same bytes
    second = _stock_dir([(20, 8, b"a"), (21, 8, b"bb"), (16, 8, other), (22, 8, b"ownex"),
                         (23, 8, b"0123456789"), (24, 8, b"z-lasx")])
    back, mangled = unpack_dir(first + second)
    longs = [e for e in back if len(e.name) == 255]
    assert mangled == 0 and [e.ino for e in longs] == [12, 16]
    assert longs[0].name == bytes(ord("?") if k in lost else c for k, c in enumerate(LONG))
    assert longs[1].name == b"16" + longs[0].name[2:]
