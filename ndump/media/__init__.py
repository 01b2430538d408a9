"""Media: image files, pipes, tape drives and remote files/tapes over rmt.

``open_output(spec, settings)`` / ``open_input(spec, settings)`` parse a -f
argument and pick the class; ``volume_name(spec, n, multi)`` gives -M names.
Media move opaque records and know nothing of headers.
"""
from __future__ import annotations

import os
import stat

from ndump.errors import StartupError
from ndump.media.base import EndOfMedia, Input, Output
from ndump.media.file import FileInput, FileOutput
from ndump.media.pipe import stdin_input, stdout_output
from ndump.media.rmt import RemoteDrive, parse_remote
from ndump.media.tape import LocalDrive, TapeInput, TapeOutput, is_tape_device
from ndump.settings import Settings

__all__ = ["EndOfMedia", "Input", "Output", "FileInput", "FileOutput", "TapeInput", "TapeOutput",
           "check_output", "open_input", "open_output", "volume_name", "parse_remote"]


def volume_name(spec: str, volume: int, multi: bool) -> str:
    """-M: PREFIX001, PREFIX002, ... ; otherwise the same name every volume."""
    return f"{spec}{volume:03d}" if multi else spec


def check_output(spec: str) -> None:
    """Raise StartupError now where ``open_output`` would refuse ``spec`` later,
    as far as can be told without opening it (opening would truncate a file, and
    block on a FIFO until its reader comes)."""
    if spec == "-" or parse_remote(spec) is not None or is_tape_device(spec):
        return
    if spec.startswith("/dev/") and not os.path.exists(spec) and _in_device_directory(spec):
        raise StartupError(f"cannot open {spec}: no such device")
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


def open_output(spec: str, settings: Settings | None = None) -> Output:
    settings = settings or Settings()
    if spec == "-":
        return stdout_output()
    if parse_remote(spec) is not None:
        return TapeOutput(RemoteDrive(spec, settings, write=True))
    if is_tape_device(spec):
        return TapeOutput(LocalDrive(spec, write=True))
    if spec.startswith("/dev/") and not os.path.exists(spec) and _in_device_directory(spec):
        # never leave a dump as a plain file in /dev when the drive is missing
        raise StartupError(f"cannot open {spec}: no such device")
    return FileOutput(spec)


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
    if spec.startswith("/dev/") and not os.path.exists(spec):
        raise StartupError(f"cannot open {spec}: no such device")     # dump's words, too
    if skip_files:
        from ndump.errors import UsageError
        raise UsageError(f"-s needs a tape; {spec} is a file")
    return FileInput(spec)
