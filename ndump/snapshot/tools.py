"""Running the snapshot tools (btrfs-progs, lvm2, mount, umount, findmnt).

Every external command of the snapshot package goes through ``run`` so that the
argv, the environment and the error messages are the same everywhere: no
terminal and no stdin (lvm2 would otherwise ask questions), text output, and a
one-line reason taken from the tool's own stderr when it fails.  Tests put fake
executables first on PATH; nothing here knows about them.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from ndump.errors import SnapshotError

# lines that lvm2 prints on machines without device-mapper, or as noise
_NOISE = ("WARNING:", "Run `", "File descriptor ", "/dev/mapper/control:",
          "Failure to communicate with kernel", "Check that device-mapper",
          "Incompatible libdevmapper", "/sbin/modprobe", "dmesg(1) may have")

# which package provides a tool, for the "not installed" message
PACKAGES = {"btrfs": "btrfs-progs", "lvs": "lvm2", "vgs": "lvm2", "lvcreate": "lvm2",
            "lvremove": "lvm2", "mount": "mount", "umount": "mount", "findmnt": "util-linux"}


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def reason(self) -> str:
        """The tool's own explanation, on one line (its last meaningful stderr line)."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(_NOISE)]
        text = (useful or lines or [f"exit status {self.returncode}"])[-1]
        for prefix in ("ERROR: ", "error: ", f"{self.argv[0]}: "):
            if text.startswith(prefix):
                text = text[len(prefix):]
        for arg in self.argv[1:]:           # "umount: /mnt/x: target is busy." → "target is busy"
            if arg.startswith("/") and text.startswith(arg + ": "):
                text = text[len(arg) + 2:]
        return text.rstrip(".")


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def require(tools: list[str], why: str) -> None:
    """SnapshotError naming the missing tools and their packages."""
    missing = [t for t in tools if not have(t)]
    if missing:
        pkgs = sorted({PACKAGES.get(t, t) for t in missing})
        raise SnapshotError(f"{why} needs {', '.join(missing)}, which is not installed"
                            f" (install {' and '.join(pkgs)}, or use --snapshot none)")


def run(*argv: str, timeout: float = 600) -> Result:
    """Run a tool; never raises for a non-zero status (the caller decides)."""
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="surrogateescape", timeout=timeout,
                              start_new_session=True)   # a ^C on the terminal is ndump's to handle
    except FileNotFoundError:
        return Result(tuple(argv), 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Result(tuple(argv), 124, "", f"{argv[0]}: no answer after {timeout:.0f} s")
    return Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def check(*argv: str, what: str) -> Result:
    """Run a tool; SnapshotError ``<what>: <tool's reason>`` when it fails."""
    res = run(*argv)
    if not res.ok:
        raise SnapshotError(f"{what}: {res.reason()}")
    return res
