"""The catalog's tables, and migrations keyed by ``PRAGMA user_version`` (no
classic counterpart; stock dump's -A archive file is a flat copy of the
directories, ONTAP keeps file history in its own database).

Version 1: one row per dump, one row per dumped name.  A database older than
``VERSION`` is brought up to date step by step when it is opened for writing;
one newer than this ndump is refused.
"""
from __future__ import annotations

VERSION = 1

_V1 = """
CREATE TABLE dumps (
    id          INTEGER PRIMARY KEY,
    tree        TEXT NOT NULL,      -- the dumped directory (c_filesys)
    level       INTEGER NOT NULL,
    date        INTEGER NOT NULL,   -- c_date
    base_date   INTEGER NOT NULL,   -- c_ddate: 0 for a full dump
    label       TEXT NOT NULL,
    host        TEXT NOT NULL,
    medium      TEXT NOT NULL,      -- the -f argument (a file made absolute)
    multi       INTEGER NOT NULL,   -- 1: -M, volumes are MEDIUM001, MEDIUM002, ...
    volumes     INTEGER NOT NULL,
    ntrec       INTEGER NOT NULL,   -- blocking factor
    compression TEXT,               -- NULL, zlib, bzip2 or zstd
    status      TEXT NOT NULL,      -- running, done, partial, aborted, indexed
    context     TEXT,               -- restartable context id, when there is one
    files       INTEGER NOT NULL DEFAULT 0,
    first_row   INTEGER,            -- rowids of its file rows lie in [first_row, last_row]
    last_row    INTEGER,            -- (no index on files.dump: inserting stays cheap)
    bytes       INTEGER NOT NULL DEFAULT 0,
    recorded    INTEGER NOT NULL    -- when this row was written
);
CREATE INDEX dumps_tree_date ON dumps(tree, date);
CREATE TABLE files (
    dump    INTEGER NOT NULL REFERENCES dumps(id) ON DELETE CASCADE,
    path    TEXT NOT NULL,          -- relative to the tree: "." is the tree itself
    name    TEXT NOT NULL,          -- its last component (find by name compares, not globs)
    ino     INTEGER NOT NULL,       -- the dump inode number (c_inumber)
    type    INTEGER NOT NULL,       -- S_IFMT bits of the mode
    size    INTEGER NOT NULL,
    mtime   INTEGER NOT NULL,
    ctime   INTEGER NOT NULL,
    volume  INTEGER NOT NULL,
    offset  INTEGER NOT NULL,       -- byte offset of the TS_INODE header on its volume
    crc     INTEGER                 -- data checksum, when the dump has one
);
"""

# MIGRATIONS[n] brings a database from version n to n + 1
MIGRATIONS = {0: _V1}
