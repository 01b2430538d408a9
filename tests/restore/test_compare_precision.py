"""restore -C: modification times compared at the precision the restore that made the
tree could give (--time-precision, auto fallback to the microsecond), and nodump files
left out of an incremental are not "made after the dump"."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from stock import stock_restore

NS = 1_600_000_000_123_456_789          # sub-microsecond part: 789 ns


def _tree(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i, name in enumerate(("a", "b", "d/c")):
        (src / name).write_text(name)
        os.utime(src / name, ns=(NS, NS + i * 1000))
    return src


def _dump(run_ndump, tmp_path, src, *args):
    image = tmp_path / "x.dump"
    run_ndump("dump", *args, "-f", image, "--snapshot", "none", src, status=0)
    return image


def _to_microseconds(root):
    """What a restore that sets times with utimes() leaves (stock restore)."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns // 1000 * 1000))


@pytest.fixture
def microsecond_tree(tmp_path, run_ndump, restore):
    src = _tree(tmp_path)
    image = _dump(run_ndump, tmp_path, src, "-0")
    out = tmp_path / "out"
    out.mkdir()
    assert restore(image, "r", target=out).status == 0
    _to_microseconds(out)
    return image, out


def test_auto_falls_back_to_the_microsecond_and_says_so(microsecond_tree, restore):
    image, out = microsecond_tree
    r = restore(image, "C", target=out)
    assert r.status == 0, r.err
    assert "3 files differ from the dump only below the microsecond" in r.err
    assert "mtime changed" not in r.err


@pytest.mark.parametrize("precision, status", [("ns", 2), ("us", 0), ("s", 0)])
def test_explicit_precision(precision, status, microsecond_tree, restore):
    image, out = microsecond_tree
    r = restore(image, "C", target=out, time_precision=precision)
    assert r.status == status, r.err
    assert r.err.count("mtime changed") == (3 if status else 0)
    assert "below the microsecond" not in r.err


def test_auto_reports_all_when_one_differs_by_more(microsecond_tree, restore):
    image, out = microsecond_tree
    st = os.stat(out / "b")
    os.utime(out / "b", ns=(st.st_atime_ns, st.st_mtime_ns + 5000))
    r = restore(image, "C", target=out)
    assert r.status == 2
    lines = sorted(line for line in r.err.splitlines() if "mtime changed" in line)
    assert lines == ["RESTORE: ./a: mtime changed (below the microsecond)",
                     "RESTORE: ./b: mtime changed",
                     "RESTORE: ./d/c: mtime changed (below the microsecond)"]


@pytest.mark.root
@pytest.mark.compat
def test_tree_restored_by_stock_restore_compares_clean(tmp_path, run_ndump, restore):
    src = _tree(tmp_path)
    image = _dump(run_ndump, tmp_path, src, "-0")
    out = tmp_path / "stock"
    out.mkdir()
    stock_restore(["-r", "-y", "-f", image], cwd=out)
    r = restore(image, "C", target=out)
    assert r.status == 0, r.err
    assert "3 files differ from the dump only below the microsecond" in r.err
    assert restore(image, "C", target=out, time_precision="ns").status == 2


def test_incremental_compare_skips_nodump_files(tmp_path, run_ndump, restore):
    src = _tree(tmp_path)
    _dump(run_ndump, tmp_path, src, "-0", "-u")
    time.sleep(1.1)                       # level 1 takes what changed after the level 0 began
    (src / "skipme").write_text("not for the dump")
    assert subprocess.run(["chattr", "+d", str(src / "skipme")]).returncode == 0
    (src / "a").write_text("changed")
    image = _dump(run_ndump, tmp_path, src, "-1", "-u")
    r = restore(image, "C", target=src)
    assert r.status == 0, r.err
    (src / "new").write_text("made after the dump")
    r = restore(image, "C", target=src)
    assert r.status == 2
    assert [line for line in r.err.splitlines() if "not on the tape" in line] == [
        "RESTORE: ./new: not on the tape (made after the dump)"]
