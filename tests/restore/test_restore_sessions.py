"""Issue 5: a restore takes a session slot like a dump (SPEC §3.6); issue 12: a listing
or a comparison writes nothing and takes none."""
import os

from ndump.sessions import open_session
from ndump.settings import Settings
from trees import build_tree


def test_restore_is_refused_when_the_slots_are_taken(tmp_path, run_ndump, ndump_env):
    src = build_tree(tmp_path / "src", {"f": b"1"})
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    held = open_session(Settings(run_dir=ndump_env.run_dir, max_sessions=1), "dump", "/held")
    try:
        out = tmp_path / "out"
        out.mkdir()
        proc = run_ndump("restore", "-x", "--max-sessions", "1", "-f", image, "--target", out,
                         status=1)
        assert "too many sessions" in proc.stderr and "--max-sessions" in proc.stderr
        proc = run_ndump("restore", "-r", "-f", image, "--target", out,
                         env={"NDUMP_MAX_SESSIONS": "1"}, status=1)
        assert "NDUMP_MAX_SESSIONS" in proc.stderr
        assert os.listdir(out) == []
        run_ndump("restore", "-x", "--max-sessions", "2", "-f", image, "--target", out, status=0)
        assert (out / "f").read_bytes() == b"1"
    finally:
        held.release()
    run_ndump("restore", "-x", "--max-sessions", "1", "-f", image, "--target", out, status=0)
    assert os.listdir(ndump_env.run_dir)


def test_listing_and_compare_take_no_slot(tmp_path, run_ndump, ndump_env):
    src = build_tree(tmp_path / "src", {"f": b"1"})
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    held = open_session(Settings(run_dir=ndump_env.run_dir, max_sessions=1), "dump", "/held")
    try:
        proc = run_ndump("restore", "-t", "-f", image, env={"NDUMP_MAX_SESSIONS": "1"}, status=0)
        assert "./f" in proc.stdout
        run_ndump("restore", "-C", "-f", image, "--target", src, env={"NDUMP_MAX_SESSIONS": "1"},
                  status=0)
        run_ndump("restore", "-x", "-f", image, "--target", tmp_path / "out",
                  env={"NDUMP_MAX_SESSIONS": "1"}, status=1)
    finally:
        held.release()
