"""format/records.py: compressed record framing (FORMAT §8), on bytes only."""
import io
import os
import struct

import pytest

from ndump.format import BlockSource, Header, pack_header
from ndump.format.constants import COMPRESS_BZLIB, COMPRESS_LZO, COMPRESS_ZLIB, DR_COMPRESSED, TS_TAPE
from ndump.format.records import (
    RecordError, UnsupportedCompressionError, compress_record, looks_random, zlib_stream,
)


def _volume(ntrec, algorithm, records):
    first = pack_header(Header(type=TS_TAPE, flags=0x3 | DR_COMPRESSED, ntrec=ntrec))
    first += bytes((ntrec - 1) * 1024)
    out = first                               # the first record of a volume stays raw
    for rec in records:
        out += compress_record(rec, algorithm, 6)
    return first, out


@pytest.mark.parametrize("algorithm", [COMPRESS_ZLIB, COMPRESS_BZLIB])
def test_prefix_layout_and_round_trip(algorithm):
    compressible = bytes(10240)
    random_rec = os.urandom(10240)
    first, image = _volume(10, algorithm, [compressible, random_rec])
    assert image[:10240] == first                          # first record raw
    prefix, = struct.unpack_from("<I", image, 10240)
    assert prefix & 1 and (prefix >> 1) & 7 == algorithm
    src = BlockSource(io.BytesIO(image).read)
    assert src.probe_first() == first[:1024]
    assert src.compressed and src.ntrec == 10
    data = bytes(src.read_blocks(9 + 10 + 10))
    assert data == first[1024:] + compressible + random_rec


def test_incompressible_record_is_stored_raw_with_prefix():
    rec = os.urandom(10240)
    out = compress_record(rec, COMPRESS_ZLIB, 2)
    assert struct.unpack_from("<I", out)[0] == 10240 << 4 and out[4:] == rec


def test_random_records_are_stored_raw_without_trying_and_others_still_compress():
    rng = __import__("random").Random(7)
    noise = rng.randbytes(10240)
    assert looks_random(noise) and looks_random(rng.randbytes(32768))
    text = (b"ndump writes a record of ntrec blocks; " * 300)[:10240]
    with_header = noise[:9216] + pack_header(Header(type=TS_TAPE))   # its zeros compress
    short = noise[:9216]                 # -b 9: too small a sample to judge, compressed
    binary = bytes(b % 97 for b in noise)       # 97 byte values: compresses a little
    for rec in (text, with_header, short, binary):
        assert not looks_random(rec)
    for algorithm in (COMPRESS_ZLIB, COMPRESS_BZLIB):
        assert compress_record(noise, algorithm, 2) == struct.pack("<I", 10240 << 4) + noise
        for rec in (text, with_header, binary):
            prefix, = struct.unpack_from("<I", compress_record(rec, algorithm, 2))
            assert prefix & 1, (algorithm, rec[:20])


def test_zlib_stream_stores_random_blocks_and_is_one_valid_zlib_stream():
    import zlib
    rng = __import__("random").Random(11)
    header = pack_header(Header(type=TS_TAPE))
    text = b"a line of text that deflate likes, " * 100
    records = [header + rng.randbytes(9216),                     # a header, then noise
               text[:3072] + rng.randbytes(4096) + header + bytes(2048),
               rng.randbytes(40 * 1024) + header + text[:7168]]  # a stored run over 32 KiB
    for rec in records:
        stream = zlib_stream(rec, 2)
        assert stream[:2] == zlib.compress(b"", 2)[:2] == b"\x78\x5e"
        assert zlib.decompress(stream) == rec
        # stored noise is not bigger than deflated noise, and compressing it was skipped
        assert len(stream) <= len(zlib.compress(rec, 2)) + 16
    plain = text[:10240]
    assert zlib_stream(plain, 2) == zlib.compress(plain, 2)     # nothing random: plain zlib
    _, image = _volume(10, COMPRESS_ZLIB, records[:2])
    src = BlockSource(io.BytesIO(image).read)
    src.probe_first()
    assert bytes(src.read_blocks(9 + 20))[9 * 1024:] == records[0] + records[1]


def test_corrupt_payload_is_a_record_error():
    _, image = _volume(10, COMPRESS_ZLIB, [bytes(10240)])
    bad = bytearray(image)
    bad[10240 + 8] ^= 0xFF
    src = BlockSource(io.BytesIO(bytes(bad)).read)
    src.probe_first()
    with pytest.raises(RecordError):
        src.read_blocks(19)


def test_uncompressed_stream_serves_blocks_across_reads():
    data = os.urandom(1024 * 50)
    chunks = io.BytesIO(data)
    src = BlockSource(lambda n: chunks.read(min(n, 3000)))
    assert src.probe_first() == data[:1024]
    got = b"".join(bytes(src.read_blocks(7)) for _ in range(7))
    assert got == data[1024:]


def _lzo_volume(records, ntrec=10):
    import lzokay
    first = pack_header(Header(type=TS_TAPE, flags=0x3 | DR_COMPRESSED, ntrec=ntrec))
    first += bytes((ntrec - 1) * 1024)
    out = first
    for rec in records:
        payload = lzokay.compress(rec)
        out += struct.pack("<I", (len(payload) << 4) | (COMPRESS_LZO << 1) | 1) + payload
    return first, out


def test_lzo_records_are_read():
    text = b"".join(b"line %05d\n" % i for i in range(1024))[:10240]
    first, image = _lzo_volume([text, bytes(10240)])
    src = BlockSource(io.BytesIO(image).read)
    src.probe_first()
    assert src.compressed and src.algorithm == COMPRESS_LZO
    assert bytes(src.read_blocks(29)) == first[1024:] + text + bytes(10240)


def test_corrupt_lzo_record_is_a_record_error():
    _, image = _lzo_volume([os.urandom(5000) * 2 + bytes(240)])
    src = BlockSource(io.BytesIO(image[:-40]).read)          # payload cut short
    src.probe_first()
    with pytest.raises(RecordError):
        src.read_blocks(19)


def test_unknown_algorithm_is_refused_when_the_volume_is_opened():
    first = pack_header(Header(type=TS_TAPE, flags=0x3 | DR_COMPRESSED, ntrec=10))
    image = first + bytes(9 * 1024) + struct.pack("<I", (100 << 4) | (5 << 1) | 1) + bytes(100)
    with pytest.raises(UnsupportedCompressionError, match="algorithm 5"):
        BlockSource(io.BytesIO(image).read).probe_first()


def test_record_prefix_in_both_byte_orders():
    from ndump.format.records import decode_prefix
    assert decode_prefix(struct.pack("<I", 894 << 4 | 2 << 1 | 1)) == (True, 2, 894)
    assert decode_prefix(struct.pack("<I", 10240 << 4)) == (False, 0, 10240)
    # a big-endian compiler packs compressed:1, flags:3, length:28 from the top bit
    assert decode_prefix(struct.pack(">I", 1 << 31 | 1 << 28 | 894), ">") == (True, 1, 894)
    assert decode_prefix(struct.pack(">I", 10240), ">") == (False, 0, 10240)


def test_zstd_records_from_reused_compressors_are_whole_frames_at_their_level():
    """Each thread keeps one zstd compressor per level: every record is still a
    complete frame that decodes alone, and a change of level takes effect."""
    zstd = pytest.importorskip("zstandard")
    import threading
    from ndump.format.constants import COMPRESS_ZSTD
    from ndump.format.records import decompress_payload
    import random
    rng = random.Random(5)
    words = [bytes(rng.choices(b"abcdefghij", k=rng.randint(2, 8))) for _ in range(400)]
    rec = b" ".join(rng.choices(words, k=3000))[:10240]     # levels 1 and 19 differ on it
    outs = [compress_record(rec, COMPRESS_ZSTD, 1) for _ in range(3)]
    outs.append(compress_record(rec, COMPRESS_ZSTD, 19))
    other: list = []
    t = threading.Thread(target=lambda: other.append(compress_record(rec, COMPRESS_ZSTD, 1)))
    t.start()
    t.join()
    outs += other
    for out in outs:
        assert decompress_payload(out[4:], COMPRESS_ZSTD, 10240) == rec
    assert outs[0] == outs[1] == outs[2] == outs[4]
    assert outs[0][4:] == zstd.ZstdCompressor(level=1).compress(rec)
    assert outs[3][4:] == zstd.ZstdCompressor(level=19).compress(rec) != outs[0][4:]
