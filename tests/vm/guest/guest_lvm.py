"""Real LVM snapshots (runs in the VM: device-mapper, lvm2, udev).

`ndump dump -0u` of a mounted ext4 or XFS logical volume takes an LVM snapshot, mounts it
read-only without journal replay, dumps it while the origin is being written, and removes
it; the restored tree equals the snapshot's. A SIGKILLed dump's snapshot is removed by the
next run, and a volume group without free extents stops the dump with the documented
message before anything is written.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from guestlib import kill_group, sh, snapshot_mounts, start_ndump, wait_for
from trees import assert_trees_equal, tree_state

SNAP_LV = "ndump_snapshot_for_backup"


def populate(root: Path) -> None:
    """A few MB in files, a hard link, a symlink, an xattr, a file the writer will change."""
    (root / "docs" / "deep").mkdir(parents=True)
    for i in range(60):
        (root / "docs" / f"f{i:03d}.bin").write_bytes(os.urandom(20_000 + 997 * i))
    (root / "docs" / "deep" / "notes.txt").write_text("snapshot me\n")
    os.link(root / "docs" / "f000.bin", root / "docs" / "deep" / "hardlink.bin")
    os.symlink("../f001.bin", root / "docs" / "deep" / "link")
    os.setxattr(root / "docs" / "deep" / "notes.txt", "user.ndump", b"kept")
    (root / "churn.bin").write_bytes(b"before the snapshot\n" * 1000)
    os.sync()


class Writer(threading.Thread):
    """Writes the origin all the time: new files, and rewrites of churn.bin."""

    def __init__(self, root: Path):
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.written = 0
        (root / "live").mkdir()

    def run(self) -> None:
        while not self.stop.is_set():
            self.written += 1
            (self.root / "live" / f"w{self.written:05d}").write_bytes(os.urandom(16_384))
            with open(self.root / "churn.bin", "r+b") as f:
                f.write(f"write {self.written}\n".encode())
                os.fsync(f.fileno())
            self.stop.wait(0.01)


def dump_while_writing(lvm, tmp_path, ndump_env, run_ndump, fstype: str, size: str,
                       mount_opts: set[str]) -> None:
    """``mount_opts``: options the snapshot's read-only mount must show (any one of them
    when the set has a tuple of spellings)."""
    mnt = lvm.volume(fstype, size)
    populate(mnt)
    out = tmp_path / "out.dump"
    writer = Writer(mnt)
    writer.start()
    try:
        proc = start_ndump("dump", "-0u", "-f", out, mnt)
        dev, snap_mnt, opts = wait_for(lambda: (snapshot_mounts() or [None])[0],
                                       "the snapshot to be mounted", proc=proc)
        os.kill(proc.pid, signal.SIGSTOP)     # hold the dump while the snapshot is read here
        try:
            assert snapshot_mounts(), "the dump ended before the snapshot could be looked at"
            snap_state = tree_state(Path(snap_mnt))
            lvs = lvm.names()
            before = writer.written
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait_for(lambda: writer.written > before + 5, "the writer to go on writing the origin")
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        writer.stop.set()
        writer.join()
    assert proc.returncode == 0, f"ndump dump exited {proc.returncode}:\n{stderr}"
    assert f"{SNAP_LV}.0" in dev, dev
    options = set(opts.split(","))
    assert all(o in options if isinstance(o, str) else options & set(o) for o in mount_opts), \
        f"snapshot mounted with {opts}"
    assert f"{SNAP_LV}.0" in lvs, f"no snapshot LV during the dump: {lvs}"
    assert f"LVM snapshot {lvm.vg}/{SNAP_LV}.0" in stderr
    # afterwards: no snapshot, no mount, the dump recorded (-u)
    assert not [n for n in lvm.names() if n.startswith(SNAP_LV)], lvm.names()
    assert snapshot_mounts() == []
    assert not Path(snap_mnt).exists()
    assert str(mnt) in ndump_env.dumpdates.read_text()
    # the origin moved on during the dump, the dump holds the snapshot
    live = tree_state(mnt)
    assert any(p.startswith("live/w") for p in set(live) - set(snap_state)), \
        "the origin was not written during the dump"
    assert live["churn.bin"] != snap_state["churn.bin"]
    restored = tmp_path / "restored"
    restored.mkdir()
    run_ndump("restore", "-r", "-f", out, "--target", restored, status=0)
    assert_trees_equal(snap_state, restored)


def test_ext4_lv_dumped_from_a_snapshot_while_written(lvm, tmp_path, ndump_env, run_ndump):
    dump_while_writing(lvm, tmp_path, ndump_env, run_ndump, "ext4", "128m",
                       {"ro", ("noload", "norecovery")})     # the kernel shows noload as norecovery


def test_xfs_lv_dumped_from_a_snapshot_while_written(lvm, tmp_path, ndump_env, run_ndump):
    # mkfs.xfs wants at least 300 MB; the snapshot (10 %, at least 64 MiB) holds the writes
    dump_while_writing(lvm, tmp_path, ndump_env, run_ndump, "xfs", "320m",
                       {"ro", "nouuid", "norecovery"})


def test_snapshot_of_a_killed_dump_is_removed_by_the_next_run(lvm, tmp_path, run_ndump):
    mnt = lvm.volume("ext4")
    populate(mnt)
    proc = start_ndump("dump", "-0", "-f", tmp_path / "killed.dump", mnt)
    wait_for(snapshot_mounts, "the snapshot to be mounted", proc=proc)
    kill_group(proc)
    assert f"{SNAP_LV}.0" in lvm.names(), "the killed dump left no snapshot behind"
    assert snapshot_mounts(), "the killed dump's snapshot is not mounted any more"
    res = run_ndump("dump", "-0", "-f", tmp_path / "next.dump", mnt, status=0)
    assert f"removed LVM snapshot {lvm.vg}/{SNAP_LV}.0 left by an interrupted dump" in res.stderr
    assert not [n for n in lvm.names() if n.startswith(SNAP_LV)], lvm.names()
    assert snapshot_mounts() == []


def test_volume_group_without_free_extents(lvm, tmp_path, run_ndump):
    mnt = lvm.volume("ext4")
    populate(mnt)
    sh("lvcreate", "-q", "-y", "-l", "100%FREE", "-n", "filler", lvm.vg)
    lvm.made.append(("filler", Path("/nonexistent")))
    out = tmp_path / "out.dump"
    res = run_ndump("dump", "-0", "-f", out, mnt, status=1)
    assert res.stderr.strip().splitlines()[-1] == (
        f"DUMP: volume group {lvm.vg} has 0 B free, the snapshot of {lvm.vg}/{lvm.made[0][0]} needs"
        f" 64.0 MiB: free space in {lvm.vg}, give a smaller --snapshot-size, or use --snapshot none")
    assert not out.exists() or out.stat().st_size == 0
    assert not [n for n in lvm.names() if n.startswith(SNAP_LV)]
