"""`ndump restore` on the command line: modes, classic bundles, exit statuses."""
from __future__ import annotations
from pathlib import Path

import os

import pytest
from click.testing import CliRunner

from craft import Craft
from ndump.cli.restore_cmd import restore as restore_command


@pytest.fixture
def image(tmp_path):
    img = Craft().dir(2, {"a": 3, "d": 4}).dir(4, {"b": 5}).file(3, b"A").file(5, b"B")
    path = tmp_path / "img.dump"
    path.write_bytes(img.build())
    return path


@pytest.mark.parametrize("args", [[], ["-r", "-t"], ["-x", "-C"], ["-R", "-r"]])
def test_exactly_one_mode(args, image, run_ndump):
    proc = run_ndump("restore", *args, "-f", image, status=1)
    assert "RESTORE: give exactly one of -r, -R, -x, -t, -C" in proc.stderr


def test_interactive_mode_takes_no_names(image, run_ndump):
    proc = run_ndump("restore", "-i", "-f", image, "a", status=1)
    assert "RESTORE: -i takes no file names" in proc.stderr


def test_rebuild_takes_no_names(image, run_ndump, tmp_path):
    proc = run_ndump("restore", "-rf", image, "a", "--target", tmp_path, status=1)
    assert "takes no file names" in proc.stderr


def test_classic_bundles(image, run_ndump, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_ndump("restore", "-xvf", image, "d/b", cwd=out, status=0)
    assert os.listdir(out) == ["d"] and (out / "d/b").read_bytes() == b"B"
    assert "Verify tape and initialize maps" in proc.stderr
    proc = run_ndump("restore", "-tf", image, status=0)
    assert proc.stdout.splitlines()[-3:] == ["         3\t./a", "         4\t./d", "         5\t./d/b"]


def test_listing_header_lines(image, run_ndump):
    import time
    proc = run_ndump("restore", "-t", "-f", image, status=0)
    lines = proc.stdout.splitlines()
    assert lines[0] == "Dump   date: " + time.ctime(1_700_000_000)
    assert lines[1:4] == ["Dumped from: the epoch", "Level 0 dump of /crafted on testhost:/dev/null",
                          "Label: crafted"]
    assert lines[4] == "         2\t."


def test_tape_env_is_the_default_file(image, run_ndump):
    proc = run_ndump("restore", "-t", env={"TAPE": str(image)}, status=0)
    assert "./d/b" in proc.stdout


def test_dry_run_and_quiet(image, run_ndump, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_ndump("restore", "-rNq", "-f", image, "--target", out, status=0)
    assert os.listdir(out) == [] and proc.stderr == ""


def test_per_file_verbose(image, run_ndump, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_ndump("restore", "-rvv", "-f", image, "--target", out, status=0)
    assert "RESTORE: extract file ./d/b" in proc.stderr


def test_click_command_returns_the_outcome(image, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(restore_command, ["-r", "-f", str(image), "--target", str(out)],
                                standalone_mode=False, obj=None)
    assert result.exception is None, result.output
    assert result.return_value.exit_status == 0
    assert (out / "a").read_bytes() == b"A"


def test_incremental_rebuild_needs_the_level_0_first(tmp_path, run_ndump):
    img = Craft(ddate=1_600_000_000, level=1).dir(2, {"a": 3}).file(3, b"x")
    path = tmp_path / "l1.dump"
    path.write_bytes(img.build())
    proc = run_ndump("restore", "-rf", path, "--target", tmp_path, status=1)
    assert "level 1 (incremental) dump" in proc.stderr and "level 0 dump" in proc.stderr


def test_resume(image, run_ndump, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_ndump("restore", "-Rf", image, "--target", out, status=1)
    assert "cannot find restoresymtable" in proc.stderr
    run_ndump("restore", "-rf", image, "--target", out, status=0)
    proc = run_ndump("restore", "-Rf", image, "--target", out, status=1)
    assert "nothing to resume" in proc.stderr
    # an interrupted -r leaves the table in the "extracting" state
    text = (out / "restoresymtable").read_text().replace('"state":"complete"', '"state":"extracting"')
    (out / "restoresymtable").write_text(text)
    (out / "a").unlink()
    run_ndump("restore", "-Rf", image, "--target", out, status=0)
    assert (out / "a").read_bytes() == b"A"
    assert '"state":"complete"' in (out / "restoresymtable").read_text()


def test_original_restores_to_the_recorded_directory(tmp_path, run_ndump):
    import shutil
    import tempfile
    from trees import assert_trees_equal, build_tree, tree_state
    short = Path(tempfile.mkdtemp(prefix="ndorig"))       # the header holds 63 bytes
    try:
        src = build_tree(short / "data" / "src", {"a": b"1", "d/b": b"2"})
        state = tree_state(src)
        image = tmp_path / "x.dump"
        run_ndump("dump", "-0", "-f", image, src, status=0)
        shutil.rmtree(short / "data")
        run_ndump("restore", "-r", "--original", "-f", image, cwd=tmp_path, status=0)
        assert_trees_equal(state, src)
        proc = run_ndump("restore", "-r", "--original", "--target", tmp_path, "-f", image, status=1)
        assert "--original" in proc.stderr
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_original_refuses_a_path_cut_by_the_header(tmp_path, run_ndump):
    from trees import build_tree
    src = build_tree(tmp_path / ("long-directory-name-" * 4) / "src", {"a": b"1"})
    image = tmp_path / "x.dump"
    proc = run_ndump("dump", "-0", "-f", image, src, status=0)
    assert "first 63 bytes" in proc.stderr
    proc = run_ndump("restore", "-r", "--original", "-f", image, cwd=tmp_path, status=1)
    assert "first 63 bytes" in proc.stderr and "--target" in proc.stderr
