"""Helpers of the media tests: the local RSH wrapper and the tape stand-in.

A module of its own (not conftest) so that tests import it by a name no other
test directory uses.
"""
from pathlib import Path

HERE = Path(__file__).parent
RSH = HERE / "rsh_local.sh"
FAKETAPE = HERE.parent / "faketape.py"


def change_tape_script(tmp_path: Path, tape_dir: Path) -> Path:
    """A -F script that puts the full cartridge aside and loads a blank one."""
    script = tmp_path / "change-tape.sh"
    script.write_text("#!/bin/sh\n"
                      f"n=$(ls {tape_dir} | grep -c '^full') ; "
                      f"mv {tape_dir}/current.tape {tape_dir}/full$n.tape\nexit 0\n")
    script.chmod(0o755)
    return script
