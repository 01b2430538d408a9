"""Shared pieces of the media tests: the local RSH wrapper and the tape stand-in."""
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RSH = HERE / "rsh_local.sh"
FAKETAPE = HERE.parent / "faketape.py"


@pytest.fixture
def tape_env(tmp_path):
    """Environment for ndump/stock tools to reach the tape stand-in as host:/dev/nst0."""
    tape_dir = tmp_path / "tapes"
    tape_dir.mkdir()
    wrapper = tmp_path / "faketape-rmt"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKETAPE} \"$@\"\n")
    wrapper.chmod(0o755)
    env = {"RSH": str(RSH), "RMT": str(wrapper), "FAKETAPE_DIR": str(tape_dir),
           "RSH_LOG": str(tmp_path / "rsh.log")}
    return env, tape_dir


def change_tape_script(tmp_path: Path, tape_dir: Path) -> Path:
    """A -F script that puts the full cartridge aside and loads a blank one."""
    script = tmp_path / "change-tape.sh"
    script.write_text("#!/bin/sh\n"
                      f"n=$(ls {tape_dir} | grep -c '^full') ; "
                      f"mv {tape_dir}/current.tape {tape_dir}/full$n.tape\nexit 0\n")
    script.chmod(0o755)
    return script
