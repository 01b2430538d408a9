"""Restartable dumps on a real btrfs (issue 14, acceptance 1, 3, 4 and 5).

The dumps run with NDUMP_CHECKPOINT_INTERVAL=0 (a checkpoint before every file)
so that a small tree gives many checkpoints; they are SIGKILLed once the image
has grown past a random size, which is always in Pass IV (the directories and
maps are a few blocks).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from killpoint import kill_when
from snaphelp import sh, stderr_of, wait_for
from stock import stock_restore
from trees import assert_trees_equal, tree_state

pytestmark = [pytest.mark.root, pytest.mark.btrfs, pytest.mark.compat]

FAST = {"NDUMP_CHECKPOINT_INTERVAL": "0"}
SEED = int(os.environ.get("NDUMP_TEST_SEED", time.time_ns() % 100_000))


def fill(root: Path, rng: random.Random, files: int = 120) -> int:
    """Files of random sizes in four directories, a symlink, an empty and a sparse
    file; returns the bytes of data."""
    total = 0
    for i in range(files):
        d = root / f"d{i % 4}"
        d.mkdir(exist_ok=True)
        data = rng.randbytes(rng.randrange(1, 60_000))
        (d / f"f{i:03d}").write_bytes(data)
        total += len(data)
    (root / "empty").write_bytes(b"")
    (root / "link").symlink_to("d0/f000")
    with open(root / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
    return total


def holds_flock(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds a flock on ``path`` (/proc/locks: looking takes none)."""
    ino = path.stat().st_ino
    with open("/proc/locks") as f:
        for line in f:
            words = line.split()
            if "->" not in words and "FLOCK" in words and words[4] == str(pid) \
                    and words[5].rsplit(":", 1)[-1] == str(ino):
                return True
    return False


def contexts(run_ndump) -> list[dict]:
    return json.loads(run_ndump("contexts", "list", "--json", status=0).stdout)


def kill_past(proc, image: Path, size: int) -> None:
    """SIGKILL ``proc`` once ``image`` holds ``size`` bytes."""
    kill_when(proc, lambda: image.exists() and image.stat().st_size >= size,
              what=f"{image} to reach {size} bytes")


def restored_equal(image: Path, tmp_path: Path, run_ndump, reference, name: str) -> None:
    stock = tmp_path / f"stock-{name}"
    stock.mkdir()
    stock_restore(["-r", "-f", image], cwd=stock)
    assert_trees_equal(reference, stock, root=False)
    mine = tmp_path / f"ndump-{name}"
    mine.mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", mine, status=0)
    assert_trees_equal(reference, mine, root=False)


def test_killed_three_times_in_pass_iv_the_restarts_complete_the_dump(
        btrfs_fs, start_ndump, run_ndump, tmp_path, ndump_env):
    """Acceptance 1 and 4: three SIGKILLs at random points of Pass IV, one "reboot"
    (the run directory wiped), two restarts at once (one refused); stock and ndump
    restore -r of the result equal the snapshot's tree, and so an uninterrupted
    dump's, without the writes made to the live tree after the first kill."""
    rng = random.Random(SEED)
    total = fill(btrfs_fs.vol, rng)
    reference = tree_state(btrfs_fs.vol)
    image = tmp_path / "l0.dump"
    proc = start_ndump("dump", "-0", "-u", "-f", image, btrfs_fs.vol, env=FAST)
    cid = None
    for k, (lo, hi) in enumerate([(0.15, 0.3), (0.4, 0.55), (0.65, 0.8)]):
        kill_past(proc, image, int(total * rng.uniform(lo, hi)))
        [ctx] = contexts(run_ndump)
        assert cid in (None, ctx["id"]), f"seed {SEED}"
        cid = ctx["id"]
        assert (ctx["pass"], ctx["busy"], ctx["state"], ctx["cleanup_pending"]) == \
            ("IV", False, "killed", False), ctx
        assert btrfs_fs.snapshots() == [ctx["snapshot"]]      # kept for the context
        if k == 0:
            # the live tree changes after the kill: the restarted dump reads the snapshot
            (btrfs_fs.vol / "d1" / "f001").write_bytes(b"changed after the kill")
            (btrfs_fs.vol / "new-after-kill").write_bytes(b"new")
            (btrfs_fs.vol / "d2" / "f002").unlink()
            # another dump meanwhile removes stale snapshots, but not this one
            other = tmp_path / "other"
            other.mkdir()
            (other / "x").write_bytes(b"x")
            run_ndump("dump", "-0", "--snapshot", "none", "-f", tmp_path / "other.dump", other,
                      status=0)
            assert btrfs_fs.snapshots() == [ctx["snapshot"]]
        if k == 1:
            shutil.rmtree(ndump_env.run_dir)                 # a reboot: /run is empty
        proc = start_ndump("dump", "--restart", cid, env=FAST)
        if k == 0:
            # two restarts at once: stopped while it holds the context, the first makes
            # the second refuse (and is not a step further when it goes on)
            lock = ndump_env.state_dir / "contexts" / f"{cid}.lock"

            def holding():
                assert proc.poll() is None, stderr_of(proc)
                return holds_flock(proc.pid, lock)
            wait_for(holding, what="the restart to hold the context")
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                assert contexts(run_ndump)[0]["busy"]
                second = run_ndump("dump", "--restart", cid, status=1)
                assert f"dump context {cid} is busy" in second.stderr
            finally:
                os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=300) == 0, stderr_of(proc)
    assert f"continuing {image} from byte" in stderr_of(proc)
    assert contexts(run_ndump) == []
    assert btrfs_fs.snapshots() == []                         # released at the end
    assert str(btrfs_fs.vol) in ndump_env.dumpdates.read_text()  # -u, as recorded
    restored_equal(image, tmp_path, run_ndump, reference, "restarted")


def test_delete_releases_the_snapshot_and_a_restart_after_it_is_refused(
        btrfs_fs, start_ndump, run_ndump, tmp_path):
    """Acceptance 3."""
    rng = random.Random(SEED)
    total = fill(btrfs_fs.vol, rng, files=40)
    image = tmp_path / "l0.dump"
    proc = start_ndump("dump", "-0", "-f", image, btrfs_fs.vol, env=FAST)
    kill_past(proc, image, total // 3)
    [ctx] = contexts(run_ndump)
    assert btrfs_fs.snapshots() == [ctx["snapshot"]]
    run_ndump("contexts", "delete", ctx["id"][:8], status=0)
    assert btrfs_fs.snapshots() == []
    assert contexts(run_ndump) == []
    proc = run_ndump("dump", "--restart", ctx["id"], status=1)
    assert f"no dump context {ctx['id']}" in proc.stderr


def test_a_restart_is_refused_when_its_snapshot_is_gone(btrfs_fs, start_ndump, run_ndump,
                                                        tmp_path):
    """Acceptance 5 (the snapshot is gone)."""
    total = fill(btrfs_fs.vol, random.Random(SEED), files=40)
    image = tmp_path / "l0.dump"
    proc = start_ndump("dump", "-0", "-f", image, btrfs_fs.vol, env=FAST)
    kill_past(proc, image, total // 3)
    [ctx] = contexts(run_ndump)
    sh("btrfs", "subvolume", "delete", btrfs_fs.mnt / ".ndump-snapshots" / ctx["snapshot"])
    shown = json.loads(run_ndump("contexts", "show", ctx["id"], "--json", status=0).stdout)
    assert not shown["restartable"] and "is gone" in shown["why_not"]
    proc = run_ndump("dump", "--restart", ctx["id"], status=1)
    assert "cannot be restarted" in proc.stderr and "is gone" in proc.stderr
    assert [c["id"] for c in contexts(run_ndump)] == [ctx["id"]]   # still there to delete
    run_ndump("contexts", "delete", ctx["id"], status=0)
    assert contexts(run_ndump) == []
