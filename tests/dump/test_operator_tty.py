"""The operator on a terminal (defect 5): a volume change asks on /dev/tty as
stock dump does ("Change Volumes: Mount volume #2", yes/no); yes goes on, no
aborts with status 3.  The dump runs on a real pseudo-terminal that is its
controlling terminal; stderr goes to a pipe, as in `dump ... 2>log`."""
import fcntl
import os
import select
import shutil
import subprocess
import sys
import termios
import time
from pathlib import Path

from trees import assert_trees_equal, build_tree


REPO_ROOT = Path(__file__).resolve().parents[2]


def _on_a_terminal(argv, cwd):
    master, slave = os.openpty()

    def take_terminal():                     # after setsid: the pty becomes /dev/tty
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ndump", *map(str, argv)], cwd=cwd, env=env,
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=take_terminal, pass_fds=(slave,))
    os.close(slave)
    return proc, master


def _read_until(master, proc, text: bytes, timeout=60.0) -> bytes:
    got = b""
    end = time.monotonic() + timeout
    while text not in got:
        assert time.monotonic() < end and proc.poll() is None, (got, proc.poll())
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            got += os.read(master, 4096)
    return got


def _tree(tmp_path):
    return build_tree(tmp_path / "src", {f"d/f{i}": os.urandom(150_000) for i in range(4)})


def test_volume_change_answered_no_aborts_with_status_3(tmp_path):
    src = _tree(tmp_path)
    proc, master = _on_a_terminal(["dump", "-0", "-B", "200", "-f", tmp_path / "x.dump", src],
                                  tmp_path)
    try:
        shown = _read_until(master, proc, b'("yes" or "no")')
        assert b"Change Volumes: Mount volume #2" in shown
        assert b"Is the new volume mounted and ready to go?" in shown
        os.write(master, b"no\n")
        _out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    err = err.decode()
    assert proc.returncode == 3, err
    assert "the operator said no" in err and "Traceback" not in err
    assert "read error" not in err and "not seekable" not in err


def test_volume_change_answered_yes_gives_two_volumes_that_restore(tmp_path, run_ndump):
    src = _tree(tmp_path)
    image = tmp_path / "x.dump"
    saved = tmp_path / "saved"
    saved.mkdir()
    proc, master = _on_a_terminal(["dump", "-0", "-B", "400", "-f", image, src], tmp_path)
    try:
        _read_until(master, proc, b'("yes" or "no")')
        shutil.move(image, saved / "vol001")          # the operator changes the medium
        os.write(master, b"yes\n")
        _out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    err = err.decode()
    assert proc.returncode == 0, err
    assert "Volume 2 begins" in err and "Traceback" not in err
    shutil.move(image, saved / "vol002")
    (tmp_path / "nd").mkdir()
    run_ndump("restore", "-r", "-M", "-f", saved / "vol", "--target", tmp_path / "nd", status=0)
    assert_trees_equal(src, tmp_path / "nd")
