"""format/records.py: compressed record framing (FORMAT §8), on bytes only."""
import io
import os
import struct

import pytest

from ndump.format import BlockSource, Header, pack_header
from ndump.format.constants import COMPRESS_BZLIB, COMPRESS_ZLIB, DR_COMPRESSED, TS_TAPE
from ndump.format.records import RecordError, compress_record


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
