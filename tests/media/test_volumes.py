"""Issue 4: blocking factors, pipes, multi-volume files, end of medium on a full
filesystem, compression."""
import os
import shutil
import subprocess
import sys

import pytest

from trees import assert_trees_equal, build_full_tree, build_tree, tree_state

pytestmark = [pytest.mark.compat]


def _tree(tmp_path):
    src = tmp_path / "src"
    build_full_tree(src, devices=os.geteuid() == 0, big_sparse_size=6 << 20)
    state = tree_state(src)
    for rel in [r for r, e in state.items() if e.type == "socket"]:
        del state[rel]                     # ndump skips sockets (SPEC §3.1)
    return src, state


def _stock(args, cwd, **kw):
    cwd.mkdir(exist_ok=True)
    proc = subprocess.run(["restore", *map(str, args)], cwd=cwd, capture_output=True,
                          stdin=subprocess.DEVNULL, **kw)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("b", [4, 10, 64, 256])
def test_blocking_factors(tmp_path, run_ndump, b):
    src = build_tree(tmp_path / "src", {"a": os.urandom(700_000), "d/b": b"b" * 3000})
    image = tmp_path / "x.dump"
    run_ndump("dump", "-0", "-b", b, "-f", image, src, status=0)
    assert image.stat().st_size % (b * 1024) == 0
    _stock(["-r", "-b", b, "-f", image], tmp_path / "stock")
    assert_trees_equal(src, tmp_path / "stock")
    (tmp_path / "nd").mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", tmp_path / "nd", status=0)
    assert_trees_equal(src, tmp_path / "nd")


def test_pipes(tmp_path):
    src, state = _tree(tmp_path)
    # this checkout's ndump, whatever the cwd (the second pipeline runs in stock/)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "NDUMP_STATE_DIR": str(tmp_path / "st"), "PYTHONPATH": repo}
    nd = tmp_path / "nd"
    nd.mkdir()
    cmd = (f"{sys.executable} -m ndump dump -0 -q -f - {src} | "
           f"{sys.executable} -m ndump restore -r -f - --target {nd}")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert_trees_equal(state, nd, ns=True)
    stock = tmp_path / "stock"
    stock.mkdir()
    cmd = f"{sys.executable} -m ndump dump -0 -q -f - {src} | restore -r -f -"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, cwd=stock,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert_trees_equal(state, stock)


def test_multi_volume_files(tmp_path, run_ndump):
    src, state = _tree(tmp_path)
    (src / "files" / "five-mib").write_bytes(os.urandom(5 << 20))
    state = tree_state(src)
    for rel in [r for r, e in state.items() if e.type == "socket"]:
        del state[rel]
    prefix = tmp_path / "vol"
    run_ndump("dump", "-0", "-M", "-B", "2048", "-f", prefix, src, status=0)
    vols = sorted(tmp_path.glob("vol0*"))
    assert len(vols) >= 3 and all(v.stat().st_size <= 2048 * 1024 for v in vols)
    (tmp_path / "nd").mkdir()
    run_ndump("restore", "-r", "-M", "-f", prefix, "--target", tmp_path / "nd", status=0)
    assert_trees_equal(state, tmp_path / "nd", ns=True)
    _stock(["-r", "-M", "-f", prefix], tmp_path / "stock")
    assert_trees_equal(state, tmp_path / "stock")


def test_volume_size_list_gives_each_volume_its_size(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": os.urandom(3_000_000)})
    prefix = tmp_path / "v"
    run_ndump("dump", "-0", "-M", "-B", "500,1000", "-f", prefix, src, status=0)
    sizes = [p.stat().st_size // 1024 for p in sorted(tmp_path.glob("v0*"))]
    assert sizes[0] == 500 and all(s == 1000 for s in sizes[1:-1]) and sizes[-1] <= 1000


@pytest.mark.root
@pytest.mark.parametrize("flags", [[], ["-z"]])
def test_full_filesystem_continues_on_a_volume_the_script_arranges(tmp_path, run_ndump,
                                                                    mounted_ext4, flags):
    src, state = _tree(tmp_path)
    small = tmp_path / "small.img"
    subprocess.run(["truncate", "-s", "2M", str(small)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(small)], check=True)
    _dev, mnt = mounted_ext4(small)
    saved = tmp_path / "saved"
    saved.mkdir()
    script = tmp_path / "next.sh"
    script.write_text(f'#!/bin/sh\nmv "$1" {saved}/vol$(printf %03d $(( $2 - 1 )))\nexit 0\n')
    script.chmod(0o755)
    proc = run_ndump("dump", "-0", *flags, "-F", script, "-f", mnt / "img", src, status=0)
    n = len(list(saved.iterdir()))
    assert n >= 1 and "Volume 2 begins" in proc.stderr
    shutil.move(mnt / "img", saved / f"vol{n + 1:03d}")
    (tmp_path / "nd").mkdir()
    run_ndump("restore", "-r", "-M", "-f", saved / "vol", "--target", tmp_path / "nd", status=0)
    assert_trees_equal(state, tmp_path / "nd", ns=True)
    _stock(["-r", "-M", "-f", saved / "vol"], tmp_path / "stock")
    assert_trees_equal(state, tmp_path / "stock")


def test_zstd_round_trip_and_stock_refuses_it(tmp_path, run_ndump):
    src, state = _tree(tmp_path)
    image = tmp_path / "z.dump"
    run_ndump("dump", "-0", "--zstd=5", "-f", image, src, status=0)
    (tmp_path / "nd").mkdir()
    run_ndump("restore", "-r", "-f", image, "--target", tmp_path / "nd", status=0)
    assert_trees_equal(state, tmp_path / "nd", ns=True)
    proc = subprocess.run(["restore", "-t", "-f", str(image)], capture_output=True, text=True,
                          input="n\n" * 20)
    assert "decompression error" in proc.stdout + proc.stderr


@pytest.mark.parametrize("flag", ["-z", "-j", "-z9"])
def test_compressed_multi_volume(tmp_path, run_ndump, flag):
    src, state = _tree(tmp_path)
    prefix = tmp_path / "cv"
    run_ndump("dump", "-0", flag, "-M", "-B", "600", "-f", prefix, src, status=0)
    assert len(list(tmp_path.glob("cv0*"))) >= 2
    (tmp_path / "nd").mkdir()
    run_ndump("restore", "-r", "-M", "-f", prefix, "--target", tmp_path / "nd", status=0)
    assert_trees_equal(state, tmp_path / "nd", ns=True)
    _stock(["-r", "-M", "-f", prefix], tmp_path / "stock")
    assert_trees_equal(state, tmp_path / "stock")
