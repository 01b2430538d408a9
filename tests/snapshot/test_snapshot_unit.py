"""ndump.snapshot pieces without a snapshot: mount table parsing, sizes, the counter, records."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lvm_fakes import RECORDED
from ndump.errors import SnapshotError, UsageError
from ndump.report import Reporter
from ndump.settings import Settings
from ndump.snapshot import naming, open_snapshot, registry, remove_stale
from ndump.snapshot.detect import Mount, _parse_findmnt, dm_kind, find_mount, parse_mountinfo
from ndump.snapshot.lvm import MiB, parse_size, snapshot_size
from ndump.snapshot.tools import Result
from snaphelp import REPO_ROOT, sh

GiB = 1 << 30


def reporter() -> Reporter:
    return Reporter("DUMP", stream=io.StringIO())


# --- the mount table ------------------------------------------------------------------------------

def test_parse_mountinfo_with_escapes():
    text = ("46 27 0:40 / /tmp/bt/mnt rw,relatime - btrfs /dev/loop3 rw,subvolid=5,subvol=/\n"
            "47 27 0:40 /vol /tmp/sp\\040ace rw,relatime shared:1 - btrfs /dev/loop3 rw,subvol=/vol\n"
            "29 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n")
    m = parse_mountinfo(text)
    assert m[0] == Mount("/tmp/bt/mnt", "/dev/loop3", "btrfs", "/", "0:40")
    assert m[1] == Mount("/tmp/sp ace", "/dev/loop3", "btrfs", "/vol", "0:40")
    assert m[2].fstype == "ext4" and m[2].source == "/dev/vda"


def test_parse_findmnt_pairs():
    text = ('TARGET="/tmp/sp ace\\x22q" SOURCE="none" FSTYPE="tmpfs" FSROOT="/" MAJ:MIN="0:40"\n'
            + RECORDED["findmnt_target_root"]["stdout"])
    a, b = _parse_findmnt(text)
    assert a == Mount('/tmp/sp ace"q', "none", "tmpfs", "/", "0:40")
    assert (b.target, b.fsroot) == ("/", "/") and b.majmin.count(":") == 1


def test_fs_path_through_fsroot():
    whole = Mount("/srv", "/dev/sdb1", "btrfs", "/", "0:40")
    sub = Mount("/home", "/dev/sdb1", "btrfs", "/@home", "0:40")
    assert whole.fs_path("/srv") == "/" and whole.fs_path("/srv/a/b") == "/a/b"
    assert sub.fs_path("/home") == "/@home" and sub.fs_path("/home/u") == "/@home/u"


def test_find_mount_agrees_with_mountinfo(tmp_path):
    m = find_mount(str(tmp_path))
    with open("/proc/self/mountinfo") as f:
        targets = {x.target: x for x in parse_mountinfo(f.read())}
    assert m.target in targets and targets[m.target].fstype == m.fstype
    assert str(tmp_path).startswith(m.target)


def test_find_mount_without_findmnt(tmp_path, monkeypatch):
    with_findmnt = find_mount(str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_mount(str(tmp_path)) == with_findmnt


def test_dm_kind():
    assert dm_kind("/dev/vda") is None and dm_kind("tmpfs") is None
    assert dm_kind("/dev/mapper/vg0-data") in ("unknown", "lvm", "other")


# --- sizes and tool messages ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec,lv,want", [
    (None, 200 * MiB, 64 * MiB), (None, 10 * GiB, GiB), (None, 10 * MiB, 10 * MiB),
    ("10%", 10 * GiB, GiB), ("512M", GiB, 512 * MiB), ("100", GiB, 100 * MiB),
    ("1.5G", GiB, 1536 * MiB), ("2GiB", GiB, 2 * GiB), ("100k", GiB, MiB),
])
def test_snapshot_size(spec, lv, want):
    assert snapshot_size(spec, lv) == want


@pytest.mark.parametrize("bad", ["", "lots", "0", "-5M", "150%", "0%", "5X"])
def test_bad_snapshot_size(bad):
    with pytest.raises(UsageError, match="--snapshot-size"):
        parse_size(bad)


def test_tool_reasons_from_the_recording():
    def reason(key):
        r = json.loads(json.dumps(RECORDED[key]).replace("{MNT}", "/run/ndump/mnt/x"))
        return Result(tuple(r["argv"]), r["returncode"], r["stdout"], r["stderr"]).reason()
    assert reason("lvcreate_snapshot_no_dm") == \
        "snapshot: Required device-mapper target(s) not detected in your kernel"
    assert reason("lvcreate_snapshot_reserved_name") == \
        'Names starting "snapshot" are reserved. Please choose a different LV name'
    assert reason("umount_not_mounted") == "not mounted"
    assert reason("lvs_no_such_vg") == "Cannot process volume group vg0"


# --- the counter ---------------------------------------------------------------------------------------

def test_counter_skips_names_in_use_and_restarts_with_the_run_dir(tmp_path):
    s = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state")
    assert naming.claim(s, lambda n: n) == "snapshot_for_backup.0"
    assert naming.claim(s, lambda n: None if n.endswith(".1") else n) == "snapshot_for_backup.2"
    assert naming.peek(s) == 3
    (tmp_path / "run" / naming.COUNTER_FILE).unlink()                  # a reboot
    assert naming.claim(s, lambda n: n) == "snapshot_for_backup.0"
    assert naming.is_ndump_name("snapshot_for_backup.12") and not naming.is_ndump_name("x.1")


def test_concurrent_claims_get_distinct_numbers(tmp_path):
    code = ("import sys; from pathlib import Path; from ndump.settings import Settings;"
            "from ndump.snapshot import naming;"
            "print(naming.claim(Settings(run_dir=Path(sys.argv[1])), lambda n: n))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
             for _ in range(16)]
    names = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(names, key=lambda n: int(n.rsplit(".", 1)[1])) == \
        [f"snapshot_for_backup.{i}" for i in range(16)]


# --- records, stale cleanup, the context hook ---------------------------------------------------------

def _mount_record(s: Settings, tmp_path: Path) -> registry.Held:
    """A record of kind "mount" whose mount point does not exist: removing it is a no-op."""
    return registry.claim(s, "mount", "/srv", lambda n: {"mountpoint": str(tmp_path / "gone" / n),
                                                        "lv": "vg0/x"})


def test_live_records_are_not_stale_and_dead_ones_are(tmp_path):
    s = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state")
    held = _mount_record(s, tmp_path)
    assert held.record.name == "snapshot_for_backup.0"
    on_disk = json.loads(held.json_path.read_text())
    assert on_disk["pid"] == os.getpid() and on_disk["kind"] == "mount"
    assert list(registry.stale(s)) == []                  # our own lock counts as alive
    assert remove_stale(s, reporter()) == []
    held.close()                                          # as if the process had died
    assert remove_stale(s, reporter()) == ["snapshot_for_backup.0"]
    assert registry.live(s) == []


def test_a_record_held_by_a_context_is_kept(tmp_path, monkeypatch):
    s = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state")
    _mount_record(s, tmp_path).close()
    assert registry.held_by_context("snapshot_for_backup.0", s) is False   # the hook, for now
    monkeypatch.setattr(registry, "held_by_context",
                        lambda name, settings=None: name == "snapshot_for_backup.0")
    assert remove_stale(s, reporter()) == []
    assert [r.name for r in registry.live(s)] == ["snapshot_for_backup.0"]
    (tmp_path / "run" / naming.COUNTER_FILE).unlink()       # even after a reboot, the held
    other = _mount_record(s, tmp_path)
    assert other.record.name == "snapshot_for_backup.1"     # name is skipped
    monkeypatch.setattr(registry, "held_by_context", lambda name, settings=None: False)
    assert remove_stale(s, reporter()) == ["snapshot_for_backup.0"]
    other.forget()


def test_keep_leaves_the_record_for_a_context(tmp_path):
    from ndump.snapshot import Snapshot
    s = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state")
    held = _mount_record(s, tmp_path)
    snap = Snapshot("/srv", "/srv", name=held.record.name, kind="lvm", created=True, settings=s,
                    reporter=reporter(), _held=held)
    with snap:
        snap.keep()
    (rec,) = registry.live(s)
    assert rec.kept is True
    assert remove_stale(s, reporter()) == [rec.name]      # no context holds it: removed


def test_unreadable_record_is_reported_once(tmp_path):
    s = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state")
    (tmp_path / "state" / "snapshots").mkdir(parents=True)
    (tmp_path / "state" / "snapshots" / "snapshot_for_backup.7.json").write_text("{not json")
    r = reporter()
    assert remove_stale(s, r) == []
    assert "cannot read snapshot record" in r.stream.getvalue()


# --- open_snapshot without a snapshot-capable filesystem ------------------------------------------------

@pytest.mark.root
def test_auto_on_tmpfs_dumps_live_with_one_warning(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=4m", "ndumptest", mnt)
    try:
        s = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state")
        r = reporter()
        r.verbosity = 1                  # the line is verbose output only (cron stays silent)
        with open_snapshot(str(mnt), "auto", s, r) as snap:
            assert snap.live and snap.root == snap.origin == str(mnt) and not snap.created
        assert r.stream.getvalue() == (f"DUMP: {mnt} is on tmpfs (ndumptest), which cannot"
                                       " be snapshotted (not btrfs, not LVM): dumping the live tree\n")
        with pytest.raises(UsageError):
            open_snapshot(str(mnt), "auto", s, r, size="huge")
    finally:
        sh("umount", mnt)


def test_none_and_unknown_names(tmp_path):
    s = Settings(run_dir=tmp_path / "run", state_dir=tmp_path / "state")
    with open_snapshot(str(tmp_path), "none", s, reporter()) as snap:
        assert snap.live and snap.root == str(tmp_path)
    with pytest.raises(SnapshotError, match="snapshot no-such-thing not found"):
        open_snapshot(str(tmp_path), "no-such-thing", s, reporter())


def test_cli_auto_on_a_plain_filesystem_warns_and_dumps(tmp_path, run_ndump):
    tree = tmp_path / "t"
    (tree / "aa").mkdir(parents=True)
    res = run_ndump("dump", "-0", "-f", tmp_path / "o.img", tree, status=0)
    assert "cannot be snapshotted" not in res.stderr      # only in the verbose output
    res = run_ndump("dump", "-0", "-v", "-f", tmp_path / "o.img", tree, status=0)
    fs = find_mount(str(tree)).fstype
    if fs != "btrfs":
        assert "which cannot be snapshotted" in res.stderr
    res = run_ndump("dump", "-0", "-f", tmp_path / "o.img", "--snapshot-size", "zz", tree, status=1)
    assert res.stderr.strip().splitlines()[-1] == \
        "DUMP: --snapshot-size zz: give a size such as 512M, 2G or 10%"
