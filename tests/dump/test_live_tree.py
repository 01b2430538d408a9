"""A dump of a live tree (defects 1 and 6): files and directories that change
between the mapping passes and the passes that write them.  The dump engine
runs in-process with a reporter that changes the tree when a pass starts."""
import io
import os
from pathlib import Path

import pytest

from ndump.dump import DumpOptions, run_dump
from ndump.dump.dumpdates import DumpDates
from ndump.report import Reporter
from ndump.settings import Settings
from trees import build_tree


class ChangingReporter(Reporter):
    """Records every line; runs ``actions[pass]()`` when that pass starts and
    ``on_data()`` at the first progress call of Pass IV."""

    def __init__(self, actions=None, on_data=None):
        super().__init__("DUMP", stream=io.StringIO(), interval=0.0)
        self.actions = actions or {}
        self.on_data = on_data

    def phase(self, number, title):
        super().phase(number, title)
        if number in self.actions:
            self.actions.pop(number)()

    def progress(self, done, volume=1):
        if self.on_data is not None:
            self.on_data, hook = None, self.on_data
            hook()

    @property
    def text(self):
        return self.stream.getvalue()


def _settings(tmp_path):
    return Settings(state_dir=tmp_path / "state", run_dir=tmp_path / "run",
                    dumpdates=tmp_path / "dumpdates")


def _restore(tmp_path, run_ndump, image, vanished=()):
    """Restore; the maps at the start of the dump still list the files that
    vanished later, so restore names each of them, and only them."""
    out = tmp_path / "restored"
    out.mkdir()
    proc = run_ndump("restore", "-r", "-f", image, "--target", out)
    missing = {l.split(": (inode")[0].removeprefix("RESTORE: ./")
               for l in proc.stderr.splitlines() if "not found on tape" in l}
    assert missing == set(vanished), proc.stderr
    assert proc.returncode == (2 if vanished else 0), proc.stderr
    return out


@pytest.mark.parametrize("when", ["III", "IV"])
def test_directory_renamed_during_the_dump_run_from_another_directory(tmp_path, run_ndump,
                                                                       monkeypatch, when):
    src = build_tree(tmp_path / "src", {"sub/passwd": b"the tree's file\n", "keep": b"k"})
    elsewhere = build_tree(tmp_path / "cwd", {"passwd": b"NOT IN THE TREE\n",
                                              "sub/passwd": b"NOT IN THE TREE\n"})
    monkeypatch.chdir(elsewhere)
    image = tmp_path / "x.dump"
    rep = ChangingReporter({when: lambda: os.rename(src / "sub", src / "moved")})
    outcome = run_dump(DumpOptions(path=str(src), file=str(image)), _settings(tmp_path), rep)
    assert "sub/passwd: vanished during the dump" in rep.text
    assert [p.path for p in outcome.problems] == ["./sub"], rep.text
    out = _restore(tmp_path, run_ndump, image, ["sub/passwd"])
    assert (out / "keep").read_bytes() == b"k"
    assert not (out / "sub" / "passwd").exists()
    for f in out.rglob("*"):
        assert not f.is_file() or b"NOT IN THE TREE" not in f.read_bytes()


def test_temp_files_vanishing_are_notes_and_dumpdates_advances(tmp_path, run_ndump):
    spec = {f"tmp/t{i:03d}": b"temp" for i in range(100)}
    spec.update({"big": os.urandom(1_500_000), "became-a-dir": b"x", "keep": b"kept"})
    src = build_tree(tmp_path / "src", spec)

    def vanish():
        for i in range(100):
            os.unlink(src / "tmp" / f"t{i:03d}")
        os.unlink(src / "became-a-dir")
        os.mkdir(src / "became-a-dir")

    def grow():
        with open(src / "big", "ab") as f:
            f.write(b"more")

    image = tmp_path / "x.dump"
    rep = ChangingReporter({"IV": vanish}, on_data=grow)
    settings = _settings(tmp_path)
    outcome = run_dump(DumpOptions(path=str(src), file=str(image), update=True), settings, rep)
    assert outcome.problems == [] and outcome.exit_status == 0, rep.text
    notes = [l for l in rep.text.splitlines() if l.endswith(": vanished during the dump")]
    assert len(notes) == 100, rep.text
    assert "became-a-dir: replaced by a directory during the dump; not dumped" in rep.text
    assert "warning: ./big: changed while it was being dumped" in rep.text
    assert [(d.name, d.level) for d in DumpDates(settings.dumpdates).read()] == [(str(src), 0)]
    out = _restore(tmp_path, run_ndump, image,
                   [f"tmp/t{i:03d}" for i in range(100)] + ["became-a-dir"])
    assert (out / "keep").read_bytes() == b"kept"
    assert sorted(p.name for p in (out / "tmp").iterdir()) == []
