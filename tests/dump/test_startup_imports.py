"""Start-up: a plain dump to a file loads only what it uses (issue 16 goal 4)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from ndump.cli import main
status = main(sys.argv[1:])
loaded = [m for m in ("concurrent.futures", "logging") if m in sys.modules]
print("LOADED:" + ",".join(loaded))
sys.exit(status)
"""


def _dump_loads(tmp_path: Path, *flags: str) -> list[str]:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "a").write_bytes(b"x" * 5000)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", PROBE, "dump", "-0", *flags, "-q", "--snapshot", "none",
                          "-f", str(tmp_path / "out.dump"), str(tree)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LOADED:")][-1]
    return [m for m in line[len("LOADED:"):].split(",") if m]


def test_an_uncompressed_dump_loads_no_thread_pool(tmp_path, ndump_env):
    assert _dump_loads(tmp_path) == []


def test_a_compressed_dump_has_its_compression_threads(tmp_path, ndump_env):
    assert "concurrent.futures" in _dump_loads(tmp_path, "-z")
