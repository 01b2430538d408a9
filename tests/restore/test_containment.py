"""Restore as an attacker sees it (issue 10): crafted images, planted symlinks and a
hostile local user racing the restore.  Every test checks that nothing outside the
target changed: mode, owner, content and mtime of files planted outside."""
from __future__ import annotations

import ast
import dataclasses
import ctypes
import os
import re
import resource
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from craft import DATE, Craft
from ndump.format import TP_BSIZE, unpack_header
from ndump.restore import parallel
from trees import assert_trees_equal

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
pytestmark = pytest.mark.root


class Outside:
    """Files and a directory outside the target, with their state before the restore."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir()
        self.secret = root / "secret"
        self.secret.write_bytes(b"root's secret\n")
        os.chmod(self.secret, 0o700)
        self.dir = root / "dir"
        self.dir.mkdir(mode=0o755)
        (self.dir / "inner").write_bytes(b"inner\n")
        for p in (self.secret, self.dir / "inner", self.dir):
            os.utime(p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
        os.chmod(root, 0o755)
        self.before = self.state()

    def state(self) -> dict:
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in [""] + dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                body = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else sorted(os.listdir(p))
                out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, body)
        return out

    def check(self) -> None:
        assert self.state() == self.before, "something outside the target changed"


@pytest.fixture
def outside(tmp_path):
    return Outside(tmp_path / "outside")


def _ndump(*args, cwd, preexec_fn=None, stdin=subprocess.DEVNULL, script=None,
           stderr=subprocess.PIPE):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-c", script, *map(str, args)] if script else \
        [sys.executable, "-m", "ndump", *map(str, args)]
    return subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=stderr, preexec_fn=preexec_fn)


# -- defect 1: metadata-only records on planted symlinks ---------------------------------------
@pytest.mark.parametrize("mode", ["x", "r"])
@pytest.mark.parametrize("kind", [stat.S_IFIFO, stat.S_IFLNK, stat.S_IFREG])
def test_metadata_only_record_never_changes_what_a_planted_symlink_points_to(
        restore, image_file, tmp_path, outside, mode, kind):
    img = Craft().dir(2, {"a": 3, "d": 4})
    if kind == stat.S_IFLNK:
        img.symlink(3, "anything", uid=1234)
    else:
        img.node(3, kind, mode=0o4777, uid=1234)
    img.node(4, stat.S_IFIFO, mode=0o6777, uid=1234)
    img.metaonly = {3, 4}
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside.secret, out / "a")
    os.symlink(outside.dir, out / "d")
    r = restore(image_file(img), mode, target=out)
    outside.check()
    assert os.readlink(out / "a") == str(outside.secret)
    assert r.status == 2, r.err
    if kind != stat.S_IFLNK:
        assert "but the target holds a symbolic link; not changed" in r.err
    assert "Traceback" not in r.err


def test_level1_metadata_only_fifo_over_a_level0_symlink(restore, image_file, tmp_path, outside):
    level0 = Craft().dir(2, {"a": 3}).symlink(3, str(outside.secret))
    r = restore(image_file(level0, "l0"), "r")
    assert r.status == 0, r.err
    level1 = Craft(date=DATE + 1000, ddate=DATE, level=1).dir(2, {"a": 3})
    level1.node(3, stat.S_IFIFO, mode=0o4777)
    level1.metaonly = {3}
    r = restore(image_file(level1, "l1"), "r")
    outside.check()
    assert r.status == 2
    assert "./a: metadata-only record for a fifo, but the target holds a symbolic link" in r.err
    assert os.readlink(tmp_path / "out/a") == str(outside.secret)


# -- defect 2: another user races the restore --------------------------------------------------
def _racer(secret: Path, victim_dir: Path, wfd: int) -> None:
    """As nobody, in the target: the moment a node appears (inotify), put a symlink
    to a root-owned file (or directory) outside over it."""
    swaps = 0
    mine: set[bytes] = set()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ifd = libc.inotify_init1(0)
        assert libc.inotify_add_watch(ifd, b".", 0x100 | 0x80) >= 0     # IN_CREATE | IN_MOVED_TO
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and os.getppid() != 1:
            if not select.select([ifd], [], [], 0.2)[0]:
                if os.path.exists("STOP"):
                    break
                continue
            buf = os.read(ifd, 1 << 16)
            pos = 0
            while pos < len(buf):
                _, mask, _, size = struct.unpack_from("iIII", buf, pos)
                name = buf[pos + 16:pos + 16 + size].rstrip(b"\0")
                pos += 16 + size
                if name.startswith((b"tmp-", b"STOP")) or name.endswith(b".moved"):
                    continue
                if name in mine:                  # the event of our own rename
                    mine.discard(name)
                    continue
                try:
                    if mask & 0x40000000:                       # IN_ISDIR
                        os.rename(name, name + b".moved")
                        os.symlink(victim_dir, name)
                    else:
                        os.symlink(secret, b"tmp-" + name)
                        os.rename(b"tmp-" + name, name)
                    mine.add(name)
                    swaps += 1
                except OSError:
                    pass
    finally:
        os.write(wfd, b"%d" % swaps)
        os._exit(0)


@pytest.fixture
def fast_dir(tmp_path):
    """A directory on tmpfs when there is one (20,000 nodes on a busy disk take a minute)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="ndump-test-"))
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


def test_racing_user_swaps_nodes_for_symlinks_during_a_restore(restore, image_file, fast_dir):
    tmp_path = fast_dir
    outside = Outside(tmp_path / "outside")
    img = Craft()
    entries = {}
    n = 20_000
    for i in range(n):
        entries[f"n{i}"] = 10 + i
    for i in range(n):
        ino, kind = 10 + i, i % 5
        if kind == 0:
            img.dir(ino, {}, mode=0o777)
        elif kind == 1:
            img.node(ino, stat.S_IFIFO, mode=0o6777)
        elif kind == 2:
            img.node(ino, stat.S_IFCHR, mode=0o6666, rdev=os.makedev(1, 3))
        elif kind == 3:
            img.symlink(ino, "elsewhere")
        else:
            img.file(ino, b"data %d" % i, mode=0o4755)
    img.dir(2, entries, mode=0o777)
    path = image_file(img)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    os.chmod(tmp_path, 0o755)
    # the racer and the restore share one CPU, the restore at the lowest priority:
    # the racer runs the moment a node appears, as a loaded machine would let it
    cpus = os.sched_getaffinity(0)
    one = {min(cpus)}
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.sched_setaffinity(0, one)
        os.chdir(out)
        _racer(outside.secret, outside.dir, wfd)
    os.close(wfd)
    time.sleep(0.3)
    try:
        os.sched_setaffinity(0, one)
        os.setpriority(os.PRIO_PROCESS, 0, 19)
        try:
            r = restore(path, "r", target=out)
        finally:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
            os.sched_setaffinity(0, cpus)
    finally:
        (out / "STOP").touch()
        swaps = int(os.read(rfd, 64) or b"0")
        os.waitpid(pid, 0)
        os.close(rfd)
    outside.check()
    assert swaps > 100, "the racer did not get to run"
    assert "Traceback" not in r.err
    assert r.status in (0, 2), r.err
    # the racer can rename the private directory away (it can write the target's root):
    # what stays behind is empty and ours
    for name in os.listdir(out):
        if name.startswith(".ndump-private") and not (out / name).is_symlink():
            st = os.lstat(out / name)
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
            assert os.listdir(out / name) == []


# -- defect 3: forged headers inside a file's data, parallel restore ---------------------------
@pytest.fixture
def split_small(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_RANGE", 64 << 10)
    monkeypatch.setattr(parallel, "_cpus", lambda: 4)


def test_forged_headers_in_file_data_do_not_cut_a_parallel_restore(split_small, restore,
                                                                   image_file, tmp_path, outside):
    # the attacker's file holds, every 64 blocks, a TS_INODE header for the victim's
    # inode (right date, c_tapea = its own block, valid checksum and data CRC)
    forged_src = Craft().dir(2, {"victim": 20}).file(20, b"attacker's key\n", mode=0o104777)
    raw = forged_src.build()
    head_at = forged_src.offsets[20][0]
    forged = raw[head_at:head_at + 2 * TP_BSIZE]
    blocks = 4000
    data = bytearray(os.urandom(blocks * TP_BSIZE))

    def image(data):
        img = Craft().dir(2, {"big": 10, "victim": 20, "z": 30})
        img.file(10, bytes(data), mode=0o644, uid=1000)
        img.file(20, b"root's key\n", mode=0o600)
        img.file(30, os.urandom(300_000))
        return img

    first = image(data)
    first.build()
    heads = first.offsets[10]
    for k in range(64, blocks - 2, 64):
        chunk, pos = divmod(k, 512)
        if pos == 511:
            continue
        block = (heads[chunk] + TP_BSIZE * (1 + pos)) // TP_BSIZE
        h = unpack_header(forged[:TP_BSIZE])
        data[k * TP_BSIZE:(k + 1) * TP_BSIZE] = dataclasses.replace(h, tapea=block).pack()
        data[(k + 1) * TP_BSIZE:(k + 2) * TP_BSIZE] = forged[TP_BSIZE:]
    img = image(data)
    path = image_file(img)
    assert img.offsets[10] == heads
    r = restore(path, "r", verbose=1)
    outside.check()
    assert "extracting with" in r.err, r.err
    assert r.status == 0, r.err
    victim = tmp_path / "out/victim"
    assert victim.read_bytes() == b"root's key\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert (tmp_path / "out/big").read_bytes() == bytes(data)


# -- defect 4: SIGKILL of a parallel restore ---------------------------------------------------
_SPLIT_SCRIPT = ("import sys; sys.argv[0] = 'ndump'; from ndump.restore import parallel;"
                 " parallel.MIN_RANGE = 64 << 10; parallel._cpus = lambda: 4;"
                 " from ndump.cli import main; raise SystemExit(main(sys.argv[1:]))")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(w) for w in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_sigkill_of_a_parallel_restore_leaves_no_process_and_resume_completes(
        image_file, tmp_path, outside, restore):
    img = Craft()
    img.dir(2, {f"f{i}": 100 + i for i in range(1500)} | {"imm": 50})
    img.file(50, b"immutable", flags=0x10)
    for i in range(1500):
        img.file(100 + i, os.urandom(8000 + i))
    path = image_file(img)
    out = tmp_path / "out"
    out.mkdir()
    p = _ndump("restore", "-r", "-f", path, cwd=out, script=_SPLIT_SCRIPT)
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while not workers and time.monotonic() < deadline and p.poll() is None:
        workers = _children(p.pid)
    assert workers, "no worker was started: " + p.communicate()[1].decode()
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    time.sleep(3)
    assert [w for w in workers if _alive(w)] == []
    ref = tmp_path / "ref"
    ref.mkdir()
    assert restore(path, "r", target=ref).status == 0
    r = restore(path, "R", target=out)
    assert r.status == 0, r.err
    outside.check()
    assert_trees_equal(ref, out)


# -- defect 5: bounded descriptors -------------------------------------------------------------
def _deep_and_wide(n: int = 3000, depth: int = 10) -> Craft:
    img = Craft()
    ino = 3
    top = {}
    files = []
    for chain in range(n // depth):
        parent_entries = top
        for level in range(depth):
            d = ino
            ino += 1
            parent_entries[f"d{chain}-{level}"] = d
            entries = {}
            img.dirs.setdefault(d, None)
            files.append((d, entries))
            parent_entries = entries
    for d, entries in files:
        entries["f"] = ino
        img.file(ino, b"%d" % d)
        ino += 1
    for d, entries in reversed(files):
        img.dir(d, entries)
    img.dir(2, top)
    return img


@pytest.mark.parametrize("mode", ["r", "x"])
def test_3000_nested_and_sibling_directories_with_256_descriptors(image_file, tmp_path, outside,
                                                                   mode):
    path = image_file(_deep_and_wide())
    out = tmp_path / "out"
    out.mkdir()

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    args = ["restore", "-" + mode, "-f", path] + (["-y"] if mode == "x" else [])
    p = _ndump(*args, cwd=out, preexec_fn=limit)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]
    found = sum(1 for _ in out.rglob("f"))
    assert found == 3000
    outside.check()


# -- defect 6: a zstd bomb ----------------------------------------------------------------------
# ru_maxrss survives exec: a child forked straight from pytest (hundreds of MB late in a full
# run) reports pytest's size.  This small helper forks the command and writes its own peak.
_PEAK_RSS = ("import os, subprocess, sys\n"
             "p = subprocess.Popen(sys.argv[2:])\n"
             "_, status, usage = os.wait4(p.pid, 0)\n"
             "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
             "sys.exit(os.waitstatus_to_exitcode(status))\n")


def test_zstd_record_that_would_inflate_to_1_gib(tmp_path, outside):
    zstandard = pytest.importorskip("zstandard")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}").write_bytes(os.urandom(40_000))
    good = tmp_path / "good.dump"
    p = _ndump("dump", "-0", "--zstd", "-f", good, src, cwd=tmp_path)
    assert p.wait(timeout=120) == 0, p.communicate()[1]
    data = good.read_bytes()
    h = unpack_header(data[:TP_BSIZE])
    first = h.ntrec * TP_BSIZE
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(1 << 30))
    prefix = (len(bomb) << 4 | 7 << 1 | 1).to_bytes(4, "little")     # zstd (7), compressed
    evil = tmp_path / "evil.dump"
    evil.write_bytes(data[:first] + prefix + bomb + data[first:])
    out = tmp_path / "out"
    out.mkdir()
    with open(tmp_path / "err", "wb") as errf:
        p = _ndump(tmp_path / "rss", sys.executable, "-m", "ndump", "restore", "-r", "-f", evil,
                   cwd=out, stderr=errf, script=_PEAK_RSS)
        p.communicate(timeout=120)
    err = (tmp_path / "err").read_text()
    maxrss = int((tmp_path / "rss").read_text())
    assert p.returncode in (2, 3), err
    assert maxrss < 200 * 1024, f"peak RSS {maxrss} KiB"
    assert "decompressed record of" in err, err
    assert "Traceback" not in err
    outside.check()


# -- defect 7: contradictory images -------------------------------------------------------------
@pytest.mark.parametrize("second", ["symlink", "file", "fifo"])
def test_directory_in_the_directory_pass_and_something_else_in_the_file_pass(
        restore, image_file, tmp_path, outside, second):
    img = Craft().dir(2, {"d": 3, "ok": 5}).dir(3, {"inside": 4}).file(4, b"in d").file(5, b"ok")
    if second == "symlink":
        img.symlink(3, str(outside.dir))
    elif second == "file":
        img.file(3, b"not a directory")
    else:
        img.node(3, stat.S_IFIFO)
    r = restore(image_file(img), "r")
    assert r.status == 2
    assert "inode 3 is a directory in the directory pass and a" in r.err, r.err
    assert (tmp_path / "out/d").is_dir() and not (tmp_path / "out/d").is_symlink()
    assert (tmp_path / "out/d/inside").read_bytes() == b"in d"
    outside.check()


# -- defect 9: two restores into one target -----------------------------------------------------
def test_a_second_restore_into_the_same_target_refuses(image_file, tmp_path, outside):
    img = Craft().dir(2, {f"f{i}": 10 + i for i in range(300)})
    for i in range(300):
        img.file(10 + i, os.urandom(4000))
    data = img.build()
    path = image_file(data)
    out = tmp_path / "out"
    out.mkdir()
    first = _ndump("restore", "-r", "-f", "-", cwd=out, stdin=subprocess.PIPE)
    half = img.offsets[160][0]
    first.stdin.write(data[:half])
    first.stdin.flush()
    deadline = time.monotonic() + 60
    while not (out / "restoresymtable").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (out / "restoresymtable").exists()
    second = _ndump("restore", "-r", "-f", path, cwd=out)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 1
    assert f"another restore is writing into {out}" in err.decode(), err
    first.stdin.write(data[half:])
    first.stdin.close()
    assert first.wait(timeout=120) == 0, first.stderr.read().decode()
    for i in range(300):
        assert (out / f"f{i}").stat().st_size == 4000
    outside.check()


# -- defect 10: -R after an interruption, with an immutable file done ---------------------------
def test_resume_keeps_an_immutable_file_the_interrupted_run_finished(restore, image_file,
                                                                    tmp_path, outside):
    img = Craft().dir(2, {"imm": 3, "append": 4, "big": 5})
    img.file(3, b"cannot change me", flags=0x10)
    img.file(4, b"append only", flags=0x20)
    img.file(5, os.urandom(200_000))
    data = img.build()
    cut = image_file(data[:img.offsets[5][0] + 50 * TP_BSIZE], "cut")
    full = image_file(data, "full")
    r = restore(cut, "r")
    assert r.status == 3, r.err
    r = restore(full, "R")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    assert (out / "imm").read_bytes() == b"cannot change me"
    assert (out / "big").read_bytes() == data[img.offsets[5][0] + TP_BSIZE:][:200_000]
    outside.check()


# -- acceptance 3: only target.py changes metadata ----------------------------------------------
_METADATA_CALLS = {"chmod", "chown", "lchown", "fchmod", "fchown", "utime", "setxattr",
                   "removexattr", "mknod", "mkfifo", "symlink", "lchmod"}


def test_only_target_py_calls_metadata_functions():
    found = []
    for path in sorted((REPO / "ndump/restore").glob("*.py")):
        if path.name == "target.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in _METADATA_CALLS
                    and isinstance(node.value, ast.Name) and node.value.id in ("os", "fsmeta")):
                found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module in ("os", "ndump.fsmeta"):
                names = {a.name for a in node.names} & (_METADATA_CALLS | {"set_xattr", "make_node",
                                                                           "set_times"})
                found += [f"{path.name}:{node.lineno}: from {node.module} import {n}" for n in names]
    assert found == []


@pytest.mark.parametrize("planted", ["fifo", "symlink"])
def test_a_planted_restoresymtable_is_refused_not_followed(image_file, tmp_path, outside, planted):
    img = Craft().dir(2, {"a": 3}).file(3, b"a")
    path = image_file(img)
    out = tmp_path / "out"
    out.mkdir()
    if planted == "fifo":
        os.mkfifo(out / "restoresymtable")
    else:
        os.symlink(outside.secret, out / "restoresymtable")
    p = _ndump("restore", "-R", "-f", path, cwd=out)
    _, err = p.communicate(timeout=60)         # a fifo must not make it hang
    assert p.returncode == 1
    assert "restoresymtable" in err.decode(), err
    outside.check()
