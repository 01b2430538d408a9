"""contrib/systemd: the service and timer pass `systemd-analyze verify`, and the service's
command, with systemd's specifiers filled in, makes the level 0 and level 1 dumps and
the --json result it promises."""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from trees import build_tree

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "contrib" / "systemd"
SCHEMA = json.loads((REPO / "schemas" / "result.schema.json").read_text())


def _analyze():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("needs systemd-analyze (Debian package systemd)")
    return tool


def test_units_verify(tmp_path):
    tool = _analyze()
    for unit in ("ndump@.service", "ndump@.timer"):           # templates need an instance
        shutil.copy(UNITS / unit, tmp_path / unit.replace("@.", "@srv."))
    proc = subprocess.run([tool, "verify", "./ndump@srv.service", "./ndump@srv.timer"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def _exec_start(instance: str, path: str) -> list[str]:
    """ExecStart= of ndump@.service as systemd runs it for INSTANCE (%i, %f, %%)."""
    text = (UNITS / "ndump@.service").read_text().replace("\\\n", " ")
    line = next(l for l in text.splitlines() if l.startswith("ExecStart="))
    words = shlex.split(line[len("ExecStart="):])
    return [w.replace("%%", "\0").replace("%i", instance).replace("%f", path).replace("\0", "%")
            for w in words]


def test_service_command_dumps_level_0_then_1(tmp_path):
    _analyze()
    src = build_tree(tmp_path / "srv", {"a/f": b"one", "b": b"two"})
    instance = subprocess.run(["systemd-escape", "--path", str(src)], capture_output=True,
                              text=True, check=True).stdout.strip()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ndump").write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m ndump \"$@\"\n")
    (bindir / "ndump").chmod(0o755)
    (tmp_path / "backup").mkdir()
    (tmp_path / "state").mkdir()
    today = subprocess.run(["date", "+%u"], capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin", "NDUMP_BACKUP_DIR": str(tmp_path / "backup"),
           "STATE_DIRECTORY": str(tmp_path / "state")}
    results = tmp_path / "state" / f"{instance}.last.json"
    for level, full_day in ((0, today), (1, "8")):
        (src / "b").write_bytes(b"changed %d" % level)
        proc = subprocess.run(_exec_start(instance, str(src)), capture_output=True, text=True,
                              env={**env, "NDUMP_FULL_WEEKDAY": full_day}, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "backup" / f"{instance}.{level}").stat().st_size > 0
        result = json.loads(results.read_text())
        jsonschema.Draft202012Validator(SCHEMA).validate(result)
        assert (result["status"], result["level"], result["path"]) == ("ok", level, str(src))
