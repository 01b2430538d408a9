"""Shell completion offers the ids of the dump contexts for `contexts show|delete ID`
and `dump --restart ID`, and nothing (no traceback) when the state directory is missing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IDS = ["04bda9fe-8e91-4e93-a4bb-c585ae4f7301", "7d1e0c2a-5b7e-4f0e-9a51-0c3f2d9b8e11"]


def complete(words: str, state_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), NDUMP_STATE_DIR=str(state_dir),
               COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1),
               _NDUMP_COMPLETE="bash_complete")
    return subprocess.run([sys.executable, "-m", "ndump"], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("words", ["ndump contexts show ", "ndump contexts delete 7d",
                                   "ndump dump --restart "])
def test_context_ids_complete(tmp_path, words):
    (tmp_path / "contexts").mkdir()
    for cid in IDS:
        (tmp_path / "contexts" / f"{cid}.json").write_text("{}")
    proc = complete(words, tmp_path)
    want = [cid for cid in IDS if cid.startswith(words.split(" ")[-1])]
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.split() == [f"plain,{cid}" for cid in want]


def test_no_state_directory_completes_nothing(tmp_path):
    proc = complete("ndump dump --restart ", tmp_path / "missing")
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "", "")
