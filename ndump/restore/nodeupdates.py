"""The name updates of an incremental restore -r, decided before anything is
touched (classic: restore/restore.c nodeupdates() and its table of cases).

``plan(old, new, in_clri, in_bits)`` compares the name tree last restored (from
restoresymtable) with the new one (this tape's directories) and says, for every
old name, whether it is kept, removed or parked (moved aside to RSTTMP<ino>), and
for every new name how it comes to be: kept, taken back from where it was
parked, linked to another name of its inode, made (a directory), brought by
the tape (step 4), or lost.  It only reads the two trees: incremental.py
applies the plan to the target, and the tests check it without a filesystem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ndump.restore.dirs import Entry, Tree

KEEP = "keep"            # the same name, inode and kind before and after
REMOVE = "remove"        # an old name with no future: unlinked
PARK = "park"            # an old name whose inode lives on: renamed to RSTTMP<ino>
UNPARK = "unpark"        # a new name that takes a parked inode back (rename)
LINK = "link"            # a new name of a file that already has one (hard link)
MAKE = "make"            # a new directory that is not on disk: mkdir
TAPE = "tape"            # a new file whose data this tape brings (extracted in step 4)
LOST = "lost"            # a new name of an inode neither on the tape nor on disk

Decision = tuple[str, "Entry | None"]        # (action, the entry the data comes from)


@dataclass
class Plan:
    kept: set[int] = field(default_factory=set)                 # id() of kept entries
    old: list[tuple[Entry, str]] = field(default_factory=list)  # tree order: REMOVE or PARK
    new: dict[int, Decision] = field(default_factory=dict)      # id(new entry) -> decision
    doomed: set[int] = field(default_factory=set)   # id() of parked directories that go away
    parked_last: dict[int, Entry] = field(default_factory=dict)  # inode -> parked, unclaimed


def plan(old: Tree, new: Tree, in_clri: Callable[[int], bool], in_bits: Callable[[int], bool]
         ) -> Plan:
    p = Plan()
    new_at = {(e.parent.ino, e.name): e for e in new.walk() if e.parent is not None}

    def alive(e: Entry) -> bool:
        """The inode still exists, with the same kind, somewhere in the new tree."""
        names = new.by_ino.get(e.ino)
        return in_clri(e.ino) and names is not None and names[0].is_dir == e.is_dir

    has_kept: set[int] = set()
    holder: dict[int, Entry] = {}        # inode -> a name holding a file's data
    for e in old.walk():
        if e.parent is None:
            continue
        n = new_at.get((e.parent.ino, e.name))
        if n is not None and n.ino == e.ino and n.is_dir == e.is_dir and alive(e):
            p.kept.update((id(e), id(n)))
            has_kept.add(e.ino)
            if not e.is_dir:
                holder.setdefault(e.ino, e)

    parked: dict[int, Entry] = {}
    for e in old.walk():
        if e.parent is None or id(e) in p.kept:
            continue
        if e.is_dir:
            p.old.append((e, PARK))
            parked[e.ino] = e
            if not alive(e):
                p.doomed.add(id(e))
        elif alive(e) and e.ino not in has_kept and e.ino not in parked:
            # a file the tape brings again keeps its data too: a metadata-only record
            # (dump -m) changes it in place, and a damaged one leaves the old copy
            p.old.append((e, PARK))
            parked[e.ino] = e
            holder[e.ino] = e
        else:
            p.old.append((e, REMOVE))

    for n in new.walk():
        if n.parent is None or id(n) in p.kept:
            continue
        if n.is_dir:
            moved = parked.get(n.ino)
            if moved is not None and moved.is_dir:
                p.new[id(n)] = (UNPARK, moved)
                del parked[n.ino]
            else:
                p.new[id(n)] = (MAKE, None)
            continue
        src = holder.get(n.ino)
        if src is None:
            p.new[id(n)] = (TAPE if in_bits(n.ino) else LOST, None)
        elif parked.get(n.ino) is src:
            p.new[id(n)] = (UNPARK, src)
            del parked[n.ino]
            holder[n.ino] = n
        else:
            p.new[id(n)] = (LINK, src)
    p.parked_last = parked
    return p
