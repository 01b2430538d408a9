"""Restore from a dump that spans tape cartridges (issue 4): the next volume comes
from a -F script, the operator, or nobody (abort naming the volume); a wrong
volume offered is reported and asked for again.  Uses the userspace tape stand-in
(tests/faketape.py), which keeps records, filemarks and end of medium."""
import json
import os
import sys

import pytest

from trees import assert_trees_equal, build_tree

from tapehelp import change_tape_script

TAPE = "localhost:/dev/nst0"


@pytest.fixture
def three_cartridges(tmp_path, run_ndump, tape_env):
    """A dump written over three cartridges; the first one is loaded and rewound."""
    env, tape_dir = tape_env
    env = {**env, "FAKETAPE_CAPACITY": str(200 * 1024)}
    src = build_tree(tmp_path / "src", {"big": os.urandom(450_000), "d/small": b"x" * 10,
                                        "d/e/f": os.urandom(3000)})
    run_ndump("dump", "-0", "-F", change_tape_script(tmp_path, tape_dir), "-f", TAPE, src,
              env=env, status=0)
    os.rename(tape_dir / "current.tape", tape_dir / "full2.tape")
    _load(tape_dir, "full0")
    return env, tape_dir, src


def _load(tape_dir, name):
    """Put cartridge ``name`` in the drive, at the beginning of the tape."""
    state = json.loads((tape_dir / f"{name}.tape").read_text())
    state["pos"] = 0
    (tape_dir / "current.tape").write_text(json.dumps(state))
    (tape_dir / f"{name}.tape").unlink()
    (tape_dir / "loaded").write_text(name)


def _loader_script(tmp_path, tape_dir, order):
    """A restore -F script: puts the loaded cartridge back on the shelf and loads the
    next one of ``order``; logs its arguments."""
    queue = tmp_path / "queue"
    queue.write_text("\n".join(order) + "\n")
    script = tmp_path / "load-next.py"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
tapes = {str(tape_dir)!r}
with open({str(tmp_path / 'calls')!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
queue = open({str(queue)!r}).read().split()
if not queue:
    sys.exit(2)
loaded = open(os.path.join(tapes, "loaded")).read().strip()
os.rename(os.path.join(tapes, "current.tape"), os.path.join(tapes, loaded + ".tape"))
state = json.load(open(os.path.join(tapes, queue[0] + ".tape")))
state["pos"] = 0
json.dump(state, open(os.path.join(tapes, "current.tape"), "w"))
os.unlink(os.path.join(tapes, queue[0] + ".tape"))
open(os.path.join(tapes, "loaded"), "w").write(queue[0])
open({str(queue)!r}, "w").write("\\n".join(queue[1:]) + "\\n")
""")
    script.chmod(0o755)
    return script


def test_script_loads_each_next_cartridge(tmp_path, run_ndump, three_cartridges):
    env, tape_dir, src = three_cartridges
    script = _loader_script(tmp_path, tape_dir, ["full1", "full2"])
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-F", script, "-f", TAPE, "--target", out, env=env, status=0)
    assert_trees_equal(src, out)
    assert (tmp_path / "calls").read_text().splitlines() == [f"{TAPE} 2", f"{TAPE} 3"]


def test_a_wrong_cartridge_is_reported_and_asked_for_again(tmp_path, run_ndump, three_cartridges):
    env, tape_dir, src = three_cartridges
    script = _loader_script(tmp_path, tape_dir, ["full2", "full1", "full2"])
    out = tmp_path / "out"
    out.mkdir()
    proc = run_ndump("restore", "-r", "-F", script, "-f", TAPE, "--target", out, env=env,
                     status=0)
    assert "wrong volume: wanted volume 2, got volume 3" in proc.stderr
    assert_trees_equal(src, out)
    assert (tmp_path / "calls").read_text().splitlines() == [f"{TAPE} 2", f"{TAPE} 2", f"{TAPE} 3"]


def test_without_an_operator_the_restore_aborts_naming_the_volume(tmp_path, run_ndump,
                                                                   three_cartridges):
    env, tape_dir, src = three_cartridges
    out = tmp_path / "out"
    out.mkdir()
    proc = run_ndump("restore", "-x", "-f", TAPE, "--target", out, env=env, status=3)
    assert "volume #2" in proc.stderr and "-F" in proc.stderr


def test_a_script_that_refuses_aborts(tmp_path, run_ndump, three_cartridges):
    env, tape_dir, src = three_cartridges
    script = tmp_path / "no.sh"
    script.write_text("#!/bin/sh\nexit 7\n")
    script.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_ndump("restore", "-r", "-F", script, "-f", TAPE, "--target", out, env=env,
                     status=3)
    assert "exited 7" in proc.stderr and "volume 2" in proc.stderr
