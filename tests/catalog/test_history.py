"""File history written by dumps (issue 15 acceptance 1 and 4): catalog find, list
and chain after a chain of dumps with renames and deletions; a missing, locked,
corrupt or read-only catalog never stops a dump."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ndump.format import TS_INODE, unpack_header
from trees import build_tree


def _tick():
    """Let the clock pass a second so each dump's changes have a later ctime."""
    time.sleep(1.05)


def _find(run_ndump, pattern, *args):
    proc = run_ndump("catalog", "find", "--json", *args, pattern, status=0)
    return [(m["dump"]["level"], m["path"], m["size"]) for m in json.loads(proc.stdout)]


def _headers_match(catalog_rows, image):
    data = image.read_bytes()
    for path, ino, offset in catalog_rows:
        h = unpack_header(data[offset:offset + 1024])
        assert (h.type, h.inumber) == (TS_INODE, ino), path


@pytest.fixture
def three_dumps(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a/x": b"1" * 10, "a/z": b"zz", "b/y": b"yy", "keep": b"k"})
    img = {}

    def dump(level):
        _tick()
        img[level] = tmp_path / f"l{level}.dump"
        run_ndump("dump", f"-{level}u", "--snapshot", "none", "-f", img[level], src, status=0)

    dump(0)
    (src / "a/x").write_bytes(b"2" * 20)          # version 2 of a/x
    (src / "a/z").unlink()                        # deleted
    os.rename(src / "b/y", src / "b/y2")          # renamed
    dump(1)
    (src / "c").mkdir()
    os.rename(src / "a/x", src / "c/x")           # version 2 moves to c/x ...
    (src / "a/x").write_bytes(b"3" * 30)          # ... and a new a/x, version 3
    dump(2)
    return src, img


def test_three_dumps_with_renames_and_deletions(three_dumps, run_ndump, ndump_env, tmp_path):
    """One chain of dumps (it takes seconds to make) for find, chain and restore."""
    _check_find(three_dumps, run_ndump, ndump_env)
    _check_chain(three_dumps, run_ndump)
    _check_chain_restores(three_dumps, run_ndump, tmp_path)


def _check_find(three_dumps, run_ndump, ndump_env):
    src, img = three_dumps
    assert _find(run_ndump, f"{src}/a/x") == [(2, "a/x", 30), (1, "a/x", 20), (0, "a/x", 10)]
    assert _find(run_ndump, "c/x") == [(2, "c/x", 20)]
    assert _find(run_ndump, "z") == [(0, "a/z", 2)]
    assert _find(run_ndump, "y") == [(0, "b/y", 2)]
    assert _find(run_ndump, "y2") == [(1, "b/y2", 2)]
    assert _find(run_ndump, "keep") == [(0, "keep", 1)]
    text = run_ndump("catalog", "find", "x", status=0).stdout
    assert f"ndump restore -x -f {img[1]} -A {ndump_env.state_dir / 'catalog.db'} ./a/x" in text
    assert run_ndump("catalog", "find", "nothing-like-it", status=2).stdout == ""

    import sqlite3
    db = sqlite3.connect(ndump_env.state_dir / "catalog.db")
    for level, image in img.items():
        rows = db.execute("SELECT path, ino, offset FROM files f JOIN dumps d ON d.id = f.dump"
                          " WHERE d.level = ?", (level,)).fetchall()
        assert rows
        _headers_match(rows, image)


def _check_chain(three_dumps, run_ndump):
    src, img = three_dumps
    dumps = json.loads(run_ndump("catalog", "list", "--json", status=0).stdout)
    assert [(d["level"], d["status"], d["medium"]) for d in dumps] == \
        [(0, "done", str(img[0])), (1, "done", str(img[1])), (2, "done", str(img[2]))]
    dates = [d["date"] for d in dumps]

    def chain(at):
        out = run_ndump("catalog", "chain", "--json", "--at", at, src, status=0).stdout
        return [(d["level"], d["restore"]) for d in json.loads(out)]

    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))
    assert chain(iso(dates[0])) == [(0, f"ndump restore -r -f {img[0]}")]
    assert [lvl for lvl, _ in chain(iso(dates[1]))] == [0, 1]
    assert [cmd for _, cmd in chain(iso(dates[2] + 60))] == [
        f"ndump restore -r -f {img[0]}", f"ndump restore -r -f {img[1]}",
        f"ndump restore -r -f {img[2]}"]
    proc = run_ndump("catalog", "chain", "--at", iso(dates[0] - 3600), src, status=1)
    assert proc.stderr.startswith("NDUMP: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in run_ndump("catalog", "chain", "--at", "last tuesday", src,
                                        status=1).stderr


def _check_chain_restores(three_dumps, run_ndump, tmp_path):
    src, img = three_dumps
    out = tmp_path / "out"
    out.mkdir()
    for line in run_ndump("catalog", "chain", src, status=0).stdout.splitlines():
        if line.startswith("ndump restore"):
            run_ndump(*line.split()[1:], "-y", cwd=out, status=0)
    assert (out / "a/x").read_bytes() == b"3" * 30 and (out / "c/x").read_bytes() == b"2" * 20
    assert not (out / "a/z").exists() and (out / "b/y2").exists()


# --- damage: the dump goes on, with one warning ------------------------------------------

def _dump_with(run_ndump, tmp_path, *args):
    src = build_tree(tmp_path / "src", {"f": b"data", "d/g": b"more"})
    proc = run_ndump("dump", "-0", "--snapshot", "none", "-f", tmp_path / "l0.dump", *args, src,
                     status=0)
    # (a long tmp_path also brings the 63-byte c_filesys warning)
    warnings = [l for l in proc.stderr.splitlines() if "warning" in l and "63 bytes" not in l]
    assert len(warnings) == 1 and warnings[0].startswith("DUMP: warning: catalog "), proc.stderr
    assert "DUMP IS DONE" in proc.stderr
    listing = run_ndump("restore", "-t", "-f", tmp_path / "l0.dump", status=0).stdout
    assert "./d/g" in listing
    return warnings[0]


def test_corrupt_catalog(tmp_path, run_ndump, ndump_env):
    ndump_env.state_dir.mkdir()
    (ndump_env.state_dir / "catalog.db").write_bytes(b"\x00garbage" * 1000)
    assert "not a database" in _dump_with(run_ndump, tmp_path)


def test_locked_catalog(tmp_path, run_ndump):
    path = tmp_path / "cat.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "db.execute('PRAGMA journal_mode = WAL')\n"
         "db.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "time.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert "locked" in _dump_with(run_ndump, tmp_path, "-A", path)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.root
def test_catalog_on_a_read_only_filesystem(tmp_path, run_ndump):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], check=True)
    try:
        src = build_tree(tmp_path / "first", {"f": b"x"})
        run_ndump("dump", "-0", "--snapshot", "none", "-f", tmp_path / "first.dump",
                  "-A", mnt / "cat.db", src, status=0)
        subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
        _dump_with(run_ndump, tmp_path, "-A", mnt / "cat.db")
        _dump_with(run_ndump, tmp_path, "-A", mnt / "new" / "cat.db")
    finally:
        subprocess.run(["umount", mnt], check=True)


def test_no_catalog_writes_none(tmp_path, run_ndump, ndump_env):
    src = build_tree(tmp_path / "src", {"f": b"x"})
    proc = run_ndump("dump", "-0", "--no-catalog", "--snapshot", "none", "-f", tmp_path / "a.dump",
                     src, status=0)
    assert "warning" not in proc.stderr
    assert not (ndump_env.state_dir / "catalog.db").exists()
    proc = run_ndump("catalog", "list", status=1)
    assert proc.stderr == f"NDUMP: no catalog at {ndump_env.state_dir / 'catalog.db'}\n"


def test_two_dumps_at_once(tmp_path, run_ndump, ndump_env):
    trees = [build_tree(tmp_path / f"t{i}", {f"d{j}/f{k}": b"x" * k for j in range(20)
                                             for k in range(100)}) for i in range(2)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [subprocess.Popen([sys.executable, "-m", "ndump", "dump", "-0v", "--snapshot", "none",
                               "-f", str(tmp_path / f"t{i}.dump"), str(t)], env=env,
                              stderr=subprocess.PIPE, text=True)
             for i, t in enumerate(trees)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any("warning" in e for e in errs), errs
    assert all(f"file history: {1 + 20 + 2000} names recorded in " in e for e in errs), errs
    dumps = json.loads(run_ndump("catalog", "list", "--json", status=0).stdout)
    assert sorted(d["tree"] for d in dumps) == sorted(map(str, trees))
    assert all(d["files"] == 1 + 20 + 2000 and d["status"] == "done" for d in dumps)
    assert run_ndump("catalog", "check", status=0).stdout.startswith("catalog ")


def test_every_name_of_a_larger_dump_is_recorded(tmp_path, run_ndump, ndump_env):
    """Long enough for the writer thread to look at the dump while it runs; the
    directories (Pass III) have higher inode numbers than many files."""
    # files a* get the lowest inode numbers, the 3000 directories b*/c the highest:
    # Pass III takes a while, and its directories must not hide the files below them
    spec = {f"a{i:04d}": b"x" * i for i in range(1500)}
    spec.update({f"b{i:04d}/c/f": b"f" for i in range(1500)})
    src = build_tree(tmp_path / "src", spec)
    os.link(src / "a0007", src / "b0003/hardlink")
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    listing = run_ndump("restore", "-t", "-f", image, status=0).stdout
    listed = {line.split("\t", 1)[1] for line in listing.splitlines() if "\t" in line}
    import sqlite3
    rows = sqlite3.connect(ndump_env.state_dir / "catalog.db").execute(
        "SELECT path, ino, offset FROM files").fetchall()
    assert {"./" + p if p != "." else "." for p, _, _ in rows} == listed
    _headers_match(rows, image)


def test_an_aborted_dump_is_recorded_as_such(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {f"f{i}": os.urandom(20_000) for i in range(20)})
    # a second volume is needed and there is no operator: the dump aborts (status 3)
    run_ndump("dump", "-0", "-B", "100", "--snapshot", "none", "-f", tmp_path / "a.dump", src,
              status=3)
    dumps = json.loads(run_ndump("catalog", "list", "--json", status=0).stdout)
    assert [d["status"] for d in dumps] == ["aborted"]
    assert run_ndump("catalog", "find", "f1", status=2).stdout == ""
    assert run_ndump("catalog", "check", status=0).stdout.startswith("catalog ")
