"""format/extattr.py (FORMAT §5)."""
import struct

import pytest

from ndump.format import ACL_ACCESS, ACL_DEFAULT, acl_from_disk, acl_to_disk, pack_ea_records, unpack_ea_record
from ndump.format.extattr import ExtAttrError, pack_acl, parse_acl


def _acl_v2(*entries):
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


ACL = _acl_v2((1, 6, 0xFFFFFFFF), (2, 7, 1000), (4, 4, 0xFFFFFFFF), (8, 5, 2000),
              (16, 7, 0xFFFFFFFF), (32, 4, 0xFFFFFFFF))


def test_acl_v1_matches_format_md_example():
    assert acl_to_disk(ACL).hex() == ("01000000" "01000600" "02000700e8030000" "04000400"
                                      "08000500d0070000" "10000700" "20000400")
    assert acl_from_disk(acl_to_disk(ACL)) == ACL


def test_one_acl_codec_for_the_kernel_form():
    entries = parse_acl(ACL)
    assert entries[:2] == [(1, 6, 0xFFFFFFFF), (2, 7, 1000)] and len(entries) == 6
    assert pack_acl(entries) == ACL
    for bad in (b"", b"junk", ACL[:-1], struct.pack("<I", 1) + ACL[4:]):
        with pytest.raises(ExtAttrError):
            parse_acl(bad)
        with pytest.raises(ExtAttrError):
            acl_to_disk(bad)


def test_records_round_trip_and_fit_4096():
    attrs = [("user.small", b"hello"), (ACL_ACCESS, ACL), (ACL_DEFAULT, ACL),
             ("trusted.t", b"\0\1"), ("security.s", b"x" * 100), ("user.big", b"z" * 1500)]
    records, skipped = pack_ea_records(attrs)
    assert skipped == []
    assert all(len(r) % 1024 == 0 and len(r) <= 4096 for r in records)
    back = []
    for r in records:
        got, problems = unpack_ea_record(r)
        assert problems == []
        back += got
    assert sorted(back) == sorted(attrs)


def test_unstorable_names_are_reported():
    records, skipped = pack_ea_records([("system.foo", b"1"), ("user.ok", b"2")])
    assert skipped == ["system.foo"]
    assert unpack_ea_record(records[0])[0] == [("user.ok", b"2")]


def test_directory_gets_a_single_record():
    attrs = [(f"user.a{i}", b"v" * 1000) for i in range(6)]
    records, skipped = pack_ea_records(attrs, single=True)
    assert len(records) == 1 and len(skipped) == 3
    records, skipped = pack_ea_records(attrs)
    assert len(records) == 2 and not skipped


def test_in_inode_format_offsets_from_byte_4():
    # stock dump's in-inode record: magic EA020001, entries at 4, value offsets from 4
    name = b"small"
    entry = struct.pack("<BBHIII", len(name), 1, 100, 0, 5, 0) + name + b"\0\0\0"
    data = bytearray(256)
    struct.pack_into("<I", data, 0, 0xEA020001)
    data[4:4 + len(entry)] = entry
    data[104:109] = b"hello"
    assert unpack_ea_record(bytes(data)) == ([("user.small", b"hello")], [])


def test_unknown_index_and_garbage_are_problems_not_crashes():
    name = b"data"
    entry = struct.pack("<BBHIII", len(name), 7, 200, 0, 3, 0) + name
    data = bytearray(1024)
    struct.pack_into("<I", data, 0, 0xEA020000)
    data[32:32 + len(entry)] = entry
    attrs, problems = unpack_ea_record(bytes(data))
    assert attrs == [] and problems
    assert unpack_ea_record(b"\xff" * 1024)[1]
