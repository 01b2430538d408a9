"""LVM snapshots against recorded lvm2 behaviour (issue 5, acceptance 4).

This kernel has no device-mapper, so the commands are answered by fakes that
replay tests/data/lvm/ (see lvm_fakes.py and tests/data/lvm/README.md): the
tests pin down the exact command sequence, the failure paths (nothing written,
exit 1, cleanup of what was made) and the cleanup of a killed dump's snapshot.
The fake ``mount`` copies a "snapshot view" of the tree into the mount point,
different from the live tree, so the tests also see that the dump reads the
snapshot.  One real-LVM test at the end runs where device-mapper exists.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from lvm_fakes import FakeTools, recorded_or_documented
from ndump.errors import SnapshotError
from ndump.format import unpack_header
from ndump.report import Reporter
from ndump.settings import Settings
from ndump.snapshot import open_snapshot
from snaphelp import sh, stderr_of, wait_for

SNAP = "snapshot_for_backup.0"
LV = "ndump_snapshot_for_backup.0"


class Scene:
    """A live tree that findmnt places on /dev/mapper/vg0-data, its snapshot view, fakes."""

    def __init__(self, tmp_path: Path, run_dir: Path):
        self.tmp = tmp_path
        self.live = tmp_path / "live"
        self.view = tmp_path / "snapshot-view"
        for root, marker in ((self.live, "live"), (self.view, "snapshot")):
            (root / "aa" / "sub").mkdir(parents=True)
            (root / "aa" / "sub" / "file.txt").write_text(f"{marker}\n")
            (root / f"only-in-{marker}.txt").write_text(f"{marker}\n")
        self.mnt = run_dir / "mnt" / SNAP
        self.fakes = FakeTools(tmp_path)
        self.out = tmp_path / "out.img"

    def answer(self, key, **kw):
        return self.fakes.answer(key, TREE=self.live, MNT=self.mnt, **kw)

    def happy(self, *, fstype: str = "ext4", through: str = "lvremove",
              path: Path | None = None) -> list[list[str]]:
        """Answers for a successful run of a dump of ``path`` (default: the mount point, the
        live tree), up to the tool ``through``; returns the expected call sequence."""
        on_lv = "findmnt_target_on_lv" + ("_xfs" if fstype == "xfs" else "")
        mount = "mount_ok" if fstype == "ext4" else "mount_xfs_no_such_device"
        steps = [
            ("findmnt", on_lv, {"argv": recorded_or_documented(on_lv)[0]["argv"][:-1]
                                + [str(path or self.live)]}),
            ("lvs", "lvs_origin_active", {}), ("vgs", "vgs_free", {}),
            ("lvcreate", "lvcreate_snapshot_created", {}),
            ("mount", "mount_ok", {"effect": ("copy", str(self.view)), "argv": [
                a.replace("{MNT}", str(self.mnt))
                for a in recorded_or_documented(mount)[0]["argv"]]}),
            ("umount", "umount_ok", {"effect": ("empty",)}),
            ("lvremove", "lvremove_snapshot_removed", {}),
        ]
        calls = []
        for tool, key, kw in steps:
            calls.append(self.answer(key, **kw))
            if tool == through:
                break
        return calls

    def dump(self, run_ndump, *args, path=None, status=None, tools=None):
        self.fakes.install(*([tools] if tools else []))
        return run_ndump("dump", "-0", "-f", self.out, *args, path or self.live,
                         env=self.fakes.env(), status=status)

    def listing(self, run_ndump) -> set[str]:
        out = run_ndump("restore", "-t", "-f", self.out, status=0).stdout
        return {ln.split(None, 1)[1].removeprefix("./") for ln in out.splitlines()
                if ln.split(None, 1)[:1] and ln.split()[0].isdigit()}


@pytest.fixture
def scene(tmp_path, ndump_env):
    return Scene(tmp_path, ndump_env.run_dir)


def records(ndump_env) -> list[str]:
    return sorted(p.name for p in (ndump_env.state_dir / "snapshots").glob("*.json"))


@pytest.mark.parametrize("fstype,options", [("ext4", "ro,noload"), ("xfs", "ro,nouuid,norecovery")])
def test_snapshot_sequence(scene, run_ndump, ndump_env, fstype, options):
    expected = scene.happy(fstype=fstype)
    res = scene.dump(run_ndump, status=0)
    assert scene.fakes.calls() == expected
    assert expected[3] == ["lvcreate", "-s", "-n", LV, "-L", "64m", "vg0/data"]   # 10% < 64 MiB
    assert expected[4] == ["mount", "-t", fstype, "-o", options, f"/dev/vg0/{LV}", str(scene.mnt)]
    assert f"LVM snapshot vg0/{LV} (64.0 MiB) mounted on {scene.mnt}" in res.stderr
    names = scene.listing(run_ndump)
    assert "only-in-snapshot.txt" in names and "only-in-live.txt" not in names
    assert unpack_header(scene.out.read_bytes()[:1024]).filesys == str(scene.live)[:63]
    assert not scene.mnt.exists() and records(ndump_env) == []


def test_commands_match_the_recording():
    """The argv ndump runs are the ones recorded from the real tools (tests/data/lvm)."""
    rec = json.loads((Path(__file__).parents[1] / "data" / "lvm" / "recorded.json").read_text())
    lvs = ["lvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
           "-o", "vg_name,lv_name,lv_size,lv_attr,lv_path,origin"]
    assert rec["lvs_origin_by_mapper_path"]["argv"] == lvs + ["/dev/mapper/vg0-data"]
    assert rec["lvs_origin_by_mapper_path"]["stdout"].strip().split("|")[:3] == \
        ["vg0", "data", "209715200"]
    assert rec["lvcreate_snapshot_no_dm"]["argv"] == \
        ["lvcreate", "-s", "-n", LV, "-L", "64m", "vg0/data"]
    assert rec["lvremove_no_such_lv"]["argv"] == ["lvremove", "-f", f"vg0/{LV}"]
    assert "reserved" in rec["lvcreate_snapshot_reserved_name"]["stderr"]   # why the ndump_ prefix
    from ndump.snapshot import lvm
    assert lvm.LVS_FIELDS == "vg_name,lv_name,lv_size,lv_attr,lv_path,origin"
    assert lvm.LV_PREFIX + SNAP == LV


def test_path_below_the_mount_point(scene, run_ndump):
    """PATH's counterpart: the snapshot's mount point plus PATH's place in its filesystem."""
    sub = scene.live / "aa"
    expected = scene.happy(path=sub)
    scene.dump(run_ndump, path=sub, status=0)
    assert scene.fakes.calls() == expected
    assert scene.listing(run_ndump) >= {"sub", "sub/file.txt"}
    out = scene.tmp / "x"
    out.mkdir()
    run_ndump("restore", "-x", "-y", "-f", scene.out, "--target", out, status=0)
    assert (out / "sub" / "file.txt").read_text() == "snapshot\n"
    assert unpack_header(scene.out.read_bytes()[:1024]).filesys == str(sub)[:63]


def test_no_space_in_the_volume_group(scene, run_ndump, ndump_env):
    expected = [scene.answer("findmnt_target_on_lv"), scene.answer("lvs_origin_active"),
                scene.answer("vgs_free_full")]
    res = scene.dump(run_ndump, status=1)
    assert scene.fakes.calls() == expected                           # no lvcreate
    assert res.stderr.strip().splitlines()[-1] == (
        "DUMP: volume group vg0 has 0 B free, the snapshot of vg0/data needs 64.0 MiB: free"
        " space in vg0, give a smaller --snapshot-size, or use --snapshot none")
    assert not scene.out.exists() and records(ndump_env) == []


def test_snapshot_size_option(scene, run_ndump):
    scene.answer("findmnt_target_on_lv")
    scene.answer("lvs_origin_active")
    scene.answer("vgs_free")
    res = scene.dump(run_ndump, "--snapshot-size", "1G", status=1)
    assert "vg0 has 196.0 MiB free, the snapshot of vg0/data needs 1.0 GiB" in res.stderr
    res = scene.dump(run_ndump, "--snapshot-size", "lots", status=1)
    assert "--snapshot-size lots: give a size such as 512M, 2G or 10%" in res.stderr


@pytest.mark.parametrize("failure", ["lvcreate_snapshot_no_dm", "lvcreate_snapshot_insufficient_space"])
def test_lvcreate_fails(scene, run_ndump, ndump_env, failure):
    expected = scene.happy(through="vgs")
    expected.append(scene.answer(failure))
    res = scene.dump(run_ndump, status=1)
    assert scene.fakes.calls() == expected                           # nothing to remove
    reason = recorded_or_documented(failure)[0]["stderr"].strip().splitlines()
    reason = [r.strip() for r in reason if not r.strip().startswith("Run `")][-1].rstrip(".")
    assert res.stderr.strip().splitlines()[-1] == \
        f"DUMP: cannot create an LVM snapshot of vg0/data: {reason}"
    assert not scene.out.exists() and records(ndump_env) == [] and not scene.mnt.exists()


def test_mount_fails_and_the_snapshot_is_removed(scene, run_ndump, ndump_env):
    expected = scene.happy(through="lvcreate")
    expected.append(scene.answer("mount_no_such_device"))
    expected.append(scene.answer("umount_not_mounted"))
    expected.append(scene.answer("lvremove_snapshot_removed"))
    res = scene.dump(run_ndump, status=1)
    assert scene.fakes.calls() == expected
    assert res.stderr.strip().splitlines()[-1] == (
        f"DUMP: cannot mount LVM snapshot vg0/{LV} read-only: special device /dev/vg0/{LV}"
        " does not exist")
    assert not scene.out.exists() and records(ndump_env) == [] and not scene.mnt.exists()


def test_dump_error_after_the_snapshot_cleans_up(scene, run_ndump, ndump_env):
    expected = scene.happy()
    scene.out = "/dev/full"          # opens, then refuses every write: after the snapshot
    res = scene.dump(run_ndump)
    assert res.returncode == 3 and "/dev/full: no space left on device (the medium or filesystem is full)" in res.stderr
    assert scene.fakes.calls() == expected                           # umount + lvremove ran
    assert records(ndump_env) == [] and not scene.mnt.exists()


def test_unmount_fails_the_next_run_finishes(scene, run_ndump, ndump_env):
    expected = scene.happy(through="mount")
    expected.append(scene.answer("umount_busy"))
    res = scene.dump(run_ndump, status=0)
    assert scene.fakes.calls() == expected                           # no lvremove while mounted
    assert f"cannot unmount {scene.mnt}: target is busy; the next ndump run will remove it" \
        in res.stderr
    assert records(ndump_env) == [f"{SNAP}.json"]

    scene.fakes.answers.clear()
    scene.fakes.clear_log()
    cleanup = [scene.answer("umount_ok", effect=("empty",)), scene.answer("lvs_snapshot"),
               scene.answer("lvremove_snapshot_removed")]
    scene.fakes.install()
    res = run_ndump("dump", "-0", "-f", scene.tmp / "next.img", "--snapshot", "none",
                    scene.live, env=scene.fakes.env(), status=0)
    assert scene.fakes.calls() == cleanup
    assert f"removed LVM snapshot vg0/{LV} left by an interrupted dump" in res.stderr
    assert records(ndump_env) == []


def test_killed_dump_is_cleaned_up_by_the_next_run(scene, start_ndump, run_ndump, ndump_env):
    scene.happy()
    scene.fakes.install()
    fifo = scene.tmp / "out.fifo"
    os.mkfifo(fifo)
    proc = start_ndump("dump", "-0", "-f", fifo, scene.live, env=scene.fakes.env())
    wait_for(lambda: "Pass II" in stderr_of(proc), what="the walk")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert [c[0] for c in scene.fakes.calls()] == ["findmnt", "lvs", "vgs", "lvcreate", "mount"]
    assert records(ndump_env) == [f"{SNAP}.json"]
    record = json.loads((ndump_env.state_dir / "snapshots" / f"{SNAP}.json").read_text())
    assert record["pid"] == proc.pid and record["kind"] == "lvm"

    scene.fakes.answers.clear()
    scene.fakes.clear_log()
    cleanup = [scene.answer("umount_ok", effect=("empty",)), scene.answer("lvs_snapshot"),
               scene.answer("lvremove_snapshot_removed")]
    scene.fakes.install()
    res = run_ndump("dump", "-0", "-f", scene.tmp / "next.img", "--snapshot", "none",
                    scene.live, env=scene.fakes.env(), status=0)
    assert scene.fakes.calls() == cleanup
    assert f"(pid {proc.pid})" in res.stderr
    assert records(ndump_env) == [] and not scene.mnt.exists()


def test_leftover_that_is_not_a_snapshot_is_never_removed(scene, start_ndump, run_ndump, ndump_env):
    scene.happy()
    scene.fakes.install()
    fifo = scene.tmp / "out.fifo"
    os.mkfifo(fifo)
    proc = start_ndump("dump", "-0", "-f", fifo, scene.live, env=scene.fakes.env())
    wait_for(lambda: "Pass II" in stderr_of(proc), what="the walk")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    scene.fakes.answers.clear()
    scene.fakes.clear_log()
    cleanup = [scene.answer("umount_ok", effect=("empty",)), scene.answer("lvs_not_a_snapshot")]
    scene.fakes.install()
    res = run_ndump("dump", "-0", "-f", scene.tmp / "next.img", "--snapshot", "none",
                    scene.live, env=scene.fakes.env(), status=0)
    assert scene.fakes.calls() == cleanup                            # no lvremove
    assert "is not a snapshot (attributes -wi-ao----); not removing it" in res.stderr
    assert records(ndump_env) == [f"{SNAP}.json"]                   # tried again next time


def test_lvm2_not_installed(scene, run_ndump, ndump_env):
    scene.answer("findmnt_target_on_lv")
    res = scene.dump(run_ndump, status=1, tools=("findmnt", "mount", "umount"))
    assert res.stderr.strip().splitlines()[-1] == (
        f"DUMP: an LVM snapshot of {scene.live} (on /dev/mapper/vg0-data) needs lvs, which is"
        " not installed (install lvm2, or use --snapshot none)")
    assert [c[0] for c in scene.fakes.calls()] == ["findmnt"]
    assert not scene.out.exists()


def test_not_root_is_refused_before_anything(scene, monkeypatch, tmp_path):
    scene.answer("findmnt_target_on_lv")
    scene.fakes.install()
    for k, v in scene.fakes.env().items():
        monkeypatch.setenv(k, v)
    settings = Settings.from_environ()
    object.__setattr__(settings, "is_root", False)
    with pytest.raises(SnapshotError, match=r"needs root \(run as root, or use --snapshot none"):
        open_snapshot(str(scene.live), "auto", settings, Reporter("DUMP"))
    assert [c[0] for c in scene.fakes.calls()] == ["findmnt"]


def test_existing_lvm_snapshot_is_mounted_read_and_left(scene, run_ndump, ndump_env):
    """--snapshot VG/LV: checked with lvs to be a snapshot of PATH's LV, mounted read-only
    (it was not mounted), dumped, unmounted; never created nor removed."""
    device = "/dev/vg0/before_upgrade"
    expected = [scene.answer("lvs_user_snapshot"), scene.answer("findmnt_target_on_lv"),
                scene.answer("lvs_origin_active"),
                scene.answer("findmnt_source_not_mounted",
                             argv=["findmnt", "-n", "-P", "-v", "-o",
                                   "TARGET,SOURCE,FSTYPE,FSROOT,MAJ:MIN", "--source", device])]
    scene.answer("mount_ok", argv=["mount", "-t", "ext4", "-o", "ro,noload", device],
                 prefix=True, effect=("copy", str(scene.view)))
    scene.answer("umount_ok", argv=["umount"], prefix=True, effect=("empty",))
    res = scene.dump(run_ndump, "--snapshot", "vg0/before_upgrade", status=0)
    calls = scene.fakes.calls()
    assert calls[:4] == expected
    mountpoint = calls[4][-1]
    assert calls[4:] == [["mount", "-t", "ext4", "-o", "ro,noload", device, mountpoint],
                         ["umount", mountpoint]]
    assert Path(mountpoint).parent == ndump_env.run_dir / "mnt"
    assert not Path(mountpoint).exists() and records(ndump_env) == []
    assert f"from LVM snapshot vg0/before_upgrade mounted on {mountpoint}" in res.stderr
    names = scene.listing(run_ndump)
    assert "only-in-snapshot.txt" in names and "only-in-live.txt" not in names


def test_existing_lvm_snapshot_of_another_lv_is_refused(scene, run_ndump):
    scene.answer("lvs_user_snapshot")
    scene.answer("findmnt_target_on_lv")
    scene.fakes.answer("lvs_origin_active", argv=None)
    scene.fakes.answers[-1]["stdout"] = "  vg0|home|209715200|-wi-ao----|/dev/vg0/home|\n"
    res = scene.dump(run_ndump, "--snapshot", "vg0/before_upgrade", status=1)
    assert res.stderr.strip().splitlines()[-1] == (
        f"DUMP: vg0/before_upgrade is a snapshot of vg0/data, not of vg0/home which holds"
        f" {scene.live}")
    assert not [c for c in scene.fakes.calls() if c[0] in ("lvcreate", "lvremove", "mount")]


# --- real LVM (only where device-mapper exists) ---------------------------------------------------

@pytest.mark.lvm
@pytest.mark.root
def test_real_lvm_snapshot(tmp_path, run_ndump, ndump_env):
    """A VG on a loop device, an ext4 LV with a tree, a dump with --snapshot auto: the
    snapshot exists during the dump and is gone afterwards; the dump holds the tree."""
    try:
        os.close(os.open("/dev/mapper/control", os.O_RDWR))
    except OSError as e:
        pytest.skip(f"device-mapper: /dev/mapper/control cannot be opened ({e.strerror})")
    img = tmp_path / "pv.img"
    with open(img, "wb") as f:
        f.truncate(400 << 20)
    dev = sh("losetup", "-f", "--show", img).stdout.strip()
    vg = f"ndumptest{os.getpid()}"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        sh("pvcreate", "-q", dev)
        sh("vgcreate", "-q", vg, dev)
        sh("lvcreate", "-q", "-y", "-L", "200m", "-n", "data", vg)
        sh("mkfs.ext4", "-q", f"/dev/{vg}/data")
        sh("mount", f"/dev/{vg}/data", mnt)
        (mnt / "aa").mkdir()
        (mnt / "aa" / "f.txt").write_text("x\n")
        res = run_ndump("dump", "-0", "-f", tmp_path / "out.img", mnt, status=0)
        assert f"LVM snapshot {vg}/{LV}" in res.stderr
        out = sh("lvs", "--noheadings", "-o", "lv_name", vg).stdout.split()
        assert out == ["data"]
        listing = run_ndump("restore", "-t", "-f", tmp_path / "out.img", status=0).stdout
        assert "aa/f.txt" in listing
        assert records(ndump_env) == []
    finally:
        sh("umount", mnt, check=False)
        sh("lvremove", "-f", vg, check=False)
        sh("vgremove", "-f", vg, check=False)
        sh("pvremove", dev, check=False)
        sh("losetup", "-d", dev, check=False)
