"""Issue 3: incremental restore -r and -R (FORMAT §6.2), against stock restore."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stock import run_tool, stock_restore
from trees import IGNORED_TOP, assert_trees_equal, build_tree, tree_state

pytestmark = [pytest.mark.root]


def _tick():
    time.sleep(1.05)


def _restore_chain_stock(images, where: Path) -> Path:
    where.mkdir()
    for image in images:
        stock_restore(["-r", "-y", "-f", image], cwd=where)
    return where


def _restore_chain_ndump(run_ndump, images, where: Path) -> Path:
    where.mkdir()
    for image in images:
        run_ndump("restore", "-r", "-f", image, "--target", where, status=0)
    return where


# --- the changes made between dumps ---------------------------------------------------

def _first_changes(root: Path) -> None:
    """Creates, edits, deletes, renames of files and directories, type changes,
    hard-link changes, chmod/chown/xattr, and a swap of two names."""
    (root / "new").mkdir()
    (root / "new/n1").write_text("new file\n")
    with open(root / "keep", "a") as f:
        f.write("edited\n")
    (root / "a/f2").unlink()
    os.rename(root / "a/f1", root / "b/f1moved")
    os.rename(root / "b/sub", root / "subrenamed")
    (root / "typechg").unlink()
    (root / "typechg").mkdir()
    (root / "typechg/inside").write_text("in a directory that was a file\n")
    shutil.rmtree(root / "typechg2")
    os.symlink("keep", root / "typechg2")
    (root / "hard2").unlink()
    os.link(root / "hard1", root / "b/hard3")
    os.chmod(root / "modefile", 0o640)
    os.chown(root / "ownfile", 1234, 5678)
    os.setxattr(root / "xfile", "user.colour", b"blue")
    os.rename(root / "swap1", root / "swaptmp")
    os.rename(root / "swap2", root / "swap1")
    os.rename(root / "swaptmp", root / "swap2")


def _second_changes(root: Path) -> None:
    shutil.rmtree(root / "dirx")
    (root / "reuse").write_text("probably reuses a freed inode\n")
    os.rename(root / "subrenamed", root / "new/subdeeper")
    os.link(root / "new/n1", root / "a/n1link")
    os.unlink(root / "typechg2")
    (root / "typechg2").write_text("now a plain file\n")
    os.rename(root / "typechg", root / "typechg-moved")
    os.removexattr(root / "xfile", "user.colour")
    os.chmod(root / "b", 0o711)
    os.symlink("new/n1", root / "sym2")
    os.rename(root / "b/hard3", root / "hard2")


_START = {"a/f1": b"f1" * 100, "a/f2": b"f2", "b/sub/g": b"g" * 3000, "b/sub/deep/h": b"h",
          "hard1": b"linked", "keep": b"keep\n", "typechg": b"was a file",
          "typechg2/x": b"in a dir", "dirx/y": b"y", "dirx/z/w": b"w", "modefile": b"m",
          "ownfile": b"o", "xfile": b"x", "swap1": b"one", "swap2": b"two"}


def _start_tree(root: Path) -> Path:
    build_tree(root, _START)
    os.link(root / "hard1", root / "hard2")
    os.symlink("a/f1", root / "sym")
    return root


# --- ndump dump chains ------------------------------------------------------------------

def test_ndump_chain_with_every_kind_of_change(tmp_path, run_ndump):
    src = _start_tree(tmp_path / "src")
    images = []
    for level, change in ((0, None), (1, _first_changes), (2, _second_changes)):
        if change:
            _tick()
            change(src)
        _tick()
        images.append(tmp_path / f"l{level}.dump")
        run_ndump("dump", f"-{level}", "-u", "-f", images[-1], src, status=0)
    final = tree_state(src)
    stock = _restore_chain_stock(images, tmp_path / "stock")
    assert_trees_equal(final, stock)
    out = _restore_chain_ndump(run_ndump, images, tmp_path / "ndump")
    assert_trees_equal(final, out)
    assert not [p for p in os.listdir(out) if p.startswith("RSTTMP")]


def test_out_of_order_level_is_refused_naming_the_dump(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"f": b"1"})
    imgs = []
    for level in range(3):
        _tick()
        (src / f"f{level}").write_text(str(level))
        imgs.append(tmp_path / f"l{level}.dump")
        run_ndump("dump", f"-{level}", "-u", "-f", imgs[-1], src, status=0)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", imgs[0], "--target", out, status=0)
    high = run_ndump("restore", "-r", "-f", imgs[2], "--target", out, status=1)
    date1 = run_ndump("restore", "-t", "-v", "-f", imgs[1], status=0).stdout
    dump1 = next(line for line in date1.splitlines() if "Dump   date" in line).split(": ", 1)[1]
    assert "too high" in high.stderr and f"restore the dump made on {dump1} next" in high.stderr
    run_ndump("restore", "-r", "-f", imgs[1], "--target", out, status=0)
    run_ndump("restore", "-r", "-f", imgs[2], "--target", out, status=0)
    low = run_ndump("restore", "-r", "-f", imgs[1], "--target", out, status=1)
    assert "too low" in low.stderr and "restore next a dump based on" in low.stderr
    assert_trees_equal(src, out)


def test_sigkill_half_way_then_resume(tmp_path, run_ndump):
    spec = {f"d{i // 50}/f{i}": os.urandom(20_000 + i) for i in range(1500)}
    src = build_tree(tmp_path / "src", spec)
    l0 = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "-u", "-f", l0, src, status=0)
    _tick()
    for i in range(0, 1500, 2):
        (src / f"d{i // 50}/f{i}").write_bytes(os.urandom(30_000))
    os.rename(src / "d1", src / "d1-renamed")
    shutil.rmtree(src / "d2")
    _tick()
    l1 = tmp_path / "l1.dump"
    run_ndump("dump", "-1", "-u", "-f", l1, src, status=0)
    out = tmp_path / "out"
    out.mkdir()
    for image in (l0, l1):
        _kill_half_way(image, out)
        state = (out / "restoresymtable").read_bytes().split(b"\n", 1)[1]
        assert b'"state":"extracting"' in state
        run_ndump("restore", "-R", "-f", image, "--target", out, status=0)
    assert_trees_equal(src, out)
    stock = _restore_chain_stock([l0, l1], tmp_path / "stock")
    assert_trees_equal(stock, out)


def _kill_half_way(image: Path, out: Path) -> None:
    """Start restore -r and SIGKILL it once it extracts files (the table says
    "extracting" for this dump) and a few hundred names were written."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-m", "ndump", "restore", "-r", "-f", str(image),
                             "--target", str(out)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    start = time.time()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if _extracting(out) and _changed_since(out, start) > 300:
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the restore ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


def _extracting(out: Path) -> bool:
    try:
        return b'"state":"extracting"' in (out / "restoresymtable").read_bytes()
    except FileNotFoundError:
        return False


def _changed_since(root: Path, since: float) -> int:
    """How many files under root were made (or changed status) after ``since``."""
    n = 0
    for d, _, files in os.walk(root):
        for f in files:
            try:
                n += os.lstat(os.path.join(d, f)).st_ctime > since
            except FileNotFoundError:
                pass
    return n


def _files_below(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


# --- stock dump chains --------------------------------------------------------------------

def _mount(dev: str, mnt: Path):
    run_tool(["mount", "-t", "ext4", dev, mnt])


def _umount(mnt: Path):
    for _ in range(20):
        if run_tool(["umount", mnt], check=False).returncode == 0:
            return
        time.sleep(0.1)
    run_tool(["umount", mnt])


def _metadata_only_records(image: Path) -> int:
    from ndump.format import FormatReader
    with open(image, "rb") as f:
        reader = FormatReader(f.read)
        reader.read_maps()
        n = 0
        while (rec := reader.next_record()) is not None:
            n += rec.header.is_metaonly
            reader.skip(rec)
    return n


@pytest.mark.compat
@pytest.mark.parametrize("metadata_only", [False, True], ids=["plain", "dump-m"])
def test_stock_dump_chain_equals_stock_restore(tmp_path, run_ndump, ext4_image, metadata_only):
    """Levels 0, 1, 2 by stock dump of an ext4 loop filesystem; with dump -m, files
    whose data did not change (chmod, chown, xattr, rename) are metadata-only records."""
    img = ext4_image(_start_tree(tmp_path / "seed"), size_mb=16)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    dumpdates = tmp_path / "dumpdates"
    images = []
    dev = run_tool(["losetup", "--find", "--show", img]).stdout.strip()
    try:
        for level, change in ((0, None), (1, _first_changes), (2, _second_changes)):
            if change:
                _tick()
                _mount(dev, mnt)
                try:
                    change(mnt)
                    os.setxattr(mnt / "keep", "user.level", b"%d" % level)
                finally:
                    _umount(mnt)
            _tick()
            images.append(tmp_path / f"stock-l{level}.dump")
            extra = ["-m"] if metadata_only and level else []
            run_tool(["dump", f"-{level}", *extra, "-u", "-D", dumpdates, "-f", images[-1], dev])
    finally:
        run_tool(["losetup", "--detach", dev], check=False)
    if metadata_only:
        assert _metadata_only_records(images[1]) >= 3
    stock = _restore_chain_stock(images, tmp_path / "stock")
    out = _restore_chain_ndump(run_ndump, images, tmp_path / "ndump")
    assert_trees_equal(stock, out)
    assert (out / "new/subdeeper/deep/h").read_bytes() == b"h"
    assert not (out / "dirx").exists()


@pytest.mark.compat
def test_golden_level_1_after_rename(tmp_path, run_ndump, golden_dir):
    images = [golden_dir / "l0-basic.dump", golden_dir / "l1-after-rename.dump"]
    stock = _restore_chain_stock(images, tmp_path / "stock")
    out = _restore_chain_ndump(run_ndump, images, tmp_path / "ndump")
    # stock restore loses the large device number of bigdev (300, 70000 -> 0, 0)
    assert_trees_equal(stock, out, ignore=IGNORED_TOP | {"bigdev"})
    assert os.major(os.lstat(out / "bigdev").st_rdev) == 300
    assert (out / "renamed.txt").exists() and not (out / "text.txt").exists()
    assert (out / "dir1/dir2-moved").is_dir() and not (out / "hard/sub/b").exists()
    assert (out / "newdir/new-file").exists()


def test_compare_lists_each_difference(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"a", "d/b": b"b", "hard": b"h"})
    os.link(src / "hard", src / "d/hard2")
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "-f", image, src, status=0)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", out, status=0)
    run_ndump("restore", "-C", "-f", image, "--target", out, status=0)
    (out / "d/hard2").unlink()
    (out / "d/hard2").write_bytes(b"h")
    (out / "d/added").write_bytes(b"new")
    os.chmod(out / "a", 0o600)
    proc = run_ndump("restore", "-C", "-f", image, "--target", out, status=2)
    assert ("./d/hard2: is no longer a hard link to ./hard" in proc.stderr
            or "./hard: is no longer a hard link to ./d/hard2" in proc.stderr)
    assert "./d/added: not on the tape" in proc.stderr
    assert "./a: mode changed" in proc.stderr


def test_a_run_stopped_while_names_change_is_not_resumed(tmp_path, run_ndump, monkeypatch):
    """Killed between the marker and the checkpoint, -R refuses rather than guess."""
    from ndump.errors import Interrupted
    from ndump.report import Reporter
    from ndump.restore import RestoreOptions, incremental, run_restore
    from ndump.settings import Settings

    src = build_tree(tmp_path / "src", {"a/x": b"x", "b": b"b"})
    l0, l1 = tmp_path / "l0.dump", tmp_path / "l1.dump"
    run_ndump("dump", "-0", "-u", "-f", l0, src, status=0)
    _tick()
    os.rename(src / "a", src / "a2")
    _tick()
    run_ndump("dump", "-1", "-u", "-f", l1, src, status=0)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", l0, "--target", out, status=0)

    def stop(self):
        raise Interrupted(9)
    monkeypatch.setattr(incremental._NameUpdate, "place", stop)
    with pytest.raises(Interrupted):
        run_restore(RestoreOptions(mode="r", file=str(l1), target=out), Settings(run_dir=tmp_path),
                    Reporter("RESTORE", quiet=True))
    proc = run_ndump("restore", "-R", "-f", l1, "--target", out, status=1)
    assert "cannot be resumed" in proc.stderr and "level 0" in proc.stderr
    proc = run_ndump("restore", "-r", "-f", l1, "--target", out, status=1)
    assert "interrupted" in proc.stderr


def test_an_incremental_cut_in_its_directories_changes_nothing(tmp_path, run_ndump):
    from ndump.format import FormatReader
    src = build_tree(tmp_path / "src", {"a/x": b"x", "b/y": b"y", "c": b"c"})
    l0, l1 = tmp_path / "l0.dump", tmp_path / "l1.dump"
    run_ndump("dump", "-0", "-u", "-f", l0, src, status=0)
    _tick()
    (src / "c").unlink()
    (src / "a/new").write_bytes(b"n")
    (src / "b/y2").write_bytes(b"y2")
    _tick()
    run_ndump("dump", "-1", "-u", "-f", l1, src, status=0)
    with open(l1, "rb") as f:
        reader = FormatReader(f.read)
        reader.read_maps()
        reader.next_record()                    # the root directory's header
        cut = (reader.blocks_read + 1) * 1024   # inside the next directory
    data = l1.read_bytes()
    l1.write_bytes(data[:cut])
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", l0, "--target", out, status=0)
    before = tree_state(out)
    proc = run_ndump("restore", "-r", "-f", l1, "--target", out, status=1)
    assert "nothing was changed" in proc.stderr
    assert_trees_equal(before, out)
