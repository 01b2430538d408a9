"""Tape behaviour against the userspace tape stand-in (tests/faketape.py), which
keeps record boundaries, filemarks and end of medium (issue 4, item 4)."""
import json
import os
import subprocess

import pytest

from ndump.media.tape import first_read_failed, read_refused, write_refused
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


def test_fixed_block_mode_names_the_b_to_use_when_writing_and_reading(tmp_path, run_ndump, tape_env):
    """A drive in fixed-block mode with 64 KiB blocks (mt setblk 65536): -b 32 records
    are refused (EINVAL, as st does); the message says why and what to use, read from
    the drive's block size through rmt's sD.  A -b 64 dump restores, without -b and
    with -b 128; restore -b 16 names -b 64."""
    env, tape_dir = tape_env
    env = {**env, "FAKETAPE_BLOCK": "65536"}
    src = build_tree(tmp_path / "src", {"f": os.urandom(300_000), "g": b"g" * 5000})
    proc = run_ndump("dump", "-0", "-b", "32", "-f", TAPE, src, env=env, status=3)
    assert proc.stderr.strip().splitlines()[-2] == (
        f"DUMP: write error on {TAPE}: the drive is in fixed-block mode with 64 KiB blocks,"
        f" and a record of 32 KiB (-b 32) is not a whole number of them: use -b 64, or set"
        f" variable-block mode with 'mt -f {TAPE} setblk 0'"), proc.stderr
    run_ndump("dump", "-0", "-b", "64", "-f", TAPE, src, env=env, status=0)
    assert {len(bytes.fromhex(r)) for r in _records(tape_dir)[:-1]} == {65536}
    for args in ([], ["-b", "128"]):
        _rewind(tape_dir)
        out = tmp_path / f"out{len(args)}"
        out.mkdir()
        run_ndump("restore", "-r", *args, "-f", TAPE, "--target", out, env=env, status=0)
        assert_trees_equal(src, out)
    _rewind(tape_dir)
    proc = run_ndump("restore", "-t", "-b", "16", "-f", TAPE, env=env, status=1)
    assert proc.stderr.strip().splitlines()[-1] == (
        f"RESTORE: {TAPE} is in fixed-block mode with 64 KiB blocks, and -b 16 is not a whole"
        " number of them: use -b 64, or leave -b out")


def test_records_of_another_size_than_the_fixed_blocks_name_mt_setblk_0(tmp_path, run_ndump,
                                                                       tape_env):
    env, tape_dir = tape_env
    src = build_tree(tmp_path / "src", {"f": os.urandom(100_000)})
    run_ndump("dump", "-0", "-b", "64", "-f", TAPE, src, env=env, status=0)
    for args in ([], ["-b", "64"]):
        _rewind(tape_dir)
        proc = run_ndump("restore", "-t", *args, "-f", TAPE, env={**env, "FAKETAPE_BLOCK": "32768"},
                         status=1)
        assert proc.stderr == f"RESTORE: {first_read_failed(TAPE, 32768)}\n"
    assert first_read_failed(TAPE, 32768) == (
        f"read error on {TAPE}: input/output error at the first record, with the drive in"
        f" fixed-block mode with 32 KiB blocks: if the dump was written with other records,"
        f" set variable-block mode with 'mt -f {TAPE} setblk 0'")


@pytest.mark.parametrize("flags", [[], ["-z"]])
def test_end_of_medium_mid_file_continues_on_the_next_tape(tmp_path, run_ndump, tape_env, flags):
    env, tape_dir = tape_env
    env = {**env, "FAKETAPE_CAPACITY": str(200 * 1024)}
    src = build_tree(tmp_path / "src", {"big": os.urandom(450_000), "small": b"x" * 10,
                                        "text": b"ndump on tape\n" * 30_000})
    script = change_tape_script(tmp_path, tape_dir)
    proc = run_ndump("dump", "-0", *flags, "-F", script, "-f", TAPE, src, env=env, status=0)
    assert "Volume 3" in proc.stderr
    # lay the cartridges out as -M volumes of files to read them back in order
    vols = sorted(tape_dir.glob("full*.tape")) + [tape_dir / "current.tape"]
    for i, vol in enumerate(vols, 1):
        records = [bytes.fromhex(r) for r in json.loads(vol.read_text())["items"] if r]
        if flags:
            # after a volume's raw first record, each tape record is one compressed
            # record: its prefix gives its length (FORMAT §8.1)
            assert all(len(r) == 4 + (int.from_bytes(r[:4], "little") >> 4)
                       for r in records[1:]), vol
        (tmp_path / f"vol{i:03d}").write_bytes(b"".join(records))
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


@pytest.mark.parametrize("record, block, says", [
    (32768, 65536, "fixed-block mode with 64 KiB blocks, and a record of 32 KiB (-b 32) is not"
                   " a whole number of them: use -b 64, or set variable-block mode with"
                   " 'mt -f /dev/nst0 setblk 0'"),
    (12345, 65536, "a record of 12345 bytes is not a whole number of them: use -b 64, or set"
                   " variable-block mode with 'mt -f /dev/nst0 setblk 0'"),
    (10240, 1536, "with 1536-byte blocks, and a record of 10 KiB (-b 10) is not a whole number"
                  " of them: set variable-block mode with 'mt -f /dev/nst0 setblk 0'"),
    (1 << 20, 0, "invalid argument: the drive (in variable-block mode) refuses a record of"
                 " 1024 KiB (-b 1024); use a smaller -b"),
    (65536, 65536, "write error on /dev/nst0: invalid argument"),       # not the block size
    (65536, None, "write error on /dev/nst0: invalid argument"),        # the drive cannot tell
])
def test_a_refused_tape_write_is_explained_from_the_drive_block_size(record, block, says):
    """EINVAL on a tape write + what MTIOCGET's mt_dsreg says -> the message; a real
    st drive proves the errno and the ioctl in tests/vm/guest/guest_tape.py."""
    message = write_refused("/dev/nst0", record, block)
    assert message.startswith("write error on /dev/nst0: ") and message.endswith(says)


def test_a_refused_tape_read_names_the_b_that_fits():
    assert read_refused("/dev/nst0", 16384, 65536) == (
        "/dev/nst0 is in fixed-block mode with 64 KiB blocks, and -b 16 is not a whole number"
        " of them: use -b 64, or leave -b out")
    assert read_refused("/dev/nst0", 10240, 1536).endswith("not a whole number of them: leave -b out")
