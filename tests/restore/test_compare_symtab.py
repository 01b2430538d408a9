"""restore -C, and the restoresymtable format."""
from __future__ import annotations

import os

import pytest

from craft import Craft
from ndump.restore.symtab import SymbolTable, SymtabError


def _image() -> Craft:
    img = Craft()
    img.dir(2, {"f": 3, "d": 4, "sl": 6, "sp": 7})
    img.dir(4, {"g": 5})
    img.file(3, b"content of f" * 50, xattrs=[("user.x", b"1")])
    img.file(5, b"g")
    img.symlink(6, "f")
    img.sparse(7, 2 << 20, {1 << 20: b"middle"})
    return img


def test_compare_clean_tree_then_changes(restore, image_file, tmp_path):
    image = image_file(_image())
    out = tmp_path / "out"
    assert restore(image, "r").status == 0
    r = restore(image, "C", target=out)
    assert r.status == 0, r.err
    before = os.stat(out / "f")
    (out / "f").write_bytes(b"Content of f" * 50)           # same size, other bytes
    os.utime(out / "f", ns=(before.st_atime_ns, before.st_mtime_ns))
    os.chmod(out / "d", 0o700)
    os.unlink(out / "sl")
    os.symlink("elsewhere", out / "sl")
    os.removexattr(out / "f", "user.x")
    (out / "d/g").unlink()
    r = restore(image, "C", target=out)
    assert r.status == 2
    assert "./f: tape and disk copies are different" in r.err
    assert "./f: extended attributes or ACLs changed" in r.err
    assert "./d: mode changed" in r.err
    assert "./sl: symbolic link target changed" in r.err
    assert "./d/g: does not exist" in r.err
    assert "./sp" not in r.err
    assert "compare errors" in r.err


def test_compare_named_paths(restore, image_file, tmp_path):
    image = image_file(_image())
    assert restore(image, "r").status == 0
    (tmp_path / "out/f").write_text("changed")
    assert restore(image, "C", "d").status == 0
    assert restore(image, "C", "f").status == 2


def test_symtab_round_trip():
    table = SymbolTable(dumpdate=5, dumptime=0, level=0, volume=1, maxino=100, ntrec=10,
                        state="complete", dirs={2: [(b"a", 3), (b"\xff\xfe weird", 4)]},
                        modes={2: 0o40755, 3: 0o100644})
    again = SymbolTable.from_bytes(table.to_bytes())
    assert again == table


@pytest.mark.parametrize("raw", [
    b"", b"not a table", b"ndump-restoresymtable 2\n{}",
    b"ndump-restoresymtable 1\n{]", b"ndump-restoresymtable 1\n{}",
    b'ndump-restoresymtable 1\n{"dumpdate":1,"dumptime":0,"level":0,"volume":1,"maxino":9,'
    b'"ntrec":10,"state":"complete","dirs":[[2,[["../x",3]]]],"modes":[]}',
    b'ndump-restoresymtable 1\n{"dumpdate":"1","dumptime":0,"level":0,"volume":1,"maxino":9,'
    b'"ntrec":10,"state":"complete","dirs":[],"modes":[]}',
])
def test_symtab_rejects_foreign_or_damaged(raw):
    with pytest.raises(SymtabError):
        SymbolTable.from_bytes(raw)
