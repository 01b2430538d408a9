"""Several processes restore the file part of a big image: same result as one."""
from __future__ import annotations

import os

import pytest

from craft import Craft
from ndump.restore import parallel
from ndump.restore.symtab import SymbolTable
from trees import diff_trees

N = 400


def _big() -> tuple[Craft, dict[int, bytes]]:
    img = Craft()
    subdirs = {f"d{i}": 3 + i for i in range(4)}
    img.dir(2, dict(subdirs, hardlinked=100))
    content = {}
    for i, d in enumerate(subdirs.values()):
        names = {f"f{ino}": ino for ino in range(1000 + i * N // 4, 1000 + (i + 1) * N // 4)}
        names["another-name"] = 100
        img.dir(d, names)
    img.file(100, b"one inode, five names", nlink=5)
    for ino in range(1000, 1000 + N):
        content[ino] = os.urandom(3000 + ino % 7 * 1000)
        img.file(ino, content[ino], xattrs=[("user.n", b"%d" % ino)] if ino % 50 == 0 else ())
    return img, content


@pytest.fixture
def split_small(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_RANGE", 64 << 10)
    monkeypatch.setattr(parallel, "_cpus", lambda: 4)


def test_cut_points_are_inode_headers(split_small, image_file):
    from ndump.restore.volumes import DumpInput
    from ndump.report import Reporter
    from ndump.restore.dirs import read_dirs
    from ndump.settings import Settings
    import io
    img, _ = _big()
    path = image_file(img)
    with DumpInput(str(path), Reporter("RESTORE", stream=io.StringIO()), Settings()) as dump:
        dump.read_maps()
        read_dirs(dump.reader, lambda p, r: None, {})
        targets = parallel.plan(dump, dump.reader)
        cuts = parallel.find_cuts(dump.medium.fd, dump.reader, targets)
    assert len(targets) == 3 and len(cuts) == 3
    assert all(cut >= target for cut, target in zip(cuts, targets))
    starts = {off // 1024 for ino in range(1000, 1000 + N) for off in img.offsets[ino][:1]}
    assert set(cuts) <= starts


def test_parallel_equals_single(split_small, restore, image_file, tmp_path, monkeypatch):
    img, content = _big()
    path = image_file(img)
    par = tmp_path / "par"
    par.mkdir()
    r = restore(path, "r", target=par, verbose=1)
    assert r.status == 0, r.err
    assert "extracting with 4 processes" in r.err
    monkeypatch.setattr(parallel, "MAX_WORKERS", 1)
    one = tmp_path / "one"
    one.mkdir()
    assert restore(path, "r", target=one).status == 0
    assert diff_trees(one, par, flags=True, atime=True) == []
    assert os.stat(par / "hardlinked").st_nlink == 5
    tables = []
    for where in (par, one):
        fd = os.open(where, os.O_RDONLY)
        try:
            tables.append(SymbolTable.load(fd))
        finally:
            os.close(fd)
    assert all(ino in tables[0].modes for ino in content)
    # the workers' modes came back intact: the same table as one process writes
    assert tables[0].modes == tables[1].modes
    assert tables[0].dirs == tables[1].dirs


def test_problems_in_a_worker_range_are_reported(split_small, restore, image_file, tmp_path):
    img, content = _big()
    data = bytearray(img.build())
    late = 1000 + N - 10                          # in the last worker's range
    data[img.offsets[late][0] + 800] ^= 1         # damage its TS_INODE header
    r = restore(image_file(bytes(data)), "r")
    assert r.status == 2
    assert f"(inode {late}) not found on tape" in r.err
    assert r.err.count("resync") == 1, r.err
    out = tmp_path / "out"
    missing = [ino for ino in content if not any((out / f"d{i}" / f"f{ino}").exists() for i in range(4))]
    assert missing == [late]


def test_a_chain_broken_before_the_workers_starts_leaves_all_to_one_process(
        split_small, restore, image_file, tmp_path):
    # the workers walk the header chain to find where they start: broken early,
    # none finds a start, each says so, and this process restores everything
    img, content = _big()
    data = bytearray(img.build())
    early = 1005
    data[img.offsets[early][0] + 800] ^= 1          # damage its TS_INODE header
    r = restore(image_file(bytes(data)), "r", verbose=1)
    assert r.status == 2
    assert "extracting with 4 processes" in r.err
    assert f"(inode {early}) not found on tape" in r.err
    out = tmp_path / "out"
    restored = {ino for ino in content for i in range(4) if (out / f"d{i}" / f"f{ino}").exists()}
    assert restored == set(content) - {early}
    assert all((out / f"d{(ino - 1000) * 4 // N}" / f"f{ino}").read_bytes() == content[ino]
               for ino in restored)


def test_truncated_in_a_worker_range_aborts(split_small, restore, image_file, tmp_path):
    img, content = _big()
    data = img.build()
    cut = img.offsets[1000 + N - 3][0] + 1024 + 100
    r = restore(image_file(data[:cut]), "r")
    assert r.status == 3
    assert r.outcome.aborted.startswith("the dump ends early")
    assert f"(inode {1000 + N - 1}) not restored" in r.err
    assert not (tmp_path / "out/restoresymtable").read_text().count('"state":"complete"')


def test_no_split_for_small_images(restore, image_file, tmp_path):
    img, _ = _big()
    r = restore(image_file(img), "r", verbose=1)
    assert r.status == 0 and "processes" not in r.err


def test_fork_failure_falls_back_to_one_process(split_small, restore, image_file, tmp_path,
                                                 monkeypatch):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(os, "fork", no_fork)
    img, content = _big()
    r = restore(image_file(img), "r")
    assert r.status == 0, r.err
    assert sum(len(os.listdir(tmp_path / "out" / f"d{i}")) for i in range(4)) == N + 4
