"""Tape semantics over a drive (classic: the device half of dump/tape.c).

A drive is either a local character device (ioctl MTIOCTOP) or a remote one
reached through rmt (media/rmt.py); both offer the same small set of calls, and
the classes here give them tape behaviour: one write() is one record of exactly
the blocking factor, end of medium becomes EndOfMedia, a filemark ends each dump,
and a read returns one record whatever its size (so the blocking factor is found
from the medium).
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from typing import Protocol

from ndump.errors import BadBlockingFactorError, MediaError, StartupError
from ndump.media.base import EndOfMedia

MTIOCTOP = 0x40086D01
MTFSF, MTBSF, MTFSR, MTBSR, MTWEOF, MTREW, MTOFFL = 1, 2, 3, 4, 5, 6, 7
LARGEST_RECORD = 1 << 20               # a dump's largest record without compression
MAX_RECORD = LARGEST_RECORD + 16       # 1 MiB records, plus a compression prefix
SCSI_TAPE_MAJOR = 9



class Drive(Protocol):
    name: str

    def write_record(self, data) -> int: ...
    def read_record(self, size: int) -> bytes: ...
    def op(self, op: int, count: int) -> None: ...
    def close(self) -> None: ...


def is_tape_device(path: str) -> bool:
    """A SCSI tape (st/nst) or anything named like one."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISCHR(st.st_mode):
        return False
    base = os.path.basename(path)
    return os.major(st.st_rdev) == SCSI_TAPE_MAJOR or base.startswith(("st", "nst", "sa", "nsa", "rmt"))


class LocalDrive:
    """A tape character device on this machine."""

    def __init__(self, path: str, write: bool):
        self.name = path
        flags = (os.O_WRONLY if write else os.O_RDONLY) | os.O_CLOEXEC
        try:
            self.fd = os.open(path, flags)
        except OSError as e:
            reason = "device busy" if e.errno == errno.EBUSY else (e.strerror or str(e)).lower()
            raise StartupError(f"cannot open {path}: {reason}") from None

    def write_record(self, data) -> int:
        return os.write(self.fd, data)

    def read_record(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def op(self, op: int, count: int) -> None:
        fcntl.ioctl(self.fd, MTIOCTOP, struct.pack("hxxi", op, count))

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class TapeOutput:
    """Writes records to a drive; ENOSPC or a short write is the end of the medium."""
    is_tape = True
    seekable = False

    def __init__(self, drive: Drive):
        self.drive = drive
        self.name = drive.name
        self.wrote = False

    def write(self, data) -> None:
        try:
            n = self.drive.write_record(data)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise EndOfMedia(f"end of medium on {self.name}") from None
            raise MediaError(f"write error on {self.name}: {(e.strerror or str(e)).lower()}") from None
        if n != len(data):
            raise EndOfMedia(f"end of medium on {self.name}")
        self.wrote = True

    def close(self) -> None:
        try:
            if self.wrote:
                self.drive.op(MTWEOF, 1)     # the filemark that ends this dump
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                return                       # a remote plain file has no filemarks
            raise MediaError(f"cannot write a filemark on {self.name}: {(e.strerror or str(e)).lower()}") from None
        finally:
            self.drive.close()

    def truncate_to(self, size: int) -> None:
        """Nothing to undo on a tape: a failed record was not written."""


class TapeInput:
    """Reads records from a drive and serves them as a byte stream.

    ``blocksize`` (restore -b, in KiB) is the read size to use; by default the
    largest record size ndump knows, so any blocking factor is accepted.
    """
    is_tape = True

    def __init__(self, drive: Drive, *, blocksize: int | None = None, skip_files: int = 0):
        self.drive = drive
        self.name = drive.name
        self.read_size = blocksize * 1024 if blocksize else MAX_RECORD
        self.record_size: int | None = None
        self._buf = b""
        self._pos = 0
        self._eof = False
        if skip_files:
            try:
                drive.op(MTFSF, skip_files)
            except OSError as e:
                raise StartupError(f"cannot skip to file {skip_files + 1} on {self.name}:"
                                   f" {(e.strerror or str(e)).lower()}") from None

    def _next_record(self) -> bytes:
        try:
            data = self.drive.read_record(self.read_size)
        except OSError as e:
            if e.errno == errno.EINVAL and self.read_size == MAX_RECORD:
                # st refuses (without moving) a read longer than the drive's largest block,
                # often exactly 1 MiB, the largest record a dump has without compression
                self.read_size = LARGEST_RECORD
                return self._next_record()
            if e.errno in (errno.ENOMEM, errno.EINVAL, errno.EOVERFLOW) and self.read_size < MAX_RECORD:
                raise BadBlockingFactorError(self._too_small_b(e.errno == errno.ENOMEM)) from None
            raise MediaError(f"read error on {self.name}: {(e.strerror or str(e)).lower()}") from None
        if self.record_size is None and data:
            self.record_size = len(data)
        return data

    def _too_small_b(self, passed_record: bool) -> str:
        """``passed_record``: the drive refused a whole record for a short buffer (ENOMEM, st
        in variable block mode), so its length can be found."""
        given = self.read_size // 1024
        size = self._refused_record_size() if passed_record else 0
        if size > self.read_size and size % 1024 == 0:
            return (f"the records on {self.name} are {size // 1024} KiB, larger than -b {given}:"
                    f" use -b {size // 1024}, or leave -b out")
        return (f"the records on {self.name} are larger than -b {given}; leave -b out, or give"
                " the blocking factor the dump was written with")

    def _refused_record_size(self) -> int:
        """The length of the record a short read refused: st has moved past it (step back
        one record), a drive that has not refuses the step; then read it whole."""
        try:
            self.drive.op(MTBSR, 1)
        except OSError:
            pass
        try:
            return len(self.drive.read_record(LARGEST_RECORD))
        except OSError:
            return 0

    def read(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            if self._eof:
                return b""
            self._buf, self._pos = self._next_record(), 0
            if not self._buf:
                self._eof = True             # a filemark: the end of this dump file
                return b""
        out = self._buf[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def close(self) -> None:
        self.drive.close()
