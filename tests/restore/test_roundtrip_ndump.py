"""ndump dump -> ndump restore: the full test tree comes back exactly, times to the
nanosecond and inode flags included (sockets are not dumped, SPEC §3.1)."""
from __future__ import annotations

import pytest

from trees import assert_trees_equal, build_full_tree, tree_state


def _without_sockets(root):
    state = tree_state(root)
    for rel in [rel for rel, e in state.items() if e.type == "socket"]:
        del state[rel]
    return state


@pytest.mark.parametrize("variant", [[], ["-b", "64"], ["-z"], ["-j"]])
def test_full_tree_round_trip(tmp_path, run_ndump, variant):
    src = tmp_path / "src"
    build_full_tree(src, big_sparse_size=8 << 20)
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", *variant, "-f", image, src, status=0)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-rf", image, "--target", out, status=0)
    assert_trees_equal(_without_sockets(src), out, ns=True, atime=True, flags=True)
    proc = run_ndump("restore", "-Cf", image, "--target", out)
    assert proc.returncode == 0, proc.stderr


def test_full_tree_through_a_pipe(tmp_path, run_ndump):
    src = tmp_path / "src"
    build_full_tree(src, devices=False, big_sparse_size=4 << 20)
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "-f", image, src, status=0)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-rf", "-", "--target", out, input=image.read_bytes(), status=0)
    assert_trees_equal(_without_sockets(src), out, ns=True, flags=True)


def test_extract_subtree_of_ndump_image(tmp_path, run_ndump):
    src = tmp_path / "src"
    build_full_tree(src, devices=False, big_sparse_size=4 << 20)
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "-f", image, src, status=0)
    out = tmp_path / "out"
    out.mkdir()
    run_ndump("restore", "-xf", image, "dirs", "hard/one", "--target", out, status=0)
    assert_trees_equal(src / "dirs", out / "dirs", ns=True, root=True)
    assert (out / "hard/one").read_bytes() == (src / "hard/one").read_bytes()
    assert not (out / "hard/sub").exists()
