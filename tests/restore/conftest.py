"""Fixtures for the restore engine tests: run a restore in-process, build and save
crafted images, and unlock immutable files so tmp_path can be removed."""
from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from ndump.errors import Outcome
from ndump.fsmeta import LOCKING_FLAGS, get_flags, set_flags
from ndump.report import Reporter
from ndump.restore import RestoreOptions, run_restore
from ndump.settings import Settings


@dataclass
class Result:
    outcome: Outcome
    out: str
    err: str

    @property
    def status(self) -> int:
        return int(self.outcome.exit_status)


@pytest.fixture
def restore(tmp_path):
    """``restore(image, mode, *paths, target=None, verbose=0, settings=None, **options)
    -> Result``: run_restore in this process; ``target`` defaults to tmp_path/"out"."""
    def run(image, mode: str, *paths: str, target: Path | None = None, verbose: int = 0,
            settings: Settings | None = None, **options) -> Result:
        if target is None:
            target = tmp_path / "out"
            target.mkdir(exist_ok=True)
        err, out = io.StringIO(), io.StringIO()
        reporter = Reporter("RESTORE", verbosity=verbose, stream=err, interval=0)
        opts = RestoreOptions(mode=mode, file=str(image), paths=tuple(paths), target=target,
                              verbose=verbose, **options)
        outcome = run_restore(opts, settings or Settings(progress_interval=0), reporter, out=out)
        return Result(outcome, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def image_file(tmp_path):
    """``image_file(craft_or_bytes, name="img.dump") -> Path``."""
    def save(img, name: str = "img.dump") -> Path:
        data = img if isinstance(img, (bytes, bytearray)) else img.build()
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return save


@pytest.fixture(autouse=True)
def _unlock_immutable(tmp_path):
    """Immutable/append-only files restored by a test would make tmp_path undeletable."""
    yield
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if get_flags(fd) & LOCKING_FLAGS:
                    set_flags(fd, 0)
            except OSError:
                pass
            finally:
                os.close(fd)
