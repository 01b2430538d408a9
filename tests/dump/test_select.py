"""dump/select.py: what a dump holds."""
import os
import subprocess

import pytest

from trees import build_tree


def _listed(image):
    proc = subprocess.run(["python", "-m", "ndump", "restore", "-t", "-f", str(image)],
                          capture_output=True, text=True)
    return {line.split("\t", 1)[1] for line in proc.stdout.splitlines() if "\t" in line}


def test_first_entry_of_the_root_is_dumped(tmp_path, run_ndump):
    # regression: the file table once took root entry 0 for "not selected"
    src = build_tree(tmp_path / "src", {"a-first": b"1" * 5000, "b": b"2"})
    image = tmp_path / "x.dump"
    run_ndump("dump", "-0", "-f", image, src, status=0)
    proc = run_ndump("restore", "-t", "-f", image, status=0)
    assert "./a-first" in proc.stdout and "./b" in proc.stdout


def test_sockets_are_skipped_and_mount_points_are_empty_dirs(tmp_path, run_ndump):
    import socket
    src = build_tree(tmp_path / "src", {"keep": b"k", "mnt/inside": b"hidden"})
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(src / "sock"))
    image = tmp_path / "x.dump"
    mounted = False
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "mnt")], check=True)
        mounted = True
        (src / "mnt" / "on-tmpfs").write_text("other fs")
    try:
        proc = run_ndump("dump", "-0", "-v", "-f", image, src, status=0)
    finally:
        if mounted:
            subprocess.run(["umount", str(src / "mnt")], check=True)
        s.close()
    listing = run_ndump("restore", "-t", "-f", image, status=0).stdout
    assert "./keep" in listing and "./sock" not in listing
    if mounted:
        assert "./mnt" in listing and "on-tmpfs" not in listing and "inside" not in listing
        assert "another filesystem" in proc.stderr and "warning" in proc.stderr


def test_excludes_and_nodump(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a.log": b"x", "d/b.log": b"y", "d/keep": b"z",
                                        "skipme": b"s"})
    image = tmp_path / "x.dump"
    run_ndump("dump", "-0", "--exclude", "*.log", "-f", image, src, status=0)
    listing = run_ndump("restore", "-t", "-f", image, status=0).stdout
    assert "a.log" not in listing and "b.log" not in listing and "./d/keep" in listing
    if subprocess.run(["chattr", "+d", str(src / "skipme")]).returncode == 0:
        run_ndump("dump", "-0", "-f", image, src, status=0)
        assert "./skipme" in run_ndump("restore", "-t", "-f", image, status=0).stdout
        run_ndump("dump", "-0", "-h", "0", "-f", image, src, status=0)
        assert "./skipme" not in run_ndump("restore", "-t", "-f", image, status=0).stdout


def test_255_byte_names_are_dumped_with_a_warning(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"n" * 255: b"long", "short": b"s"})
    image = tmp_path / "x.dump"
    proc = run_ndump("dump", "-0", "-f", image, src, status=0)
    assert "255-byte name" in proc.stderr and "stock restore" in proc.stderr
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", out, status=0)
    assert (out / ("n" * 255)).read_bytes() == b"long"


def test_compressed_with_large_blocks_warns_about_stock_restore(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"1"})
    proc = run_ndump("dump", "-0", "-z", "-b", "64", "-f", tmp_path / "x", src, status=0)
    assert "-b 64" in proc.stderr
    stock = subprocess.run(["restore", "-t", "-b", "64", "-f", str(tmp_path / "x")],
                           capture_output=True, text=True)
    assert stock.returncode == 0 and "./a" in stock.stdout
