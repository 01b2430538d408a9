"""Session limits (SPEC §3.6; issue 5, acceptance 5): ndump/sessions.py and the dump CLI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ndump.errors import SessionLimitError, StartupError
from ndump.sessions import GiB, effective_limit, memory_bytes, open_session, session_limit
from ndump.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mem,limit", [
    (0, 4), (2 * GiB, 4), (8 * GiB, 4), (16 * GiB - 1, 4),
    (16 * GiB, 16), (20 * GiB, 16), (24 * GiB - 4096, 16),
    (24 * GiB, 32), (64 * GiB, 32), (1024 * GiB, 32),
])
def test_memory_table(mem, limit):
    assert session_limit(mem) == limit


def test_limit_comes_from_option_then_environment_then_memory(tmp_path):
    s = Settings(run_dir=tmp_path, max_sessions=None)
    assert effective_limit(s) == (session_limit(memory_bytes()),
                                  f"the limit for {memory_bytes() / GiB:.1f} GiB of memory")
    assert memory_bytes() > 0
    s = Settings(run_dir=tmp_path, max_sessions=3)
    assert effective_limit(s) == (3, "NDUMP_MAX_SESSIONS")
    assert effective_limit(s, 7) == (7, "--max-sessions")
    assert Settings.from_environ({"NDUMP_MAX_SESSIONS": "5"}).max_sessions == 5


def test_slots_in_process(tmp_path):
    s = Settings(run_dir=tmp_path, max_sessions=2)
    a = open_session(s, "dump", "/a")
    b = open_session(s, "restore", "/b")
    assert {a.slot, b.slot} == {0, 1}
    with pytest.raises(SessionLimitError) as err:
        open_session(s, "dump", "/c")
    msg = str(err.value)
    assert msg.startswith("too many sessions: 2 dump/restore session(s) already running,"
                          " the limit is 2 (NDUMP_MAX_SESSIONS); wait for one to finish, or raise"
                          " the limit with --max-sessions N or NDUMP_MAX_SESSIONS=N (running: ")
    assert f"dump pid {os.getpid()} /a" in msg and "\n" not in msg
    a.release()
    with open_session(s, "dump", "/c") as c:
        assert c.slot == 0
        with pytest.raises(SessionLimitError):
            open_session(s, "dump", "/d")
    b.release()


def test_sessions_one_after_another_leave_no_more_slot_files_than_the_limit(tmp_path):
    # regression: each session once created a new slot file beyond the highest one
    s = Settings(run_dir=tmp_path, max_sessions=4)
    for _ in range(20):
        open_session(s, "dump", "/a").release()
    assert len(list((tmp_path / "sessions").glob("slot.*"))) <= 4
    for n in range(10, 30):                       # left by an older ndump: cleaned up
        (tmp_path / "sessions" / f"slot.{n}").touch()
    open_session(s, "dump", "/a").release()
    assert len(list((tmp_path / "sessions").glob("slot.*"))) <= 4


def test_a_lower_limit_counts_every_running_session(tmp_path):
    many = [open_session(Settings(run_dir=tmp_path, max_sessions=4), "dump") for _ in range(3)]
    with pytest.raises(SessionLimitError, match="3 dump/restore session.s. already running, the"
                                                " limit is 2 .--max-sessions."):
        open_session(Settings(run_dir=tmp_path), "dump", max_sessions=2)
    for s in many:
        s.release()


def test_limit_below_one_is_an_error(tmp_path):
    with pytest.raises(StartupError, match="at least 1"):
        open_session(Settings(run_dir=tmp_path, max_sessions=0), "dump")


def test_a_killed_session_frees_its_slot(tmp_path):
    code = ("import sys, time; from pathlib import Path; from ndump.settings import Settings;"
            "from ndump.sessions import open_session;"
            "s = open_session(Settings(run_dir=Path(sys.argv[1]), max_sessions=1), 'dump', '/x');"
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(SessionLimitError, match=f"dump pid {proc.pid} /x"):
            open_session(Settings(run_dir=tmp_path, max_sessions=1), "dump")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with open_session(Settings(run_dir=tmp_path, max_sessions=1), "dump") as s:
            assert s.slot == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def _background_dump(tmp_path: Path, fifo: Path, tree: Path, env: dict) -> subprocess.Popen:
    full = dict(os.environ)
    full["PYTHONPATH"] = str(REPO_ROOT)
    full.update(env)
    err = open(tmp_path / "first.err", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "ndump", "dump", "-0", "-f", str(fifo),
                             "--snapshot", "none", str(tree)], env=full, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    proc.err = err
    deadline = time.monotonic() + 30
    while "Pass II" not in (tmp_path / "first.err").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "first.err").read_text()
        time.sleep(0.05)
    return proc


def test_second_concurrent_dump_is_refused(tmp_path, run_ndump, ndump_env):
    tree = tmp_path / "tree"
    (tree / "aa").mkdir(parents=True)
    (tree / "aa" / "f").write_text("x\n")
    fifo = tmp_path / "first.fifo"
    os.mkfifo(fifo)
    first = _background_dump(tmp_path, fifo, tree, {"NDUMP_MAX_SESSIONS": "1"})
    try:
        out = tmp_path / "second.img"
        res = run_ndump("dump", "-0", "-f", out, "--snapshot", "none", tree,
                        env={"NDUMP_MAX_SESSIONS": "1"}, status=1)
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith(
            "DUMP: too many sessions: 1 dump/restore session(s) already running, the limit is 1"
            " (NDUMP_MAX_SESSIONS); wait for one to finish, or raise the limit with"
            " --max-sessions N or NDUMP_MAX_SESSIONS=N (running: dump pid"), last
        assert f"pid {first.pid} {tree}" in last
        assert not out.exists()

        res = run_ndump("dump", "-0", "-f", out, "--snapshot", "none", "--max-sessions", "2",
                        tree, env={"NDUMP_MAX_SESSIONS": "1"}, status=0)
        assert out.exists()

        first.send_signal(signal.SIGKILL)           # a crashed session never holds a slot
        first.wait(10)
        run_ndump("dump", "-0", "-f", tmp_path / "third.img", "--snapshot", "none", tree,
                  env={"NDUMP_MAX_SESSIONS": "1"}, status=0)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.err.close()


def test_user_without_a_run_directory_runs_without_a_slot(tmp_path):
    """/run/ndump belongs to root: another user runs without a slot, with a warning."""
    import io
    from ndump.report import Reporter
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    mounted = os.geteuid() == 0          # root ignores the mode: a read-only tmpfs then
    if mounted:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "ndumptest", str(ro)],
                       check=True)
    try:
        s = Settings(run_dir=ro / "run", max_sessions=1, is_root=False)
        r = Reporter("DUMP", stream=io.StringIO())
        with open_session(s, "restore", "/x", reporter=r) as sess:
            assert sess.slot is None
        assert "session limits not applied: cannot use" in r.stream.getvalue()
        with pytest.raises(StartupError, match="cannot use the session slots"):
            open_session(Settings(run_dir=s.run_dir, max_sessions=1, is_root=True), "dump")
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)
