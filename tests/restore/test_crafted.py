"""restore -r/-x of images crafted with FormatWriter: every file type and
attribute comes back exactly (times to the nanosecond)."""
from __future__ import annotations

import os
import stat

import pytest

from craft import Craft
from ndump.fsmeta import get_flags, get_xattrs
from ndump.restore.symtab import SymbolTable

NS_M = 1_600_000_000_123_456_789
NS_A = 1_500_000_000_987_654_321
ACL_V2 = (b"\x02\x00\x00\x00" + b"\x01\x00\x06\x00\xff\xff\xff\xff"
          + b"\x02\x00\x07\x00\xe8\x03\x00\x00" + b"\x04\x00\x04\x00\xff\xff\xff\xff"
          + b"\x10\x00\x07\x00\xff\xff\xff\xff" + b"\x20\x00\x04\x00\xff\xff\xff\xff")
IMMUTABLE, NOATIME = 0x10, 0x80


def basic_tree() -> Craft:
    img = Craft()
    img.dir(2, {"file": 10, "sub": 3, "empty": 11, "hard1": 12, "sparse": 13, "sl": 14,
                "longsl": 15, "fifo": 16, "sock": 17})
    img.dir(3, {"hard2": 12, "deeper": 4}, mode=0o750, mtime_ns=NS_M + 5, atime_ns=NS_A + 5)
    img.dir(4, {"hard3": 12})
    img.file(10, b"hello world\n" * 100, mode=0o640)
    img.file(11, b"")
    img.file(12, b"linked data", nlink=3)
    img.sparse(13, 5 << 20, {0: b"A" * 4096, 3 << 20: b"B" * 100})
    img.symlink(14, "file")
    img.symlink(15, "x/" * 1500 + "end")
    img.node(16, stat.S_IFIFO, mode=0o600)
    img.node(17, stat.S_IFSOCK, mode=0o755)
    return img


def test_every_type_comes_back(restore, image_file, tmp_path):
    r = restore(image_file(basic_tree()), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    assert (out / "file").read_bytes() == b"hello world\n" * 100
    assert (out / "empty").stat().st_size == 0
    assert os.stat(out / "hard1").st_ino == os.stat(out / "sub/hard2").st_ino == \
        os.stat(out / "sub/deeper/hard3").st_ino
    assert os.stat(out / "hard1").st_nlink == 3
    assert os.readlink(out / "sl") == "file"
    assert os.readlink(out / "longsl") == "x/" * 1500 + "end"
    assert stat.S_ISFIFO(os.lstat(out / "fifo").st_mode)
    assert stat.S_ISSOCK(os.lstat(out / "sock").st_mode)
    assert stat.S_IMODE(os.lstat(out / "sock").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "file").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(out / "sub").st_mode) == 0o750


def test_sparse_file_keeps_its_holes(restore, image_file, tmp_path):
    r = restore(image_file(basic_tree()), "r")
    assert r.status == 0, r.err
    path = tmp_path / "out" / "sparse"
    data = path.read_bytes()
    assert len(data) == 5 << 20
    assert data[:4096] == b"A" * 4096 and data[3 << 20:(3 << 20) + 100] == b"B" * 100
    assert data.count(0) == len(data) - 4096 - 100
    assert os.stat(path).st_blocks * 512 <= 64 * 1024        # holes stayed holes


def test_trailing_hole_sets_the_size(restore, image_file, tmp_path):
    img = Craft().dir(2, {"tail": 3}).sparse(3, 3 << 20, {0: b"x" * 10})
    assert restore(image_file(img), "r").status == 0
    assert os.stat(tmp_path / "out/tail").st_size == 3 << 20


def test_times_to_the_nanosecond_directories_last(restore, image_file, tmp_path):
    r = restore(image_file(basic_tree()), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    for rel in ("file", "hard1", "sparse", "fifo"):
        st = os.lstat(out / rel)
        assert (st.st_mtime_ns, st.st_atime_ns) == (NS_M, NS_A), rel
    st = os.lstat(out / "sl")
    assert st.st_mtime_ns == NS_M                            # symlink times too (lutimes)
    st = os.stat(out / "sub")
    assert (st.st_mtime_ns, st.st_atime_ns) == (NS_M + 5, NS_A + 5)
    assert os.stat(out).st_mtime_ns == NS_M                  # root's, set after restoresymtable


@pytest.mark.root
def test_owners_setuid_and_devices(restore, image_file, tmp_path):
    img = Craft()
    img.dir(2, {"suid": 3, "owned": 4, "chr": 5, "blk": 6, "link": 7, "odir": 8})
    img.dir(8, {}, uid=70000, gid=80000, mode=0o2750)
    img.file(3, b"#!/bin/sh\n", mode=0o4755, uid=70000, gid=80000)
    img.file(4, b"x", mode=0o600, uid=1234, gid=5678)
    img.node(5, stat.S_IFCHR, rdev=os.makedev(300, 70000))
    img.node(6, stat.S_IFBLK, rdev=os.makedev(8, 17), mode=0o660, gid=6)
    img.symlink(7, "suid", uid=70000, gid=80000)
    r = restore(image_file(img), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    st = os.stat(out / "suid")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4755, 70000, 80000)
    st = os.stat(out / "owned")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    st = os.lstat(out / "chr")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (300, 70000)
    st = os.lstat(out / "blk")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(8, 17) and st.st_gid == 6
    assert stat.S_IMODE(st.st_mode) == 0o660
    st = os.lstat(out / "link")
    assert (st.st_uid, st.st_gid) == (70000, 80000)
    st = os.stat(out / "odir")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2750, 70000, 80000)


def test_xattrs_and_acls(restore, image_file, tmp_path):
    img = Craft()
    img.dir(2, {"f": 3, "d": 4})
    img.dir(4, {}, xattrs=[("user.on-dir", b"v"), ("system.posix_acl_default", ACL_V2)])
    img.file(3, b"data", xattrs=[("user.small", b"hello"), ("user.bin", bytes(range(200))),
                                 ("system.posix_acl_access", ACL_V2)], mode=0o674)
    r = restore(image_file(img), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    fx = dict(get_xattrs(str(out / "f")))
    assert fx["user.small"] == b"hello" and fx["user.bin"] == bytes(range(200))
    assert fx["system.posix_acl_access"] == ACL_V2
    dx = dict(get_xattrs(str(out / "d")))
    assert dx["user.on-dir"] == b"v" and dx["system.posix_acl_default"] == ACL_V2


def test_refused_xattr_namespace_warns_once(restore, image_file, tmp_path):
    # "lustre." attributes exist in the format but no local filesystem takes them
    img = Craft().dir(2, {"a": 3, "b": 4})
    img.file(3, b"1", xattrs=[("lustre.x", b"1"), ("user.ok", b"y")])
    img.file(4, b"2", xattrs=[("lustre.y", b"2")])
    r = restore(image_file(img), "r")
    assert r.status == 0, r.err
    assert r.err.count("lustre.") == 1, r.err
    assert dict(get_xattrs(str(tmp_path / "out/a")))["user.ok"] == b"y"


@pytest.mark.root
def test_flags_set_last_even_immutable(restore, image_file, tmp_path):
    img = Craft().dir(2, {"locked": 3, "noatime": 4, "l2": 3})
    img.file(3, b"cannot change me", flags=IMMUTABLE | 0x80000, nlink=2)   # + ext4 EXTENTS
    img.file(4, b"x", flags=NOATIME)
    r = restore(image_file(img), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    fd = os.open(out / "locked", os.O_RDONLY)
    try:
        assert get_flags(fd) & IMMUTABLE
    finally:
        os.close(fd)
    assert os.stat(out / "l2").st_ino == os.stat(out / "locked").st_ino
    assert os.stat(out / "locked").st_mtime_ns == NS_M


def test_restoresymtable_written(restore, image_file, tmp_path):
    r = restore(image_file(basic_tree()), "r")
    assert r.status == 0
    fd = os.open(tmp_path / "out", os.O_RDONLY)
    try:
        table = SymbolTable.load(fd)
    finally:
        os.close(fd)
    assert table.state == "complete" and table.dumpdate == 1_700_000_000 and table.dumptime == 0
    assert (b"hard2", 12) in table.dirs[3]
    assert stat.S_ISLNK(table.modes[14]) and stat.S_ISDIR(table.modes[4])


def test_extract_named_paths_only(restore, image_file, tmp_path):
    r = restore(image_file(basic_tree()), "x", "sub/deeper", "/file", "nope")
    assert r.status == 2
    assert "./nope: not on the tape" in r.err
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["file", "sub"]
    assert os.listdir(out / "sub") == ["deeper"]
    assert (out / "sub/deeper/hard3").read_bytes() == b"linked data"
    assert not (out / "restoresymtable").exists()


def test_extract_everything_without_names(restore, image_file, tmp_path):
    r = restore(image_file(basic_tree()), "x")
    assert r.status == 0, r.err
    assert len(os.listdir(tmp_path / "out")) == 9


def test_extract_does_not_touch_dot_without_yes(restore, image_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o711)
    restore(image_file(basic_tree()), "x", target=out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o711
    restore(image_file(basic_tree()), "x", target=out, yes=True)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755


def test_dry_run_writes_nothing(restore, image_file, tmp_path):
    r = restore(image_file(basic_tree()), "r", dry_run=True)
    assert r.status == 0, r.err
    assert os.listdir(tmp_path / "out") == []


def test_existing_files_replaced_directories_merged(restore, image_file, tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "mine").write_text("keep me")
    (out / "file").write_text("old content")
    os.symlink("/etc/passwd", out / "sl")
    old_ino = os.stat(out / "file").st_ino
    r = restore(image_file(basic_tree()), "r", target=out)
    assert r.status == 0, r.err
    assert (out / "file").read_bytes() == b"hello world\n" * 100
    assert os.stat(out / "file").st_ino != old_ino          # a new file renamed over it
    assert os.readlink(out / "sl") == "file"
    assert (out / "sub" / "mine").read_text() == "keep me"
    assert not [n for n in os.listdir(out) if n.startswith(".ndump-")]


def test_keep_existing(restore, image_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "file").write_text("mine")
    r = restore(image_file(basic_tree()), "r", target=out, keep_existing=True)
    assert r.status == 0, r.err
    assert (out / "file").read_text() == "mine"
    assert (out / "empty").exists()


def test_restore_twice_over_itself(restore, image_file, tmp_path):
    image = image_file(basic_tree())
    assert restore(image, "r").status == 0
    r = restore(image, "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    assert os.stat(out / "hard1").st_nlink == 3
    assert not [n for n in os.listdir(out) if n.startswith(".ndump-")]


def test_checksum_mismatch_restores_but_reports(restore, image_file, tmp_path):
    img = Craft().dir(2, {"good": 3, "bad": 4})
    img.file(3, b"good data")
    img.file(4, b"precious data" * 100)
    data = bytearray(img.build())
    data[img.offsets[4][0] + 1024 + 5] ^= 0xFF                # a byte of bad's data block
    r = restore(image_file(bytes(data)), "r")
    assert r.status == 2
    assert "./bad: damaged on the tape: data checksum mismatch" in r.err
    assert (tmp_path / "out/good").read_bytes() == b"good data"
    assert (tmp_path / "out/bad").stat().st_size == 1300


def test_non_root_rules(restore, image_file, tmp_path):
    """SPEC §5.4 as a non-root user: own files, no setuid/setgid, no trusted./security."""
    from ndump.settings import Settings
    img = Craft().dir(2, {"suid": 3, "attrs": 4})
    img.file(3, b"#!/bin/sh\n", mode=0o6755, uid=70000, gid=80000)
    img.file(4, b"x", mode=0o444, xattrs=[("user.u", b"1"), ("trusted.t", b"2"), ("security.s", b"3")])
    r = restore(image_file(img), "r", settings=Settings(is_root=False, progress_interval=0))
    assert r.status == 0, r.err
    out = tmp_path / "out"
    st = os.stat(out / "suid")
    assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == os.geteuid()
    names = dict(get_xattrs(str(out / "attrs")))
    assert names == {"user.u": b"1"}
    assert stat.S_IMODE(os.stat(out / "attrs").st_mode) == 0o444


@pytest.mark.root
def test_target_full_aborts_and_lists_the_rest(restore, image_file, tmp_path):
    import subprocess
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        img = Craft().dir(2, {f"f{i}": 3 + i for i in range(6)})
        for i in range(6):
            img.file(3 + i, os.urandom(400 * 1024))
        r = restore(image_file(img), "r", target=small, force=True)   # past the space check
        assert r.status == 3
        assert "the target is full" in r.outcome.aborted
        assert "./f5: (inode 8) not restored" in r.err
        assert "not restored: the target is full" in r.err
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_deep_tree_with_few_descriptors(restore, image_file, tmp_path, monkeypatch):
    """Deeper than the directory-descriptor cache, with hard links across the depth."""
    from ndump.restore import target as target_mod
    monkeypatch.setattr(target_mod, "_fd_limit", lambda: 3)
    depth = 300
    img = Craft()
    img.dir(2, {"d": 3, "top-link": 5000})
    for i in range(depth):
        ino = 3 + i
        entries = {"d": ino + 1} if i + 1 < depth else {"bottom": 5000}
        entries[f"leaf{i}"] = 1000 + i
        img.dir(ino, entries, parent=ino - 1 if i else 2)
        img.file(1000 + i, b"%d" % i)
    img.file(5000, b"deep and shallow", nlink=2)
    r = restore(image_file(img), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDONLY)
    try:
        for _ in range(depth):                       # walk down without building long paths
            nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        assert os.stat("bottom", dir_fd=fd).st_ino == os.stat(out / "top-link").st_ino
    finally:
        os.close(fd)
    assert (out / "d/d/d/leaf2").read_bytes() == b"2"
