"""The dump's one-call stats (fsmeta.Statx.fstat and .lstat, issue 16): the same
answers as os.fstat/os.lstat plus birth_time/nodump_attribute, which they replace
on the per-file path."""
from __future__ import annotations

import os
import subprocess

import pytest

from ndump.fsmeta import Statx, entry_stat

FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime",
          "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blksize",
          "st_blocks", "st_rdev")


def _same(a: os.stat_result, b: os.stat_result) -> None:
    assert tuple(a) == tuple(b)
    assert {f: getattr(a, f) for f in FIELDS} == {f: getattr(b, f) for f in FIELDS}


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "empty").touch()
    (tmp_path / "data").write_bytes(b"x" * 10000)
    os.truncate(tmp_path / "data", 1 << 33)            # sparse, over 32 bits
    os.utime(tmp_path / "data", ns=(-1_500_000_000_123, 4_102_444_800_987_654_321))
    (tmp_path / "dir").mkdir()
    os.symlink("nowhere", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "skip").touch()
    flagged = subprocess.run(["chattr", "+d", str(tmp_path / "skip")],
                             capture_output=True).returncode == 0
    return tmp_path, flagged


def test_lstat_equals_os_lstat_and_nodump_attribute(tree):
    root, flagged = tree
    sx = Statx()
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in (b"empty", b"data", b"dir", b"link", b"fifo", b"skip", b"."):
            st, nodump = sx.lstat(name, dfd)
            _same(st, os.lstat(name, dir_fd=dfd))
            assert nodump == sx.nodump_attribute(name, dfd)
        if flagged:
            assert sx.lstat(b"skip", dfd)[1] is True and sx.lstat(b"empty", dfd)[1] is False
        with pytest.raises(FileNotFoundError):
            sx.lstat(b"missing", dfd)
    finally:
        os.close(dfd)


def test_entry_stat_gives_the_walks_fields_of_os_lstat_and_nodump_attribute(tree):
    root, flagged = tree
    sx, stat_entry = Statx(), entry_stat()
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in (b"empty", b"data", b"dir", b"link", b"fifo", b"skip", b"."):
            st = os.lstat(name, dir_fd=dfd)
            assert stat_entry(name, dfd) == (st.st_mode, st.st_ino, st.st_dev, st.st_nlink,
                                             st.st_size, st.st_blocks, int(st.st_mtime_ns // 10**9),
                                             int(st.st_ctime_ns // 10**9),
                                             sx.nodump_attribute(name, dfd))
        if flagged:
            assert stat_entry(b"skip", dfd)[8] is True and stat_entry(b"empty", dfd)[8] is False
        with pytest.raises(FileNotFoundError):
            stat_entry(b"missing", dfd)
    finally:
        os.close(dfd)


def test_fstat_equals_os_fstat_and_birth_time(tree):
    root, _ = tree
    sx = Statx()
    for path in (root / "empty", root / "data", root / "dir", root / "fifo", "/dev/null"):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st, birth = sx.fstat(fd)
            _same(st, os.fstat(fd))
            assert birth == sx.birth_time(fd=fd)
        finally:
            os.close(fd)


def test_fstat_fields_are_fstat_and_birth_time_and_flags_are_get_flags(tree):
    """The raw statx fields Pass IV dumps regular files from (Statx.fstat_fields)
    say what fstat and birth_time say; the reused-buffer flag_getter what get_flags
    says, the nodump flag included."""
    from ndump.fsmeta import flag_getter, get_flags
    root, flagged = tree
    sx = Statx()
    flags = flag_getter()
    for path in (root / "empty", root / "data", root / "skip", root / "dir", root / "fifo"):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            v = sx.fstat_fields(fd)
            st, birth = sx.fstat(fd)
            (mask, _, _, nlink, uid, gid, mode, ino, size, blocks, _, asec, ans, bsec, bns,
             csec, cns, msec, mns) = v[:19]
            assert (mode, ino, nlink, uid, gid, size, blocks) == (
                st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_blocks)
            assert (asec * 10**9 + ans, msec * 10**9 + mns, csec * 10**9 + cns) == (
                st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)
            assert ((bsec, bns) if mask & 0x800 else None) == birth
            assert flags(fd) == get_flags(fd)
        finally:
            os.close(fd)
    if flagged:
        fd = os.open(root / "skip", os.O_RDONLY)
        try:
            assert flags(fd) & 0x40                   # FS_NODUMP_FL
        finally:
            os.close(fd)
    assert os.stat(root / "data").st_mtime_ns == 4_102_444_800_987_654_321
