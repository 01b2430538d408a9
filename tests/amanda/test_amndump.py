"""amndump under real Amanda 3.5.1 (Debian amanda-server/amanda-client), no mocks.

One Amanda set on this machine: auth local, a chg-disk vtape changer on a loop ext4
filesystem, a disklist entry with program "APPLICATION" and application "amndump".
amcheck, amdump level 0, changes, amdump level 1, amadmin find, amfetchdump of
the chain into an empty directory (the tree must equal the source: contents,
modes, owners, xattrs, ACLs, ns times), the index browsed in amrecover, and
selfcheck failures as amcheck ERROR lines.

Needs root, Amanda and `./setup.sh install` (which installs scripts/amndump at
/usr/lib/amanda/application/amndump and /etc/sudoers.d/amndump).
"""
from __future__ import annotations

import filecmp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from stock import loop_mount, make_ext4_image
from trees import assert_trees_equal, build_full_tree, build_tree, diff_trees

REPO = Path(__file__).resolve().parents[2]
APP = Path("/usr/lib/amanda/application/amndump")
SUDOERS = Path("/etc/sudoers.d/amndump")
SECURITY = Path("/etc/amanda-security.conf")
CONF = f"ndumptest{os.getpid()}"      # its own Amanda configuration: runs on one machine never share one
HOST = "localhost"

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _as_backup(*args, input=None, cwd=None, check=True, timeout=120):
    proc = subprocess.run(["runuser", "-u", "backup", "--", *map(str, args)], cwd=cwd,
                          input=input if input is not None else "", capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _config(base: Path, wrapper: Path) -> str:
    st = base / "state"
    return f"""org "{CONF}"
mailto ""
dumpuser "backup"
inparallel 1
netusage 1000000 Kbps
dumpcycle 7 days
runspercycle 7
tapecycle 10 tapes
runtapes 1
etimeout 300
dtimeout 1800
ctimeout 30
define changer vtape {{
    tpchanger "chg-disk:{base / 'vtapes'}"
    property "num-slot" "8"
    property "auto-create-slot" "yes"
}}
tpchanger "vtape"
labelstr "^{CONF}-[0-9][0-9]*$"
autolabel "{CONF}-%%" empty
define tapetype VT {{
    length 512 mbytes
}}
tapetype "VT"
infofile "{st / 'curinfo'}"
logdir   "{st / 'log'}"
indexdir "{st / 'index'}"
tmpdir   "{st / 'tmp'}"

define application-tool app_amndump {{
    plugin "amndump"
    property "NDUMP-PATH" "{wrapper}"
    property "SNAPSHOT" "none"
}}
define application-tool app_amndump_missing {{
    plugin "amndump"
    property "NDUMP-PATH" "{base / 'no' / 'ndump'}"
}}
define dumptype ndump-app {{
    program "APPLICATION"
    application "app_amndump"
    auth "local"
    compress none
    index yes
    record yes
    holdingdisk never
}}
define dumptype ndump-missing {{
    ndump-app
    application "app_amndump_missing"
}}
"""


@pytest.fixture(scope="module")
def amanda():
    """The Amanda set; yields (base directory, source tree path, environment)."""
    if shutil.which("amdump") is None:
        pytest.skip("Amanda is not installed (./setup.sh install installs amanda-server)")
    if not APP.exists() or not filecmp.cmp(APP, REPO / "scripts" / "amndump", shallow=False) \
            or not SUDOERS.exists():
        pytest.fail(f"{APP} or {SUDOERS} is missing or not scripts/amndump: run ./setup.sh install")
    base = Path(tempfile.mkdtemp(prefix="ndump-amanda-"))
    base.chmod(0o755)
    # a root-owned ndump for NDUMP-PATH: this checkout, with the interpreter running the tests
    wrapper = base / "bin" / "ndump"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m ndump \"$@\"\n")
    wrapper.chmod(0o755)
    backup = pwd.getpwnam("backup")
    for d in ("vtapes", "state/curinfo", "state/log", "state/index", "state/tmp"):
        (base / d).mkdir(parents=True)
    mounts = ExitStack()        # the vtapes live on their own filesystem, as on a real server
    mounts.enter_context(loop_mount(make_ext4_image(None, base / "vtapes.img", size_mb=256),
                                    base / "vtapes"))
    for d in ("vtapes", "state", "state/curinfo", "state/log", "state/index", "state/tmp"):
        os.chown(base / d, backup.pw_uid, backup.pw_gid)
    confdir = Path("/etc/amanda") / CONF
    shutil.rmtree(confdir, ignore_errors=True)
    confdir.mkdir(parents=True)
    (confdir / "amanda.conf").write_text(_config(base, wrapper))
    for p in (confdir, confdir / "amanda.conf"):
        os.chown(p, backup.pw_uid, backup.pw_gid)
    security = SECURITY.read_text() if SECURITY.exists() else None
    if "restore_by_amanda_user=yes" not in (security or ""):   # as amgtar needs for amfetchdump
        SECURITY.write_text((security or "") + "restore_by_amanda_user=yes\n")
    src = base / "src"
    try:
        yield base, src, confdir
    finally:
        if security is not None:
            SECURITY.write_text(security)
        shutil.rmtree(confdir, ignore_errors=True)
        for d in (f"/var/log/amanda/server/{CONF}", f"/var/log/amanda/client/{CONF}",
                  f"/var/lib/amanda/ndump/{CONF}"):
            shutil.rmtree(d, ignore_errors=True)
        mounts.close()
        shutil.rmtree(base, ignore_errors=True)


def _disklist(confdir: Path, *lines: str) -> None:
    (confdir / "disklist").write_text("".join(f"{line}\n" for line in lines))
    backup = pwd.getpwnam("backup")
    os.chown(confdir / "disklist", backup.pw_uid, backup.pw_gid)


def _change(src: Path) -> list[str]:
    """Edits a level 1 must carry: content, deletion, rename, new files, metadata only.
    Returns the names under files/ that the level 1 no longer has."""
    regular = sorted(p for p in (src / "files").iterdir() if p.is_file() and not p.is_symlink())
    with open(regular[0], "ab") as f:
        f.write(b"grown after the level 0\n")
    regular[1].unlink()
    regular[2].rename(regular[2].with_name("renamed-after-level-0"))
    (src / "new" / "sub").mkdir(parents=True)
    (src / "new" / "sub" / "n1").write_bytes(b"new\n")
    os.utime(src / "new" / "sub" / "n1", ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321))
    os.chmod(regular[3], 0o640)
    os.chown(regular[3], 1234, 5678)
    os.setxattr(regular[4], "user.after", b"level 1")
    return sorted([regular[1].name, regular[2].name])


def test_round_trip_level_0_and_1(amanda):
    base, src, confdir = amanda
    build_full_tree(src, big_sparse_size=4 << 20)
    # flags/nodump (chattr +d) is dumped at level 0 and left out at level 1 (-h 1):
    # restoring the chain removes it, as stock restore does
    (src / "special" / "socket").unlink()      # sockets are not dumped (SPEC §3.1)
    _disklist(confdir, f"{HOST} {src} ndump-app")

    check = _as_backup("amcheck", CONF)
    assert "0 problems found" in check.stdout, check.stdout

    _as_backup("amdump", CONF)
    time.sleep(1.1)                      # Amanda and dumpdates count in seconds
    gone = _change(src)
    _as_backup("amadmin", CONF, "force-level-1", HOST, src)
    _as_backup("amdump", CONF)

    # amcheckdump reads the last run back through amndump's validate
    assert "All image (1) successfully validated" in _as_backup("amcheckdump", CONF).stdout

    find = _as_backup("amadmin", CONF, "find", HOST, src).stdout
    dumps = sorted((m[1] + m[2], int(m[3])) for m in re.finditer(
        r"^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) +\S+ +\S+ +(\d+) .* OK *$", find, re.M))
    assert [level for _, level in dumps] == [0, 1], find
    dumps = [(re.sub(r"\D", "", stamp), level) for stamp, level in dumps]

    target = base / "restore"
    target.mkdir()
    prev = []
    for stamp, level in dumps:
        _as_backup("amfetchdump", "-a", "--extract", "--target", target, *prev, CONF, HOST,
                   src, stamp, level, cwd=base / "state")
        prev = ["--prev-level", str(level)]
    assert diff_trees(src, target, ns=True, flags=True) == [f"'flags/nodump': only in {src}"]
    assert sorted(os.listdir(target)) == sorted(os.listdir(src) + ["restoresymtable"])

    # the index of the level 1 run browses in amrecover (root runs amrecover)
    rec = subprocess.run(["amrecover", CONF, "-s", HOST, "-t", HOST, "-o", "auth=local"],
                         input=f"sethost {HOST}\nsetdisk {src}\nls\ncd new/sub\nls\nquit\n",
                         capture_output=True, text=True, timeout=60, cwd=base)
    assert "new/" in rec.stdout and "files/" in rec.stdout, rec.stdout + rec.stderr
    assert "n1" in rec.stdout, rec.stdout + rec.stderr

    # and extracts chosen files: both levels, each through amndump restore -x
    picked = base / "picked"
    picked.mkdir()
    rec = subprocess.run(["amrecover", CONF, "-s", HOST, "-t", HOST, "-o", "auth=local"],
                         input=f"sethost {HOST}\nsetdisk {src}\nadd new\nadd files\nlcd {picked}\n"
                         "extract\n" + "Y\n" * 10 + "quit\n",
                         capture_output=True, text=True, timeout=60, cwd=base)
    assert sorted(os.listdir(picked)) == ["files", "new"], rec.stdout + rec.stderr
    assert_trees_equal(src / "new", picked / "new", ns=True, flags=True)
    # extracting level 0 then level 1 (restore -x, as amrecover does with any program)
    # keeps what the level 1 deleted or renamed away; everything else is the source
    assert diff_trees(src / "files", picked / "files", ns=True, flags=True) == \
        [f"{name!r}: only in {picked / 'files'}" for name in gone]


def test_selfcheck_errors_reach_amcheck(amanda):
    base, src, confdir = amanda
    src.mkdir(exist_ok=True)
    missing = base / "no-such-disk"
    plain = base / "plain-file"           # root reads any directory: a file is what it cannot
    plain.write_bytes(b"not a tree")
    _disklist(confdir, f"{HOST} {missing} ndump-app", f"{HOST} {plain} ndump-app",
              f"{HOST} {src} ndump-missing")
    check = _as_backup("amcheck", "-c", CONF, check=False)
    out = check.stdout + check.stderr
    assert check.returncode != 0, out
    assert re.search(rf"^HOST {HOST} ERROR: {missing}: no such directory$", out, re.M), out
    assert re.search(rf"^HOST {HOST} ERROR: ndump not found: {base}/no/ndump is not an"
                     " executable file$", out, re.M), out
    assert re.search(rf"^HOST {HOST} ERROR: {plain}: not a directory$", out, re.M), out
    assert "3 problems found" in out, out          # those three lines, nothing else


def _app(*args, stdin=None, fds=False, tmp=None):
    """amndump run directly as Amanda runs it (user backup); with ``fds``, descriptors 3
    and 4 are files under ``tmp``, returned with the process."""
    pass_fds, files = (), {}
    if fds:
        files = {n: open(tmp / f"fd{n}", "w+b") for n in (3, 4)}
    def child():
        for n, f in files.items():
            os.dup2(f.fileno(), n)
    proc = subprocess.run(["runuser", "-u", "backup", "--", str(APP), *map(str, args)],
                          stdin=stdin if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=120, preexec_fn=child if fds else None,
                          pass_fds=tuple(files) if fds else ())
    out = {n: (tmp / f"fd{n}").read_bytes() for n in files}
    for f in files.values():
        f.close()
    return proc, out


def test_backup_index_validate_outside_amanda(amanda, tmp_path):
    base, _, _ = amanda
    src = base / "direct"
    build_tree(src, {"a/b/f": b"x" * 5000, "top": b"t", "dir with space/g": b"g"})
    common = ["--config", CONF, "--host", HOST, "--disk", src, "--device", src,
              "--ndump-path", base / "bin" / "ndump", "--snapshot", "none"]
    proc, out = _app("backup", *common, "--level", "0", "--index", "line", fds=True, tmp=tmp_path)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    image = tmp_path / "image"
    image.write_bytes(proc.stdout)
    assert out[3].decode().splitlines()[-1] == f"sendbackup: size {-(-len(proc.stdout) // 1024)}"
    assert "? " not in out[3].decode()
    index = out[4].decode().splitlines()
    assert index == ["/", "/a/", "/a/b/", "/a/b/f", "/dir with space/", "/dir with space/g",
                     "/top"], index
    with open(image, "rb") as f:
        proc, _ = _app("index", *common, stdin=f)
    assert proc.returncode == 0 and proc.stdout.decode().splitlines() == index
    with open(image, "rb") as f:
        assert _app("validate", *common, stdin=f)[0].returncode == 0
    cut = tmp_path / "cut"
    cut.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with open(cut, "rb") as f:
        proc, _ = _app("validate", *common, stdin=f)
    assert proc.returncode == 3, proc.stderr


def test_privilege_path_refuses_what_backup_could_change(amanda, tmp_path):
    base, _, _ = amanda
    backup = pwd.getpwnam("backup")
    evil = base / "evil"
    evil.mkdir(exist_ok=True)
    (evil / "ndump").write_text("#!/bin/sh\nid > /tmp/amndump-evil-ran\n")
    (evil / "ndump").chmod(0o755)
    os.chown(evil / "ndump", backup.pw_uid, backup.pw_gid)
    common = ["--config", CONF, "--host", HOST, "--disk", base, "--device", base]
    proc, _ = _app("selfcheck", *common, "--ndump-path", evil / "ndump")
    lines = proc.stdout.decode().splitlines()
    assert f"ERROR {evil}/ndump: not run as root: it must be owned by root and writable only" \
           " by root" in lines, lines
    assert not Path("/tmp/amndump-evil-ran").exists()
    # a root-owned program in a directory backup can write is refused too
    os.chown(evil / "ndump", 0, 0)
    os.chown(evil, backup.pw_uid, backup.pw_gid)
    proc, _ = _app("selfcheck", *common, "--ndump-path", evil / "ndump")
    assert f"ERROR {evil}/ndump: not run as root: directory {evil} is writable by others than" \
           " root" in proc.stdout.decode().splitlines(), proc.stdout

    # restores only where /etc/amanda-security.conf allows them, as amgtar
    saved = SECURITY.read_text()
    try:
        SECURITY.write_text(saved.replace("restore_by_amanda_user=yes", ""))
        target = tmp_path / "t"
        target.mkdir()
        proc, _ = _app("restore", *common, "--ndump-path", base / "bin" / "ndump", "--target", target)
        assert proc.returncode == 1 and b"not allowed to restore" in proc.stderr, proc.stderr
        assert os.listdir(target) == []
    finally:
        SECURITY.write_text(saved)

    # without the sudoers rule: one ERROR line saying so, nothing run
    hidden = SUDOERS.with_name(".amndump-test-hidden")
    os.rename(SUDOERS, hidden)
    try:
        proc, _ = _app("selfcheck", *common)
    finally:
        os.rename(hidden, SUDOERS)
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR cannot become root"), lines
    assert proc.stderr == b""


def test_backup_with_unreadable_file_and_exclusion(amanda, tmp_path):
    """ndump exit 2 -> one '? path: reason' line per file, the size, status 0 (Amanda
    then reports the dump STRANGE); an `exclude file` pattern leaves a name out."""
    base, _, _ = amanda
    src = base / "partial"
    build_tree(src, {"ok": b"fine", "secret": b"s" * 5000, "skip.tmp": b"x"})
    os.chmod(src / "secret", 0)
    # a root-owned ndump without the capabilities that let root read a mode-000 file
    capless = base / "bin" / "ndump-capless"
    capless.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec setpriv --bounding-set"
                       f" -dac_override,-dac_read_search {sys.executable} -m ndump \"$@\"\n")
    capless.chmod(0o755)
    proc, out = _app("backup", "--config", CONF, "--host", HOST, "--disk", src, "--device", src,
                     "--ndump-path", capless, "--snapshot", "none", "--level", "0", "--index",
                     "line", "--exclude-file", "*.tmp", fds=True, tmp=tmp_path)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    mesg = out[3].decode().splitlines()
    assert [l for l in mesg if l.startswith("? ")] == ["? ./secret: not dumped: permission denied"], mesg
    assert mesg[-1].startswith("sendbackup: size ")
    assert out[4].decode().splitlines() == ["/", "/ok"]


def test_bad_invocations_give_one_line():
    script = REPO / "scripts" / "amndump"
    run = lambda *a: subprocess.run([str(script), *a], capture_output=True, text=True, timeout=60)
    proc = run("bogus", "--config", CONF)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "amndump: unknown subcommand 'bogus' (support, selfcheck, estimate," \
                          " backup, restore, validate, index)\n"
    proc = run("estimate", "--config")
    assert (proc.returncode, proc.stderr) == (1, "ERROR option --config needs a value\n")
    proc = run("selfcheck", "--config", "../etc", "--disk", "/")
    assert proc.returncode == 0 and "ERROR bad Amanda configuration name '../etc'" in proc.stdout
    proc = run("support")
    assert "MAX-LEVEL 31" in proc.stdout.splitlines() and proc.stderr == ""
    assert run("--version").stdout.startswith("amndump-")
