"""The inode inside a header, c_dinode (FORMAT.md §3).

Times are kept as whole seconds plus nanoseconds.  The classic fields carry
microseconds; the nanoseconds, the high halves of 64-bit seconds and the birth
time travel in the ndump extension of c_spare (see header.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from ndump.format.constants import S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG

NODUMP_FL = 0x00000040


@dataclass(frozen=True, slots=True)
class Inode:
    """FORMAT §3: what a dump records of one inode."""
    mode: int = 0
    nlink: int = 1
    size: int = 0
    uid: int = 0
    gid: int = 0
    atime: int = 0
    atime_ns: int = 0
    mtime: int = 0
    mtime_ns: int = 0
    ctime: int = 0
    ctime_ns: int = 0
    rdev: int = 0            # Linux dev_t (os.makedev)
    flags: int = 0           # FS_IOC_GETFLAGS bits
    blocks: int = 0
    gen: int = 0
    birth: tuple[int, int] | None = None   # (seconds, nanoseconds) when known

    @property
    def ftype(self) -> int:
        return self.mode & S_IFMT

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    @property
    def is_reg(self) -> bool:
        return self.mode & S_IFMT == S_IFREG

    @property
    def is_symlink(self) -> bool:
        return self.mode & S_IFMT == S_IFLNK

    @property
    def is_device(self) -> bool:
        return self.mode & S_IFMT in (S_IFCHR, S_IFBLK)

    @property
    def atime_total_ns(self) -> int:
        return self.atime * 1_000_000_000 + self.atime_ns

    @property
    def mtime_total_ns(self) -> int:
        return self.mtime * 1_000_000_000 + self.mtime_ns


def encode_rdev(rdev: int) -> int:
    """Linux 32-bit dev encoding that stock restore passes to mknod (FORMAT §3)."""
    major = (rdev >> 8) & 0xFFF | ((rdev >> 32) & ~0xFFF)
    minor = (rdev & 0xFF) | ((rdev >> 12) & ~0xFF)
    return ((minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)) & 0xFFFFFFFF


def decode_rdev(db0: int, db1: int) -> int:
    """Inverse of encode_rdev, also reading ext4's new-style number in di_db[1]."""
    raw = db0 & 0xFFFFFFFF
    if raw == 0 and db1:
        raw = db1 & 0xFFFFFFFF
    major = (raw >> 8) & 0xFFF
    minor = (raw & 0xFF) | ((raw >> 12) & 0xFFF00)
    return _makedev(major, minor)


def _makedev(major: int, minor: int) -> int:
    # glibc's gnu_dev_makedev, so the value equals os.makedev(major, minor)
    return ((minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & ~0xFF) << 12)
            | ((major & ~0xFFF) << 32))


def split_seconds(sec: int) -> tuple[int, int]:
    """64-bit seconds -> (signed low 32 bits for the classic field, high part).

    A reader without the extension sees the low part alone, so the high part
    is zero for every date between 1901 and 2038.
    """
    low = sec & 0xFFFFFFFF
    if low >= 0x80000000:
        low -= 0x100000000
    return low, (sec - low) >> 32


def symlink_payload(target: bytes) -> bytes:
    """Symlink data as stock restore wants it: target, NUL, zero padding."""
    data = target + b"\0"
    return data + bytes(-len(data) % 1024)

