"""restore -t: list the names on the dump (classic: restore/dirs.c treescan()
with main.c listfile()).

Output matches stock restore 0.4b47 byte for byte: the dump information,
then one line per name, ``%10d<TAB>path`` (with -v, prefixed ``leaf`` or
``dir ``), pre-order, entries in tape order.  Only names whose inode is on
this dump (TS_BITS) are listed, and directories on the tape.

A listing never builds the name tree: directories stay as their raw bytes
(read_dir_bytes()), a first pass decides which name each directory has (the
rules of dirs.Tree, in its order), and a second pass prints while it walks,
keeping one path prefix per level.  Memory is the directory data plus a few
words per directory; time is linear in the number of names, whatever the depth.
"""
from __future__ import annotations

from typing import Callable, Iterator

from ndump.format import ROOTINO
from ndump.restore.dirs import Complain, canon_parts, iter_dir


class Listing:
    """Writes listing lines as bytes: names are bytes and need not be UTF-8."""

    def __init__(self, out):
        self._bin = getattr(out, "buffer", None)
        self._out = out
        # lines go out a thousand at a time: one write each would be a system call
        # a name when standard output is unbuffered (python -u, PYTHONUNBUFFERED)
        self._pending: list[bytes] = []
        if self._bin is not None:
            out.flush()

    def line(self, text: bytes) -> None:
        if self._bin is not None:
            self._pending.append(text)
            if len(self._pending) >= 1000:
                self._write_pending()
        else:
            self._out.write(text.decode("utf-8", "surrogateescape") + "\n")

    def _write_pending(self) -> None:
        if self._pending:
            self._pending.append(b"")
            self._bin.write(b"\n".join(self._pending))
            self._pending.clear()

    def close(self) -> None:
        if self._bin is not None:
            self._write_pending()
        (self._bin or self._out).flush()


_DOTS = (b".", b"..")


class DumpNames:
    """The names of a dump as a listing needs them: raw directories and, per
    directory, the (parent, name) it is known by (dirs.Tree's rules)."""

    def __init__(self, dirs: dict[int, bytes], damaged: dict[int, list[str]], order: str,
                 maxino: int, complain: Complain):
        self.dirs = dirs
        self.order = order
        self.maxino = maxino
        self.named: dict[int, tuple[int, bytes]] = {}      # dir inode -> (parent inode, name)
        self._decide(damaged, complain)

    def entries(self, ino: int) -> Iterator[tuple[bytes, int, bool]]:
        """(name, inode, is_dir) of the valid entries of directory ``ino``, tape order;
        a directory only under the name it is known by."""
        data = self.dirs.get(ino)
        if data is None:
            return
        names: set[bytes] = set()
        dirs = self.dirs
        maxino = self.maxino
        for position, (child, name) in enumerate(iter_dir(data, self.order)):
            if (name in names or child < ROOTINO or child >= maxino or name in _DOTS
                    or b"/" in name or b"\0" in name):
                continue                  # _decide() said why, once
            names.add(name)
            if child not in dirs:
                yield name, child, False
            elif self.named.get(child) == (ino, name):
                yield name, child, True

    def _invalid(self, position: int, ino: int, name: bytes, names: set[bytes]) -> str | None:
        """Why an entry is dropped ('' for '.' and '..' in their places), else None
        (dirs.Tree._child's rules, in its order)."""
        if name in _DOTS:
            return f"extra '{name.decode()}' entry" if position > 1 else ""
        if b"/" in name or b"\0" in name:
            return "name contains '/' or NUL"
        if name in names:
            return "duplicate name in directory"
        if ino < ROOTINO or ino >= self.maxino:
            return f"bad inode number {ino}"
        return None

    def _decide(self, damaged: dict[int, list[str]], complain: Complain) -> None:
        """dirs.Tree._build's walk: the first name met in its order names a directory."""
        seen = {ROOTINO}
        stack = [ROOTINO]
        while stack:
            parent = stack.pop()
            if parent not in self.dirs:
                continue
            for why in damaged.get(parent, ()):
                complain(self.path(parent).decode("utf-8", "surrogateescape"), why)
            names: set[bytes] = set()
            dirs = self.dirs
            for position, (ino, name) in enumerate(iter_dir(dirs[parent], self.order)):
                if ino not in dirs and name not in names and ROOTINO <= ino < self.maxino \
                        and b"/" not in name and b"\0" not in name and name not in _DOTS:
                    names.add(name)       # the common case, a valid leaf: nothing to decide
                    continue
                why = self._invalid(position, ino, name, names)
                if why is not None:
                    if why:
                        self._bad(complain, parent, name, why)
                    continue
                names.add(name)
                if ino not in dirs:
                    continue
                if ino in seen:
                    self._bad(complain, parent, name, f"directory loop (inode {ino} already has a name)")
                    continue
                seen.add(ino)
                self.named[ino] = (parent, name)
                stack.append(ino)

    def path(self, ino: int) -> bytes:
        parts = []
        while ino != ROOTINO:
            ino, name = self.named[ino]
            parts.append(name)
        parts.append(b".")
        return b"/".join(reversed(parts))

    def _bad(self, complain: Complain, parent: int, name: bytes, why: str) -> None:
        shown = name.replace(b"\0", b"\\0").decode("utf-8", "backslashreplace")
        complain(f"{self.path(parent).decode('utf-8', 'surrogateescape')}/{shown}", f"{why}; skipped")

    def lookup(self, path: str | bytes) -> tuple[int, bytes, bool] | None:
        """A path as the user gives it -> (inode, listed path, is_dir)."""
        chain: list[tuple[int, bytes, bool]] = [(ROOTINO, b".", True)]
        for part in canon_parts(path):
            if part == b"..":
                if len(chain) > 1:
                    chain.pop()
                continue
            ino, where, is_dir = chain[-1]
            if not is_dir:
                return None
            for name, child, child_is_dir in self.entries(ino):
                if name == part:
                    chain.append((child, where + b"/" + name, child_is_dir))
                    break
            else:
                return None
        return chain[-1]


def list_dump(names: DumpNames, starts: list[tuple[int, bytes, bool]],
              in_bits: Callable[[int], bool], listing: Listing, *, verbose: bool) -> int:
    """List the subtrees at ``starts`` ((inode, path, is_dir)); returns the number of lines.

    The path of the directory being listed is one buffer, extended on the way
    down and cut on the way up: memory stays that of the deepest path."""
    n = 0
    line = listing.line
    dir_tag, leaf_tag = (b"dir ", b"leaf") if verbose else (b"", b"")
    for ino, path, is_dir in starts:
        if is_dir or in_bits(ino):
            line((dir_tag if is_dir else leaf_tag) + b"%10d\t" % ino + path)
            n += 1
        if not is_dir:
            continue
        prefix = bytearray(path + b"/")
        stack = [(len(prefix), names.entries(ino))]
        while stack:
            end, it = stack[-1]
            del prefix[end:]
            for name, child, child_is_dir in it:
                if child_is_dir:
                    prefix += name
                    line(dir_tag + b"%10d\t" % child + prefix)
                    n += 1
                    prefix += b"/"
                    stack.append((len(prefix), names.entries(child)))
                    break
                if in_bits(child):
                    line(leaf_tag + b"%10d\t" % child + prefix + name)
                    n += 1
            else:
                stack.pop()
    return n
