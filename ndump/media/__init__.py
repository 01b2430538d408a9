"""Media: image files, pipes (tapes and rmt come with the media issue).

``open_output(spec)`` / ``open_input(spec)`` parse a -f argument and pick the class.
"""
from __future__ import annotations

from ndump.media.base import EndOfMedia, Input, Output
from ndump.media.file import FileInput, FileOutput
from ndump.media.pipe import stdin_input, stdout_output

__all__ = ["EndOfMedia", "Input", "Output", "FileInput", "FileOutput", "open_input", "open_output"]


def open_output(spec: str) -> Output:
    if spec == "-":
        return stdout_output()
    return FileOutput(spec)


def open_input(spec: str) -> Input:
    if spec == "-":
        return stdin_input()
    return FileInput(spec)
