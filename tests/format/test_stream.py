"""format/stream.py: a writer/reader round trip on BytesIO, and damage handling."""
import io
import os

import pytest

from ndump.format import (
    DumpIdent, FormatReader, FormatWriter, Hole, Inode, NotADumpError, TruncatedError, pack_dir,
    pack_ea_records, symlink_payload,
)


class Sink:
    def __init__(self, ntrec=10):
        self.buf = io.BytesIO()
        self.ntrec = ntrec

    def pad_blocks(self):
        return self.ntrec - self.buf.tell() // 1024 % self.ntrec

    def put(self, header, data, ino, nblocks):
        self.buf.write(header)
        if data is not None:
            self.buf.write(data)


def _bitmap(inos, maxino):
    size = ((maxino + 7) // 8 + 1023) // 1024 * 1024
    bits = bytearray(size)
    for n in inos:
        bits[(n - 1) >> 3] |= 1 << ((n - 1) & 7)
    return bytes(bits)


def make_image(files=None, *, date=1_700_000_000):
    sink = Sink()
    w = FormatWriter(sink, DumpIdent(date=date, ntrec=10))
    files = files if files is not None else {3: os.urandom(3000), 4: bytes(2048) + b"tail"}
    inos = [2] + list(files)
    maxino = max(inos) + 1
    w.write_tape_header()
    w.write_maps(_bitmap(inos, maxino), _bitmap(inos, maxino), maxino)
    dirdata = pack_dir([(2, 4, b"."), (2, 4, b"..")] + [(i, 8, b"f%d" % i) for i in files])
    dinode = Inode(mode=0o40755, size=len(dirdata))
    for off in range(0, len(dirdata), 1024):
        w.write_chunk(2, dinode, off == 0, b"\x01", dirdata[off:off + 1024])
    for ino, data in files.items():
        inode = Inode(mode=0o100644, size=len(data), mtime=5, mtime_ns=123)
        pieces = (len(data) + 1023) // 1024
        padded = data + bytes(pieces * 1024 - len(data))
        addr = bytes(1 if any(padded[i * 1024:(i + 1) * 1024]) else 0 for i in range(pieces))
        present = b"".join(padded[i * 1024:(i + 1) * 1024] for i in range(pieces) if addr[i])
        w.write_chunk(ino, inode, True, addr, present)
        for rec in pack_ea_records([("user.k", b"v%d" % ino)])[0]:
            w.write_extattrs(ino, inode, rec)
    w.write_end(maxino)
    return sink.buf.getvalue()


def read_all(image, **kw):
    r = FormatReader(io.BytesIO(image).read, **kw)
    r.read_maps()
    out = {}
    while (rec := r.next_record()) is not None:
        pieces = list(r.file_data(rec))
        data = b"".join(bytes(p.size) if isinstance(p, Hole) else bytes(p) for p in pieces)
        out[rec.ino] = (data, rec.xattrs, rec.damaged, pieces)
    return r, out


def test_round_trip_with_holes_and_attrs():
    image = make_image()
    assert len(image) % 10240 == 0
    r, out = read_all(image)
    assert r.tape.date == 1_700_000_000
    assert out[4][0] == bytes(2048) + b"tail"
    assert any(isinstance(p, Hole) for p in out[4][3])
    assert out[3][1] == [("user.k", b"v3")]
    assert all(not v[2] for v in out.values())


def test_random_bytes_are_not_a_dump():
    with pytest.raises(NotADumpError):
        FormatReader(io.BytesIO(os.urandom(50000)).read)
    with pytest.raises(NotADumpError):
        FormatReader(io.BytesIO(b"").read)


def test_truncated_image_raises_after_what_is_there():
    image = make_image({3: os.urandom(3000), 4: os.urandom(200_000)})
    r = FormatReader(io.BytesIO(image[:60_000]).read)
    r.read_maps()
    rec = r.next_record()                          # directory 2
    r.skip(rec)
    rec = r.next_record()
    r.skip(rec)                                     # file 3 is whole
    rec = r.next_record()
    with pytest.raises(TruncatedError):
        r.skip(rec)


def test_flipped_header_byte_resyncs_and_loses_one_file():
    files = {3: os.urandom(3000), 4: os.urandom(5000), 5: os.urandom(100)}
    image = bytearray(make_image(files))
    # find file 4's TS_INODE and damage it
    from ndump.format import unpack_header
    for off in range(0, len(image), 1024):
        try:
            h = unpack_header(bytes(image[off:off + 1024]))
        except Exception:
            continue
        if h.inumber == 4 and h.is_inode:
            image[off + 700] ^= 0x55
            break
    problems = []
    r, out = read_all(bytes(image), on_problem=problems.append)
    assert set(out) == {2, 3, 5}
    assert out[3][0] == files[3] and out[5][0] == files[5]
    assert any("resync" in p for p in problems)


def test_data_checksum_detects_damaged_block():
    files = {3: os.urandom(3000)}
    image = bytearray(make_image(files))
    idx = image.find(files[3][:64])
    image[idx + 10] ^= 1
    _, out = read_all(bytes(image))
    assert out[3][2] and "checksum" in out[3][2][0]


def test_symlink_payload():
    assert symlink_payload(b"abc") == b"abc\0" + bytes(1020)
    assert len(symlink_payload(b"x" * 1023)) == 1024 and len(symlink_payload(b"x" * 1024)) == 2048
