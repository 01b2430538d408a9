"""Issue 12: friction a new user meets in the first hour, each with the real program."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trees import build_tree

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def image(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"alpha\n", "d/b": b"x" * 5000})
    img = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", img, src, status=0)
    return img


# -- bad environment values are errors that name the variable -----------------------------

@pytest.mark.parametrize("name, value, want", [
    ("NDUMP_FORCE", "bogus", "give Y or N"),
    ("NDUMP_EXTRACT", "Q", "give N, Y or E"),
    ("NDUMP_MAX_SESSIONS", "many", "a whole number"),
    ("NDUMP_PROGRESS_INTERVAL", "soon", "seconds"),
])
def test_bad_environment_value_names_the_variable(tmp_path, run_ndump, image, name, value, want):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_ndump("restore", "-r", "-f", image, "--target", out, env={name: value}, status=1)
    assert proc.stderr.startswith(f"RESTORE: environment variable {name}={value!r}: "), proc.stderr
    assert want in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "--extract" not in proc.stderr
    assert list(out.iterdir()) == []
    proc = run_ndump("dump", "-0", "-f", tmp_path / "x.dump", tmp_path, env={name: value}, status=1)
    assert proc.stderr.startswith(f"DUMP: environment variable {name}=")
    assert not (tmp_path / "x.dump").exists()


@pytest.mark.parametrize("value", ["y", "Yes", "1", "n", "NO", "0", ""])
def test_good_force_values_are_taken(tmp_path, run_ndump, image, value):
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", out, env={"NDUMP_FORCE": value}, status=0)
    assert (out / "a").read_bytes() == b"alpha\n"


# -- --target DIR that does not exist -------------------------------------------------------

@pytest.mark.parametrize("mode", ["-r", "-x"])
def test_missing_target_is_made(tmp_path, run_ndump, image, mode):
    out = tmp_path / "new" / "deeper"
    run_ndump("restore", mode, "-f", image, "--target", out, status=0)
    assert (out / "a").read_bytes() == b"alpha\n" and (out / "d" / "b").stat().st_size == 5000


def test_missing_target_for_compare_fails_before_reading(tmp_path, run_ndump):
    # the "dump" is not even one: the target is checked first
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 4096)
    proc = run_ndump("restore", "-C", "-f", junk, "--target", tmp_path / "nowhere", status=1)
    assert proc.stderr == f"RESTORE: cannot open the target directory {tmp_path / 'nowhere'}:" \
        " no such directory\n"


def test_target_that_cannot_be_made(tmp_path, run_ndump, image):
    (tmp_path / "file").write_text("x")
    proc = run_ndump("restore", "-r", "-f", image, "--target", tmp_path / "file" / "sub", status=1)
    assert proc.stderr == f"RESTORE: cannot make the target directory {tmp_path / 'file' / 'sub'}:" \
        " not a directory\n"


def test_level_0_says_what_its_base_is(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"1"})
    proc = run_ndump("dump", "-0", "--snapshot", "none", "-f", tmp_path / "x", src, status=0)
    assert "DUMP: Date of last lower-level dump: the epoch (a level 0 dump holds every file)\n" \
        in proc.stderr, proc.stderr
    assert "last level dump" not in proc.stderr


# -- the volumes of a dump -M set, read one by one ------------------------------------------

@pytest.mark.parametrize("mode", ["-t", "-x"])
def test_volume_2_alone_is_not_volume_1(tmp_path, run_ndump, golden_dir, mode):
    vol2 = golden_dir / "multi-volume-002.dump"
    proc = run_ndump("restore", mode, "-f", vol2, "--target", tmp_path / "out", status=1)
    assert proc.stderr == f"RESTORE: {vol2} is volume 2 of the dump, not volume 1: start with" \
        " volume 1\n"
    assert proc.stdout == ""


def test_volume_1_without_m_says_the_next_volume_is_needed(tmp_path, run_ndump, golden_dir):
    vol1 = golden_dir / "multi-volume-001.dump"
    proc = run_ndump("restore", "-x", "-f", vol1, "--target", tmp_path / "out", status=3)
    assert f"RESTORE: {vol1} ends before the dump does: volume 2 is needed (written by dump -M?" \
        " -M PREFIX reads PREFIX001, PREFIX002, ...; otherwise the dump is truncated)\n" \
        in proc.stderr, proc.stderr
    # with -M the same files restore completely
    prefix = tmp_path / "mv-"
    for n in (1, 2, 3):
        (tmp_path / f"mv-{n:03d}").symlink_to(golden_dir / f"multi-volume-{n:03d}.dump")
    run_ndump("restore", "-x", "-M", "-f", prefix, "--target", tmp_path / "all", status=0)
    assert (tmp_path / "all" / "small").exists()


# -- Ctrl-C ---------------------------------------------------------------------------------

def _start(tmp_path, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "ndump", *map(str, args)], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def test_sigint_during_a_dump_says_the_image_is_incomplete(tmp_path):
    src = build_tree(tmp_path / "src", {f"f{i}": os.urandom(256 * 1024) for i in range(8)})
    proc = _start(tmp_path, "dump", "-0", "--snapshot", "none", "-f", "-", src)
    try:
        head = proc.stdout.read(256 * 1024)       # the dump has started; the pipe then fills up
        assert len(head) == 256 * 1024
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode()
    assert proc.returncode == 3, err
    assert err.splitlines()[-2:] == [
        "DUMP: interrupted by signal 2, aborting",
        "DUMP: the dump on standard output is incomplete: do not restore from it"], err


def _partial(out: Path) -> bool:
    """'big' is being written, under a temporary name."""
    for p in out.glob(".ndump-*"):
        try:
            if p.stat().st_size >= 1 << 20:
                return True
        except FileNotFoundError:
            pass
    return False


def test_sigint_during_a_restore_leaves_no_partial_file_under_its_name(tmp_path):
    src = build_tree(tmp_path / "src", {"small": b"s\n", "big": os.urandom(4 << 20)})
    image = tmp_path / "l0.dump"
    subprocess.run([sys.executable, "-m", "ndump", "dump", "-0", "--snapshot", "none", "-f", image,
                    src], env=dict(os.environ, PYTHONPATH=str(REPO)), check=True,
                   capture_output=True)
    data = image.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    pipe_r, pipe_w = os.pipe()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "ndump", "restore", "-r", "-f", "-", "--target",
                             out], cwd=tmp_path, env=env, stdin=pipe_r, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    os.close(pipe_r)
    try:
        os.write(pipe_w, data[:len(data) // 2])         # 'big' is half written when input stops
        deadline = time.monotonic() + 30
        while not _partial(out):
            assert time.monotonic() < deadline and proc.poll() is None, "no partial file"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(pipe_w)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err.decode()
    assert "interrupted by signal 2" in err.decode()
    assert not (out / "big").exists()
    assert [n for n in os.listdir(out) if n.startswith(".ndump-")] == []


def test_a_dump_that_ends_inside_a_small_file_leaves_no_partial_file(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": os.urandom(40_000)})
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    cut = tmp_path / "cut.dump"
    data = image.read_bytes()
    cut.write_bytes(data[:data.index(image.parent.joinpath("src", "a").read_bytes()[:4096]) + 20_000])
    out = tmp_path / "out"
    proc = run_ndump("restore", "-r", "-f", cut, "--target", out, status=3)
    assert "./a: incomplete: the dump ends inside this file" in proc.stderr, proc.stderr
    assert "a" not in os.listdir(out), os.listdir(out)


# -- one style of message for both commands -------------------------------------------------

@pytest.mark.root
def test_a_file_problem_reads_the_same_in_dump_and_restore(tmp_path, run_ndump):
    """'./PATH: what happened: reason', the reason in lower case, in both commands."""
    src = build_tree(tmp_path / "src", {"ok": b"fine", "d/f": b"data"})
    image = tmp_path / "x.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    out = tmp_path / "out"
    (out / "d").mkdir(parents=True)
    (out / "d" / "f").mkdir()                        # a directory where the file belongs
    (out / "d" / "f" / "keep").write_text("x")
    proc = run_ndump("restore", "-x", "-f", image, "--target", out, status=2)
    assert "RESTORE: ./d/f: an existing directory is in the way; not replaced\n" in proc.stderr
    os.chmod(src / "d" / "f", 0)
    proc = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                           sys.executable, "-m", "ndump", "dump", "-0", "--snapshot", "none", "-f",
                           tmp_path / "y.dump", src], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2, proc.stderr
    assert "DUMP: ./d/f: not dumped: permission denied\n" in proc.stderr, proc.stderr
