"""The decision table of an incremental restore (nodeupdates.plan), without a
filesystem: two name trees in, one action per name out."""
from __future__ import annotations

from ndump.format import DirEntry
from ndump.restore.dirs import DirRecord, Tree
from ndump.restore.nodeupdates import KEEP, LINK, LOST, MAKE, PARK, REMOVE, TAPE, UNPARK, plan


def tree(dirs: dict[int, dict[str, int]]) -> Tree:
    records = {ino: DirRecord(ino, None, [DirEntry(child, 0, name.encode())
                                          for name, child in entries.items()])
               for ino, entries in dirs.items()}
    return Tree(records, 1000, lambda path, why: None)


def decide(old_dirs, new_dirs, alive=None, on_tape=()):
    """-> ({old path: action}, {new path: (action, source path)}, {doomed paths})."""
    old, new = tree(old_dirs), tree(new_dirs)
    exists = set(alive) if alive is not None else {e.ino for e in new.walk()}
    p = plan(old, new, exists.__contains__, set(on_tape).__contains__)
    old_actions = {e.path(): KEEP for e in old.walk() if id(e) in p.kept}
    old_actions.update((e.path(), action) for e, action in p.old)
    new_actions = {}
    for e in new.walk():
        if e.parent is None:
            continue
        if id(e) in p.kept:
            new_actions[e.path()] = (KEEP, None)
        else:
            action, src = p.new[id(e)]
            new_actions[e.path()] = (action, src.path() if src is not None else None)
    doomed = {e.path() for e, _ in p.old if id(e) in p.doomed}
    return old_actions, new_actions, doomed


def test_unchanged_names_are_kept():
    old, new, doomed = decide({2: {"a": 3, "d": 4}, 4: {"x": 5}}, {2: {"a": 3, "d": 4}, 4: {"x": 5}})
    assert old == {b"./a": KEEP, b"./d": KEEP, b"./d/x": KEEP}
    assert new == {b"./a": (KEEP, None), b"./d": (KEEP, None), b"./d/x": (KEEP, None)}
    assert doomed == set()


def test_a_deleted_file_is_removed_and_a_new_one_comes_from_the_tape():
    old, new, _ = decide({2: {"gone": 3}}, {2: {"new": 4}}, on_tape={4})
    assert old == {b"./gone": REMOVE}
    assert new == {b"./new": (TAPE, None)}


def test_a_renamed_file_is_parked_and_taken_back():
    old, new, _ = decide({2: {"a": 3, "d": 4}, 4: {}}, {2: {"d": 4}, 4: {"b": 3}})
    assert old[b"./a"] == PARK
    assert new[b"./d/b"] == (UNPARK, b"./a")


def test_a_new_hard_link_links_to_the_kept_name():
    old, new, _ = decide({2: {"a": 3}}, {2: {"a": 3, "b": 3}})
    assert old == {b"./a": KEEP}
    assert new[b"./b"] == (LINK, b"./a")


def test_a_second_name_that_goes_is_removed_when_another_is_kept():
    old, _, _ = decide({2: {"a": 3, "b": 3}}, {2: {"a": 3}})
    assert old == {b"./a": KEEP, b"./b": REMOVE}


def test_two_names_of_a_moved_file_park_one_and_link_the_other():
    old, new, _ = decide({2: {"a": 3, "b": 3}}, {2: {"c": 3, "e": 3}})
    assert old == {b"./a": PARK, b"./b": REMOVE}
    assert new == {b"./c": (UNPARK, b"./a"), b"./e": (LINK, b"./c")}


def test_a_renamed_directory_keeps_its_contents():
    old, new, doomed = decide({2: {"d": 4}, 4: {"x": 5}}, {2: {"e": 4}, 4: {"x": 5}})
    assert old == {b"./d": PARK, b"./d/x": KEEP}
    assert new == {b"./e": (UNPARK, b"./d"), b"./e/x": (KEEP, None)}
    assert doomed == set()


def test_a_deleted_directory_is_parked_then_removed():
    old, new, doomed = decide({2: {"d": 4, "a": 3}, 4: {"x": 5}}, {2: {"a": 3}})
    assert old == {b"./a": KEEP, b"./d": PARK, b"./d/x": REMOVE}
    assert doomed == {b"./d"}


def test_an_inode_that_changed_kind():
    # inode 3 was a file named a; now it is a directory named a
    old, new, doomed = decide({2: {"a": 3}}, {2: {"a": 3}, 3: {}})
    assert old == {b"./a": REMOVE}
    assert new == {b"./a": (MAKE, None)}


def test_swapped_names():
    old, new, _ = decide({2: {"a": 3, "b": 4}}, {2: {"a": 4, "b": 3}})
    assert old == {b"./a": PARK, b"./b": PARK}
    assert new == {b"./a": (UNPARK, b"./b"), b"./b": (UNPARK, b"./a")}


def test_a_name_of_an_inode_neither_on_disk_nor_on_the_tape_is_lost():
    _, new, _ = decide({2: {}}, {2: {"ghost": 7}})
    assert new == {b"./ghost": (LOST, None)}


def test_an_inode_not_in_use_any_more_is_not_kept():
    old, new, _ = decide({2: {"a": 3}}, {2: {"a": 3}}, alive=set(), on_tape=())
    assert old == {b"./a": REMOVE}
    assert new == {b"./a": (LOST, None)}
