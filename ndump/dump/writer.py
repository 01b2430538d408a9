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
import zlib

from ndump.format import (
    FormatWriter, Inode, pack_dir, pack_ea_records, symlink_payload,
)
from ndump.format.extattr import pack_big_ea_record
from ndump.format.header import make_inode_args
from ndump.format.constants import (
    DT_DIR, DT_REG, EXT_NDUMP_XATTR, MAX_DIR_SIZE, MAX_SYMLINK, ROOTINO, TP_BSIZE, TP_NINDIR,
)
from ndump.fsmeta import Statx, flag_getter, get_flags, get_xattrs
from ndump.errors import reason
from ndump.report import Reporter
from ndump.dump.inomap import InodeMap
from ndump.dump.select import _FS_ENCODING, _FS_ERRORS, ROOT_KEY, DirNode, Selection, show_path
from ndump.dump.treefd import FILE_FLAGS, TreeFds, proc_path

CHUNK = TP_NINDIR * TP_BSIZE          # bytes described by one header
_NS = 1_000_000_000
ALL = b"\x01" * TP_NINDIR
_ZEROS = bytes(TP_BSIZE)
_S_IFMT, _S_IFREG = 0o170000, 0o100000
_STATX_BTIME = 0x800


class _ReadFailed(Exception):
    """A file's data could not be read after its header went out."""

    def __init__(self, err: OSError):
        super().__init__(err.strerror)
        self.err = err


class TreeWriter:
    def __init__(self, root: bytes, sel: Selection, inomap: InodeMap, fmt: FormatWriter,
                 reporter: Reporter, *, checksums: bool = True, progress=None, on_inode=None):
        self.sel = sel
        self.map = inomap.map
        self.fmt = fmt
        self.rep = reporter
        self.checksums = checksums
        self.progress = progress or (lambda n: None)
        # file history (dump/history.py): on_inode(dino, block of its TS_INODE header,
        # mode, size, mtime, ctime)
        self.on_inode = on_inode
        self.bytes_done = 0
        self._noatime = os.O_NOATIME
        statx = Statx()
        self._birth_time = statx.birth_time
        self._fstat = statx.fstat             # os.fstat and the birth time, one system call
        self._fstat_fields = statx.fstat_fields
        self._get_flags = flag_getter()
        self.fds = TreeFds(root)
        self._ahead: _ReadAhead | None = None     # started by the first file over a chunk

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.stop()
        self.fds.close()

    # -- helpers -----------------------------------------------------------
    def _note(self, dino: int, inode: Inode) -> None:
        if self.on_inode is not None:
            self.on_inode(dino, self.fmt.tapea, inode.mode, inode.size, inode.mtime, inode.ctime)

    def _open(self, name: bytes, dir_fd: int) -> int:
        try:
            return os.open(name, FILE_FLAGS | self._noatime, dir_fd=dir_fd)
        except PermissionError:
            if not self._noatime:
                raise
            self._noatime = 0                 # O_NOATIME needs ownership; do without
            return os.open(name, FILE_FLAGS, dir_fd=dir_fd)

    def _open_dir(self, node: DirNode) -> int:
        """The directory of a node, checked to be the one Pass I listed; raises
        OSError (ENOENT when it was renamed, removed or replaced since)."""
        fd = self.fds.open(node.relpath)
        if not node.foreign and node.key != ROOT_KEY and os.fstat(fd).st_ino != node.key:
            raise FileNotFoundError(errno.ENOENT, "replaced during the dump")
        return fd

    def _not_dumped(self, show: str, e: OSError) -> None:
        if e.errno == errno.ENOENT:
            # a temporary file on a live tree: nothing is lost
            self.rep.info(f"{show}: vanished during the dump")
        else:
            self.rep.file_problem(show, f"not dumped: {reason(e)}")

    def _inode(self, st: os.stat_result, fd: int | None, name: bytes | None = None,
               dir_fd: int = -100, size: int | None = None, flags: int = 0,
               birth: tuple[int, int] | None | bool = False) -> Inode:
        """``birth``: the birth time when the caller has it already (None: unknown)."""
        if birth is False:
            birth = (self._birth_time(fd=fd) if fd is not None
                     else self._birth_time(path=name, dir_fd=dir_fd))
        a, m, c = divmod(st.st_atime_ns, _NS), divmod(st.st_mtime_ns, _NS), divmod(st.st_ctime_ns, _NS)
        # make_inode_args skips the frozen dataclass __init__ (and keywords): fields in
        # Inode's order, mode nlink size uid gid atime atime_ns mtime mtime_ns ctime
        # ctime_ns rdev flags blocks gen birth
        return make_inode_args(st.st_mode, st.st_nlink, st.st_size if size is None else size,
                               st.st_uid, st.st_gid, a[0], a[1], m[0], m[1], c[0], c[1],
                               st.st_rdev, flags, st.st_blocks, 0, birth)

    def _xattrs(self, ino: int, inode: Inode, target, show: str, single: bool) -> None:
        try:
            attrs = get_xattrs(target)
        except OSError as e:
            why = reason(e)
            if e.errno == errno.E2BIG:
                why = ("their names are over the 64 KiB the kernel lists (E2BIG);"
                       " none of them dumped")
            self.rep.file_problem(show, f"cannot read extended attributes: {why}")
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
        """Pass III.  A file to be dumped whose name is gone from its directory by the
        time the directory is written is left out of it: restore then meets neither
        its name nor, when no name of it is left, its inode (it stays in the TS_BITS
        map written before, which restore tolerates silently), instead of naming it
        "not found on tape".  A name removed after its directory was written is still
        listed (stock dump does the same)."""
        m = self.map
        order = sorted((m[d.key], di) for di, d in enumerate(self.sel.dirs) if d.dumped)
        dropped: dict[tuple[int, int], int] = {}
        for dino, di in order:
            self._dump_dir(dino, di, self.sel.dirs[di], dropped)
        if dropped:
            self._without_dropped_names(dropped)

    def _dump_dir(self, dino: int, di: int, node: DirNode, dropped: dict) -> None:
        m = self.map
        show = show_path(node.relpath)
        fd = None
        try:
            fd = self._open_dir(node)
            st = os.fstat(fd)
            flags = get_flags(fd)
        except OSError as e:
            fd = None
            st = self._lost_dir(node, e)
            flags = 0
        parent = ROOTINO if node.key == ROOT_KEY else m[self.sel.dirs[node.parent].key]
        entries = [(dino, DT_DIR, b"."), (parent, DT_DIR, b"..")]
        files = self.sel.files
        inos = [m[k] for k in node.keys]
        listed = zip(inos, node.dtypes, node.names)
        if fd is not None:
            dumped = [i for i, (ino, dt) in enumerate(zip(inos, node.dtypes))
                      if files[ino] and dt != DT_DIR]
            gone = _gone(fd, [node.names[i] for i in dumped], len(inos))
            if gone:
                for i in dumped:
                    if node.names[i] in gone:
                        dropped[(di, i)] = inos[i]
                listed = (e for i, e in enumerate(listed) if (di, i) not in dropped)
        entries.extend(listed)
        data = pack_dir(entries)
        if len(data) > MAX_DIR_SIZE:
            self.rep.file_problem(show, "directory too large for the dump format")
            data = pack_dir(entries[:2])
        inode = self._inode(st, fd, size=len(data), flags=flags)
        self._note(dino, inode)
        for i in range(0, len(data), TP_BSIZE):
            self.fmt.write_chunk(dino, inode, i == 0, b"\x01", data[i:i + TP_BSIZE],
                                 crc=self.checksums)
        if fd is not None and not node.foreign:
            self._xattrs(dino, inode, fd, show, single=True)

    def _without_dropped_names(self, dropped: dict[tuple[int, int], int]) -> None:
        """After Pass III: a file none of whose names was written is not dumped (a
        note says it vanished); one whose first name was left out is read in Pass IV
        through another of its names that was written."""
        files, dirs = self.sel.files, self.sel.dirs
        moved = {ino: (di, i) for (di, i), ino in dropped.items()
                 if files[ino] - 1 == (di << 32 | i)}        # the name Pass IV would open
        if not moved:
            return
        keys = {dirs[di].keys[i]: ino for ino, (di, i) in moved.items()}
        for di, node in enumerate(dirs):
            if node.dumped and not keys.keys().isdisjoint(node.keys):
                for i, k in enumerate(node.keys):
                    ino = keys.get(k)
                    if ino is not None and (di, i) not in dropped:
                        files[ino] = (di << 32 | i) + 1
                        del keys[k]
        for ino in keys.values():
            di, i = moved[ino]
            files[ino] = 0
            prefix = dirs[di].relpath + b"/" if dirs[di].relpath else b""
            self.rep.info(f"{show_path(prefix + dirs[di].names[i])}: vanished during the dump")

    def _lost_dir(self, node: DirNode, e: OSError) -> os.stat_result:
        """Report a directory that cannot be opened (once), and the attributes to
        write for it: its own where they can still be had, else the root's."""
        if not (node.foreign or node.unreadable or node.lost):
            node.lost = True
            show = show_path(node.relpath)
            if e.errno == errno.ENOENT:
                self.rep.file_problem(show, "directory renamed or removed during the dump;"
                                            " the files under it are not dumped")
            else:
                self.rep.file_problem(show, f"cannot read directory: {reason(e)}")
        if node.key != ROOT_KEY:
            parent = self.sel.dirs[node.parent]
            try:
                return os.lstat(node.relpath.rpartition(b"/")[2], dir_fd=self.fds.open(parent.relpath))
            except OSError:
                pass
        return os.fstat(self.fds.root_fd)

    # -- Pass IV/V ---------------------------------------------------------
    def dump_files(self, start: int = 0, checkpoint=None) -> None:
        """Pass IV from dump inode ``start`` on; ``checkpoint(dino)``, when given, is
        called before each file, at an inode boundary (restartable dumps)."""
        cur_dir = None
        dfd = -1
        regular = self._regular
        for dino, node, i in self.sel.file_entries(start):
            if checkpoint is not None:
                checkpoint(dino)
            if node is not cur_dir:
                cur_dir = node
                try:
                    dfd = self._open_dir(node)
                except OSError as e:
                    dfd = -1
                    self._lost_dir(node, e)
            name = node.names[i]
            if dfd >= 0 and node.dtypes[i] == DT_REG and regular(dino, dfd, node, name):
                continue
            rel = node.relpath + b"/" + name if node.relpath else name
            if dfd < 0:
                self.rep.info(f"{show_path(rel)}: vanished during the dump")
                continue
            self._dump_file(dino, dfd, name, rel, node.dtypes[i])

    def _regular(self, dino: int, dfd: int, node: DirNode, name: bytes) -> bool:
        """Pass IV's common case in one function: a regular file of at most one chunk,
        without holes, read whole and unchanged, dumped from its statx fields (no
        stat_result, Inode or path made unless it has extended attributes).  False,
        with nothing written, for anything else and on any error: _dump_file then
        does it all again, and reports.  The bytes written are the general path's."""
        try:
            fd = os.open(name, FILE_FLAGS | self._noatime, dir_fd=dfd)
        except OSError:
            return False
        ready = False
        try:
            v = self._fstat_fields(fd)
            if v is None:
                return False
            (mask, _, _, nlink, uid, gid, mode, _, size, blocks, _, asec, ans, bsec, bns,
             csec, cns, msec, mns, _, _, _, _) = v
            if mode & _S_IFMT != _S_IFREG or size > CHUNK or blocks * 512 < size:
                return False
            flags = self._get_flags(fd)
            if size:
                data = os.pread(fd, size, 0)
                if len(data) != size:
                    return False
                pad = -size % TP_BSIZE
                if pad:
                    data += _ZEROS[:pad]
                after = os.fstat(fd)
                if after.st_mtime_ns != msec * _NS + mns or after.st_size != size:
                    return False
                crc = zlib.crc32(data) if self.checksums else None
            else:
                data = crc = None
            try:
                xattrs = os.listxattr(fd)
            except OSError:
                xattrs = True                 # _xattrs asks again, and says what failed
            ready = True
        except OSError:
            return False
        finally:
            if not ready:
                os.close(fd)
        # from here on the file is being written: nothing goes back to _dump_file
        try:
            birth = (bsec, bns) if mask & _STATX_BTIME else None
            fmt = self.fmt
            if self.on_inode is not None:
                self.on_inode(dino, fmt.tapea, mode, size, msec, csec)
            fmt.write_file(dino, mode, nlink, uid, gid, size, asec, ans, msec, mns, csec, cns,
                           flags, blocks, birth, data, crc)
            if size:
                self.bytes_done += size
                self.progress(self.bytes_done)
            if xattrs:
                inode = make_inode_args(mode, nlink, size, uid, gid, asec, ans, msec, mns, csec,
                                        cns, 0, flags, blocks, 0, birth)
                rel = node.relpath + b"/" + name if node.relpath else name
                self._xattrs(dino, inode, fd, show_path(rel), single=False)
        finally:
            os.close(fd)
        return True

    def _dump_file(self, dino: int, dfd: int, name: bytes, relpath: bytes, dtype: int) -> None:
        show = show_path(relpath)
        if dtype == DT_REG:
            try:
                fd = self._open(name, dfd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENXIO):   # no longer a file: look again
                    self._not_dumped(show, e)
                    return
            else:
                self._dump_open(dino, fd, show)
                return
        try:
            st = os.lstat(name, dir_fd=dfd)
        except OSError as e:
            self._not_dumped(show, e)
            return
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFREG:
            try:
                fd = self._open(name, dfd)
            except OSError as e:
                self._not_dumped(show, e)
                return
            self._dump_open(dino, fd, show)
        elif fmt == stat.S_IFLNK:
            self._dump_symlink(dino, dfd, name, st, show)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
            inode = self._inode(st, None, name, dfd, size=0)
            self._note(dino, inode)
            self.fmt.write_chunk(dino, inode, True, b"", b"")
            self._xattrs(dino, inode, proc_path(dfd, name), show, single=False)
        else:
            self._replaced(show, fmt)

    def _replaced(self, show: str, fmt: int) -> None:
        # the file this name held is gone (nothing lost); what replaced it was made
        # after this dump's date, so the next dump holds it
        what = "a directory" if fmt == stat.S_IFDIR else "a socket" if fmt == stat.S_IFSOCK \
            else "another kind of file"
        self.rep.info(f"{show}: replaced by {what} during the dump; not dumped")

    def _dump_symlink(self, dino: int, dfd: int, name: bytes, st: os.stat_result, show: str) -> None:
        try:
            target = os.readlink(name, dir_fd=dfd)
        except OSError as e:
            self._not_dumped(show, e)
            return
        if len(target) > MAX_SYMLINK:
            self.rep.file_problem(show, "symbolic link target too long for the dump format")
            return
        inode = self._inode(st, None, name, dfd, size=len(target))
        payload = symlink_payload(target)
        self._note(dino, inode)
        self.fmt.write_chunk(dino, inode, True, b"\x01" * (len(payload) // TP_BSIZE), payload,
                             crc=self.checksums)
        self._xattrs(dino, inode, proc_path(dfd, name), show, single=False)

    def _dump_open(self, dino: int, fd: int, show: str) -> None:
        """An open name of a regular file: dump it if it still is one."""
        try:
            try:
                st, birth = self._fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    self._replaced(show, stat.S_IFMT(st.st_mode))
                    return
                inode = self._inode(st, fd, flags=get_flags(fd), birth=birth)
            except OSError as e:
                self.rep.file_problem(show, f"not dumped: {reason(e)}")
                return
            try:
                self._write_data(dino, inode, fd, st, show)
            except _ReadFailed as e:
                # the header is out already: the file is on the medium, but damaged
                self.rep.file_problem(show, f"read error, data incomplete: {reason(e.err)}")
                return
            self._xattrs(dino, inode, fd, show, single=False)
        finally:
            os.close(fd)

    def _write_data(self, dino: int, inode: Inode, fd: int, st: os.stat_result, show: str) -> None:
        size = st.st_size
        self._note(dino, inode)
        if size == 0:
            self.fmt.write_chunk(dino, inode, True, b"", b"")
            return
        try:
            extents = _data_extents(fd, size) if st.st_blocks * 512 < size else None
        except OSError as e:
            raise _ReadFailed(e) from None
        starts = range(0, size, CHUNK)
        ahead = None
        # read ahead unless sparse: chunks that are mostly holes cost less read here
        # than handed over
        if len(starts) >= _AHEAD_FROM and extents is None:
            if self._ahead is None:
                self._ahead = _ReadAhead(self.checksums)
            ahead = self._ahead
        try:
            if ahead is not None:
                for start in starts[:_AHEAD]:
                    ahead.submit(fd, start, size, extents)
            first = True
            short = False
            for k, start in enumerate(starts):
                if ahead is not None:
                    got = ahead.result()
                    if k + _AHEAD < len(starts):
                        ahead.submit(fd, starts[k + _AHEAD], size, extents)
                else:
                    got = _read_and_sum(fd, start, size, extents, self.checksums)
                if isinstance(got, OSError):
                    raise _ReadFailed(got)
                addr, data, got_short, crc = got
                short |= got_short
                self.fmt.write_chunk(dino, inode, first, addr, data, crc=self.checksums,
                                     known_crc=crc)
                first = False
                self.bytes_done += min(len(data), size - start)     # not the padding
                self.progress(self.bytes_done)
        finally:
            if ahead is not None:
                ahead.settle()                # no read of fd is left when it is closed
        if short:
            self.rep.warning(f"{show}: file shrank during the dump; the missing end was written as zeros")
        else:
            _changed_while_read(self.rep, fd, st, show)


_AHEAD = 2        # chunks a big file's read-ahead thread works ahead of the writer
_AHEAD_FROM = 2   # chunks of a file from which it is read ahead


def _read_and_sum(fd: int, start: int, size: int, extents, checksums: bool):
    """One chunk of a file read (_read_chunk) and its CRC-32 (None without
    checksums or data): (addr, data, shrank?, crc), or the OSError."""
    pieces = min(TP_NINDIR, (size - start + TP_BSIZE - 1) // TP_BSIZE)
    try:
        addr, data, short = _read_chunk(fd, start, pieces, size, extents)
    except OSError as e:
        return e
    return addr, data, short, zlib.crc32(data) if checksums and data else None


class _ReadAhead:
    """A thread that reads and checksums the next chunks of a file bigger than a
    chunk while the writer packs and writes the ones before: pread and crc32 of
    512 KiB release the GIL, so they run on the other core (a level-0 dump of the
    benchmark corpora is ~10 % faster).  One file at a time; results come in the
    order the chunks were asked for."""

    def __init__(self, checksums: bool):
        import threading
        from queue import SimpleQueue
        self._jobs: SimpleQueue = SimpleQueue()
        self._done: SimpleQueue = SimpleQueue()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, args=(checksums,),
                                        name="ndump-read-ahead", daemon=True)
        self._thread.start()

    def _run(self, checksums: bool) -> None:
        jobs, done = self._jobs, self._done
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                done.put(_read_and_sum(*job, checksums))
            except BaseException as e:        # never leaves the writer waiting
                done.put(e)

    def submit(self, fd: int, start: int, size: int, extents) -> None:
        self._pending += 1
        self._jobs.put((fd, start, size, extents))

    def result(self):
        """The oldest chunk asked for: (addr, data, shrank?, crc) or an OSError."""
        got = self._done.get()
        self._pending -= 1
        if isinstance(got, BaseException) and not isinstance(got, OSError):
            raise got
        return got

    def settle(self) -> None:
        """Wait for (and drop) the chunks asked for and not taken."""
        while self._pending:
            self._done.get()
            self._pending -= 1

    def stop(self) -> None:
        self.settle()
        self._jobs.put(None)
        self._thread.join()


def _gone(dir_fd: int, names: list[bytes], listed: int) -> set[bytes]:
    """Which of ``names`` (of ``listed`` names the walk saw) are no longer in the
    directory: a look at each when they are few (an incremental), else one
    listing."""
    if not names:
        return set()
    if len(names) * 8 < listed:
        gone = set()
        for name in names:
            try:
                os.lstat(name, dir_fd=dir_fd)
            except FileNotFoundError:
                gone.add(name)
            except OSError:
                pass
        return gone
    # names of a directory descriptor come as str (surrogateescape): back to bytes,
    # all in one encode (names hold no NUL), three times faster than one by one
    listing = os.listdir(dir_fd)
    present = set("\0".join(listing).encode(_FS_ENCODING, _FS_ERRORS).split(b"\0")) \
        if listing else set()
    return {name for name in names if name not in present}


def _changed_while_read(rep: Reporter, fd: int, before: os.stat_result, show: str) -> None:
    try:
        after = os.fstat(fd)
    except OSError:
        return
    if after.st_mtime_ns != before.st_mtime_ns or after.st_size != before.st_size:
        rep.warning(f"{show}: changed while it was being dumped; its copy in the dump may"
                    " mix old and new contents")


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

