"""SPEC §5.4 permission mapping: ACLs onto a filesystem without them, default-ACL
inheritance, owner/group maps, and restore as an unprivileged user."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import pytest

from craft import Craft
from stock import StockToolError
from trees import acl_from_xattr, acl_to_xattr
from ndump.errors import StartupError
from ndump.restore.perms import acl_entries, acl_mode, inherit, load_id_map

ACCESS = "system.posix_acl_access"
DEFAULT = "system.posix_acl_default"
REPO = Path(__file__).resolve().parents[2]


def _acl(text: str) -> tuple[str, bytes]:
    return ACCESS, acl_to_xattr(text)


def _acl_of(path) -> str | None:
    try:
        return acl_from_xattr(os.getxattr(path, ACCESS, follow_symlinks=False))
    except OSError:
        return None


# -- pure functions ------------------------------------------------------------------------------
def test_acl_mode_takes_the_group_bits_from_the_mask():
    assert acl_mode(acl_entries(acl_to_xattr("u::rw-,u:1000:rwx,g::r--,m::r-x,o::---"))) == 0o650
    assert acl_mode(acl_entries(acl_to_xattr("u::rwx,g::r-x,o::r--"))) == 0o754
    assert acl_entries(b"junk") is None


def test_inherit_masks_the_default_acl_with_the_mode():
    default = acl_entries(acl_to_xattr("u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x"))
    acl, bits = inherit(default, 0o640)
    assert bits == 0o640
    assert acl_from_xattr(b"\x02\0\0\0" + b"".join(
        __import__("struct").pack("<HHI", *e) for e in acl)) == "u::rw-,u:1000:rwx,g::r-x,m::r--,o::---"


def test_id_maps(tmp_path):
    f = tmp_path / "owners"
    f.write_text("# old new\n1000 2000\nroot 3000  # by name\n\n")
    assert load_id_map(f, "owner") == {1000: 2000, 0: 3000}
    f.write_text("1000\n")
    with pytest.raises(StartupError, match="expected 'OLD NEW'"):
        load_id_map(f, "owner")
    f.write_text("no-such-group-here 1\n")
    with pytest.raises(StartupError, match="no group named"):
        load_id_map(f, "group")
    with pytest.raises(StartupError, match="cannot read"):
        load_id_map(tmp_path / "missing", "group")


# -- onto ext4 mounted noacl ---------------------------------------------------------------------
def _acl_image():
    img = Craft()
    img.dir(2, {"masked": 3, "nomask": 4, "plain": 5, "d": 6})
    img.dir(6, {"inner": 7}, xattrs=[_acl("u::rwx,u:1000:r-x,g::r-x,m::r-x,o::---"),
                                     (DEFAULT, acl_to_xattr("u::rwx,g::r-x,o::---"))],
            mode=0o777, parent=2)
    img.file(3, b"m", mode=0o644, xattrs=[_acl("u::rw-,u:1000:rwx,g::r--,m::r-x,o::---")])
    img.file(4, b"n", mode=0o600, xattrs=[_acl("u::rwx,g::r-x,o::r--")])
    img.file(5, b"p", mode=0o604)
    img.file(7, b"i", mode=0o644, xattrs=[_acl("u::r--,u:1000:rw-,g::---,m::rw-,o::r--")])
    return img


@pytest.fixture
def noacl_mount(tmp_path, ext4_image, mounted_ext4):
    """ext4 mounted -o noacl; kernels that dropped ext4's noacl option (6.x) refuse it,
    and then btrfs mounted -o noacl (which still has it) stands in."""
    try:
        yield mounted_ext4(ext4_image(size_mb=256), options="noacl")[1]
        return
    except StockToolError:
        pass
    if not shutil.which("mkfs.btrfs"):
        pytest.fail("this kernel's ext4 has no noacl option and mkfs.btrfs is missing")
    img = tmp_path / "noacl-btrfs.img"
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["mkfs.btrfs", "-q", img], check=True, capture_output=True)
    mnt = tmp_path / "noacl-mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "btrfs", "-o", "loop,noacl", img, mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=True)


@pytest.mark.root
def test_onto_a_filesystem_mounted_noacl(image_file, run_ndump, noacl_mount):
    mnt = noacl_mount
    proc = run_ndump("restore", "-r", "-f", image_file(_acl_image()), "--target", mnt, status=0)
    assert proc.stderr.count("warning") == 1, proc.stderr
    assert "does not support POSIX ACLs" in proc.stderr
    modes = {n: stat.S_IMODE(os.lstat(mnt / n).st_mode) for n in ("masked", "nomask", "plain", "d",
                                                                  "d/inner")}
    assert modes == {"masked": 0o650, "nomask": 0o754, "plain": 0o604, "d": 0o750, "d/inner": 0o464}


# -- default ACLs of the target -------------------------------------------------------------------
def _inherit_image():
    img = Craft()
    img.dir(2, {"plain": 3, "own": 4, "sub": 5, "setgid": 7})
    img.dir(5, {"deeper": 6}, mode=0o751, parent=2)
    img.file(3, b"p", mode=0o664)
    img.file(4, b"o", mode=0o640, xattrs=[_acl("u::rw-,u:2000:r--,g::r--,m::r--,o::---")])
    img.file(6, b"d", mode=0o600)
    img.file(7, b"s", mode=0o2755)
    return img


def test_a_file_without_an_acl_inherits_the_default_acl(restore, image_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.setxattr(out, DEFAULT, acl_to_xattr("u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x"))
    r = restore(image_file(_inherit_image()), "x")
    assert r.status == 0, r.err
    assert _acl_of(out / "plain") == "u::rw-,u:1000:rwx,g::r-x,m::rw-,o::r--"
    assert stat.S_IMODE(os.stat(out / "plain").st_mode) == 0o664
    assert _acl_of(out / "own") == "u::rw-,u:2000:r--,g::r--,m::r--,o::---"     # keeps its own
    assert _acl_of(out / "sub") == "u::rwx,u:1000:rwx,g::r-x,m::r-x,o::--x"
    assert _acl_of(out / "sub/deeper") == "u::rw-,u:1000:rwx,g::r-x,m::---,o::---"
    assert os.stat(out / "setgid").st_mode & 0o7777 == 0o2755 if os.geteuid() == 0 else True


def test_no_inherit(restore, image_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.setxattr(out, DEFAULT, acl_to_xattr("u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x"))
    r = restore(image_file(_inherit_image()), "x", no_inherit=True)
    assert r.status == 0, r.err
    assert _acl_of(out / "plain") is None
    assert stat.S_IMODE(os.stat(out / "plain").st_mode) == 0o664
    assert _acl_of(out / "own") == "u::rw-,u:2000:r--,g::r--,m::r--,o::---"
    assert _acl_of(out / "sub") is None
    with pytest.raises(OSError):
        os.getxattr(out / "sub", DEFAULT)
    assert stat.S_IMODE(os.stat(out / "sub").st_mode) == 0o751


# -- owner and group maps -------------------------------------------------------------------------
@pytest.mark.root
def test_owner_and_group_maps(tmp_path, image_file, run_ndump):
    img = Craft().dir(2, {"a": 3, "b": 4, "l": 5}, uid=1000, gid=1000)
    img.file(3, b"a", uid=1000, gid=100).file(4, b"b", uid=1001, gid=1001)
    img.symlink(5, "a", uid=1000, gid=100)
    (tmp_path / "owners").write_text("1000 2000\n")
    (tmp_path / "groups").write_text("100 daemon\n")
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", image_file(img), "--target", out, "--owner-map",
              tmp_path / "owners", "--group-map", tmp_path / "groups", status=0)
    owners = {n: (os.lstat(out / n).st_uid, os.lstat(out / n).st_gid) for n in ("a", "b", "l", ".")}
    assert owners == {"a": (2000, 1), "b": (1001, 1001), "l": (2000, 1), ".": (2000, 1000)}


def test_a_bad_map_stops_before_anything_is_written(restore, image_file, tmp_path):
    (tmp_path / "owners").write_text("1 2 3\n")
    img = Craft().dir(2, {"a": 3}).file(3, b"a")
    with pytest.raises(StartupError):
        restore(image_file(img), "r", owner_map=tmp_path / "owners")
    assert os.listdir(tmp_path / "out") == []


# -- as an unprivileged user ---------------------------------------------------------------------
@pytest.fixture
def shared_dir():
    """A directory everyone can enter (tmp_path is root's alone), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="ndump-nobody-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody_python(shared: Path) -> list[str]:
    """/usr/bin/python3 with a readable copy of ndump and click (pyenv lives under /root)."""
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    lib = shared / "lib"
    shutil.copytree(REPO / "ndump", lib / "ndump", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(click.__file__).parent, lib / "click",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, dirnames, filenames in os.walk(shared):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python]


@pytest.mark.root
def test_restore_as_an_unprivileged_user(shared_dir):
    argv = _as_nobody_python(shared_dir)
    img = Craft().dir(2, {"suid": 3, "sgid": 4, "plain": 5, "d": 6, "l": 8}, uid=0, gid=0)
    img.dir(6, {"f": 7}, mode=0o2775, uid=123, gid=456, parent=2)
    img.file(3, b"s", mode=0o4755, uid=0, gid=0)
    img.file(4, b"g", mode=0o2711, uid=1, gid=1,
             xattrs=[("security.test", b"x"), ("trusted.t", b"y"), ("user.keep", b"z")])
    img.file(5, b"p", mode=0o640, uid=42, gid=42)
    img.file(7, b"f", mode=0o1644)
    img.symlink(8, "plain")
    (shared_dir / "img.dump").write_bytes(img.build())
    os.chmod(shared_dir / "img.dump", 0o644)
    out = shared_dir / "out"
    out.mkdir()
    os.chown(out, 65534, 65534)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shared_dir / "lib"),
           "NDUMP_STATE_DIR": str(out / ".state"), "NDUMP_RUN_DIR": str(out / ".run"), "HOME": "/"}
    proc = subprocess.run(argv + ["-m", "ndump", "restore", "-r", "-f", shared_dir / "img.dump",
                                  "--target", out], env=env, capture_output=True, text=True,
                          cwd=shared_dir, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("suid", "sgid", "plain", "d", "d/f", "l"):
        st = os.lstat(out / name)
        assert (st.st_uid, st.st_gid) == (65534, 65534), name
    assert stat.S_IMODE(os.stat(out / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "sgid").st_mode) == 0o711
    assert stat.S_IMODE(os.stat(out / "d").st_mode) == 0o775
    assert stat.S_IMODE(os.stat(out / "d/f").st_mode) == 0o1644
    assert os.getxattr(out / "sgid", "user.keep") == b"z"
    names = os.listxattr(out / "sgid")
    assert not [n for n in names if n.startswith(("security.test", "trusted."))]
