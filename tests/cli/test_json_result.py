"""--json: one object per run, valid against schemas/result.schema.json, for runs that
succeed (0), fail to start (1), leave files out (2) and abort (3)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from trees import build_tree

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "result.schema.json")
                    .read_text())


def _valid(obj: dict) -> dict:
    jsonschema.Draft202012Validator(SCHEMA).validate(obj)
    return obj


def _result(path: Path) -> dict:
    text = path.read_text()
    assert text.count("\n") == 1 and text.endswith("\n")       # one object, one line
    return _valid(json.loads(text))


@pytest.fixture
def image(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a/f1": b"one" * 1000, "a/f2": b"two", "b/f3": b"3"})
    out = tmp_path / "x.dump"
    run_ndump("dump", "-0", "-f", out, "--json", tmp_path / "dump.json", src)
    return src, out


def test_dump_success(tmp_path, image):
    src, out = image
    r = _result(tmp_path / "dump.json")
    assert (r["command"], r["status"], r["exit_status"], r["level"]) == ("dump", "ok", 0, 0)
    assert r["path"] == str(src) and r["base_date"] == "1970-01-01T00:00:00Z"
    assert r["bytes"] == out.stat().st_size and r["volumes"] == 1
    assert r["files"] == 6                # root, a, b and three files
    assert r["problems"] == [] and r["message"] is None and r["context_id"] is None


def test_incremental_dump_to_fd_and_estimate(tmp_path, image, run_ndump):
    src, _ = image
    run_ndump("dump", "-0", "-u", "-f", tmp_path / "l0", src)
    (src / "a" / "f2").write_bytes(b"changed")
    r_fd, w_fd = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-m", "ndump", "dump", "-1", "-f", "-", "--json",
                           f"fd:{w_fd}", str(src)], pass_fds=(w_fd,), capture_output=True, env=env)
    os.close(w_fd)
    with os.fdopen(r_fd) as f:
        r = _valid(json.loads(f.read()))
    assert proc.returncode == 0, proc.stderr
    assert r["level"] == 1 and r["base_date"] != "1970-01-01T00:00:00Z"
    assert r["bytes"] == len(proc.stdout)
    est = _valid(json.loads(run_ndump("dump", "-1", "-S", "--json", "-", src).stdout
                            .splitlines()[-1]))
    assert est["estimated_bytes"] > 0 and est["bytes"] is None


def test_restore_success(tmp_path, image, run_ndump):
    src, out = image
    (tmp_path / "t").mkdir()
    run_ndump("restore", "-r", "-f", out, "--target", tmp_path / "t", "--json", tmp_path / "r.json")
    r = _result(tmp_path / "r.json")
    assert (r["command"], r["status"], r["level"], r["path"]) == ("restore", "ok", 0, str(src))
    assert r["bytes"] == out.stat().st_size and r["files"] == 6


def test_partial_restore_exit_2(tmp_path, image, run_ndump):
    _, out = image
    (tmp_path / "t").mkdir()
    run_ndump("restore", "-x", "-f", out, "--target", tmp_path / "t", "--json", tmp_path / "r.json",
              "./a/f1", "./nope", status=2)
    r = _result(tmp_path / "r.json")
    assert (r["status"], r["exit_status"]) == ("partial", 2)
    assert r["problems"] == [{"path": "./nope", "reason": "not on the tape"}]
    assert (tmp_path / "t" / "a" / "f1").exists()


def test_aborted_restore_exit_3(tmp_path, image, run_ndump):
    _, out = image
    cut = tmp_path / "cut.dump"
    cut.write_bytes(out.read_bytes()[:out.stat().st_size // 2])
    (tmp_path / "t").mkdir()
    proc = run_ndump("restore", "-r", "-f", cut, "--target", tmp_path / "t", "--json",
                     tmp_path / "r.json", status=3)
    r = _result(tmp_path / "r.json")
    assert (r["status"], r["exit_status"]) == ("aborted", 3)
    assert r["message"] and r["message"] in proc.stderr


def test_startup_failure_exit_1(tmp_path, run_ndump):
    run_ndump("dump", "-0", "-f", tmp_path / "x", "--json", tmp_path / "d.json", tmp_path / "nope",
              status=1)
    r = _result(tmp_path / "d.json")
    assert (r["status"], r["exit_status"]) == ("failed", 1)
    assert "no such file or directory" in r["message"]


def test_bad_json_targets(tmp_path, run_ndump):
    src = build_tree(tmp_path / "src", {"a": b"1"})
    proc = run_ndump("dump", "-0", "-f", "-", "--json", "-", src, status=1)
    assert proc.stderr.count("\n") == 1 and "standard output" in proc.stderr
    proc = run_ndump("dump", "-0", "-f", tmp_path / "x", "--json", "fd:77", src, status=1)
    assert proc.stderr.count("\n") == 1 and "not open" in proc.stderr
    proc = run_ndump("dump", "-0", "-f", tmp_path / "x", "--json", tmp_path, src, status=1)
    assert proc.stderr.count("\n") == 1 and "directory" in proc.stderr
    proc = run_ndump("dump", "-0", "-f", tmp_path / "y", "--json", tmp_path / "no" / "r.json", src,
                     status=1)
    assert proc.stderr.count("\n") == 1 and "no such directory" in proc.stderr
    assert not (tmp_path / "y").exists()


def test_aborted_dump_exit_3(tmp_path, run_ndump):
    """A second volume is needed and no operator can be asked (-q): the dump aborts."""
    src = build_tree(tmp_path / "src", {"big": os.urandom(200_000)})
    run_ndump("dump", "-0", "-q", "-B", "50", "-f", tmp_path / "x", "--json", tmp_path / "d.json",
              "--snapshot", "none", src, status=3)
    r = _result(tmp_path / "d.json")
    assert (r["status"], r["exit_status"], r["level"]) == ("aborted", 3, 0)
    assert "no operator" in r["message"] and r["bytes"] is None and r["estimated_bytes"] > 200_000


@pytest.mark.root
def test_partial_dump_exit_2(tmp_path):
    """Root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH cannot read a mode-000 file."""
    src = build_tree(tmp_path / "src", {"ok": b"fine", "secret": b"s" * 5000})
    os.chmod(src / "secret", 0)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                           sys.executable, "-m", "ndump", "dump", "-0", "-f", str(tmp_path / "x"),
                           "--json", str(tmp_path / "d.json"), str(src)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    r = _result(tmp_path / "d.json")
    assert (r["status"], r["exit_status"]) == ("partial", 2)
    assert r["problems"] == [{"path": "./secret", "reason": "not dumped: permission denied"}]
    assert r["bytes"] == (tmp_path / "x").stat().st_size
