"""Real btrfs on a loop device (issue 5, acceptance 1-3).

A dump writes into a FIFO: it takes its snapshot, walks the tree (Passes I-II)
and then blocks opening the FIFO until the test reads it, so the test can look
at the snapshot and change the live tree while the dump is "running", before a
single data byte has been read from the tree.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from ndump.errors import SnapshotError
from ndump.format import unpack_header
from ndump.report import Reporter
from ndump.settings import Settings
from ndump.snapshot import open_snapshot
from snaphelp import mounts_under, sh, stderr_of, wait_for

pytestmark = [pytest.mark.root, pytest.mark.btrfs]


def fill(root: Path) -> None:
    """aa/ first (the root's first entry is a directory), some files, a 3 MiB one."""
    (root / "aa" / "deep").mkdir(parents=True)
    (root / "aa" / "deep" / "note.txt").write_text("in the snapshot\n")
    (root / "keep.txt").write_text("original content\n")
    (root / "doomed.txt").write_text("deleted during the dump\n")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))


def drain(fifo: Path, dest: Path) -> threading.Thread:
    def run():
        with open(fifo, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 16)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def listing(run_ndump, img: Path) -> set[str]:
    out = run_ndump("restore", "-t", "-f", img, status=0).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].isdigit():
            names.add(parts[1].strip().removeprefix("./"))
    return names


def header_path(img: Path) -> str:
    """The dumped path recorded in the volume header (c_filesys)."""
    return unpack_header(img.read_bytes()[:1024]).filesys


def test_dump_reads_a_snapshot_taken_at_its_start(btrfs_fs, start_ndump, run_ndump, tmp_path,
                                                  ndump_env):
    tree = btrfs_fs.vol / "srv"
    fill(tree)
    fifo, img = tmp_path / "dump.fifo", tmp_path / "dump.img"
    os.mkfifo(fifo)
    proc = start_ndump("dump", "-0", "-f", fifo, tree)

    wait_for(lambda: "Pass II" in stderr_of(proc), what="the walk in the snapshot")
    names = btrfs_fs.snapshots()
    assert names == ["snapshot_for_backup.0"]
    snap = btrfs_fs.mnt / ".ndump-snapshots" / names[0]
    assert (snap / "srv" / "keep.txt").read_text() == "original content\n"
    with pytest.raises(OSError):                 # read-only
        (snap / "srv" / "new.txt").write_text("x")

    # the dump has walked its tree and waits for a reader; now change the live tree
    (tree / "keep.txt").write_text("CHANGED content\n")       # same size, new data
    (tree / "written-during-dump.txt").write_text("too late\n")
    (tree / "aa" / "late-dir").mkdir()
    (tree / "doomed.txt").unlink()
    assert btrfs_fs.snapshots() == ["snapshot_for_backup.0"]  # still there while it runs

    reader = drain(fifo, img)
    assert proc.wait(60) == 0, stderr_of(proc)
    reader.join(10)
    assert "reading " + str(tree) + " from btrfs snapshot" in stderr_of(proc)

    assert btrfs_fs.snapshots() == []                       # removed at the end
    assert not list((ndump_env.state_dir / "snapshots").glob("*.json"))
    names = listing(run_ndump, img)
    assert {"keep.txt", "doomed.txt", "big.bin", "aa/deep/note.txt"} <= names
    assert not names & {"written-during-dump.txt", "aa/late-dir"}
    assert header_path(img) == str(tree)                     # the original PATH, not the snapshot

    out = tmp_path / "restored"
    out.mkdir()
    run_ndump("restore", "-x", "-y", "-f", img, "--target", out, status=0)
    assert (out / "keep.txt").read_text() == "original content\n"
    assert (out / "big.bin").read_bytes() == (tree / "big.bin").read_bytes()


def test_live_dump_sees_the_change_control(btrfs_fs, start_ndump, run_ndump, tmp_path):
    """The same scene with --snapshot none: the changed content does get in (so the test
    above would notice a dump that did not read its snapshot)."""
    tree = btrfs_fs.vol / "srv"
    fill(tree)
    fifo, img = tmp_path / "dump.fifo", tmp_path / "dump.img"
    os.mkfifo(fifo)
    proc = start_ndump("dump", "-0", "-f", fifo, "--snapshot", "none", tree)
    wait_for(lambda: "Pass II" in stderr_of(proc), what="the walk")
    (tree / "keep.txt").write_text("CHANGED content\n")
    reader = drain(fifo, img)
    proc.wait(60)
    reader.join(10)
    out = tmp_path / "restored"
    out.mkdir()
    run_ndump("restore", "-x", "-y", "-f", img, "--target", out)
    assert (out / "keep.txt").read_text() == "CHANGED content\n"
    assert btrfs_fs.snapshots() == []


def test_two_dumps_at_once_get_0_and_1(btrfs_fs, start_ndump, run_ndump, tmp_path):
    fill(btrfs_fs.vol / "a")
    fill(btrfs_fs.vol / "b")
    procs, fifos = [], []
    for name in ("a", "b"):
        fifo = tmp_path / f"{name}.fifo"
        os.mkfifo(fifo)
        fifos.append(fifo)
        procs.append(start_ndump("dump", "-0", "-f", fifo, btrfs_fs.vol / name))
    wait_for(lambda: all("Pass II" in stderr_of(p) for p in procs), what="both walks")
    assert btrfs_fs.snapshots() == ["snapshot_for_backup.0", "snapshot_for_backup.1"]
    readers = [drain(f, f.with_suffix(".img")) for f in fifos]
    for proc in procs:
        assert proc.wait(60) == 0, stderr_of(proc)
    for r in readers:
        r.join(10)
    assert btrfs_fs.snapshots() == []
    for fifo in fifos:
        assert "keep.txt" in listing(run_ndump, fifo.with_suffix(".img"))
    # the counter goes on (it restarts only when a reboot empties the run directory)
    res = run_ndump("dump", "-0", "-f", tmp_path / "c.img", btrfs_fs.vol / "a", status=0)
    assert "/snapshot_for_backup.2" in res.stderr


def test_subvolume_mounted_without_the_top_level(btrfs_fs, run_ndump, tmp_path, ndump_env):
    """/home mounted with subvol=home: ndump mounts the top level privately under the run
    directory, puts the snapshot there, and unmounts it afterwards."""
    fill(btrfs_fs.vol / "srv")
    sh("umount", btrfs_fs.mnt)
    only = btrfs_fs.base / "o"
    only.mkdir()
    sh("mount", "-o", "loop,subvol=vol", btrfs_fs.img, only)
    img = tmp_path / "out.img"
    res = run_ndump("dump", "-0", "-f", img, only / "srv", status=0)
    assert "snapshot_for_backup.0" in res.stderr
    assert mounts_under(btrfs_fs.base) + mounts_under(tmp_path) == [str(only)]  # private one gone
    assert "keep.txt" in listing(run_ndump, img)
    assert header_path(img) == str(only / "srv")
    assert not (ndump_env.run_dir / "mnt" / "snapshot_for_backup.0").exists()
    sh("mount", "-o", "loop", btrfs_fs.img, btrfs_fs.mnt)
    assert btrfs_fs.snapshots() == []


def test_named_snapshot_is_dumped_and_left_in_place(btrfs_fs, run_ndump, tmp_path, ndump_env):
    tree = btrfs_fs.vol / "srv"
    fill(tree)
    mine = btrfs_fs.mnt / "before-upgrade"
    sh("btrfs", "subvolume", "snapshot", "-r", btrfs_fs.vol, mine)
    (tree / "keep.txt").write_text("after the snapshot\n")
    (tree / "new-after-snapshot.txt").write_text("x\n")

    img = tmp_path / "named.img"
    res = run_ndump("dump", "-0", "-f", img, "--snapshot", mine, tree, status=0)
    assert f"from existing btrfs snapshot {mine}" in res.stderr
    assert mine.is_dir() and "before-upgrade" in btrfs_fs.subvolumes()   # never deleted
    assert btrfs_fs.snapshots() == []                                     # nothing created
    assert not list((ndump_env.state_dir / "snapshots").glob("*.json"))
    names = listing(run_ndump, img)
    assert "keep.txt" in names and "new-after-snapshot.txt" not in names
    assert header_path(img) == str(tree)
    out = tmp_path / "restored"
    out.mkdir()
    run_ndump("restore", "-x", "-y", "-f", img, "--target", out, status=0)
    assert (out / "keep.txt").read_text() == "original content\n"


def test_named_snapshot_errors(btrfs_fs, run_ndump, tmp_path):
    tree = btrfs_fs.vol / "srv"
    fill(tree)
    other = btrfs_fs.mnt / "other"
    sh("btrfs", "subvolume", "create", other)
    snap_other = btrfs_fs.mnt / "snap-of-other"
    sh("btrfs", "subvolume", "snapshot", "-r", other, snap_other)
    img = tmp_path / "x.img"
    cases = {
        str(tmp_path / "no-such-snapshot"): "not found",
        str(snap_other): "is not a snapshot of",
        str(tree / "aa"): "is not a btrfs snapshot",
    }
    for name, text in cases.items():
        res = run_ndump("dump", "-0", "-f", img, "--snapshot", name, tree, status=1)
        assert text in res.stderr and res.stderr.count("\n") <= 4, res.stderr
        assert not img.exists()


def test_killed_dump_leaves_a_snapshot_the_next_run_removes(btrfs_fs, start_ndump, run_ndump,
                                                           tmp_path, ndump_env):
    fill(btrfs_fs.vol / "srv")
    fifo = tmp_path / "dump.fifo"
    os.mkfifo(fifo)
    proc = start_ndump("dump", "-0", "-f", fifo, btrfs_fs.vol / "srv")
    wait_for(lambda: "Pass II" in stderr_of(proc), what="the walk in the snapshot")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert btrfs_fs.snapshots() == ["snapshot_for_backup.0"]               # left behind

    res = run_ndump("dump", "-0", "-f", tmp_path / "next.img", "--snapshot", "none",
                    btrfs_fs.vol / "srv", status=0)
    assert "removed btrfs snapshot" in res.stderr and f"pid {proc.pid}" in res.stderr
    assert btrfs_fs.snapshots() == []
    assert not list((ndump_env.state_dir / "snapshots").glob("*"))


def test_sigterm_removes_the_snapshot(btrfs_fs, start_ndump, tmp_path):
    fill(btrfs_fs.vol / "srv")
    fifo = tmp_path / "dump.fifo"
    os.mkfifo(fifo)
    proc = start_ndump("dump", "-0", "-f", fifo, btrfs_fs.vol / "srv")
    wait_for(lambda: "Pass II" in stderr_of(proc), what="the walk")
    assert btrfs_fs.snapshots() == ["snapshot_for_backup.0"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 3
    assert "interrupted by signal" in stderr_of(proc)
    assert "Traceback" not in stderr_of(proc)
    assert btrfs_fs.snapshots() == []


def test_killed_dump_with_a_private_top_mount_after_a_reboot(btrfs_fs, start_ndump, run_ndump,
                                                             tmp_path, ndump_env):
    """SIGKILL while ndump had the top level mounted privately, then a "reboot": the private
    mount is gone and so is the run directory; the record under the state directory still
    leads the next run to the snapshot (found again by the filesystem's UUID)."""
    fill(btrfs_fs.vol / "srv")
    sh("umount", btrfs_fs.mnt)
    only = btrfs_fs.base / "o"
    only.mkdir()
    sh("mount", "-o", "loop,subvol=vol", btrfs_fs.img, only)
    fifo = tmp_path / "dump.fifo"
    os.mkfifo(fifo)
    proc = start_ndump("dump", "-0", "-f", fifo, only / "srv")
    private = ndump_env.run_dir / "mnt" / "snapshot_for_backup.0"
    wait_for(lambda: "Pass II" in stderr_of(proc), what="the walk in the snapshot")
    assert (private / ".ndump-snapshots" / "snapshot_for_backup.0" / "srv").is_dir()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    sh("umount", private)                        # the reboot
    shutil.rmtree(ndump_env.run_dir)

    res = run_ndump("dump", "-0", "-f", tmp_path / "next.img", only / "srv", status=0)
    assert "removed btrfs snapshot" in res.stderr, res.stderr
    assert mounts_under(btrfs_fs.base) + mounts_under(tmp_path) == [str(only)]
    sh("mount", "-o", "loop", btrfs_fs.img, btrfs_fs.mnt)
    assert btrfs_fs.snapshots() == []


def test_btrfs_progs_missing_is_a_clear_error(btrfs_fs, run_ndump, tmp_path):
    fill(btrfs_fs.vol / "srv")
    bin_dir = tmp_path / "bin"                      # findmnt, mount, umount, but no btrfs
    bin_dir.mkdir()
    for tool in ("findmnt", "mount", "umount"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    img = tmp_path / "x.img"
    res = run_ndump("dump", "-0", "-f", img, btrfs_fs.vol / "srv", env={"PATH": str(bin_dir)},
                    status=1)
    assert res.stderr.strip().splitlines()[-1] == (
        f"DUMP: a btrfs snapshot of {btrfs_fs.vol / 'srv'} needs btrfs, which is not installed"
        " (install btrfs-progs, or use --snapshot none)")
    assert not img.exists() and btrfs_fs.snapshots() == []


def test_not_root_is_refused_before_anything(btrfs_fs, tmp_path):
    fill(btrfs_fs.vol / "srv")
    settings = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state", is_root=False)
    with pytest.raises(SnapshotError, match="needs root .run as root, or use --snapshot none"):
        open_snapshot(str(btrfs_fs.vol / "srv"), "auto", settings, Reporter("DUMP"))
    assert btrfs_fs.snapshots() == [] and not (tmp_path / "state" / "snapshots").exists()
