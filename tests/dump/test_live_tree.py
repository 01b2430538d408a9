"""A dump of a live tree (defects 1 and 6): files and directories that change
between the mapping passes and the passes that write them.  The dump engine
runs in-process with a reporter that changes the tree when a pass starts."""
import io
import os
import subprocess
import time
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


def _stock_restore_r(images, where):
    where.mkdir()
    for image in images:
        proc = subprocess.run(["restore", "-r", "-y", "-f", str(image)], cwd=where,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        assert "not found on tape" not in proc.stderr and "expected next" not in proc.stderr, \
            proc.stderr


@pytest.mark.compat
def test_files_gone_before_their_directory_is_written_are_left_out_of_it(tmp_path, run_ndump):
    """Removed before Pass III writes their directory: the names are left out, so
    neither ndump nor stock restore reports them "not found on tape" (exit 0); a
    hard-linked file whose first name went is dumped through its other name; one
    note per file whose every name went."""
    spec = {f"tmp/t{i:02d}": b"temp" for i in range(20)}
    spec.update({"d1/first": b"linked contents\n", "d1/both": b"both gone", "keep": b"kept"})
    src = build_tree(tmp_path / "src", spec)
    os.link(src / "d1" / "first", src / "d2-second")
    os.link(src / "d1" / "both", src / "d2-both")

    def vanish():
        for i in range(20):
            os.unlink(src / "tmp" / f"t{i:02d}")
        for name in ("d1/first", "d1/both", "d2-both"):
            os.unlink(src / name)

    image = tmp_path / "x.dump"
    rep = ChangingReporter({"III": vanish})
    settings = _settings(tmp_path)
    outcome = run_dump(DumpOptions(path=str(src), file=str(image), update=True), settings, rep)
    assert outcome.problems == [] and outcome.exit_status == 0, rep.text
    notes = sorted(l.removeprefix("DUMP: ") for l in rep.text.splitlines()
                   if l.endswith(": vanished during the dump"))
    # the walk met ./d2-both (in the root) before ./d1/both: the note names it
    assert notes == sorted([f"./tmp/t{i:02d}: vanished during the dump" for i in range(20)]
                           + ["./d2-both: vanished during the dump"]), rep.text
    out = _restore(tmp_path, run_ndump, image)            # exit 0, nothing "not found"
    assert sorted(p.name for p in (out / "tmp").iterdir()) == []
    assert sorted(p.name for p in (out / "d1").iterdir()) == []
    assert (out / "d2-second").read_bytes() == b"linked contents\n"
    assert (out / "keep").read_bytes() == b"kept" and not (out / "d2-both").exists()
    stock = tmp_path / "stock"
    _stock_restore_r([image], stock)
    assert (stock / "d2-second").read_bytes() == b"linked contents\n"
    assert sorted(p.name for p in stock.iterdir() if p.name != "restoresymtable") == [
        "d1", "d2-second", "keep", "tmp"]


@pytest.mark.compat
@pytest.mark.parametrize("unchanged", [1, 12])      # Pass III lists d, or looks at one name
def test_a_changed_file_removed_during_a_level_1_goes_from_the_restored_chain(tmp_path,
                                                                             run_ndump, unchanged):
    """Level 1: a file changed since the level 0 is removed before its directory is
    written; restore -r of the 0/1 chain (ndump and stock) removes it, exit 0."""
    same = ["same"] + [f"same{i:02d}" for i in range(1, unchanged)]
    src = build_tree(tmp_path / "src", {"d/changed": b"old", "top": b"t",
                                        **{f"d/{name}": b"same" for name in same}})
    settings = _settings(tmp_path)
    run_dump(DumpOptions(path=str(src), file=str(tmp_path / "l0"), update=True), settings,
             ChangingReporter())
    time.sleep(1.05)
    (src / "d" / "changed").write_bytes(b"new contents")
    rep = ChangingReporter({"III": lambda: os.unlink(src / "d" / "changed")})
    outcome = run_dump(DumpOptions(path=str(src), level=1, file=str(tmp_path / "l1"), update=True),
                       settings, rep)
    assert outcome.exit_status == 0 and "./d/changed: vanished during the dump" in rep.text, rep.text
    nd = tmp_path / "nd"
    nd.mkdir()
    for image in ("l0", "l1"):
        proc = run_ndump("restore", "-r", "-f", tmp_path / image, "--target", nd)
        assert proc.returncode == 0 and "not found" not in proc.stderr, proc.stderr
    stock = tmp_path / "stock"
    _stock_restore_r([tmp_path / "l0", tmp_path / "l1"], stock)
    for out in (nd, stock):
        assert sorted(p.name for p in (out / "d").iterdir()) == same, out
        assert (out / "top").read_bytes() == b"t"
