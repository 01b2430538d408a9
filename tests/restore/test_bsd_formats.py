"""Dumps in the other layouts stock restore reads (FORMAT §2.3, format/bsd.py): the old
BSD header (OFS_MAGIC), 4.2BSD-4.3BSD (NFS_MAGIC without DR_NEWINODEFMT) and FreeBSD/
NetBSD UFS2 (FS_UFS2_MAGIC), each in both byte orders, made by tests/foreign.py from
the published layouts.  Where stock restore reads them too, its listing is the same."""
from __future__ import annotations

import os
import stat

import pytest

from foreign import BsdImage, bsd_extattr
from ndump.fsmeta import get_flags
from ndump.format import NODUMP_FL
from stock import RESTORE, parse_listing, run_tool

LAYOUTS = ["ofs", "4.3bsd", "ufs2"]
ORDERS = {"le": "<", "be": ">"}
DATA = bytes(range(256)) * 12                       # 3072 bytes
BIG = os.urandom(600 * 1024 + 100)                  # more than one header's block map


def _image(layout: str, order: str) -> BsdImage:
    img = BsdImage(layout, ORDERS[order])
    names = {"f": 3, "d": 4} if layout == "ofs" else {"f": 3, "d": 4, "sl": 6}
    img.dir(2, names)
    img.dir(4, {"big": 5}, mode=0o40750, uid=42, gid=43)
    extra = {}
    if layout == "ufs2":
        # beyond 2038, nanoseconds, a 32-bit owner, BSD's UF_NODUMP, extended attributes
        o = ORDERS[order]
        extra = dict(uid=70000, gid=80000, mtime=4_000_000_000, mtime_ns=123_456_789,
                     bsd_flags=0x1, ext_data=bsd_extattr(o, 1, "note", b"E" * 1500)
                     + bsd_extattr(o, 1, "k", b"v"))
    img.file(3, DATA, **{"uid": 1234, "gid": 56, "mtime": 1_500_000_000, **extra})
    img.file(5, BIG, mode=0o100600)
    if layout != "ofs":
        img.symlink(6, "f")
    return img


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_lists(layout, order, image_file, restore):
    r = restore(image_file(_image(layout, order).build()), "t")
    assert r.status == 0, r.err
    expect = {"f": 3, "d": 4, "d/big": 5} | ({} if layout == "ofs" else {"sl": 6})
    assert parse_listing(r.out) == expect


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_restores(layout, order, image_file, restore, tmp_path):
    r = restore(image_file(_image(layout, order).build()), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    f = os.stat(out / "f")
    assert (out / "f").read_bytes() == DATA
    assert (out / "d/big").read_bytes() == BIG
    assert stat.S_IMODE(os.stat(out / "d/big").st_mode) == 0o600
    d = os.stat(out / "d")
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid) == (0o750, 42, 43)
    if layout == "ufs2":
        assert (f.st_uid, f.st_gid) == (70000, 80000)
        assert f.st_mtime_ns == 4_000_000_000_123_456_789
        assert os.getxattr(out / "f", "user.note") == b"E" * 1500
        assert os.getxattr(out / "f", "user.k") == b"v"
        fd = os.open(out / "f", os.O_RDONLY)
        try:
            assert get_flags(fd) & NODUMP_FL
        finally:
            os.close(fd)
    else:
        assert (f.st_uid, f.st_gid, f.st_mtime_ns) == (1234, 56, 1_500_000_000 * 10**9)
    if layout != "ofs":
        assert os.readlink(out / "sl") == "f"


@pytest.mark.parametrize("order", list(ORDERS))
def test_ufs2_system_attributes_are_left_out_with_a_warning(order, image_file, restore, tmp_path):
    o = ORDERS[order]
    img = BsdImage("ufs2", o)
    img.dir(2, {"f": 3, "e": 4})
    img.file(3, b"", ext_data=bsd_extattr(o, 2, "posix1e.acl_access", bytes(28))
             + bsd_extattr(o, 1, "u", b"1"))
    img.file(4, b"x" * 5000)
    r = restore(image_file(img.build()), "r")
    assert r.status == 0, r.err
    assert r.err == ("RESTORE: warning: inode 3: 1 UFS2 system extended attribute(s) (BSD ACLs,"
                     " which Linux cannot take) left out\n")
    assert os.getxattr(tmp_path / "out/f", "user.u") == b"1"
    assert (tmp_path / "out/e").read_bytes() == b"x" * 5000


@pytest.mark.compat
@pytest.mark.parametrize("layout, order", [("ofs", "le"), ("4.3bsd", "le"), ("4.3bsd", "be"),
                                           ("ufs2", "le")])
def test_listing_equals_stock_restore(layout, order, image_file, tmp_path, run_ndump):
    """The layouts stock restore 0.4b47 reads itself (not OFS big-endian, not UFS2
    big-endian: it refuses them); same bytes on standard output."""
    image = image_file(_image(layout, order).build(), f"{layout}-{order}.dump")
    stock = run_tool([RESTORE, "-t", "-f", image], cwd=tmp_path, env={**os.environ, "TZ": "UTC"})
    ours = run_ndump("restore", "-t", "-f", image, status=0, env={"TZ": "UTC"})
    assert ours.stdout == stock.stdout
