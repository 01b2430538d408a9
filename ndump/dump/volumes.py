"""Records to media, and volume changes (classic: the write side of dump/tape.c).

The FormatWriter hands over headers and data.  This sink cuts them into records
of ntrec blocks, compresses records in worker threads (zlib and bzip2 release
the GIL, so compression runs beside the reading), writes them, and starts a new
volume when a -B cap is reached or the medium reports its end.

Every byte stays in the pending buffer until the medium has taken it, so after an
end of medium the blocks not yet written go to the next volume, behind its
TS_TAPE, whose c_count says how many of them still belong to the inode in
progress (FORMAT §7.2).  Headers among them keep the volume number they were
packed with, as stock dump's do after an end of medium; restore reads volume
numbers only from TS_TAPE.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from ndump.format.constants import TP_BSIZE
from ndump.format.records import compress_record
from ndump.errors import MediaError
from ndump.media import EndOfMedia

_BATCH = 1 << 20           # bytes gathered before records are written
_INFLIGHT = 4              # compressed batches queued ahead of the writer
VOLUME_SIZE_REACHED = "volume size reached"


class VolumeWriter:
    def __init__(self, open_volume: Callable[[int], object], ntrec: int, *,
                 algorithm: int | None = None, level: int = 2,
                 capacities: list[int] | None = None,
                 change_volume: Callable[[int, str], None] | None = None,
                 on_volume: Callable[[int, int], None] | None = None,
                 volume_header: Callable[[int, int, int, int], bytes] | None = None):
        """``open_volume(n)`` opens volume n (n > 1; volume 1 is given to
        ``start``); ``volume_header(volume, count, ino, tapea)`` packs the TS_TAPE
        of a later volume; without it an end of medium ends the dump."""
        self.open_volume = open_volume
        self.ntrec = ntrec
        self.record = ntrec * TP_BSIZE
        self.algorithm = algorithm
        self.level = level
        self.capacities = capacities or []
        self.change_volume = change_volume or (lambda v, why: None)
        self.on_volume = on_volume or (lambda v, ino: None)
        self.volume_header = volume_header
        self.volume = 1
        self.output = None
        self._buf = bytearray()               # bytes not yet on the medium
        self._front = 0                       # leading bytes of _buf that are a new TS_TAPE
        self._base = 0                        # stream offset of _buf[_front]
        self._log: deque = deque()            # (stream offset, ino, nblocks) per header
        # compressed: whole records leave _buf for compression, in batches that
        # are kept (raw) until written, and go back to _buf when the medium fills
        self._inflight: deque = deque()       # (future of the packed batch, raw batch, size)
        self._held = 0                        # raw bytes in _inflight
        self._vol_records = 0
        self._vol_bytes = 0
        self.total_blocks = 0                 # blocks on the media so far, all volumes
        self.blocks = 0
        self.bytes_out = 0
        self.volumes = 1
        self._pool = _threads(2) if algorithm is not None else None

    def start(self, output) -> None:
        """Begin volume 1 on an output already opened (and so checked)."""
        self.output = output

    def abort(self) -> None:
        """Stop after a failure: drop what is pending, close the medium."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._inflight.clear()
        self._held = 0
        self._buf.clear()
        if self.output is not None:
            output, self.output = self.output, None
            try:
                output.close()
            except Exception:
                pass                          # the failure being reported matters more

    # -- restartable dumps (SPEC §6) -----------------------------------------
    def checkpoint(self) -> dict:
        """Put every whole record pending on the medium (the rest, less than a
        record, stays pending) and return what ``resume`` needs to go on from
        here: counters, the pending tail, the header log."""
        while True:
            self._flush()
            try:
                self._drain()
                break
            except EndOfMedia as e:
                self._next_volume(str(e))
        return {"volume": self.volume, "volumes": self.volumes, "vol_records": self._vol_records,
                "vol_bytes": self._vol_bytes, "total_blocks": self.total_blocks,
                "blocks": self.blocks, "bytes_out": self.bytes_out, "front": self._front,
                "base": self._base, "log": [list(x) for x in self._log],
                "tail": bytes(self._buf).hex(),
                "last_header": getattr(self, "_last_header", b"").hex()}

    def resume(self, state: dict, output) -> None:
        """Go on from a checkpoint on ``output``, positioned where the checkpoint's
        medium bytes end (a file truncated back to them)."""
        self.volume, self.volumes = state["volume"], state["volumes"]
        self._vol_records, self._vol_bytes = state["vol_records"], state["vol_bytes"]
        self.total_blocks, self.blocks = state["total_blocks"], state["blocks"]
        self.bytes_out, self._front, self._base = state["bytes_out"], state["front"], state["base"]
        self._log = deque(tuple(x) for x in state["log"])
        self._buf = bytearray(bytes.fromhex(state["tail"]))
        self._last_header = bytes.fromhex(state["last_header"])
        self._submitted = 0
        self.output = output

    def resume_on_new_volume(self, state: dict, output) -> None:
        """Go on from a checkpoint on a new volume (a pipe, a tape): its TS_TAPE,
        then the blocks from the checkpoint's last record boundary on.  Its
        c_firstrec is the number of the first of them (checked with stock and
        ndump restore): restore, having read the interrupted volume, skips the
        blocks it has read already (FORMAT §7.3) and goes on where that ended.
        c_count is 0: a restore not in the middle of a file resynchronises on
        the next header."""
        self.resume(state, output)
        _owed, ino = self._owed()
        if self._front:                       # a TS_TAPE that never reached the medium
            del self._buf[:self._front]
            self._front = 0
        self.volume += 1
        self.volumes = self.volume
        # restore numbers blocks without the TS_TAPE of volumes after the first
        first = self.total_blocks - (self.volume - 2)
        self._buf[:0] = self.volume_header(self.volume, 0, ino, first)
        self._front = TP_BSIZE
        self._vol_records = self._vol_bytes = self._submitted = 0
        self.on_volume(self.volume, ino)

    # -- the sink protocol ---------------------------------------------------
    def put(self, header: bytes, data, ino: int, nblocks: int) -> None:
        buf = self._buf                       # grows in place (one call per header)
        self._last_header = header
        self._log.append((self._base + self._held + len(buf) - self._front, ino, nblocks))
        buf += header
        if nblocks and data is not None:
            buf += data
        self.blocks += 1 + nblocks
        if len(buf) >= _BATCH:
            self._flush()

    def pad_blocks(self) -> int:
        """TS_END blocks needed to fill the current record (at least one)."""
        in_volume = self._vol_records * self.ntrec + (self._held + len(self._buf)) // TP_BSIZE
        return self.ntrec - in_volume % self.ntrec

    def close(self) -> None:
        try:
            while self._buf or self._held:
                self._pad_tail()
                before = (self.volume, self._held + len(self._buf))
                self._flush()
                try:
                    self._drain()
                except EndOfMedia as e:
                    self._next_volume(str(e))
                if (self.volume, self._held + len(self._buf)) == before:
                    raise AssertionError("volume writer made no progress")
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
        output, self.output = self.output, None
        output.close()

    def _pad_tail(self) -> None:
        """A volume change after the TS_END padding leaves the last volume one
        block off the record grid (TS_TAPE + whole records): fill the record
        with more TS_END blocks, which restore never reaches."""
        short = -len(self._buf) % self.record
        if short:
            self._buf += self._last_header * (short // TP_BSIZE)

    # -- writing -------------------------------------------------------------
    def _room(self) -> int | None:
        """Records this volume can still take (-B), None when unlimited."""
        if not self.capacities:
            return None
        cap = self.capacities[min(self.volume, len(self.capacities)) - 1]
        return max(1, cap // self.ntrec) - self._vol_records

    def _flush(self) -> None:
        try:
            if self._pool is None:
                self._write_plain()
            else:
                self._submit()
        except EndOfMedia as e:
            self._next_volume(str(e))

    def _write_plain(self) -> None:
        while True:
            n = len(self._buf) // self.record
            room = self._room()
            if room is not None:
                if room <= 0 and self._buf:
                    self._next_volume(VOLUME_SIZE_REACHED)
                    continue
                n = min(n, room)
            if not n:
                return
            nbytes = n * self.record
            try:
                self._write_span(nbytes)
            except EndOfMedia as e:
                ok = e.written - e.written % self.record
                self.output.truncate_to(self._vol_bytes + ok)
                self._consumed(ok)
                self._fill_rest(n - ok // self.record)   # raises when the medium is full
                continue
            self._consumed(nbytes)

    def _write_span(self, nbytes: int) -> None:
        """Write the first nbytes of _buf: one write per record on a tape."""
        with memoryview(self._buf) as whole:
            if not getattr(self.output, "is_tape", False):
                with whole[:nbytes] as part:
                    self.output.write(part)
                return
            for off in range(0, nbytes, self.record):
                with whole[off:off + self.record] as rec:
                    try:
                        self.output.write(rec)
                    except EndOfMedia as e:
                        e.written = off
                        raise

    def _fill_rest(self, n: int) -> None:
        """After a large write was refused, fill the medium record by record
        (a filesystem may refuse a write larger than its free space whole)."""
        for _ in range(n):
            try:
                self._write_span(self.record)
            except EndOfMedia as e:
                self.output.truncate_to(self._vol_bytes)
                if self._vol_records == 0:
                    raise self._no_room(e) from None
                raise
            self._consumed(self.record)

    def _no_room(self, e: EndOfMedia) -> MediaError:
        return MediaError(f"{e} (the medium or filesystem is full): volume {self.volume}"
                          f" ({self.output.name}) cannot hold a single record")

    def _submit(self) -> None:
        """Queue whole records for compression; write what is ready."""
        while True:
            avail = len(self._buf) // self.record
            room = self._room()
            if room is not None:
                room -= self._held // self.record
                if room <= 0 and self._buf:
                    self._drain()
                    self._next_volume(VOLUME_SIZE_REACHED)
                    continue
                avail = min(avail, room)
            if not avail:
                return
            first = self._vol_records == 0 and not self._held
            nbytes = avail * self.record
            # the batch leaves _buf at once, without a copy: appending to a _buf that
            # kept every batch in flight copied it over and over as it grew (a
            # quarter of a -z dump); nothing changes the old buffer from now on
            chunk, self._buf = self._buf, self._buf[nbytes:]
            self._held += nbytes
            fut = self._pool.submit(_pack_records, chunk, nbytes, self.record, self.algorithm,
                                    self.level, first)
            self._inflight.append((fut, chunk, nbytes))
            while len(self._inflight) > _INFLIGHT:
                self._drain_one()

    def _drain(self) -> None:
        while self._inflight:
            self._drain_one()

    def _drain_one(self) -> None:
        """Write the oldest compressed batch: in one write on a file or pipe, one
        write per record on a tape (FORMAT §8.1)."""
        fut, chunk, size = self._inflight[0]
        packed, sizes = fut.result()
        self._inflight.popleft()
        done = n = 0                          # bytes and records of the batch written
        try:
            if not getattr(self.output, "is_tape", False):
                try:
                    self.output.write(packed)
                    done, n = len(packed), len(sizes)
                except EndOfMedia as e:
                    # keep the whole records that reached the medium; a filesystem may
                    # refuse a write larger than its free space whole: go on record by record
                    while n < len(sizes) and done + sizes[n] <= e.written:
                        done += sizes[n]
                        n += 1
                    self.output.truncate_to(self._vol_bytes + done)
            while n < len(sizes):
                self.output.write(packed[done:done + sizes[n]])
                done += sizes[n]
                n += 1
        except EndOfMedia as e:
            self.output.truncate_to(self._vol_bytes + done)
            self._packed_out(n, done)
            if self._vol_records == 0:
                raise self._no_room(e) from None
            # what did not fit goes back to _buf, for the next volume
            for f, _, _ in self._inflight:
                f.cancel()
            rest = [chunk[n * self.record:size]] + [c[:k] for _, c, k in self._inflight]
            self._inflight.clear()
            self._held = 0
            self._buf[:0] = b"".join(rest)
            raise
        self._packed_out(n, done)

    def _packed_out(self, records: int, nbytes: int) -> None:
        """``records`` compressed records, ``nbytes`` on the medium, were written."""
        if not records:
            return
        self._vol_bytes += nbytes
        self.bytes_out += nbytes
        self._held -= records * self.record
        self._consumed(records * self.record, physical=nbytes)

    def _consumed(self, nbytes: int, physical: int | None = None) -> None:
        """The first nbytes not yet on the medium are: of _buf, or, compressed
        (``physical`` bytes on the medium), of the oldest batch in flight."""
        if not nbytes:
            return
        if physical is None:
            self._vol_bytes += nbytes
            self.bytes_out += nbytes
            del self._buf[:nbytes]
        front = min(self._front, nbytes)
        self._front -= front
        self._base += nbytes - front
        self._vol_records += nbytes // self.record
        self.total_blocks += nbytes // TP_BSIZE
        log = self._log
        while len(log) > 1 and log[1][0] <= self._base:
            log.popleft()

    # -- volume changes ------------------------------------------------------
    def _owed(self) -> tuple[int, int]:
        """(data blocks of the inode in progress still to come, that inode)."""
        pos = self._base
        ino = 0
        for off, hino, nb in self._log:
            if off > pos:
                break
            ino = hino
            end = off + TP_BSIZE * (1 + nb)
            if off < pos < end:
                return (end - pos) // TP_BSIZE, hino
        return 0, ino

    def _next_volume(self, why: str) -> None:
        if self.volume_header is None:
            raise EndOfMedia(why)
        owed, ino = self._owed()
        self.output.close()
        self.volume += 1
        self.volumes = self.volume
        self.change_volume(self.volume, why)
        self.output = self.open_volume(self.volume)
        tape = self.volume_header(self.volume, owed, ino, self.total_blocks)
        if self._front:                       # a TS_TAPE that never reached the medium
            del self._buf[:self._front]
        self._buf[:0] = tape
        self._front = TP_BSIZE
        self._vol_records = 0
        self._vol_bytes = 0
        self.on_volume(self.volume, ino)


def _threads(n: int):
    """The compression threads; concurrent.futures (and the logging it loads) is
    imported only by a compressed dump (start-up of the others, issue 16)."""
    from concurrent.futures import ThreadPoolExecutor
    return ThreadPoolExecutor(n)


def _pack_records(chunk: bytearray, size: int, record: int, algorithm: int, level: int,
                  first: bool) -> tuple[bytes, list[int]]:
    """The whole records in ``chunk[:size]`` compressed (the first raw when it
    opens a volume): the bytes to write, and the size of each record in them."""
    with memoryview(chunk) as whole:
        out = [whole[i:i + record].tobytes() for i in range(0, size, record)]
    for i in range(1 if first else 0, len(out)):
        out[i] = compress_record(out[i], algorithm, level)
    return b"".join(out), [len(r) for r in out]
