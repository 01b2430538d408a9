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


# ----------------------------------------------------------------------------------------------
# The hostile suite: each image is restored with -r and -x (and listed with -t); nothing
# outside the target may be created, changed or followed.  "outside" is a sibling of the
# target holding a victim file, a directory and a hard link; its state and the listing of
# tmp_path are compared before and after.

import hashlib  # noqa: E402
import stat  # noqa: E402
from dataclasses import replace  # noqa: E402

import pytest  # noqa: E402

from ndump.errors import NdumpError  # noqa: E402
from ndump.format import DT_DIR, DT_LNK, DT_REG, TS_BITS, TS_CLRI, TS_INODE, pack_dir  # noqa: E402


def snapshot(root) -> dict:
    """Everything about a tree that a write through it would change."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            info = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                    st.st_size, st.st_mtime_ns, st.st_nlink, st.st_ino)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    info += (hashlib.sha256(f.read()).hexdigest(),)
            elif stat.S_ISLNK(st.st_mode):
                info += (os.readlink(path),)
            state[os.path.relpath(path, root)] = info
    return state


@pytest.fixture
def outside(tmp_path):
    """A sibling of the target with things a hostile image would like to reach."""
    o = tmp_path / "outside"
    (o / "dir").mkdir(parents=True)
    (o / "victim").write_text("precious\n")
    os.link(o / "victim", o / "victim-link")
    (o / "dir/inner").write_text("inner\n")
    os.chmod(o / "dir", 0o750)
    return o


def _hostile_run(restore, image, tmp_path, outside, *, modes=("t", "r", "x"), paths=(),
                 prepare=None, **options):
    """Run each mode into a fresh target; returns the results.  Checks no escape."""
    before = snapshot(outside)
    top = sorted(os.listdir(tmp_path))
    results = {}
    for mode in modes:
        target = tmp_path / f"out-{mode}"
        target.mkdir()
        if prepare:
            prepare(target)
        try:
            results[mode] = restore(image, mode, *(paths if mode != "r" else ()), target=target,
                                    **options)
        except NdumpError as e:          # a documented start-up error is an answer too
            results[mode] = e
        assert snapshot(outside) == before, f"-{mode} changed something outside the target"
        top.append(target.name)
        assert sorted(os.listdir(tmp_path)) == sorted(top), f"-{mode} created something beside the target"
        for r in [results[mode]]:
            assert not hasattr(r, "err") or "Traceback" not in r.err
    return results


def _dir_raw(img, ino, raw, *, parent=2):
    """A directory whose entries are given as raw (ino, dtype, name) tuples, no '.'/'..' added."""
    data = pack_dir([(ino, DT_DIR, b"."), (parent, DT_DIR, b"..")] + raw)
    from craft import inode
    img.dirs[ino] = (data, inode(stat.S_IFDIR | 0o755, len(data)), [])


def test_hostile_names(restore, image_file, tmp_path, outside):
    img = Craft()
    long_ok = b"n" * 255
    _dir_raw(img, 2, [(3, DT_REG, b"ok"), (4, DT_REG, b"../outside/victim"), (5, DT_REG, b"/abs"),
                      (6, DT_REG, b".."), (7, DT_REG, b"."), (8, DT_REG, b"a\0b"),
                      (9, DT_REG, long_ok), (10, DT_REG, b"..\0"), (11, DT_DIR, b"d")])
    _dir_raw(img, 11, [(12, DT_REG, b"../../outside/victim"), (13, DT_REG, b"x")])
    for ino in range(3, 11):
        img.file(ino, b"evil %d\n" % ino)
    img.file(12, b"evil 12\n").file(13, b"fine\n")
    res = _hostile_run(restore, image_file(img), tmp_path, outside)
    r = res["r"]
    assert r.status == 2
    assert _all_paths(tmp_path / "out-r") == {"ok", long_ok.decode(), "d", "d/x", "restoresymtable"}
    assert r.err.count("name contains '/' or NUL") == 5, r.err


def test_user_paths_cannot_climb_out(restore, image_file, tmp_path, outside):
    img = Craft().dir(2, {"a": 3}).file(3, b"a\n")
    res = _hostile_run(restore, image_file(img), tmp_path, outside, modes=("x",),
                       paths=("../../outside/victim", "/../a", "/a"))
    assert (tmp_path / "out-x/a").read_bytes() == b"a\n"


def test_entry_pointing_at_a_symlink_inode_with_children(restore, image_file, tmp_path, outside):
    """Inode 3 is a directory in the directory part and a symlink in the file part."""
    img = Craft()
    img.dir(2, {"link": 3})
    img.dir(3, {"f": 4})
    img.symlink(3, str(outside))
    img.file(4, b"through the link?\n")
    img.files[3] = img.files.pop(3)
    res = _hostile_run(restore, image_file(img), tmp_path, outside)
    assert not (tmp_path / "out-r/link").is_symlink()
    assert (tmp_path / "out-r/link/f").read_bytes() == b"through the link?\n"


def test_symlink_then_a_name_under_it(restore, image_file, tmp_path, outside):
    """A dump symlink 'l' -> outside and, in another directory record, a directory entry
    named 'l' for a directory: the second 'l' (same parent) is a duplicate."""
    img = Craft()
    _dir_raw(img, 2, [(3, DT_LNK, b"l"), (4, DT_DIR, b"l"), (5, DT_LNK, b"abs")])
    img.dir(4, {"victim": 6})
    img.symlink(3, str(outside)).symlink(5, str(outside / "victim")).file(6, b"overwritten!\n")
    res = _hostile_run(restore, image_file(img), tmp_path, outside)
    assert os.readlink(tmp_path / "out-r/l") == str(outside)
    assert "duplicate name" in res["r"].err


def test_hard_link_in_the_target_to_a_file_outside(restore, image_file, tmp_path, outside):
    """The target already holds a hard link to an outside file: replacing it must not
    write into the shared inode."""
    img = Craft().dir(2, {"shared": 3, "s2": 3}).file(3, b"new\n", nlink=2)

    def prepare(target):
        os.link(outside / "victim", target / "shared")
        os.symlink(outside / "victim", target / "s2")
    _hostile_run(restore, image_file(img), tmp_path, outside, modes=("x", "r"), prepare=prepare)
    assert (tmp_path / "out-r/shared").read_bytes() == b"new\n"
    assert os.path.samefile(tmp_path / "out-r/shared", tmp_path / "out-r/s2")


def test_symlink_in_the_target_on_the_way_to_a_renamed_file(restore, image_file, tmp_path, outside):
    img = Craft().dir(2, {"a": 3}).file(3, b"renamed\n")

    def prepare(target):
        os.symlink(outside / "dir", target / "via")
    res = _hostile_run(restore, image_file(img), tmp_path, outside, modes=("x",),
                       paths=("a=via/inner",), extract="E", prepare=prepare)
    assert res["x"].status == 0, res["x"].err
    assert not (tmp_path / "out-x/via").is_symlink()
    assert (tmp_path / "out-x/via/inner").read_bytes() == b"renamed\n"


def test_absurd_sizes(restore, image_file, tmp_path, outside):
    img = Craft().dir(2, {"big": 3, "link": 4, "ok": 5, "d": 6}).dir(6, {})
    img.file(3, b"x").symlink(4, "target").file(5, b"fine\n")
    ind, pieces, present, xattrs = img.files[3]
    img.files[3] = (replace(ind, size=1 << 62), pieces, present, xattrs)
    ind, pieces, present, xattrs = img.files[4]
    img.files[4] = (replace(ind, size=(1 << 63) - 1), pieces, present, xattrs)
    data, ind, xattrs = img.dirs[6]
    img.dirs[6] = (data, replace(ind, size=MAX_DIR), xattrs)
    res = _hostile_run(restore, image_file(img), tmp_path, outside, force=True)
    r = res["r"]
    assert r.status == 2, r.err
    assert "symbolic link of" in r.err
    assert (tmp_path / "out-r/ok").read_bytes() == b"fine\n"


MAX_DIR = 0x0FFFFFFF


def _patch_header(data: bytearray, offset: int, **fields) -> None:
    from ndump.format import pack_header, unpack_header
    h = unpack_header(bytes(data[offset:offset + 1024]))
    data[offset:offset + 1024] = pack_header(replace(h, **fields))


def test_absurd_counts(restore, image_file, tmp_path, outside):
    img = Craft().dir(2, {"a": 3, "b": 4}).file(3, b"a" * 3000).file(4, b"b\n")
    data = bytearray(img.build())
    _patch_header(data, img.offsets[3][0], count=1 << 30)
    res = _hostile_run(restore, image_file(bytes(data)), tmp_path, outside)
    assert all(not isinstance(r, Exception) or isinstance(r, NdumpError) for r in res.values())


def test_maps_claiming_two_to_the_31_inodes(restore, image_file, tmp_path, outside):
    img = Craft().dir(2, {"a": 3}).file(3, b"a")
    data = bytearray(img.build())
    maxino = max(img.offsets)
    for off in (img.offsets[maxino][0], img.offsets[2][0]):     # TS_CLRI, TS_BITS
        from ndump.format import unpack_header
        h = unpack_header(bytes(data[off:off + 1024]))
        assert h.type in (TS_CLRI, TS_BITS)
        _patch_header(data, off, count=(1 << 31) // 8192)
    res = _hostile_run(restore, image_file(bytes(data)), tmp_path, outside)
    for r in res.values():
        assert isinstance(r, NdumpError), r
        assert "absurd map size" in str(r)


def test_absurd_totals_are_refused_by_the_space_check(restore, image_file, tmp_path, outside):
    from ndump.format import Totals, unpack_header
    img = Craft().dir(2, {"a": 3}).file(3, b"a")
    data = bytearray(img.build())
    h = unpack_header(bytes(data[:1024]))
    _patch_header(data, 0, totals=Totals(1 << 62, 1 << 40, 1 << 50))
    assert h.type != TS_INODE
    res = _hostile_run(restore, image_file(bytes(data)), tmp_path, outside, modes=("r",))
    assert isinstance(res["r"], NdumpError) and "need" in str(res["r"])
    assert os.listdir(tmp_path / "out-r") == []


@pytest.mark.parametrize("mode", ["r", "t"])
def test_a_directory_written_twice_is_read_once(restore, image_file, tmp_path, mode):
    img = Craft()
    img.dir(2, {"a": 3})
    img.dir(3, {"f": 4}, parent=2)
    img.twice = [3]
    img.file(4, b"x")
    r = restore(image_file(img), mode)
    assert r.status == 2
    assert r.err.count("directory appears twice on the tape, second copy ignored") == 1, r.err
    if mode == "r":
        assert (tmp_path / "out" / "a" / "f").read_bytes() == b"x"
    else:
        assert "./a/f" in r.out
