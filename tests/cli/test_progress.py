"""Progress (SPEC §2): a tqdm bar on a terminal, classic lines without one."""
import os
import shutil
import subprocess
import sys

import pytest

from trees import build_tree


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) from util-linux")
def test_terminal_gets_a_bar_even_without_a_window_size(tmp_path):
    src = build_tree(tmp_path / "src", {f"f{i}": os.urandom(1 << 20) for i in range(40)})
    env = {**os.environ, "NDUMP_STATE_DIR": str(tmp_path / "st"), "NDUMP_RUN_DIR": str(tmp_path / "run")}
    cmd = f"{sys.executable} -m ndump dump -0 --snapshot none -f {tmp_path / 'x'} {src}"
    # script(1) runs the command on a pty that has no window size
    proc = subprocess.run(["script", "-q", "-c", cmd, "/dev/null"], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    out = proc.stdout.decode("utf-8", "replace")
    assert "DUMP IS DONE" in out and "Traceback" not in out
    assert "B/s" in out or "B [" in out, out[-2000:]


def test_without_a_terminal_classic_lines(tmp_path):
    src = build_tree(tmp_path / "src", {f"f{i}": os.urandom(300_000) for i in range(5)})
    env = {**os.environ, "NDUMP_PROGRESS_INTERVAL": "0", "NDUMP_STATE_DIR": str(tmp_path / "st")}
    proc = subprocess.run([sys.executable, "-m", "ndump", "dump", "-0", "-f", str(tmp_path / "x"),
                           str(src)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    lines = [l for l in proc.stderr.splitlines() if "% done, finished in " in l]
    assert lines and all(l.startswith("DUMP: ") for l in lines)
    assert "\r" not in proc.stderr
