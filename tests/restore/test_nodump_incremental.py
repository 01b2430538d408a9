"""restore -r of a level 1 that leaves out nodump files (dump -h 1, the default):
their directories are unchanged, so not on the tape, and their inodes are not in
use on it.  The names go away, as with stock restore (removeoldleaves()), and the
run ends with status 0: the Amanda round trip (tests/amanda) restores such a chain."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from stock import stock_restore


def _tree(src):
    for d in ("flags", "files", "ndir"):
        (src / d).mkdir(parents=True)
    (src / "flags" / "nodump").write_text("chattr +d\n")
    (src / "flags" / "kept").write_text("kept\n")
    (src / "files" / "a").write_text("a\n")
    (src / "ndir" / "f").write_text("in a nodump directory\n")
    for p in ("flags/nodump", "ndir"):
        subprocess.run(["chattr", "+d", str(src / p)], check=True)


def _names(root):
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out - {"restoresymtable"}


@pytest.fixture
def chain(tmp_path, run_ndump):
    src = tmp_path / "src"
    _tree(src)
    time.sleep(1.1)      # the level 0 begins a second after the tree's ctimes: the
    #                      directories holding nodump files are not on the level 1
    run_ndump("dump", "-0", "-u", "-f", tmp_path / "l0", "--snapshot", "none", src, status=0)
    time.sleep(1.1)
    (src / "files" / "a").write_text("changed\n")
    run_ndump("dump", "-1", "-u", "-f", tmp_path / "l1", "--snapshot", "none", src, status=0)
    listing = run_ndump("restore", "-t", "-f", tmp_path / "l1", status=0).stdout
    names = [line.split("\t", 1)[1] for line in listing.splitlines() if "\t" in line]
    assert names == [".", "./files", "./files/a"], listing
    return src, tmp_path / "l0", tmp_path / "l1"


def test_level_1_without_nodump_files_restores_cleanly(chain, tmp_path, restore):
    src, l0, l1 = chain
    out = tmp_path / "out"
    out.mkdir()
    assert restore(l0, "r", target=out).status == 0
    assert {"flags/nodump", "ndir/f"} <= _names(out)
    r = restore(l1, "r", target=out)
    assert r.status == 0, r.err
    assert r.err == ""
    assert _names(out) == {"flags", "flags/kept", "files", "files/a"}
    assert (out / "files" / "a").read_text() == "changed\n"
    # flags/ is not on the level 1: it keeps the times the level 0 gave it
    assert os.stat(out / "flags").st_mtime_ns == os.stat(src / "flags").st_mtime_ns


@pytest.mark.compat
def test_stock_restore_of_the_same_chain_agrees(chain, tmp_path, restore):
    src, l0, l1 = chain
    stock = tmp_path / "stock"
    stock.mkdir()
    for image in (l0, l1):
        stock_restore(["-r", "-y", "-f", image], cwd=stock)
    ours = tmp_path / "ours"
    ours.mkdir()
    for image in (l0, l1):
        assert restore(image, "r", target=ours).status == 0
    assert _names(ours) == _names(stock)
