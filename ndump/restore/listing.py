"""restore -t: list the names on the dump (classic: restore/dirs.c treescan()
with main.c listfile()).

Output matches stock restore 0.4b47 byte for byte: the dump information,
then one line per name, ``%10d<TAB>path`` (with -v, prefixed ``leaf`` or
``dir ``), pre-order, entries in tape order.  Only names whose inode is on
this dump (TS_BITS) are listed, and directories on the tape.
"""
from __future__ import annotations

from typing import Callable

from ndump.restore.dirs import Entry, Tree


class Listing:
    """Writes listing lines as bytes: names are bytes and need not be UTF-8."""

    def __init__(self, out):
        self._bin = getattr(out, "buffer", None)
        self._out = out
        if self._bin is not None:
            out.flush()

    def line(self, text: bytes) -> None:
        if self._bin is not None:
            self._bin.write(text + b"\n")
        else:
            self._out.write(text.decode("utf-8", "surrogateescape") + "\n")

    def close(self) -> None:
        (self._bin or self._out).flush()


def list_names(tree: Tree, starts: list[Entry], in_bits: Callable[[int], bool], listing: Listing,
               *, verbose: bool) -> int:
    """List the subtrees at ``starts``; returns the number of lines."""
    n = 0
    for start in starts:
        for e in tree.walk(start):
            if not (e.is_dir or in_bits(e.ino)):
                continue
            kind = (b"dir " if e.is_dir else b"leaf") if verbose else b""
            listing.line(kind + b"%10d\t" % e.ino + e.path())
            n += 1
    return n
