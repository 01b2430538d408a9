"""Direct access restore (issue 15 acceptance 2): restore -x -A CATALOG seeks to the
requested files and gives what a plain -x gives."""
import os
from pathlib import Path
import sqlite3
import subprocess
import sys

import pytest

from trees import assert_trees_equal, build_tree, tree_state

# runs ndump's main() and reports the bytes this process read (read(2), pread(2)) while
# it ran, from /proc/self/io: every byte taken from the image, whichever code read it
_COUNTING = """
import sys
from ndump.cli import main
def rchar():
    with open("/proc/self/io") as f:
        return int(next(l for l in f if l.startswith("rchar:")).split()[1])
before = rchar()
status = main(sys.argv[1:])
sys.stderr.write(f"\\nREAD {rchar() - before}\\n")
sys.exit(status)
"""


def _restore_counting(args, cwd, ndump_env):
    repo = Path(__file__).resolve().parents[2]      # not 'from conftest import' (ambiguous)
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.run([sys.executable, "-c", _COUNTING, "restore", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc, int(proc.stderr.rsplit("READ ", 1)[1])


def _extract(run_ndump, tmp_path, name, image, *args, paths=()):
    out = tmp_path / name
    out.mkdir()
    proc = run_ndump("restore", "-xv", "-f", image, *args, *paths, cwd=out, status=0)
    return out, proc.stderr


@pytest.mark.slow
def test_one_file_near_the_end_of_a_2_gib_image(tmp_path, run_ndump, ndump_env):
    src = tmp_path / "src"
    (src / "zz").mkdir(parents=True)
    with open(src / "big", "wb") as f:            # 2 GiB of allocated zeros, written in no time
        os.posix_fallocate(f.fileno(), 0, 2 << 30)
    (src / "zz/last").write_bytes(os.urandom(300_000))
    image = tmp_path / "big.dump"
    # the image's zero blocks become holes (cp --sparse): 2 GiB that costs no disk
    dump = subprocess.Popen([sys.executable, "-m", "ndump", "dump", "-0", "--snapshot", "none",
                             "--no-checksums", "-f", "-", str(src)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    subprocess.run(["cp", "--sparse=always", "/dev/stdin", str(image)], stdin=dump.stdout,
                   check=True)
    dump.stdout.close()
    assert dump.wait() == 0
    size = image.stat().st_size
    assert size > 2 << 30

    catalog = ndump_env.state_dir / "catalog.db"
    (tmp_path / "plain").mkdir()
    (tmp_path / "direct").mkdir()
    _, plain_read = _restore_counting(["-x", "-f", image, "zz/last"], tmp_path / "plain", ndump_env)
    proc, direct_read = _restore_counting(["-xv", "-A", catalog, "-f", image, "zz/last"],
                                          tmp_path / "direct", ndump_env)
    assert "direct access: " in proc.stderr
    print(f"image {size} bytes: plain -x read {plain_read}, direct read {direct_read}")
    assert plain_read > size                    # the measure sees a whole read...
    assert direct_read < size // 100, (direct_read, size)     # ...and this is not one
    assert (tmp_path / "direct/zz/last").read_bytes() == (src / "zz/last").read_bytes()
    assert_trees_equal(tree_state(tmp_path / "plain"), tmp_path / "direct", root=False)


SPEC = {f"d{i}/f{j}": os.urandom(1000 * (i * 7 + j)) for i in range(6) for j in range(8)}
SPEC["top"] = b"t" * 70000


def _tree(tmp_path):
    src = build_tree(tmp_path / "src", SPEC)
    os.link(src / "d3/f1", src / "d5/linked")
    os.symlink("d0/f1", src / "d4/sym")
    return src


def test_direct_equals_plain_x(tmp_path, run_ndump, ndump_env):
    src = _tree(tmp_path)
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    catalog = ndump_env.state_dir / "catalog.db"
    paths = ["d1/f3", "d4", "d5/linked", "top", "d3/f1"]
    plain, _ = _extract(run_ndump, tmp_path, "plain", image, paths=paths)
    direct, err = _extract(run_ndump, tmp_path, "direct", image, "-A", catalog, paths=paths)
    assert "direct access: " in err and "not placed" not in err
    assert_trees_equal(tree_state(plain), direct, root=False)
    assert (direct / "d4/sym").is_symlink() and (direct / "d5/linked").stat().st_nlink == 2


def test_wrong_positions_fall_back_to_reading(tmp_path, run_ndump, ndump_env):
    src = _tree(tmp_path)
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "--snapshot", "none", "-f", image, src, status=0)
    catalog = ndump_env.state_dir / "catalog.db"
    db = sqlite3.connect(catalog)
    db.execute("UPDATE files SET offset = offset + 1024")      # every position off by a block
    db.commit()
    db.close()
    paths = ["d1/f3", "d0", "top"]
    plain, _ = _extract(run_ndump, tmp_path, "plain", image, paths=paths)
    direct, err = _extract(run_ndump, tmp_path, "direct", image, "-A", catalog, paths=paths)
    assert "10 inode(s) not placed by the catalog: reading the dump" in err
    assert_trees_equal(tree_state(plain), direct, root=False)


def test_unknown_dump_or_catalog_reads_the_whole_dump(tmp_path, run_ndump, ndump_env):
    src = _tree(tmp_path)
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "--no-catalog", "--snapshot", "none", "-f", image, src, status=0)
    other = build_tree(tmp_path / "other", {"x": b"x"})
    # (a level 1: a level 0 in the same second, of a tree whose path shares the 63
    # bytes a header keeps, would be this dump as far as the header can tell)
    run_ndump("dump", "-1", "--snapshot", "none", "-f", tmp_path / "o.dump", other, status=0)
    catalog = ndump_env.state_dir / "catalog.db"
    plain, _ = _extract(run_ndump, tmp_path, "plain", image, paths=["d2"])
    direct, err = _extract(run_ndump, tmp_path, "direct", image, "-A", catalog, paths=["d2"])
    assert "warning: direct access not used: catalog" in err and "does not know this dump" in err
    assert_trees_equal(tree_state(plain), direct, root=False)
    missing, err = _extract(run_ndump, tmp_path, "missing", image, "-A", tmp_path / "none.db",
                            paths=["d2"])
    assert "warning: direct access not used: no catalog at" in err
    assert_trees_equal(tree_state(plain), missing, root=False)


def test_multi_volume_set(tmp_path, run_ndump, ndump_env):
    src = _tree(tmp_path)
    prefix = tmp_path / "vol"
    run_ndump("dump", "-0", "--snapshot", "none", "-M", "-B", "100", "-f", prefix, src, status=0)
    assert (tmp_path / "vol004").exists()
    catalog = ndump_env.state_dir / "catalog.db"
    db = sqlite3.connect(catalog)
    vols = dict(db.execute("SELECT path, volume FROM files"))
    assert len(set(vols.values())) >= 4
    paths = [p for p, v in sorted(vols.items()) if v >= 2 and "/" in p][:6] + ["top"]
    plain, _ = _extract(run_ndump, tmp_path, "plain", prefix, "-M", paths=paths)
    direct, err = _extract(run_ndump, tmp_path, "direct", prefix, "-M", "-A", catalog, paths=paths)
    assert "direct access: " in err and "not placed" not in err
    assert_trees_equal(tree_state(plain), direct, root=False)
