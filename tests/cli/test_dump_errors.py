"""Bad input to `ndump dump`: one clear line, the documented exit status, no traceback."""
import os
import signal
import subprocess
import sys
import time

import pytest

from trees import build_tree


def test_missing_path(tmp_path, run_ndump):
    proc = run_ndump("dump", "-0", "-f", tmp_path / "x", tmp_path / "nope", status=1)
    assert "no such file or directory" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_path_that_is_a_file(tmp_path, run_ndump):
    (tmp_path / "f").write_text("x")
    proc = run_ndump("dump", "-0", "-f", tmp_path / "x", tmp_path / "f", status=1)
    assert "not a directory" in proc.stderr


def test_unwritable_output(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"1"})
    proc = run_ndump("dump", "-0", "-f", tmp_path / "no" / "such" / "dir" / "x", src, status=1)
    assert "cannot open" in proc.stderr


def test_usage_errors(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"1"})
    run_ndump("dump", "--level", "32", "-f", tmp_path / "x", src, status=1)
    run_ndump("dump", "-0", "-b", "2", "-f", tmp_path / "x", src, status=1)
    proc = run_ndump("dump", "-1", "-u", "-T", "Wed Nov 25 14:18:00 2026", "-f", tmp_path / "x",
                     src, status=1)
    assert "-T" in proc.stderr
    proc = run_ndump("dump", "-0", "-T", "yesterday", "-f", tmp_path / "x", src, status=1)
    assert "bad date" in proc.stderr
    proc = run_ndump("dump", "-0", "--bogus", src, status=1)
    assert proc.stderr.count("\n") == 1


@pytest.mark.root
def test_unreadable_file_is_warned_and_the_rest_dumped(tmp_path, run_ndump):
    """Root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH cannot read a mode-000
    file: the dump warns, goes on, and exits 2."""
    src = build_tree(tmp_path / "src", {"ok": b"fine", "secret": b"s" * 5000})
    os.chmod(src / "secret", 0)
    image = tmp_path / "x.dump"
    env = {**os.environ, "NDUMP_STATE_DIR": str(tmp_path / "st")}
    proc = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                           sys.executable, "-m", "ndump", "dump", "-0", "-f", str(image), str(src)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "DUMP: ./secret: not dumped: permission denied\n" in proc.stderr   # restore's style
    assert "Traceback" not in proc.stderr
    listing = run_ndump("restore", "-t", "-f", image).stdout
    assert "./ok" in listing


def test_pipe_to_stdout_and_progress_lines(tmp_path):
    src = build_tree(tmp_path / "src", {"a": os.urandom(200_000), "b": b"2"})
    env = {**os.environ, "NDUMP_PROGRESS_INTERVAL": "0", "NDUMP_STATE_DIR": str(tmp_path / "st")}
    proc = subprocess.run([sys.executable, "-m", "ndump", "dump", "-0", "-f", "-", str(src)],
                          capture_output=True, env=env)
    assert proc.returncode == 0
    assert len(proc.stdout) % 10240 == 0 and len(proc.stdout) > 200_000
    err = proc.stderr.decode()
    assert "% done, finished in " in err and "DUMP IS DONE" in err
    assert all(line.startswith("DUMP: ") for line in err.splitlines())


def test_broken_pipe_is_an_abort_not_a_traceback(tmp_path):
    src = build_tree(tmp_path / "src", {"a": os.urandom(3_000_000)})
    env = {**os.environ, "NDUMP_STATE_DIR": str(tmp_path / "st")}
    proc = subprocess.run(f"{sys.executable} -m ndump dump -0 -f - {src} | head -c 1000 >/dev/null;"
                          " exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                          capture_output=True, env=env, text=True)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "pipe" in proc.stderr


def test_sigterm_aborts_with_status_3(tmp_path):
    src = build_tree(tmp_path / "src", {f"f{i}": os.urandom(100_000) for i in range(50)})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "NDUMP_STATE_DIR": str(tmp_path / "st")}
    proc = subprocess.Popen([sys.executable, "-m", "ndump", "dump", "-0", "-f", str(fifo), str(src)],
                            stderr=subprocess.PIPE, env=env, text=True)
    reader = open(fifo, "rb")
    reader.read(10240)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    reader.close()
    assert proc.returncode == 3 and "signal 15" in err and "Traceback" not in err


def test_missing_tape_device_is_an_error_not_a_file_in_dev(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"1"})
    proc = run_ndump("dump", "-0", "-f", "/dev/nst97", src, status=1)
    assert "cannot open /dev/nst97: no such device" in proc.stderr
    assert not os.path.exists("/dev/nst97")
    proc = run_ndump("restore", "-t", "-f", "/dev/nst97", status=1)
    assert proc.stderr == "RESTORE: cannot open /dev/nst97: no such device\n"     # as dump says
