"""Records to media (classic: the write side of dump/tape.c).

The FormatWriter hands over headers and data; this sink packs them into records
of ntrec blocks, compresses them when asked, and writes them to the output.  For
plain files and pipes it writes large batches with writev (records only matter
to tapes and to compressed framing).
"""
from __future__ import annotations

import os

from ndump.format import RecordPacker
from ndump.format.constants import TP_BSIZE

_BATCH = 1 << 20


class VolumeWriter:
    def __init__(self, output, ntrec: int, packer: RecordPacker | None = None):
        self.output = output
        self.ntrec = ntrec
        self.record = ntrec * TP_BSIZE
        self.packer = packer
        self._parts: list = []
        self._pending = 0
        self.blocks = 0
        self.bytes_out = 0
        self._direct = packer is None and not getattr(output, "is_tape", False) \
            and hasattr(output, "fd")

    def put(self, header: bytes, data, ino: int, nblocks: int) -> None:
        self._parts.append(header)
        self._pending += TP_BSIZE
        if data is not None and nblocks:
            self._parts.append(data)
            self._pending += len(data)
        self.blocks += 1 + nblocks
        if self._pending >= _BATCH:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._parts:
            return
        if self._direct:
            _writev_all(self.output, self._parts)
            self.bytes_out += self._pending
            self._parts, self._pending = [], 0
            return
        buf = b"".join(self._parts)
        whole = len(buf) - len(buf) % self.record
        if final:
            whole = len(buf)
        for off in range(0, whole, self.record):
            rec = buf[off:off + self.record]
            out = self.packer.pack(rec) if self.packer else rec
            self.output.write(out)
            self.bytes_out += len(out)
        rest = buf[whole:]
        self._parts = [rest] if rest else []
        self._pending = len(rest)

    def close(self) -> None:
        self._flush(final=True)


def _writev_all(output, parts: list) -> None:
    """writev every part, resuming after short writes; errors go through output.write."""
    fd = output.fd
    views = [memoryview(p) for p in parts]
    while views:
        try:
            n = os.writev(fd, views[:1024])
        except OSError:
            # let the medium translate the error (ENOSPC -> EndOfMedia, ...)
            output.write(b"".join(views))
            return
        while n and views:
            if n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0
