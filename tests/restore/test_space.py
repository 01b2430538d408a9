"""SPEC §5.2: the space and inode check before a restore writes anything, and --force."""
from __future__ import annotations

import os
import re

import pytest

from craft import Craft
from ndump.restore import space

MIB = 1 << 20


def _tree_of(tmp_path, name: str, files: int, size: int):
    root = tmp_path / name
    root.mkdir()
    for i in range(files):
        (root / f"f{i:03d}").write_bytes(os.urandom(size))
    return root


def _dump(run_ndump, tmp_path, tree):
    img = tmp_path / f"{tree.name}.dump"
    run_ndump("dump", "-0", "-f", img, "--snapshot", "none", tree, status=0)
    return img


def _contents(mnt):
    return sorted(n for n in os.listdir(mnt) if n != "lost+found")


@pytest.mark.root
def test_a_60_mb_dump_onto_a_40_mb_filesystem(tmp_path, run_ndump, ext4_image, mounted_ext4):
    tree = _tree_of(tmp_path, "big", 15, 4 * MIB)
    img = _dump(run_ndump, tmp_path, tree)
    _, mnt = mounted_ext4(ext4_image(size_mb=40))

    proc = run_ndump("restore", "-r", "-f", img, "--target", mnt, status=1)
    # the headroom is 10 % of the 40 MB filesystem, not 100 MiB
    assert re.search(rf"need 60(\.\d)? MiB \+ [34](\.\d)? MiB on {re.escape(str(mnt))}, have [\d.]+ MiB",
                     proc.stderr), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _contents(mnt) == []

    proc = run_ndump("restore", "-r", "-f", img, "--target", mnt, "--force", status=3)
    restored = [n for n in _contents(mnt) if n.startswith("f")]
    assert 0 < len(restored) < 15
    missing = {line.split(":")[1].strip() for line in proc.stderr.splitlines()
               if "not restored" in line}
    assert missing and all(os.path.basename(m) not in restored for m in missing), proc.stderr
    assert len(missing) + len(restored) >= 15
    for name in restored:                      # what it kept is whole
        assert (mnt / name).read_bytes() == (tree / name).read_bytes()


@pytest.mark.root
def test_too_few_inodes(tmp_path, run_ndump, ext4_image, mounted_ext4):
    tree = _tree_of(tmp_path, "many", 120, 10)
    img = _dump(run_ndump, tmp_path, tree)
    _, mnt = mounted_ext4(ext4_image(size_mb=200, inodes=64))
    proc = run_ndump("restore", "-r", "-f", img, "--target", mnt, status=1)
    assert "need 120 inodes on" in proc.stderr and " free" in proc.stderr, proc.stderr
    assert _contents(mnt) == []

    proc = run_ndump("restore", "-r", "-f", img, "--target", mnt, env={"NDUMP_FORCE": "Y"}, status=3)
    assert "not restored" in proc.stderr
    restored = [n for n in _contents(mnt) if n.startswith("f")]
    assert 0 < len(restored) < 120


def test_the_totals_of_an_ndump_image_are_used(tmp_path, run_ndump, restore):
    tree = _tree_of(tmp_path, "small", 3, 100_000)
    img = _dump(run_ndump, tmp_path, tree)
    r = restore(img, "r", verbose=1)
    assert r.status == 0, r.err
    assert "space check: need" in r.err and "the dump's totals" in r.err


def test_a_quick_pass_measures_a_subset(tmp_path, restore, image_file):
    img = Craft().dir(2, {"a": 3, "b": 4, "d": 5}).dir(5, {"c": 6})
    img.file(3, os.urandom(10 * 1024)).file(4, os.urandom(3 * 1024))
    img.sparse(6, 8 * MIB, {0: b"x" * 1024, 4 * MIB: b"y" * 2048})
    path = image_file(img)
    r = restore(path, "x", "d", verbose=1)
    assert r.status == 0, r.err
    assert "a quick pass over the image" in r.err
    assert "need 7 KiB + 100 MiB and 2 inodes" in r.err, r.err   # 3 KiB of data + a directory


def test_stock_image_through_a_pipe_cannot_be_checked(golden_dir, tmp_path, run_ndump):
    out = tmp_path / "out"
    out.mkdir()
    data = (golden_dir / "l0-basic.dump").read_bytes()
    proc = run_ndump("restore", "-x", "-f", "-", "--target", out, input=data, status=0)
    assert "warning: cannot check the space" in proc.stderr
    assert os.listdir(out)


def test_stock_image_file_is_measured(golden_dir, tmp_path, restore):
    r = restore(golden_dir / "l0-basic.dump", "r", verbose=1)
    assert r.status == 0, r.err
    assert "a quick pass over the image" in r.err


def test_not_enough_room_in_process(tmp_path, restore, image_file, monkeypatch):
    monkeypatch.setattr(space, "RESERVE", 1 << 60)
    monkeypatch.setattr(space, "RESERVE_SHARE", 1)
    img = Craft().dir(2, {"a": 3}).file(3, b"x")
    from ndump.errors import NoSpaceError
    with pytest.raises(NoSpaceError, match=r"need 1 KiB \+ [\d.]+ [KMGT]iB on .*, have "):
        restore(image_file(img), "r")
    assert os.listdir(tmp_path / "out") == []
    r = restore(image_file(img), "r", force=True)
    assert r.status == 0 and (tmp_path / "out/a").read_bytes() == b"x"


def test_dry_run_does_not_check(tmp_path, restore, image_file, monkeypatch):
    monkeypatch.setattr(space, "RESERVE", 1 << 60)
    monkeypatch.setattr(space, "RESERVE_SHARE", 1)
    img = Craft().dir(2, {"a": 3}).file(3, b"x")
    assert restore(image_file(img), "r", dry_run=True).status == 0


@pytest.mark.root
def test_small_extraction_into_a_small_filesystem(tmp_path, run_ndump, ext4_image, mounted_ext4):
    """Issue 12: the headroom is the smaller of 100 MiB and 10 % of the filesystem."""
    tree = _tree_of(tmp_path, "small", 3, 3000)
    img = _dump(run_ndump, tmp_path, tree)
    _, mnt = mounted_ext4(ext4_image(size_mb=60))
    assert space.free_space(mnt).free_bytes < 100 * MIB
    proc = run_ndump("restore", "-x", "-v", "-f", img, "--target", mnt, "f001", status=0)
    assert re.search(r"space check: need \d+ KiB \+ [56](\.\d)? MiB", proc.stderr), proc.stderr
    assert (mnt / "f001").read_bytes() == (tree / "f001").read_bytes()


def test_headroom_is_proportionate():
    have = space.Have(free_bytes=0, free_inodes=None, mount=None, size=60 * MIB)
    assert have.reserve == 6 * MIB
    assert space.Have(0, None, None, size=10 << 30).reserve == 100 * MIB
    assert space.Have(0, None, None).reserve == 100 * MIB        # size unknown


@pytest.mark.parametrize("n, text", [(0, "0 B"), (512, "512 B"), (100 * MIB, "100 MiB"),
                                     (int(12.4 * 1024 * MIB), "12.4 GiB"), (1536, "1.5 KiB")])
def test_human(n, text):
    assert space.human(n) == text


def _multi_prefix(golden_dir, tmp_path):
    for n in (1, 2, 3):
        (tmp_path / f"mv-{n:03d}").symlink_to(golden_dir / f"multi-volume-{n:03d}.dump")
    return str(tmp_path / "mv-")


def test_multi_volume_files_are_measured(golden_dir, tmp_path, restore):
    r = restore(_multi_prefix(golden_dir, tmp_path), "r", verbose=1, multi_volume=True)
    assert r.status == 0, r.err
    assert "warning: cannot check" not in r.err
    # big-200k + d/big-150k + small (3000 B in 3 blocks) + z-last (1 block), and 2 directories
    m = re.search(r"need (\d+) KiB \+ 100 MiB and 6 inodes \(a quick pass over the image\)", r.err)
    assert m and int(m.group(1)) == 200 + 150 + 3 + 1 + 2 * 4, r.err


@pytest.mark.parametrize("how, reason", [
    ("volume-1-alone", "the dump goes on to volume 2, which is not at hand"),
    ("compressed", "the image is compressed"),
    ("pipe", "the input is not a regular file"),
])
def test_the_warning_gives_the_real_reason(how, reason, golden_dir, tmp_path, run_ndump):
    out = tmp_path / "out"
    out.mkdir()
    image = {"volume-1-alone": "multi-volume-001", "compressed": "l0-zlib",
             "pipe": "l0-basic"}[how]
    path = golden_dir / f"{image}.dump"
    args = ["restore", "-x", "--target", out, "-f", "-" if how == "pipe" else path]
    proc = run_ndump(*args, input=path.read_bytes() if how == "pipe" else None)
    warnings = [line for line in proc.stderr.splitlines() if "cannot check the space" in line]
    assert len(warnings) == 1 and "the dump records no totals and " + reason in warnings[0]
    assert "not a seekable uncompressed image" not in proc.stderr
