"""Progress totals (defect 11): what the bar or the `% done` lines count up to
is the data the run moves, for the dump and for restore of an uncompressed
image (read by several processes or one); an ETA is never negative."""
import io
import os

from ndump.dump import DumpOptions, run_dump
from ndump.report import Reporter
from ndump.restore import run_restore
from ndump.restore.options import RestoreOptions
from ndump.settings import Settings
from trees import assert_trees_equal, build_tree


class Recording(Reporter):
    def __init__(self):
        super().__init__("TEST", stream=io.StringIO(), interval=1e9, verbosity=1)
        self.total = None
        self.done = []

    def progress_start(self, total, unit="B"):
        super().progress_start(total, unit)
        self.total = total

    def progress(self, done, volume=1):
        self.done.append(done)


def test_dump_and_restore_progress_reach_their_totals(tmp_path):
    sizes = [20 << 20, 15 << 20, 3000, 1]
    src = build_tree(tmp_path / "src", {f"f{i}": os.urandom(n) for i, n in enumerate(sizes)})
    settings = Settings(state_dir=tmp_path / "state", run_dir=tmp_path / "run",
                        dumpdates=tmp_path / "dumpdates")
    image = tmp_path / "x.dump"
    rep = Recording()
    run_dump(DumpOptions(path=str(src), file=str(image)), settings, rep)
    assert rep.total == sum(sizes) and rep.done[-1] == sum(sizes)
    assert rep.done == sorted(rep.done)

    out = tmp_path / "out"
    out.mkdir()
    rep = Recording()
    outcome = run_restore(RestoreOptions(mode="r", file=str(image), target=out), settings, rep)
    assert outcome.exit_status == 0, rep.stream.getvalue()
    assert_trees_equal(src, out)
    size = image.stat().st_size
    assert rep.total == size                          # the whole image, not one worker's part
    assert size - 64 * 1024 <= max(rep.done) <= size
    assert "extracting with 2 processes" in rep.stream.getvalue() or os.cpu_count() == 1


def test_no_negative_eta_past_an_estimated_total():
    t = [0.0]
    rep = Reporter("DUMP", stream=io.StringIO(), interval=0.0, clock=lambda: t[0])
    rep.progress_start(1000)
    t[0] = 60.0
    rep.progress(1500)
    assert rep.stream.getvalue() == "DUMP: 100.00% done, finished in 0:00\n"
