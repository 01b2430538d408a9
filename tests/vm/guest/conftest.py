"""Fixtures of the guest tests: they run only inside the VM (tests/vm/guest-init.sh), as
root, with /dev/vdb free for LVM and the Debian packages of tests/vm/build-guest.sh.

- ``lvm``: the volume group on /dev/vdb; ``lvm.volume(fstype, size)`` makes a mounted LV.
- ``tapes``: tgtd emulating an SSC tape drive (LUN 1) reached through open-iscsi on
  loopback, so that Linux's st driver gives it a /dev/nstN; ``tapes.load(size_mb)``
  puts a blank cartridge in the drive and rewinds it.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from guestlib import sh  # noqa: E402

VG = "ndumpvg"
PV = "/dev/vdb"
IQN = "iqn.2026-11.org.ndump:tapes"


# --- LVM ------------------------------------------------------------------------------------

class Lvm:
    vg = VG

    def __init__(self):
        self.count = 0
        self.made: list[tuple[str, Path]] = []

    def volume(self, fstype: str, size: str = "128m") -> Path:
        """A new LV of ``size`` with a ``fstype`` filesystem, mounted on /mnt/NAME."""
        self.count += 1
        name = f"{fstype}{self.count}"
        sh("lvcreate", "-q", "-y", "-L", size, "-n", name, VG)
        sh(f"mkfs.{fstype}", "-q", *(["-f"] if fstype == "xfs" else []), f"/dev/{VG}/{name}")
        mnt = Path("/mnt") / name
        mnt.mkdir(parents=True, exist_ok=True)
        sh("mount", f"/dev/{VG}/{name}", mnt)
        self.made.append((name, mnt))
        return mnt

    def names(self) -> list[str]:
        return sh("lvs", "--noheadings", "-o", "lv_name", VG).stdout.split()

    def cleanup(self) -> None:
        for name, mnt in self.made:
            sh("umount", mnt, check=False)
            sh("lvremove", "-q", "-f", f"{VG}/{name}", check=False)
        self.made.clear()


@pytest.fixture(scope="session")
def volume_group():
    sh("pvcreate", "-q", "-y", PV)
    sh("vgcreate", "-q", VG, PV)
    return VG


@pytest.fixture
def lvm(volume_group):
    lvm = Lvm()
    yield lvm
    lvm.cleanup()


# --- tape -----------------------------------------------------------------------------------

class Tapes:
    """One tgt SSC drive on LUN 1; the cartridges are files in /tmp/tapes."""

    def __init__(self, device: str):
        self.device = device
        self.dir = Path("/tmp/tapes")
        self.dir.mkdir(exist_ok=True)
        self.count = 0

    def blank(self, size_mb: int, name: str | None = None) -> Path:
        self.count += 1
        path = self.dir / (name or f"tape{self.count}.img")
        path.unlink(missing_ok=True)
        sh("tgtimg", "--op", "new", "--device-type", "tape", "--barcode", f"NDUMP{self.count:03d}",
           "--size", str(size_mb), "--type", "data", "--file", path)
        return path

    def insert(self, cartridge: Path) -> None:
        """Put ``cartridge`` in the drive (tgtadm re-points LUN 1) and rewind it."""
        insert_cartridge(cartridge)
        rewind(self.device)

    def load(self, size_mb: int = 64) -> str:
        """A blank cartridge in the drive, rewound, variable block mode; the device name."""
        self.insert(self.blank(size_mb))
        sh("mt", "-f", self.device, "setblk", "0")
        return self.device


def insert_cartridge(cartridge: Path) -> None:
    sh("tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--op", "update", "--tid", "1",
       "--lun", "1", "--params", f"online=0,path={cartridge},online=1")


def rewind(device: str) -> None:
    """mt rewind; the first command after a cartridge change may see a unit attention."""
    for _ in range(5):
        if sh("mt", "-f", device, "rewind", check=False).returncode == 0:
            return
        time.sleep(0.5)
    sh("mt", "-f", device, "rewind")


@pytest.fixture(scope="session")
def tape_drive():
    first = Path("/tmp/tapes/first.img")
    first.parent.mkdir(exist_ok=True)
    sh("tgtimg", "--op", "new", "--device-type", "tape", "--barcode", "NDUMP000", "--size", "8",
       "--type", "data", "--file", first)
    sh("tgtd")
    _wait(lambda: sh("tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show",
                     check=False).returncode == 0, "tgtd to answer")
    sh("tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "new", "--tid", "1",
       "--targetname", IQN)
    sh("tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
       "--device-type", "tape", "--bstype", "ssc", "--backing-store", first)
    sh("tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "bind", "--tid", "1",
       "--initiator-address", "ALL")
    sh("iscsid")
    _wait(lambda: sh("iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", "127.0.0.1",
                     check=False).returncode == 0, "iscsid to discover the target")
    sh("iscsiadm", "-m", "node", "-T", IQN, "-p", "127.0.0.1", "--login")
    sh("udevadm", "settle", "-t", "30")
    device = _wait(_tape_on_lun1, "the st driver to attach the tape drive")
    return device


def _tape_on_lun1() -> str | None:
    """/dev/nstN of the tgt drive (its SCSI address ends in :1)."""
    base = Path("/sys/class/scsi_tape")
    if not base.is_dir():
        return None
    for entry in sorted(base.iterdir()):
        name = entry.name
        if name.startswith("nst") and name[3:].isdigit():
            hctl = os.path.basename(os.path.realpath(entry / "device"))
            if hctl.endswith(":1") and os.path.exists(f"/dev/{name}"):
                return f"/dev/{name}"
    return None


def _wait(probe, what: str, timeout: float = 60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def tapes(tape_drive):
    t = Tapes(tape_drive)
    yield t
    sh("mt", "-f", tape_drive, "setblk", "0", check=False)
