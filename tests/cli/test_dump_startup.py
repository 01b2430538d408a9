"""Dump start-up and the lines scripts read (defects 7-10, 12, 13): checks made
before anything is walked or written, the state directory left alone, -S and
-W/-w in stock dump's format, quiet cron runs."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from trees import build_tree

REPO_ROOT = Path(__file__).resolve().parents[2]


def _snapshot(directory: Path) -> dict:
    """{relative path: (size, mtime_ns)} of everything under directory ({} if absent)."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in directory.rglob("*")}


def _as_nobody(argv, env) -> tuple[int, str, str]:
    """ndump's main(argv) in a forked child that runs as nobody (the interpreter
    under /root is not for nobody to start: everything is imported first)."""
    import ndump.cli.dump_cmd  # noqa: F401  (commands are imported on first use)
    from ndump.cli import main
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:                                        # the child: never returns
        status = 70
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.environ.update(env)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            status = main(argv)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)
    os.close(out_w)
    os.close(err_w)
    with open(out_r, "rb") as out, open(err_r, "rb") as err:
        stdout, stderr = out.read().decode(), err.read().decode()
    return os.waitpid(pid, 0)[1] >> 8, stdout, stderr


@pytest.mark.root
def test_non_root_update_without_dumpdates_access_fails_before_any_output(tmp_path):
    top = Path(tempfile.mkdtemp(prefix="ndu-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        src = build_tree(top / "src", {"a": b"a" * 5000})
        (top / "dd").mkdir(mode=0o755)                  # root's: nobody cannot write here
        (top / "dd" / "dumpdates").write_text("")
        (top / "out").mkdir(mode=0o777)
        (top / "state").mkdir(mode=0o777)
        env = {"NDUMP_STATE_DIR": str(top / "state"), "NDUMP_RUN_DIR": str(top / "state" / "run"),
               "NDUMP_DUMPDATES": str(top / "dd" / "dumpdates")}
        status, out, err = _as_nobody(["dump", "-0", "-u", "--snapshot", "none", "-f",
                                       str(top / "out" / "x.dump"), str(src)], env)
        assert (status, out) == (1, ""), err
        assert err.splitlines() == [
            f"DUMP: -u cannot update {top}/dd/dumpdates: {top}/dd is not writable"]
        assert not (top / "out" / "x.dump").exists()
        assert list((top / "state").iterdir()) == []
    finally:
        shutil.rmtree(top)


def test_estimate_prints_the_number_alone_and_keeps_no_state(tmp_path, run_ndump, ndump_env):
    src = build_tree(tmp_path / "src", {"a": os.urandom(300_000), "d/b": b"b"})
    before = _snapshot(ndump_env.state_dir)
    proc = run_ndump("dump", "-0", "-S", src, status=0)
    assert proc.stderr == ""
    assert proc.stdout.strip().isdigit() and proc.stdout == proc.stdout.strip() + "\n"
    assert int(proc.stdout) >= 300_000
    assert _snapshot(ndump_env.state_dir) == before


def test_a_bad_output_fails_before_the_walk_and_keeps_no_state(tmp_path, run_ndump, ndump_env):
    src = build_tree(tmp_path / "src", {"a": b"a"})
    proc = run_ndump("dump", "-0", "-u", "-f", tmp_path / "no" / "such" / "x.dump", src, status=1)
    assert "cannot open" in proc.stderr and "Pass I" not in proc.stderr
    assert _snapshot(ndump_env.state_dir) == {}


def test_output_under_dev_shm_works_and_missing_devices_are_refused(tmp_path, run_ndump):
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat("/dev").st_dev:
        pytest.skip("/dev/shm is not a filesystem of its own here")
    src = build_tree(tmp_path / "src", {"a": b"a" * 3000})
    out = Path(tempfile.mkdtemp(prefix="ndump-test-", dir="/dev/shm"))
    try:
        run_ndump("dump", "-0", "-f", out / "x.dump", src, status=0)
        assert (out / "x.dump").stat().st_size > 0
    finally:
        shutil.rmtree(out)
    proc = run_ndump("dump", "-0", "-f", "/dev/nst97", src, status=1)
    assert "cannot open /dev/nst97: no such device" in proc.stderr


def _refused_before_the_walk(run_ndump, ndump_env, src, output, says):
    before = _snapshot(ndump_env.state_dir)
    proc = run_ndump("dump", "-0", "-u", "-f", output, src, status=1)
    assert proc.stderr.strip().splitlines()[-1] == f"DUMP: cannot open {output}: {says}"
    assert "Pass I" not in proc.stderr and _snapshot(ndump_env.state_dir) == before
    return proc


def test_missing_devices_are_refused_before_the_walk(tmp_path, run_ndump, ndump_env):
    src = build_tree(tmp_path / "src", {"a": b"a"})
    for name in ("/dev/nst97", "/dev/tape/by-id/ndump-test-missing-nst"):
        assert not os.path.lexists(name)
        _refused_before_the_walk(run_ndump, ndump_env, src, name, "no such device")
        assert not os.path.lexists(name)
    for args in (["-t"], ["-t", "-s", "2"]):       # restore says so too, -s or not
        proc = run_ndump("restore", *args, "-f", "/dev/nst97", status=1)
        assert proc.stderr == "RESTORE: cannot open /dev/nst97: no such device\n"
    proc = run_ndump("restore", "-t", "-s", "2", "-f", tmp_path / "no.dump", status=1)
    assert proc.stderr.strip() == f"RESTORE: cannot open {tmp_path / 'no.dump'}: no such file or directory"


@pytest.mark.root
def test_a_regular_file_in_dev_is_not_taken_for_the_drive(tmp_path, run_ndump, ndump_env):
    """A regular file on /dev's own filesystem (what a dump without the drive leaves,
    stock dump's included) is refused before the walk and left alone; restore -s
    says it is no tape."""
    src = build_tree(tmp_path / "src", {"a": b"a"})
    fd, name = tempfile.mkstemp(prefix="nst-ndump-test-", dir="/dev")
    os.write(fd, b"left over")
    os.close(fd)
    try:
        _refused_before_the_walk(run_ndump, ndump_env, src, name,
                                 "not a device but a regular file in /dev (left by a run without"
                                 " the drive?); remove it, or name the drive")
        assert Path(name).read_bytes() == b"left over"
        proc = run_ndump("restore", "-t", "-s", "2", "-f", name, status=1)
        assert proc.stderr == f"RESTORE: -s needs a tape drive; {name} is a regular file\n"
    finally:
        os.unlink(name)


@pytest.mark.root
def test_a_tape_drive_that_cannot_be_opened_is_refused_before_the_walk(tmp_path, run_ndump,
                                                                         ndump_env):
    """A tape device node (st's major 9) without a drive behind it: opened O_RDONLY|
    O_NONBLOCK before the walk, refused with the system's reason."""
    src = build_tree(tmp_path / "src", {"a": b"a"})
    node = tmp_path / "nst0"
    os.mknod(node, 0o20600, os.makedev(9, 128 + 31))
    try:
        os.close(os.open(node, os.O_RDONLY | os.O_NONBLOCK))
        pytest.skip("this machine has a tape drive 31")
    except OSError as e:
        says = os.strerror(e.errno).lower()
    _refused_before_the_walk(run_ndump, ndump_env, src, str(node), says)


@pytest.mark.parametrize("gstat, write, says", [
    (0x00040000, True, "no medium found (no cartridge in the drive)"),
    (0x00040000, False, "no medium found (no cartridge in the drive)"),
    (0x04000000 | 0x01000000, True, "the cartridge is write-protected"),
    (0x04000000 | 0x01000000, False, None),           # restore reads a protected cartridge
    (0x01000000 | 0x80000000, True, None),            # online, at BOT
])
def test_drive_status_before_the_walk(gstat, write, says):
    """MTIOCGET's mt_gstat -> what stops the run; a real st drive in tests/vm."""
    from ndump.media.tape import status_problem
    assert status_problem(gstat, write) == says


@pytest.mark.root
def test_full_output_filesystem_without_an_operator_names_file_and_enospc(tmp_path, run_ndump):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        src = build_tree(tmp_path / "src", {"big": os.urandom(1 << 20)})
        proc = run_ndump("dump", "-0", "-f", small / "x.dump", src, status=3)
    finally:
        subprocess.run(["umount", str(small)], check=True)
    *_, last, note = proc.stderr.strip().splitlines()
    assert f"{small}/x.dump: no space left on device" in last
    assert f"(the filesystem at {small} is full)" in last and "no operator to ask" in last
    assert note == f"DUMP: the dump on {small}/x.dump is incomplete: do not restore from it"


def test_quiet_run_on_a_plain_filesystem_prints_nothing(tmp_path, run_ndump):
    top = Path(tempfile.mkdtemp(prefix="ndq-", dir="/tmp"))   # a path that fits the header
    try:
        src = build_tree(top / "src", {"a": b"a"})
        proc = run_ndump("dump", "-0", "-q", "-f", tmp_path / "x.dump", src, status=0)
    finally:
        shutil.rmtree(top)
    assert proc.stderr == "" and proc.stdout == ""


def test_long_label_warns_as_stock_does(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"a"})
    proc = run_ndump("dump", "-0", "-L", "12345678901234567890", "-f", tmp_path / "x.dump", src,
                     status=0)
    assert ("warning: label `12345678901234567890' is larger than limit of 15 characters;"
            " using truncated label `123456789012345'") in proc.stderr


def _dumpdates(path: Path, now: float) -> None:
    def line(name, level, age):
        t = time.localtime(now - age)
        off = t.tm_gmtoff // 60
        sign = "+" if off >= 0 else "-"
        return f"{name} {level} {time.asctime(t)} {sign}{abs(off) // 60:02d}{abs(off) % 60:02d}\n"
    path.write_text(line("/dev/sdz1", 0, 7200) + line("/dev/sdz1", 1, 3600)
                    + line("/srv/data", 0, 600) + line("/x", 2, 60))


@pytest.mark.compat
def test_show_history_matches_stock_line_by_line(tmp_path, run_ndump):
    dd = tmp_path / "dumpdates"
    _dumpdates(dd, time.time())
    for flag in ("-W", "-w"):
        ours = run_ndump("dump", "-D", dd, flag, status=0).stdout.splitlines()
        stock = subprocess.run(["/usr/sbin/dump", "-D", str(dd), flag], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        # stock also lists this machine's /etc/fstab entries that were never dumped
        stock = [l for l in stock if not l.endswith("Last dump: never")]
        assert ours == stock, (flag, ours, stock)
    assert len(ours) == 1                       # -w: header only, nothing is a day old


def test_show_history_empty_and_old(tmp_path, run_ndump):
    dd = tmp_path / "dumpdates"
    proc = run_ndump("dump", "-D", dd, "-W", status=0)
    assert proc.stdout == "Last dump(s) done (Dump '>' file systems):\n"
    assert f"no file {dd}" in proc.stderr
    dd.write_text("")
    assert run_ndump("dump", "-D", dd, "-w", status=0).stdout == "Dump these file systems:\n"
    dd.write_text("/srv/old 0 Mon Nov  2 06:00:00 2020 +0000\n")
    w = run_ndump("dump", "-D", dd, "-w", status=0).stdout.splitlines()
    big_w = run_ndump("dump", "-D", dd, "-W", status=0).stdout.splitlines()
    assert w[1].startswith("  /srv/old\t(      ) Last dump: Level 0, Date ")
    assert big_w[1].startswith("> /srv/old\t(      ) Last dump: Level 0, Date ")


@pytest.mark.root
def test_unreadable_directory_is_reported_once(tmp_path):
    top = Path(tempfile.mkdtemp(prefix="ndr-", dir="/tmp"))
    try:
        os.chmod(top, 0o777)
        src = build_tree(top / "src", {"ok": b"a", "closed/f": b"f"})
        os.chmod(src / "closed", 0)
        env = {"NDUMP_STATE_DIR": str(top / "state"), "NDUMP_RUN_DIR": str(top / "run")}
        status, _out, err = _as_nobody(["dump", "-0", "--snapshot", "none", "-f",
                                        str(top / "x.dump"), str(src)], env)
        assert status == 2, err
        assert [l for l in err.splitlines() if "closed" in l] == [
            "DUMP: ./closed: cannot read directory: permission denied"]
        assert "DUMP IS DONE, 1 file(s) could not be dumped" in err
    finally:
        os.chmod(src / "closed", 0o755)
        shutil.rmtree(top)
