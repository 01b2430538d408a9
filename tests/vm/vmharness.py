"""Host side of the VM tests: build (once per machine) a Debian 12 guest, boot it under
qemu with a disk for LVM, run the guest tests (tests/vm/guest/guest_*.py) inside, and
bring their results back.

    python3 tests/vm/vmharness.py [--keep DIR] [--inject-failure] [-- PYTEST-ARGS]

runs the guest tests by hand (as root) and prints the guest's per-test results; exit
status 0 when every guest test passed. tests/vm/test_vm.py uses the same functions and
turns each guest test into a test of the host run.

The guest (tests/vm/build-guest.sh: kernel, lvm2, tgt, open-iscsi, mt-st, btrfs-progs,
xfsprogs, stock dump, Python 3.11 with ndump's dependencies in the venv /opt/ndump) is
cached in $NDUMP_VM_CACHE (default /var/cache/ndump-vm) under a hash of build-guest.sh
and of the requirements, and booted with snapshot=on so that no run changes it. Each run
gets a job disk (ext4, made with mke2fs -d, no mount needed) holding guest-init.sh, a
wheel of this checkout, the guest tests and their helpers; the guest installs the wheel
with pip --no-index, runs pytest, and writes its junit xml and log back onto the job
disk, which debugfs reads. The guest's console goes to console.log in the run directory.

Software emulation (TCG) is the default: the /dev/kvm of the machines this was written on
does not boot a stock kernel. NDUMP_VM_ACCEL="-accel kvm -cpu host" uses KVM where it works.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUEST_DIR = HERE / "guest"
BUILD_SCRIPT = HERE / "build-guest.sh"
GUEST_INIT = HERE / "guest-init.sh"
CACHE = Path(os.environ.get("NDUMP_VM_CACHE", "/var/cache/ndump-vm"))
# test helpers the guest tests use, copied next to them on the job disk
HELPERS = ("tests/conftest.py", "tests/trees.py", "tests/stock.py", "pyproject.toml")
GUEST_TEST_EXTRA = ("pytest", "pytest-timeout")
INJECTED = "guest_injected.py"          # the guest check that must fail (--inject-failure)
BOOT_TIMEOUT = int(os.environ.get("NDUMP_VM_TIMEOUT", "900"))
LVM_DISK_MB = 1024
JOB_DISK_MB = 256


class VMError(Exception):
    """The VM could not be built or run; the message says why and where the logs are."""


def missing() -> str | None:
    """Why the VM tests cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root (mmdebstrap --mode=root builds the guest)"
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("debugfs", "e2fsprogs"),
                      ("mkfs.ext4", "e2fsprogs")):
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install {pkg})"
    if not (guest_dir() / "root.img").exists() and not shutil.which("mmdebstrap"):
        return "needs mmdebstrap to build the guest (apt-get install mmdebstrap)"
    return None


# --- the cached guest ------------------------------------------------------------------

def requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *GUEST_TEST_EXTRA]


def cache_key() -> str:
    h = hashlib.sha256(BUILD_SCRIPT.read_bytes())
    h.update("\n".join(requirements()).encode())
    return h.hexdigest()[:16]


def guest_dir() -> Path:
    return CACHE / cache_key()


def ensure_guest(log) -> Path:
    """The cached guest, built first when missing (one build at a time per machine)."""
    out = guest_dir()
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "root.img").exists():
            os.utime(out)                   # most recently used: kept by _prune
            log(f"guest: cached in {out}")
            return out
        _prune()
        tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.build.", dir=CACHE))
        build_log = CACHE / f"{out.name}.build.log"
        try:
            t0 = time.monotonic()
            wheels = tmp / "wheels"
            _dependency_wheels(wheels, build_log)
            log(f"guest: building in {tmp} (log {build_log})")
            with open(build_log, "a") as f:
                proc = subprocess.run(["bash", str(BUILD_SCRIPT), str(tmp / "guest"), str(wheels)],
                                      stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise VMError(f"building the guest failed (exit {proc.returncode}): see {build_log}"
                              f"\n{_tail(build_log)}")
            os.rename(tmp / "guest", out)
            log(f"guest: built in {time.monotonic() - t0:.0f} s")
        finally:
            _remove_build(tmp)
    return out


def _remove_build(path: Path) -> None:
    """Remove a build directory, unless something is still mounted inside it (a failed
    chroot step): rmtree would then delete through the mount."""
    inside = str(path) + "/"
    with open("/proc/self/mounts") as f:
        if any(line.split()[1].startswith(inside) for line in f):
            return
    shutil.rmtree(path, ignore_errors=True)


def _prune(keep: int = 2) -> None:
    """Before a build (the lock held): remove what crashed builds left and all but the
    ``keep`` most recently used guests."""
    for stale in CACHE.glob("*.build.*"):
        if stale.is_dir():
            _remove_build(stale)
    guests = sorted((d for d in CACHE.iterdir() if (d / "root.img").exists()),
                    key=lambda d: d.stat().st_mtime, reverse=True)
    for old in guests[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _dependency_wheels(dest: Path, build_log: Path) -> None:
    """Wheels of ndump's dependencies and of pytest, for the host's Python (the guest's is
    3.11 too), with a requirements.txt naming them."""
    if sys.version_info[:2] != (3, 11):
        raise VMError(f"the guest's Python is 3.11 and the wheels of ndump's dependencies are"
                      f" built with this one, {sys.version.split()[0]}: run the VM tests with"
                      " a Python 3.11")
    dest.mkdir(parents=True)
    reqs = requirements()
    (dest / "requirements.txt").write_text("\n".join(reqs) + "\n")
    with open(build_log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check",
                               "-w", str(dest), *reqs], stdout=f, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise VMError(f"pip wheel of the guest's requirements failed: see {build_log}\n"
                      f"{_tail(build_log)}")


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# --- one run ------------------------------------------------------------------------------

@dataclass
class Result:
    outcome: str                  # passed, failed, error, skipped
    message: str = ""


@dataclass
class Run:
    workdir: Path
    results: dict[str, list[Result]] = field(default_factory=dict)   # "file.py::test" -> cases
    junit: Path | None = None     # the directory of the guest's junit-*.xml
    seconds: float = 0.0

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"


def ndump_wheel(dest: Path) -> Path:
    """A wheel of this checkout, built from a copy (pip would leave build/ and egg-info
    in the checkout)."""
    src = dest / "src"
    shutil.copytree(REPO / "ndump", src / "ndump", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--disable-pip-version-check", "-w", str(dest),
                           str(src)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    shutil.rmtree(src)
    wheels = list(dest.glob("ndump-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise VMError(f"pip wheel of the checkout failed:\n{proc.stdout}\n{proc.stderr}")
    return wheels[0]


def make_job(workdir: Path, pytest_args: list[str], inject_failure: bool) -> Path:
    """The job disk: guest-init.sh, the ndump wheel, tests, and the pytest command line."""
    job = workdir / "job"
    shutil.rmtree(job, ignore_errors=True)
    (job / "out").mkdir(parents=True)
    shutil.copy2(GUEST_INIT, job / "guest-init.sh")
    ndump_wheel(job / "wheels")
    for rel in HELPERS:
        (job / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, job / rel)
    shutil.copytree(GUEST_DIR, job / "tests" / "vm" / "guest",
                    ignore=shutil.ignore_patterns("__pycache__"))
    tests = "tests/vm/guest"
    parts = {"lvm": [f"{tests}/guest_lvm.py"],
             "tape": [f"{tests}/guest_tape.py"] + ([f"{tests}/{INJECTED}"] if inject_failure else [])}
    (job / "parts").write_text("".join(f"{name}\t{shlex.join(files + list(pytest_args))}\n"
                                       for name, files in parts.items()))
    img = workdir / "job.img"
    img.unlink(missing_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "ndump-job", "-d", str(job), str(img),
                    f"{JOB_DISK_MB}M"], check=True, capture_output=True)
    return img


def boot(guest: Path, job_img: Path, workdir: Path, log) -> None:
    lvm_img = workdir / "lvm.img"
    lvm_img.unlink(missing_ok=True)
    with open(lvm_img, "wb") as f:
        f.truncate(LVM_DISK_MB << 20)
    accel = shlex.split(os.environ.get("NDUMP_VM_ACCEL", "-accel tcg,thread=multi -cpu max"))
    argv = ["qemu-system-x86_64", *accel, "-smp", "2", "-m", "1536", "-nodefaults",
            "-display", "none", "-no-reboot", "-serial", f"file:{workdir / 'console.log'}",
            "-kernel", str(guest / "vmlinuz"), "-initrd", str(guest / "initrd.img"),
            "-append", "console=ttyS0 root=/dev/vda rw init=/sbin/ndump-vm-init panic=-1"
                       " ndump.job=/dev/vdc quiet",
            "-drive", f"file={guest / 'root.img'},if=virtio,format=raw,snapshot=on",
            "-drive", f"file={lvm_img},if=virtio,format=raw",
            "-drive", f"file={job_img},if=virtio,format=raw",
            "-nic", "none"]
    (workdir / "qemu-argv").write_text(shlex.join(argv) + "\n")
    log(f"qemu: booting the guest (console: {workdir / 'console.log'})")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=BOOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise VMError(f"the guest did not power off within {BOOT_TIMEOUT} s; console:"
                      f" {workdir / 'console.log'}\n{_tail(workdir / 'console.log')}") from None
    finally:
        lvm_img.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise VMError(f"qemu exited {proc.returncode}: {proc.stderr.strip()}")


def read_back(job_img: Path, dest: Path) -> None:
    """Copy /out of the job disk to ``dest`` (debugfs reads the image, nothing is mounted)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    subprocess.run(["debugfs", "-R", f"rdump /out {dest}", str(job_img)],
                   check=True, capture_output=True)


def parse_junit(out: Path) -> dict[str, list[Result]]:
    """The junit-*.xml files in ``out`` → {"guest_x.py::test_y": [Result per case
    (parametrized cases share the name)]}."""
    results: dict[str, list[Result]] = {}
    cases = [c for path in sorted(out.glob("junit-*.xml")) for c in ET.parse(path).getroot().iter("testcase")]
    for case in cases:
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "").split("[", 1)[0]
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = "\n".join(x for x in (child.get("message"), child.text) if x)
                break
        results.setdefault(f"{module}.py::{name}", []).append(Result(outcome, message))
    return results


def new_workdir(keep: int = 5) -> Path:
    """A run directory under CACHE/runs (console.log, out/), kept after the test session
    (pytest's own temporary directories are rotated away by the next sessions); only the
    ``keep`` newest are kept."""
    runs = CACHE / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for old in sorted(runs.iterdir(), key=lambda d: d.stat().st_mtime)[:-(keep - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))


def run(workdir: Path, *, pytest_args: list[str] = (), inject_failure: bool = False,
        log=print) -> Run:
    """Build (or reuse) the guest, boot it with a job, return the guest's results."""
    t0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    guest = ensure_guest(log)
    job_img = make_job(workdir, list(pytest_args), inject_failure)
    out = workdir / "out"
    boot(guest, job_img, workdir, log)
    read_back(job_img, out)
    job_img.unlink()
    shutil.rmtree(workdir / "job", ignore_errors=True)
    junit = out / "out"
    if not list(junit.glob("junit-*.xml")):
        raise VMError(f"the guest wrote no test results; console: {workdir / 'console.log'}\n"
                      f"{_tail(workdir / 'console.log', 40)}")
    result = Run(workdir, parse_junit(junit), junit, time.monotonic() - t0)
    log(f"guest: {sum(len(v) for v in result.results.values())} test cases in"
        f" {result.seconds:.0f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, help="run directory (console.log, out/); default a new"
                    " one under $NDUMP_VM_CACHE/runs")
    ap.add_argument("--inject-failure", action="store_true",
                    help=f"also run tests/vm/guest/{INJECTED}, which must fail")
    ap.add_argument("pytest_args", nargs="*", help="more arguments for pytest in the guest")
    opts = ap.parse_args(argv)
    why = missing()
    if why:
        print(f"vmharness: cannot run the VM tests: {why}", file=sys.stderr)
        return 2
    workdir = opts.keep or new_workdir()
    try:
        res = run(workdir, pytest_args=opts.pytest_args, inject_failure=opts.inject_failure)
    except VMError as e:
        print(f"vmharness: {e}", file=sys.stderr)
        return 1
    bad = 0
    for name, cases in sorted(res.results.items()):
        for case in cases:
            print(f"{case.outcome.upper():8} {name}")
            bad += case.outcome not in ("passed",)
    print(f"console: {res.console}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
