"""Remote files through the real rmt from Debian's dump package (issue 4, item 5)."""
import os
import subprocess

import pytest

from trees import assert_trees_equal, build_tree

from tapehelp import RSH

pytestmark = [pytest.mark.compat]

SPEC = {"a.txt": b"hello\n", "dir/b.bin": os.urandom(300_000), "dir/c": b""}


@pytest.fixture
def short_dir():
    """rmt takes paths of at most 63 characters: pytest's tmp paths are longer."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="ndrmt")
    yield __import__("pathlib").Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_dump_and_restore_through_real_rmt(tmp_path, run_ndump, short_dir):
    src = build_tree(tmp_path / "src", SPEC)
    remote = short_dir / "remote.dump"
    env = {"RSH": str(RSH), "RMT": "/usr/sbin/rmt", "RSH_LOG": str(tmp_path / "rsh.log")}
    run_ndump("dump", "-0", "-f", f"localhost:{remote}", src, env=env, status=0)
    assert remote.stat().st_size % 10240 == 0
    log = (tmp_path / "rsh.log").read_text().splitlines()
    assert len(log) == 2 and log[0] == log[1]        # reached before the walk, then to write
    assert log[0].split() == ["localhost", "-l", log[0].split()[2], "/usr/sbin/rmt"]
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", f"localhost:{remote}", "--target", out, env=env, status=0)
    assert_trees_equal(src, out)
    # and stock restore reads the same remote image over rmt
    stock = tmp_path / "stock"
    stock.mkdir()
    proc = subprocess.run(["restore", "-r", "-f", f"localhost:{remote}"], cwd=stock,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert_trees_equal(src, stock)


def test_bad_remote_names_are_one_line_errors(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"x": b"1"})
    proc = run_ndump("dump", "-0", "-f", "bad.user@localhost:/tmp/x", src, status=1)
    assert "invalid user name" in proc.stderr
    long = "localhost:/" + "x" * 80
    proc = run_ndump("dump", "-0", "-f", long, src, status=1)
    assert "longer than" in proc.stderr
    env = {"RSH": str(tmp_path / "no-such-rsh")}
    proc = run_ndump("dump", "-0", "-f", "localhost:/tmp/x", src, env=env, status=1)
    errors = [l for l in proc.stderr.splitlines() if "cannot start" in l]
    assert errors == proc.stderr.splitlines()[-1:]



def test_what_rsh_says_is_shown_when_it_fails(tmp_path, run_ndump):
    """Issue 12: an unknown host or a refused key is named, not just 'lost connection'."""
    rsh = tmp_path / "rsh"
    rsh.write_text('#!/bin/sh\necho "ssh: Could not resolve hostname $1: Name or service not known"'
                   ' >&2\nexit 255\n')
    rsh.chmod(0o755)
    src = build_tree(tmp_path / "src", {"x": b"1"})
    for args in (["dump", "-0", "--snapshot", "none", "-f", "nohost:/tmp/x", src],
                 ["restore", "-t", "-f", "nohost:/tmp/x"]):
        proc = run_ndump(*args, env={"RSH": str(rsh)}, status=1)
        assert "Pass I" not in proc.stderr           # the dump reaches the host before its walk
        last = proc.stderr.splitlines()[-1]
        assert last.endswith(f"cannot open nohost:/tmp/x: lost connection to rmt for nohost:/tmp/x"
                             f" ({rsh} exited with status 255: ssh: Could not resolve hostname"
                             " nohost: Name or service not known)"), proc.stderr
