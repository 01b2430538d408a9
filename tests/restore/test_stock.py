"""ndump restore against stock restore 0.4b47 on images written by stock dump:
the golden images of tests/data and a stock dump of the full test tree.

`restore -t` must print the same bytes; `restore -r` must rebuild the same
tree, except where ndump reads more than stock restore does (the
``IMPROVEMENTS`` below, which golden.json's ``stock_vs_source`` documents).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from stock import parse_listing, stock_dump_tree, stock_restore
from trees import build_full_tree, diff_trees

pytestmark = [pytest.mark.root, pytest.mark.compat]

SINGLE = ["l0-basic", "l0-zlib", "l0-bzip2", "l0-b64", "l0-sparse", "l0-xattr-acl",
          "l0-damaged-block-37"]
# stock restore makes ext4's new-style device numbers 0,0 and applies only the last EA
# record of a directory; ndump gets both right
IMPROVEMENTS = {
    "'bigdev': rdev (major, minor): (0, 0) != (300, 70000)",
    "'acl-dir': access ACL: None != 'u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x'",
    "'special/big-char': rdev (major, minor): (0, 0) != (300, 70000)",
    "'acls/dir': access ACL: None != 'u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x'",
}


def _multi_links(golden_dir: Path, tmp_path: Path) -> str:
    """restore -M wants PREFIX001...: link the golden volumes under those names."""
    for n in (1, 2, 3):
        link = tmp_path / f"multi-volume-{n:03d}"
        if not link.exists():
            link.symlink_to(golden_dir / f"multi-volume-{n:03d}.dump")
    return str(tmp_path / "multi-volume-")


def _args(name: str, golden_dir: Path, tmp_path: Path) -> list[str]:
    if name == "multi-volume":
        return ["-M", "-f", _multi_links(golden_dir, tmp_path)]
    return ["-f", str(golden_dir / f"{name}.dump")]


@pytest.mark.parametrize("name", SINGLE + ["multi-volume", "l1-after-rename"])
def test_listing_equals_stock(name, golden_dir, tmp_path, run_ndump):
    args = _args(name, golden_dir, tmp_path)
    stock = stock_restore(["-t", *args], cwd=tmp_path)
    ours = run_ndump("restore", "-t", *args, status=0)
    assert ours.stdout == stock.stdout


@pytest.mark.parametrize("paths", [["dir1", "many"], ["hard/sub/b", "./names"], ["/dir1/dir2"]])
def test_listing_of_named_paths_equals_stock(paths, golden_dir, tmp_path, run_ndump):
    image = golden_dir / "l0-basic.dump"
    stock = stock_restore(["-t", "-f", image, *paths], cwd=tmp_path)
    ours = run_ndump("restore", "-t", "-f", image, *paths, status=0)
    assert ours.stdout == stock.stdout


def test_verbose_listing_lines_equal_stock(golden_dir, tmp_path, run_ndump):
    image = golden_dir / "l0-basic.dump"
    stock = stock_restore(["-tv", "-f", image], cwd=tmp_path)
    ours = run_ndump("restore", "-tvf", image, status=0)
    # stock's progress notes go to stdout; ndump's to stderr (RESTORE: ...)
    notes = {"Verify tape and initialize maps", "Input is from a local file/pipe",
             "Input block size is 32", "Extract directories from tape", "Initialize symbol table."}
    keep = [ln for ln in stock.stdout.split("\n") if ln not in notes]
    assert ours.stdout.split("\n") == keep
    assert "Dump   date:" in ours.stdout


@pytest.mark.parametrize("name", SINGLE + ["multi-volume"])
def test_rebuild_equals_stock(name, golden, golden_dir, tmp_path, run_ndump):
    args = _args(name, golden_dir, tmp_path)
    theirs, ours = tmp_path / "stock", tmp_path / "ndump"
    theirs.mkdir()
    ours.mkdir()
    stock_restore(["-r", "-y", *args], cwd=theirs, check=False)
    damaged = "damaged" in name
    proc = run_ndump("restore", "-r", *args, "--target", ours, status=2 if damaged else 0)
    if damaged:
        assert "./f1023: (inode 19) not found on tape" in proc.stderr
    diffs = diff_trees(theirs, ours, flags=True, atime=True)
    assert set(diffs) <= IMPROVEMENTS, "\n".join(diffs)


def test_extract_named_paths_equals_stock(golden_dir, tmp_path, run_ndump):
    image = golden_dir / "l0-basic.dump"
    theirs, ours = tmp_path / "stock", tmp_path / "ndump"
    theirs.mkdir()
    ours.mkdir()
    paths = ["dir1/dir2", "hard/sub/b", "sym-long"]
    # stock asks for the volume (1), then whether to set '.' (n)
    stock_restore(["-x", "-f", image, *paths], cwd=theirs, input="1\nn\n")
    run_ndump("restore", "-x", "-f", image, *paths, "--target", ours, status=0)
    assert diff_trees(theirs, ours, flags=True, atime=True, root=False) == []


@pytest.mark.parametrize("variant", [[], ["-z"], ["-j"], ["-b", "64"]])
def test_full_tree_dumped_by_stock(tmp_path, run_ndump, variant):
    src = tmp_path / "src"
    build_full_tree(src, big_sparse_size=8 << 20)
    image = tmp_path / "full.dump"
    stock_dump_tree(src, image, "-0", *variant, workdir=tmp_path, size_mb=96)
    theirs, ours = tmp_path / "stock", tmp_path / "ndump"
    theirs.mkdir()
    ours.mkdir()
    stock_restore(["-r", "-y", "-f", image], cwd=theirs)
    run_ndump("restore", "-rf", image, "--target", ours, status=0)
    diffs = diff_trees(theirs, ours, flags=True, atime=True)
    assert set(diffs) <= IMPROVEMENTS, "\n".join(diffs)
    stock_list = stock_restore(["-t", "-f", image], cwd=tmp_path).stdout
    ours_list = run_ndump("restore", "-tf", image, status=0).stdout
    assert parse_listing(ours_list) == parse_listing(stock_list)
    assert ours_list == stock_list


def test_golden_facts_without_stock(golden, golden_dir, tmp_path, run_ndump):
    """What stock restore made of l0-basic (golden.json) is what ndump makes of it."""
    import sys
    sys.path.insert(0, str(golden_dir))
    from golden_facts import facts
    from trees import tree_state
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-rf", golden_dir / "l0-basic.dump", "--target", out, status=0)
    got = {p: facts(e, out) for p, e in tree_state(out).items()}
    want = golden["images"]["l0-basic"]["files"]
    want["bigdev"] = dict(want["bigdev"], rdev=[300, 70000])
    assert got.keys() == want.keys()
    for path in want:
        assert got[path] == want[path], path
    assert not os.path.exists(out / "f1023.ndump")
