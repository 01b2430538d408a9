"""Reading and writing pipes and sockets without missing a signal.

ndump's SIGINT/SIGTERM/SIGHUP handler raises Interrupted, but Python runs it
between bytecodes. A signal delivered a moment before a blocking read(2) or
write(2) begins (or delivered to another thread) does not interrupt that call
(PEP 475), and a peer that keeps the pipe open and reads or sends nothing then
keeps the process blocked for ever. So nothing here makes a system call that can
block: it waits in short polls (the handler runs between them) and reads or
writes only what the pipe or socket takes at once."""
from __future__ import annotations

import fcntl
import os
import select
import stat
import struct
import termios

POLL_MS = 500
_PAGE = os.sysconf("SC_PAGESIZE")
_PIPE_BUF = select.PIPE_BUF            # a write this small to a pipe with a free slot never blocks
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


def _kind(fd: int) -> str | None:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return None
    return "fifo" if stat.S_ISFIFO(mode) else "sock" if stat.S_ISSOCK(mode) else None


def read_waiter(fd: int):
    """A poll object for an input that can wait for ever (a pipe or a socket);
    None for anything else."""
    if _kind(fd) is None:
        return None
    p = select.poll()
    p.register(fd, select.POLLIN)
    return p


def wait_readable(poll) -> None:
    """Wait in short polls until there is something to read (or the writer is gone)."""
    while not poll.poll(POLL_MS):
        pass


class PipeWriter:
    """Writes to a pipe or a socket that return at once, whatever the reader does."""

    def __init__(self, fd: int, kind: str):
        self.fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        self._sock = None
        if kind == "sock":
            import socket                  # rare (stdout a socket): not at start-up
            self._sock = socket.socket(fileno=os.dup(fd))
            self._nowait = socket.MSG_DONTWAIT
        try:
            self._slots = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) // _PAGE if self._sock is None else 0
        except OSError:
            self._slots = 0

    def write(self, data) -> int:
        """Write part of ``data`` (at least one byte) and say how much; OSError as os.write."""
        while True:
            if self._sock is not None:
                try:
                    return self._sock.send(data, self._nowait)
                except BlockingIOError:
                    pass
            else:
                room = self._room()
                if room:
                    return os.write(self.fd, data[:room])
            events = self._poll.poll(POLL_MS)
            if events and events[0][1] & _GONE:
                return os.write(self.fd, data[:1])    # no reader: EPIPE, at once
            if events and self._sock is None:
                # writable means a free slot: an atomic write fits it
                return os.write(self.fd, data[:_PIPE_BUF])

    def _room(self) -> int:
        """Bytes a write surely takes without blocking: the free slots of the pipe, less
        one for a page the reader has begun (FIONREAD counts bytes, slots hold pages)."""
        if not self._slots:
            return 0
        unread = struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        free = self._slots - (unread + _PAGE - 1) // _PAGE - 1
        return free * _PAGE if free > 0 else 0

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def pipe_writer(fd: int) -> PipeWriter | None:
    """A PipeWriter for a pipe or socket, None for a file or a device."""
    kind = _kind(fd)
    return PipeWriter(fd, kind) if kind else None


def write_all(writer: PipeWriter, data) -> None:
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            with view[done:] as part:
                done += writer.write(part)


class PolledReader:
    """Buffered reads from a pipe (lines and exact counts) that a signal always ends."""

    def __init__(self, fd: int):
        self.fd = fd
        self._poll = read_waiter(fd)          # None: a file, whose reads do not wait
        self._buf = bytearray()

    def _fill(self) -> bool:
        if self._poll is not None:
            wait_readable(self._poll)
        chunk = os.read(self.fd, 65536)
        self._buf += chunk
        return bool(chunk)

    def readline(self, limit: int = 65536) -> bytes:
        """A line with its newline; what there is at end of input (maybe b"")."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0 or len(self._buf) >= limit or not self._fill():
                break
        end = self._buf.find(b"\n")
        n = min(end + 1 if end >= 0 else len(self._buf), limit)
        line = bytes(self._buf[:n])
        del self._buf[:n]
        return line

    def read(self, n: int) -> bytes:
        """``n`` bytes, fewer only at end of input."""
        while len(self._buf) < n and self._fill():
            pass
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data
