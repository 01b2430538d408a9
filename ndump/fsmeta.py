"""The OS side of file metadata: birth time (statx), extended attributes and
ACL xattrs (read), inode flags (FS_IOC_GETFLAGS/SETFLAGS).  Classic
counterparts: dump's use of libext2fs inode reads, restore's lsetflags().
Restore sets everything else through restore/target.py, which alone may
change the target (ARCHITECTURE.md, "Restore: containment by construction").
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from array import array

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
# flags chattr can set again (append-only, immutable, nodump, noatime, sync,
# dirsync, compress-hint, nocow, project-inherit, no-tail-merge, top-dir, ...)
SETTABLE_FLAGS = (0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010
                  | 0x00000020 | 0x00000040 | 0x00000080 | 0x00004000 | 0x00008000
                  | 0x00010000 | 0x00020000 | 0x00800000 | 0x20000000)
# immutable and append-only forbid writing: set them last
LOCKING_FLAGS = 0x00000010 | 0x00000020

_NOT_SUPPORTED = (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.EPERM)
# E2BIG is not among them: a name list over the kernel's 64 KiB (XATTR_LIST_MAX)
# cannot be read whole, and the caller must say so rather than see no attributes
_NO_XATTR = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA)


def get_flags(fd: int) -> int:
    """Inode flags of an open file; 0 where the filesystem has none."""
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8)
    except OSError as e:
        if e.errno in _NOT_SUPPORTED:
            return 0
        raise
    return int.from_bytes(buf[:4], "little")


def flag_getter():
    """get_flags for a caller that asks for many files in turn (the dump's Pass IV):
    one result buffer, reused, instead of a new one per call."""
    buf = array("I", [0, 0])
    ioctl = fcntl.ioctl

    def get(fd: int) -> int:
        buf[0] = 0
        try:
            ioctl(fd, FS_IOC_GETFLAGS, buf, True)
        except OSError as e:
            if e.errno in _NOT_SUPPORTED:
                return 0
            raise
        return buf[0]
    return get


def set_flags(fd: int, flags: int) -> None:
    """Set the settable inode flags; raises OSError when the filesystem refuses."""
    value = flags & SETTABLE_FLAGS
    current = get_flags(fd)
    if value == current & SETTABLE_FLAGS:
        return
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<l", _s32((current & ~SETTABLE_FLAGS) | value)) + b"\0" * 4)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def get_xattrs(target, *, follow: bool = False) -> list[tuple[str, bytes]]:
    """All extended attributes, ACLs included (as system.posix_acl_*), sorted."""
    if isinstance(target, int):
        follow = True          # an fd names the file itself
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as e:
        if e.errno in _NO_XATTR:
            return []
        raise
    if not names:
        return []
    out = []
    for name in sorted(names):
        try:
            out.append((name, os.getxattr(target, name, follow_symlinks=follow)))
        except OSError as e:
            if e.errno not in _NO_XATTR:
                raise
    return out


# -- statx for the birth time ------------------------------------------------
_STATX_BTIME = 0x800
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000


class _StatxTimestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("pad", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    _fields_ = [("stx_mask", ctypes.c_uint32), ("stx_blksize", ctypes.c_uint32),
                ("stx_attributes", ctypes.c_uint64), ("stx_nlink", ctypes.c_uint32),
                ("stx_uid", ctypes.c_uint32), ("stx_gid", ctypes.c_uint32),
                ("stx_mode", ctypes.c_uint16), ("pad1", ctypes.c_uint16),
                ("stx_ino", ctypes.c_uint64), ("stx_size", ctypes.c_uint64),
                ("stx_blocks", ctypes.c_uint64), ("stx_attributes_mask", ctypes.c_uint64),
                ("stx_atime", _StatxTimestamp), ("stx_btime", _StatxTimestamp),
                ("stx_ctime", _StatxTimestamp), ("stx_mtime", _StatxTimestamp),
                ("rest", ctypes.c_uint8 * 160)]


def _load_statx():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.statx
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_statx = _load_statx()
_STATX_ATTR_NODUMP = 0x40
_STATX_ATTR_MOUNT_ROOT = 0x2000


def _load_raw_statx():
    """statx without argument conversion (ints, bytes and a byref pass as they
    are): a third of the cost of the converting call, for the one made per file."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).statx
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    return fn


# the stat_result built from it has Linux CPython's 19 fields (10 in the tuple, then
# float times, ns times, st_blksize, st_blocks, st_rdev); elsewhere os.*stat is used
_raw_statx = _load_raw_statx() if os.stat_result.n_fields == 19 else None
_STATX_BASIC_STATS = 0x7FF
_STATX_ALL = _STATX_BASIC_STATS | _STATX_BTIME
# struct statx up to stx_dev_minor: mask, blksize, attributes, nlink, uid, gid,
# mode, (pad), ino, size, blocks, attributes_mask, then atime, btime, ctime,
# mtime (sec, nsec, pad), rdev major/minor, dev major/minor
_STATX_RAW = struct.Struct("<IIQIIIH2xQQQQqI4xqI4xqI4xqI4xIIII")
_NS = 1_000_000_000


class Statx:
    """statx(2) for what os.stat does not give: the birth time and the nodump
    attribute.  Each instance has its own result buffer (one per walker or
    writer; an instance is not for several threads at once)."""

    def __init__(self):
        self._buf = _Statx()
        self._ref = ctypes.byref(self._buf)

    def birth_time(self, fd: int | None = None, path: bytes | None = None, dir_fd: int = -100
                   ) -> tuple[int, int] | None:
        """(seconds, nanoseconds) of the file's birth, where the filesystem knows it."""
        if _statx is None:
            return None
        buf = self._buf
        if fd is not None:
            rc = _statx(fd, b"", _AT_EMPTY_PATH | _AT_SYMLINK_NOFOLLOW, _STATX_BTIME, ctypes.byref(buf))
        else:
            rc = _statx(dir_fd, path, _AT_SYMLINK_NOFOLLOW, _STATX_BTIME, ctypes.byref(buf))
        if rc != 0 or not buf.stx_mask & _STATX_BTIME:
            return None
        return buf.stx_btime.tv_sec, buf.stx_btime.tv_nsec

    def fstat(self, fd: int) -> tuple[os.stat_result, tuple[int, int] | None]:
        """os.fstat(fd) and the birth time (as birth_time gives it) in one statx
        call: the dump's per-file stat."""
        if _raw_statx is None or _raw_statx(fd, b"", _AT_EMPTY_PATH | _AT_SYMLINK_NOFOLLOW,
                                            _STATX_ALL, self._ref) != 0:
            return os.fstat(fd), self.birth_time(fd=fd)
        found = self._result()
        if found is None:
            return os.fstat(fd), self.birth_time(fd=fd)
        return found[0], found[1]

    def fstat_fields(self, fd: int) -> tuple | None:
        """The raw struct statx fields of an open file, as _STATX_RAW unpacks them
        (mask, blksize, attributes, nlink, uid, gid, mode, ino, size, blocks,
        attributes_mask, atime sec, ns, btime sec, ns, ctime sec, ns, mtime sec,
        ns, rdev major, minor, dev major, minor), None when statx cannot give every
        basic field (then use fstat).  The dump's per-file stat, without building
        an os.stat_result."""
        if _raw_statx is None or _raw_statx(fd, b"", _AT_EMPTY_PATH | _AT_SYMLINK_NOFOLLOW,
                                            _STATX_ALL, self._ref) != 0:
            return None
        found = _STATX_RAW.unpack_from(self._buf)
        return found if found[0] & _STATX_BASIC_STATS == _STATX_BASIC_STATS else None

    def lstat(self, name: bytes, dir_fd: int) -> tuple[os.stat_result, bool | None]:
        """os.lstat(name, dir_fd=dir_fd) and the nodump attribute (as
        nodump_attribute gives it) in one statx call: the walk's per-file stat.
        Raises OSError as os.lstat does."""
        if _raw_statx is None:
            return os.lstat(name, dir_fd=dir_fd), self.nodump_attribute(name, dir_fd)
        if _raw_statx(dir_fd, name, _AT_SYMLINK_NOFOLLOW, _STATX_BASIC_STATS, self._ref) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fsdecode(name))
        found = self._result()
        if found is None:
            return os.lstat(name, dir_fd=dir_fd), self.nodump_attribute(name, dir_fd)
        return found[0], found[2]

    def _result(self) -> tuple[os.stat_result, tuple[int, int] | None, bool | None] | None:
        """(stat, birth time, nodump attribute) of the last call; None when statx
        left out a basic field."""
        (mask, blksize, attrs, nlink, uid, gid, mode, ino, size, blocks, attrs_mask, asec, ans,
         bsec, bns, csec, cns, msec, mns, rmaj, rmin, dmaj, dmin) = _STATX_RAW.unpack_from(self._buf)
        if mask & _STATX_BASIC_STATS != _STATX_BASIC_STATS:
            return None
        st = os.stat_result((mode, ino, os.makedev(dmaj, dmin), nlink, uid, gid, size, asec, msec,
                             csec, asec + ans * 1e-9, msec + mns * 1e-9, csec + cns * 1e-9,
                             asec * _NS + ans, msec * _NS + mns, csec * _NS + cns, blksize, blocks,
                             os.makedev(rmaj, rmin)))
        return (st, (bsec, bns) if mask & _STATX_BTIME else None,
                bool(attrs & _STATX_ATTR_NODUMP) if attrs_mask & _STATX_ATTR_NODUMP else None)

    def nodump_attribute(self, path: bytes, dir_fd: int = -100) -> bool | None:
        """The nodump flag as statx reports it, without opening the file; None where
        the filesystem does not report it (then ask get_flags)."""
        if _statx is None:
            return None
        buf = self._buf
        if _statx(dir_fd, path, _AT_SYMLINK_NOFOLLOW, 0, ctypes.byref(buf)) != 0:
            return None
        if not buf.stx_attributes_mask & _STATX_ATTR_NODUMP:
            return None
        return bool(buf.stx_attributes & _STATX_ATTR_NODUMP)

    def mount_root(self, path: bytes, dir_fd: int = -100) -> bool:
        """Whether something is mounted on this name (Linux 5.8+ says so; a bind
        mount of the same filesystem has the same st_dev).  False where unknown."""
        if _statx is None:
            return False
        buf = self._buf
        if _statx(dir_fd, path, _AT_SYMLINK_NOFOLLOW, 0, ctypes.byref(buf)) != 0:
            return False
        return bool(buf.stx_attributes_mask & buf.stx_attributes & _STATX_ATTR_MOUNT_ROOT)


# struct statx as the walk reads it: mask, attributes, nlink, mode, ino, size,
# blocks, attributes_mask, ctime and mtime seconds, dev major and minor
_ENTRY_RAW = struct.Struct("<I4xQI8xH2xQQQQ16x16xq8xq8x8xII")


def entry_stat():
    """A function ``(name, dir_fd) -> (mode, ino, dev, nlink, size, blocks,
    mtime, ctime, nodump)``: os.lstat's fields (times in whole seconds) and the
    nodump attribute (as Statx.nodump_attribute gives it), from one statx call
    and no stat_result: the walk's per-entry stat.  Raises OSError as os.lstat
    does."""
    sx = Statx()

    def slow(name: bytes, dir_fd: int) -> tuple:
        st, nodump = sx.lstat(name, dir_fd)
        return (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_size, st.st_blocks,
                st[8], st[9], nodump)

    if _raw_statx is None:
        return slow
    buf = ctypes.create_string_buffer(256)
    ref, call, unpack, makedev = ctypes.byref(buf), _raw_statx, _ENTRY_RAW.unpack_from, os.makedev

    def fast(name: bytes, dir_fd: int) -> tuple:
        if call(dir_fd, name, _AT_SYMLINK_NOFOLLOW, _STATX_BASIC_STATS, ref):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fsdecode(name))
        mask, attrs, nlink, mode, ino, size, blocks, amask, ctime, mtime, dmaj, dmin = unpack(buf)
        if mask & _STATX_BASIC_STATS != _STATX_BASIC_STATS:
            return slow(name, dir_fd)
        return (mode, ino, makedev(dmaj, dmin), nlink, size, blocks, mtime, ctime,
                bool(attrs & _STATX_ATTR_NODUMP) if amask & _STATX_ATTR_NODUMP else None)

    return fast
