"""Dumps in the other layouts stock restore reads (FORMAT §2.3, format/bsd.py): the old
BSD header (OFS_MAGIC), 4.2BSD-4.3BSD (NFS_MAGIC without DR_NEWINODEFMT) and FreeBSD/
NetBSD UFS2 (FS_UFS2_MAGIC), each in both byte orders, made by tests/foreign.py from
the published layouts.  Where stock restore reads them too, its listing is the same."""
from __future__ import annotations

import os
import stat

import pytest

from foreign import BsdImage
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
        extra = dict(uid=70000, gid=80000, mtime=4_000_000_000, mtime_ns=123_456_789,
                     bsd_flags=0x1, ext_data=b"E" * 1500)
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
        fd = os.open(out / "f", os.O_RDONLY)
        try:
            assert get_flags(fd) & NODUMP_FL
        finally:
            os.close(fd)
    else:
        assert (f.st_uid, f.st_gid, f.st_mtime_ns) == (1234, 56, 1_500_000_000 * 10**9)
    if layout != "ofs":
        assert os.readlink(out / "sl") == "f"


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
