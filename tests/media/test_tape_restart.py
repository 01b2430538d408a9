"""A dump to the tape stand-in, SIGKILLed in Pass IV and restarted: the restart asks
for a new cartridge (here the -F script recorded in the context changes it) and
writes a volume 2 that continues at the checkpoint; stock and ndump restore -r read
cartridge 1 then cartridge 2 (issue 14, acceptance 2)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from killpoint import kill_when
from stock import stock_restore
from tapehelp import change_tape_script
from trees import assert_trees_equal, build_tree, tree_state

pytestmark = [pytest.mark.compat]

TAPE = "localhost:/dev/nst0"
REPO = Path(__file__).resolve().parents[2]


def _checkpoint(state_dir: Path):
    for path in (state_dir / "contexts").glob("*.json"):
        try:
            return json.loads(path.read_text()).get("checkpoint")
        except ValueError:
            return None
    return None


def _stand_ins(tape_dir: Path) -> list[str]:
    """Stand-in processes serving cartridges in tape_dir (found by their environment)."""
    mark = f"FAKETAPE_DIR={tape_dir}".encode() + b"\0"
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and mark in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def _wait_for_stand_in_to_close(tape_dir: Path) -> None:
    """The killed dump's stand-in saves its cartridge when it sees its client gone (as st
    writes a filemark on the close); a new cartridge must not be asked for before that."""
    deadline = time.monotonic() + 60
    while _stand_ins(tape_dir):
        assert time.monotonic() < deadline, "the tape stand-in did not close its cartridge"
        time.sleep(0.05)


def test_a_killed_tape_dump_continues_on_a_new_cartridge(tmp_path, run_ndump, tape_env,
                                                          ndump_env):
    env, tape_dir = tape_env
    rng = random.Random(14)
    src = build_tree(tmp_path / "src", {f"d{i % 3}/f{i:02d}": rng.randbytes(rng.randrange(1, 40_000))
                                        for i in range(40)})
    reference = tree_state(src)
    script = change_tape_script(tmp_path, tape_dir)
    full = dict(os.environ, PYTHONPATH=str(REPO), NDUMP_CHECKPOINT_INTERVAL="0", **env)
    proc = subprocess.Popen([sys.executable, "-m", "ndump", "dump", "-0", "--snapshot", "none",
                             "-F", script, "-f", TAPE, src], env=full, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    kill_when(proc, lambda: (_checkpoint(ndump_env.state_dir) or {}).get("ino", 0) > 20,
              what="the checkpoint past inode 20")
    proc.stderr.close()
    _wait_for_stand_in_to_close(tape_dir)
    [ctx] = json.loads(run_ndump("contexts", "list", "--json", status=0).stdout)
    assert ctx["restartable"], ctx
    done = run_ndump("dump", "--restart", ctx["id"], "--force", env=env, status=0)
    assert "Volume 2 begins on localhost:/dev/nst0, continuing with inode" in done.stderr
    vols = [tape_dir / "full0.tape", tape_dir / "current.tape"]
    for i, vol in enumerate(vols, 1):
        data = b"".join(bytes.fromhex(r) for r in json.loads(vol.read_text())["items"] if r)
        (tmp_path / f"vol{i:03d}").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-M", "-f", tmp_path / "vol", "--target", out, status=0)
    assert_trees_equal(reference, out, root=False)
    stock = tmp_path / "stock"
    stock.mkdir()
    stock_restore(["-r", "-M", "-f", tmp_path / "vol"], cwd=stock)
    assert_trees_equal(reference, stock, root=False)
