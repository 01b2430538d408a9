"""format/bsd.py: UFS2 extended attributes and BSD file flags, on bytes only."""
import struct

from ndump.format.bsd import linux_flags, unpack_bsd_extattrs


def _entry(order, space, name, value):
    base = (7 + len(name) + 7) // 8 * 8
    pad = -len(value) % 8
    head = struct.pack(order + "IBBB", base + len(value) + pad, space, pad, len(name)) + name
    return head + bytes(base - len(head)) + value + bytes(pad)


def test_user_attributes_and_system_ones_counted():
    for order in "<>":
        raw = (_entry(order, 1, b"a", b"") + _entry(order, 2, b"posix1e.acl_access", b"x" * 20)
               + _entry(order, 1, b"longer-name", b"v" * 13) + bytes(40))
        assert unpack_bsd_extattrs(raw, order) == (
            [("user.a", b""), ("user.longer-name", b"v" * 13)], 1, False)


def test_damaged_area_keeps_what_came_before():
    good = _entry("<", 1, b"a", b"1")
    bad = bytearray(_entry("<", 1, b"b", b"2"))
    struct.pack_into("<I", bad, 0, 4000)                      # runs past the area
    assert unpack_bsd_extattrs(good + bytes(bad), "<") == ([("user.a", b"1")], 0, True)
    assert unpack_bsd_extattrs(b"\x03\0\0\0\1\0\1a", "<") == ([], 0, True)   # length < header


def test_bsd_flags_become_their_linux_counterparts():
    assert linux_flags(0x1) == 0x40                            # UF_NODUMP -> FS_NODUMP_FL
    assert linux_flags(0x2 | 0x4) == 0x10 | 0x20               # immutable, append-only
    assert linux_flags(0x00200000 | 0x8) == 0                  # SF_SNAPSHOT, UF_OPAQUE: none
