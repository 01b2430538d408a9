"""The VM tests: tests/vm/guest/ holds the tests that run inside the guest (started by
vmharness.py there); the host never collects them itself."""
collect_ignore = ["guest"]
