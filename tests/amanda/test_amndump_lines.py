"""amndump backup's message lines (descriptor 3) as Amanda reads them: a file name
with a newline must not start a line of its own.  Runs scripts/amndump of this
checkout directly, as root (no Amanda set, no sudo)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trees import build_tree

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.root]


def test_a_name_with_a_newline_cannot_make_up_an_amanda_line(tmp_path):
    src = build_tree(tmp_path / "src", {"ok": b"fine"})
    evil = os.path.join(os.fsencode(src), b"x\nsendbackup: size 1\nsendbackup: error [made up]")
    with open(evil, "wb") as f:
        f.write(b"s" * 5000)
    os.chmod(evil, 0)
    # an ndump without the capabilities that let root read a mode-000 file
    ndump = tmp_path / "ndump-capless"
    ndump.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec setpriv --bounding-set"
                     f" -dac_override,-dac_read_search {sys.executable} -m ndump \"$@\"\n")
    ndump.chmod(0o755)
    config = f"ndumplines{os.getpid()}"
    fds = {n: open(tmp_path / f"fd{n}", "w+b") for n in (3, 4)}

    def child():
        for n, f in fds.items():
            os.dup2(f.fileno(), n)
    try:
        proc = subprocess.run([str(REPO / "scripts" / "amndump"), "backup", "--config", config,
                               "--host", "localhost", "--disk", str(src), "--device", str(src),
                               "--ndump-path", str(ndump), "--snapshot", "none", "--level", "0",
                               "--index", "line"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                              preexec_fn=child, pass_fds=(3, 4))
    finally:
        for f in fds.values():
            f.close()
        shutil.rmtree(f"/var/lib/amanda/ndump/{config}", ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    mesg = (tmp_path / "fd3").read_text().splitlines()
    assert [l for l in mesg if l.startswith("sendbackup:")] == [mesg[-1]], mesg
    assert mesg[-1].startswith("sendbackup: size ") and mesg[-1] != "sendbackup: size 1"
    assert [l for l in mesg if l.startswith("? ")] == [
        "? ./x\\nsendbackup: size 1\\nsendbackup: error [made up]: not dumped: permission denied"]
