"""Hostile images and hostile targets: nothing is ever written outside the target."""
from __future__ import annotations

import os

from craft import Craft


def _all_paths(root):
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def test_bad_names_are_reported_and_skipped(restore, image_file, tmp_path):
    img = Craft()
    img.dir(2, {"ok": 3, "../escape": 4, "a/b": 5, "..": 6, ".": 7, b"nul\0byte": 8, "sub": 9})
    img.dir(9, {"fine": 10})
    for ino in (3, 4, 5, 6, 7, 8, 10):
        img.file(ino, b"payload %d" % ino)
    r = restore(image_file(img), "r")
    assert r.status == 2
    assert "name contains '/' or NUL" in r.err
    assert "extra '..' entry" in r.err and "extra '.' entry" in r.err
    assert _all_paths(tmp_path / "out") == {"ok", "sub", "sub/fine", "restoresymtable"}
    assert not (tmp_path / "escape").exists()
    assert "Traceback" not in r.err


def test_directory_loops_and_second_names_of_directories(restore, image_file, tmp_path):
    img = Craft()
    img.dir(2, {"a": 3, "b": 4})
    img.dir(3, {"up": 2, "self": 3, "b-again": 4, "f": 5}, parent=2)
    img.dir(4, {"back": 3})
    img.file(5, b"x")
    r = restore(image_file(img), "r")
    assert r.status == 2
    assert r.err.count("directory loop") == 4, r.err
    assert _all_paths(tmp_path / "out") == {"a", "a/f", "b", "restoresymtable"}


def test_duplicate_names_and_bad_inode_numbers(restore, image_file, tmp_path):
    img = Craft()
    img.dir(2, {"dup": 3, "zero-ish": 1, "huge": 99999})
    img.dirs[2] = _with_duplicate(img.dirs[2])
    img.file(3, b"first")
    img.file(4, b"second")
    r = restore(image_file(img), "r")
    assert r.status == 2
    assert "duplicate name" in r.err and "bad inode number 1" in r.err and "bad inode number 99999" in r.err
    assert (tmp_path / "out/dup").read_bytes() == b"first"


def _with_duplicate(entry):
    from ndump.format import DT_REG, pack_dir, unpack_dir
    data, ind, xattrs = entry
    entries, _ = unpack_dir(data)
    raw = [(e.ino, e.dtype, e.name) for e in entries] + [(4, DT_REG, b"dup")]
    new = pack_dir(raw)
    from dataclasses import replace
    return new, replace(ind, size=len(new)), xattrs


def test_symlink_in_target_where_a_directory_goes_is_not_followed(restore, image_file, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "sub")
    img = Craft().dir(2, {"sub": 3}).dir(3, {"f": 4}).file(4, b"would escape")
    r = restore(image_file(img), "r", target=out)
    assert r.status == 0, r.err
    assert os.listdir(outside) == []
    assert (out / "sub").is_dir() and not (out / "sub").is_symlink()
    assert (out / "sub/f").read_bytes() == b"would escape"


def test_symlink_in_target_where_a_file_goes_is_replaced_not_written_through(restore, image_file,
                                                                            tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / "f")
    img = Craft().dir(2, {"f": 3}).file(3, b"new content")
    r = restore(image_file(img), "x", target=out)
    assert r.status == 0, r.err
    assert victim.read_text() == "precious"
    assert not (out / "f").is_symlink() and (out / "f").read_bytes() == b"new content"


def test_symlink_restored_from_the_dump_is_never_followed(restore, image_file, tmp_path):
    """A dump symlink 'link' -> outside, then a file that claims to be under 'link/'
    (a second entry in a directory with the same inode is what an attacker can do)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    img = Craft()
    img.dir(2, {"link": 3, "d": 4})
    img.dir(4, {"x": 5})
    img.symlink(3, str(outside))
    img.file(5, b"data")
    r = restore(image_file(img), "r")
    assert r.status == 0, r.err
    assert os.listdir(outside) == []
    assert os.readlink(tmp_path / "out/link") == str(outside)


def test_unbelievable_directory_size_is_skipped(restore, image_file, tmp_path):
    from dataclasses import replace
    img = Craft().dir(2, {"d": 3}).dir(3, {"f": 4}).file(4, b"x")
    data, ind, xattrs = img.dirs[3]
    img.dirs[3] = (data, replace(ind, size=1 << 40), xattrs)
    r = restore(image_file(img), "r")
    assert r.status == 2
    assert "not believable" in r.err
    assert "Traceback" not in r.err
