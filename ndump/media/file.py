"""Regular image files (and other seekable or plain outputs such as /dev/null)."""
from __future__ import annotations

import errno
import os
import stat

from ndump.errors import MediaError, StartupError
from ndump.media.base import EndOfMedia
from ndump.media.waits import pipe_writer, read_waiter, wait_readable


def _reason(e: OSError) -> str:
    return os.strerror(e.errno).lower() if e.errno else str(e)


class FileOutput:
    is_tape = False

    def __init__(self, path: str, *, fd: int | None = None, resume_at: int | None = None):
        """``resume_at``: open an existing file without truncating it, cut it back to
        that many bytes and write from there (a restarted dump, SPEC §6)."""
        self.name = path
        if fd is None:
            flags = os.O_WRONLY | os.O_CLOEXEC | (
                os.O_CREAT | os.O_TRUNC if resume_at is None else 0)
            try:
                fd = os.open(path, flags, 0o666)
            except OSError as e:
                raise StartupError(f"cannot open {path}: {_reason(e)}") from None
            if resume_at is not None:
                _cut_back(fd, path, resume_at)
        self.fd = fd
        try:
            os.lseek(fd, 0, os.SEEK_CUR)
            self.seekable = True
        except OSError:
            self.seekable = False
        self.bytes_written = 0
        self._pipe = pipe_writer(fd)        # None for a file or a device

    def write(self, data) -> None:
        # every view is released before an error propagates: the caller resizes
        # the buffer it handed us when the medium is full
        with memoryview(data) as base:
            done, total = 0, len(base)
            while done < total:
                with base[done:] as part:
                    n = self._write_once(part, done)
                if n == 0:
                    raise EndOfMedia(f"{self.name}: no room left", written=done)
                done += n
                self.bytes_written += n

    def _write_once(self, part: memoryview, done: int) -> int:
        try:
            if self._pipe is not None:
                return self._pipe.write(part)
            return os.write(self.fd, part)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise EndOfMedia(f"{self.name}: {_reason(e)}", written=done) from None
            if e.errno == errno.EPIPE:
                raise MediaError(f"{self.name}: broken pipe") from None
            raise MediaError(f"write error on {self.name}: {_reason(e)}") from None

    def sync(self) -> None:
        """Make what was written durable (fsync); a pipe or device that cannot is left be."""
        _fsync(self.fd, self.name)

    def syncer(self):
        """``sync`` for another thread: it makes durable what was written before this
        call, and holds a descriptor of its own (the output may be closed meanwhile)."""
        fd, name = os.dup(self.fd), self.name

        def sync() -> None:
            try:
                _fsync(fd, name)
            finally:
                os.close(fd)
        return sync

    def truncate_to(self, size: int) -> None:
        """Cut a regular file back to ``size`` bytes (undo a partly written record)."""
        if self.seekable:
            try:
                os.ftruncate(self.fd, size)
                os.lseek(self.fd, size, os.SEEK_SET)
            except OSError:
                pass

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError as e:
                raise MediaError(f"cannot close {self.name}: {_reason(e)}") from None


def _cut_back(fd: int, path: str, size: int) -> None:
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StartupError(f"cannot continue on {path}: not a regular file")
        if st.st_size < size:
            raise StartupError(f"cannot continue on {path}: it holds {st.st_size} bytes, fewer"
                               f" than the {size} written before the checkpoint (another file?)")
        os.ftruncate(fd, size)
        os.lseek(fd, size, os.SEEK_SET)
    except StartupError:
        os.close(fd)
        raise
    except OSError as e:
        os.close(fd)
        raise StartupError(f"cannot continue on {path}: {_reason(e)}") from None


class FileInput:
    is_tape = False

    def __init__(self, path: str, *, fd: int | None = None):
        self.name = path
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise StartupError(f"cannot open {path}: {_reason(e)}") from None
        self.fd = fd
        try:
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                raise StartupError(f"cannot read {path}: is a directory")
        except OSError:
            pass
        self._poll = read_waiter(fd)

    def read(self, n: int) -> bytes:
        try:
            if self._poll is not None:
                wait_readable(self._poll)
            return os.read(self.fd, n)
        except OSError as e:
            if e.errno == errno.EISDIR:
                raise StartupError(f"cannot read {self.name}: is a directory") from None
            raise MediaError(f"read error on {self.name}: {_reason(e)}") from None

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def _fsync(fd: int, name: str) -> None:
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP):
            raise MediaError(f"cannot sync {name}: {_reason(e)}") from None
