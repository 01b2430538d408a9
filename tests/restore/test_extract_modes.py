"""SPEC §5.1: --extract N|Y|E and NDUMP_EXTRACT; SPEC §5.3: overwrite rules."""
from __future__ import annotations

import os

import pytest

from craft import Craft
from ndump.errors import UsageError


def _image():
    img = Craft()
    img.dir(2, {"home": 3, "etc": 4})
    img.dir(3, {"a": 5, "b": 6}, parent=2)
    img.dir(5, {"notes": 7, "deep": 8}, parent=3)
    img.dir(8, {"x": 9}, parent=5)
    img.dir(4, {"conf": 10}, parent=2)
    img.file(6, b"bee\n", mode=0o640)
    img.file(7, b"notes\n")
    img.file(9, b"deep x\n")
    img.file(10, b"conf\n")
    return img


def _files(root):
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def test_extract_e_renames_a_file_and_a_subtree(restore, image_file, tmp_path):
    r = restore(image_file(_image()), "x", "home/a=home/a.old", "home/b=b-renamed", extract="E")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    assert _files(out) == {"home", "home/a.old", "home/a.old/notes", "home/a.old/deep",
                           "home/a.old/deep/x", "b-renamed"}
    assert (out / "home/a.old/deep/x").read_bytes() == b"deep x\n"
    assert (out / "b-renamed").read_bytes() == b"bee\n"
    assert (out / "b-renamed").stat().st_mode & 0o777 == 0o640


def test_extract_e_makes_missing_directories(restore, image_file, tmp_path):
    r = restore(image_file(_image()), "x", "etc/conf=new/place/conf.bak", extract="E")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    assert (out / "new/place/conf.bak").read_bytes() == b"conf\n"
    assert (out / "new/place").stat().st_mode & 0o777 == 0o755
    assert not (out / "etc").exists()


def test_extract_e_reports_a_missing_source_and_goes_on(restore, image_file, tmp_path):
    r = restore(image_file(_image()), "x", "nope=x", "home/b=c", extract="E")
    assert r.status == 2
    assert "./nope: not on the tape" in r.err
    assert (tmp_path / "out/c").read_bytes() == b"bee\n"


@pytest.mark.parametrize("pair", ["home/a=home/a/inside", "home=home/x", "a", "home/a=",
                                  "home/a=../escape", "=x", "."])
def test_extract_e_refuses_bad_pairs(restore, image_file, pair, tmp_path):
    with pytest.raises(UsageError):
        restore(image_file(_image()), "x", pair, extract="E")
    assert not (tmp_path / "escape").exists()


def test_extract_e_from_the_environment(run_ndump, image_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-xf", image_file(_image()), "--target", out, "home/b=/abs/b",
              env={"NDUMP_EXTRACT": "e"}, status=0)
    assert (out / "abs/b").read_bytes() == b"bee\n"
    assert not (tmp_path / "abs").exists()


def test_extract_y_extracts_only_the_named_paths(restore, image_file, tmp_path):
    r = restore(image_file(_image()), "x", "home/a/deep", "etc/conf", extract="Y")
    assert r.status == 0, r.err
    assert _files(tmp_path / "out") == {"home", "home/a", "home/a/deep", "home/a/deep/x",
                                        "etc", "etc/conf"}


def test_extract_n_is_the_whole_tree(restore, image_file, tmp_path):
    r = restore(image_file(_image()), "x", extract="N")
    assert r.status == 0, r.err
    assert len(_files(tmp_path / "out")) == 8


@pytest.mark.parametrize("mode, paths, extract", [("x", ("home",), "N"), ("x", (), "Y"),
                                                  ("x", (), "E"), ("r", (), "Y"), ("x", (), "Q")])
def test_bad_extract_combinations(restore, image_file, mode, paths, extract):
    with pytest.raises(UsageError):
        restore(image_file(_image()), mode, *paths, extract=extract)


def test_cli_extract_and_environment(tmp_path, run_ndump, image_file):
    img = image_file(_image())
    out = tmp_path / "o1"
    out.mkdir()
    run_ndump("restore", "-x", "--extract", "E", "-f", img, "--target", out, "home/a=a2", status=0)
    assert _files(out) == {"a2", "a2/notes", "a2/deep", "a2/deep/x"}
    out = tmp_path / "o2"
    out.mkdir()
    run_ndump("restore", "-xf", img, "--target", out, "etc", env={"NDUMP_EXTRACT": "Y"}, status=0)
    assert _files(out) == {"etc", "etc/conf"}
    proc = run_ndump("restore", "-rf", img, "--target", out, env={"NDUMP_EXTRACT": "E"}, status=1)
    assert "needs -x" in proc.stderr


def test_cli_options_win_over_the_environment(tmp_path, run_ndump, image_file):
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-xf", image_file(_image()), "--target", out, "--extract", "Y", "etc",
              env={"NDUMP_EXTRACT": "E"}, status=0)
    assert _files(out) == {"etc", "etc/conf"}


# -- SPEC §5.3 --------------------------------------------------------------------------------
def test_existing_files_are_replaced_and_directories_merged(restore, image_file, tmp_path):
    out = tmp_path / "out"
    (out / "home/a").mkdir(parents=True)
    (out / "home/a/mine").write_text("kept")
    (out / "home/b").write_text("old b")
    os.chmod(out / "home/a", 0o700)
    old_inode = (out / "home/b").stat().st_ino
    r = restore(image_file(_image()), "x", "home")
    assert r.status == 0, r.err
    assert (out / "home/a/mine").read_text() == "kept"
    assert (out / "home/a/notes").read_bytes() == b"notes\n"
    assert (out / "home/a").stat().st_mode & 0o777 == 0o755      # attributes from the dump
    assert (out / "home/b").read_bytes() == b"bee\n"
    assert (out / "home/b").stat().st_ino != old_inode          # a new file, renamed over
    assert not [n for n in os.listdir(out / "home") if n.startswith(".ndump-")]


def test_keep_existing(restore, image_file, tmp_path):
    out = tmp_path / "out"
    (out / "home").mkdir(parents=True)
    (out / "home/b").write_text("old b")
    r = restore(image_file(_image()), "x", "home", keep_existing=True)
    assert r.status == 0, r.err
    assert (out / "home/b").read_text() == "old b"
    assert (out / "home/a/notes").read_bytes() == b"notes\n"
