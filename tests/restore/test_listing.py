"""restore -t without a name tree (listing.py): the same lines and complaints as
the tree's walk, on ordinary and hostile directories, in time linear in depth."""
from __future__ import annotations

import io
import time

import pytest

from craft import Craft, bitmap
from ndump.report import Reporter
from ndump.restore.dirs import Tree, read_dir_bytes, read_dirs
from ndump.restore.listing import DumpNames, Listing, list_dump
from ndump.restore.volumes import DumpInput
from ndump.settings import Settings


def _open(path):
    dump = DumpInput(str(path), Reporter("RESTORE", stream=io.StringIO()), Settings())
    dump.__enter__()
    dump.read_maps()
    return dump


def by_tree(path, paths=()) -> tuple[list[bytes], list[tuple[str, str]]]:
    """The listing as the name tree walks it (each line's path from its entry)."""
    complaints: list[tuple[str, str]] = []
    dump = _open(path)
    try:
        dirs: dict = {}
        read_dirs(dump.reader, lambda p, r: complaints.append((p, r)), dirs)
        tree = Tree(dirs, dump.reader.maxino, lambda p, r: complaints.append((p, r)))
        starts = [tree.lookup(p) for p in paths] if paths else [tree.root]
        lines = [b"%10d\t" % e.ino + e.path() for s in starts if s is not None
                 for e in tree.walk(s) if e.is_dir or dump.in_bits(e.ino)]
    finally:
        dump.__exit__(None, None, None)
    return lines, complaints


def by_listing(path, paths=()) -> tuple[list[bytes], list[tuple[str, str]]]:
    complaints: list[tuple[str, str]] = []
    dump = _open(path)
    try:
        dirs: dict = {}
        damaged: dict = {}
        read_dir_bytes(dump.reader, lambda p, r: complaints.append((p, r)), dirs, damaged)
        names = DumpNames(dirs, damaged, dump.reader.order, dump.reader.maxino,
                          lambda p, r: complaints.append((p, r)))
        starts = [s for s in (names.lookup(p) for p in paths or ["."]) if s is not None]
        out = io.StringIO()
        list_dump(names, starts, dump.in_bits, Listing(out), verbose=False)
    finally:
        dump.__exit__(None, None, None)
    lines = [line.encode("utf-8", "surrogateescape") for line in out.getvalue().splitlines()]
    return lines, complaints


def _hostile() -> Craft:
    img = Craft()
    img.dir(2, {"ok": 3, "../escape": 4, "a/b": 5, "..": 6, ".": 7, b"nul\0byte": 8, "sub": 9,
                "loop": 10, "huge": 99999, "one": 1})
    img.dir(9, {"fine": 11, "again": 10, "up": 2, "self": 9, "other": 12})
    img.dir(10, {"back": 9, "leaf": 13, "sub2": 12}, parent=2)
    img.dir(12, {"deep": 14})
    for ino in (3, 4, 5, 6, 7, 8, 11, 13, 14):
        img.file(ino, b"x")
    return img


@pytest.mark.parametrize("paths", [(), ("sub",), ("loop", "sub/other", "nothing", "sub/../ok")])
def test_listing_equals_the_tree_walk_on_hostile_directories(image_file, paths):
    path = image_file(_hostile())
    lines, complaints = by_listing(path, paths)
    want_lines, want_complaints = by_tree(path, paths)
    assert lines == want_lines
    assert complaints == want_complaints
    assert any("directory loop" in r for _, r in complaints)


def test_listing_equals_the_tree_walk_on_a_mangled_directory(image_file):
    img = Craft().dir(2, {f"name{i}": 3 + i for i in range(80)})
    for i in range(80):
        img.file(3 + i, b"x")
    data, inode, xattrs = img.dirs[2]
    data = bytearray(data)
    data[512 + 4] = 3              # a bad reclen in the second chunk
    img.dirs[2] = (bytes(data), inode, xattrs)
    path = image_file(img)
    assert by_listing(path) == by_tree(path)
    assert "mangled directory" in by_listing(path)[1][0][1]


def _deep(depth: int) -> Craft:
    img = Craft()
    for d in range(depth):
        img.dir(2 + d if d else 2, {"d": 3 + d, "f": 100_000 + d} if d < depth - 1 else {"f": 100_000 + d})
    maxino = 100_000 + depth
    img.bits_override = bitmap(range(2, maxino), maxino)
    img.clri_override = bitmap([], maxino)
    return img


class _Null:
    """A binary sink, like sys.stdout.buffer on /dev/null."""

    def __init__(self):
        self.buffer = self

    def write(self, data):
        pass

    def flush(self):
        pass


def _listing_seconds(path) -> float:
    dump = _open(path)
    try:
        dirs: dict = {}
        damaged: dict = {}
        read_dir_bytes(dump.reader, lambda p, r: None, dirs, damaged)
        start = time.perf_counter()
        names = DumpNames(dirs, damaged, dump.reader.order, dump.reader.maxino, lambda p, r: None)

        n = list_dump(names, [names.lookup(".")], dump.in_bits, Listing(_Null()), verbose=True)
        seconds = time.perf_counter() - start
    finally:
        dump.__exit__(None, None, None)
    assert n == 2 * len(dirs)
    return seconds


def test_a_30000_deep_listing_is_linear(image_file):
    shallow = _listing_seconds(image_file(_deep(3000), "shallow"))
    deep = _listing_seconds(image_file(_deep(30_000), "deep"))
    # linear: about 10 times the work for 10 times the depth (the classic walk was
    # quadratic: 100 times); measured loosely, the machine may be busy
    print(f"listing 3,000 deep: {shallow:.3f} s, 30,000 deep: {deep:.3f} s")
    assert deep < 30 * max(shallow, 0.1), (shallow, deep)
    assert deep < 4, deep
