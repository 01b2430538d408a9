"""Pass IV's per-file fast path (TreeWriter._regular: one chunk, no holes, from the
raw statx fields) and the read-ahead thread of bigger files write the very bytes
the general path writes: the same tree dumped both ways, byte for byte, and
stock restore reads it (issue 16)."""
import io
import os

import pytest

from ndump.dump import open_writers, write_passes, writer
from ndump.dump.inomap import InodeMap
from ndump.dump.select import Walk
from ndump.format import DumpIdent
from ndump.report import Reporter
from stock import stock_restore
from trees import assert_trees_equal, build_tree, tree_state

SIZES = [0, 1, 1023, 1024, 1025, 4096, 70_000, 524_287, 524_288, 524_289, 1_048_576,
         3_000_001]


class Output:
    is_tape = False
    seekable = True

    def __init__(self):
        self.data = bytearray()
        self.name = "memory"

    def write(self, data):
        self.data += data

    def close(self):
        pass


def _tree(root):
    spec = {f"d{i % 3}/f{n}": os.urandom(n) for i, n in enumerate(SIZES)}
    src = build_tree(root, spec)
    with open(src / "sparse", "wb") as f:          # holes: the general path, read ahead
        f.seek(700_000)
        f.write(b"s" * 5000)
        f.truncate(2_500_000)
    os.setxattr(src / "d1" / "f1", "user.small", b"v" * 40)
    os.setxattr(src / "d2" / "f3000001", "user.big", b"w" * 100)
    os.symlink("d1/f1", src / "link")
    os.mkfifo(src / "fifo")
    os.link(src / "d2" / "f4096", src / "hard")
    return src


def _dump(src, checksums):
    rep = Reporter("DUMP", stream=io.StringIO(), interval=1e9)
    inomap = InodeMap(None, str(src))
    sel = Walk(os.fsencode(src), 0, 0, 1, (), inomap, rep).run()
    out = Output()
    fmt, sink = open_writers(DumpIdent(date=1_700_000_000, filesys=str(src), ntrec=10),
                             lambda n: None)
    sink.start(out)
    write_passes(os.fsencode(src), sel, inomap, fmt, sink, rep, checksums=checksums)
    assert rep.problems == []
    return bytes(out.data), rep.stream.getvalue()


@pytest.mark.parametrize("checksums", [True, False])
def test_fast_paths_write_the_general_paths_bytes(tmp_path, monkeypatch, checksums):
    src = _tree(tmp_path / "src")
    _dump(src, checksums)               # the first reading of the directories sets their atime
    fast, fast_said = _dump(src, checksums)
    with monkeypatch.context() as m:
        m.setattr(writer.TreeWriter, "_regular", lambda self, dino, dfd, node, name: False)
        m.setattr(writer, "_AHEAD_FROM", 1 << 62)
        general, general_said = _dump(src, checksums)
    assert fast == general and fast_said == general_said
    assert len(fast) > sum(SIZES)


@pytest.mark.compat
def test_stock_restore_reads_the_fast_paths_dump(tmp_path):
    src = _tree(tmp_path / "src")
    before = tree_state(src)
    image, _ = _dump(src, True)
    (tmp_path / "x.dump").write_bytes(image)
    out = tmp_path / "out"
    out.mkdir()
    stock_restore(["-r", "-f", tmp_path / "x.dump"], cwd=out)
    assert_trees_equal(before, out, root=False)
