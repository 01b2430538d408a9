"""Real LVM and a real SCSI tape drive, inside a qemu guest (issue 18).

One guest run per session (tests/vm/vmharness.py: build or reuse the cached Debian 12
guest, install this checkout's wheel in it, run tests/vm/guest/guest_*.py there); each
guest test is a test here, passing only when it passed in the guest. The guest's console
is kept in console.log in the run directory (under /var/cache/ndump-vm/runs/) that
failures name.

NDUMP_VM_RESULTS=DIR reads the results (DIR/junit-*.xml) of an earlier guest run instead of
booting.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import vmharness  # noqa: E402

INJECTED_ID = f"{vmharness.INJECTED}::test_deliberately_broken_tape_read"


def guest_tests(include_injected: bool) -> list[str]:
    """file::function of every guest test, read from the sources (nothing is booted to
    collect them)."""
    ids = []
    for path in sorted(vmharness.GUEST_DIR.glob("guest_*.py")):
        if path.name == vmharness.INJECTED and not include_injected:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                ids.append(f"{path.name}::{node.name}")
    return ids


GUEST_TESTS = guest_tests(os.environ.get("NDUMP_VM_EXPECT_INJECTED") == "1")
pytestmark = [pytest.mark.vm, pytest.mark.timeout(vmharness.BOOT_TIMEOUT + 900)]


@pytest.fixture(scope="session")
def guest_run() -> vmharness.Run:
    reuse = os.environ.get("NDUMP_VM_RESULTS")
    if reuse:
        junit = Path(reuse)
        return vmharness.Run(junit.parent, vmharness.parse_junit(junit), junit)
    why = vmharness.missing()
    if why:
        pytest.skip(f"[vm] qemu cannot run here: {why}")
    workdir = vmharness.new_workdir()
    try:
        # the guest also runs the check that must fail, for the test at the end
        return vmharness.run(workdir, inject_failure=True, log=lambda msg: None)
    except vmharness.VMError as e:
        pytest.fail(f"the VM run failed: {e}", pytrace=False)


@pytest.mark.parametrize("name", GUEST_TESTS)
def test_in_guest(guest_run, name):
    cases = guest_run.results.get(name)
    assert cases, f"{name} did not run in the guest; console: {guest_run.console}"
    bad = [c for c in cases if c.outcome != "passed"]
    if bad:
        pytest.fail(f"{name} {bad[0].outcome} in the guest (console: {guest_run.console}):\n"
                    + "\n\n".join(c.message for c in bad), pytrace=False)


def test_the_guest_ran_no_other_tests(guest_run):
    assert set(guest_run.results) - set(GUEST_TESTS) - {INJECTED_ID} == set()


def test_a_failure_in_the_guest_fails_the_host_run(guest_run):
    """The guest ran a check that must fail (a tape written with -b 64 read with -b 16 as
    if that were right); reporting that run's results as host tests must fail the run,
    naming the guest test and showing the guest's error."""
    cases = guest_run.results.get(INJECTED_ID)
    assert cases and cases[0].outcome == "failed", cases
    env = {**os.environ, "NDUMP_VM_RESULTS": str(guest_run.junit), "NDUMP_VM_EXPECT_INJECTED": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{HERE / 'test_vm.py'}::test_in_guest"], cwd=vmharness.REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert f"FAILED tests/vm/test_vm.py::test_in_guest[{INJECTED_ID}]" in proc.stdout, proc.stdout[-3000:]
    assert f"1 failed, {len(guest_tests(False))} passed" in proc.stdout, proc.stdout[-3000:]
    assert "use -b 64" in proc.stdout, proc.stdout[-3000:]
