"""Media: image files, pipes, tape drives and remote files/tapes over rmt.

``open_output(spec, settings)`` / ``open_input(spec, settings)`` parse a -f
argument and pick the class; ``volume_name(spec, n, multi)`` gives -M names.
Media move opaque records and know nothing of headers.
"""
from __future__ import annotations

import os
import stat

from ndump.errors import StartupError, UsageError, reason
from ndump.media.base import EndOfMedia, Input, Output
from ndump.media.file import FileInput, FileOutput
from ndump.media.pipe import stdin_input, stdout_output
from ndump.media.rmt import RemoteDrive, check_remote, parse_remote
from ndump.media.tape import LocalDrive, TapeInput, TapeOutput, check_drive, is_tape_device
from ndump.settings import Settings

__all__ = ["EndOfMedia", "Input", "Output", "FileInput", "FileOutput", "TapeInput", "TapeOutput",
           "check_output", "open_input", "open_output", "volume_name", "parse_remote"]


def volume_name(spec: str, volume: int, multi: bool) -> str:
    """-M: PREFIX001, PREFIX002, ... ; otherwise the same name every volume."""
    return f"{spec}{volume:03d}" if multi else spec


def check_output(spec: str, settings: Settings | None = None) -> None:
    """Raise StartupError now where ``open_output`` would refuse ``spec`` later,
    as far as can be told without opening it (opening would truncate a file, and
    block on a FIFO until its reader comes)."""
    if spec == "-":
        return
    if parse_remote(spec) is not None:
        check_remote(spec, settings or Settings())
        return
    if is_tape_device(spec):
        check_drive(spec, write=True)
        return
    _refuse_in_dev(spec)
    path = os.path.abspath(spec)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise StartupError(f"cannot open {spec}: no such file or directory") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StartupError(f"cannot open {spec}: permission denied") from None
        return
    except OSError as e:
        raise StartupError(f"cannot open {spec}: {os.strerror(e.errno).lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        raise StartupError(f"cannot open {spec}: is a directory")
    if not os.access(path, os.W_OK):
        raise StartupError(f"cannot open {spec}: permission denied")


def open_output(spec: str, settings: Settings | None = None, *,
                resume_at: int | None = None) -> Output:
    """``resume_at``: continue an image file from that byte (see FileOutput)."""
    settings = settings or Settings()
    if resume_at is not None:
        _refuse_in_dev(spec)
        return FileOutput(spec, resume_at=resume_at)
    if spec == "-":
        return stdout_output()
    if parse_remote(spec) is not None:
        return TapeOutput(RemoteDrive(spec, settings, write=True))
    if is_tape_device(spec):
        return TapeOutput(LocalDrive(spec, write=True))
    _refuse_in_dev(spec)
    return FileOutput(spec)


def _refuse_in_dev(spec: str) -> None:
    """Never leave a dump as a plain file in /dev when the drive is missing, nor write
    over one that an earlier run left there in its place (/dev/shm is a tmpfs: fine)."""
    if not spec.startswith("/dev/"):
        return
    try:
        st = os.stat(spec)
    except OSError:
        if _in_device_directory(spec):
            raise StartupError(f"cannot open {spec}: no such device") from None
        return
    if stat.S_ISREG(st.st_mode) and _on_dev_filesystem(st):
        raise StartupError(f"cannot open {spec}: not a device but a regular file in /dev"
                           " (left by a run without the drive?); remove it, or name the drive")


def _on_dev_filesystem(st: os.stat_result) -> bool:
    try:
        return st.st_dev == os.stat("/dev").st_dev
    except OSError:
        return False


def _in_device_directory(path: str) -> bool:
    """Whether ``path`` would be created on /dev's own filesystem (devtmpfs),
    not on one mounted under it such as /dev/shm (a tmpfs)."""
    try:
        parent = os.stat(os.path.dirname(os.path.abspath(path)))
        return parent.st_dev == os.stat("/dev").st_dev
    except OSError:
        return True                           # no such directory: FileOutput would fail too


def open_input(spec: str, settings: Settings | None = None, *, blocksize: int | None = None,
               skip_files: int = 0) -> Input:
    """``skip_files``: restore -s N skips N-1 dump files on a tape first."""
    settings = settings or Settings()
    if spec == "-":
        return stdin_input()
    if parse_remote(spec) is not None:
        return TapeInput(RemoteDrive(spec, settings, write=False), blocksize=blocksize,
                         skip_files=skip_files)
    if is_tape_device(spec):
        return TapeInput(LocalDrive(spec, write=False), blocksize=blocksize, skip_files=skip_files)
    try:
        st = os.stat(spec)
    except OSError as e:
        # a missing drive is not "a file": say what is missing, in dump's words for /dev
        why = "no such device" if spec.startswith("/dev/") else reason(e)
        raise StartupError(f"cannot open {spec}: {why}") from None
    if skip_files:
        kind = "a regular file" if stat.S_ISREG(st.st_mode) else \
            "a directory" if stat.S_ISDIR(st.st_mode) else "not a tape drive"
        raise UsageError(f"-s needs a tape drive; {spec} is {kind}")
    return FileInput(spec)
