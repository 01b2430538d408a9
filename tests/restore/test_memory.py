"""What a restore keeps per name (issue 16: a million names in well under 400 MiB):
the name tree without its inode index, the extraction list, the restored modes and
the restoresymtable written in pieces."""
from __future__ import annotations

import json
import random
import stat
import tracemalloc

from ndump.format import DirEntry, Inode
from ndump.restore.dirs import DirRecord, Tree
from ndump.restore.extract import ExtractList, ModeTable
from ndump.restore.symtab import MAGIC, VERSION, SymbolTable

DIRS, PER_DIR = 40, 500


def _records() -> dict[int, DirRecord]:
    """A root with DIRS directories of PER_DIR files each, one file with two names."""
    def rec(ino: int, children: dict[bytes, int], parent: int) -> DirRecord:
        entries = [DirEntry(ino, 4, b"."), DirEntry(parent, 4, b"..")]
        entries += [DirEntry(child, 8, name) for name, child in children.items()]
        return DirRecord(ino, Inode(mode=stat.S_IFDIR | 0o755), entries)

    dirs = {2: rec(2, {b"d%d" % i: 10 + i for i in range(DIRS)}, 2)}
    ino = 1000
    for i in range(DIRS):
        names = {}
        for j in range(PER_DIR):
            names[b"file-%05d" % j] = ino
            ino += 1
        dirs[10 + i] = rec(10 + i, names, 2)
    dirs[10].entries.append(DirEntry(1000, 8, b"second-name"))
    return dirs


def _per_name(release: bool) -> float:
    tracemalloc.start()                 # before the records: what they give back counts
    try:
        dirs = _records()
        before = tracemalloc.get_traced_memory()[0]
        tree = Tree(dirs, 1 << 20, lambda path, why: None, release=release)
        sel = ExtractList.of(tree, [tree.root], lambda ino: True)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(sel.leaves) == DIRS * PER_DIR and len(sel.leaves[1000]) == 2
    return (after - before) / (DIRS * PER_DIR)


def test_a_full_restore_keeps_few_bytes_a_name():
    # the names, the tree and the extraction list; the parsed entries are given back
    # (they cost ~150 bytes a name more) and no inode index is made
    kept = _per_name(release=True)
    assert kept < 150, kept             # ~118 bytes (~330 before issue 16)
    assert _per_name(release=False) > kept + 50


def test_the_inode_index_is_made_when_asked_for_and_complete():
    tree = Tree(_records(), 1 << 20, lambda path, why: None, release=True)
    index = tree.by_ino
    assert [e.spath() for e in index[1000]] == ["./d0/file-00000", "./d0/second-name"]
    assert len(index) == 1 + DIRS + DIRS * PER_DIR
    assert tree.by_ino is index
    assert all(rec.entries == [] for rec in tree.dirs.values())


def test_mode_table_is_a_mapping_like_a_dict():
    rng = random.Random(16)
    for _ in range(40):
        table, want = ModeTable(), {}
        for _ in range(rng.randrange(300)):
            ino = rng.choice([rng.randrange(50), rng.randrange(5000), rng.randrange(1 << 32),
                              1 << 16, (1 << 16) + 1, 1 << 19])
            mode = rng.choice([0, 0o100644, 0o40755, 0xFFFF, 1 << 16, 1 << 20])
            table[ino] = mode
            want[ino] = mode
        assert dict(table.items()) == want and len(table) == len(want)
        assert sorted(table) == sorted(want)
        merged = {}
        merged.update(table)
        assert merged == want
        assert all(table[k] == v and k in table for k, v in want.items())
        assert table.get(-1) is None and 7 << 33 not in table


def test_mode_table_takes_four_bytes_an_inode():
    tracemalloc.start()
    try:
        table = ModeTable()
        for ino in range(2, 200_002):
            table[ino] = 0o100644
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(table) == 200_000
    assert size < 9 * 200_000          # the array doubles as it grows


def test_restoresymtable_written_in_pieces_is_the_json_document():
    table = SymbolTable(dumpdate=5, dumptime=0, level=0, volume=1, maxino=100, ntrec=10,
                        state="complete")
    table.dirs = {2: [(b"a\xff\"x", 11), (b"b", 12)], 11: []}
    table.modes = {ino: 0o100644 for ino in range(2500)}
    doc = {"dumpdate": 5, "dumptime": 0, "level": 0, "volume": 1, "maxino": 100, "ntrec": 10,
           "state": "complete",
           "dirs": [[2, [["a\udcff\"x", 11], ["b", 12]]], [11, []]],
           "modes": [[ino, 0o100644] for ino in range(2500)]}
    body = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    assert table.to_bytes() == f"{MAGIC} {VERSION}\n{body}\n".encode()
    back = SymbolTable.from_bytes(table.to_bytes())
    assert back.dirs == table.dirs and back.modes == table.modes


def test_restoresymtable_of_a_tree_lists_its_names_and_modes():
    tree = Tree(_records(), 1 << 20, lambda path, why: None, release=True)
    modes = ModeTable()
    modes[1000] = stat.S_IFREG | 0o600
    modes[10] = stat.S_IFDIR | 0o700           # restored: wins over the tape's record

    class Tape:
        date, ddate, level, ntrec = 7, 0, 0, 10

    table = SymbolTable.from_tree(tree, Tape, volume=1, modes=modes, state="complete")
    back = SymbolTable.from_bytes(table.to_bytes())
    assert back.dirs[10][-1] == (b"second-name", 1000)
    assert len(back.dirs) == 1 + DIRS and len(back.dirs[2]) == DIRS
    assert back.modes[1000] == stat.S_IFREG | 0o600
    assert back.modes[10] == stat.S_IFDIR | 0o700
    assert back.modes[11] == stat.S_IFDIR | 0o755
