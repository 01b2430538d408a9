"""Trees at the limits (defects 2 and 3): paths far longer than PATH_MAX, and a
file whose attribute name list is more than listxattr can return."""
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from stock import have_stock_tools

LEVELS = 24
LONG = 255


def _dir_name(level: int) -> bytes:
    return b"%02d" % level + b"d" * (LONG - 3)        # 254 bytes: stock restore lists them


def _deepest_name() -> bytes:
    return b"z" * LONG


def _build_deep(root):
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(LEVELS):
            f = os.open(b"file%02d" % level, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(f, b"level %d\n" % level)
            os.close(f)
            os.mkdir(_dir_name(level), dir_fd=fd)
            sub = os.open(_dir_name(level), os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        f = os.open(_deepest_name(), os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, b"deepest\n")
        os.close(f)
    finally:
        os.close(fd)


def _contents(root) -> dict[bytes, bytes]:
    """{relative path: contents} of every file, walked by descriptor."""
    out = {}

    def walk(fd, prefix):
        for name in sorted(map(os.fsencode, os.listdir(fd))):
            if os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode & 0o170000 == 0o040000:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                try:
                    walk(sub, prefix + name + b"/")
                finally:
                    os.close(sub)
            else:
                f = os.open(name, os.O_RDONLY, dir_fd=fd)
                out[prefix + name] = os.read(f, 1 << 16)
                os.close(f)

    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk(top, b"")
    finally:
        os.close(top)
    return out


@pytest.fixture
def btrfs_mount(tmp_path):
    """A real btrfs on a loop device (mount -o loop: the device goes with umount)."""
    mnt = Path(tempfile.mkdtemp(prefix="ndx-", dir="/tmp"))
    img = tmp_path / "btrfs.img"
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    subprocess.run(["mkfs.btrfs", "-q", str(img)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        os.rmdir(mnt)


def test_paths_longer_than_path_max(tmp_path, run_ndump):
    src = tmp_path / "src"
    _build_deep(src)
    want = _contents(src)
    assert len(want) == LEVELS + 1 and max(map(len, want)) > 6000
    image = tmp_path / "x.dump"
    run_ndump("dump", "-0", "-q", "-f", image, src, status=0)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", out, status=0)
    got = {k: v for k, v in _contents(out).items() if not k.startswith(b"restoresymtable")}
    assert got == want
    if have_stock_tools():
        listing = subprocess.run(["restore", "-t", "-f", str(image)], capture_output=True,
                                 check=True).stdout
        listed = {line.split(b"\t", 1)[1].removeprefix(b"./") for line in listing.splitlines()
                  if b"\t" in line}
        assert {k for k in want if not k.endswith(_deepest_name())} <= listed


@pytest.mark.btrfs
def test_attribute_list_over_64k_is_reported_not_dropped(tmp_path, run_ndump, btrfs_mount):
    """10,000 user attributes on btrfs: listxattr cannot return their names
    (E2BIG); the file is reported and the dump is not recorded as complete."""
    src = btrfs_mount / "src"
    src.mkdir()
    many = src / "many"
    many.write_bytes(b"data")
    for i in range(10_000):
        os.setxattr(many, f"user.attribute-{i:05d}", b"v")
    (src / "plain").write_bytes(b"p")
    with pytest.raises(OSError) as err:
        os.listxattr(many)
    assert err.value.errno == 7                       # E2BIG: the kernel's 64 KiB limit
    proc = run_ndump("dump", "-0", "-u", "--snapshot", "none", "-f", tmp_path / "x.dump", src,
                     status=2)
    assert "many: cannot read extended attributes" in proc.stderr
    assert "not updated" in proc.stderr
