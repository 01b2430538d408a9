"""What every medium offers (classic: the device half of dump/tape.c and
restore/tape.c).  Media move opaque records; they never look inside them."""
from __future__ import annotations

from typing import Protocol

from ndump.errors import MediaError


class EndOfMedia(MediaError):
    """The medium is full (ENOSPC, end of tape): the next volume is needed.

    ``written`` is how many bytes of the failed write() reached the medium.
    """

    def __init__(self, message: str, written: int = 0):
        super().__init__(message)
        self.written = written


class Output(Protocol):
    name: str
    is_tape: bool
    seekable: bool

    def write(self, data: bytes | memoryview) -> None: ...
    def close(self) -> None: ...


class Input(Protocol):
    name: str
    is_tape: bool

    def read(self, n: int) -> bytes: ...
    def close(self) -> None: ...
