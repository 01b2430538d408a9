"""Exit statuses and the exception hierarchy (classic: dump.h X_* codes).

Only ``ndump.cli.main`` turns these into process exit codes.  Per-file problems
are never raised out of an engine: they are ``FileProblem`` records.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0        # X_FINOK
    STARTUP = 1   # X_STARTUP: usage or start-up error, nothing written
    PARTIAL = 2   # the run completed, some files were not dumped/restored
    ABORTED = 3   # X_ABORT: media, space, operator, signal


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A file that could not be dumped or restored; the run goes on."""
    path: str
    reason: str


class NdumpError(Exception):
    exit_status = ExitStatus.STARTUP


class UsageError(NdumpError):
    """Bad option or option combination."""


class StartupError(NdumpError):
    """Cannot start: nothing has been written."""


class NotADumpImageError(StartupError):
    """The input does not start with a dump volume header."""


class NoSpaceError(StartupError):
    """The restore target lacks the room or inodes the dump needs."""


class SessionLimitError(StartupError):
    """Too many dump/restore sessions are running."""


class SnapshotError(StartupError):
    """A snapshot could not be taken or found."""


class BadBlockingFactorError(StartupError):
    """The record size on the medium does not match what was asked."""


class AbortError(NdumpError):
    exit_status = ExitStatus.ABORTED


class RunEndingError(AbortError):
    """Ends a run part-way, the way a tape that ends early does: the engine stops
    reading, reports what it did not do and finishes what it can (a restore sets
    its directories' modes).  Operator aborts and signals are not among them."""


class MediaError(RunEndingError):
    """The medium failed (I/O error, unexpected end)."""


class OutOfSpaceError(RunEndingError):
    """The restore target ran out of space or inodes (with --force)."""


class OperatorAbort(AbortError):
    """The operator, or the lack of one, ended the run."""


class Interrupted(AbortError):
    """A signal ended the run."""

    def __init__(self, signo: int):
        super().__init__(f"interrupted by signal {signo}")
        self.signo = signo


@dataclass
class Outcome:
    """What an engine run produced; cli turns it into the exit status."""
    problems: list[FileProblem]
    aborted: str | None = None          # reason, when the run stopped early
    estimate: int | None = None         # dump -S: the bytes the dump would take

    @property
    def exit_status(self) -> ExitStatus:
        if self.aborted:
            return ExitStatus.ABORTED
        return ExitStatus.PARTIAL if self.problems else ExitStatus.OK


def reason(e: OSError) -> str:
    """An OSError as a message's reason: the system's words, lower case."""
    return os.strerror(e.errno).lower() if e.errno else str(e)
