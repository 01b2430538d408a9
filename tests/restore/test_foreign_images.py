"""Images ndump did not write: stock dump 0.4b47's 255-byte names (-b 10, -b 63, and the
same converted to big-endian), its LZO records (-y).  tests/data/make_foreign.sh made the
images; foreign.json holds what stock restore -t listed and the real long name."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from foreign import compressed_to_big_endian, to_big_endian
from stock import parse_listing, stock_restore
from trees import diff_trees

LONGNAME_IMAGES = ["l0-longname-b10", "l0-longname-b63"]


@pytest.fixture(scope="module")
def facts(golden_dir):
    return json.loads((golden_dir / "foreign.json").read_text())


def _image(golden_dir, image_file, name: str, order: str):
    data = (golden_dir / f"{name}.dump").read_bytes()
    return image_file(to_big_endian(data) if order == "be" else data, f"{name}-{order}.dump")


def _long_entry(listing: dict[str, int]) -> str:
    names = [p for p in listing if p.startswith("names/") and len(p) > 200]
    assert len(names) == 1, names
    return names[0][len("names/"):]


def _check_recovered(name: str, real: str) -> int:
    """Every byte that survived is the real one; returns how many were lost ('?')."""
    assert len(name.encode()) == 255
    lost = [i for i, c in enumerate(name) if c != real[i]]
    assert all(name[i] == "?" for i in lost)
    assert name[-150:] == real[-150:]          # only the start can be written over
    return len(lost)


@pytest.mark.parametrize("order", ["le", "be"])
@pytest.mark.parametrize("name", LONGNAME_IMAGES)
def test_longname_listing_has_every_inode_stock_lists(name, order, facts, golden_dir,
                                                      image_file, restore):
    r = restore(_image(golden_dir, image_file, name, order), "t")
    assert r.status == 0, r.err
    listing = parse_listing(r.out)
    assert sorted(set(listing.values()) | {2}) == facts["images"][name]["stock_listing_inodes"]
    for after in ("names/owned", "names/utf8_ünï", "names/z-last", "names/a-first"):
        assert after in listing
    lost = _check_recovered(_long_entry(listing), facts["long_name"])
    assert 0 < lost < 100
    assert f"stock dump wrote over {lost} of the 255 bytes" in r.err


@pytest.mark.parametrize("order", ["le", "be"])
@pytest.mark.parametrize("name", LONGNAME_IMAGES)
def test_longname_restore_brings_back_every_file(name, order, facts, golden_dir, image_file,
                                                 restore, tmp_path):
    r = restore(_image(golden_dir, image_file, name, order), "r")
    assert r.status == 0, r.err
    out = tmp_path / "out"
    names = os.listdir(out / "names")
    long = [n for n in names if len(n) > 200]
    assert sorted(set(names) - set(long)) == ["a-first", "owned", "utf8_ünï", "z-last"]
    assert len(long) == 1
    _check_recovered(long[0], facts["long_name"])
    assert (out / "names" / long[0]).read_text() == "the 255-byte name\n"
    st = os.stat(out / "names/owned")
    assert (st.st_uid, st.st_gid) == (70000, 80000)
    assert (out / "names/z-last").read_text() == "last\n"
    assert (out / "text.txt").read_text().count("\n") == 1200
    assert len((out / "sub/random.bin").read_bytes()) == 12000


def _tree_digest(root) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            if rel != "restoresymtable" and stat.S_ISREG(os.lstat(p).st_mode):
                out[rel] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def test_lzo_image_restores_like_the_uncompressed_one(golden_dir, restore, tmp_path):
    """l0-lzo and l0-longname-b10 are dumps of the same filesystem state."""
    a, b = tmp_path / "lzo", tmp_path / "plain"
    a.mkdir(), b.mkdir()
    r = restore(golden_dir / "l0-lzo.dump", "r", target=a)
    assert r.status == 0, r.err
    assert restore(golden_dir / "l0-longname-b10.dump", "r", target=b).status == 0
    assert _tree_digest(a) == _tree_digest(b) and len(_tree_digest(a)) == 8


@pytest.mark.root
@pytest.mark.compat
def test_lzo_image_restores_identically_to_stock_restore(golden_dir, restore, tmp_path):
    ours, stock = tmp_path / "ours", tmp_path / "stock"
    ours.mkdir(), stock.mkdir()
    image = golden_dir / "l0-lzo.dump"
    r = restore(image, "r", target=ours)
    assert r.status == 0, r.err
    stock_restore(["-r", "-y", "-f", image], cwd=stock)
    # stock restore gives the 255-byte name back as one garbage byte; ndump recovers it
    stock_long = [n for n in os.listdir(stock / "names") if len(n) < 3 and n not in ("a",)]
    ours_long = [n for n in os.listdir(ours / "names") if len(n) == 255]
    assert len(ours_long) == 1 and len(stock_long) == 1
    os.rename(stock / "names" / stock_long[0], stock / "names" / ours_long[0])
    # (the rename just made changed names/ mtime in stock's tree)
    assert [d for d in diff_trees(ours, stock) if not d.startswith("'names': mtime")] == []


def test_lzo_without_lzokay_says_so_in_one_line(golden_dir, tmp_path):
    """An installation without the lzokay package: one line, start-up status 1, and not
    the false "the dump ends early" that followed it."""
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    code = ("import sys; sys.modules['lzokay'] = None; from ndump.cli import main;"
            f" sys.argv = ['ndump', 'restore', '-t', '-f', {str(golden_dir / 'l0-lzo.dump')!r}];"
            " raise SystemExit(main())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == ("RESTORE: the dump is LZO-compressed (dump -y); reading it needs"
                           " the Python package lzokay (pip install lzokay)\n")


@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_cut_short_in_the_volume_header_still_lists_the_header(blocks, facts, golden_dir,
                                                               tmp_path, run_ndump):
    """Cut after the TS_TAPE header, inside the maps: -t prints what it read of the header
    (the four lines stock restore prints) and then says where the dump ends."""
    cut = tmp_path / "cut.dump"
    cut.write_bytes((golden_dir / "l0-longname-b10.dump").read_bytes()[:blocks * 1024])
    proc = run_ndump("restore", "-t", "-f", cut, status=1, env={"TZ": "UTC"})
    stock_header = facts["images"]["l0-longname-b10"]["stock_listing"].splitlines()[:4]
    assert proc.stdout.splitlines() == stock_header
    hint, end = proc.stderr.splitlines()
    assert hint.startswith(f"RESTORE: {cut} ends before the dump does: volume 2 is needed")
    assert end == f"RESTORE: {cut}: the dump ends early, at block {blocks} of volume 1, without an end marker"


@pytest.mark.parametrize("size, detail", [
    (700, "cut short: it ends after 700 of the 1024 bytes of a dump header, magic 60012"),
    (20, "only 20 bytes, fewer than one dump header")])
def test_cut_short_inside_the_first_header(size, detail, golden_dir, tmp_path, run_ndump):
    cut = tmp_path / "cut.dump"
    cut.write_bytes((golden_dir / "l0-basic.dump").read_bytes()[:size])
    proc = run_ndump("restore", "-t", "-f", cut, status=1)
    assert proc.stdout == "" and proc.stderr == f"RESTORE: {cut} is not a dump image ({detail})\n"


@pytest.mark.parametrize("name, plain", [("l0-zlib", "l0-basic"), ("l0-bzip2", "l0-basic"),
                                         ("l0-lzo", "l0-longname-b10")])
def test_big_endian_compressed_images(name, plain, golden_dir, image_file, restore, tmp_path):
    """Compressed as on a big-endian machine: record prefixes in its byte order and
    bit-field layout; the same listing and files as the little-endian original."""
    be = image_file(compressed_to_big_endian((golden_dir / f"{name}.dump").read_bytes()),
                    f"{name}-be.dump")
    ours, base = tmp_path / "be", tmp_path / "le"
    ours.mkdir(), base.mkdir()
    r = restore(be, "t")
    assert r.status == 0, r.err
    assert r.out.splitlines()[4:] == restore(golden_dir / f"{plain}.dump", "t").out.splitlines()[4:]
    assert restore(be, "r", target=ours).status == 0
    assert restore(golden_dir / f"{plain}.dump", "r", target=base).status == 0
    assert diff_trees(base, ours) == []
