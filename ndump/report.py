"""Messages and progress (classic: dump/optr.c msg(), timeest()).

Engines never print; they call a Reporter.  ``make_reporter`` picks a tqdm bar
for a TTY, classic ``DUMP: 42.10% done, finished in 0:03`` lines every
``progress_interval`` seconds otherwise, or nothing with -q.
"""
from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from ndump.errors import FileProblem
from ndump.settings import Settings


# control characters in a message (a name from the tree or from a hostile dump) are
# shown escaped: a newline must not split the message's one line, and an escape
# sequence must not reach the terminal
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROLS.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})


class Reporter:
    """Plain reporter: one-line messages with the command prefix on stderr."""

    def __init__(self, prefix: str, *, verbosity: int = 0, quiet: bool = False,
                 stream: TextIO | None = None, interval: float = 300.0, clock=time.monotonic):
        self.prefix = prefix
        self.verbosity = verbosity
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.problems: list[FileProblem] = []
        self.facts: dict[str, object] = {}     # machine-readable facts for --json
        self._warned: set[str] = set()
        self._interval = interval
        self._clock = clock
        self._total = 0
        self._started = 0.0
        self._last = 0.0

    # -- lines -------------------------------------------------------------
    def _line(self, text: str) -> None:
        self.stream.write(f"{self.prefix}: {text.translate(_CONTROLS)}\n")
        self.stream.flush()

    def info(self, text: str) -> None:
        if not self.quiet:
            self._line(text)

    def verbose(self, text: str, level: int = 1) -> None:
        if self.verbosity >= level:
            self._line(text)

    def warning(self, text: str, once: str | None = None) -> None:
        if once is not None:
            if once in self._warned:
                return
            self._warned.add(once)
        self._line(f"warning: {text}")

    def error(self, text: str) -> None:
        self._line(text)

    def file_problem(self, path: str, reason: str) -> None:
        self.problems.append(FileProblem(path, reason))
        self._line(f"{path}: {reason}")

    def fact(self, key: str, value: object) -> None:
        """Record a fact about the run (level, dates, bytes...) for ``--json``."""
        self.facts[key] = value

    def phase(self, number: str, title: str) -> None:
        self.info(f"{title} (Pass {number})")

    # -- progress ----------------------------------------------------------
    def progress_start(self, total: int, unit: str = "B") -> None:
        self._total = max(total, 1)
        self._started = self._last = self._clock()

    def progress(self, done: int, volume: int = 1) -> None:
        if self.quiet:
            return
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        pct = min(100.0, 100.0 * done / self._total)
        elapsed = now - self._started
        # the total is an estimate: past it, the end is near, never in the past
        left = max(0.0, elapsed * (self._total - done) / done) if done else 0.0
        self._line(f"{pct:.2f}% done, finished in {int(left // 3600)}:{int(left % 3600 // 60):02d}")

    def progress_end(self) -> None:
        pass


class TtyReporter(Reporter):
    """A tqdm bar on stderr: bytes, rate, ETA, volume."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bar = None

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(f"{self.prefix}: {text.translate(_CONTROLS)}", file=self.stream)
        else:
            super()._line(text)

    def progress_start(self, total: int, unit: str = "B") -> None:
        from tqdm import tqdm
        super().progress_start(total, unit)
        try:
            width, rows = os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            width = rows = 0
        # a terminal that reports no size (a serial console, a bare pty) would get no
        # bar at all from tqdm (it hides bars below the last row): assume 80x24
        size = {"dynamic_ncols": True} if width and rows else {"ncols": 80, "nrows": 24}
        self._bar = tqdm(total=total, unit=unit, unit_scale=True, unit_divisor=1024,
                         file=self.stream, leave=False, **size)
        self._done = 0

    def progress(self, done: int, volume: int = 1) -> None:
        if self._bar is None:
            return
        self._bar.set_postfix_str(f"vol {volume}", refresh=False)
        self._bar.update(done - self._done)
        self._done = done

    def progress_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def make_reporter(prefix: str, settings: Settings, *, verbosity: int = 0,
                  quiet: bool = False) -> Reporter:
    if settings.stderr_is_tty and not quiet:
        return TtyReporter(prefix, verbosity=verbosity, quiet=quiet,
                           interval=settings.progress_interval)
    return Reporter(prefix, verbosity=verbosity, quiet=quiet, interval=settings.progress_interval)
