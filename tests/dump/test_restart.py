"""Restartable dumps of a tree read live (--snapshot none, so restarts need --force):
the refusal rules, a dump stopped by a signal or a full medium, and a dump to a
pipe continued as a second stream (issue 14, acceptance 2 and 5).  The btrfs
cases are in tests/snapshot/test_restart_btrfs.py; the tape stand-in in
tests/media/test_tape_restart.py."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ndump.catalog import Catalog
from killpoint import kill_when
from stock import stock_restore
from trees import assert_trees_equal, tree_state

pytestmark = [pytest.mark.compat]             # stock restore reads what the restarts wrote

REPO = Path(__file__).resolve().parents[2]
FAST = {"NDUMP_CHECKPOINT_INTERVAL": "0"}
SEED = int(os.environ.get("NDUMP_TEST_SEED", time.time_ns() % 100_000))


def fill(root: Path, rng: random.Random, files: int = 60) -> int:
    total = 0
    for i in range(files):
        d = root / f"d{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randrange(1, 50_000))
        (d / f"f{i:03d}").write_bytes(data)
        total += len(data)
    return total


@pytest.fixture
def start(tmp_path):
    """``start(*args, stdout=None) -> Popen``: ndump in the background, stderr to a file."""
    procs = []

    def run(*args, stdout=None, env=None):
        full = dict(os.environ, PYTHONPATH=str(REPO), **{**FAST, **(env or {})})
        err = open(tmp_path / f"bg{len(procs)}.err", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "ndump", *map(str, args)], env=full,
                                stdin=subprocess.DEVNULL, stdout=stdout or subprocess.DEVNULL,
                                stderr=err, cwd=tmp_path, start_new_session=True)
        proc.err = err
        procs.append(proc)
        return proc
    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.err.close()


def err_of(proc) -> str:
    proc.err.flush()
    return Path(proc.err.name).read_text(errors="replace")


def wait_for(predicate, proc, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, f"ndump ended before {what}: {err_of(proc)}"
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def context_files(state_dir: Path) -> list[Path]:
    return sorted((state_dir / "contexts").glob("*.json"))


def checkpoint_of(state_dir: Path) -> dict | None:
    for path in context_files(state_dir):
        try:
            return json.loads(path.read_text()).get("checkpoint")
        except ValueError:
            return None
    return None


def contexts(run_ndump) -> list[dict]:
    return json.loads(run_ndump("contexts", "list", "--json", status=0).stdout)


def killed_in_pass_iv(start, tmp_path, ndump_env, src, image, fraction=0.4) -> dict:
    """A level-0 dump of src to image, SIGKILLed in Pass IV; its context."""
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    proc = start("dump", "-0", "--snapshot", "none", "-f", image, src)
    kill_when(proc, lambda: checkpoint_of(ndump_env.state_dir) and image.exists()
              and image.stat().st_size > total * fraction, what="Pass IV")
    [path] = context_files(ndump_env.state_dir)
    return json.loads(path.read_text())


def catalog_entries(run_ndump, ndump_env, tmp_path: Path, src: Path):
    """The restarted dump's catalog entry and positions, then those of an uninterrupted
    dump of ``src`` made now into a catalog of its own."""
    run_ndump("dump", "-0", "--snapshot", "none", "-A", tmp_path / "other.db", "-f",
              tmp_path / "whole.dump", src, status=0)
    with Catalog(ndump_env.state_dir / "catalog.db", writable=False) as cat:
        [dump] = cat.dumps()
        restarted = cat.positions(dump.id)
    with Catalog(tmp_path / "other.db", writable=False) as cat:
        [whole] = cat.dumps()
        return dump, restarted, whole, cat.positions(whole.id)


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    fill(root, random.Random(SEED))
    return root


def test_a_tree_read_live_restarts_only_with_force(start, tmp_path, ndump_env, run_ndump, src):
    image = tmp_path / "l0.dump"
    reference = tree_state(src)
    ctx = killed_in_pass_iv(start, tmp_path, ndump_env, src, image)
    before = image.stat().st_size
    proc = run_ndump("dump", "--restart", ctx["id"], status=1)
    assert proc.stderr.strip() == (f"DUMP: dump context {ctx['id']} read the live tree {src},"
                                   " which may have changed since: restart it only with --force")
    proc = run_ndump("dump", "--restart", ctx["id"], "--force", "-f", tmp_path / "x", status=1)
    assert proc.stderr.strip() == ("DUMP: --restart goes on with the options the dump was"
                                   " started with; leave out --file")
    proc = run_ndump("dump", "--restart", ctx["id"], "--force", status=0)
    assert "is read live (no snapshot)" in proc.stderr
    offset = ctx["checkpoint"]["sink"]["vol_bytes"]
    assert f"continuing {image} from byte {offset}" in proc.stderr and offset <= before
    assert contexts(run_ndump) == []
    out = tmp_path / "out"
    out.mkdir()
    stock_restore(["-r", "-f", image], cwd=out)
    assert_trees_equal(reference, out, root=False)
    # the catalog: one complete entry, the file positions of an uninterrupted dump
    dump, restarted, whole, uninterrupted = catalog_entries(run_ndump, ndump_env, tmp_path, src)
    assert (dump.status, dump.context, dump.files) == ("done", ctx["id"], whole.files)
    assert restarted == uninterrupted


def test_checkpoints_made_beside_the_dump_restart_exactly(start, tmp_path, ndump_env,
                                                         run_ndump):
    """With an interval above 0 a checkpoint's fsyncs and context run in a thread while
    the dump goes on; killed at a random point (a checkpoint may be half made), the
    restart still gives the tree and the catalog positions of an uninterrupted dump."""
    rng = random.Random(SEED)
    src = tmp_path / "big"
    total = fill(src, rng, files=1500)      # a dump long enough for several checkpoints
    reference = tree_state(src)
    image = tmp_path / "l0.dump"
    proc = start("dump", "-0", "--snapshot", "none", "-f", image, src,
                 env={"NDUMP_CHECKPOINT_INTERVAL": "0.01"})
    at = total * rng.uniform(0.2, 0.5)
    kill_when(proc, lambda: checkpoint_of(ndump_env.state_dir) and image.exists()
              and image.stat().st_size > at, what=f"Pass IV (seed {SEED})")
    [ctx] = contexts(run_ndump)
    assert ctx["restartable"], ctx
    run_ndump("dump", "--restart", ctx["id"], "--force", status=0)
    for name, restore in (("stock", None), ("mine", run_ndump)):
        out = tmp_path / name
        out.mkdir()
        if restore is None:
            stock_restore(["-r", "-f", image], cwd=out)
        else:
            restore("restore", "-r", "-f", image, "--target", out, status=0)
        assert_trees_equal(reference, out, root=False)
    _, restarted, _, uninterrupted = catalog_entries(run_ndump, ndump_env, tmp_path, src)
    assert restarted == uninterrupted


@pytest.mark.parametrize("options", [["-z"], ["-j", "-M", "-B", "300"]],
                         ids=["zlib", "bzip2-multi-volume"])
def test_compressed_and_multi_volume_dumps_restart_on_their_files(
        start, tmp_path, ndump_env, run_ndump, src, options):
    """Killed once a checkpoint lies past the first volume (or a third of the way)."""
    multi = "-M" in options
    image = tmp_path / ("vol" if multi else "l0.dump")
    reference = tree_state(src)
    proc = start("dump", "-0", "--snapshot", "none", *options, "-f", image, src)
    kill_when(proc, lambda: (checkpoint_of(ndump_env.state_dir) or {}).get(
        "sink", {}).get("volume" if multi else "vol_records", 0) >= (2 if multi else 30),
        what="a checkpoint far enough")
    [ctx] = contexts(run_ndump)
    run_ndump("dump", "--restart", ctx["id"], "--force", status=0)
    stock = tmp_path / "stock"
    stock.mkdir()
    stock_restore(["-r", *(["-M"] if multi else []), "-f", image], cwd=stock)
    assert_trees_equal(reference, stock, root=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    run_ndump("restore", "-r", *(["-M"] if multi else []), "-f", image, "--target", mine,
              status=0)
    assert_trees_equal(reference, mine, root=False)


def test_stopped_before_pass_iv_the_context_is_cleanup_and_not_restartable(
        start, tmp_path, ndump_env, run_ndump, src):
    """A dump writing into a FIFO nobody reads blocks in Pass III; killed there."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = start("dump", "-0", "--snapshot", "none", "-f", fifo, src)
    wait_for(lambda: context_files(ndump_env.state_dir) and
             json.loads(context_files(ndump_env.state_dir)[0].read_text())["dump_pass"] == "III",
             proc, "Pass III")
    [busy] = contexts(run_ndump)
    assert busy["busy"] and not busy["cleanup_pending"]
    refused = run_ndump("contexts", "delete", busy["id"], status=1)
    assert refused.stderr == (f"NDUMP: dump context {busy['id']} is busy: another ndump process"
                              " is running it\n")
    proc.kill()
    proc.wait()
    [ctx] = contexts(run_ndump)
    assert (ctx["pass"], ctx["busy"], ctx["cleanup_pending"], ctx["restartable"]) == \
        ("III", False, True, False)
    proc = run_ndump("dump", "--restart", ctx["id"], "--force", status=1)
    assert ("cannot be restarted: the dump stopped in Pass III, before any file data was"
            " written") in proc.stderr
    run_ndump("dump", "-0", "--snapshot", "none", "-f", tmp_path / "next.dump", src, status=0)
    assert contexts(run_ndump) == []                          # cleaned up by the next dump


def test_a_corrupt_context_is_refused_listed_and_deleted(start, tmp_path, ndump_env, run_ndump,
                                                         src):
    ctx = killed_in_pass_iv(start, tmp_path, ndump_env, src, tmp_path / "l0.dump")
    path = ndump_env.state_dir / "contexts" / f"{ctx['id']}.json"
    path.write_bytes(path.read_bytes()[:100])
    proc = run_ndump("dump", "--restart", ctx["id"], "--force", status=1)
    assert f"dump context {ctx['id']} is corrupt" in proc.stderr
    [listed] = contexts(run_ndump)
    assert (listed["state"], listed["restartable"]) == ("corrupt", False)
    run_ndump("contexts", "delete", ctx["id"], status=0)
    assert contexts(run_ndump) == []
    assert list((ndump_env.state_dir / "contexts").iterdir()) == []


class _Planted:
    """Unpickling this would run a command: a hostile selection record."""

    def __reduce__(self):
        return (os.system, ("touch /nonexistent-dir/never",))


@pytest.mark.parametrize("damage", ["truncated", "hostile", "group-writable"])
def test_a_damaged_selection_record_is_refused_never_run(start, tmp_path, ndump_env, run_ndump,
                                                          src, damage):
    import pickle
    ctx = killed_in_pass_iv(start, tmp_path, ndump_env, src, tmp_path / "l0.dump")
    path = ndump_env.state_dir / "contexts" / f"{ctx['id']}.sel"
    marker = tmp_path / "ran"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:50])
    elif damage == "hostile":
        planted = _Planted()
        planted.__class__.__reduce__ = lambda self: (os.system, (f"touch {marker}",))
        path.write_bytes(pickle.dumps(planted))
    else:
        path.chmod(0o664)
    proc = run_ndump("dump", "--restart", ctx["id"], "--force", status=1)
    assert f"dump context {ctx['id']} cannot be restarted: its inode selection" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("swap", ["other file", "shorter"])
def test_a_restart_on_another_file_is_refused(start, tmp_path, ndump_env, run_ndump, src, swap):
    image = tmp_path / "l0.dump"
    ctx = killed_in_pass_iv(start, tmp_path, ndump_env, src, image)
    size = image.stat().st_size
    if swap == "other file":
        # another dump (its label differs: two dumps of one tree in one second are the same)
        run_ndump("dump", "-0", "--snapshot", "none", "--no-catalog", "-L", "other", "-f", image,
                  src, status=0)
        why = f"cannot be restarted on {image}: it is not volume 1 of that dump"
    else:
        os.truncate(image, ctx["checkpoint"]["sink"]["vol_bytes"] - 1)
        why = f"cannot continue on {image}: it holds"
    proc = run_ndump("dump", "--restart", ctx["id"], "--force", status=1)
    assert why in proc.stderr
    assert [c["id"] for c in contexts(run_ndump)] == [ctx["id"]]
    del size


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_in_pass_iv_leaves_a_restartable_context_and_says_how(
        start, tmp_path, ndump_env, run_ndump, src, signo):
    image = tmp_path / "l0.dump"
    reference = tree_state(src)
    proc = start("dump", "-0", "--snapshot", "none", "--json", tmp_path / "result.json",
                 "-f", image, src)
    wait_for(lambda: checkpoint_of(ndump_env.state_dir), proc, "a checkpoint")
    proc.send_signal(signo)
    assert proc.wait(timeout=60) == 3
    [ctx] = contexts(run_ndump)
    assert json.loads((tmp_path / "result.json").read_text())["context_id"] == ctx["id"]
    assert (ctx["state"], ctx["busy"], ctx["restartable"]) == ("interrupted", False, True)
    assert f"DUMP: dump context {ctx['id']} can be restarted from inode" in err_of(proc)
    assert f"ndump dump --restart {ctx['id']}" in err_of(proc)
    run_ndump("dump", "--restart", ctx["id"], "--force", status=0)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", out, status=0)
    assert_trees_equal(reference, out, root=False)


def test_a_full_medium_without_an_operator_leaves_a_restartable_context(
        start, tmp_path, ndump_env, run_ndump, src):
    proc = start("dump", "-0", "--snapshot", "none", "-B", "600", "-f", tmp_path / "l0.dump", src)
    assert proc.wait(timeout=120) == 3
    [ctx] = contexts(run_ndump)
    assert (ctx["state"], ctx["restartable"]) == ("interrupted", True)
    assert "volume #2" in ctx["reason"], ctx
    assert f"ndump dump --restart {ctx['id']}" in err_of(proc)


def test_a_dump_to_a_pipe_continues_as_a_second_stream(start, tmp_path, ndump_env, run_ndump,
                                                       src):
    """Acceptance 2 (pipe): part 1 is cut at a random byte after the checkpoint (mid-record,
    as a SIGKILL leaves a pipe's reader), part 2 is the restart's stream; stock and ndump
    restore -r -M read them as volumes 1 and 2."""
    rng = random.Random(SEED)
    reference = tree_state(src)
    part1 = tmp_path / "part001"
    with open(part1, "wb") as out:
        proc = start("dump", "-0", "--snapshot", "none", "-f", "-", src, stdout=out)
        total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
        at = total * rng.uniform(0.2, 0.7)
        kill_when(proc, lambda: checkpoint_of(ndump_env.state_dir) and part1.stat().st_size > at,
                  what=f"Pass IV (seed {SEED})")
    ck = checkpoint_of(ndump_env.state_dir)
    offset = ck["sink"]["vol_bytes"]
    cut = rng.randrange(offset, part1.stat().st_size + 1)
    os.truncate(part1, cut)
    [ctx] = contexts(run_ndump)
    with open(tmp_path / "part002", "wb") as out:
        restart = start("dump", "--restart", ctx["id"], "--force", stdout=out)
        assert restart.wait(timeout=120) == 0, err_of(restart)
    assert "Volume 2 begins on -, continuing with inode" in err_of(restart)
    # stock restore joins a fragment of a record at the end of a volume to the next
    # volume's bytes (a file's data then goes wrong from there, silently): as
    # ndump-contexts(8) says, part 1 is cut back to a whole 1 KiB record for it
    trimmed = tmp_path / "trimmed"
    trimmed.mkdir()
    (trimmed / "part001").write_bytes(part1.read_bytes()[:cut - cut % 1024])
    shutil.copyfile(tmp_path / "part002", trimmed / "part002")
    stock = tmp_path / "stock"
    stock.mkdir()
    proc = stock_restore(["-r", "-M", "-f", trimmed / "part"], cwd=stock, check=False)
    assert proc.returncode == 0, f"seed {SEED}, cut at {cut}, checkpoint at {offset}: {proc}"
    assert_trees_equal(reference, stock, root=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    run_ndump("restore", "-r", "-M", "-f", tmp_path / "part", "--target", mine, status=0)
    assert_trees_equal(reference, mine, root=False)


def test_unknown_contexts_are_one_clear_line(run_ndump, ndump_env):
    for argv in (["contexts", "show", "zzzz"], ["contexts", "delete", "0123"],
                 ["dump", "--restart", "01234567-89ab-cdef-0123-456789abcdef"]):
        proc = run_ndump(*argv, status=1)
        assert len(proc.stderr.splitlines()) == 1 and "dump context" in proc.stderr, proc.stderr
    assert run_ndump("contexts", "list", status=0).stdout == "no dump contexts\n"
    assert json.loads(run_ndump("contexts", "list", "--json", status=0).stdout) == []


def test_a_state_directory_that_cannot_hold_contexts_is_a_warning(tmp_path, run_ndump, src):
    state = tmp_path / "not-a-directory"
    state.write_text("")
    proc = run_ndump("dump", "-0", "--snapshot", "none", "-f", tmp_path / "l0.dump", src,
                     env={"NDUMP_STATE_DIR": str(state)}, status=0)
    assert (f"DUMP: warning: cannot keep dump contexts in {state}/contexts: not a directory;"
            " this dump cannot be restarted") in proc.stderr
