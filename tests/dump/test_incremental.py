"""Issue 3: increment chains, dumpdates, and restoring a chain."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from ndump.dump.dumpdates import DumpDates
from trees import assert_trees_equal, build_tree, tree_state

pytestmark = [pytest.mark.root]


def _inodes_on(image) -> set[str]:
    """Paths of the non-directory inodes written on an image, via ndump restore -t."""
    proc = subprocess.run([sys.executable, "-m", "ndump", "restore", "-t", "-f", str(image)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return {line.split("\t", 1)[1][2:] for line in proc.stdout.splitlines() if "\t" in line}


def _tick():
    """Let the clock pass a second so each dump's changes have a later ctime."""
    time.sleep(1.05)


def _stock_restore_chain(images, where):
    where.mkdir()
    for image in images:
        proc = subprocess.run(["restore", "-r", "-y", "-f", str(image)], cwd=where,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr


def test_spec_chain_0_2_3_1_4(tmp_path, run_ndump, ndump_env):
    src = build_tree(tmp_path / "src", {"base/a": b"a", "base/b": b"b", "old/x": b"x",
                                        "keep": b"k", "dir/sub/f": b"f"})
    img = {}

    def dump(level):
        # a change made in the base dump's own second is dumped again (FORMAT §6.1):
        # keep every change a second before the dump that should first hold it
        _tick()
        img[level] = tmp_path / f"l{level}.dump"
        run_ndump("dump", f"-{level}", "-u", "-f", img[level], src, status=0)

    dump(0)
    (src / "two.txt").write_text("made before level 2")
    (src / "base/a").write_text("a changed before level 2")
    dump(2)
    (src / "three.txt").write_text("made before level 3")
    os.rename(src / "old", src / "renamed-old")
    dump(3)
    (src / "one.txt").write_text("made before level 1")
    (src / "base/b").unlink()
    os.symlink("keep", src / "newlink")
    dump(1)
    (src / "four.txt").write_text("made before level 4")
    shutil.rmtree(src / "dir/sub")
    (src / "dir/sub").write_text("a file where a directory was")
    os.chmod(src / "keep", 0o600)
    dump(4)

    on = {lvl: {p for p in _inodes_on(i) if (src / p).exists() and not (src / p).is_dir()}
          for lvl, i in img.items()}
    assert on[2] == {"two.txt", "base/a"}
    assert on[3] == {"three.txt", "renamed-old/x"} or on[3] == {"three.txt"}
    assert on[1] >= {"two.txt", "base/a", "three.txt", "one.txt", "newlink"}
    assert "keep" not in on[1]
    assert on[4] == {"four.txt", "dir/sub", "keep"}
    lines = ndump_env.dumpdates.read_text().splitlines()
    assert [l.split()[1] for l in lines] == ["0", "1", "2", "3", "4"]

    final = tree_state(src)
    _stock_restore_chain([img[0], img[1], img[4]], tmp_path / "stock")
    assert_trees_equal(final, tmp_path / "stock")
    out = tmp_path / "ndump"
    out.mkdir()
    for level in (0, 1, 4):
        run_ndump("restore", "-r", "-f", img[level], "--target", out, status=0)
    assert_trees_equal(final, out)


@pytest.mark.compat
def test_stock_dump_reads_ndump_dumpdates(tmp_path, run_ndump, ndump_env, ext4_image,
                                          mounted_ext4):
    """Stock dump parses ndump's lines and takes its incremental base from them
    (its -W lists only fstab filesystems, so the base date is the real proof)."""
    img = ext4_image(build_tree(tmp_path / "seed", {"a": b"1"}), size_mb=16)
    _dev, mnt = mounted_ext4(img)
    run_ndump("dump", "-0", "-u", "-f", tmp_path / "x", mnt, status=0)
    entry = DumpDates(ndump_env.dumpdates).read()[0]
    assert entry.name == str(mnt)
    proc = subprocess.run(["dump", "-W", "-D", str(ndump_env.dumpdates)], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "Unknown format" not in proc.stderr + proc.stdout
    proc = subprocess.run(["dump", "-1", "-D", str(ndump_env.dumpdates), "-f", "/dev/null",
                           str(mnt)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert f"Date of last level 0 dump: {time.ctime(entry.date)}" in proc.stderr, proc.stderr
    assert str(mnt) in run_ndump("dump", "-W", status=0).stdout


def test_twenty_concurrent_updates_lose_no_line(tmp_path, ndump_env):
    trees = [build_tree(tmp_path / f"t{i}", {"f": b"%d" % i}) for i in range(20)]
    # all twenty at once: a machine with less than 24 GiB allows 16 sessions (SPEC §3.6),
    # and a dump over that limit is refused, which is not what this test is about
    env = dict(os.environ, NDUMP_MAX_SESSIONS="20")
    procs = [subprocess.Popen([sys.executable, "-m", "ndump", "dump", "-0", "-u", "-q",
                               "-f", str(tmp_path / f"t{i}.dump"), str(t)], env=env,
                              stderr=subprocess.PIPE)
             for i, t in enumerate(trees)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    entries = DumpDates(ndump_env.dumpdates).read()
    assert sorted(e.name for e in entries) == sorted(str(t) for t in trees)


def test_32_level_chain_restores_exactly(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"start": b"0"})
    images = []
    for level in range(32):
        if level:
            (src / f"file{level}").write_bytes(os.urandom(100 + level))
            if level % 3 == 0:
                (src / f"file{level - 1}").unlink()
            if level % 5 == 0:
                os.rename(src / "start", src / "start2") if level == 5 else None
        image = tmp_path / f"l{level}.dump"
        run_ndump("dump", "--level", level, "-u", "-q", "-f", image, src, status=0)
        images.append(image)
    final = tree_state(src)
    _stock_restore_chain(images, tmp_path / "stock")
    assert_trees_equal(final, tmp_path / "stock")
    out = tmp_path / "ndump"
    out.mkdir()
    for image in images:
        run_ndump("restore", "-r", "-f", image, "--target", out, status=0)
    assert_trees_equal(final, out)


@pytest.mark.compat
def test_hard_link_in_two_directories_through_a_0_1_chain(tmp_path, run_ndump, ndump_env):
    """A changed file with names in two directories: the level 1 holds both
    directories (classic dump marks the parents of every name), so stock and
    ndump restore -r give one inode with the new contents under both names,
    and both directories keep their own mtimes."""
    src = build_tree(tmp_path / "src", {"d1/f": b"old contents\n", "d2/other": b"o"})
    os.link(src / "d1" / "f", src / "d2" / "g")
    for d in ("d1", "d2"):
        os.utime(src / d, (1_600_000_000, 1_600_000_000))
    _tick()                                   # the directories' ctime is before the level 0
    run_ndump("dump", "-0", "-u", "-f", tmp_path / "l0", src, status=0)
    (src / "d1" / "f").write_bytes(b"new contents, longer\n")
    run_ndump("dump", "-1", "-u", "-f", tmp_path / "l1", src, status=0)
    assert {"d1/f", "d2/g"} & _inodes_on(tmp_path / "l1")
    stock = tmp_path / "stock"
    _stock_restore_chain([tmp_path / "l0", tmp_path / "l1"], stock)
    nd = tmp_path / "nd"
    nd.mkdir()
    for image in ("l0", "l1"):
        run_ndump("restore", "-r", "-f", tmp_path / image, "--target", nd, status=0)
    for out in (stock, nd):
        f, g = os.stat(out / "d1" / "f"), os.stat(out / "d2" / "g")
        assert (out / "d2" / "g").read_bytes() == b"new contents, longer\n", out
        assert (f.st_ino, f.st_nlink) == (g.st_ino, 2), out
        for d in ("d1", "d2"):
            assert os.stat(out / d).st_mtime == os.stat(src / d).st_mtime, (out, d)
