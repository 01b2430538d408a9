"""Fixtures for the snapshot tests: a real btrfs on a loop device, ndump in the background.

``btrfs_fs`` makes ``truncate -s 300M img; mkfs.btrfs -q img; mount -o loop img mnt;
btrfs subvolume create mnt/vol`` and, whatever happens, unmounts everything
mounted under its directory and under tmp_path afterwards (ndump's own top-level
mounts under the run directory included); the loop device goes with the last
umount (mount -o loop sets autoclear).  The mount point is a short directory
(/tmp/ndb-XXXX) so that dumped paths fit the 64-byte c_filesys header field.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from snaphelp import REPO_ROOT, Btrfs, mounts_under, sh


@pytest.fixture
def btrfs_fs(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="ndb-", dir="/tmp"))
    img, mnt = tmp_path / "btrfs.img", base / "m"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(300 << 20)
    sh("mkfs.btrfs", "-q", img)
    try:
        sh("mount", "-o", "loop", img, mnt)
        sh("btrfs", "subvolume", "create", mnt / "vol")
        yield Btrfs(img, mnt, mnt / "vol", base)
    finally:
        for root in (base, tmp_path):
            for target in mounts_under(root):
                sh("umount", target, check=False)
        left = mounts_under(base) + mounts_under(tmp_path)
        for target in left:
            sh("umount", "-l", target, check=False)
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"could not unmount {left}"


@pytest.fixture
def start_ndump(tmp_path):
    """``start_ndump(*args, env=None) -> Popen``: ``python -m ndump ARGS`` in the background with
    the isolated environment (the one run_ndump uses), stdout/stderr to files; every process
    still running at the end of the test is killed."""
    procs: list[subprocess.Popen] = []
    counter = iter(range(1000))

    def start(*args, env: dict | None = None) -> subprocess.Popen:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
        full_env.update(env or {})
        n = next(counter)
        out = open(tmp_path / f"bg{n}.out", "w+")
        err = open(tmp_path / f"bg{n}.err", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "ndump", *map(str, args)], env=full_env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp_path,
                                start_new_session=True)
        proc.out_file, proc.err_file = out, err
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.out_file.close()
        proc.err_file.close()
