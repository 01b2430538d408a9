"""ndump/catalog: the database on its own (schema, migrations, queries, checks)."""
import multiprocessing
import os
import sqlite3
import time

import pytest

from ndump.catalog import VERSION, Catalog, CatalogError, FileRow, NewDump
from ndump.catalog import schema

DAY = 86400


def _dump(cat, tree="/home", level=0, date=DAY, base=0, names=("ann/thesis",), status="done"):
    did = cat.begin_dump(NewDump(tree=tree, level=level, date=date, base_date=base,
                                 medium=f"/backup/{level}-{date}.dump"))
    cat.add_files(did, [FileRow(n, 10 + i, 0o100000, 100, date - 5, date - 5, 1, 4096 * (i + 1))
                        for i, n in enumerate(names)])
    cat.finish_dump(did, status=status, volumes=1)
    return did


def test_new_catalog_is_wal_and_at_the_current_version(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        _dump(cat)
    db = sqlite3.connect(tmp_path / "c.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_older_catalog_is_migrated_and_a_newer_one_refused(tmp_path):
    path = tmp_path / "c.db"
    sqlite3.connect(path).execute("CREATE TABLE unrelated (x)").connection.commit()
    with Catalog(path) as cat:              # version 0 -> VERSION
        _dump(cat)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(CatalogError, match="schema version"):
        Catalog(path)
    assert set(schema.MIGRATIONS) == set(range(VERSION))


def test_reading_never_creates_a_catalog(tmp_path):
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog(tmp_path / "none.db", writable=False)
    assert not (tmp_path / "none.db").exists()


def test_find_patterns_newest_first(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        _dump(cat, date=DAY, names=(".", "ann", "ann/thesis", "ann/notes/thesis", "bob/x.c"))
        _dump(cat, level=1, date=2 * DAY, base=DAY, names=("ann", "ann/thesis"))
        _dump(cat, tree="/srv", date=3 * DAY, names=("thesis",))
        bare = [(m.dump.tree, m.dump.level, m.path) for m in cat.find("thesis")]
        assert bare == [("/srv", 0, "thesis"), ("/home", 1, "ann/thesis"),
                        ("/home", 0, "ann/notes/thesis"), ("/home", 0, "ann/thesis")]
        assert [(m.dump.level, m.path) for m in cat.find("/home/ann/thesis")] == \
            [(1, "ann/thesis"), (0, "ann/thesis")]
        assert [m.path for m in cat.find("/home/ann/*")] == ["ann/thesis", "ann/notes/thesis",
                                                             "ann/thesis"]
        assert [m.path for m in cat.find("./bob/*.c")] == ["bob/x.c"]
        assert [m.path for m in cat.find("/home")] == ["."]
        assert cat.find("/elsewhere/thesis") == []
        assert len(cat.find("*", limit=2)) == 2


def test_chain_follows_base_dates(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        d0 = _dump(cat, level=0, date=1 * DAY)
        d2 = _dump(cat, level=2, date=2 * DAY, base=1 * DAY)
        d3 = _dump(cat, level=3, date=3 * DAY, base=2 * DAY)
        d1 = _dump(cat, level=1, date=4 * DAY, base=1 * DAY)
        d4 = _dump(cat, level=4, date=5 * DAY, base=4 * DAY)
        _dump(cat, level=0, date=6 * DAY, status="aborted")
        ids = lambda at: [d.id for d in cat.chain("/home", at)]
        assert ids(1 * DAY) == [d0]
        assert ids(3 * DAY + 5) == [d0, d2, d3]
        assert ids(4 * DAY) == [d0, d1]
        assert ids(10 * DAY) == [d0, d1, d4]          # the aborted level 0 does not count
        with pytest.raises(CatalogError, match="holds no dump"):
            cat.chain("/home", DAY - 1)
        cat.forget_dump(d1)
        with pytest.raises(CatalogError, match="incomplete"):
            cat.chain("/home", 10 * DAY)


def test_check_reports_unfinished_dumps_and_missing_rows(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        _dump(cat, names=("a", "b"))
        assert cat.check() == []
        cat.begin_dump(NewDump(tree="/home", level=0, date=2 * DAY, base_date=0))
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("DELETE FROM files WHERE path = 'b'")
    db.commit()
    with Catalog(tmp_path / "c.db", writable=False) as cat:
        problems = cat.check()
    assert any("never finished" in p for p in problems)
    assert any("should have 2 file rows, has 1" in p for p in problems)


def test_corrupt_file_is_a_catalog_error(tmp_path):
    path = tmp_path / "c.db"
    path.write_bytes(b"this is not an sqlite database" * 200)
    with pytest.raises(CatalogError, match="not a database"):
        Catalog(path)


def _writer(path, n, tree):
    with Catalog(path) as cat:
        for k in range(n):
            did = cat.begin_dump(NewDump(tree=tree, level=0, date=k + 1, base_date=0))
            cat.add_files(did, [FileRow(f"f{i}", i, 0o100000, 1, 1, 1, 1, i * 1024)
                                for i in range(12000)])
            cat.finish_dump(did, status="done", volumes=1)


def test_concurrent_writers_take_turns(tmp_path):
    path = tmp_path / "c.db"
    Catalog(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, 3, f"/t{i}")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with Catalog(path, writable=False) as cat:
        dumps = cat.dumps()
        assert cat.check() == []
    assert len(dumps) == 6 and all(d.files == 12000 and d.status == "done" for d in dumps)


def _write_at(path, start, failures):
    while time.time() < start:
        pass
    try:
        _writer(path, 1, f"/t{os.getpid()}")
    except CatalogError as e:
        failures.put(str(e))


def test_first_writers_at_once_all_succeed(tmp_path):
    """Dumps that start together on a machine's first catalog: the switch to WAL
    must wait for the others like any other lock, not give up at once (it did:
    one of six writers in a few tries lost its file history)."""
    ctx = multiprocessing.get_context("fork")
    for attempt in range(5):
        path = tmp_path / f"c{attempt}.db"
        failures = ctx.Queue()
        start = time.time() + 0.3
        procs = [ctx.Process(target=_write_at, args=(path, start, failures)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 6
        assert failures.empty(), failures.get()
        with Catalog(path, writable=False) as cat:
            assert cat.check() == []


def test_dump_made_as_a_header_names_it(tmp_path):
    long = "/srv/" + "x" * 70
    with Catalog(tmp_path / "c.db") as cat:
        a = cat.begin_dump(NewDump(tree=long + "/a", level=0, date=DAY, base_date=0, host="h",
                                   medium="/b/a.dump"))
        b = cat.begin_dump(NewDump(tree=long + "/b", level=0, date=DAY, base_date=0, host="h",
                                   medium="/b/b.dump"))
        c = cat.begin_dump(NewDump(tree="/home", level=0, date=DAY, base_date=0, host="g"))
        for did in (a, b, c):
            cat.finish_dump(did, status="done", volumes=1)
        header_tree = long[:63]                   # c_filesys keeps 63 bytes
        assert cat.dump_made(date=DAY, level=0, tree=header_tree, host="h").id == b
        assert cat.dump_made(date=DAY, level=0, tree=header_tree, host="h",
                             medium="/b/a.dump").id == a
        assert cat.dump_made(date=DAY, level=0, tree="/home", host="g").id == c
        assert cat.dump_made(date=DAY, level=0, tree="/home", host="h") is None
        assert cat.dump_made(date=DAY, level=1) is None


def test_find_leaves_out_running_and_aborted_dumps(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        _dump(cat, date=DAY, names=("a",))
        _dump(cat, date=2 * DAY, names=("a",), status="aborted")
        cat.begin_dump(NewDump(tree="/home", level=0, date=3 * DAY, base_date=0))
        assert [m.dump.date for m in cat.find("a")] == [DAY]
