"""A real SCSI tape drive (runs in the VM): tgt emulates an SSC drive, open-iscsi on
loopback attaches it, and Linux's st driver gives /dev/nstN, with real MTIOCTOP ioctls,
filemarks, fixed and variable block modes and end of medium.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from guestlib import ndump_argv, sh
from stock import RESTORE, stock_dump_tree
from trees import Hardlink, Symlink, assert_trees_equal, build_tree

MiB = 1 << 20


def small_tree(root: Path, tag: str, size: int = 300_000) -> Path:
    return build_tree(root, {
        f"{tag}.txt": f"dump {tag}\n",
        "d/data.bin": os.urandom(size),
        "d/sub/notes": "x" * 5000,
        "d/link": Symlink(target="data.bin"),
        "d/hard": Hardlink("d/data.bin"),
    })


def whole_seconds(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)) + [root]:
        st = path.lstat()
        os.utime(path, (int(st.st_atime), int(st.st_mtime)), follow_symlinks=False)


def first_record_length(device: str) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return len(os.read(fd, MiB))
    finally:
        os.close(fd)


def stock_restore_r(args, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess:
    return sh(RESTORE, "-r", *args, cwd=cwd, input=input)


def test_two_dumps_on_one_tape_then_restore_s_2(tapes, tmp_path, run_ndump, ndump_env):
    tape = tapes.load()
    one = small_tree(tmp_path / "one", "first")
    two = small_tree(tmp_path / "two", "second", 120_000)
    run_ndump("dump", "-0u", "-b", "64", "-f", tape, one, status=0)
    run_ndump("dump", "-0u", "-b", "64", "-f", tape, two, status=0)
    assert str(one) in ndump_env.dumpdates.read_text()
    sh("mt", "-f", tape, "rewind")
    assert first_record_length(tape) == 64 * 1024      # one write is one 64 KiB record
    sh("mt", "-f", tape, "rewind")
    listing = run_ndump("restore", "-t", "-s", "2", "-f", tape, status=0).stdout
    assert "second.txt" in listing and "first.txt" not in listing
    sh("mt", "-f", tape, "rewind")
    out = tmp_path / "out2"
    out.mkdir()
    run_ndump("restore", "-r", "-s", "2", "-f", tape, "--target", out, status=0)
    assert_trees_equal(two, out)
    sh("mt", "-f", tape, "rewind")
    out1 = tmp_path / "out1"
    out1.mkdir()
    run_ndump("restore", "-r", "-f", tape, "--target", out1, status=0)
    assert_trees_equal(one, out1)


def test_stock_restore_reads_ndump_dumps_from_tape(tapes, tmp_path, run_ndump):
    tape = tapes.load()
    src = small_tree(tmp_path / "src", "default")
    run_ndump("dump", "-0", "-f", tape, src, status=0)            # -b 10, stock's default too
    sh("mt", "-f", tape, "rewind")
    out = tmp_path / "stock10"
    out.mkdir()
    stock_restore_r(["-f", tape], out)
    assert_trees_equal(src, out)
    tape = tapes.load()
    run_ndump("dump", "-0", "-b", "64", "-f", tape, src, status=0)
    sh("mt", "-f", tape, "rewind")
    out = tmp_path / "stock64"
    out.mkdir()
    stock_restore_r(["-b", "64", "-f", tape], out)
    assert_trees_equal(src, out)


def test_ndump_restores_a_stock_dump_from_tape(tapes, tmp_path, run_ndump):
    tape = tapes.load()
    src = small_tree(tmp_path / "src", "stock")
    whole_seconds(src)          # mke2fs -d keeps whole seconds only
    res = stock_dump_tree(src, Path(tape), "-0", "-b", "64", workdir=tmp_path)
    assert "DUMP IS DONE" in res.stdout + res.stderr
    sh("mt", "-f", tape, "rewind")
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", tape, "--target", out, status=0)
    assert_trees_equal(src, out)


def test_fixed_block_mode_setblk_65536(tapes, tmp_path, run_ndump):
    tape = tapes.load()
    sh("mt", "-f", tape, "setblk", "65536")
    assert "Tape block size 65536 bytes" in sh("mt", "-f", tape, "status").stdout
    src = small_tree(tmp_path / "src", "fixed", 500_000)
    run_ndump("dump", "-0", "-b", "64", "-f", tape, src, status=0)
    sh("mt", "-f", tape, "rewind")
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", tape, "--target", out, status=0)
    assert_trees_equal(src, out)
    sh("mt", "-f", tape, "rewind")
    stock = tmp_path / "stock"
    stock.mkdir()
    stock_restore_r(["-b", "64", "-f", tape], stock)
    assert_trees_equal(src, stock)
    # st reads whole blocks ahead (read-ahead, its default): any restore -b reads them
    for b in ("16", "128"):
        sh("mt", "-f", tape, "rewind")
        assert "fixed.txt" in run_ndump("restore", "-t", "-b", b, "-f", tape, status=0).stdout
    # 32 KiB records do not fit 64 KiB blocks: st refuses the write (EINVAL), the dump
    # stops naming the cause from the drive's block size (MTIOCGET)
    sh("mt", "-f", tape, "rewind")
    res = run_ndump("dump", "-0", "-b", "32", "-f", tape, src, status=3)
    assert (f"DUMP: write error on {tape}: the drive is in fixed-block mode with 64 KiB blocks,"
            " and a record of 32 KiB (-b 32) is not a whole number of them: use -b 64, or set"
            f" variable-block mode with 'mt -f {tape} setblk 0'") in res.stderr.splitlines(), res.stderr


def test_a_drive_in_fixed_block_mode_reading_other_records_says_so(tapes, tmp_path, run_ndump):
    """64 KiB records written in variable-block mode, read with the drive set to 32 KiB
    fixed blocks: st fails the read (EIO, "Incorrect block size"); the message names
    the drive's mode and mt setblk 0, with or without -b."""
    tape = tapes.load()
    src = small_tree(tmp_path / "src", "variable")
    run_ndump("dump", "-0", "-b", "64", "-f", tape, src, status=0)
    sh("mt", "-f", tape, "rewind")
    sh("mt", "-f", tape, "setblk", "32768")
    for args in ([], ["-b", "64"]):
        sh("mt", "-f", tape, "rewind")
        res = run_ndump("restore", "-t", *args, "-f", tape, status=1)
        assert res.stderr.strip().splitlines()[-1] == (
            f"RESTORE: read error on {tape}: input/output error at the first record, with the"
            " drive in fixed-block mode with 32 KiB blocks: if the dump was written with other"
            f" records, set variable-block mode with 'mt -f {tape} setblk 0'"), res.stderr
    sh("mt", "-f", tape, "setblk", "0")
    sh("mt", "-f", tape, "rewind")
    assert "variable.txt" in run_ndump("restore", "-t", "-f", tape, status=0).stdout


def test_a_missing_or_empty_drive_is_named_before_the_walk(tapes, tmp_path, run_ndump):
    """A drive that is not there is "no such device" for dump and for restore, -s or
    not; a drive without a cartridge is named before Pass I."""
    missing = "/dev/nst9"
    assert not os.path.exists(missing)
    src = small_tree(tmp_path / "src", "nodrive")
    res = run_ndump("dump", "-0", "-f", missing, src, status=1)
    assert res.stderr.strip().splitlines()[-1] == f"DUMP: cannot open {missing}: no such device"
    assert "Pass I" not in res.stderr and not os.path.exists(missing)
    for args in (["-t"], ["-t", "-s", "2"], ["-r", "-s", "2", "--target", tmp_path]):
        res = run_ndump("restore", *args, "-f", missing, status=1)
        assert res.stderr == f"RESTORE: cannot open {missing}: no such device\n", res.stderr
    tape = tapes.load()
    sh("tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--op", "update", "--tid", "1",
       "--lun", "1", "--params", "online=0")              # the cartridge taken out
    try:
        res = run_ndump("dump", "-0", "-f", tape, src, status=1)
        assert "Pass I" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith(f"DUMP: cannot open {tape}: no medium"), \
            res.stderr
    finally:
        tapes.load()


def test_record_size_mismatch_names_the_b_to_use(tapes, tmp_path, run_ndump):
    tape = tapes.load()
    src = small_tree(tmp_path / "src", "mismatch")
    run_ndump("dump", "-0", "-b", "64", "-f", tape, src, status=0)
    sh("mt", "-f", tape, "rewind")
    res = run_ndump("restore", "-t", "-b", "16", "-f", tape, status=1)
    assert res.stderr.strip().splitlines()[-1] == (
        f"RESTORE: the records on {tape} are 64 KiB, larger than -b 16: use -b 64, or leave -b out")
    sh("mt", "-f", tape, "rewind")
    listing = run_ndump("restore", "-t", "-b", "64", "-f", tape, status=0).stdout
    assert "mismatch.txt" in listing


def change_tape_script(tmp_path: Path, tapes, cartridges: list[Path]) -> Path:
    """The -F script of dump and restore (DEVICE VOLUME): load cartridge VOLUME, rewind."""
    script = tmp_path / "load-volume.sh"
    table = " ".join(f"{i}) c={c} ;;" for i, c in enumerate(cartridges, 1))
    script.write_text(
        "#!/bin/sh\n"
        f"case $2 in {table} *) echo \"no cartridge for volume $2\" >&2; exit 2 ;; esac\n"
        "echo \"load-volume: $2 ($c) into $1\" >&2\n"
        "tgtadm --lld iscsi --mode logicalunit --op update --tid 1 --lun 1"
        " --params online=0,path=$c,online=1 >&2 || exit 2\n"
        "for i in 1 2 3 4 5 6 7 8 9 10; do mt -f \"$1\" rewind 2>/dev/null && exit 0; sleep 0.5; done\n"
        "exit 3\n")
    script.chmod(0o755)
    return script


def test_small_tape_fills_and_the_F_script_loads_the_next(tapes, tmp_path, run_ndump):
    cartridges = [tapes.blank(3, f"set-{i}.img") for i in range(1, 5)]
    script = change_tape_script(tmp_path, tapes, cartridges)
    tapes.insert(cartridges[0])
    tape = tapes.device
    src = build_tree(tmp_path / "src", {f"f{i}.bin": os.urandom(MiB) for i in range(4)}
                     | {"small.txt": "small\n"})
    res = run_ndump("dump", "-0", "-b", "64", "-F", script, "-f", tape, src, status=0)
    volumes = int(re.search(r"on (\d+) volume\(s\)", res.stderr).group(1))
    assert volumes >= 2 and f"Volume {volumes} begins on {tape}" in res.stderr, res.stderr
    assert all(f"load-volume: {v} " in res.stderr for v in range(2, volumes + 1)), res.stderr
    # read the set back from volume 1, the -F script loading each next cartridge
    tapes.insert(cartridges[0])
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-F", script, "-f", tape, "--target", out, status=0)
    assert_trees_equal(src, out)
    tapes.insert(cartridges[0])
    stock = tmp_path / "stock"
    stock.mkdir()
    proc = subprocess.run([RESTORE, "-r", "-b", "64", "-F", str(script), "-f", tape], cwd=stock,
                          input="2\n3\n4\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stock restore exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert_trees_equal(src, stock)


def test_ndump_is_the_wheel_in_the_venv_and_dump_is_stock():
    """What the tests above ran: ndump from the wheel of the checkout, installed offline
    into the venv, and the stock dump/restore 0.4b47 of Debian's dump package."""
    import ndump
    assert ndump.__file__.startswith(sys.prefix + "/lib/"), ndump.__file__
    assert sh(*ndump_argv("--version")).stdout.startswith("ndump, version ")
    assert sh("dpkg-query", "-W", "-f", "${Version}", "dump").stdout.startswith("0.4b47")


def test_a_write_protected_cartridge_is_named_before_the_walk(tapes, tmp_path, run_ndump):
    tape = tapes.load()
    lun = ["tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--op", "update", "--tid", "1",
           "--lun", "1", "--params"]
    sh(*lun, "readonly=1")
    try:
        tapes.insert(tapes.blank(8))                     # the drive senses the cartridge again
        assert "WR_PROT" in sh("mt", "-f", tape, "status").stdout
        src = small_tree(tmp_path / "src", "protected")
        res = run_ndump("dump", "-0", "-f", tape, src, status=1)
        assert "Pass I" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines()[-1] == (
            f"DUMP: cannot open {tape}: the cartridge is write-protected"), res.stderr
    finally:
        sh(*lun, "readonly=0")
        tapes.load()
