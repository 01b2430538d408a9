"""The dump engine in-process: Walk (Pass I/II), then write_passes through the
FormatWriter and the VolumeWriter onto in-memory outputs that fill up, with a
recording reporter; the volumes are then restored by ndump restore."""
import io
import os

import pytest

from ndump.dump import open_writers, write_passes
from ndump.dump.inomap import InodeMap
from ndump.dump.select import Walk
from ndump.errors import OperatorAbort
from ndump.format import DumpIdent, unpack_header
from ndump.format.constants import TS_TAPE
from ndump.media import EndOfMedia
from ndump.report import Reporter
from ndump.restore import run_restore
from ndump.restore.options import RestoreOptions
from ndump.settings import Settings
from trees import assert_trees_equal, build_tree


class MemoryOutput:
    """A medium in memory that holds ``capacity`` bytes (a full filesystem
    takes what fits of a write, then refuses, as FileOutput reports it)."""
    is_tape = False
    seekable = True

    def __init__(self, name, capacity=None):
        self.name, self.capacity = name, capacity
        self.data = bytearray()
        self.closed = False

    def write(self, data):
        room = len(data) if self.capacity is None else self.capacity - len(self.data)
        if room < len(data):
            self.data += bytes(data[:max(room, 0)])
            raise EndOfMedia(f"{self.name}: no space left on device", written=max(room, 0))
        self.data += data

    def truncate_to(self, size):
        del self.data[size:]

    def close(self):
        self.closed = True


class Recorder(Reporter):
    def __init__(self):
        super().__init__("DUMP", stream=io.StringIO(), interval=1e9)
        self.phases = []

    def phase(self, number, title):
        self.phases.append(number)


SPEC = {"a": os.urandom(300_000), "d/b": os.urandom(200_000), "d/e/c": b"c" * 5000, "empty": b""}


def _dump(tmp_path, *, capacity=None, capacities=(), change_volume=None, headers=True,
          rep=None, outputs=None):
    src = build_tree(tmp_path / "src", SPEC)
    rep = rep if rep is not None else Recorder()
    inomap = InodeMap(None, str(src))
    sel = Walk(os.fsencode(src), 0, 0, 1, (), inomap, rep).run()
    assert rep.phases == [] and sel.inodes == 4 + 3              # files, then directories
    outputs = outputs if outputs is not None else []

    def open_volume(n):
        outputs.append(MemoryOutput(f"vol{n}", capacity))
        return outputs[-1]

    ident = DumpIdent(date=1_700_000_000, filesys=str(src), ntrec=10)
    fmt, sink = open_writers(ident, open_volume, capacities=list(capacities),
                             change_volume=change_volume)
    if not headers:
        sink.volume_header = None                 # a writer that cannot change volumes
    sink.start(open_volume(1))
    write_passes(os.fsencode(src), sel, inomap, fmt, sink, rep)
    assert rep.phases == ["III", "IV"] and rep.problems == []
    return src, outputs


def _restore(tmp_path, outputs, src):
    for n, out in enumerate(outputs, 1):
        assert out.closed and len(out.data) % 10240 == 0
        (tmp_path / f"v{n:03d}").write_bytes(out.data)
        if n > 1:
            h = unpack_header(bytes(out.data[:1024]))
            assert (h.type, h.volume) == (TS_TAPE, n)
    target = tmp_path / "restored"
    target.mkdir()
    settings = Settings(state_dir=tmp_path / "state", run_dir=tmp_path / "run")
    rep = Reporter("RESTORE", stream=io.StringIO())
    outcome = run_restore(RestoreOptions(mode="r", file=str(tmp_path / "v"), target=target,
                                         multi_volume=True), settings, rep)
    assert outcome.exit_status == 0, rep.stream.getvalue()
    assert_trees_equal(src, target)


def test_one_volume_in_memory(tmp_path):
    src, outputs = _dump(tmp_path)
    assert len(outputs) == 1
    _restore(tmp_path, outputs, src)


def test_volume_size_cuts_volumes(tmp_path):
    asked = []
    src, outputs = _dump(tmp_path, capacities=[200, 150], change_volume=lambda v, why:
                         asked.append((v, why)))
    assert len(outputs) == 4 and [v for v, _ in asked] == [2, 3, 4]
    assert all(why == "volume size reached" for _, why in asked)
    assert [len(o.data) for o in outputs[:3]] == [200 * 1024, 150 * 1024, 150 * 1024]
    _restore(tmp_path, outputs, src)


def test_end_of_medium_continues_on_the_next_volume(tmp_path):
    asked = []
    src, outputs = _dump(tmp_path, capacity=256 * 1024,
                         change_volume=lambda v, why: asked.append((v, why)))
    assert len(outputs) == 3
    assert asked == [(2, "vol1: no space left on device"), (3, "vol2: no space left on device")]
    _restore(tmp_path, outputs, src)


@pytest.mark.parametrize("error", [OperatorAbort("volume #2: the operator said no"),
                                   OSError(5, "Input/output error")], ids=["abort", "oserror"])
def test_a_failure_at_a_volume_change_ends_the_dump(tmp_path, error):
    """A refusal, or an error of the terminal, at a volume change is not taken
    for a read error of the file being written: it ends the dump, and the
    medium is closed."""
    def refuse(v, why):
        raise error

    rep, outputs = Recorder(), []
    with pytest.raises(type(error)):
        _dump(tmp_path, capacities=[100], change_volume=refuse, rep=rep, outputs=outputs)
    assert rep.problems == [] and rep.stream.getvalue() == ""
    assert len(outputs) == 1 and outputs[0].closed


def test_without_volume_headers_the_end_of_medium_ends_the_dump(tmp_path):
    with pytest.raises(EndOfMedia, match="no space left on device"):
        _dump(tmp_path, capacity=100 * 1024, headers=False)
