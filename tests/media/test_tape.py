"""Tape behaviour against the userspace tape stand-in (tests/faketape.py), which
keeps record boundaries, filemarks and end of medium (issue 4, item 4)."""
import json
import os
import subprocess

import pytest

from trees import assert_trees_equal, build_tree

from tapehelp import change_tape_script

TAPE = "localhost:/dev/nst0"


def _records(tape_dir, name="current.tape"):
    return json.loads((tape_dir / name).read_text())["items"]


def _rewind(tape_dir, name="current.tape"):
    path = tape_dir / name
    state = json.loads(path.read_text())
    state["pos"] = 0
    path.write_text(json.dumps(state))


def test_each_write_is_one_record_and_a_filemark_ends_the_dump(tmp_path, run_ndump, tape_env):
    env, tape_dir = tape_env
    src = build_tree(tmp_path / "src", {"f": os.urandom(100_000)})
    run_ndump("dump", "-0", "-b", "64", "-f", TAPE, src, env=env, status=0)
    items = _records(tape_dir)
    assert items[-1] is None and None not in items[:-1]
    assert {len(bytes.fromhex(r)) for r in items[:-1]} == {65536}


def test_two_dumps_on_one_tape_and_restore_s(tmp_path, run_ndump, tape_env):
    env, tape_dir = tape_env
    one = build_tree(tmp_path / "one", {"first.txt": b"dump one\n"})
    two = build_tree(tmp_path / "two", {"second.txt": b"dump two\n", "d/x": os.urandom(5000)})
    run_ndump("dump", "-0", "-f", TAPE, one, env=env, status=0)
    run_ndump("dump", "-0", "-f", TAPE, two, env=env, status=0)
    assert _records(tape_dir).count(None) == 2
    _rewind(tape_dir)
    listing = run_ndump("restore", "-t", "-s", "2", "-f", TAPE, env=env, status=0).stdout
    assert "second.txt" in listing and "first.txt" not in listing
    _rewind(tape_dir)
    out = tmp_path / "out2"
    out.mkdir()
    run_ndump("restore", "-r", "-s", "2", "-f", TAPE, "--target", out, env=env, status=0)
    assert_trees_equal(two, out)
    _rewind(tape_dir)
    listing = run_ndump("restore", "-t", "-s", "1", "-f", TAPE, env=env, status=0).stdout
    assert "first.txt" in listing and "second.txt" not in listing


def test_blocking_factor_is_found_and_a_too_small_b_is_named(tmp_path, run_ndump, tape_env):
    env, tape_dir = tape_env
    src = build_tree(tmp_path / "src", {"f": os.urandom(50_000)})
    run_ndump("dump", "-0", "-b", "64", "-f", TAPE, src, env=env, status=0)
    _rewind(tape_dir)
    run_ndump("restore", "-t", "-f", TAPE, env=env, status=0)
    _rewind(tape_dir)
    proc = run_ndump("restore", "-t", "-b", "10", "-f", TAPE, env=env)
    assert proc.returncode == 1 and "use -b 64" in proc.stderr


def test_end_of_medium_mid_file_continues_on_the_next_tape(tmp_path, run_ndump, tape_env):
    env, tape_dir = tape_env
    env = {**env, "FAKETAPE_CAPACITY": str(200 * 1024)}
    src = build_tree(tmp_path / "src", {"big": os.urandom(450_000), "small": b"x" * 10})
    script = change_tape_script(tmp_path, tape_dir)
    proc = run_ndump("dump", "-0", "-F", script, "-f", TAPE, src, env=env, status=0)
    assert "Volume 3" in proc.stderr
    # lay the cartridges out as -M volumes of files to read them back in order
    vols = sorted(tape_dir.glob("full*.tape")) + [tape_dir / "current.tape"]
    for i, vol in enumerate(vols, 1):
        data = b"".join(bytes.fromhex(r) for r in json.loads(vol.read_text())["items"] if r)
        (tmp_path / f"vol{i:03d}").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-M", "-f", tmp_path / "vol", "--target", out, status=0)
    assert_trees_equal(src, out)
    stock = tmp_path / "stock"
    stock.mkdir()
    proc = subprocess.run(["restore", "-r", "-M", "-f", str(tmp_path / "vol")], cwd=stock,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert_trees_equal(src, stock)


def test_without_an_operator_end_of_medium_aborts_naming_the_volume(tmp_path, run_ndump, tape_env):
    env, tape_dir = tape_env
    env = {**env, "FAKETAPE_CAPACITY": str(100 * 1024)}
    src = build_tree(tmp_path / "src", {"big": os.urandom(300_000)})
    proc = run_ndump("dump", "-0", "-f", TAPE, src, env=env, status=3)
    assert "volume #2" in proc.stderr and "-F" in proc.stderr


def test_script_that_refuses_aborts(tmp_path, run_ndump, tape_env):
    env, tape_dir = tape_env
    env = {**env, "FAKETAPE_CAPACITY": str(100 * 1024)}
    src = build_tree(tmp_path / "src", {"big": os.urandom(300_000)})
    script = tmp_path / "no.sh"
    script.write_text("#!/bin/sh\nexit 7\n")
    script.chmod(0o755)
    proc = run_ndump("dump", "-0", "-F", script, "-f", TAPE, src, env=env, status=3)
    assert "exited 7" in proc.stderr
