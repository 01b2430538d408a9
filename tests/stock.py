"""Helpers that drive the real stock tools: mke2fs, losetup/mount, dump and restore 0.4b47.

    from stock import make_ext4_image, loop_mount, stock_dump, stock_restore, stock_list

Stock dump reads ext2/3/4 block devices only, so a tree reaches it as an ext4 image
(``mke2fs -d``) on a loop device. ``mke2fs -d`` copies contents, owners, modes, hard
links, devices, fifos, sockets, holes, xattrs and ACLs, but only whole-second mtimes
and no inode flags: ``loop_mount(img, reapply_from=SRC)`` puts those back (times to the
nanosecond, flags, and any missing xattr) while the image is mounted.

Dump an *unmounted* filesystem: dump reads the device, not the page cache or the
journal. Loop devices are always detached and mounts unmounted in ``finally`` blocks.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from trees import get_flags, set_flags, tree_state

DUMP = "/usr/sbin/dump"
RESTORE = "/usr/sbin/restore"


class StockToolError(AssertionError):
    """A stock tool failed; the message carries its command line, status and output."""


def have_stock_tools() -> bool:
    return os.access(DUMP, os.X_OK) and os.access(RESTORE, os.X_OK)


def run_tool(argv: Sequence[object], *, check: bool = True, cwd: Path | None = None,
             input: str | None = None, timeout: float = 300, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """Run a tool without a controlling terminal (it can never prompt on /dev/tty);
    stdin is ``input`` or /dev/null. Text output, undecodable bytes kept as surrogates."""
    argv = [str(a) for a in argv]
    with tempfile.TemporaryDirectory(prefix="ndump-tool-") as private:
        if argv[0] == RESTORE:
            # stock restore names its work files $TMPDIR/rstdir<seconds>: two restores started
            # in the same second (another run on this machine) would collide in /tmp
            env = {**(env if env is not None else os.environ), "TMPDIR": private}
        proc = subprocess.run(argv, cwd=cwd, input=input, capture_output=True, text=True,
                              errors="surrogateescape", timeout=timeout, env=env,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              start_new_session=True)
    if check and proc.returncode != 0:
        raise StockToolError(f"{' '.join(argv)} exited {proc.returncode}\n"
                             f"--- stdout:\n{proc.stdout[-3000:]}\n--- stderr:\n{proc.stderr[-3000:]}")
    return proc


# --- ext4 images, loop devices, mounts ---------------------------------------------------

def make_ext4_image(src_dir: Path | None, img_path: Path, size_mb: int = 64, block_size: int = 4096,
                    *, inode_size: int = 256, inodes: int | None = None, label: str | None = None,
                    journal: bool = True, fs_type: str = "ext4") -> Path:
    """``mke2fs -q -F -t ext4 -b BS -I 256 [-N n] [-L l] -d SRC IMG SIZEM`` (no root needed).
    ``src_dir=None`` makes an empty filesystem. The source's atimes, which mke2fs's
    reading changes, are put back afterwards (so ``reapply_from`` can copy them)."""
    argv: list[object] = ["mke2fs", "-q", "-F", "-t", fs_type, "-b", block_size, "-I", inode_size]
    if inodes:
        argv += ["-N", inodes]
    if label:
        argv += ["-L", label]
    if not journal:
        argv += ["-O", "^has_journal"]
    if src_dir is not None:
        argv += ["-d", src_dir]
    saved = _times_of(Path(src_dir)) if src_dir is not None else []
    try:
        run_tool(argv + [img_path, f"{size_mb}M"])
    finally:
        for path, atime, mtime in saved:
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)
    return Path(img_path)


def _times_of(root: Path) -> list[tuple[Path, int, int]]:
    """(path, atime_ns, mtime_ns) of every entry, read without touching atimes,
    directories after their contents (deepest first)."""
    state = tree_state(root, ignore=(), content=False)
    entries = sorted(state.values(), key=lambda e: (e.type == "dir", -e.path.count("/")))
    return [(root / e.path, e.atime_ns, e.mtime_ns) for e in entries]


@contextmanager
def loop_device(img: Path, *, readonly: bool = False) -> Iterator[str]:
    """Attach ``img`` to a free loop device; yield its path (/dev/loopN); always detach."""
    argv = ["losetup", "--find", "--show"] + (["--read-only"] if readonly else []) + [str(img)]
    dev = run_tool(argv).stdout.strip()
    try:
        yield dev
    finally:
        _retry(["losetup", "--detach", dev])


@contextmanager
def loop_mount(img: Path, mountpoint: Path | None = None, *, reapply_from: Path | None = None,
               readonly: bool = False, options: str | None = None) -> Iterator[tuple[str, Path]]:
    """Attach and mount ``img``; yield ``(loopdev, mountpoint)``; always unmount and detach.

    ``reapply_from``: the tree the image was made from; its times (ns), inode flags, owners,
    modes and any xattr/ACL that mke2fs did not copy are applied to the mounted copy.
    ``mountpoint`` defaults to a new temporary directory (removed afterwards)."""
    made = mountpoint is None
    mnt = Path(tempfile.mkdtemp(prefix="ndump-mnt-")) if made else Path(mountpoint)
    opts = ",".join(o for o in ("ro" if readonly else None, options) if o)
    try:
        with loop_device(img, readonly=readonly) as dev:
            run_tool(["mount", "-t", "ext4"] + (["-o", opts] if opts else []) + [dev, mnt])
            try:
                if reapply_from is not None:
                    reapply_metadata(Path(reapply_from), mnt)
                yield dev, mnt
            finally:
                _retry(["umount", mnt])
    finally:
        if made and not os.path.ismount(mnt):
            os.rmdir(mnt)


def _retry(argv: list[object], tries: int = 10) -> None:
    """Unmount/detach: a device can be busy for a moment after its last user closed it."""
    for n in range(tries):
        proc = run_tool(argv, check=False)
        if proc.returncode == 0:
            return
        time.sleep(0.05 * (n + 1))
    run_tool(argv)


def reapply_metadata(src: Path, dst: Path) -> None:
    """Make ``dst`` (a copy of ``src`` made by mke2fs -d or cp) carry ``src``'s owners,
    modes, xattrs/ACLs, inode flags and atime/mtime to the nanosecond. ``src`` is read
    without touching its atimes; directory times are set last, deepest first, the root
    last of all; flags after times (an immutable file refuses utime)."""
    state = tree_state(src, ignore=(), content=False)
    entries = [e for e in state.values() if os.path.lexists(dst / e.path)]
    for e in entries:
        s, d = src / e.path, dst / e.path
        os.chown(d, e.uid, e.gid, follow_symlinks=False)
        if e.type != "symlink":
            os.chmod(d, e.mode)
        have = set(os.listxattr(d, follow_symlinks=False))
        for name in os.listxattr(s, follow_symlinks=False):
            value = os.getxattr(s, name, follow_symlinks=False)
            try:
                if name not in have or os.getxattr(d, name, follow_symlinks=False) != value:
                    os.setxattr(d, name, value, follow_symlinks=False)
            except OSError:
                pass            # the target filesystem refuses this namespace
    depth = lambda e: -1 if e.path == "." else e.path.count("/")  # noqa: E731
    for e in sorted(entries, key=lambda e: (e.type == "dir", -depth(e))):
        d = dst / e.path
        os.utime(d, ns=(e.atime_ns, e.mtime_ns), follow_symlinks=False)
        if e.flags:
            set_flags(d, (get_flags(d) or 0) | e.flags)


# --- stock dump / restore ----------------------------------------------------------------

def stock_dump(device_or_path: Path | str, out: Path | str, *args: object, check: bool = True,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``dump ARGS -f OUT DEVICE``. Pass the level in ``args`` (dump's default is 0) and
    ``-D FILE`` with ``-u`` or a level > 0 (else dump uses /var/lib/dumpdates).
    An image file (not a block device) is attached to a loop device for the run;
    its dumpdates name is then that /dev/loopN, so for incrementals keep a
    ``loop_device`` open across the dumps or use ``-T DATE``."""
    path = Path(device_or_path)
    if path.is_file():
        with loop_device(path) as dev:
            return run_tool([DUMP, *args, "-f", out, dev], check=check, cwd=cwd)
    return run_tool([DUMP, *args, "-f", out, path], check=check, cwd=cwd)


def stock_restore(args: Sequence[object], cwd: Path, *, input: str | None = None,
                  check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """``restore ARGS`` run in ``cwd`` (where -r/-x write), stdin from ``input`` or /dev/null."""
    return run_tool([RESTORE, *args], cwd=cwd, input=input, check=check, timeout=timeout)


_LIST_LINE = re.compile(r"^\s*(\d+)\t(.*)$")


def parse_listing(text: str) -> dict[str, int]:
    """``restore -t`` output → {relative path: dump inode}; the root "." is left out.
    A line that is not ``<ino>TAB<name>`` continues the previous name (a newline in it)."""
    entries: list[list] = []
    for line in text.split("\n"):
        m = _LIST_LINE.match(line)
        if m:
            entries.append([m.group(2), int(m.group(1))])
        elif entries and line:
            entries[-1][0] += "\n" + line
    return {_rel(name): ino for name, ino in entries if _rel(name) not in (".", "")}


def _rel(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def stock_list(image: Path | str, *args: object) -> set[str]:
    """Relative paths (no "./", no root) that stock ``restore -t [ARGS] -f IMAGE`` lists."""
    proc = stock_restore(["-t", *args, "-f", image], cwd=Path(image).parent)
    return set(parse_listing(proc.stdout))


def stock_dump_tree(src: Path, out: Path, *args: object, workdir: Path, size_mb: int = 64,
                    block_size: int = 4096, inodes: int | None = None
                    ) -> subprocess.CompletedProcess:
    """Stock dump of a tree: mke2fs -d into ``workdir``/fs.img, mount and re-apply the
    metadata mke2fs drops, unmount, then ``dump ARGS -f OUT /dev/loopN``."""
    img = make_ext4_image(src, Path(workdir) / f"{Path(out).name}.fs.img", size_mb, block_size,
                          inodes=inodes)
    with loop_mount(img, reapply_from=src):
        pass
    return stock_dump(img, out, *args)
