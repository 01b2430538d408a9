"""Asking the operator (classic: dump/optr.c query()).

In order: a -F script decides (exit 0 go on, 1 ask, anything else abort); else a
question on /dev/tty; else — cron, or -q — the run aborts with a message that
says what was needed.  Nothing here ever blocks without a terminal.
"""
from __future__ import annotations

import os

from ndump.errors import OperatorAbort
from ndump.settings import Settings


class Operator:
    def __init__(self, settings: Settings, *, script: str | None = None, quiet: bool = False,
                 prefix: str = "DUMP"):
        self.settings = settings
        self.script = script
        self.quiet = quiet
        self.prefix = prefix

    def run_script(self, *args: str) -> int | None:
        """Run the -F script with ``args``; its exit status, or None without one."""
        if not self.script:
            return None
        import subprocess          # only with a -F script
        try:
            proc = subprocess.run([self.script, *args], stdin=subprocess.DEVNULL, timeout=None)
        except OSError as e:
            raise OperatorAbort(f"cannot run {self.script}: {e.strerror.lower()}") from None
        return proc.returncode

    def confirm(self, question: str, need: str, notice: str = "") -> None:
        """Ask a yes/no question on the terminal (after ``notice``, a line of its
        own); 'no', no terminal or -q abort."""
        if self.quiet or not self.settings.has_tty:
            raise OperatorAbort(f"{need}, but there is no operator to ask (no terminal"
                                " or -q); use -F SCRIPT to automate it")
        first = f"{self.prefix}: {notice}\n" if notice else ""
        answer = self.ask(f"{question} (\"yes\" or \"no\") ", before=first)
        while answer not in ("yes", "no"):
            answer = self.ask("\"yes\" or \"no\"? ")
        if answer == "no":
            raise OperatorAbort(f"{need}: the operator said no")

    def ask(self, question: str, before: str = "") -> str:
        """One line from /dev/tty, after writing ``question`` there.  Plain reads
        and writes on the descriptor: a terminal cannot seek, so no buffered file."""
        try:
            fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            raise OperatorAbort(f"cannot ask the operator: no terminal ({question.strip()})") from None
        try:
            _write_all(fd, f"{before}{self.prefix}: {question}".encode("utf-8", "replace"))
            line = _read_line(fd)
        except OSError as e:
            raise OperatorAbort(f"cannot ask the operator: {e.strerror.lower()}") from None
        finally:
            os.close(fd)
        if line is None:
            raise OperatorAbort("the operator closed the terminal")
        return line.decode("utf-8", "replace").strip()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _read_line(fd: int) -> bytes | None:
    """Bytes up to a newline (a terminal in canonical mode hands over one line
    per read); None at end of file before any byte."""
    got = b""
    while not got.endswith(b"\n"):
        chunk = os.read(fd, 1024)
        if not chunk:
            return got or None
        got += chunk
    return got
