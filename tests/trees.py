"""Test trees: build every kind of file SPEC §3.1 lists, capture a tree's state, compare two trees.

Used everywhere a test needs "a tree" or "the same tree" (borg's ``assert_dirs_equal``):

    from trees import build_full_tree, build_tree, tree_state, assert_trees_equal

Everything here works on real files with real metadata; nothing is mocked.
What cannot be made (devices, chown and trusted./security. xattrs as non-root; a
flag the filesystem refuses) is skipped and named in the manifest's ``skipped`` list.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import socket
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

KIB = 1024
MIB = 1024 * KIB

#: top-level names that are never part of a tree's state (ext4's lost+found, restore -r's table)
IGNORED_TOP = frozenset({"lost+found", "restoresymtable"})

# inode flags (linux/fs.h) -------------------------------------------------------------
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FLAG_LETTERS = {  # the flags chattr can set and restore can set again
    0x00000001: "s", 0x00000002: "u", 0x00000008: "S", 0x00000010: "i",
    0x00000020: "a", 0x00000040: "d", 0x00000080: "A", 0x00004000: "j",
    0x00008000: "t", 0x00010000: "D", 0x00020000: "T", 0x00800000: "C",
}
SETTABLE_FLAGS = sum(FLAG_LETTERS)
FL_NODUMP = 0x40
FL_NOATIME = 0x80

#: a hole at least this long in the source must be a hole in the copy (sparse=True)
SPARSE_MIN_HOLE = 64 * KIB
#: hole ends are rounded inwards to this granularity (largest common fs block size)
SPARSE_GRANULE = 4 * KIB

_ACL_ACCESS = "system.posix_acl_access"
_ACL_DEFAULT = "system.posix_acl_default"
_ZERO_BLOCK = bytes(SPARSE_GRANULE)


# ======================================================================================
# building trees
# ======================================================================================

@dataclass
class Node:
    """Metadata common to every spec item (all optional)."""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    xattrs: Mapping[str, bytes] = field(default_factory=dict)
    acl: str | None = None           # access ACL, setfacl text: "u::rw-,u:1000:rwx,g::r--,m::rwx,o::r--"
    flags: int = 0                   # FS_*_FL bits, e.g. FL_NOATIME
    mtime_ns: int | None = None
    atime_ns: int | None = None


@dataclass
class File(Node):
    data: bytes = b""


@dataclass
class Sparse(Node):
    """A sparse file: ``chunks`` maps offsets to data; everything else is a hole."""
    size: int = 0
    chunks: Mapping[int, bytes] = field(default_factory=dict)


@dataclass
class Dir(Node):
    default_acl: str | None = None


@dataclass
class Symlink(Node):
    target: str = ""


@dataclass
class Hardlink:
    """Another name for the spec item at relpath ``to`` (created earlier in the spec)."""
    to: str


@dataclass
class Fifo(Node):
    pass


@dataclass
class Device(Node):
    kind: str = "c"                  # "c" or "b"
    major: int = 0
    minor: int = 0


@dataclass
class Socket(Node):
    pass


def build_tree(root: Path, spec: Mapping[str, object], *, times_from: int | None = None) -> Path:
    """Create ``spec`` ({relpath: item}) under ``root``; return ``root``.

    Items: ``bytes``/``str`` (a regular file), File, Sparse, Dir, Symlink, Hardlink, Fifo,
    Device, Socket. Parent directories are created as needed. Metadata is applied in the
    only order that keeps it: owner, mode, xattrs, ACLs, flags, then times, directories
    last and deepest first. ``times_from`` (ns) gives every item without explicit times a
    distinct mtime/atime, counting up from that value.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    made: list[tuple[Path, object]] = []
    for rel, item in spec.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        item = File(data=item.encode() if isinstance(item, str) else item) if isinstance(
            item, (bytes, str)) else item
        _create(path, root, item)
        made.append((path, item))
    for path, item in made:
        if isinstance(item, Node):
            _apply_meta(path, item)
    timed = [(p, i) for p, i in made if isinstance(i, Node)]
    if times_from is not None:
        for n, (path, item) in enumerate(timed):
            item.mtime_ns = item.mtime_ns if item.mtime_ns is not None else times_from + n * 1_000_000_007
            item.atime_ns = item.atime_ns if item.atime_ns is not None else item.mtime_ns - 86_400_000_000_013
    for path, item in sorted(timed, key=lambda pi: (isinstance(pi[1], Dir), -len(pi[0].parts))):
        if item.mtime_ns is not None:
            atime = item.atime_ns if item.atime_ns is not None else item.mtime_ns
            os.utime(path, ns=(atime, item.mtime_ns), follow_symlinks=False)
    return root


def _create(path: Path, root: Path, item: object) -> None:
    if isinstance(item, File):
        path.write_bytes(item.data)
    elif isinstance(item, Sparse):
        write_sparse(path, item.size, item.chunks)
    elif isinstance(item, Dir):
        path.mkdir(exist_ok=True)
    elif isinstance(item, Symlink):
        os.symlink(item.target, path)
    elif isinstance(item, Hardlink):
        os.link(root / item.to, path, follow_symlinks=False)
    elif isinstance(item, Fifo):
        os.mkfifo(path)
    elif isinstance(item, Device):
        kind = stat.S_IFCHR if item.kind == "c" else stat.S_IFBLK
        os.mknod(path, kind | 0o644, os.makedev(item.major, item.minor))
    elif isinstance(item, Socket):
        make_socket(path)
    else:
        raise TypeError(f"unknown tree spec item for {path}: {item!r}")


def _apply_meta(path: Path, item: Node) -> None:
    link = path.is_symlink()
    if item.uid is not None or item.gid is not None:
        os.chown(path, -1 if item.uid is None else item.uid, -1 if item.gid is None else item.gid,
                 follow_symlinks=False)
    if item.mode is not None and not link:
        os.chmod(path, item.mode)
    for name, value in item.xattrs.items():
        os.setxattr(path, name, value, follow_symlinks=False)
    if item.acl is not None:
        os.setxattr(path, _ACL_ACCESS, acl_to_xattr(item.acl), follow_symlinks=False)
    if isinstance(item, Dir) and item.default_acl is not None:
        os.setxattr(path, _ACL_DEFAULT, acl_to_xattr(item.default_acl), follow_symlinks=False)
    if item.flags:
        set_flags(path, get_flags(path) | item.flags)


def write_sparse(path: Path, size: int, chunks: Mapping[int, bytes]) -> None:
    """Write ``chunks`` at their offsets into a new file of ``size`` bytes; the rest are holes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for offset, data in sorted(chunks.items()):
            os.pwrite(fd, data, offset)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def make_socket(path: Path) -> None:
    """Bind an AF_UNIX socket at ``path`` (any path length: binds through /proc/self/fd)."""
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"/proc/self/fd/{dfd}/{path.name}")
    finally:
        sock.close()
        os.close(dfd)


def get_flags(path: Path) -> int | None:
    """Inode flags (lsattr) of a regular file or directory, or None where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | _noatime())
    except OSError:
        return None
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8))
        return struct.unpack_from("<i", buf)[0] & 0xFFFFFFFF
    except OSError:
        return None
    finally:
        os.close(fd)


def set_flags(path: Path, flags: int) -> bool:
    """Set inode flags (chattr); False when the filesystem refuses them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<q", flags))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def build_full_tree(root: Path, *, devices: bool = True, ns_times: bool = True,
                    big_sparse_size: int = 40 * MIB, seed: int = 1) -> dict:
    """Create under ``root`` every kind of file and metadata SPEC §3.1 lists.

    Returns a manifest: ``{kind: [relpath, ...]}`` for the kinds below, ``hardlinks``
    (list of name groups), ``xattrs`` ({relpath: [names]}), ``acls`` ({relpath: [kinds]}),
    ``flags`` ({relpath: letters actually set}) and ``skipped`` (what could not be made,
    with the reason). Times: every entry gets its own mtime and atime; with
    ``ns_times`` they have non-zero sub-microsecond digits, otherwise whole
    microseconds. Directory times are set last.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    is_root = os.geteuid() == 0
    skipped: list[str] = []
    spec: dict[str, object] = {}
    man: dict = {k: [] for k in ("regular", "sparse", "dirs", "symlinks", "devices", "fifos",
                                 "sockets", "special_modes", "owned", "names")}

    for top in ("files", "sparse", "dirs", "links", "special", "hard", "hard/sub", "modes",
                "owners", "xattrs", "acls", "names", "flags"):
        spec[top] = Dir()           # explicit, so that every directory gets its own times

    # regular files of the interesting sizes (tape block is 1024 bytes, fs block 1-4 KiB)
    for size in (0, 1, 1023, 1024, 1025, 4096):
        spec[f"files/size-{size}"] = File(data=bytes(rng.getrandbits(8) for _ in range(size)))
    spec["files/text-100k.txt"] = File(data=b"".join(b"line %06d of a text file\n" % i
                                                     for i in range(100 * KIB // 25))[:100 * KIB])
    spec["files/random-1.5m.bin"] = File(data=rng.randbytes(3 * MIB // 2))
    man["regular"] += [k for k, v in spec.items() if isinstance(v, File)]

    # sparse files: trailing hole, and a big one with a hole in the middle
    spec["sparse/sparse-3m"] = Sparse(size=3 * MIB, chunks={0: b"A" * 4096, MIB: b"B" * 4096})
    spec["sparse/hole-middle"] = Sparse(size=big_sparse_size, chunks={
        0: rng.randbytes(64 * KIB), big_sparse_size - 64 * KIB: rng.randbytes(64 * KIB)})
    man["sparse"] += ["sparse/sparse-3m", "sparse/hole-middle"]

    # directories: 3 deep, and one with 150 entries (several directory blocks)
    spec["dirs/a"] = Dir()
    spec["dirs/a/b"] = Dir()
    spec["dirs/a/b/c"] = Dir()
    spec["dirs/a/b/c/deep.txt"] = File(data=b"three levels down\n")
    spec["dirs/many"] = Dir()
    for i in range(150):
        spec[f"dirs/many/entry-number-{i:03d}-of-a-large-directory"] = File(data=b"%d\n" % i)
    man["dirs"] += ["dirs/a", "dirs/a/b", "dirs/a/b/c", "dirs/many"]

    # symlinks: fast (< 60 bytes), slow (200 and 1000 bytes), dangling, to a directory
    spec["links/short"] = Symlink(target="../files/size-1")
    spec["links/long-200"] = Symlink(target=_long_target(200))
    spec["links/long-1000"] = Symlink(target=_long_target(1000))
    spec["links/dangling"] = Symlink(target="does/not/exist")
    spec["links/to-dir"] = Symlink(target="../dirs/a")
    man["symlinks"] += ["links/short", "links/long-200", "links/long-1000", "links/dangling",
                        "links/to-dir"]

    # special files
    if devices and is_root:
        spec["special/null"] = Device(kind="c", major=1, minor=3)
        spec["special/big-char"] = Device(kind="c", major=300, minor=70000)
        spec["special/block-8-17"] = Device(kind="b", major=8, minor=17)
        man["devices"] += ["special/null", "special/big-char", "special/block-8-17"]
    else:
        skipped.append("devices: " + ("devices=False" if not devices else "needs root (mknod)"))
    spec["special/fifo"] = Fifo()
    spec["special/socket"] = Socket()
    man["fifos"].append("special/fifo")
    man["sockets"].append("special/socket")

    # hard links: one file with three names in three directories
    spec["hard/one"] = File(data=b"one inode, three names\n")
    spec["hard/sub/two"] = Hardlink(to="hard/one")
    spec["dirs/a/three"] = Hardlink(to="hard/one")
    man["hardlinks"] = [["dirs/a/three", "hard/one", "hard/sub/two"]]

    # mode bits; ownership (chown before chmod: chown clears setuid)
    spec["modes/setuid"] = File(data=b"#!/bin/sh\n", mode=0o4755)
    spec["modes/setgid"] = File(data=b"#!/bin/sh\n", mode=0o2755)
    spec["modes/sticky-dir"] = Dir(mode=0o1777)
    spec["modes/setgid-dir"] = Dir(mode=0o2775)
    spec["modes/no-perms"] = File(data=b"nobody may read this\n", mode=0o000)
    spec["modes/odd-640"] = File(data=b"x", mode=0o640)
    man["special_modes"] += ["modes/setuid", "modes/setgid", "modes/sticky-dir", "modes/setgid-dir",
                             "modes/no-perms", "modes/odd-640"]
    if is_root:
        spec["owners/uid70000"] = File(data=b"owned\n", uid=70000, gid=80000)
        spec["owners/dir70000"] = Dir(uid=70000, gid=80000, mode=0o750)
        spec["owners/dir70000/setuid-owned"] = File(data=b"x", uid=70000, gid=80000, mode=0o4750)
        spec["owners/link70000"] = Symlink(target="uid70000", uid=70000, gid=80000)
        man["owned"] += ["owners/uid70000", "owners/dir70000", "owners/dir70000/setuid-owned",
                         "owners/link70000"]
    else:
        skipped.append("uid 70000/gid 80000 ownership: needs root (chown)")

    # extended attributes (user., trusted., security.) and POSIX ACLs
    man["xattrs"] = {}
    spec["xattrs/small"] = File(data=b"x\n", xattrs={"user.small": b"hello"})
    spec["xattrs/big"] = File(data=b"x\n", xattrs={"user.big": bytes(rng.randrange(32, 127)
                                                                     for _ in range(1500))})
    spec["xattrs/several"] = File(data=b"", xattrs={"user.a": b"1", "user.b": b"",
                                                    "user.binary": bytes(range(256))[:64]})
    spec["xattrs/dir"] = Dir(xattrs={"user.on-a-dir": b"dir value"})
    for rel in ("xattrs/small", "xattrs/big", "xattrs/several", "xattrs/dir"):
        man["xattrs"][rel] = sorted(spec[rel].xattrs)
    if is_root:
        spec["xattrs/trusted"] = File(data=b"t\n", xattrs={"trusted.test": b"trusted value"})
        spec["xattrs/security"] = File(data=b"s\n", xattrs={"security.ndump-test": b"security value"})
        man["xattrs"]["xattrs/trusted"] = ["trusted.test"]
        man["xattrs"]["xattrs/security"] = ["security.ndump-test"]
    else:
        skipped.append("trusted./security. xattrs: need root (CAP_SYS_ADMIN)")
    spec["acls/file"] = File(data=b"acl\n", acl="u::rw-,u:1000:rwx,g::r--,g:2000:r-x,m::rwx,o::r--")
    spec["acls/dir"] = Dir(acl="u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x",
                           default_acl="u::rwx,u:1000:rwx,g::r-x,g:2000:r-x,m::rwx,o::---")
    spec["acls/dir/child"] = File(data=b"in a directory with a default ACL\n")
    man["acls"] = {"acls/file": ["access"], "acls/dir": ["access", "default"]}

    # names
    names = ["names/with space", "names/ünïcødé-名前.txt", "names/new\nline",
             "names/" + "n" * 254, "names/-leading-dash", "names/tab\there"]
    for rel in names:
        spec[rel] = File(data=rel.encode() + b"\n")
    man["names"] += names

    spec["flags/noatime"] = File(data=b"chattr +A\n", flags=FL_NOATIME)
    spec["flags/nodump"] = File(data=b"chattr +d\n", flags=FL_NODUMP)

    _build_with_times(root, spec, ns_times)

    man["flags"] = {}
    for rel, flag in (("flags/noatime", FL_NOATIME), ("flags/nodump", FL_NODUMP)):
        got = get_flags(root / rel)
        if got is not None and got & flag:
            man["flags"][rel] = FLAG_LETTERS[flag]
        else:
            skipped.append(f"{rel}: filesystem refused flag {FLAG_LETTERS[flag]}")
    man["root"] = str(root)
    man["skipped"] = skipped
    return man


def _build_with_times(root: Path, spec: dict, ns_times: bool) -> None:
    """Give every item its own mtime/atime (second n, a distinct microsecond part and, with
    ``ns_times``, a non-zero sub-microsecond part), then build; the root comes last."""
    for n, item in enumerate(i for i in spec.values() if isinstance(i, Node)):
        usec = (123_456 + n * 7_919) % 1_000_000
        sub = (1 + n % 999) if ns_times else 0
        item.mtime_ns = (1_600_000_000 + n) * 10**9 + usec * 1000 + sub
        item.atime_ns = (1_599_900_000 + n) * 10**9 + usec * 1000 + (1000 - sub) % 1000
    build_tree(root, spec)
    sub = 3 if ns_times else 0
    os.utime(root, ns=(1_599_000_000 * 10**9 + 654_321_000 + sub, 1_599_500_000 * 10**9 + 456_789_000 + sub))


def _long_target(length: int) -> str:
    parts, total = [], 0
    while total < length:
        part = f"segment-{len(parts):03d}-" + "x" * 40
        parts.append(part)
        total += len(part) + 1
    return "/".join(parts)[:length].rstrip("/")


# ======================================================================================
# capturing a tree's state
# ======================================================================================

@dataclass(frozen=True)
class Entry:
    """The state of one path, as compared by :func:`assert_trees_equal`."""
    path: str                       # relative path, "." for the root
    type: str                       # file dir symlink chr blk fifo socket
    mode: int                       # S_IMODE: permission + setuid/setgid/sticky bits
    uid: int
    gid: int
    size: int
    nlink: int
    mtime_ns: int
    atime_ns: int
    inode: tuple[int, int]          # (st_dev, st_ino): only to find hard links
    digest: str | None = None       # layout-independent content digest (regular files)
    target: str | None = None       # symlink target
    rdev: tuple[int, int] | None = None
    xattrs: Mapping[str, bytes] = field(default_factory=dict)   # without system.posix_acl_*
    acl_access: str | None = None
    acl_default: str | None = None
    flags: int | None = None        # SETTABLE_FLAGS bits (regular files and directories)
    data: tuple[tuple[int, int], ...] = ()   # data extents [start, end) (regular files)
    links: frozenset[str] = frozenset()      # every relpath sharing this inode (non-dirs)


_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
          stat.S_IFCHR: "chr", stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


class TreeState(dict):
    """``{relpath: Entry}`` of a tree, with the tree's ``root``."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = Path(root)


def tree_state(root: Path, *, ignore: Iterable[str] = IGNORED_TOP, content: bool = True
               ) -> TreeState:
    """Capture every path under ``root`` (root included as ".") without changing atimes
    (O_NOATIME as root). Top-level names in ``ignore`` are skipped with their subtrees.

    Take the state of a source tree *before* something reads it (dump does) when atimes
    matter: :func:`assert_trees_equal` accepts a TreeState in place of a path.
    """
    root = Path(root)
    states = TreeState(root)
    _walk(root, ".", states, frozenset(ignore), content)
    groups: dict[tuple[int, int], set[str]] = {}
    for e in states.values():
        if e.type != "dir":
            groups.setdefault(e.inode, set()).add(e.path)
    for rel, e in states.items():
        if e.type != "dir":
            object.__setattr__(e, "links", frozenset(groups[e.inode]))
    return states


def _walk(path: Path, rel: str, states: dict, ignore: frozenset, content: bool) -> None:
    e = entry_of(path, rel, content=content)
    states[rel] = e
    if e.type != "dir":
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _noatime())
    try:
        names = sorted(d.name for d in os.scandir(fd))
    finally:
        os.close(fd)
    for name in names:
        if rel == "." and name in ignore:
            continue
        _walk(path / name, name if rel == "." else f"{rel}/{name}", states, ignore, content)


def entry_of(path: Path, rel: str = ".", *, content: bool = True) -> Entry:
    """The :class:`Entry` for one path (``links`` is filled in by :func:`tree_state`)."""
    st = os.lstat(path)
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "unknown")
    xattrs, acl_access, acl_default = read_xattrs(path)
    extra: dict = {}
    if kind == "file":
        extra["data"] = tuple(data_extents(path, st.st_size))
        if content:
            extra["digest"] = content_digest(path, extra["data"], st.st_size)
    if kind == "symlink":
        extra["target"] = os.readlink(path)
    if kind in ("chr", "blk"):
        extra["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if kind in ("file", "dir"):
        flags = get_flags(path)
        extra["flags"] = None if flags is None else flags & SETTABLE_FLAGS
    return Entry(path=rel, type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                 size=st.st_size, nlink=st.st_nlink, mtime_ns=st.st_mtime_ns, atime_ns=st.st_atime_ns,
                 inode=(st.st_dev, st.st_ino), xattrs=xattrs, acl_access=acl_access,
                 acl_default=acl_default, **extra)


def read_xattrs(path: Path) -> tuple[dict[str, bytes], str | None, str | None]:
    """(xattrs without ACLs, access ACL text, default ACL text) of ``path`` (no follow)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
            return {}, None, None
        raise
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            values[name] = f"<unreadable: {os.strerror(e.errno)}>".encode()
    access = values.pop(_ACL_ACCESS, None)
    default = values.pop(_ACL_DEFAULT, None)
    return (values, None if access is None else acl_from_xattr(access),
            None if default is None else acl_from_xattr(default))


def data_extents(path: Path, size: int) -> list[tuple[int, int]]:
    """Data ranges [start, end) of a file per SEEK_DATA/SEEK_HOLE (whole file if unsupported)."""
    if size == 0:
        return []
    fd = os.open(path, os.O_RDONLY | _noatime())
    try:
        out, pos = [], 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                return [(0, size)]
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, min(end, size)))
            pos = end
        return out
    except PermissionError:
        return [(0, size)]
    finally:
        os.close(fd)


def content_digest(path: Path, extents: Iterable[tuple[int, int]], size: int) -> str:
    """sha256 over (offset, block) of every non-zero 4 KiB block: equal contents give equal
    digests whatever the hole layout, and big sparse files cost only their data."""
    h = hashlib.sha256(b"size %d;" % size)
    try:
        fd = os.open(path, os.O_RDONLY | _noatime())
    except PermissionError:
        return "<unreadable>"
    try:
        done = 0
        for start, end in extents:
            pos = max(start - start % SPARSE_GRANULE, done)
            while pos < end:
                want = -(-min(MIB, end - pos) // SPARSE_GRANULE) * SPARSE_GRANULE
                chunk = os.pread(fd, want, pos)
                if not chunk:
                    break
                if chunk.count(0) != len(chunk):
                    for off in range(0, len(chunk), SPARSE_GRANULE):
                        block = chunk[off:off + SPARSE_GRANULE]
                        if block != _ZERO_BLOCK[:len(block)]:
                            h.update(struct.pack("<Q", pos + off) + block)
                pos += len(chunk)
            done = max(done, pos)
        return h.hexdigest()
    finally:
        os.close(fd)


def _noatime() -> int:
    return os.O_NOATIME if os.geteuid() == 0 else 0


# --- POSIX ACL xattr codec (the kernel's posix_acl_xattr format, version 2) ----------------

_ACL_TAGS = {0x01: "u", 0x02: "u", 0x04: "g", 0x08: "g", 0x10: "m", 0x20: "o"}
_ACL_TAG_OF = {("u", False): 0x01, ("u", True): 0x02, ("g", False): 0x04, ("g", True): 0x08,
               ("m", False): 0x10, ("o", False): 0x20}
_ACL_UNDEF = 0xFFFFFFFF


def acl_from_xattr(raw: bytes) -> str:
    """``system.posix_acl_*`` value → "u::rw-,u:1000:rwx,g::r--,m::rwx,o::r--"."""
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != 2:
        return "<invalid acl " + raw.hex() + ">"
    parts = []
    for off in range(4, len(raw), 8):
        tag, perm, qual = struct.unpack_from("<HHI", raw, off)
        who = "" if tag not in (0x02, 0x08) else str(qual)
        perms = "".join(c if perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))
        parts.append(f"{_ACL_TAGS.get(tag, hex(tag))}:{who}:{perms}")
    return ",".join(parts)


def acl_to_xattr(text: str) -> bytes:
    """Short setfacl text (u::rwx,u:1000:r-x,g::r-x,g:2000:r--,m::rwx,o::---) → xattr value.

    Entries are sorted as the kernel requires (tag, then id)."""
    entries = []
    for part in text.split(","):
        tag, who, perms = part.strip().split(":")
        code = _ACL_TAG_OF[(tag[0], bool(who))]
        perm = sum(b for c, b in (("r", 4), ("w", 2), ("x", 1)) if c in perms)
        entries.append((code, int(who) if who else _ACL_UNDEF, perm))
    entries.sort()
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", c, p, q) for c, q, p in entries)


# ======================================================================================
# comparing two trees
# ======================================================================================

def diff_trees(a: Path | TreeState, b: Path | TreeState, *, times: bool = True, ns: bool = False, atime: bool = False,
               xattrs: bool = True, acls: bool = True, flags: bool = False, owners: bool = True,
               sparse: bool = True, root: bool = True, ignore: Iterable[str] = IGNORED_TOP
               ) -> list[str]:
    """Every difference between trees ``a`` (the original) and ``b`` (the copy), one line each:
    ``"'<path>': <field>: <a value> != <b value>"``. Empty when they are equal.
    ``a`` and ``b`` are directories or states captured earlier by :func:`tree_state`."""
    sa = a if isinstance(a, TreeState) else tree_state(a, ignore=ignore)
    sb = b if isinstance(b, TreeState) else tree_state(b, ignore=ignore)
    a, b = sa.root, sb.root
    out = [f"{p!r}: only in {a}" for p in sorted(sa.keys() - sb.keys())]
    out += [f"{p!r}: only in {b}" for p in sorted(sb.keys() - sa.keys())]
    has_symtab = any((r / "restoresymtable").exists() for r in (a, b))
    opts = dict(times=times, ns=ns, atime=atime, xattrs=xattrs, acls=acls, flags=flags,
                owners=owners, sparse=sparse)
    for p in sorted(sa.keys() & sb.keys()):
        if p == ".":
            if not root:
                continue
            # restore -r writes restoresymtable after setting the root's times
            o = dict(opts, times=opts["times"] and not has_symtab,
                     atime=opts["atime"] and not has_symtab)
        else:
            o = opts
        out += [f"{p!r}: {d}" for d in diff_entries(sa[p], sb[p], Path(a) / p, Path(b) / p, **o)]
    return out


def diff_entries(x: Entry, y: Entry, xpath: Path | None = None, ypath: Path | None = None, *,
                 times: bool = True, ns: bool = False, atime: bool = False, xattrs: bool = True,
                 acls: bool = True, flags: bool = False, owners: bool = True, sparse: bool = True
                 ) -> list[str]:
    """The differing fields of two entries, formatted ``"field: a != b"``."""
    if x.type != y.type:
        return [f"type: {x.type} != {y.type}"]
    d: list[str] = []

    def cmp(name: str, u, v, show=repr) -> None:
        if u != v:
            d.append(f"{name}: {show(u)} != {show(v)}")

    cmp("mode", x.mode, y.mode, oct)
    if owners:
        cmp("uid", x.uid, y.uid)
        cmp("gid", x.gid, y.gid)
    if x.type in ("file", "symlink"):
        cmp("size", x.size, y.size)
    if x.type == "file" and x.digest != y.digest:
        where = _first_difference(xpath, ypath) if xpath and ypath else None
        d.append(f"content: digest {x.digest and x.digest[:12]} != {y.digest and y.digest[:12]}"
                 + (f" (first difference at byte {where})" if where is not None else ""))
    cmp("symlink target", x.target, y.target)
    cmp("rdev (major, minor)", x.rdev, y.rdev)
    if x.type != "dir" and x.links != y.links:
        d.append(f"hard links: {_names(x.links - y.links)} only in a, "
                 f"{_names(y.links - x.links)} only in b")
    if times:
        div = 1 if ns else 1000
        cmp("mtime" + ("_ns" if ns else "_us"), x.mtime_ns // div, y.mtime_ns // div)
        if atime and x.type != "symlink":   # readlink itself updates a symlink's atime
            cmp("atime" + ("_ns" if ns else "_us"), x.atime_ns // div, y.atime_ns // div)
    if xattrs:
        for name in sorted(x.xattrs.keys() | y.xattrs.keys()):
            u, v = x.xattrs.get(name), y.xattrs.get(name)
            if u != v:
                d.append(f"xattr {name}: {_short(u)} != {_short(v)}")
    if acls:
        cmp("access ACL", x.acl_access, y.acl_access)
        cmp("default ACL", x.acl_default, y.acl_default)
    if flags:
        cmp("flags", _flag_text(x.flags), _flag_text(y.flags), str)
    if sparse and x.type == "file":
        d += [f"sparse: hole [{s}, {e}) has data in the copy" for s, e in lost_holes(x, y)]
    return d


def lost_holes(x: Entry, y: Entry) -> list[tuple[int, int]]:
    """Holes of at least SPARSE_MIN_HOLE bytes in ``x`` (rounded inwards to 4 KiB) that
    are not entirely holes in ``y``."""
    holes, pos = [], 0
    for s, e in list(x.data) + [(x.size, x.size)]:
        if s - pos >= SPARSE_MIN_HOLE:
            hs = -(-pos // SPARSE_GRANULE) * SPARSE_GRANULE
            he = s // SPARSE_GRANULE * SPARSE_GRANULE
            if he > hs:
                holes.append((hs, he))
        pos = max(pos, e)
    return [(hs, he) for hs, he in holes if any(s < he and e > hs for s, e in y.data)]


def assert_trees_equal(a: Path | TreeState, b: Path | TreeState, *, times: bool = True, ns: bool = False,
                       atime: bool = False, xattrs: bool = True, acls: bool = True,
                       flags: bool = False, owners: bool = True, sparse: bool = True,
                       root: bool = True, ignore: Iterable[str] = IGNORED_TOP) -> None:
    """Assert that tree ``b`` is a faithful copy of tree ``a``; the failure lists every
    differing path and field. Top-level ``lost+found`` and ``restoresymtable`` are ignored.

    times: compare mtimes (microseconds; nanoseconds with ``ns``), atimes with ``atime``
    (not for symlinks: reading a link's target updates its atime).
    sparse: every hole of >= 64 KiB in ``a`` must be a hole in ``b``.
    root: compare the root directory itself (its times are skipped when restoresymtable
    exists, because restore -r creates that file after setting them)."""
    diffs = diff_trees(a, b, times=times, ns=ns, atime=atime, xattrs=xattrs, acls=acls,
                       flags=flags, owners=owners, sparse=sparse, root=root, ignore=ignore)
    if diffs:
        ra, rb = (x.root if isinstance(x, TreeState) else x for x in (a, b))
        raise AssertionError(f"trees differ: {ra} vs {rb} ({len(diffs)} differences)\n  "
                             + "\n  ".join(diffs))


def _flag_text(flags: int | None) -> str:
    if flags is None:
        return "<unsupported>"
    return "".join(c for bit, c in sorted(FLAG_LETTERS.items()) if flags & bit) or "-"


def _names(paths: Iterable[str], limit: int = 4) -> str:
    paths = sorted(paths)
    more = f" +{len(paths) - limit} more" if len(paths) > limit else ""
    return "[" + ", ".join(map(repr, paths[:limit])) + more + "]"


def _short(value: bytes | None) -> str:
    if value is None:
        return "<missing>"
    return repr(value[:40]) + (f"...({len(value)} bytes)" if len(value) > 40 else "")


def _first_difference(a: Path, b: Path) -> int | None:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            pos = 0
            while True:
                ca, cb = fa.read(MIB), fb.read(MIB)
                if ca != cb:
                    n = min(len(ca), len(cb))
                    return pos + next((i for i in range(n) if ca[i] != cb[i]), n)
                if not ca:
                    return None
                pos += len(ca)
    except OSError:
        return None
