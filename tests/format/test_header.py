"""format/header.py on bytes only (FORMAT §2)."""
import os
import random
import struct

import pytest

from ndump.format import (
    BadChecksumError, BadMagicError, Header, HeaderDecoder, Inode, Totals, checksum_ok,
    pack_header, unpack_header,
)
from ndump.format.constants import CHECKSUM, TS_ADDR, TS_INODE, TS_TAPE
from ndump.format.header import HEADER_LE


def test_layout_is_1024_bytes():
    assert HEADER_LE.size == 1024


def test_checksum_words_sum_to_constant():
    block = pack_header(Header(type=TS_TAPE, date=1700000000, label="mylabel", host="vm"))
    assert sum(struct.unpack("<256i", block)) & 0xFFFFFFFF == CHECKSUM
    assert checksum_ok(block)


def test_header_sum_is_the_word_sum_in_both_byte_orders():
    """The folded big-integer sum equals the plain sum of 256 words, carries and all."""
    from ndump.format.header import header_sum
    rng = random.Random(16)
    blocks = [bytes(1024), b"\xff" * 1024, b"\x00\x00\x00\x80" * 256]
    blocks += [rng.randbytes(1024) for _ in range(300)]
    for block in blocks:
        for order in "<>":
            want = sum(struct.unpack(order + "256I", block)) & 0xFFFFFFFF
            assert header_sum(block, order) == want
            assert header_sum(memoryview(block + b"tail"), order) == want
    assert not checksum_ok(b"short")


def test_fast_constructors_make_the_same_frozen_objects():
    import dataclasses
    from ndump.format.header import _read_header, _read_inode, make_inode
    values = dict(mode=0o100644, nlink=2, size=5, uid=1, gid=2, atime=3, atime_ns=4, mtime=5,
                  mtime_ns=6, ctime=7, ctime_ns=8, rdev=0, flags=0, blocks=9, gen=10,
                  birth=(1, 2))
    for made in (make_inode(**values), _read_inode(*values.values())):
        assert type(made) is Inode and made == Inode(**values) and hash(made) == hash(Inode(**values))
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.size = 6
    plain = Header(type=TS_INODE, date=1, inumber=7, inode=Inode(**values))
    h = _read_header(*[getattr(plain, f.name) for f in dataclasses.fields(Header)])
    assert type(h) is Header and h == plain


def test_field_offsets_match_format_md():
    inode = Inode(mode=0o100644, nlink=3, size=12, uid=70000, gid=80000, atime=0x5E0D5DA5,
                  mtime=0x5E0D5DA5, ctime=0x6B05DC7B)
    block = pack_header(Header(type=TS_INODE, date=0x6B05DC8A, volume=1, tapea=818,
                               inumber=171, inode=inode, count=4, addr=b"\x01" * 4 + bytes(508)))
    assert block[0:4] == b"\x02\x00\x00\x00"
    assert block[16:20] == struct.pack("<I", 818)
    assert block[20:24] == struct.pack("<I", 171)
    assert block[24:28] == b"\x6c\xea\x00\x00"
    assert block[32:40] == bytes.fromhex("a481030070118038")      # mode, nlink, ouid, ogid
    assert block[40:48] == struct.pack("<Q", 12)
    assert block[144:152] == struct.pack("<II", 70000, 80000)
    assert block[160:168] == bytes.fromhex("0400000001010101")
    assert block[888:892] == b"\0\0\0\0"


def test_a_decoder_keeps_its_own_identification_strings():
    """HeaderDecoder (one per reader) decodes each dump's strings once; headers of
    other dumps through the same or another decoder still read as they are."""
    one = [pack_header(Header(type=TS_INODE, date=1, inumber=n, label="one", filesys="/a",
                              dev="/dev/sda1", host="h1", level=n % 3)) for n in range(3)]
    two = pack_header(Header(type=TS_INODE, date=2, label="two", filesys="/b", host="h2"))
    first, second = HeaderDecoder(), HeaderDecoder()
    for block in one + [two] + one:
        expect = unpack_header(block)
        assert first.unpack(block) == expect
        assert second.unpack(block, "<") == expect
    assert [first.unpack(b).level for b in one] == [0, 1, 2]
    assert (first.unpack(two).label, first.unpack(two).host) == ("two", "h2")
    with pytest.raises(BadMagicError):
        first.unpack(two, ">")


def test_round_trip_with_extension():
    inode = Inode(mode=0o100600, size=5, uid=1, gid=2, atime=-100, atime_ns=999_999_999,
                  mtime=2**33 + 7, mtime_ns=1, ctime=5, ctime_ns=123_456_789, birth=(42, 43))
    h = Header(type=TS_INODE, date=1, inumber=9, inode=inode, count=1,
               addr=b"\x01" + bytes(511), data_crc=0xDEADBEEF)
    back = unpack_header(pack_header(h))
    assert back == h
    assert back.inode.birth == (42, 43) and back.data_crc == 0xDEADBEEF


def test_classic_usec_fields_carry_microseconds():
    block = pack_header(Header(type=TS_INODE, inode=Inode(mtime=10, mtime_ns=987_654_321)))
    assert struct.unpack_from("<ii", block, 56) == (10, 987654)


def test_stock_header_without_extension_reads_usec():
    block = bytearray(pack_header(Header(type=TS_INODE, inode=Inode(mtime=10, mtime_ns=987_654_321))))
    block[904:1024] = bytes(120)                     # what stock dump writes
    from ndump.format.header import set_checksum
    set_checksum(block)
    assert unpack_header(bytes(block)).inode.mtime_ns == 987_654_000


def test_totals_on_tape_header():
    h = Header(type=TS_TAPE, totals=Totals(10**12, 12345, 99))
    assert unpack_header(pack_header(h)).totals == Totals(10**12, 12345, 99)


def test_bad_checksum_and_magic_raise():
    block = bytearray(pack_header(Header(type=TS_ADDR)))
    block[700] ^= 0xFF
    with pytest.raises(BadChecksumError):
        unpack_header(bytes(block))
    with pytest.raises(BadMagicError):
        unpack_header(os.urandom(1024))


def test_big_endian_header_is_read():
    le = pack_header(Header(type=TS_INODE, date=77, inumber=5,
                            inode=Inode(mode=0o100644, size=3000, uid=7, mtime=100)))
    be = bytearray(le)
    # swap the numeric words as a big-endian dump would have written them
    for start, end, size in ((0, 32, 4), (32, 40, 2), (48, 164, 4), (692, 696, 4), (888, 904, 4)):
        for off in range(start, end, size):
            be[off:off + size] = be[off:off + size][::-1]
    be[40:48] = be[40:48][::-1]
    be[904:1024] = bytes(120)
    total = sum(struct.unpack(">256i", bytes(be[:28] + b"\0\0\0\0" + be[32:])))
    be[28:32] = struct.pack(">i", ((CHECKSUM - total + 2**31) % 2**32) - 2**31)
    h = unpack_header(bytes(be))
    assert (h.date, h.inumber, h.inode.size, h.inode.uid, h.inode.mtime) == (77, 5, 3000, 7, 100)


def test_device_numbers_use_linux_encoding():
    inode = Inode(mode=0o020644, rdev=os.makedev(300, 70000))
    block = pack_header(Header(type=TS_INODE, inode=inode))
    assert struct.unpack_from("<I", block, 72)[0] == 0x11112C70
    assert unpack_header(block).inode.rdev == os.makedev(300, 70000)


def test_new_style_device_in_db1_is_decoded():
    block = bytearray(pack_header(Header(type=TS_INODE, inode=Inode(mode=0o060644))))
    struct.pack_into("<ii", block, 72, 0, 0x11112C70)
    from ndump.format.header import set_checksum
    set_checksum(block)
    assert unpack_header(bytes(block)).inode.rdev == os.makedev(300, 70000)


def test_bsd_layouts_are_recognised_by_their_magic():
    """format/bsd.py: the header layouts of tests/foreign.py, both byte orders."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from foreign import BsdImage
    from ndump.format import unpack_header
    for order in "<>":
        ufs2 = BsdImage("ufs2", order, date=5_000_000_000)
        block = ufs2._header(2, 77, {"mode": 0o100644, "size": 1 << 40, "uid": 70000,
                                     "mtime": 4_100_000_000, "mtime_ns": 5, "extsize": 300,
                                     "bsd_flags": 0x20000}, 3, b"\1\0\1", 123456)
        h = unpack_header(block)
        assert (h.type, h.inumber, h.date, h.tapea, h.count, h.extsize) == (2, 77, 5_000_000_000,
                                                                          123456, 3, 300)
        assert (h.inode.size, h.inode.uid, h.inode.mtime, h.inode.mtime_ns) == (1 << 40, 70000,
                                                                               4_100_000_000, 5)
        assert h.inode.flags == 0x10 and h.present() == 2 and h.label == "bsdtest"
        ofs = BsdImage("ofs", order)
        h = unpack_header(ofs._header(2, 9, {"mode": 0o40755, "size": 64, "uid": 7, "gid": 8,
                                              "mtime": 1000}, 1, b"\1", 5))
        assert (h.inumber, h.inode.mode, h.inode.size, h.inode.uid, h.inode.gid) == (9, 0o40755, 64, 7, 8)
        assert h.inode.mtime == 1000 and h.date == 1_600_000_000 and len(h.addr) == 512
        old = BsdImage("4.3bsd", order)
        block = old._header(2, 9, {"mode": 0o100600, "uid": 300, "gid": 400}, 0, b"", 5)
        assert unpack_header(block).inode.uid == 0          # the 32-bit field is a spare
        assert unpack_header(block, old_inodes=True).inode.uid == 300


def test_chain_link_agrees_with_unpack_header_on_every_block_of_a_stock_dump():
    """chain_link (restore's parallel split walks headers with it) answers what
    unpack_header + Header.present() answer, and refuses what they refuse."""
    from ndump.format.header import HeaderError, chain_link
    here = os.path.dirname(__file__)
    data = open(os.path.join(here, "..", "data", "l0-basic.dump"), "rb").read()
    headers = 0
    for off in range(0, len(data) - 1023, 1024):
        block = data[off:off + 1024]
        try:
            h = unpack_header(block, "<")
        except HeaderError:
            assert chain_link(block) is None
            continue
        headers += 1
        assert chain_link(block) == (h.type, h.date, h.volume, h.tapea, h.is_inode, h.present())
        assert chain_link(memoryview(block)) == chain_link(block)
    assert headers > 10
    damaged = bytearray(data[1024:2048])
    damaged[700] ^= 0xFF
    assert chain_link(bytes(damaged)) is None
    assert chain_link(data[:100]) is None


# -- the writer's one-pack inode header (HeaderPacker.inode_header) ------------------

def _packer_cases():
    import random
    from ndump.format.header import make_inode
    rng = random.Random(16)
    edge_secs = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 0x80000000, -0x80000001, 1 << 33,
                 -(1 << 40), 1_700_000_000]
    for n in range(300):
        kind = rng.choice([0o100644, 0o040755, 0o120777, 0o020660, 0o060660, 0o010644])
        yield (rng.choice([TS_INODE, TS_ADDR]), make_inode(
            mode=kind, nlink=rng.choice([0, 1, 2, 32767, 32768, 70000]),
            size=rng.choice([0, 1, 4096, (1 << 32) + 5, (1 << 40) - 1]),
            uid=rng.choice([0, 1000, 65535, 65536, 0xFFFFFFFF]),
            gid=rng.choice([0, 100, 65536 + 7, 0xFFFFFFFE]),
            atime=rng.choice(edge_secs), atime_ns=rng.randrange(1_000_000_000),
            mtime=rng.choice(edge_secs), mtime_ns=rng.randrange(1_000_000_000),
            ctime=rng.choice(edge_secs), ctime_ns=rng.randrange(1_000_000_000),
            rdev=rng.choice([0, os.makedev(8, 1), os.makedev(259, 70000), os.makedev(4095, 255)]),
            flags=rng.choice([0, 0x80000, 0x80000000 | 0x10]),
            blocks=rng.choice([0, 8, (1 << 32) + 8]), gen=rng.choice([0, 5, 0x80000001]),
            birth=rng.choice([None, (0, 0), (1_600_000_000, 999_999_999), (-5, 1), (1 << 34, 3)])),
            rng.choice([None, 0, 0xFFFFFFFF, 12345]), rng.randrange(513),
            rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 33]), n)


def test_one_pack_inode_header_equals_pack_header():
    """The per-file header of the dump writer is byte for byte the header
    pack_header makes of the same fields: edge values of every field (64-bit
    and negative times, big ids and nlink, devices, birth time, CRC, tapea
    past 32 bits)."""
    from ndump.format.header import HeaderPacker, pack_header, unpack_header
    from ndump.format.constants import DR_NEWINODEFMT
    packer = HeaderPacker(date=1_764_000_000, ddate=1_700_000_000, level=3, label="lbl",
                          filesys="/srv/tree", dev="/dev/sdz9", host="host.example", ntrec=64)
    for htype, inode, crc, count, tapea, ino in _packer_cases():
        addr = bytes([1, 0] * 256)[:count] + bytes(512 - count)
        got = packer.inode_header(htype, 2, tapea, ino + 3, inode, count, addr,
                                  DR_NEWINODEFMT, 7, 0, crc)
        want = pack_header(Header(type=htype, date=1_764_000_000, ddate=1_700_000_000, volume=2,
                                  tapea=tapea, inumber=ino + 3, inode=inode, count=count,
                                  addr=addr, label="lbl", level=3, filesys="/srv/tree",
                                  dev="/dev/sdz9", host="host.example", flags=DR_NEWINODEFMT,
                                  firstrec=7, ntrec=64, data_crc=crc))
        assert got == want, (htype, inode, crc, count, tapea)
        assert unpack_header(got).inumber == ino + 3


def test_positional_inode_constructor_equals_inode():
    from dataclasses import fields
    from ndump.format.header import make_inode_args
    from ndump.format.inode import Inode
    values = list(range(1, 16)) + [(7, 8)]
    made = make_inode_args(*values)
    assert made == Inode(**{f.name: v for f, v in zip(fields(Inode), values)})
    assert type(made) is Inode and hash(made) == hash(Inode(*values))


def test_file_header_from_values_equals_inode_header():
    """The dump's per-file header packed from field values (HeaderPacker.file_header,
    no Inode) is byte for byte inode_header's for the same regular file: the edge
    values of _packer_cases, with the fields a regular file has."""
    from ndump.format.header import HeaderPacker, make_inode
    from ndump.format.constants import DR_NEWINODEFMT
    packer = HeaderPacker(date=1_764_000_000, ddate=1_700_000_000, level=3, label="lbl",
                          filesys="/srv/tree", dev="/dev/sdz9", host="host.example", ntrec=64)
    seen = 0
    for _, inode, crc, count, tapea, ino in _packer_cases():
        i = make_inode(mode=0o100000 | inode.mode & 0o7777, nlink=inode.nlink, size=inode.size,
                       uid=inode.uid, gid=inode.gid, atime=inode.atime, atime_ns=inode.atime_ns,
                       mtime=inode.mtime, mtime_ns=inode.mtime_ns, ctime=inode.ctime,
                       ctime_ns=inode.ctime_ns, rdev=0, flags=inode.flags, blocks=inode.blocks,
                       gen=0, birth=inode.birth)
        addr = bytes([1]) * count + bytes(512 - count)
        want = packer.inode_header(TS_INODE, 2, tapea, ino + 3, i, count, addr,
                                   DR_NEWINODEFMT, 7, 0, crc)
        got = packer.file_header(2, tapea, ino + 3, i.mode, i.nlink, i.uid, i.gid, i.size,
                                 i.atime, i.atime_ns, i.mtime, i.mtime_ns, i.ctime, i.ctime_ns,
                                 i.flags, i.blocks, i.birth, count, addr, DR_NEWINODEFMT, 7, crc)
        assert got == want, (i, crc, count, tapea)
        seen += 1
    assert seen == 300
