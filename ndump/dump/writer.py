"""Pass III, IV and V: directories, then files, each followed by its extended
attributes (classic: dump/traverse.c dumpino(), blksout(), dumpdirino()).

Files are read with the fewest system calls we can manage: one open, one fstat,
one read per 512 KiB chunk; SEEK_DATA/SEEK_HOLE only when the block count says
the file has holes.
"""
from __future__ import annotations

import errno
import os
import stat

from ndump.format import FormatWriter, Inode, pack_dir, pack_ea_records, symlink_payload
from ndump.format.extattr import pack_big_ea_record
from ndump.format.constants import (
    DT_DIR, DT_REG, EXT_NDUMP_XATTR, MAX_DIR_SIZE, MAX_SYMLINK, ROOTINO, TP_BSIZE, TP_NINDIR,
)
from ndump.format.header import _new_inode as new_inode
from ndump.fsmeta import birth_time, get_flags, get_xattrs
from ndump.report import Reporter
from ndump.dump.inomap import InodeMap
from ndump.dump.select import ROOT_KEY, DirNode, Selection, show_path

CHUNK = TP_NINDIR * TP_BSIZE          # bytes described by one header
_NS = 1_000_000_000
ALL = b"\x01" * TP_NINDIR
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _why_not(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "vanished during the dump, not dumped"
    return f"not dumped: {e.strerror}"


class TreeWriter:
    def __init__(self, root: bytes, sel: Selection, inomap: InodeMap, fmt: FormatWriter,
                 reporter: Reporter, *, checksums: bool = True, progress=None, on_inode=None):
        self.root = root
        self.sel = sel
        self.map = inomap.map
        self.fmt = fmt
        self.rep = reporter
        self.checksums = checksums
        self.progress = progress or (lambda n: None)
        # file history (dump/history.py): on_inode(dino, block of its TS_INODE header, inode)
        self.on_inode = on_inode
        self.bytes_done = 0
        self._noatime = os.O_NOATIME

    # -- helpers -----------------------------------------------------------
    def _note(self, dino: int, inode: Inode) -> None:
        if self.on_inode is not None:
            self.on_inode(dino, self.fmt.tapea, inode)

    def _path(self, relpath: bytes) -> bytes:
        return self.root + b"/" + relpath if relpath else self.root

    def _open(self, path: bytes, dir_fd: int | None = None) -> int:
        if dir_fd is not None and dir_fd < 0:
            dir_fd = None
        try:
            return os.open(path, _OPEN_FLAGS | self._noatime, dir_fd=dir_fd)
        except PermissionError:
            if not self._noatime:
                raise
            self._noatime = 0                 # O_NOATIME needs ownership; do without
            return os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)

    def _inode(self, st: os.stat_result, fd: int | None, path: bytes | None, size: int | None = None,
               flags: int = 0) -> Inode:
        birth = birth_time(fd=fd) if fd is not None else birth_time(path=path)
        a, m, c = divmod(st.st_atime_ns, _NS), divmod(st.st_mtime_ns, _NS), divmod(st.st_ctime_ns, _NS)
        # new_inode skips the frozen dataclass __init__, a third of the per-file cost
        return new_inode(mode=st.st_mode, nlink=st.st_nlink,
                         size=st.st_size if size is None else size, uid=st.st_uid, gid=st.st_gid,
                         atime=a[0], atime_ns=a[1], mtime=m[0], mtime_ns=m[1], ctime=c[0],
                         ctime_ns=c[1], rdev=st.st_rdev, flags=flags, blocks=st.st_blocks, gen=0,
                         birth=birth)

    def _xattrs(self, ino: int, inode: Inode, target, show: str, single: bool) -> None:
        try:
            attrs = get_xattrs(target)
        except OSError as e:
            self.rep.file_problem(show, f"cannot read extended attributes: {e.strerror}")
            return
        if not attrs:
            return
        records, skipped = pack_ea_records(attrs, single=single)
        if skipped and not single:
            # stock restore skips an unknown EA record after a file, but hangs on one
            # after a directory: only non-directories get the extension record
            wanted = set(skipped)
            big, skipped = pack_big_ea_record([(n, v) for n, v in attrs if n in wanted])
            if big is not None:
                self.fmt.write_extattrs(ino, inode, big, ext=EXT_NDUMP_XATTR)
                kept = ", ".join(sorted(wanted - set(skipped)))
                self.rep.warning(f"{show}: {kept} over 4 KiB: kept in an ndump extension record"
                                 " that stock restore skips")
        why = ("does not fit a directory's single 4 KiB attribute record" if single
               else "cannot be stored in the dump format")
        for name in skipped:
            self.rep.warning(f"{show}: extended attribute {name} {why}; not dumped")
        for record in records:
            self.fmt.write_extattrs(ino, inode, record)

    # -- Pass III ----------------------------------------------------------
    def dump_dirs(self) -> None:
        m = self.map
        order = sorted((m[d.key], di) for di, d in enumerate(self.sel.dirs) if d.dumped)
        for dino, di in order:
            self._dump_dir(dino, self.sel.dirs[di])

    def _dump_dir(self, dino: int, node: DirNode) -> None:
        m = self.map
        parent = ROOTINO if node.key == ROOT_KEY else m[self.sel.dirs[node.parent].key]
        entries = [(dino, DT_DIR, b"."), (parent, DT_DIR, b"..")]
        entries += [(m[k], dt, name) for name, k, dt in zip(node.names, node.keys, node.dtypes)]
        data = pack_dir(entries)
        if len(data) > MAX_DIR_SIZE:
            self.rep.file_problem(show_path(node.relpath), "directory too large for the dump format")
            data = pack_dir(entries[:2])
        path = self._path(node.relpath)
        fd = None
        try:
            fd = self._open(path)
            st = os.fstat(fd)
            flags = get_flags(fd)
        except OSError as e:
            if not node.foreign:
                self.rep.file_problem(show_path(node.relpath), f"cannot read directory: {e.strerror}")
            try:
                st = os.lstat(path)
            except OSError:
                st = os.lstat(self.root)
            flags = 0
        try:
            inode = self._inode(st, fd, None, size=len(data), flags=flags)
            self._note(dino, inode)
            for i in range(0, len(data), TP_BSIZE):
                self.fmt.write_chunk(dino, inode, i == 0, b"\x01", data[i:i + TP_BSIZE],
                                     crc=self.checksums)
            if fd is not None and not node.foreign:
                self._xattrs(dino, inode, fd, show_path(node.relpath), single=True)
        finally:
            if fd is not None:
                os.close(fd)

    # -- Pass IV/V ---------------------------------------------------------
    def dump_files(self) -> None:
        cur_dir = None
        dfd = -1
        try:
            for dino, node, i in self.sel.file_entries():
                if node is not cur_dir:
                    if dfd >= 0:
                        os.close(dfd)
                        dfd = -1
                    cur_dir = node
                    try:
                        dfd = os.open(self._path(node.relpath), _DIR_FLAGS)
                    except OSError:
                        dfd = -1              # each file then reports its own problem
                name = node.names[i]
                rel = node.relpath + b"/" + name if node.relpath else name
                self._dump_file(dino, dfd, name, rel, node.dtypes[i])
        finally:
            if dfd >= 0:
                os.close(dfd)

    def _dump_file(self, dino: int, dfd: int, name: bytes, relpath: bytes, dtype: int) -> None:
        show = show_path(relpath)
        if dtype == DT_REG:
            try:
                fd = self._open(name, dfd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                    self.rep.file_problem(show, _why_not(e))
                    return
            else:
                self._dump_regular(dino, fd, show)
                return
        path = self._path(relpath)
        try:
            st = os.lstat(path)
        except OSError as e:
            self.rep.file_problem(show, _why_not(e))
            return
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFREG:
            try:
                fd = self._open(path)
            except OSError as e:
                self.rep.file_problem(show, _why_not(e))
                return
            self._dump_regular(dino, fd, show)
        elif fmt == stat.S_IFLNK:
            self._dump_symlink(dino, path, st, show)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
            inode = self._inode(st, None, path, size=0)
            self._note(dino, inode)
            self.fmt.write_chunk(dino, inode, True, b"", b"")
            self._xattrs(dino, inode, path, show, single=False)
        else:
            self.rep.file_problem(show, "changed type during the dump, not dumped")

    def _dump_symlink(self, dino: int, path: bytes, st: os.stat_result, show: str) -> None:
        try:
            target = os.readlink(path)
        except OSError as e:
            self.rep.file_problem(show, f"not dumped: {e.strerror}")
            return
        if len(target) > MAX_SYMLINK:
            self.rep.file_problem(show, "symbolic link target too long for the dump format")
            return
        inode = self._inode(st, None, path, size=len(target))
        payload = symlink_payload(target)
        self._note(dino, inode)
        self.fmt.write_chunk(dino, inode, True, b"\x01" * (len(payload) // TP_BSIZE), payload,
                             crc=self.checksums)
        self._xattrs(dino, inode, path, show, single=False)

    def _dump_regular(self, dino: int, fd: int, show: str) -> None:
        try:
            st = os.fstat(fd)
            inode = self._inode(st, fd, None, flags=get_flags(fd))
            self._write_data(dino, inode, fd, st, show)
            self._xattrs(dino, inode, fd, show, single=False)
        except OSError as e:
            # the header is out already: the file is on the medium, but damaged
            self.rep.file_problem(show, f"read error, data incomplete: {e.strerror}")
        finally:
            os.close(fd)

    def _write_data(self, dino: int, inode: Inode, fd: int, st: os.stat_result, show: str) -> None:
        size = st.st_size
        self._note(dino, inode)
        if size == 0:
            self.fmt.write_chunk(dino, inode, True, b"", b"")
            return
        extents = _data_extents(fd, size) if st.st_blocks * 512 < size else None
        first = True
        short = False
        for start in range(0, size, CHUNK):
            pieces = min(TP_NINDIR, (size - start + TP_BSIZE - 1) // TP_BSIZE)
            addr, data, got_short = _read_chunk(fd, start, pieces, size, extents)
            short |= got_short
            self.fmt.write_chunk(dino, inode, first, addr, data, crc=self.checksums)
            first = False
            self.bytes_done += len(data)
            self.progress(self.bytes_done)
        if short:
            self.rep.warning(f"{show}: file shrank during the dump; the missing end was written as zeros")


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """[(start, end)] of the data regions (SEEK_DATA/SEEK_HOLE)."""
    out = []
    pos = 0
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


def _read_chunk(fd: int, start: int, pieces: int, size: int, extents):
    """(addr map, data of present pieces, shrank?) for one header's chunk."""
    length = min(pieces * TP_BSIZE, size - start)
    if extents is None:
        data = os.pread(fd, length, start)
        short = len(data) < length
        pad = pieces * TP_BSIZE - len(data)
        if pad:
            data += bytes(pad)
        return ALL[:pieces], data, short
    present = bytearray(pieces)
    for ds, de in extents:
        if de <= start or ds >= start + length:
            continue
        lo = max(ds, start) - start
        hi = min(de, start + length) - start
        present[lo // TP_BSIZE:(hi + TP_BSIZE - 1) // TP_BSIZE] = b"\x01" * (
            (hi + TP_BSIZE - 1) // TP_BSIZE - lo // TP_BSIZE)
    parts = []
    short = False
    i = 0
    while i < pieces:
        if not present[i]:
            i += 1
            continue
        j = i
        while j < pieces and present[j]:
            j += 1
        want = min(j * TP_BSIZE, size - start) - i * TP_BSIZE
        got = os.pread(fd, want, start + i * TP_BSIZE)
        short |= len(got) < want
        parts.append(got + bytes((j - i) * TP_BSIZE - len(got)))
        i = j
    return bytes(present), b"".join(parts), short

