"""A guest check that must fail: the harness runs it only when asked (vmharness
--inject-failure), so that tests/vm/test_vm.py can show that a failure inside the guest
fails the host's test run. It reads a tape written with -b 64 as if -b 16 were right."""
from guest_tape import small_tree
from guestlib import sh


def test_deliberately_broken_tape_read(tapes, tmp_path, run_ndump):
    tape = tapes.load()
    run_ndump("dump", "-0", "-b", "64", "-f", tape, small_tree(tmp_path / "src", "broken"), status=0)
    sh("mt", "-f", tape, "rewind")
    run_ndump("restore", "-t", "-b", "16", "-f", tape, status=0)
