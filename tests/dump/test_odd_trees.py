"""Odd trees for dump (the audit): bind mounts, names that are not UTF-8, files
whose size is all hole."""
from __future__ import annotations

import os
import subprocess

import pytest

from stock import parse_listing, stock_restore
from trees import build_tree


@pytest.mark.root
def test_a_bind_mount_inside_the_tree_is_an_empty_directory(tmp_path, run_ndump):
    """A bind mount of a directory of the same filesystem has its st_dev: the walk
    went in and dumped the directory's inode under a second name (a hard link to a
    directory, which restore refuses as a loop, exit 2).  Stock dump reads the
    device and sees the empty mount point; ndump now dumps it empty too."""
    src = build_tree(tmp_path / "src", {"a/f": b"in a\n", "m/hidden": b"under the mount\n"})
    subprocess.run(["mount", "--bind", str(src / "a"), str(src / "m")], check=True)
    try:
        image = tmp_path / "x.dump"
        proc = run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    finally:
        subprocess.run(["umount", str(src / "m")], check=True)
    assert "DUMP: warning: ./m: a bind mount; dumped as an empty directory\n" in proc.stderr
    out = tmp_path / "out"
    out.mkdir()
    r = run_ndump("restore", "-r", "-f", image, "--target", out)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["a", "m", "restoresymtable"]
    assert os.listdir(out / "a") == ["f"] and os.listdir(out / "m") == []


def test_names_that_are_not_utf8_and_a_file_that_is_all_hole(tmp_path, run_ndump):
    src = tmp_path / "src"
    src.mkdir()
    names = [b"caf\xe9", b"\xff\xfe", b"ok\x01ctl", b"d\xc3"]
    for n in names:
        with open(os.path.join(os.fsencode(src), n), "wb") as f:
            f.write(n)
    with open(src / "hole", "wb") as f:
        f.truncate(10 << 20)                        # 10 MiB, no block
    image = tmp_path / "x.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    assert os.path.getsize(image) < 200 << 10      # 10 headers, no data
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", out, status=0)
    for n in names:
        with open(os.path.join(os.fsencode(out), n), "rb") as f:
            assert f.read() == n
    st = os.stat(out / "hole")
    assert st.st_size == 10 << 20 and st.st_blocks == 0


@pytest.mark.compat
def test_stock_restore_reads_names_that_are_not_utf8(tmp_path, run_ndump):
    src = tmp_path / "src"
    src.mkdir()
    with open(os.path.join(os.fsencode(src), b"caf\xe9"), "wb") as f:
        f.write(b"latin-1\n")
    image = tmp_path / "x.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    out = tmp_path / "stock"
    out.mkdir()
    listing = stock_restore(["-t", "-f", image], cwd=out).stdout
    assert "./caf\udce9" in parse_listing(listing) or "caf\udce9" in parse_listing(listing)
    stock_restore(["-r", "-f", image], cwd=out)
    with open(os.path.join(os.fsencode(out), b"caf\xe9"), "rb") as f:
        assert f.read() == b"latin-1\n"
