"""Start-up: a plain dump to a file, and restore -t, load only what they use (issue 16 goal 4)."""
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
loaded = [m for m in ("concurrent.futures", "logging", "ndump.snapshot.btrfs", "ndump.snapshot.lvm",
                      "ndump.snapshot.tools", "zstandard", "lzokay", "ndump.restore.extract",
                      "ndump.restore.incremental", "ndump.restore.symtab", "ndump.restore.parallel")
          if m in sys.modules]
print("LOADED:" + ",".join(loaded))
sys.exit(status)
"""


def _loads(*argv: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", PROBE, *argv],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LOADED:")][-1]
    return [m for m in line[len("LOADED:"):].split(",") if m]


def _dump_loads(tmp_path: Path, *flags: str) -> list[str]:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "a").write_bytes(b"x" * 5000)
    return _loads("dump", "-0", *flags, "-q", "--snapshot", "none",
                  "-f", str(tmp_path / "out.dump"), str(tree))


def test_an_uncompressed_dump_loads_no_thread_pool(tmp_path, ndump_env):
    assert _dump_loads(tmp_path) == []


def test_a_compressed_dump_has_its_compression_threads(tmp_path, ndump_env):
    assert "concurrent.futures" in _dump_loads(tmp_path, "-z")


def test_a_zstd_dump_loads_zstandard(tmp_path, ndump_env):
    assert "zstandard" in _dump_loads(tmp_path, "--zstd")


def test_restore_t_loads_no_writing_side(tmp_path, ndump_env):
    _dump_loads(tmp_path)
    assert _loads("restore", "-t", "-f", str(tmp_path / "out.dump")) == []
