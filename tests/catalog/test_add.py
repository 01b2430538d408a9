"""catalog add / check / rebuild (issue 15 acceptance 3): indexing existing images,
stock dump's among them."""
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from stock import parse_listing, stock_restore

pytestmark = pytest.mark.compat

# not 'from conftest import': that finds whichever conftest module was imported first
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def _catalog_paths(run_ndump, image):
    """{path: ino} of the names `catalog add` recorded for IMAGE (the root left out)."""
    rows = sqlite3.connect(run_ndump.catalog).execute(
        "SELECT path, ino FROM files f JOIN dumps d ON d.id = f.dump WHERE d.medium = ?",
        (str(image),)).fetchall()
    return {p: i for p, i in rows if p != "."}


@pytest.fixture
def ndump(run_ndump, ndump_env):
    run_ndump.catalog = ndump_env.state_dir / "catalog.db"
    return run_ndump


@pytest.mark.parametrize("name", ["l0-basic", "l1-after-rename", "l0-zlib", "l0-sparse"])
def test_add_lists_what_stock_restore_lists(name, ndump, tmp_path):
    image = tmp_path / f"{name}.dump"
    shutil.copy(DATA_DIR / f"{name}.dump", image)
    proc = ndump("catalog", "add", image, status=0)
    assert f"{image}: level " in proc.stderr
    listed = parse_listing(stock_restore(["-t", "-f", image], cwd=tmp_path).stdout)
    assert _catalog_paths(ndump, image) == listed


def test_add_multi_volume_stock_set_and_direct_access(ndump, tmp_path):
    for n in (1, 2, 3):
        shutil.copy(DATA_DIR / f"multi-volume-00{n}.dump", tmp_path / f"mv00{n}")
    prefix = tmp_path / "mv"
    ndump("catalog", "add", "-M", prefix, status=0)
    listed = parse_listing(stock_restore(["-t", "-M", "-f", prefix], cwd=tmp_path).stdout)
    assert _catalog_paths(ndump, prefix) == listed
    db = sqlite3.connect(ndump.catalog)
    late = [p for p, v, t in db.execute("SELECT path, volume, type FROM files")
            if v == 3 and t == 0o100000][:3]
    assert late
    out = {k: tmp_path / k for k in ("plain", "direct")}
    for k, d in out.items():
        d.mkdir()
        args = ["-A", ndump.catalog] if k == "direct" else []
        err = ndump("restore", "-xv", "-M", "-f", prefix, *args, *late, cwd=d, status=0).stderr
    assert "direct access: " in err and "not placed" not in err
    for p in late:
        assert (out["direct"] / p).read_bytes() == (out["plain"] / p).read_bytes()


def test_add_twice_replaces_and_bad_images_are_problems(ndump, tmp_path):
    image = tmp_path / "l0.dump"
    shutil.copy(DATA_DIR / "l0-basic.dump", image)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 5000)
    ndump("catalog", "add", image, status=0)
    proc = ndump("catalog", "add", image, junk, tmp_path / "absent", status=2)
    assert f"{junk}: " in proc.stderr and "not a dump image" in proc.stderr
    assert f"{tmp_path / 'absent'}: " in proc.stderr
    dumps = json.loads(ndump("catalog", "list", "--json", status=0).stdout)
    assert len(dumps) == 1 and dumps[0]["status"] == "indexed"


def test_check_and_rebuild(ndump, tmp_path):
    images = []
    for name in ("l0-basic", "l1-after-rename"):
        images.append(tmp_path / f"{name}.dump")
        shutil.copy(DATA_DIR / f"{name}.dump", images[-1])
    ndump("catalog", "add", *images, status=0)
    assert ndump("catalog", "check", status=0).stdout.startswith(f"catalog {ndump.catalog}: ok, 2 dumps")
    before = ndump("catalog", "find", "--json", "*", status=0).stdout

    db = sqlite3.connect(ndump.catalog)
    db.execute("DELETE FROM files WHERE rowid IN (SELECT rowid FROM files LIMIT 3)")
    db.commit()
    db.close()
    proc = ndump("catalog", "check", status=2)
    assert "should have" in proc.stderr and proc.stderr.startswith("NDUMP: catalog ")

    ndump("catalog", "rebuild", status=0)              # from the images it lists
    assert ndump("catalog", "check", status=0).stdout.startswith(f"catalog {ndump.catalog}: ok")
    strip = lambda text: [dict(m, dump={k: v for k, v in m["dump"].items()
                                        if k not in ("id", "recorded")}) for m in json.loads(text)]
    assert strip(ndump("catalog", "find", "--json", "*", status=0).stdout) == strip(before)

    ndump.catalog.write_bytes(b"garbage" * 1000)       # corrupt: check says so, rebuild needs names
    proc = ndump("catalog", "check", status=1)
    assert proc.stderr.count("\n") == 1 and "not a database" in proc.stderr
    assert "name the images" in ndump("catalog", "rebuild", status=1).stderr
    ndump("catalog", "rebuild", *images, status=0)
    assert ndump("catalog", "check", status=0).stdout.startswith(f"catalog {ndump.catalog}: ok, 2 dumps")
