"""Shared test setup: environment isolation, capability markers, tree/image/CLI fixtures.

Markers (declared in pyproject.toml) skip a test, saying why, when the machine lacks
what it needs: ``root`` (euid 0), ``compat`` (stock /usr/sbin/dump and restore),
``btrfs`` (mkfs.btrfs and root), ``lvm`` (/dev/mapper/control and lvcreate), ``slow``
(never skipped). Under ``CI=true`` a skip is a failure, except for ``lvm`` tests on a
machine without device-mapper (the skip is then reported as allowed).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
DATA_DIR = TESTS_DIR / "data"
if str(TESTS_DIR) not in sys.path:            # `from trees import ...` in any import mode
    sys.path.insert(0, str(TESTS_DIR))

from stock import have_stock_tools, loop_mount, make_ext4_image  # noqa: E402
from trees import build_full_tree, build_tree  # noqa: E402

STRICT_SKIPS = os.environ.get("CI", "").lower() == "true"


# --- capabilities -----------------------------------------------------------------------

def _device_mapper() -> bool:
    """lvm2 creates /dev/mapper/control even where the kernel has no device-mapper:
    only opening it tells."""
    try:
        os.close(os.open("/dev/mapper/control", os.O_RDWR))
    except OSError:
        return False
    return True


def _capabilities() -> dict[str, str | None]:
    """marker → None when available, else the reason it is not."""
    root = os.geteuid() == 0
    caps: dict[str, str | None] = {
        "root": None if root else f"needs root (euid is {os.geteuid()})",
        "compat": None if have_stock_tools() else
        "needs stock dump/restore 0.4b47 at /usr/sbin/dump and /usr/sbin/restore (apt-get install dump)",
    }
    if not shutil.which("mkfs.btrfs"):
        caps["btrfs"] = "needs mkfs.btrfs (apt-get install btrfs-progs)"
    else:
        caps["btrfs"] = None if root else "needs root to attach loop devices and mount btrfs"
    if not _device_mapper():
        caps["lvm"] = "needs device-mapper (/dev/mapper/control cannot be opened on this machine)"
    elif not shutil.which("lvcreate"):
        caps["lvm"] = "needs lvcreate (apt-get install lvm2)"
    else:
        caps["lvm"] = None if root else "needs root for LVM"
    return caps


CAPS = _capabilities()


def pytest_report_header(config):
    parts = [f"{m}={'yes' if why is None else 'no'}" for m, why in CAPS.items()]
    lines = ["ndump capabilities: " + " ".join(parts)]
    lines += [f"  {m}: {why}" for m, why in CAPS.items() if why]
    lines.append("strict skips (CI=true): " + ("on, a skip fails except lvm without device-mapper"
                                               if STRICT_SKIPS else "off"))
    return lines


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, why in CAPS.items():
            if why is not None and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=f"[{marker}] {why}"))
                break


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not (STRICT_SKIPS and rep.skipped) or hasattr(rep, "wasxfail"):
        return
    reason = _skip_reason(rep)
    if item.get_closest_marker("lvm") and CAPS["lvm"] is not None:
        if isinstance(rep.longrepr, tuple):
            path, line, _ = rep.longrepr
            rep.longrepr = (path, line, f"{reason} [allowed under CI=true: no device-mapper here]")
        return
    rep.outcome = "failed"
    rep.longrepr = f"unexpected skip under CI=true (a skip must not hide a test in CI): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if STRICT_SKIPS and rep.skipped:
        rep.outcome = "failed"
        rep.longrepr = f"unexpected module skip under CI=true: {_skip_reason(rep)}"


def _skip_reason(rep) -> str:
    if isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3:
        return str(rep.longrepr[2])
    return str(rep.longrepr)


# --- environment isolation ---------------------------------------------------------------

@dataclass(frozen=True)
class NdumpEnv:
    """Where the isolated ndump state lives for one test (the directories are not created)."""
    state_dir: Path
    run_dir: Path
    dumpdates: Path


@pytest.fixture(autouse=True)
def ndump_env(monkeypatch, tmp_path) -> NdumpEnv:
    """Unset TAPE, RSH, RMT and every NDUMP_* variable; point the state dir, run dir and
    dumpdates file into tmp_path."""
    for name in list(os.environ):
        if name in ("TAPE", "RSH", "RMT") or name.startswith("NDUMP_"):
            monkeypatch.delenv(name)
    env = NdumpEnv(state_dir=tmp_path / "ndump-state", run_dir=tmp_path / "ndump-run",
                   dumpdates=tmp_path / "ndump-state" / "dumpdates")
    monkeypatch.setenv("NDUMP_STATE_DIR", str(env.state_dir))
    monkeypatch.setenv("NDUMP_RUN_DIR", str(env.run_dir))
    monkeypatch.setenv("NDUMP_DUMPDATES", str(env.dumpdates))
    return env


# --- trees, images ------------------------------------------------------------------------

@pytest.fixture
def make_tree(tmp_path):
    """``make_tree(root=None, spec=None, **full_tree_kwargs) -> Path``.

    With ``spec`` ({relpath: item}, see trees.build_tree) build exactly that; without,
    build the full SPEC §3.1 tree (trees.build_full_tree; the manifest is then in
    ``make_tree.manifest``). ``root`` defaults to a new directory under tmp_path."""
    counter = iter(range(1_000_000))

    def make(root: Path | None = None, spec: dict | None = None, **kwargs) -> Path:
        root = Path(root) if root is not None else tmp_path / f"tree{next(counter)}"
        if spec is None:
            make.manifest = build_full_tree(root, **kwargs)
        else:
            build_tree(root, spec, **kwargs)
        return root

    make.manifest = None
    return make


@pytest.fixture
def ext4_image(tmp_path):
    """``ext4_image(src=None, *, size_mb=64, block_size=4096, name=None, **mke2fs_kw) -> Path``:
    an ext4 image file made by ``mke2fs -d src`` under tmp_path (no root needed)."""
    counter = iter(range(1_000_000))

    def make(src: Path | None = None, *, size_mb: int = 64, block_size: int = 4096,
             name: str | None = None, **kwargs) -> Path:
        (tmp_path / "images").mkdir(exist_ok=True)
        img = tmp_path / "images" / (name or f"fs{next(counter)}.img")
        return make_ext4_image(src, img, size_mb, block_size, **kwargs)

    return make


@pytest.fixture
def mounted_ext4():
    """``mounted_ext4(img, *, reapply_from=None, readonly=False) -> (loopdev, mountpoint)``:
    mounted until the test ends (then unmounted and detached). Needs root."""
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices and mount)")
    with ExitStack() as stack:
        def mount(img: Path, **kwargs) -> tuple[str, Path]:
            return stack.enter_context(loop_mount(img, **kwargs))

        yield mount


@pytest.fixture
def ext4_tree(ext4_image, mounted_ext4):
    """``ext4_tree(src, *, size_mb=64, block_size=4096) -> Path``: a mounted ext4 copy of
    ``src`` with every attribute re-applied (times to the ns, flags), for the test's life."""
    def make(src: Path, *, size_mb: int = 64, block_size: int = 4096, **kwargs) -> Path:
        img = ext4_image(src, size_mb=size_mb, block_size=block_size, **kwargs)
        return mounted_ext4(img, reapply_from=src)[1]

    return make


# --- golden images -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """tests/data: the stock dump 0.4b47 golden images (see tests/data/MAKE.md)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def golden() -> dict:
    """tests/data/golden.json: per image, stock restore's listing and the restored facts."""
    import json
    return json.loads((DATA_DIR / "golden.json").read_text())


# --- running the CLI -----------------------------------------------------------------------

@pytest.fixture
def run_ndump(tmp_path):
    """``run_ndump(*args, input=None, cwd=None, env=None, status=None, traceback_ok=False,
    timeout=300) -> CompletedProcess``: ``python -m ndump ARGS`` in a subprocess with the
    isolated environment, no controlling terminal and stdin from ``input`` (else /dev/null).
    Asserts that stderr has no Python traceback (unless ``traceback_ok``) and, when
    ``status`` is given, that the exit status equals it. stdout/stderr are text."""
    def run(*args: object, input: str | bytes | None = None, cwd: Path | None = None,
            env: dict | None = None, status: int | None = None, traceback_ok: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
        full_env.update(env or {})
        argv = [sys.executable, "-m", "ndump", *map(str, args)]
        proc = subprocess.run(
            argv, cwd=cwd or tmp_path, env=full_env, capture_output=True, timeout=timeout,
            input=input.encode() if isinstance(input, str) else input,
            stdin=subprocess.DEVNULL if input is None else None, start_new_session=True)
        proc.stdout = proc.stdout.decode("utf-8", "surrogateescape")
        proc.stderr = proc.stderr.decode("utf-8", "surrogateescape")
        where = f"ndump {' '.join(map(str, args))}\n--- stdout:\n{proc.stdout[-4000:]}\n" \
                f"--- stderr:\n{proc.stderr[-4000:]}"
        if not traceback_ok:
            assert "Traceback" not in proc.stderr, f"Python traceback on stderr: {where}"
        if status is not None:
            assert proc.returncode == status, f"exit status {proc.returncode}, expected {status}: {where}"
        return proc

    return run
