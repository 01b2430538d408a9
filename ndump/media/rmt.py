"""The rmt remote-tape protocol (FORMAT.md §10; classic: common/dumprmt.c).

``[user@]host:path`` starts ``$RSH host -l user $RMT`` and speaks rmt over its
standard input and output: O(pen), W(rite), R(ead), I(octl), C(lose).
"""
from __future__ import annotations

import os
import re

from ndump.errors import MediaError, StartupError
from ndump.media.tape import MT_ST_BLKSIZE_MASK
from ndump.media.waits import PipeWriter, PolledReader, write_all
from ndump.settings import Settings

_USER = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_LINE = 63           # Debian's rmt reads request lines into 64 bytes


def parse_remote(spec: str) -> tuple[str | None, str, str] | None:
    """'[user@]host:path' -> (user, host, path); None for a local name."""
    colon = spec.find(":")
    if colon <= 0 or "/" in spec[:colon]:
        return None
    userhost, path = spec[:colon], spec[colon + 1:]
    user, _, host = userhost.rpartition("@")
    if not host or not path:
        raise StartupError(f"bad remote name {spec!r}: use [user@]host:path")
    if user and not _USER.match(user):
        raise StartupError(f"invalid user name {user!r} in {spec!r}")
    return user or None, host, path


def check_remote(spec: str, settings: Settings) -> None:
    """Raise StartupError now where reaching ``spec`` would fail later: start $RSH,
    have rmt answer once, and hang up (no connection is held while a dump walks its
    tree; the remote file or drive itself is opened only when writing starts)."""
    RemoteDrive(spec, settings, write=None).close()


class RemoteDrive:
    """A file or tape on another host, through rmt."""

    def __init__(self, spec: str, settings: Settings, write: bool | None):
        """``write`` None: only reach rmt (check_remote)."""
        user, host, path = parse_remote(spec)
        if len(path) > MAX_LINE - 1:
            raise StartupError(f"remote path {path!r} is longer than {MAX_LINE - 1} characters,"
                               " which rmt cannot take")
        import getpass                     # only for a remote drive: not at start-up
        import subprocess
        import tempfile
        self.name = spec
        self.rsh = settings.rsh
        argv = [settings.rsh, host, "-l", user or getpass.getuser(), settings.rmt]
        # what $RSH says (unknown host, refused key) is shown when the connection fails
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr)
        except OSError as e:
            self._stderr.close()
            raise StartupError(f"cannot start {settings.rsh} for {spec}: {e.strerror.lower()}") from None
        # rmt's pipes through waits.py: a signal ends a wait on a stalled connection
        self._out = PipeWriter(self.proc.stdin.fileno(), "fifo")
        self._in = PolledReader(self.proc.stdout.fileno())
        mode = "1 O_WRONLY|O_CREAT|O_TRUNC" if write else "0 O_RDONLY"
        try:
            if write is None:
                self._answers()
            else:
                self._call(f"O{path}\n{mode}\n".encode())
        except MediaError as e:
            self.proc.kill()
            self.proc.wait()
            self._stderr.close()
            raise StartupError(f"cannot open {spec}: {e}") from None

    def _answers(self) -> None:
        """rmt is there: it answers a close with nothing open (an error reply will do)."""
        try:
            self._call_raw(b"C\n")
        except OSError:
            pass

    def _lost(self) -> MediaError:
        """The connection is gone: say what $RSH said and how it ended."""
        import subprocess
        try:
            status = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            status = None
        self._stderr.seek(0)
        said = self._stderr.read()[-2000:].decode("utf-8", "replace")
        said = "; ".join(line.strip() for line in said.splitlines() if line.strip())
        how = f"{self.rsh} exited with status {status}" if status else ""
        detail = ": ".join(x for x in (how, said) if x)
        return MediaError(f"lost connection to rmt for {self.name}" + (f" ({detail})" if detail else ""))

    def _reply(self) -> int:
        line = self._in.readline()
        if not line:
            raise self._lost()
        kind, value = line[:1], line[1:].strip()
        if kind == b"A":
            return int(value or b"0")
        if kind in (b"E", b"F"):
            msg = self._in.readline().decode("utf-8", "replace").strip()
            code = int(value or b"0")
            raise OSError(code, msg or os.strerror(code))
        raise MediaError(f"rmt protocol error from {self.name}: {line[:40]!r}")

    def _call(self, request: bytes, payload=None) -> int:
        try:
            return self._call_raw(request, payload)
        except OSError as e:
            raise MediaError((e.strerror or str(e)).lower()) from None

    def _call_raw(self, request: bytes, payload=None) -> int:
        """A request and its reply; an error reply raises OSError."""
        self._request(request)
        if payload is not None:
            self._request(payload)
        return self._reply()

    def write_record(self, data) -> int:
        return self._call_raw(b"W%d\n" % len(data), data)

    def _request(self, request: bytes) -> None:
        try:
            write_all(self._out, request)
        except BrokenPipeError:
            raise self._lost() from None

    def read_record(self, size: int) -> bytes:
        self._request(b"R%d\n" % size)
        n = self._reply()
        data = self._in.read(n) if n else b""
        if len(data) != n:
            raise self._lost()
        return data

    def op(self, op: int, count: int) -> None:
        self._request(b"I%d\n%d\n" % (op, count))
        self._reply()

    def block_size(self) -> int | None:
        """mt_dsreg's block size through rmt's extended status request ``sD`` (the rmt
        of Linux dump answers it; another rmt may not, then None)."""
        try:
            return self._call(b"sD") & MT_ST_BLKSIZE_MASK
        except MediaError:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call(b"C\n")
            except (OSError, MediaError):
                pass
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait(timeout=30)
        self._stderr.close()
