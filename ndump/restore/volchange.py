"""Asking for the next volume of a dump read without -M (classic: restore/tape.c
getvol(); FORMAT §7.3).

When a volume ends before the dump does, the medium is closed and the next
volume is asked for: the -F script (called with the device and the volume
number: exit 0 go on, 1 ask the operator, anything else abort), else the
operator on /dev/tty ("none" gives up, an empty line keeps the device, anything
else names another one), else (cron, -q) the restore aborts naming the volume.

Each volume offered is checked before the dump reader sees it: a valid
TS_TAPE header with the wanted volume number and this dump's dates.  A wrong
volume is reported, put back, and asked for again: only the operator (or the
script) ends the restore.
"""
from __future__ import annotations

import time

from ndump.errors import MediaError, NdumpError, OperatorAbort
from ndump.format import TP_BSIZE, TS_TAPE, HeaderError, unpack_header
from ndump.media import open_input
from ndump.operator import Operator

MAX_TRIES = 20          # wrong volumes offered in a row before giving up


class VolumeRequest:
    """The ``next_volume`` of a DumpInput whose volumes share one device name."""

    def __init__(self, dump, settings, reporter, *, script: str | None = None,
                 quiet: bool = False):
        self.dump = dump
        self.settings = settings
        self.reporter = reporter
        self.script = script
        self.device = dump.spec
        self.operator = Operator(settings, script=script, quiet=quiet, prefix="RESTORE")
        self.current = dump.medium

    def __call__(self, number: int):
        """read(n) of volume ``number``; raises MediaError when nobody can provide it."""
        if self.device == "-":
            self.reporter.error(f"volume {number} is needed, but standard input cannot change"
                                " volumes")
            return None
        self._close_current()
        try:
            return self._get(number)
        except OperatorAbort as e:
            raise MediaError(f"volume {number} is needed: {e}") from None

    def _get(self, number: int):
        for _ in range(MAX_TRIES):
            self._ask(number)
            medium = self._open(number)
            if medium is None:
                continue
            read = self._check(medium, number)
            if read is not None:
                self.current = medium
                self.dump._later_media.append(medium)
                self.reporter.info(f"reading volume {number} from {self.device}")
                return read
            medium.close()
        raise OperatorAbort(f"{MAX_TRIES} wrong volumes offered in a row; giving up")

    def _close_current(self) -> None:
        """Free the drive before anyone changes the medium in it."""
        try:
            self.current.close()
        except (OSError, NdumpError):
            pass

    # -- asking ------------------------------------------------------------------
    def _ask(self, number: int) -> None:
        status = self.operator.run_script(self.device, str(number))
        if status == 0:
            return
        if status is not None and status != 1:
            raise OperatorAbort(f"{self.script} exited {status}: restore aborted at volume {number}")
        need = f"volume #{number} of the dump must be mounted on {self.device}"
        if self.operator.quiet or not self.settings.has_tty:
            raise OperatorAbort(f"{need}, but there is no operator to ask (no terminal"
                                " or -q); use -F SCRIPT to automate it")
        answer = self.operator.ask(f"Mount tape volume {number}; enter \"none\" if there are no"
                                   f" more tapes, otherwise the tape name (default: {self.device}): ")
        if answer == "none":
            raise OperatorAbort(f"{need}: the operator said there are no more tapes")
        if answer:
            self.device = answer

    def _open(self, number: int):
        try:
            return open_input(self.device, self.settings, blocksize=self.dump.blocksize)
        except NdumpError as e:
            self.reporter.error(f"cannot open volume {number} on {self.device}: {e}")
            return None

    # -- checking ----------------------------------------------------------------
    def _check(self, medium, number: int):
        """A read() replaying the header when the volume is the right one, else None."""
        try:
            head = _read_exactly(medium.read, TP_BSIZE)
            h = unpack_header(head) if len(head) == TP_BSIZE else None
        except (HeaderError, OSError, NdumpError):
            h = None
        tape = self.dump.tape
        if h is None or h.type != TS_TAPE:
            why = "it does not start with a dump header"
        elif h.date != tape.date or h.ddate != tape.ddate:
            why = f"it belongs to the dump of {time.ctime(h.date)}, not this one of {time.ctime(tape.date)}"
        elif h.volume != number:
            why = f"wrong volume: wanted volume {number}, got volume {h.volume}"
        else:
            return _Replay(head, medium.read)
        self.reporter.error(f"the tape on {self.device} is not volume {number} of this dump: {why}")
        return None


class _Replay:
    """read(n) that first gives back the bytes already read for the check."""

    def __init__(self, head: bytes, read):
        self.head = head
        self.read = read

    def __call__(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.read(n)


def _read_exactly(read, n: int) -> bytes:
    parts = []
    while n > 0:
        chunk = read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def changer_for(dump, options, settings, reporter) -> VolumeRequest | None:
    """Tapes (and any input given -F) ask for their next volume; -M opens files itself,
    and a plain image file that ends early is just truncated."""
    if dump.multi or dump.spec == "-":
        return None
    if not (getattr(dump.medium, "is_tape", False) or options.script):
        return None
    return VolumeRequest(dump, settings, reporter, script=options.script, quiet=options.quiet)
