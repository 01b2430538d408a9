#!/usr/bin/env python3
"""Write tests/data/golden.json: what stock restore 0.4b47 makes of each golden image.

    python3 tests/data/golden_facts.py OUTDIR [NAME=SOURCE_FS_IMAGE ...]

Run by make_golden.sh (as root). For each image (group) it records the image files'
size and sha256, the volume header fields, stock ``restore -t``'s listing, and the
facts of the tree stock ``restore -r`` rebuilds from it (for l1-after-rename: from the
chain l0-basic then l1). With ``NAME=SOURCE_FS_IMAGE`` it also mounts the ext4 image
the dump was made from and lists where stock restore's result differs from it
(``stock_vs_source``): stock dump/restore's own limits, which ndump need not copy.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from stock import RESTORE, loop_mount, parse_listing, stock_restore  # noqa: E402
from trees import FLAG_LETTERS, diff_trees, tree_state  # noqa: E402

TP_BSIZE = 1024
NFS_MAGIC = 60012
CHECKSUM = 84446
TS_NAMES = {1: "TS_TAPE", 2: "TS_INODE", 3: "TS_BITS", 4: "TS_ADDR", 5: "TS_END", 6: "TS_CLRI"}

GROUPS = {
    "l0-basic": dict(chain=["l0-basic"], what="level 0 of a 1 KiB-block ext4: every file type, "
                     "sizes 0/1/1023/1024/1025, 3 hard links, 150-name directory, long and "
                     "dangling symlinks, devices (300/70000 too), fifo, socket, setuid/setgid/"
                     "sticky, mode 000, uid 70000, odd names, chattr +A"),
    "l0-zlib": dict(chain=["l0-zlib"], what="the l0-basic filesystem, dump -z6 (zlib records)"),
    "l0-bzip2": dict(chain=["l0-bzip2"], what="the l0-basic filesystem, dump -j (bzip2 level 2)"),
    "l0-b64": dict(chain=["l0-b64"], what="the l0-basic filesystem, dump -b 64 (64 KiB records)"),
    "l1-after-rename": dict(chain=["l0-basic", "l1-after-rename"], base="l0-basic",
                            what="level 1 on top of l0-basic after renames (file, directory), "
                            "deletions, an edit, a hard-link split, a chmod and new files; "
                            "facts are those of restore -r of l0-basic then l1"),
    "l0-sparse": dict(chain=["l0-sparse"], what="level 0 of a 4 KiB-block ext4 with sparse files"),
    "l0-xattr-acl": dict(chain=["l0-xattr-acl"], what="level 0 of a 4 KiB-block ext4 with user./"
                         "trusted./security. xattrs (in-inode and block EAs), access and "
                         "default ACLs"),
    "multi-volume": dict(chain=["multi-volume"], multi=True,
                         what="dump -M -B 150 of a 1 KiB-block ext4: three 150 KiB volumes; "
                         "stock restore -M wants them named multi-volume-001, -002, -003"),
    "l0-damaged-block-37": dict(chain=["l0-damaged-block-37"], damaged_block=37,
                                what="l0-basic with bytes 512..515 of block 37 inverted"),
}


def main(out: Path, sources: dict[str, Path]) -> None:
    groups = {}
    for name, info in GROUPS.items():
        print(f"golden_facts: {name}", file=sys.stderr)
        groups[name] = describe(out, name, info, sources.get(name))
    doc = {
        "format": 1,
        "made_with": "dump/restore 0.4b47-4 (Debian 12), e2fsprogs " + _e2fs_version(),
        "notes": [
            "paths are relative to the dump root; '.' is the root itself",
            "listing: what stock `restore -t -f IMAGE` prints (minus '.'); inodes: dump inode per path",
            "files: facts of the tree stock `restore -r` rebuilt (lost+found and restoresymtable "
            "left out); mtime in whole seconds (stock dump stores no sub-second part)",
            "xattr values: text when printable UTF-8, else '0x' + hex",
            "files = 'same as l0-basic': the compressed/blocking variants restore to that tree",
            "data_extents: [start, end) of allocated data on the restore target (1 KiB or 4 KiB "
            "granularity), given for files with holes",
            "stock_vs_source: differences between the restored tree and the filesystem dumped "
            "(trees.diff_trees with times=False): stock tools' limits, not ndump's targets",
        ],
        "images": groups,
    }
    for name, g in groups.items():      # the variants of l0-basic restore to the same tree
        if name in ("l0-zlib", "l0-bzip2", "l0-b64") and g["files"] == groups["l0-basic"]["files"]:
            g["files"] = "same as l0-basic"
    (out / "golden.json").write_text(_format(doc) + "\n")


def _format(obj, depth: int = 0) -> str:
    """JSON with the outer levels indented and each leaf record (depth 4) on one line."""
    if depth >= 4 or not isinstance(obj, (dict, list)) or not obj:
        return json.dumps(obj, ensure_ascii=False)
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_format(v, depth + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    return "[\n" + ",\n".join(inner + _format(v, depth + 1) for v in obj) + "\n" + pad + "]"


def describe(out: Path, name: str, info: dict, source: Path | None) -> dict:
    files = _files_of(out, name)
    d: dict = {"what": info["what"], "dump_files": [f.name for f in files]}
    if "base" in info:
        d["base"] = info["base"]
    d["volumes"] = [dict(file=f.name, size=f.stat().st_size, sha256=_sha256(f), header=tape_header(f))
                    for f in files]
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        tmp = Path(tmp)
        args = _input_args(out, name, info, tmp)
        listing = stock_restore(["-t", *args], cwd=tmp, check=False)
        inodes = parse_listing(listing.stdout)
        d["listing"] = sorted(inodes)
        d["inodes"] = dict(sorted(inodes.items()))
        target = tmp / "restored"
        target.mkdir()
        runs = []
        for step in info["chain"]:
            a = _input_args(out, step, GROUPS[step], tmp)
            p = stock_restore(["-r", "-y", *a], cwd=target, check=False)
            runs.append({"argv": ["restore", "-r", "-y", *[_rel(x, tmp, out) for x in a]],
                         "status": p.returncode,
                         "stderr": [ln for ln in p.stderr.splitlines() if ln.strip()][:40]})
        d["stock_restore"] = runs
        state = tree_state(target)
        d["files"] = {p: facts(e, target) for p, e in sorted(state.items())}
        if "damaged_block" in info:
            d["damaged_block"] = info["damaged_block"]
            role = d["damaged_block_was"] = block_role(out / "l0-basic.dump", info["damaged_block"], inodes)
            if not (role["is_header"] and role["header_type"] == "TS_INODE" and role["mode"].startswith("0o100")):
                print(f"golden_facts: WARNING: block {role['block']} is no longer the TS_INODE header of "
                      f"a regular file ({role}); MAKE.md and the tests expect f1023's", file=sys.stderr)
        if source is not None:
            with loop_mount(source, readonly=True) as (_dev, mnt):
                d["stock_vs_source"] = [x.replace(str(mnt), "SOURCE").replace(str(target), "RESTORED")
                                        for x in diff_trees(mnt, target, times=False, flags=True)]
    return d


def _files_of(out: Path, name: str) -> list[Path]:
    if name == "multi-volume":
        return sorted(out.glob("multi-volume-[0-9][0-9][0-9].dump"))
    return [out / f"{name}.dump"]


def _input_args(out: Path, name: str, info: dict, tmp: Path) -> list[str]:
    if info.get("multi"):
        for f in _files_of(out, name):            # restore -M wants PREFIX001, PREFIX002, ...
            link = tmp / f.name.removesuffix(".dump")
            if not link.exists():
                link.symlink_to(f)
        return ["-M", "-f", str(tmp / "multi-volume-")]
    return ["-f", str(out / f"{name}.dump")]


def _rel(arg: str, tmp: Path, out: Path) -> str:
    return arg.replace(str(tmp) + "/", "").replace(str(out) + "/", "")


def facts(e, root: Path) -> dict:
    f: dict = {"type": e.type, "mode": oct(e.mode), "uid": e.uid, "gid": e.gid}
    if e.type != "dir":
        f["nlink"] = e.nlink
    if e.type in ("file", "symlink"):
        f["size"] = e.size
    if e.type == "file":
        f["sha256"] = _sha256(root / e.path)
        if list(e.data) != ([(0, e.size)] if e.size else []):
            f["data_extents"] = [list(x) for x in e.data]
    if e.path != ".":
        f["mtime"] = e.mtime_ns // 1_000_000_000
    if e.target is not None:
        f["target"] = e.target
    if e.rdev is not None:
        f["rdev"] = list(e.rdev)
    if e.xattrs:
        f["xattrs"] = {k: _value(v) for k, v in sorted(e.xattrs.items())}
    if e.acl_access:
        f["acl_access"] = e.acl_access
    if e.acl_default:
        f["acl_default"] = e.acl_default
    if e.flags:
        f["flags"] = "".join(c for bit, c in sorted(FLAG_LETTERS.items()) if e.flags & bit)
    return f


def _value(v: bytes) -> str:
    try:
        s = v.decode("utf-8")
        if s.isprintable() and not s.startswith("0x"):
            return s
    except UnicodeDecodeError:
        pass
    return "0x" + v.hex()


def tape_header(path: Path) -> dict:
    """The volume header (TS_TAPE, FORMAT §2.1) of an image file."""
    with open(path, "rb") as fh:
        b = fh.read(TP_BSIZE)
    c_type, date, ddate, volume, tapea, inumber, magic = struct.unpack_from("<iiiiIIi", b)
    s = lambda lo, hi: b[lo:hi].split(b"\0")[0].decode("latin-1")  # noqa: E731
    flags, firstrec, ntrec = struct.unpack_from("<iii", b, 888)
    return dict(type=TS_NAMES.get(c_type, c_type), magic=magic, checksum_ok=_checksum_ok(b),
                date=date, ddate=ddate, volume=volume, tapea=tapea, inumber=inumber,
                count=struct.unpack_from("<i", b, 160)[0], level=struct.unpack_from("<i", b, 692)[0],
                label=s(676, 692), filesys=s(696, 760), dev=s(760, 824), host=s(824, 888),
                flags=hex(flags), firstrec=firstrec, ntrec=ntrec)


def _checksum_ok(b: bytes) -> bool:
    return sum(struct.unpack("<256i", b)) & 0xFFFFFFFF == CHECKSUM and \
        struct.unpack_from("<i", b, 24)[0] == NFS_MAGIC


def block_role(image: Path, n: int, inodes: dict[str, int]) -> dict:
    """What block ``n`` of an uncompressed image is: a header, or data of the last header."""
    data = image.read_bytes()
    last = None
    for i in range(0, n + 1):
        b = data[i * TP_BSIZE:(i + 1) * TP_BSIZE]
        if _checksum_ok(b):
            last = (i, b)
    i, b = last
    c_type, inumber = struct.unpack_from("<i", b)[0], struct.unpack_from("<I", b, 20)[0]
    flags = struct.unpack_from("<i", b, 888)[0]
    mode = struct.unpack_from("<H", b, 32)[0]
    kind = TS_NAMES.get(c_type, str(c_type)) + (" (EA record)" if flags & 0x8000 else "")
    return dict(block=n, is_header=(i == n), header_block=i, header_type=kind, inumber=inumber,
                mode=oct(mode), paths=sorted(p for p, ino in inodes.items() if ino == inumber))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _e2fs_version() -> str:
    import subprocess
    p = subprocess.run(["mke2fs", "-V"], capture_output=True, text=True)
    return (p.stderr or p.stdout).split()[1] if (p.stderr or p.stdout) else "?"


if __name__ == "__main__":
    if len(sys.argv) < 2 or not os.access(RESTORE, os.X_OK):
        sys.exit("usage: golden_facts.py OUTDIR [NAME=SOURCE_FS_IMAGE ...] (needs stock restore)")
    srcs = dict(a.split("=", 1) for a in sys.argv[2:])
    main(Path(sys.argv[1]), {k: Path(v) for k, v in srcs.items()})
