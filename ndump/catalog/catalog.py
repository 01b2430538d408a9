"""The file-history catalog: an SQLite database of dumps and the names they
hold, with the position of each inode's header on its volume (SPEC §7; classic
counterpart: the -A archive file of Linux dump, ONTAP's file history).

WAL mode, so that a dump writing and a ``catalog find`` reading do not wait for
each other; file rows go in by ``executemany`` in batches, each batch its own
short transaction, so that two dumps writing at once only take turns.
"""
from __future__ import annotations

import itertools
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ndump.errors import StartupError
from ndump.catalog import schema

BATCH = 5000                  # file rows per transaction
# the file rows of one dump (its id three times): its rowid range, then the dump column
_ROWS = ("rowid BETWEEN (SELECT first_row FROM dumps WHERE id = ?)"
         " AND (SELECT last_row FROM dumps WHERE id = ?) AND dump = ?")
BUSY_TIMEOUT = 3.0            # seconds to wait for another writer's lock
_DUMP_COLUMNS = ("id", "tree", "level", "date", "base_date", "label", "host", "medium", "multi",
                 "volumes", "ntrec", "compression", "status", "context", "files", "bytes",
                 "recorded")


class CatalogError(StartupError):
    """The catalog cannot be opened, read or written."""


@dataclass(frozen=True)
class DumpInfo:
    """One dump as the catalog knows it."""
    id: int
    tree: str
    level: int
    date: int
    base_date: int
    label: str
    host: str
    medium: str
    multi: int
    volumes: int
    ntrec: int
    compression: str | None
    status: str
    context: str | None
    files: int
    bytes: int
    recorded: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NewDump:
    """What a dump (or an image being indexed) says about itself."""
    tree: str
    level: int
    date: int
    base_date: int
    label: str = "none"
    host: str = ""
    medium: str = "-"
    multi: bool = False
    ntrec: int = 10
    compression: str | None = None
    status: str = "running"
    context: str | None = None


@dataclass(frozen=True)
class FileRow:
    """One dumped name.  ``offset`` is the byte offset of the inode's TS_INODE
    header on ``volume`` (in the uncompressed block stream of a compressed dump)."""
    path: str
    ino: int
    type: int
    size: int
    mtime: int
    ctime: int
    volume: int
    offset: int
    crc: int | None = None


@dataclass(frozen=True)
class Match:
    """A name found by ``find``, with the dump that holds it."""
    dump: DumpInfo
    path: str
    ino: int
    type: int
    size: int
    mtime: int
    volume: int
    offset: int

    def to_json(self) -> dict:
        d = asdict(self)
        d["dump"] = self.dump.to_json()
        return d


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError):
        return (e.strerror or str(e)).lower()
    return str(e).lower() or type(e).__name__


class Catalog:
    """The catalog at ``path``.  ``writable=False`` never creates or migrates it."""

    def __init__(self, path: Path | str, *, writable: bool = True, timeout: float = BUSY_TIMEOUT):
        self.path = Path(path)
        self.writable = writable
        self._db: sqlite3.Connection | None = None
        self._open(timeout)

    # -- life cycle ----------------------------------------------------------
    def _open(self, timeout: float) -> None:
        if not self.writable and not self.path.exists():
            raise CatalogError(f"no catalog at {self.path}")
        try:
            if self.writable:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            uri = f"file:{self.path}" + ("" if self.writable else "?mode=ro")
            self._db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
            if self.writable:
                self._wal(timeout)
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except (sqlite3.Error, OSError) as e:
            self.close()
            raise CatalogError(f"catalog {self.path}: {_reason(e)}") from None

    def _wal(self, timeout: float) -> None:
        """Switch to WAL.  SQLite answers "locked" at once, without its busy wait,
        while another connection makes the same switch (two dumps starting on a
        new catalog): wait for that one as for any other lock."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > schema.VERSION:
            raise CatalogError(f"catalog {self.path} has schema version {version}; this ndump"
                               f" knows up to {schema.VERSION}")
        if version == schema.VERSION:
            return
        if not self.writable:
            raise CatalogError(f"catalog {self.path} has schema version {version}: open it for"
                               " writing once (any dump or catalog add) to bring it up to date")
        with self._transaction():
            # re-read under the write lock: another process may have migrated it
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            while version < schema.VERSION:
                for statement in _statements(schema.MIGRATIONS[version]):
                    self._db.execute(statement)
                version += 1
                self._db.execute(f"PRAGMA user_version = {version}")

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _transaction(self):
        return _Transaction(self._db)

    def _run(self, what: str, fn, *args):
        """fn(*args), with sqlite and OS errors as CatalogError."""
        if self._db is None:
            raise CatalogError(f"catalog {self.path} is closed")
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as e:
            raise CatalogError(f"catalog {self.path}: cannot {what}: {_reason(e)}") from None

    # -- writing -------------------------------------------------------------
    def begin_dump(self, d: NewDump) -> int:
        """The new dump's id (status ``running`` until finish_dump)."""
        def insert():
            with self._transaction():
                cur = self._db.execute(
                    "INSERT INTO dumps (tree, level, date, base_date, label, host, medium, multi,"
                    " volumes, ntrec, compression, status, context, recorded)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                    (d.tree, d.level, d.date, d.base_date, d.label, d.host, d.medium, int(d.multi),
                     d.ntrec, d.compression, d.status, d.context, int(time.time())))
                return cur.lastrowid
        return self._run("record the dump", insert)

    def add_files(self, dump_id: int, rows: Iterable[FileRow]) -> int:
        """Insert file rows, BATCH per transaction; returns how many."""
        return self.add_rows(dump_id, ((dump_id, r.path, r.path.rpartition("/")[2], r.ino, r.type,
                                        r.size, r.mtime, r.ctime, r.volume, r.offset)
                                       for r in rows))

    def add_rows(self, dump_id: int, rows: Iterable[tuple]) -> int:
        """The fast path of add_files: rows already as (dump, path, name, ino, type,
        size, mtime, ctime, volume, offset); no checksum."""
        def insert():
            n = 0
            it = iter(rows)
            while True:
                batch = list(itertools.islice(it, BATCH))
                if not batch:
                    return n
                self._insert(dump_id, batch)
                n += len(batch)
        return self._run("record the files", insert)

    def _insert(self, dump_id: int, batch: list[tuple]) -> None:
        with self._transaction():
            self._db.executemany("INSERT INTO files (dump, path, name, ino, type, size, mtime,"
                                 " ctime, volume, offset)"
                                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
            # we hold the write lock: the batch's rowids are consecutive
            last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
            self._db.execute("UPDATE dumps SET first_row = coalesce(first_row, ?), last_row = ?"
                             " WHERE id = ?", (last - len(batch) + 1, last, dump_id))

    def finish_dump(self, dump_id: int, *, status: str, volumes: int, files: int | None = None,
                    nbytes: int | None = None) -> None:
        def update():
            with self._transaction():
                count = files
                if count is None:
                    count = self._db.execute(f"SELECT count(*) FROM files WHERE {_ROWS}",
                                             (dump_id,) * 3).fetchone()[0]
                self._db.execute("UPDATE dumps SET status = ?, volumes = ?, files = ?,"
                                 " bytes = coalesce(?, bytes) WHERE id = ?",
                                 (status, volumes, count, nbytes, dump_id))
        self._run("record the end of the dump", update)

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database now (closing is then quick)."""
        self._run("checkpoint", lambda: self._db.execute("PRAGMA wal_checkpoint(PASSIVE)"))

    def forget_dump(self, dump_id: int) -> None:
        def delete():
            with self._transaction():
                self._db.execute(f"DELETE FROM files WHERE {_ROWS}", (dump_id,) * 3)
                self._db.execute("DELETE FROM dumps WHERE id = ?", (dump_id,))
        self._run("remove a dump", delete)

    # -- reading -------------------------------------------------------------
    def dumps(self, tree: str | None = None) -> list[DumpInfo]:
        """Dumps, per tree, oldest first."""
        sql = f"SELECT {', '.join(_DUMP_COLUMNS)} FROM dumps"
        args: tuple = ()
        if tree is not None:
            sql += " WHERE tree = ?"
            args = (tree,)
        sql += " ORDER BY tree, date, level, id"
        return self._run("read the dumps", lambda: [DumpInfo(*r) for r in self._db.execute(sql, args)])

    def dump(self, dump_id: int) -> DumpInfo | None:
        rows = self._run("read the dumps", lambda: self._db.execute(
            f"SELECT {', '.join(_DUMP_COLUMNS)} FROM dumps WHERE id = ?", (dump_id,)).fetchall())
        return DumpInfo(*rows[0]) if rows else None

    def dump_made(self, *, date: int, level: int, tree: str | None = None,
                  host: str | None = None, medium: str | None = None) -> DumpInfo | None:
        """The newest finished dump with this date and level, of this tree and host
        as a dump header names them (c_filesys keeps only 63 bytes of the tree);
        one written to ``medium`` first."""
        sql = (f"SELECT {', '.join(_DUMP_COLUMNS)} FROM dumps WHERE date = ? AND level = ?"
               " AND status != 'running'")
        rows = self._run("read the dumps", lambda: self._db.execute(
            sql + " ORDER BY id DESC", (date, level)).fetchall())
        found = [d for d in map(lambda r: DumpInfo(*r), rows)
                 if (tree is None or _head(d.tree) == _head(tree))
                 and (host is None or d.host == host)]
        found.sort(key=lambda d: d.medium != medium)      # stable: newest first otherwise
        return found[0] if found else None

    def positions(self, dump_id: int) -> dict[int, tuple[int, int]]:
        """dump inode -> (volume, header offset) of every inode the dump holds."""
        return self._run("read the file positions", lambda: {
            ino: (vol, off) for ino, vol, off in self._db.execute(
                f"SELECT ino, volume, offset FROM files WHERE {_ROWS}", (dump_id,) * 3)})

    def find(self, pattern: str, *, limit: int | None = None) -> list[Match]:
        """Names matching the shell pattern, newest dump first (see _pattern_clauses).
        Dumps still running or aborted are left out: their images are not whole."""
        clauses = self._pattern_clauses(pattern)
        if not clauses:
            return []
        where = " OR ".join(f"({c})" for c, _ in clauses)
        args = [a for _, aa in clauses for a in aa]
        cols = ", ".join(f"d.{c}" for c in _DUMP_COLUMNS)
        # CROSS JOIN keeps files the outer loop: one pass over them (or the name
        # index), each row's dump found by its key
        sql = (f"SELECT {cols}, f.path, f.ino, f.type, f.size, f.mtime, f.volume, f.offset"
               f" FROM files f CROSS JOIN dumps d ON d.id = f.dump"
               f" WHERE d.status NOT IN ('running', 'aborted')"
               f" AND ({where}) ORDER BY d.date DESC, d.id DESC, f.path")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        n = len(_DUMP_COLUMNS)
        return self._run("search", lambda: [
            Match(DumpInfo(*r[:n]), *r[n:]) for r in self._db.execute(sql, args)])

    def _pattern_clauses(self, pattern: str) -> list[tuple[str, tuple]]:
        """An absolute PATTERN is matched under each tree it lies in; a relative one
        with a slash against paths within each tree; a bare name against the last
        component of every path.  A last component without wildcards is looked up
        in the name index first."""
        if pattern.startswith("/"):
            out = []
            for tree in self._trees():
                rel = _within(pattern, tree)
                if rel is not None:
                    name, args = _name_clause(rel)
                    out.append((f"d.tree = ? AND {name}f.path GLOB ?", (tree, *args, rel)))
            return out
        rel = pattern[2:] if pattern.startswith("./") else pattern
        rel = rel.rstrip("/") or "."
        name, args = _name_clause(rel)
        if "/" in rel:
            return [(f"{name}f.path GLOB ?", (*args, rel))]
        return [(f"f.name {'=' if _literal(rel) else 'GLOB'} ?", (rel,))]

    def _trees(self) -> list[str]:
        return self._run("read the dumps", lambda: [
            r[0] for r in self._db.execute("SELECT DISTINCT tree FROM dumps")])

    def chain(self, tree: str, at: int) -> list[DumpInfo]:
        """The dumps that restore ``tree`` as it was at ``at``, level 0 first: the
        newest complete dump made by then, and each dump its base date names."""
        done = [d for d in self.dumps(tree) if d.status in ("done", "partial", "indexed")]
        candidates = [d for d in done if d.date <= at]
        if not candidates:
            raise CatalogError(f"the catalog holds no dump of {tree} made by {time.ctime(at)}")
        chain = [max(candidates, key=lambda d: (d.date, d.id))]
        while chain[-1].base_date != 0:
            last = chain[-1]
            bases = [d for d in done if d.date == last.base_date and d.level < last.level]
            if not bases:
                raise CatalogError(
                    f"the chain of {tree} is incomplete: the level {last.level} dump of"
                    f" {time.ctime(last.date)} is based on a dump of {time.ctime(last.base_date)}"
                    " that the catalog does not hold")
            chain.append(max(bases, key=lambda d: (d.level, d.id)))
        return list(reversed(chain))

    # -- checking ------------------------------------------------------------
    def check(self) -> list[str]:
        """Problems found: SQLite's integrity and foreign-key checks, and dumps
        whose file count disagrees with their rows.  Empty when all is well."""
        def run():
            problems = [r[0] for r in self._db.execute("PRAGMA integrity_check")
                        if r[0] != "ok"]
            bad = self._db.execute("PRAGMA foreign_key_check").fetchall()
            if bad:
                problems.append(f"{len(bad)} file rows belong to no dump")
            for did, files, have, status in self._db.execute(
                    "SELECT d.id, d.files, (SELECT count(*) FROM files f WHERE f.rowid BETWEEN"
                    " d.first_row AND d.last_row AND f.dump = d.id), d.status FROM dumps d"):
                if status == "running":
                    problems.append(f"dump {did} never finished (status running): a dump"
                                    " that was killed, or one running now")
                elif files != have:
                    problems.append(f"dump {did} should have {files} file rows, has {have}")
            return problems
        return self._run("check", run)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): writers queue at BEGIN,
    where the busy timeout applies, never half-way through."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        return False


def _statements(script: str) -> list[str]:
    """A DDL script cut into statements (executescript would commit our transaction)."""
    out, current = [], []
    for line in script.splitlines():
        line = line.split("--", 1)[0].rstrip()
        if not line:
            continue
        current.append(line)
        if line.endswith(";"):
            out.append("\n".join(current))
            current = []
    return out


def _head(tree: str) -> bytes:
    return tree.encode("utf-8", "surrogateescape")[:63]


def _name_clause(rel: str) -> tuple[str, tuple]:
    """``f.name = ? AND `` when the last component of a pattern is literal (a path
    matching the pattern then ends in it), else nothing."""
    last = rel.rpartition("/")[2]
    if "[" in rel or not _literal(last):
        return "", ()
    return "f.name = ? AND ", (last,)


def _literal(text: str) -> bool:
    return not any(c in text for c in "*?[")


def _within(pattern: str, tree: str) -> str | None:
    """PATTERN relative to TREE ("." for the tree itself), None when outside it."""
    t = tree.rstrip("/")
    p = pattern.rstrip("/") or "/"
    if p == (t or "/"):
        return "."
    if not t:
        return p[1:]
    if p.startswith(t + "/"):
        return p[len(t) + 1:]
    return None


def default_path(state_dir: Path) -> Path:
    """The catalog every dump writes unless -A names another: STATE_DIR/catalog.db."""
    return Path(state_dir) / "catalog.db"


def file_type(mode: int) -> str:
    """One letter for listings: d, f, l, c, b, p, s."""
    import stat
    return {stat.S_IFDIR: "d", stat.S_IFREG: "f", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
            stat.S_IFBLK: "b", stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}.get(stat.S_IFMT(mode), "?")


def medium_spec(spec: str) -> str:
    """The -f argument as a restore later needs it: files absolute, the rest as given."""
    if spec == "-" or ":" in spec.split("/", 1)[0] or spec.startswith("/"):
        return spec
    return os.path.abspath(spec)
