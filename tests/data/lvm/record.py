#!/usr/bin/env python3
"""Record what the real lvm2, mount and umount print for the commands ndump runs.

    sudo python3 tests/data/lvm/record.py > tests/data/lvm/recorded.json

Needs root, a free loop device and lvm2; works without device-mapper (the
machines these tests run on have none): the volume group and the origin LV are
made with ``--driverloaded n -an -Zn`` (metadata only, no activation), which is
enough for lvs/vgs to report them and for lvcreate/lvremove to answer.  What
needs device-mapper (a snapshot that really gets created, a mount of it) cannot
be recorded here; documented.json holds those answers in the formats lvm2 and
util-linux document, labelled as such.  Everything is removed afterwards.

Paths that differ from run to run are written as placeholders: {MNT} (a mount
point), {DEV} (the loop device) and {DEVNAME} (its name).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

VG, LV = "vg0", "data"
SNAP = "ndump_snapshot_for_backup.0"
LVS = ["lvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
       "-o", "vg_name,lv_name,lv_size,lv_attr,lv_path,origin"]
VGS_FREE = ["vgs", "--noheadings", "--nosuffix", "--units", "b", "-o", "vg_free", VG]
NO_DM = ["--driverloaded", "n"]


def run(argv, subst):
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1", "LC_ALL": "C"})

    def clean(text):
        for real, placeholder in subst.items():
            text = text.replace(real, placeholder)
        return text

    return {"argv": [clean(a) for a in argv], "returncode": proc.returncode,
            "stdout": clean(proc.stdout), "stderr": clean(proc.stderr)}


def _remove_dead_dm_node() -> None:
    """lvm2 makes /dev/mapper/control even where the kernel has no device-mapper; a node
    that cannot be opened would make the test suite believe device-mapper is there."""
    try:
        os.close(os.open("/dev/mapper/control", os.O_RDWR))
    except FileNotFoundError:
        return
    except OSError:
        os.unlink("/dev/mapper/control")
        try:
            os.rmdir("/dev/mapper")
        except OSError:
            pass


def main() -> int:
    if os.geteuid() != 0:
        print("record.py needs root", file=sys.stderr)
        return 1
    had_dm_node = os.path.exists("/dev/mapper/control")
    work = tempfile.mkdtemp(prefix="ndump-lvm-rec-")
    img, mnt = os.path.join(work, "pv.img"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    with open(img, "wb") as f:
        f.truncate(400 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True,
                         check=True).stdout.strip()
    subst = {mnt: "{MNT}", dev: "{DEV}", os.path.basename(dev): "{DEVNAME}"}
    out: dict[str, dict] = {}
    try:
        lvm = subprocess.run(["lvm", "version"], capture_output=True, text=True).stdout
        out["_lvm_version"] = {"text": lvm.splitlines()[0].strip() if lvm else "?"}
        out["findmnt_target_root"] = run(["findmnt", "-n", "-P", "-v", "-o",
                                          "TARGET,SOURCE,FSTYPE,FSROOT,MAJ:MIN", "--target", "/"], subst)
        out["lvs_no_such_vg"] = run(LVS + [f"/dev/{VG}/{LV}"], subst)
        out["pvcreate"] = run(["pvcreate", dev], subst)
        out["vgcreate"] = run(["vgcreate", VG, dev], subst)
        out["lvcreate_origin"] = run(["lvcreate"] + NO_DM + ["-an", "-Zn", "-L", "200m", "-n", LV, VG], subst)
        out["lvs_origin_by_mapper_path"] = run(LVS + [f"/dev/mapper/{VG}-{LV}"], subst)
        out["lvs_origin_by_name"] = run(LVS + [f"{VG}/{LV}"], subst)
        out["lvs_not_an_lv"] = run(LVS + [dev], subst)
        out["lvs_no_such_lv"] = run(LVS + [f"{VG}/{SNAP}"], subst)
        out["vgs_free"] = run(VGS_FREE, subst)
        out["lvcreate_snapshot_no_dm"] = run(["lvcreate", "-s", "-n", SNAP, "-L", "64m", f"{VG}/{LV}"], subst)
        out["lvcreate_snapshot_reserved_name"] = run(
            ["lvcreate"] + NO_DM + ["-s", "-n", "snapshot_for_backup.0", "-L", "64m", f"{VG}/{LV}"], subst)
        out["lvcreate_snapshot_driverloaded_n"] = run(
            ["lvcreate"] + NO_DM + ["-s", "-n", SNAP, "-L", "64m", f"{VG}/{LV}"], subst)
        out["lvcreate_plain_created"] = run(["lvcreate"] + NO_DM + ["-an", "-Zn", "-L", "100m", "-n", "other", VG], subst)
        out["lvremove_plain_removed"] = run(["lvremove"] + NO_DM + ["-f", f"{VG}/other"], subst)
        out["lvremove_no_such_lv"] = run(["lvremove", "-f", f"{VG}/{SNAP}"], subst)
        out["lvcreate_insufficient_space"] = run(["lvcreate"] + NO_DM + ["-an", "-Zn", "-L", "1g", "-n", "big", VG], subst)
        out["lvcreate_fill"] = run(["lvcreate"] + NO_DM + ["-an", "-Zn", "-L", "196m", "-n", "fill", VG], subst)
        out["vgs_free_full"] = run(VGS_FREE, subst)
        out["mount_no_such_device"] = run(["mount", "-t", "ext4", "-o", "ro,noload", f"/dev/{VG}/{SNAP}", mnt], subst)
        out["mount_xfs_no_such_device"] = run(["mount", "-t", "xfs", "-o", "ro,nouuid,norecovery",
                                               f"/dev/{VG}/{SNAP}", mnt], subst)
        out["umount_not_mounted"] = run(["umount", mnt], subst)
        out["findmnt_source_not_mounted"] = run(["findmnt", "-n", "-P", "-v", "-o",
                                                 "TARGET,SOURCE,FSTYPE,FSROOT,MAJ:MIN", "--source",
                                                 f"/dev/{VG}/{SNAP}"], subst)
    finally:
        for argv in (["lvremove"] + NO_DM + ["-f", VG], ["vgremove", "-f", VG], ["pvremove", dev],
                     ["losetup", "-d", dev]):
            subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)
        os.unlink(img)
        os.rmdir(mnt)
        os.rmdir(work)
        if not had_dm_node:
            _remove_dead_dm_node()
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
