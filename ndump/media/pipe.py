"""Standard output and standard input ("-f -")."""
from __future__ import annotations

import sys

from ndump.media.file import FileInput, FileOutput


def stdout_output() -> FileOutput:
    sys.stdout.flush()
    out = FileOutput("standard output", fd=sys.stdout.fileno())
    out.close = lambda: None   # the process owns stdout
    return out


def stdin_input() -> FileInput:
    inp = FileInput("standard input", fd=sys.stdin.fileno())
    inp.close = lambda: None
    return inp
