"""Fuzzing the reader and the restore engine with hypothesis.

Real small images (crafted ones with every kind of file, and stock dump golden
images) are mutated (bytes overwritten, blocks dropped, duplicated or swapped,
the image cut short), and random streams are tried too, some behind a valid
volume header.  Each input is listed (-t) and restored (-r, and -x of a path)
into a fresh target, in this process and through the CLI's main():

* nothing but the documented errors may come out (ndump.errors.NdumpError and
  its subclasses, which the CLI turns into one-line messages); the CLI must
  never print a traceback or an "internal error";
* nothing outside the target may be created or changed.

In CI the test runs for a short budget (about 25 s in all).  For a long run,
set NDUMP_FUZZ_SECONDS: each of the four strategies (mutated images and random
streams, through the engine and through the CLI) then runs for that many
seconds, in batches of 500 examples (NDUMP_FUZZ_SECONDS=600: ten minutes each):

    NDUMP_FUZZ_SECONDS=600 python -m pytest tests/restore/test_fuzz.py -q

NDUMP_FUZZ_SEED fixes the random seed of a run (to replay one).
"""
from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from craft import Craft
from test_hostile import snapshot
from ndump.errors import NdumpError
from ndump.format import ACL_ACCESS, TP_BSIZE
from ndump.report import Reporter
from ndump.restore import RestoreOptions, run_restore
from ndump.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "data"
# the environment is read here because the budget is the test's own knob
LONG_SECONDS = float(os.environ.get("NDUMP_FUZZ_SECONDS", "0") or 0)
CI_EXAMPLES = 1000               # per strategy: the four take about 30 s in all


def _crafted() -> bytes:
    img = Craft()
    img.dir(2, {"a": 3, "d": 4, "l": 6, "h1": 7, "h2": 7, "s": 8, "x": 9})
    img.dir(4, {"f": 5}, parent=2)
    img.file(3, b"hello\n" * 300, mode=0o4755)
    img.file(5, bytes(range(256)) * 8, xattrs=[("user.k", b"v"),
                                               (ACL_ACCESS, b"\x02\0\0\0\x01\0\x06\0\0\0\0\0"
                                                b"\x04\0\x04\0\0\0\0\0\x20\0\x04\0\0\0\0\0")])
    img.symlink(6, "../outside")
    img.file(7, b"linked\n", nlink=2)
    img.sparse(8, 300 * 1024, {0: b"s" * 1024, 200 * 1024: b"t" * 1024})
    img.node(9, 0o010000)
    return img.build()


SEEDS = [_crafted()] + [(DATA / n).read_bytes() for n in ("l0-zlib.dump", "l1-after-rename.dump")
                        if (DATA / n).exists()]


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["byte", "word", "cut", "drop", "dup", "swap", "zero"]))
        nblocks = max(1, len(data) // TP_BSIZE)
        if kind == "byte":
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "word":      # header fields are 32-bit: make them huge, negative, zero
            at = draw(st.integers(0, max(0, len(data) - 4))) & ~3
            data[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\x7f", b"\0\0\0\x80",
                                                    b"\0\0\0\0", b"\xff\xff\xff\xff",
                                                    b"\x00\x02\x00\x00"]))
        elif kind == "cut":
            del data[draw(st.integers(0, len(data))):]
        else:
            b = draw(st.integers(0, nblocks - 1)) * TP_BSIZE
            block = bytes(data[b:b + TP_BSIZE])
            if kind == "drop":
                del data[b:b + TP_BSIZE]
            elif kind == "dup":
                data[b:b] = block
            elif kind == "zero":
                data[b:b + TP_BSIZE] = bytes(len(block))
            else:
                c = draw(st.integers(0, nblocks - 1)) * TP_BSIZE
                data[b:b + TP_BSIZE], data[c:c + TP_BSIZE] = data[c:c + TP_BSIZE], block
        if not data:
            break
    return bytes(data)


@st.composite
def random_stream(draw):
    body = draw(st.binary(max_size=8 * TP_BSIZE))
    head = draw(st.sampled_from([b"", SEEDS[0][:TP_BSIZE], SEEDS[0][:3 * TP_BSIZE]]))
    return head + body


class _Place:
    """A fresh directory per example: image, target and an 'outside' sibling."""

    def __init__(self, base: Path):
        self.root = base / f"ex{random.getrandbits(48):012x}"
        self.outside = self.root / "outside"
        (self.outside / "dir").mkdir(parents=True)
        (self.outside / "victim").write_text("precious\n")
        self.image = self.root / "img.dump"
        self.before = snapshot(self.outside)

    def target(self, name: str) -> Path:
        t = self.root / name
        t.mkdir()
        return t

    def check_and_remove(self) -> None:
        assert snapshot(self.outside) == self.before, "something outside the target changed"
        extra = set(os.listdir(self.root)) - {"outside", "img.dump", "t", "r", "x", "cli"}
        assert not extra, f"created beside the target: {extra}"
        for dirpath, dirnames, _ in os.walk(self.root):
            for d in dirnames:
                p = os.path.join(dirpath, d)
                if not os.path.islink(p):
                    os.chmod(p, 0o700)
        shutil.rmtree(self.root)


def _engine(place: _Place, data: bytes) -> None:
    place.image.write_bytes(data)
    for mode, paths, extra in (("t", (), {}), ("r", (), {"force": True}), ("x", ("d",), {})):
        opts = RestoreOptions(mode=mode, file=str(place.image), paths=paths,
                              target=place.target(mode), **extra)
        err = io.StringIO()
        try:
            run_restore(opts, Settings(progress_interval=0), Reporter("RESTORE", stream=err),
                        out=io.StringIO())
        except NdumpError:
            pass


def _cli(place: _Place, data: bytes) -> None:
    from ndump.cli import main
    place.image.write_bytes(data)
    target = place.target("cli")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        for argv in (["restore", "-t", "-f", str(place.image)],
                     ["restore", "-r", "--force", "-f", str(place.image), "--target", str(target)]):
            status = main(argv)
            assert status in (0, 1, 2, 3)
    text = err.getvalue()
    assert "Traceback" not in text and "internal error" not in text, text


def _examples() -> int:
    return 500 if LONG_SECONDS else CI_EXAMPLES       # a long run repeats batches of 500


def _run(strategy, body, base: Path) -> None:
    fuzz_seed = int(os.environ.get("NDUMP_FUZZ_SEED", "0") or 0) or random.getrandbits(32)

    @seed(fuzz_seed)
    @settings(max_examples=_examples(), deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(data):
        place = _Place(base)
        try:
            body(place, data)
        finally:
            place.check_and_remove()

    end = time.monotonic() + LONG_SECONDS
    one()
    while time.monotonic() < end:
        one()


@pytest.fixture
def fuzz_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)           # a restore that ignored --target would land here
    yield tmp_path
    left = [n for n in os.listdir(tmp_path) if not n.startswith("ndump-")]   # state, run dirs
    assert left == [], "a restore wrote beside its places"


@pytest.mark.slow
@pytest.mark.timeout(int(LONG_SECONDS * 1.2) + 300)
@pytest.mark.parametrize("strategy, body", [(mutated(), _engine), (random_stream(), _engine),
                                            (mutated(), _cli), (random_stream(), _cli)],
                         ids=["mutated-engine", "random-engine", "mutated-cli", "random-cli"])
def test_fuzz_restore(strategy, body, fuzz_base):
    _run(strategy, body, fuzz_base)


def test_seeds_restore_cleanly(tmp_path):
    """The unmutated seeds are good images (else the fuzzing proves little)."""
    for data in SEEDS:
        place = _Place(tmp_path)
        place.image.write_bytes(data)
        err = io.StringIO()
        outcome = run_restore(RestoreOptions(mode="x", file=str(place.image),   # -x: also a level 1
                                             target=place.target("x")),
                              Settings(progress_interval=0), Reporter("RESTORE", stream=err))
        assert outcome.exit_status == 0, err.getvalue()
        place.check_and_remove()
