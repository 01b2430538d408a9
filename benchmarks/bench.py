#!/usr/bin/env python3
"""Benchmark ndump against stock Linux dump/restore 0.4b47 and GNU tar.

Run as root from a checkout:

    python benchmarks/bench.py [--quick] [--million] [--corpus classic,heavy] \
        [--only dump,restore,incr,compress,startup] [--json OUT] [--keep]

What it does (see benchmarks/README.md for details):

* builds deterministic corpora on fresh ext4 loop filesystems: the classic one
  (files up to 64 KiB) and the heavy-tailed one of issue 16 (lognormal sizes up
  to 1 MiB), and runs the sections below on each,
* warms the page cache, then times stock dump, ndump dump and ``tar -cS``
  (level 0), stock ``restore -r``, ``ndump restore -r`` and ``tar -x``, the
  ndump/stock incremental (level 1 after touching 1 % of the files) and the
  compressed dumps, each best-of-N, measuring wall time and the peak RSS of
  the child process (``os.wait4``),
* times the start-up of tiny runs against the bare interpreter,
* with ``--million``, builds a second filesystem holding 1,000,000 tiny files
  and measures the time and peak RSS of a level-0 dump of it,
* prints markdown tables and (``--json``) writes every run's raw numbers.

Archives and restored trees live on a tmpfs mounted for the run, so the disk
is not what is measured.  Everything (mounts, loop devices, temp dir) is
undone in ``finally`` blocks, also on Ctrl-C and SIGTERM.

An ndump command that fails (a feature not written yet) is reported as
``failed: <message>`` in the table instead of stopping the benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
MB = 10**6

STOCK_DUMP = "/usr/sbin/dump"
STOCK_RESTORE = "/usr/sbin/restore"
TAR = shutil.which("tar") or "/usr/bin/tar"

SECTIONS = ("dump", "restore", "incr", "compress", "catalog", "startup", "million", "scale")
CORPORA = ("classic", "heavy")   # build_corpus / build_heavy_corpus
CORPUS_TITLES = {
    "classic": "classic corpus (files of 100 B..64 KiB, median ~4 KiB)",
    "heavy": "heavy-tailed corpus (lognormal sizes, median ~4 KiB, sigma 1.6, capped at 1 MiB)",
}

# Figures measured earlier on this kind of machine, full corpus (20k files,
# 577 MB).  Printed next to this run's numbers for orientation only.
REFERENCE = {
    ("dump", "stock"): 1.6,
    ("dump", "tar"): 0.44,
    ("restore", "stock"): 1.9,
    ("restore", "tar"): 1.2,
}

MILLION_RSS_TARGET_MIB = 400        # issue 16 goal 3 (issue 10 had 500)
MILLION_STOCK_TARGET = 1.0          # issue 16 goal 3: 1M empty files dump, ndump/stock
LIST_RSS_TARGET_MIB = 150          # restore -t of the same dump (issue 10)
MILLION_RESTORE_RSS_TARGET_MIB = 400   # restore -r of the same dump (issue 16 goal 3)
CATALOG_COST_TARGET = 0.05          # of a level-0 dump's time
CATALOG_BYTES_TARGET = 300          # database bytes per name
CATALOG_FIND_TARGET_S = 1.0         # catalog find over CATALOG_ROWS rows
CATALOG_ROWS = 1_000_000


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Running one command and measuring it
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    wall: float          # seconds, fork to reap (measured inside the helper)
    maxrss_kib: int      # ru_maxrss of the command: max over it and its reaped descendants
    rc: int              # exit status (negative: killed by signal)
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def error_summary(out: Outcome) -> str:
    """One line describing why a command failed."""
    if out.timed_out:
        return "timed out"
    lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
    msg = ""
    if lines:
        if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
            msg = lines[-1]  # the exception, not "Traceback ..."
        else:
            keys = ("error", "abort", "invalid", "unknown", "no such", "usage",
                    "cannot", "can't", "not ", "fail", "denied", "refus")
            hits = [ln for ln in lines if any(k in ln.lower() for k in keys)]
            msg = hits[0] if hits else lines[0]
    else:
        msg = "no message on stderr"
    if out.rc < 0:
        msg = f"signal {-out.rc}: {msg}"
    elif out.rc:
        msg = f"exit {out.rc}: {msg}"
    return msg[:140]


# The measured command is started by this tiny helper (``python -S -I``), not
# by the benchmark itself: on Linux, ru_maxrss survives exec, so a child forked
# straight from this (large) Python process would inherit its RSS as a floor.
# The helper forks the command, times fork-to-reap with perf_counter (so its own
# start-up is not counted), waits with os.wait4 and sends back the command's
# own status, ru_maxrss and wall time.  Its floor (~5 MiB) is measured at start
# and printed with the results.
SPAWNER = r"""
import os, sys, time
fd = int(sys.argv[1])
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.close(fd)
        os.execv(sys.argv[2], sys.argv[2:])
    except OSError as e:
        os.write(2, ("cannot run %s: %s\n" % (sys.argv[2], e)).encode())
    os._exit(127)
_, status, ru = os.wait4(pid, 0)
t1 = time.perf_counter()
os.write(fd, ("%d %d %.9f" % (status, ru.ru_maxrss, t1 - t0)).encode())
"""


class Runner:
    """Runs a command through SPAWNER; keeps its wall time and own peak RSS."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.current: subprocess.Popen | None = None

    def run(self, argv: list[str], *, cwd: str | None = None, env: dict | None = None,
            stdout_path: str | None = None, timeout: float | None = None) -> Outcome:
        timeout = timeout or self.timeout
        if "/" not in argv[0]:
            # Resolve here: a PATH search inside the helper's child would
            # touch memory before exec and raise the RSS floor.
            path = (env or os.environ).get("PATH", os.defpath)
            argv = [shutil.which(argv[0], path=path) or argv[0], *argv[1:]]
        rfd, wfd = os.pipe()
        with tempfile.TemporaryFile() as errf:
            out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
            timed_out = threading.Event()
            try:
                t0 = time.perf_counter()
                p = subprocess.Popen([sys.executable, "-S", "-I", "-c", SPAWNER, str(wfd), *argv],
                                     cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=errf, pass_fds=(wfd,), start_new_session=True)
                os.close(wfd)
                wfd = -1
                self.current = p

                def kill() -> None:
                    timed_out.set()
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

                timer = threading.Timer(timeout, kill)
                timer.daemon = True
                timer.start()
                try:
                    p.wait()
                finally:
                    timer.cancel()
                t1 = time.perf_counter()
                self.current = None
                report = b""
                while chunk := os.read(rfd, 256):
                    report += chunk
            finally:
                if wfd >= 0:
                    os.close(wfd)
                os.close(rfd)
                if stdout_path:
                    out.close()
            errf.seek(0)
            err = errf.read().decode("utf-8", "replace")
        try:
            status, maxrss, wall = report.split()
            rc = os.waitstatus_to_exitcode(int(status))
            return Outcome(float(wall), int(maxrss), rc, err, timed_out.is_set())
        except ValueError:  # the helper itself was killed (timeout) or broke
            return Outcome(t1 - t0, 0, p.returncode or -9, err, timed_out.is_set())

    def floor_kib(self) -> int:
        """ru_maxrss that /bin/true shows through the helper: the RSS floor."""
        return min(self.run(["true"]).maxrss_kib for _ in range(3))

    def kill_current(self) -> None:
        p = self.current
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        self.current = None


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Result:
    section: str             # dump / restore / incr / compress / million
    op: str                  # human label of the operation
    tool: str                # stock / ndump / tar
    cmd: list[str]
    nbytes: int              # bytes of data the operation moves (for MB/s)
    times: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    error: str | None = None
    extra: dict = field(default_factory=dict)
    corpus: str = ""         # classic / heavy; "" for the sections without a corpus

    @property
    def best(self) -> float | None:
        return min(self.times) if self.times and not self.error else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and not self.error else None

    @property
    def peak_rss_mib(self) -> float | None:
        return max(self.rss_kib) / KiB if self.rss_kib and not self.error else None

    @property
    def mbps(self) -> float | None:
        b = self.best
        return self.nbytes / MB / b if b else None

    def add(self, out: Outcome) -> None:
        self.times.append(out.wall)
        self.rss_kib.append(out.maxrss_kib)

    def as_json(self) -> dict:
        return {
            "section": self.section, "op": self.op, "tool": self.tool, "cmd": self.cmd,
            "bytes": self.nbytes, "runs_s": self.times, "maxrss_kib": self.rss_kib,
            "best_s": self.best, "median_s": self.median, "mb_per_s": self.mbps,
            "peak_rss_mib": self.peak_rss_mib, "error": self.error, "corpus": self.corpus,
            **self.extra,
        }


def ratio(a: Result | None, b: Result | None) -> float | None:
    """a's best time divided by b's best time (< 1.0: a is faster)."""
    if a is None or b is None or a.best is None or b.best is None or b.best <= 0:
        return None
    return a.best / b.best


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


_rss_floor_kib = 0  # set by report(); RSS at or below it only means "at most this"


def rss_cell(r: Result) -> str:
    v = r.peak_rss_mib
    if v is None:
        return "–"
    if _rss_floor_kib and max(r.rss_kib) <= _rss_floor_kib + 256:
        return f"<= {v:.1f}"
    return f"{v:.1f}"


def md_escape(s: str) -> str:
    return s.replace("|", "\\|")


# --------------------------------------------------------------------------
# Filesystems
# --------------------------------------------------------------------------


class Mounts:
    """Loop devices and mounts created by this run, undone in reverse order."""

    def __init__(self) -> None:
        self.mounted: list[str] = []
        self.loops: list[str] = []

    def loop_fs(self, image: str, size: int, mnt: str, mkfs_extra: list[str]) -> str:
        with open(image, "wb") as f:
            pass
        subprocess.run(["truncate", "-s", str(size), image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", *mkfs_extra, image], check=True)
        dev = subprocess.run(["losetup", "-f", "--show", image], check=True,
                             capture_output=True, text=True).stdout.strip()
        self.loops.append(dev)
        os.makedirs(mnt, exist_ok=True)
        subprocess.run(["mount", "-t", "ext4", dev, mnt], check=True)
        self.mounted.append(mnt)
        return dev

    def tmpfs(self, mnt: str, size: str) -> None:
        os.makedirs(mnt, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", mnt],
                       check=True)
        self.mounted.append(mnt)

    def cleanup(self) -> list[str]:
        problems = []
        for mnt in reversed(self.mounted):
            for attempt in range(5):
                r = subprocess.run(["umount", mnt], capture_output=True, text=True)
                if r.returncode == 0:
                    break
                time.sleep(0.5)
            else:
                r = subprocess.run(["umount", "-l", mnt], capture_output=True, text=True)
                if r.returncode:
                    problems.append(f"umount {mnt}: {r.stderr.strip()}")
        self.mounted.clear()
        for dev in reversed(self.loops):
            r = subprocess.run(["losetup", "-d", dev], capture_output=True, text=True)
            if r.returncode:
                problems.append(f"losetup -d {dev}: {r.stderr.strip()}")
        self.loops.clear()
        return problems


# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------


@dataclass
class Corpus:
    files: list[str]          # small files, relative to the mount point
    big: list[str]
    sparse: str
    n_dirs: int
    data_bytes: int           # bytes of real data (sparse file: only its data)
    apparent_bytes: int       # sum of st_size
    sparse_size: int
    sparse_data: int
    build_s: float

    def as_json(self) -> dict:
        return {
            "small_files": len(self.files), "big_files": len(self.big), "sparse_files": 1,
            "directories": self.n_dirs, "data_bytes": self.data_bytes,
            "apparent_bytes": self.apparent_bytes, "sparse_size": self.sparse_size,
            "sparse_data_bytes": self.sparse_data, "build_s": self.build_s,
        }


def text_block(rng: random.Random, size: int) -> bytes:
    """Compressible, text-like bytes (random words from a small vocabulary)."""
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(3000)]
    parts: list[bytes] = []
    have = 0
    while have < size:
        line = " ".join(rng.choices(vocab, k=4096)).encode()
        line = line.replace(b" ", b"\n", 1)
        parts.append(line + b"\n")
        have += len(line) + 1
    return b"".join(parts)[:size]


def _small_files(root: str, rng: random.Random, dirs: list[str], n: int, pool_text: bytes,
                 pool_rand: bytes, size_of) -> tuple[list[str], int]:
    """n files of size_of() bytes in random directories, every third one text: their
    names and their data bytes."""
    files: list[str] = []
    data = 0
    for i in range(n):
        size = size_of()
        d = rng.choice(dirs)
        rel = f"{d}/f{i:05d}.{'txt' if i % 3 == 0 else 'bin'}"
        pool = pool_text if i % 3 == 0 else pool_rand
        off = rng.randrange(0, len(pool) - size)
        with open(os.path.join(root, rel), "wb", buffering=0) as f:
            f.write(pool[off:off + size])
        files.append(rel)
        data += size
    return files, data


def _big_files(root: str, rng: random.Random, dirs: list[str], n: int, size: int) -> list[str]:
    """n big files of size bytes; the first two compressible (text)."""
    big: list[str] = []
    for i in range(n):
        rel = f"{rng.choice(dirs)}/big{i:02d}.{'log' if i < 2 else 'dat'}"
        content = text_block(rng, size) if i < 2 else rng.randbytes(size)
        with open(os.path.join(root, rel), "wb", buffering=0) as f:
            f.write(content)
        big.append(rel)
    return big


def _sparse_file(root: str, rng: random.Random, quick: bool) -> tuple[str, int, int]:
    """One sparse file: 1 GiB apparent (quick: 100 MiB), 64 (quick: 8) chunks of
    64 KiB of data; (name, apparent size, data bytes)."""
    sparse_size = GiB // (10 if quick else 1)
    chunk = 64 * KiB
    n_chunks = 64 if not quick else 8
    slots = sorted(rng.sample(range(sparse_size // chunk), n_chunks))
    rel_sparse = "sparse.img"
    fd = os.open(os.path.join(root, rel_sparse), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, sparse_size)
        for s in slots:
            os.pwrite(fd, rng.randbytes(chunk), s * chunk)
    finally:
        os.close(fd)
    return rel_sparse, sparse_size, n_chunks * chunk


def build_corpus(root: str, quick: bool, seed: int) -> Corpus:
    t0 = time.perf_counter()
    scale = 10 if quick else 1
    rng = random.Random(seed)

    # ~200 directories, three levels deep (quick: ~20).
    shape = (2, 3, 2) if quick else (8, 5, 4)
    dirs: list[str] = []
    for a in range(shape[0]):
        da = f"d{a:02d}"
        dirs.append(da)
        for b in range(shape[1]):
            db = f"{da}/s{b:02d}"
            dirs.append(db)
            for c in range(shape[2]):
                dirs.append(f"{db}/t{c:02d}")
    for d in dirs:
        os.makedirs(os.path.join(root, d))

    # Pools of content, sliced per file (fast, and not all files identical).
    pool_rand = rng.randbytes(4 * MiB + 64 * KiB)
    pool_text = text_block(rng, 2 * MiB + 64 * KiB)

    n_small = 20000 // scale
    mu, sigma = math.log(4096), 0.6   # median ~4 KiB, mean ~4.7 KiB
    files, data = _small_files(root, rng, dirs, n_small, pool_text, pool_rand,
                               lambda: int(min(64 * KiB, max(100, rng.lognormvariate(mu, sigma)))))

    # 15 big files; two of them compressible.
    big_size = (32 * MiB // scale) // 4096 * 4096
    big = _big_files(root, rng, dirs, 15, big_size)
    data += len(big) * big_size

    # One sparse file: 1 GiB apparent (quick: 100 MiB), a few MiB of data.
    rel_sparse, sparse_size, sparse_data = _sparse_file(root, rng, quick)
    data += sparse_data

    os.sync()
    apparent = data - sparse_data + sparse_size
    return Corpus(files, big, rel_sparse, len(dirs), data, apparent, sparse_size,
                  sparse_data, time.perf_counter() - t0)


def build_heavy_corpus(root: str, quick: bool, seed: int) -> Corpus:
    """The heavy-tailed corpus of issue 16: 20,000 files with lognormal sizes
    (median ~4 KiB, sigma 1.6, capped at 1 MiB), 8 files of 32 MiB and a 1 GiB
    sparse file, in ~200 directories 1-4 levels deep (quick: divided by 10)."""
    t0 = time.perf_counter()
    scale = 10 if quick else 1
    rng = random.Random(seed ^ 0x16)

    # ~200 directories, 1-4 levels deep: each new one under a random existing
    # directory (or the root) that is less than 4 deep.
    n_dirs = 200 // scale
    dirs: list[str] = []
    for k in range(n_dirs):
        parents = [""] + [d for d in dirs if d.count("/") < 3]
        parent = rng.choice(parents)
        d = f"{parent}/h{k:03d}" if parent else f"h{k:03d}"
        dirs.append(d)
        os.makedirs(os.path.join(root, d))

    cap = MiB
    pool_rand = rng.randbytes(4 * MiB + cap)
    pool_text = text_block(rng, 2 * MiB + cap)
    n_small = 20000 // scale
    mu, sigma = math.log(4096), 1.6
    files, data = _small_files(root, rng, dirs, n_small, pool_text, pool_rand,
                               lambda: int(min(cap, max(1, rng.lognormvariate(mu, sigma)))))

    big_size = (32 * MiB // scale) // 4096 * 4096
    big = _big_files(root, rng, dirs, 8, big_size)
    data += len(big) * big_size

    rel_sparse, sparse_size, sparse_data = _sparse_file(root, rng, quick)
    data += sparse_data
    os.sync()
    apparent = data - sparse_data + sparse_size
    return Corpus(files, big, rel_sparse, len(dirs), data, apparent, sparse_size,
                  sparse_data, time.perf_counter() - t0)


def warm_cache(root: str, dev: str | None) -> float:
    """Read every file (and the block device stock dump reads) once."""
    t0 = time.perf_counter()
    buf = bytearray(MiB)
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            try:
                fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                # Skip holes so the 1 GiB sparse file does not cost a GiB of zeros.
                pos = 0
                while True:
                    try:
                        pos = os.lseek(fd, pos, os.SEEK_DATA)
                    except OSError:
                        break
                    end = os.lseek(fd, pos, os.SEEK_HOLE)
                    os.lseek(fd, pos, os.SEEK_SET)
                    while pos < end:
                        n_read = os.readv(fd, [buf])
                        if not n_read:
                            break
                        pos += n_read
            finally:
                os.close(fd)
    if dev:
        # Stock dump reads the device, whose cache is separate from the files'.
        subprocess.run(["dd", f"if={dev}", "of=/dev/null", "bs=1M", "status=none"], check=True)
    # Reading updated atimes (relatime): write them out now, not during a timed run.
    os.sync()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: str, mounts: Mounts):
        self.args = args
        self.tmp = tmp
        self.mounts = mounts
        self.runner = Runner(args.timeout)
        self.rss_floor_kib = self.runner.floor_kib()
        self.runs = args.runs
        self.results: list[Result] = []
        self.corpus: Corpus | None = None
        self.cname = ""                            # the corpus being measured
        self.corpora: dict[str, Corpus] = {}
        self.startup: dict = {}
        self.scale: list[dict] = []
        self.million: dict = {}
        self.snapshot_flag_ok: bool | None = None  # does the CLI take --snapshot none?
        self.out = os.path.join(tmp, "out")        # the tmpfs
        self.state = os.path.join(tmp, "ndump-state")
        self.run_dir = os.path.join(tmp, "ndump-run")
        self.env = os.environ.copy()
        os.makedirs(self.state, exist_ok=True)
        os.makedirs(self.run_dir, exist_ok=True)
        pp = self.env.get("PYTHONPATH")
        self.env.update({
            "NDUMP_STATE_DIR": self.state,
            "NDUMP_RUN_DIR": self.run_dir,
            "NDUMP_DUMPDATES": os.path.join(self.state, "dumpdates"),
            "PYTHONPATH": str(REPO) + (os.pathsep + pp if pp else ""),
            "LC_ALL": "C",
        })
        self.env.pop("TAPE", None)
        # ndump runs as a user's shell runs it: unbuffered standard output (python -u)
        # would make every listing line a system call of its own
        self.env.pop("PYTHONUNBUFFERED", None)
        # Byte code is cached, as for an installed package (pip compiles it at
        # install): without it every run recompiles each module it imports,
        # which more than doubles the start-up.  The cache lives in the temp dir.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "ndump")],
                       env=self.env, check=False, stdout=subprocess.DEVNULL)
        self.stock_dumpdates = os.path.join(tmp, "stock-dumpdates")
        open(self.stock_dumpdates, "a").close()

    # ---- commands -------------------------------------------------------

    def ndump(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ndump", *args]

    def ndump_dump_cmd(self, flags: list[str], out: str, path: str) -> list[str]:
        snap = ["--snapshot", "none"] if self.snapshot_flag_ok is not False else []
        return self.ndump("dump", *flags, "-q", *snap, "-f", out, path)

    def run_ndump_dump(self, flags: list[str], out: str, path: str, **kw) -> tuple[Outcome, list[str]]:
        cmd = self.ndump_dump_cmd(flags, out, path)
        o = self.runner.run(cmd, env=self.env, **kw)
        if not o.ok and self.snapshot_flag_ok is None and "snapshot" in o.stderr.lower():
            # The CLI does not know --snapshot (yet): retry without it, once.
            self.snapshot_flag_ok = False
            log("ndump rejected --snapshot none; retrying without it")
            cmd = self.ndump_dump_cmd(flags, out, path)
            o = self.runner.run(cmd, env=self.env, **kw)
        elif o.ok and self.snapshot_flag_ok is None and "--snapshot" in cmd:
            self.snapshot_flag_ok = True
        return o, cmd

    # ---- helpers --------------------------------------------------------

    @staticmethod
    def rm(path: str) -> None:
        if os.path.lexists(path):
            subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)

    def fresh_dir(self, name: str) -> str:
        d = os.path.join(self.out, name)
        self.rm(d)
        os.makedirs(d)
        return d

    def record(self, r: Result, o: Outcome) -> bool:
        """Add a run; on failure mark the result failed.  True when it worked."""
        if o.ok:
            r.add(o)
            return True
        r.error = error_summary(o)
        log(f"{r.section}/{r.tool} {r.op}: failed: {r.error}")
        return False

    # ---- sections -------------------------------------------------------

    def keep(self, *results: Result) -> None:
        """Add finished results, labelled with the corpus they were measured on."""
        for r in results:
            r.corpus = self.cname
            self.results.append(r)

    def setup_corpus(self, kind: str = "classic") -> None:
        img = os.path.join(self.tmp, f"corpus-{kind}.img")
        self.mnt = os.path.join(self.tmp, f"corpus-{kind}")
        size = 256 * MiB if self.args.quick else 2 * GiB
        self.dev = self.mounts.loop_fs(img, size, self.mnt, [])
        log(f"building {'quick ' if self.args.quick else ''}{kind} corpus on {self.dev} at {self.mnt}")
        build = build_heavy_corpus if kind == "heavy" else build_corpus
        self.corpus = build(self.mnt, self.args.quick, self.args.seed)
        self.cname = kind
        self.corpora[kind] = self.corpus
        c = self.corpus
        log(f"corpus: {len(c.files) + len(c.big) + 1} files in {c.n_dirs} dirs, "
            f"{c.data_bytes / MB:.1f} MB data ({c.data_bytes / MiB:.1f} MiB), "
            f"built in {c.build_s:.1f} s")
        w = warm_cache(self.mnt, self.dev)
        log(f"cache warmed in {w:.1f} s")
        self.prefault_tmpfs(3 * c.data_bytes)

    def prefault_tmpfs(self, want: int) -> None:
        """Write and delete a large file on the tmpfs once.

        In a VM, guest memory touched for the first time is slow (the host
        backs it lazily), which made whichever tool ran first look slower.
        """
        st = os.statvfs(self.out)
        size = min(want, st.f_bavail * st.f_frsize - 256 * MiB)
        if size <= 0:
            return
        t0 = time.perf_counter()
        p = os.path.join(self.out, "prefault")
        block = b"\xa5" * MiB
        with open(p, "wb", buffering=0) as f:
            for _ in range(size // MiB):
                f.write(block)
        os.unlink(p)
        log(f"prefaulted {size / MiB:.0f} MiB of tmpfs in {time.perf_counter() - t0:.1f} s")

    def archives(self) -> dict[str, str]:
        return {t: os.path.join(self.out, f"level0.{ext}")
                for t, ext in (("stock", "dump"), ("ndump", "ndump"), ("tar", "tar"))}

    def dump_cmd(self, tool: str, out: str) -> list[str]:
        if tool == "stock":
            return [STOCK_DUMP, "-0", "-q", "-f", out, self.dev]
        if tool == "tar":
            return [TAR, "-cSf", out, "-C", self.mnt, "."]
        return self.ndump_dump_cmd(["-0"], out, self.mnt)

    def run_dump(self, tool: str, out: str) -> tuple[Outcome, list[str]]:
        self.rm(out)
        if tool == "ndump":
            return self.run_ndump_dump(["-0"], out, self.mnt)
        cmd = self.dump_cmd(tool, out)
        return self.runner.run(cmd, env=self.env), cmd

    def section_dump(self, timed: bool) -> None:
        """Level-0 dumps; also makes the archives the restore section reads."""
        runs = self.runs if timed else 1
        arch = self.archives()
        res = {t: Result("dump", "dump level 0", t, self.dump_cmd(t, arch[t]),
                         self.corpus.data_bytes) for t in ("stock", "ndump", "tar")}
        for i in range(runs):
            for tool in ("stock", "ndump", "tar"):
                r = res[tool]
                if r.error:
                    continue
                log(f"dump {tool} run {i + 1}/{runs}")
                o, cmd = self.run_dump(tool, arch[tool])
                r.cmd = cmd
                if self.record(r, o):
                    r.extra["output_bytes"] = os.path.getsize(arch[tool])
                else:
                    self.rm(arch[tool])
        if timed:
            self.keep(*res.values())

    def restore_cmd(self, tool: str, archive: str) -> list[str]:
        if tool == "stock":
            return [STOCK_RESTORE, "-r", "-f", archive]
        if tool == "tar":
            return [TAR, "-xf", archive]
        return self.ndump("restore", "-r", "-f", archive)

    def section_restore(self) -> None:
        arch = self.archives()
        res = {}
        for tool in ("stock", "ndump", "tar"):
            r = Result("restore", "restore full (-r / -x)", tool,
                       self.restore_cmd(tool, arch[tool]), self.corpus.data_bytes)
            if not os.path.exists(arch[tool]):
                r.error = "no archive (its dump failed)"
            res[tool] = r
        for i in range(self.runs):
            for tool in ("stock", "ndump", "tar"):
                r = res[tool]
                if r.error:
                    continue
                log(f"restore {tool} run {i + 1}/{self.runs}")
                d = self.fresh_dir(f"restore-{tool}")
                o = self.runner.run(r.cmd, cwd=d, env=self.env)
                ok = self.record(r, o)
                if ok and i == 0:
                    r.extra["restored_check"] = self.check_restored(d)
                self.rm(d)  # not timed
        self.keep(*res.values())

    def check_restored(self, d: str) -> str:
        """Cheap sanity check of a restored tree: file count and a few sizes."""
        c = self.corpus
        missing = 0
        sample = c.files[:: max(1, len(c.files) // 50)] + c.big + [c.sparse]
        for rel in sample:
            try:
                st = os.lstat(os.path.join(d, rel))
            except FileNotFoundError:
                missing += 1
                continue
            want = os.lstat(os.path.join(self.mnt, rel)).st_size
            if st.st_size != want:
                missing += 1
        return "ok" if missing == 0 else f"{missing}/{len(sample)} sampled files missing or wrong size"

    def section_incr(self) -> None:
        """Level 0 -u, touch 1 % of the files, level 1 -u; ndump and stock."""
        c = self.corpus
        l0 = {t: Result("incr", "dump level 0 -u", t, [], c.data_bytes) for t in ("stock", "ndump")}
        out = {t: os.path.join(self.out, f"incr.{t}") for t in ("stock", "ndump")}

        def one(tool: str, level: int, r: Result) -> None:
            self.rm(out[tool])
            if tool == "stock":
                cmd = [STOCK_DUMP, f"-{level}", "-u", "-q", "-D", self.stock_dumpdates,
                       "-f", out[tool], self.dev]
                o = self.runner.run(cmd, env=self.env)
            else:
                o, cmd = self.run_ndump_dump([f"-{level}", "-u"], out[tool], self.mnt)
            r.cmd = cmd
            if self.record(r, o):
                r.extra["output_bytes"] = os.path.getsize(out[tool])
            self.rm(out[tool])

        for i in range(self.runs):
            for tool in ("stock", "ndump"):
                if not l0[tool].error:
                    log(f"incr level 0 {tool} run {i + 1}/{self.runs}")
                    one(tool, 0, l0[tool])

        # Touch 1 % of all regular files: append one byte.
        time.sleep(1.05)  # dumpdates have one-second resolution
        rng = random.Random(self.args.seed + 1)
        everything = c.files + c.big
        touched = rng.sample(everything, max(1, len(everything) // 100))
        tbytes = 0
        for rel in touched:
            p = os.path.join(self.mnt, rel)
            with open(p, "ab") as f:
                f.write(b"\n")
            tbytes += os.path.getsize(p)
        os.sync()
        # Stock dump reads the device: drop the device's (now stale) cache and
        # re-read it so both tools start warm.
        subprocess.run(["blockdev", "--flushbufs", self.dev], check=False)
        subprocess.run(["dd", f"if={self.dev}", "of=/dev/null", "bs=1M", "status=none"], check=False)

        l1 = {t: Result("incr", f"dump level 1 -u ({len(touched)} files touched)", t, [], tbytes)
              for t in ("stock", "ndump")}
        for t in ("stock", "ndump"):
            l1[t].extra["files_touched"] = len(touched)
            l1[t].extra["touched_bytes"] = tbytes
            if l0[t].error:
                l1[t].error = "no level 0 (it failed)"
        for i in range(self.runs):
            for tool in ("stock", "ndump"):
                if not l1[tool].error:
                    log(f"incr level 1 {tool} run {i + 1}/{self.runs}")
                    one(tool, 1, l1[tool])
        for t in ("stock", "ndump"):
            self.keep(l0[t], l1[t])

    def section_compress(self) -> None:
        c = self.corpus
        variants = [("ndump", "-z", ["-0", "-z"]), ("stock", "-z", ["-0", "-z"]),
                    ("ndump", "-j", ["-0", "-j"]), ("stock", "-j", ["-0", "-j"]),
                    ("ndump", "--zstd", ["-0", "--zstd"])]
        res = {}
        for tool, name, flags in variants:
            res[(tool, name)] = Result("compress", f"dump level 0 {name}", tool, [], c.data_bytes)
        runs = self.args.compress_runs or self.runs
        for i in range(runs):
            for tool, name, flags in variants:
                r = res[(tool, name)]
                if r.error:
                    continue
                out = os.path.join(self.out, f"compress.{tool}")
                self.rm(out)
                log(f"compress {tool} {name} run {i + 1}/{runs}")
                if tool == "stock":
                    cmd = [STOCK_DUMP, *flags, "-q", "-f", out, self.dev]
                    o = self.runner.run(cmd, env=self.env)
                else:
                    o, cmd = self.run_ndump_dump(flags, out, self.mnt)
                r.cmd = cmd
                if self.record(r, o):
                    r.extra["output_bytes"] = os.path.getsize(out)
                self.rm(out)
        self.keep(*res.values())

    def section_startup(self) -> None:
        """Interpreter start and imports: what a tiny run costs (issue 16 goal 4)."""
        tiny = self.fresh_dir("startup-tree")
        with open(os.path.join(tiny, "a"), "w") as f:
            f.write("tiny\n")
        image = os.path.join(self.out, "startup.ndump")
        self.rm(image)
        o, _ = self.run_ndump_dump(["-0"], image, tiny)
        cases = [
            ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"], None),
            ("ndump --help", self.ndump("--help"), None),
            ("ndump restore -t (tiny image)", self.ndump("restore", "-t", "-f", image), None),
            ("ndump dump -0 (one file, to a file)", None, None),
        ]
        runs = max(5, self.runs)
        for op, cmd, _ in cases:
            r = Result("startup", op, "python" if op.startswith("python") else "ndump", cmd or [], 0)
            if op.startswith("ndump restore") and not o.ok:
                r.error = "no tiny image (its dump failed): " + error_summary(o)
            for _i in range(runs):
                if r.error:
                    break
                if cmd is None:
                    out = os.path.join(self.out, "startup-dump.ndump")
                    self.rm(out)
                    oo, r.cmd = self.run_ndump_dump(["-0"], out, tiny)
                else:
                    oo = self.runner.run(cmd, env=self.env, cwd=self.out)
                self.record(r, oo)
            self.keep(r)
        # import time of the tiny restore -t, as python -X importtime sees it
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "ndump", "restore", "-t",
                            "-f", image], env=self.env, capture_output=True, text=True,
                           cwd=self.out)
        total_us = ndump_us = 0
        modules = 0
        for ln in p.stderr.splitlines():
            parts = ln.split("|")
            if len(parts) != 3 or not ln.startswith("import time:"):
                continue
            try:
                cum = int(parts[1])
            except ValueError:
                continue
            name = parts[2]
            modules += 1
            if len(name) - len(name.lstrip()) == 1:      # top-level imports only
                total_us += cum
                if name.strip().startswith("ndump"):
                    ndump_us += cum
        self.startup = {"import_total_ms": total_us / 1000, "import_ndump_ms": ndump_us / 1000,
                        "modules": modules}
        self.rm(image)
        self.rm(tiny)

    def section_million(self) -> None:
        img = os.path.join(self.tmp, "million.img")
        mnt = os.path.join(self.tmp, "million")
        n_files = 1_000_000 // (10 if self.args.quick else 1)
        n_dirs = 1000 // (10 if self.args.quick else 1)
        dev = self.mounts.loop_fs(img, 3 * GiB if not self.args.quick else 512 * MiB, mnt,
                                  ["-N", str(n_files + n_files // 10 + 10000)])
        log(f"building {n_files} files in {n_dirs} directories on {dev}")
        rng = random.Random(self.args.seed + 2)
        tiny = rng.randbytes(4096)
        t0 = time.perf_counter()
        per_dir = n_files // n_dirs
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        k = 0
        for d in range(n_dirs):
            dname = os.path.join(mnt, f"d{d // 100:02d}", f"e{d % 100:02d}")
            os.makedirs(dname)
            dfd = os.open(dname, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for i in range(per_dir):
                    fd = os.open(f"f{i:04d}", flags, 0o644, dir_fd=dfd)
                    if k % 10 == 0:  # every tenth file holds 1..64 bytes
                        n = 1 + (k * 7919) % 64
                        os.write(fd, tiny[k % 4000:k % 4000 + n])
                    os.close(fd)
                    k += 1
            finally:
                os.close(dfd)
        os.sync()
        build_s = time.perf_counter() - t0
        log(f"built {k} files in {build_s:.1f} s")
        # Warm: stat everything once (contents are tiny and were just written).
        t0 = time.perf_counter()
        for dirpath, dirs, names in os.walk(mnt):
            for n in names:
                os.lstat(os.path.join(dirpath, n))
        subprocess.run(["dd", f"if={dev}", "of=/dev/null", "bs=1M", "status=none"], check=False)
        os.sync()
        log(f"warmed in {time.perf_counter() - t0:.1f} s")
        self.million = {"files": k, "directories": n_dirs, "build_s": build_s}

        out = os.path.join(self.out, "million.out")
        for tool in ("stock", "ndump"):
            r = Result("million", f"dump level 0, {k:,} files", tool, [], 0)
            self.rm(out)
            log(f"million: {tool} dump")
            if tool == "stock":
                cmd = [STOCK_DUMP, "-0", "-q", "-f", out, dev]
                o = self.runner.run(cmd, env=self.env)
            else:
                o, cmd = self.run_ndump_dump(["-0"], out, mnt)
            r.cmd = cmd
            after = []
            if self.record(r, o):
                r.extra["output_bytes"] = os.path.getsize(out)
                r.extra["files_per_s"] = k / o.wall
                after = [self.million_list(tool, out, k), self.million_restore(tool, out, k)]
            self.rm(out)
            self.results.append(r)
            self.results.extend(after)

    def section_scale(self) -> None:
        """Memory against tree size (issue 16 goal 6): for each --scale N, a tree of
        N empty files (metadata only) in directories of 1,000 on its own ext4, and
        a level-0 dump of it with the file history (a fresh catalog) to /dev/null:
        peak RSS, its growth per million files, and the time."""
        floor = None
        for n_files in self.args.scale_sizes:
            img = os.path.join(self.tmp, f"scale-{n_files}.img")
            mnt = os.path.join(self.tmp, f"scale-{n_files}")
            n_dirs = max(1, n_files // 1000)
            # ext4: 256-byte inodes, one per file and directory, plus the blocks of
            # the directories (~28 KiB per 1,000 names): 3 KiB a file is ample
            dev = self.mounts.loop_fs(img, max(GiB, n_files * 3 * KiB), mnt,
                                      ["-N", str(n_files + n_dirs + 10000)])
            log(f"scale: building {n_files:,} empty files in {n_dirs:,} directories on {dev}")
            t0 = time.perf_counter()
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            k = 0
            for d in range(n_dirs):
                dname = os.path.join(mnt, f"d{d // 1000:04d}", f"e{d % 1000:03d}")
                os.makedirs(dname)
                dfd = os.open(dname, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    for i in range(min(1000, n_files - k)):
                        os.close(os.open(f"f{i:03d}", flags, 0o644, dir_fd=dfd))
                        k += 1
                finally:
                    os.close(dfd)
            os.sync()
            build_s = time.perf_counter() - t0
            for dirpath, _dirs, names in os.walk(mnt):      # warm the inode cache
                for name in names:
                    os.lstat(os.path.join(dirpath, name))
            log(f"scale: built in {build_s:.0f} s; ndump dump")
            env = dict(self.env, NDUMP_STATE_DIR=self.fresh_dir(f"scale-state-{n_files}"))
            r = Result("scale", f"dump level 0, {k:,} empty files", "ndump", [], 0)
            # the image goes to the temp dir's disk (1 KiB a file: 10 GB for 10M)
            image = os.path.join(self.tmp, f"scale-{n_files}.ndump")
            r.cmd = self.ndump_dump_cmd(["-0"], image, mnt)
            o = self.runner.run(r.cmd, env=env)
            if self.record(r, o):
                r.extra.update(files=k, build_s=build_s, files_per_s=k / o.wall)
            self.rm(env["NDUMP_STATE_DIR"])
            self.results.append(r)
            row = {"files": k, "dump_s": r.best, "peak_rss_mib": r.peak_rss_mib}
            if not r.error:
                rr = self.scale_restore(image, k, n_dirs)
                row.update(restore_s=rr.best, restore_rss_mib=rr.peak_rss_mib,
                           restored_check=rr.extra.get("restored_check"))
            self.rm(image)
            self.scale.append(row)
            if floor is None:
                floor = self.tiny_dump_rss()
        for row in self.scale:
            row["floor_mib"] = floor

    def scale_restore(self, image: str, k: int, n_dirs: int) -> Result:
        """restore -r of a scale dump into a fresh ext4 with inodes enough: time,
        peak RSS, and a count of the files restored."""
        r = Result("scale", f"restore -r, {k:,} empty files", "ndump", [], 0)
        mnt = os.path.join(self.tmp, f"scale-restore-{k}")
        self.mounts.loop_fs(mnt + ".img", max(GiB, k * 3 * KiB), mnt,
                            ["-N", str(k + n_dirs + 10000)])
        log(f"scale: ndump restore -r of {k:,} files")
        r.cmd = self.ndump("restore", "-r", "-f", image)
        o = self.runner.run(r.cmd, env=self.env, cwd=mnt)
        if self.record(r, o):
            r.extra["files_per_s"] = k / o.wall
            st = os.statvfs(mnt)
            # inodes in use: the files, their directories, the two levels above them,
            # lost+found, the root, restoresymtable and ext4's reserved ones (11)
            used = st.f_files - st.f_ffree
            r.extra["inodes_used"] = used
            want = k + n_dirs + (n_dirs + 999) // 1000
            r.extra["restored_check"] = ("ok" if used >= want
                                         else f"{used:,} inodes in use, fewer than {want:,}")
        self.results.append(r)
        return r

    def tiny_dump_rss(self) -> float | None:
        """Peak RSS of a level-0 dump of one file: the interpreter and ndump's modules."""
        tiny = self.fresh_dir("scale-tiny")
        with open(os.path.join(tiny, "a"), "w") as f:
            f.write("tiny\n")
        o = self.runner.run(self.ndump_dump_cmd(["-0"], "/dev/null", tiny), env=self.env)
        self.rm(tiny)
        return o.maxrss_kib / KiB if o.ok else None

    def million_list(self, tool: str, archive: str, k: int) -> Result:
        """restore -t of the million-file dump (its own archive): time and peak RSS."""
        r = Result("million", f"restore -t, {k:,} entries", tool, [], 0)
        log(f"million: {tool} restore -t")
        r.cmd = ([STOCK_RESTORE, "-t", "-f", archive] if tool == "stock"
                 else self.ndump("restore", "-t", "-f", archive))
        o = self.runner.run(r.cmd, env=self.env, cwd=self.out)
        if self.record(r, o):
            r.extra["files_per_s"] = k / o.wall
        return r

    def million_restore(self, tool: str, archive: str, k: int) -> Result:
        """restore -r of the million-file dump (its own archive) into an empty
        directory on the tmpfs: time and peak RSS (issue 16 goal 3)."""
        r = Result("million", f"restore -r, {k:,} files", tool, [], 0)
        log(f"million: {tool} restore -r")
        r.cmd = self.restore_cmd(tool, archive)
        d = self.fresh_dir(f"million-restore-{tool}")
        o = self.runner.run(r.cmd, env=self.env, cwd=d)
        if self.record(r, o):
            r.extra["files_per_s"] = k / o.wall
            first = os.path.join(d, "d00", "e00")
            n = len(os.listdir(first)) if os.path.isdir(first) else 0
            want = k // self.million["directories"]
            r.extra["restored_check"] = "ok" if n == want else f"d00/e00 holds {n} of {want} files"
        self.rm(d)  # not timed
        return r

    def section_catalog(self) -> None:
        """File history: a level-0 dump with and without the catalog (interleaved runs),
        database bytes per name, and catalog find over CATALOG_ROWS rows."""
        out = os.path.join(self.out, "catalog.ndump")
        db = os.path.join(self.tmp, "catalog-bench.db")
        variants = (("no catalog", ["-0", "--no-catalog"]), ("catalog", ["-0", "-v", "-A", db]))
        res = {k: Result("catalog", f"dump level 0, {k}", "ndump", [], self.corpus.data_bytes)
               for k, _ in variants}
        # the catalog exists, as on any machine after its first dump; it grows by one
        # dump a run
        for p in (db, db + "-wal", db + "-shm"):
            self.rm(p)
        sys.path.insert(0, str(REPO))
        from ndump.catalog import Catalog
        Catalog(db).close()
        for i in range(max(self.runs, 3)):
            for k, flags in variants:
                self.rm(out)
                log(f"catalog: dump {k} run {i + 1}")
                o, cmd = self.run_ndump_dump(flags, out, self.mnt)
                res[k].cmd = cmd
                if self.record(res[k], o) and k == "catalog":
                    # the dump's own account of its catalog work (-v), robust to noise
                    m = re.search(r"file history: \d+ names recorded in .* in ([0-9.]+) s", o.stderr)
                    if m:
                        res[k].extra.setdefault("catalog_s", []).append(float(m.group(1)))
                        res[k].extra.setdefault("catalog_share", []).append(float(m.group(1)) / o.wall)
        r = res["catalog"]
        if not r.error:
            import sqlite3
            con = sqlite3.connect(db)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            names = con.execute("SELECT count(*) FROM files").fetchone()[0]
            con.close()
            size = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
            r.extra.update(catalog_bytes=size, names=names, bytes_per_name=size / max(names, 1))
            for p in (db, db + "-wal", db + "-shm"):
                self.rm(p)
        self.rm(out)
        self.keep(*res.values())
        self.keep(*self.catalog_find())

    def catalog_find(self) -> list[Result]:
        """catalog find (the CLI, start-up included) over a catalog of CATALOG_ROWS rows
        in 10 dumps of a tree of plausible names."""
        db = os.path.join(self.tmp, "catalog-million.db")
        from ndump.catalog import Catalog, FileRow, NewDump
        t0 = time.perf_counter()
        per = CATALOG_ROWS // 10
        with Catalog(db) as cat:
            for d in range(10):
                did = cat.begin_dump(NewDump(tree="/home", level=d % 3, date=1_700_000_000 + d * 86400,
                                             base_date=0, medium=f"/backup/home.{d}"))
                cat.add_files(did, (FileRow(f"user{i % 97}/project{i % 13}/src/file{i}.c", i + 3,
                                            0o100000, i % 65536, 1_700_000_000, 1_700_000_000, 1,
                                            i * 1024) for i in range(per)))
                cat.finish_dump(did, status="done", volumes=1)
        log(f"catalog: {CATALOG_ROWS:,} rows written in {time.perf_counter() - t0:.1f} s")
        out = []
        for label, pattern in (("bare name", "file77777.c"), ("absolute glob", "/home/user7/project3/src/file1234*"),
                               ("relative glob", "user5/*/src/file99999.c")):
            cmd = self.ndump("catalog", "find", "-A", db, "--json", pattern)
            r = Result("catalog", f"find over {CATALOG_ROWS:,} rows ({label})", "ndump", cmd, 0)
            for _ in range(self.runs):
                self.record(r, self.runner.run(cmd, env=self.env))
            out.append(r)
        r = out[0]
        r.extra["catalog_bytes"] = os.path.getsize(db)
        self.rm(db)
        return out

    # ---- orchestration --------------------------------------------------

    def run(self, only: set[str]) -> None:
        # the catalog section needs a corpus, but only the first one (issue 15's target)
        kinds = (self.args.corpora if only & {"dump", "restore", "incr", "compress"}
                 else self.args.corpora[:1] if "catalog" in only else ())
        for kind in kinds:
            self.setup_corpus(kind)
            if only & {"dump", "restore"}:
                self.section_dump(timed="dump" in only)
            if "restore" in only:
                self.section_restore()
            if not self.args.keep:
                for a in self.archives().values():
                    self.rm(a)
            if "incr" in only:
                self.section_incr()
            if "compress" in only:
                self.section_compress()
            if "catalog" in only and kind == self.args.corpora[0]:   # issue 15: one corpus
                self.section_catalog()
        self.cname = ""
        if "startup" in only:
            self.section_startup()
        if "million" in only:
            self.section_million()
        if "scale" in only:
            self.section_scale()


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def find(results: list[Result], section: str, tool: str, op_prefix: str = "") -> Result | None:
    for r in results:
        if r.section == section and r.tool == tool and r.op.startswith(op_prefix):
            return r
    return None


def report(b: Bench, only: set[str]) -> str:
    global _rss_floor_kib
    _rss_floor_kib = b.rss_floor_kib
    a = b.args
    L: list[str] = []
    L.append(f"# ndump benchmark{' (--quick corpora)' if a.quick else ''}")
    L.append("")
    L.append(f"- host: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}, "
             f"Python {platform.python_version()}")
    L.append(f"- load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
             f"(other work on the machine inflates times; compare the ratios of one run)")
    L.append(f"- runs per measurement: {b.runs} (best and median wall time; ratios are of the "
             f"best times; peak RSS is the largest ru_maxrss of the measured child over its runs)")
    L.append(f"- peak RSS = ru_maxrss of the command itself (os.wait4 in a small helper); "
             f"measurement floor {b.rss_floor_kib / KiB:.1f} MiB (what /bin/true shows)")
    L.append("- MB/s = MB (10^6 bytes) of file data (holes excluded) per second of wall time")
    L.append("")
    targets: list[tuple[str, float | None, bool]] = []
    for kind, c in b.corpora.items():
        res = [r for r in b.results if r.corpus == kind]
        L += corpus_tables(kind, c, res, a.quick)
        targets += corpus_targets(kind, res, only)

    cat = [r for r in b.results if r.section == "catalog"]
    if cat:
        L.append("## File-history catalog")
        L.append("")
        L.append("| operation | best s | median s | peak RSS MiB | notes |")
        L.append("|---|---:|---:|---:|---|")
        for r in cat:
            if r.error:
                L.append(f"| {r.op} | failed: {md_escape(r.error)} | | | |")
                continue
            note = ""
            if "bytes_per_name" in r.extra:
                note = (f"{r.extra['names']:,} names, {r.extra['catalog_bytes']:,} bytes of"
                        f" database, {r.extra['bytes_per_name']:.0f} bytes/name")
            if r.extra.get("catalog_share"):
                note += (f"; catalog work {statistics.median(r.extra['catalog_s']):.3f} s ="
                         f" {100 * statistics.median(r.extra['catalog_share']):.1f} % of the dump"
                         " (median, the dump's -v account)")
            L.append(f"| {r.op} | {fmt(r.best, '.3f')} | {fmt(r.median, '.3f')} | {rss_cell(r)} | {note} |")
        L.append("")

    if cat:
        without = find(b.results, "catalog", "ndump", "dump level 0, no catalog")
        with_ = find(b.results, "catalog", "ndump", "dump level 0, catalog")
        q = ratio(with_, without)
        cost = 100 * (q - 1) if q is not None else None
        share = with_.extra.get("catalog_share") if with_ else None
        share = 100 * statistics.median(share) if share else None
        targets.append((f"catalog cost: level-0 dump time with / without catalog - 1, %"
                        f" (best of each) < {100 * CATALOG_COST_TARGET:.0f}", cost,
                        cost is not None and cost < 100 * CATALOG_COST_TARGET))
        targets.append(("  (the dump's own -v account of its catalog work, % of its time,"
                        " median; for reference)", share, True))
        per = with_.extra.get("bytes_per_name") if with_ else None
        targets.append((f"catalog database bytes per name < {CATALOG_BYTES_TARGET}", per,
                        per is not None and per < CATALOG_BYTES_TARGET))
        slowest = max((r.best for r in b.results if r.section == "catalog" and r.op.startswith("find")
                       and r.best is not None), default=None)
        targets.append((f"catalog find over {CATALOG_ROWS:,} rows < {CATALOG_FIND_TARGET_S} s"
                        " (slowest pattern, start-up included)", slowest,
                        slowest is not None and slowest < CATALOG_FIND_TARGET_S))
    st = [r for r in b.results if r.section == "startup"]
    if st:
        L.append("## Start-up (tiny runs: interpreter start and imports)")
        L.append("")
        L.append("| operation | best s | median s | minus interpreter floor s |")
        L.append("|---|---:|---:|---:|")
        floor = find(b.results, "startup", "python")
        for r in st:
            if r.error:
                L.append(f"| {r.op} | failed: {md_escape(r.error)} | | |")
                continue
            extra = (r.best - floor.best) if floor and floor.best and r.tool == "ndump" else None
            L.append(f"| {r.op} | {fmt(r.best, '.3f')} | {fmt(r.median, '.3f')} | {fmt(extra, '.3f')} |")
        if b.startup:
            L.append("")
            L.append(f"`python -X importtime -m ndump restore -t` (tiny image): "
                     f"{b.startup['modules']} modules, top-level imports "
                     f"{b.startup['import_total_ms']:.1f} ms of which ndump's "
                     f"{b.startup['import_ndump_ms']:.1f} ms.")
        L.append("")
        r = find(b.results, "startup", "ndump", "ndump restore -t")
        if r and floor and r.best is not None and floor.best is not None:
            extra = r.best - floor.best
            targets.append(("start-up of a tiny restore -t beyond the interpreter < 0.1 s", extra,
                            extra < 0.1))

    mil = [r for r in b.results if r.section == "million"]
    if mil:
        m = b.million
        L.append(f"## {m['files']:,} tiny files in {m['directories']} directories "
                 f"(built in {m['build_s']:.1f} s)")
        L.append("")
        L.append("| operation | tool | best s | files/s | peak RSS MiB | output MB | ndump/stock |")
        L.append("|---|---|---:|---:|---:|---:|---:|")
        for r in mil:
            stock = find(b.results, "million", "stock", r.op.split(",")[0]) if r.tool == "ndump" else None
            if r.error:
                L.append(f"| {r.op} | {r.tool} | failed: {md_escape(r.error)} | | | | |")
                continue
            ob = r.extra.get("output_bytes")
            L.append(f"| {r.op} | {r.tool} | {fmt(r.best)} | {fmt(r.extra.get('files_per_s'), ',.0f')} "
                     f"| {rss_cell(r)} | {fmt(ob / MB if ob else None, '.1f')} "
                     f"| {fmt(ratio(r, stock)) if r.tool == 'ndump' else ''} |")
        L.append("")
        r = find(b.results, "million", "ndump")
        rss = r.peak_rss_mib if r else None
        n = b.million.get("files", 0)
        targets.append((f"ndump dump of {n:,} files: peak RSS < {MILLION_RSS_TARGET_MIB} MiB", rss,
                        rss is not None and rss < MILLION_RSS_TARGET_MIB))
        r = find(b.results, "million", "ndump", "restore -t")
        rss = r.peak_rss_mib if r else None
        targets.append((f"ndump restore -t of {n:,} entries: peak RSS < {LIST_RSS_TARGET_MIB} MiB",
                        rss, rss is not None and rss < LIST_RSS_TARGET_MIB))
        nd = find(b.results, "million", "ndump", "dump")
        st = find(b.results, "million", "stock", "dump")
        q = ratio(nd, st)
        targets.append((f"ndump dump of {n:,} files: ndump/stock <= {MILLION_STOCK_TARGET}", q,
                        q is not None and q <= MILLION_STOCK_TARGET))
        r = find(b.results, "million", "ndump", "restore -r")
        q = ratio(r, find(b.results, "million", "stock", "restore -r"))
        targets.append((f"ndump restore -r of {n:,} files <= stock restore -r (ratio <= 1.0)",
                        q, q is not None and q <= 1.0))
        rss = r.peak_rss_mib if r else None
        targets.append((f"ndump restore -r of {n:,} files: peak RSS < {MILLION_RESTORE_RSS_TARGET_MIB} MiB",
                        rss, rss is not None and rss < MILLION_RESTORE_RSS_TARGET_MIB))

    if b.scale:
        L.append("## Scale: peak RSS of a level-0 dump (file history on) and its restore -r against tree size")
        L.append("")
        floor = b.scale[0].get("floor_mib")
        L.append(f"Empty files, 1,000 to a directory, dumped to an image file, then restored "
                 f"with restore -r into a fresh ext4. A one-file dump peaks at {fmt(floor, '.1f')} "
                 f"MiB (interpreter and modules); per million files is (peak - that) / millions, "
                 f"and the slope is between two sizes.")
        L.append("")
        L.append("| files | dump s | files/s | peak RSS MiB | MiB per million files | slope MiB per million "
                 "| restore -r s | restore peak RSS MiB | restore MiB per million | restored |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        prev = None
        for row in b.scale:
            n, rss = row["files"], row["peak_rss_mib"]
            per = (rss - floor) / (n / 1e6) if rss is not None and floor is not None else None
            slope = ((rss - prev["peak_rss_mib"]) / ((n - prev["files"]) / 1e6)
                     if prev and rss is not None and prev["peak_rss_mib"] is not None
                     and n != prev["files"] else None)
            dump_s = row["dump_s"]
            rrss = row.get("restore_rss_mib")
            rper = (rrss - floor) / (n / 1e6) if rrss is not None and floor is not None else None
            L.append(f"| {n:,} | {fmt(dump_s)} | {fmt(n / dump_s if dump_s else None, ',.0f')} "
                     f"| {fmt(rss, '.1f')} | {fmt(per, '.0f')} | {fmt(slope, '.0f')} "
                     f"| {fmt(row.get('restore_s'))} | {fmt(rrss, '.1f')} | {fmt(rper, '.0f')} "
                     f"| {row.get('restored_check') or '–'} |")
            prev = row
        L.append("")

    if targets:
        L.append("## Targets")
        L.append("")
        L.append("| target | measured | result |")
        L.append("|---|---:|---|")
        for name, val, ok in targets:
            L.append(f"| {name} | {fmt(val)} | {'PASS' if ok else ('FAIL' if val is not None else 'n/a (failed)')} |")
        L.append("")
    return "\n".join(L)


def corpus_tables(kind: str, c: Corpus, res: list[Result], quick: bool) -> list[str]:
    """The tables of one corpus: level 0 and restore, incremental, compressed."""
    L: list[str] = []
    L.append(f"## {CORPUS_TITLES[kind]}")
    L.append("")
    L.append(f"{len(c.files):,} files, {len(c.big)} big files, 1 sparse file "
             f"({c.sparse_size / MiB:.0f} MiB, {c.sparse_data / MiB:.1f} MiB data) in "
             f"{c.n_dirs} directories; {c.data_bytes / MB:.1f} MB of data "
             f"({c.data_bytes / MiB:.1f} MiB), apparent {c.apparent_bytes / MB:.1f} MB; "
             f"built in {c.build_s:.1f} s.")
    L.append("")
    main = [r for r in res if r.section in ("dump", "restore")]
    if main:
        L.append(f"### Level-0 dump and full restore ({kind})")
        L.append("")
        L.append("| operation | tool | best s | median s | MB/s | peak RSS MiB | output MB "
                 "| ndump/stock | ndump/tar |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for sec in ("dump", "restore"):
            stock, tar = find(res, sec, "stock"), find(res, sec, "tar")
            for r in (x for x in main if x.section == sec):
                L.append(row(r, stock if r.tool == "ndump" else None,
                             tar if r.tool == "ndump" else None))
        L.append("")
        if not quick and kind == "classic":
            L.append("Reference (measured earlier on this kind of machine, classic corpus): "
                     + ", ".join(f"{'stock dump' if k == ('dump', 'stock') else 'tar -cS' if k == ('dump', 'tar') else 'stock restore -r' if k == ('restore', 'stock') else 'tar -x'} {v} s"
                                 for k, v in REFERENCE.items()))
            L.append("")

    inc = [r for r in res if r.section == "incr"]
    if inc:
        L.append(f"### Incremental ({kind}: level 1 after appending a byte to 1 % of the files)")
        L.append("")
        L.append("| operation | tool | best s | median s | MB/s | peak RSS MiB | output MB "
                 "| ndump/stock | level 1 / level 0 |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in inc:
            other = find(res, "incr", "stock", r.op.split(" (")[0]) if r.tool == "ndump" else None
            l0 = find(res, "incr", r.tool, "dump level 0")
            rel = ratio(r, l0) if r.op.startswith("dump level 1") else None
            L.append(row(r, other, None, last=fmt(rel)))
        L.append("")
        L.append("MB/s for level 1 is computed over the touched files' bytes.")
        L.append("")

    comp = [r for r in res if r.section == "compress"]
    if comp:
        L.append(f"### Compressed level-0 dumps ({kind}; tool defaults: stock dump uses level 2)")
        L.append("")
        L.append("| operation | tool | best s | median s | MB/s in | peak RSS MiB | output MB "
                 "| ndump/stock | in/out |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in comp:
            other = find(res, "compress", "stock", r.op) if r.tool == "ndump" else None
            ob = r.extra.get("output_bytes")
            cr = r.nbytes / ob if ob and not r.error else None
            L.append(row(r, other, None, last=fmt(cr)))
        L.append("")
    return L


def corpus_targets(kind: str, res: list[Result], only: set[str]) -> list[tuple[str, float | None, bool]]:
    """The issue-16 goals that one corpus's results measure."""
    out: list[tuple[str, float | None, bool]] = []

    def goal(name: str, q: float | None, limit: float) -> None:
        out.append((f"{kind}: {name} (ratio <= {limit})", q, q is not None and q <= limit))

    if "dump" in only:
        goal("ndump dump <= stock dump", ratio(find(res, "dump", "ndump"), find(res, "dump", "stock")), 1.0)
        goal("ndump dump <= 1.5 x tar -cS", ratio(find(res, "dump", "ndump"), find(res, "dump", "tar")), 1.5)
    if "restore" in only:
        goal("ndump restore -r <= stock restore -r",
             ratio(find(res, "restore", "ndump"), find(res, "restore", "stock")), 1.0)
        goal("ndump restore -r <= 1.5 x tar -x",
             ratio(find(res, "restore", "ndump"), find(res, "restore", "tar")), 1.5)
    if "incr" in only:
        goal("ndump level 1 (1 % touched) <= 0.10 x its level 0",
             ratio(find(res, "incr", "ndump", "dump level 1"), find(res, "incr", "ndump", "dump level 0")),
             0.10)
    if "compress" in only:
        for name in ("-z", "-j"):
            op = f"dump level 0 {name}"
            goal(f"ndump dump {name} <= 0.6 x stock dump {name}",
                 ratio(find(res, "compress", "ndump", op), find(res, "compress", "stock", op)), 0.6)
    return out


def row(r: Result, stock: Result | None, tar: Result | None, last: str | None = None) -> str:
    head = f"| {r.op} | {r.tool} |"
    ncols_after = 7
    if r.error:
        return head + f" failed: {md_escape(r.error)} |" + " |" * (ncols_after - 1)
    ob = r.extra.get("output_bytes")
    cells = [fmt(r.best, ".3f"), fmt(r.median, ".3f"), fmt(r.mbps, ".1f"),
             rss_cell(r), fmt(ob / MB if ob else None, ".1f"),
             fmt(ratio(r, stock)) if r.tool == "ndump" else "",
             last if last is not None else (fmt(ratio(r, tar)) if r.tool == "ndump" else "")]
    return head + "".join(f" {c} |" for c in cells)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10x smaller corpus (fast check)")
    p.add_argument("--million", action="store_true",
                   help="also dump a tree of 1,000,000 tiny files")
    p.add_argument("--only", default="dump,restore,incr,compress,catalog,startup",
                   help="comma list of sections: dump,restore,incr,compress,catalog,startup,million "
                        "(default: all but million)")
    p.add_argument("--scale", metavar="N[,N...]", default=None,
                   help="also dump trees of N empty files each (e.g. 1000000,2000000) and "
                        "report peak RSS per million files (issue 16 goal 6)")
    p.add_argument("--corpus", default=",".join(CORPORA),
                   help="comma list of corpora for the dump, restore, incr and compress "
                        "sections: classic,heavy (default: both)")
    p.add_argument("--json", metavar="OUT", help="write all raw numbers to this JSON file")
    p.add_argument("--keep", action="store_true",
                   help="leave the temp dir, mounts and level-0 archives in place")
    p.add_argument("--runs", type=int, default=3, help="runs per measurement (default 3)")
    p.add_argument("--compress-runs", type=int, default=None,
                   help="runs per compressed dump (default: --runs; 1 with --quick)")
    p.add_argument("--seed", type=int, default=20240601, help="corpus seed")
    p.add_argument("--workdir", default=None,
                   help="where to create the temp dir holding the images (default: $TMPDIR or /tmp)")
    p.add_argument("--tmpfs-size", default=None,
                   help="size of the tmpfs for archives and restores (default 3G, --quick 1G, +2G with --million)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a command is killed")
    a = p.parse_args(argv)
    only = {s.strip() for s in a.only.split(",") if s.strip()}
    bad = only - set(SECTIONS)
    if bad:
        p.error(f"unknown section(s) for --only: {', '.join(sorted(bad))}")
    if a.million:
        only.add("million")
    try:
        a.scale_sizes = sorted({int(x) for x in (a.scale or "").split(",") if x.strip()})
    except ValueError:
        p.error(f"--scale wants file counts such as 1000000,2000000, not {a.scale!r}")
    if a.scale_sizes:
        if min(a.scale_sizes) < 1:
            p.error("--scale sizes must be at least 1")
        only.add("scale")
    elif "scale" in only:
        a.scale_sizes = [100_000, 200_000] if a.quick else [1_000_000, 2_000_000]
    a.sections = only
    a.corpora = [c.strip() for c in a.corpus.split(",") if c.strip()]
    bad = set(a.corpora) - set(CORPORA)
    if bad or not a.corpora:
        p.error(f"unknown corpus for --corpus: {', '.join(sorted(bad)) or '(none)'}")
    if a.runs < 1:
        p.error("--runs must be >= 1")
    if a.compress_runs is None and a.quick:
        a.compress_runs = 1
    if a.tmpfs_size is None:
        gib = 1 if a.quick else 3
        if "million" in only and not a.quick:
            gib += 2
        a.tmpfs_size = f"{gib}G"
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.py must run as root (loop devices, mounts, stock dump)", file=sys.stderr)
        return 1
    for tool in (STOCK_DUMP, STOCK_RESTORE, TAR):
        if not os.access(tool, os.X_OK):
            print(f"missing {tool}", file=sys.stderr)
            return 1

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    t_start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="ndump-bench-", dir=args.workdir)
    mounts = Mounts()
    bench: Bench | None = None
    rc = 0
    try:
        mounts.tmpfs(os.path.join(tmp, "out"), args.tmpfs_size)
        bench = Bench(args, tmp, mounts)
        bench.run(args.sections)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        rc = 130
    except Exception:
        traceback.print_exc()
        log("benchmark error; cleaning up")
        rc = 1
    finally:
        if bench is not None:
            bench.runner.kill_current()
        if args.keep and rc == 0:
            log(f"--keep: left {tmp} in place. To clean up:")
            cmds = [f"umount {m}" for m in reversed(mounts.mounted)]
            cmds += [f"losetup -d {d}" for d in reversed(mounts.loops)]
            cmds.append(f"rm -rf {tmp}")
            print("\n".join(cmds), file=sys.stderr)
        else:
            # Ignore further Ctrl-C while undoing mounts.
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                for prob in mounts.cleanup():
                    log(f"cleanup problem: {prob}")
                    rc = rc or 1
                if not mounts.mounted:
                    shutil.rmtree(tmp, ignore_errors=True)
            finally:
                signal.signal(signal.SIGINT, old)

    if bench is not None and bench.results:
        text = report(bench, args.sections)
        print(text)
        print(f"\n(total benchmark time {time.perf_counter() - t_start:.0f} s)")
        if args.json:
            doc = {
                "quick": args.quick, "runs": args.runs, "sections": sorted(args.sections),
                "host": {"node": platform.node(), "cpus": os.cpu_count(),
                         "kernel": platform.release(), "python": platform.python_version()},
                "corpora": {k: c.as_json() for k, c in bench.corpora.items()},
                "startup": bench.startup or None,
                "million": bench.million or None,
                "scale": bench.scale or None,
                "rss_floor_kib": bench.rss_floor_kib,
                "reference_full_corpus_s": {f"{k[0]}/{k[1]}": v for k, v in REFERENCE.items()},
                "results": [r.as_json() for r in bench.results],
                "interrupted": rc == 130,
                "exit_status": rc,
            }
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=2)
            log(f"wrote {args.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
