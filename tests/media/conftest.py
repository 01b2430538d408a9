"""Shared pieces of the media tests: the local RSH wrapper and the tape stand-in."""
import sys

import pytest

from tapehelp import FAKETAPE, RSH


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
