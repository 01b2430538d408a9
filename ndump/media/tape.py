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
_MTGET = struct.Struct("lllllii")      # struct mtget (linux/mtio.h): type resid dsreg gstat erreg fileno blkno
MTIOCGET = 0x80000000 | (_MTGET.size << 16) | (ord("m") << 8) | 2      # _IOR('m', 2, struct mtget)
MT_ST_BLKSIZE_MASK = 0xFFFFFF          # mt_dsreg: the block size (0: variable), density above it
GMT_DR_OPEN, GMT_WR_PROT = 0x00040000, 0x04000000     # mt_gstat: no cartridge; write-protected
LARGEST_RECORD = 1 << 20               # a dump's largest record without compression
MAX_RECORD = LARGEST_RECORD + 16       # 1 MiB records, plus a compression prefix
SCSI_TAPE_MAJOR = 9


class Drive(Protocol):
    name: str

    def write_record(self, data) -> int: ...
    def read_record(self, size: int) -> bytes: ...
    def op(self, op: int, count: int) -> None: ...
    def block_size(self) -> int | None:
        """The drive's fixed block size in bytes, 0 in variable-block mode, None when
        it cannot tell (MTIOCGET's mt_dsreg)."""
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


def check_drive(path: str, write: bool) -> None:
    """Raise StartupError now where opening the drive to write would fail, as far as
    can be told without writing or waiting for a cartridge: the drive is opened
    O_RDONLY|O_NONBLOCK (st then opens without a medium; closing an unwritten drive
    leaves the tape where it is, or rewinds a rewinding device as any close does) and
    asked for its status."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise StartupError(f"cannot open {path}: {_open_reason(e)}") from None
    try:
        raw = fcntl.ioctl(fd, MTIOCGET, bytes(_MTGET.size))
    except OSError:
        return                               # not st: the open will tell
    finally:
        os.close(fd)
    problem = status_problem(_MTGET.unpack(raw)[3], write)
    if problem:
        raise StartupError(f"cannot open {path}: {problem}")


def status_problem(gstat: int, write: bool) -> str | None:
    """What MTIOCGET's mt_gstat says stops a dump (``write``) or a restore, or None."""
    if gstat & GMT_DR_OPEN:
        return "no medium found (no cartridge in the drive)"
    if write and gstat & GMT_WR_PROT:
        return "the cartridge is write-protected"
    return None


def _open_reason(e: OSError) -> str:
    return "device busy" if e.errno == errno.EBUSY else (e.strerror or str(e)).lower()


class LocalDrive:
    """A tape character device on this machine."""

    def __init__(self, path: str, write: bool):
        self.name = path
        flags = (os.O_WRONLY if write else os.O_RDONLY) | os.O_CLOEXEC
        try:
            self.fd = os.open(path, flags)
        except OSError as e:
            raise StartupError(f"cannot open {path}: {_open_reason(e)}") from None

    def write_record(self, data) -> int:
        return os.write(self.fd, data)

    def read_record(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def op(self, op: int, count: int) -> None:
        fcntl.ioctl(self.fd, MTIOCTOP, struct.pack("hxxi", op, count))

    def block_size(self) -> int | None:
        try:
            raw = fcntl.ioctl(self.fd, MTIOCGET, bytes(_MTGET.size))
        except OSError:
            return None
        return _MTGET.unpack(raw)[2] & MT_ST_BLKSIZE_MASK

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
            if e.errno == errno.EINVAL:
                raise MediaError(write_refused(self.name, len(data), self.drive.block_size())) from None
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
                # often exactly 1 MiB, the largest record a dump has without compression,
                # and in fixed-block mode one that is not a whole number of blocks
                block = self.drive.block_size()
                self.read_size = LARGEST_RECORD // block * block if block else LARGEST_RECORD
                return self._next_record()
            if e.errno == errno.EINVAL and self.read_size < MAX_RECORD:
                block = self.drive.block_size()
                if block and self.read_size % block:
                    raise BadBlockingFactorError(read_refused(self.name, self.read_size, block)) from None
            if e.errno in (errno.ENOMEM, errno.EINVAL, errno.EOVERFLOW) and self.read_size < MAX_RECORD:
                raise BadBlockingFactorError(self._too_small_b(e.errno == errno.ENOMEM)) from None
            if e.errno == errno.EIO and self.record_size is None:
                block = self.drive.block_size()
                if block:          # st: "Incorrect block size" (a record larger than a block)
                    raise BadBlockingFactorError(first_read_failed(self.name, block)) from None
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


# -- what a drive's refusal means (st: a fixed-block drive takes only whole blocks) --

def write_refused(name: str, record: int, block: int | None) -> str:
    """The message for a tape write of ``record`` bytes refused with EINVAL, given the
    drive's block size (Drive.block_size())."""
    what = f"{record // 1024} KiB (-b {record // 1024})" if record % 1024 == 0 else f"{record} bytes"
    if block and record % block:
        return (f"write error on {name}: the drive is in fixed-block mode with {_size(block)}"
                f" blocks, and a record of {what} is not a whole number of them:"
                f" {_use_b(block)}set variable-block mode with 'mt -f {name} setblk 0'")
    if block == 0:
        return (f"write error on {name}: invalid argument: the drive (in variable-block mode)"
                f" refuses a record of {what}; use a smaller -b")
    return f"write error on {name}: invalid argument"


def read_refused(name: str, size: int, block: int) -> str:
    """The message for a restore -b whose ``size`` bytes the drive refuses in
    fixed-block mode with ``block``-byte blocks."""
    return (f"{name} is in fixed-block mode with {_size(block)} blocks, and -b {size // 1024}"
            f" is not a whole number of them: {_use_b(block)}leave -b out")


def first_read_failed(name: str, block: int) -> str:
    """The message for an I/O error on the first read with the drive in fixed-block
    mode: st reports one for a record that is not the drive's block size."""
    return (f"read error on {name}: input/output error at the first record, with the drive"
            f" in fixed-block mode with {_size(block)} blocks: if the dump was written with"
            f" other records, set variable-block mode with 'mt -f {name} setblk 0'")


def _use_b(block: int) -> str:
    kib = block // 1024
    return f"use -b {kib}, or " if block % 1024 == 0 and 4 <= kib <= LARGEST_RECORD // 1024 else ""


def _size(nbytes: int) -> str:
    return f"{nbytes // 1024} KiB" if nbytes % 1024 == 0 else f"{nbytes}-byte"
