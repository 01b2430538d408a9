"""Directories of the dumped tree, opened by descriptor (classic dump reads the
block device and never meets this problem).

Every directory is opened one name at a time from a descriptor of the dumped
directory (openat with O_NOFOLLOW), so depth and path length do not matter
(PATH_MAX is never involved), nothing is resolved relative to the working
directory, and a directory renamed or replaced by a symbolic link during the
dump is not followed elsewhere.  The chain of the last directory opened is
kept, so a walk in tree order opens each directory about once.
"""
from __future__ import annotations

import os

# a file to read: never follow a symbolic link, never block on a FIFO or a device
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeFds:
    def __init__(self, root: bytes):
        # the root itself may be given through a symbolic link
        self.root_fd = os.open(root, DIR_FLAGS & ~os.O_NOFOLLOW)
        self._names: list[bytes] = []
        self._fds: list[int] = [self.root_fd]

    def open(self, relpath: bytes) -> int:
        """A descriptor of the directory at ``relpath`` (b"" for the root), valid
        until the next ``open`` or ``close``; raises OSError."""
        parts = relpath.split(b"/") if relpath else []
        names, fds = self._names, self._fds
        common = 0
        limit = min(len(names), len(parts))
        while common < limit and names[common] == parts[common]:
            common += 1
        while len(names) > common:
            names.pop()
            os.close(fds.pop())
        for part in parts[common:]:
            fd = os.open(part, DIR_FLAGS, dir_fd=fds[-1])
            fds.append(fd)
            names.append(part)
        return fds[-1]

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.pop())
        self._names.clear()

    def __enter__(self) -> "TreeFds":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def proc_path(dir_fd: int, name: bytes) -> bytes:
    """A short path naming ``name`` in the directory ``dir_fd``, for the calls that
    take no directory descriptor (l*xattr): the final name is still not followed."""
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)
