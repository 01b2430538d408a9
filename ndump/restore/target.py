"""The restore target: safe creation of names and setting of metadata
(classic: restore/utilities.c newnode(), linkit(), genliteraldir(), and the
attribute code of tape.c set_extattr()/setdirmodes()).

Nothing here follows a symbolic link: every name is created or opened
relative to an open directory descriptor, with O_NOFOLLOW/O_EXCL, so a
symlink planted in the target (or restored from the dump) can never redirect a
write outside it.  Directory descriptors are kept in a small LRU cache.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from collections import OrderedDict

from ndump import fsmeta
from ndump.errors import OutOfSpaceError
from ndump.format import Inode
from ndump.report import Reporter
from ndump.restore.dirs import Entry

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_NEWFILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_XATTR_REFUSED = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EINVAL,
                  errno.E2BIG, errno.ERANGE, errno.ENOSPC)
_FLAGS_REFUSED = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EPERM, errno.EACCES, errno.EINVAL)


def reason(e: OSError) -> str:
    return os.strerror(e.errno).lower() if e.errno else str(e)


def check_space(e: OSError, path: str) -> None:
    """Running out of room stops the restore (SPEC §5.2); other errors are per file."""
    if e.errno in NO_SPACE:
        raise OutOfSpaceError(f"{path}: {reason(e)}: the target is full") from None


class DirFds:
    """Open descriptors of restored directories, by dump inode (LRU).

    Entries used during the current operation (``next_op`` starts one) are
    never evicted, so a caller may hold two descriptors at once (hard links).
    """

    def __init__(self, root_fd: int, root: Entry, limit: int = 256):
        self.root_fd = root_fd
        self.root = root
        self.limit = limit
        self._fds: OrderedDict[int, list[int]] = OrderedDict()   # ino -> [fd, op]
        self._op = 0
        # per directory: the gid a new file gets there, or None when a default
        # ACL decides its permissions (then owner and mode are always set)
        self.new_gid: dict[int, int | None] = {root.ino: _new_file_gid(root_fd)}

    def next_op(self) -> None:
        self._op += 1

    def get(self, entry: Entry) -> int:
        """The open descriptor of a restored directory; raises OSError."""
        if entry is self.root:
            return self.root_fd
        slot = self._fds.get(entry.ino)
        if slot is not None:
            self._fds.move_to_end(entry.ino)
            slot[1] = self._op
            return slot[0]
        chain = []
        e = entry
        while e is not self.root and e.ino not in self._fds:
            chain.append(e)
            e = e.parent
        fd = self.get(e)
        for e in reversed(chain):
            fd = os.open(e.name, O_DIR, dir_fd=fd)
            # only the directory asked for is pinned: a deep (hostile) chain must
            # not hold one descriptor per level
            self._add(e.ino, fd, self._op if e is entry else -1)
            if e.ino not in self.new_gid:
                self.new_gid[e.ino] = _new_file_gid(fd)
        return fd

    def _add(self, ino: int, fd: int, op: int) -> None:
        self._fds[ino] = [fd, op]
        while len(self._fds) > self.limit:
            oldest = next(iter(self._fds))
            if self._fds[oldest][1] == self._op:
                break
            os.close(self._fds.pop(oldest)[0])

    def forget(self, entry: Entry) -> None:
        """Drop a directory's descriptor (it was renamed or removed)."""
        slot = self._fds.pop(entry.ino, None)
        if slot is not None:
            os.close(slot[0])

    def close(self) -> None:
        for fd, _ in self._fds.values():
            os.close(fd)
        self._fds.clear()


class Target:
    """The directory restored into, and the rules for writing in it."""

    def __init__(self, path, root: Entry, reporter: Reporter, *, is_root: bool,
                 keep_existing: bool = False):
        self.reporter = reporter
        self.is_root = is_root
        self.keep_existing = keep_existing
        self.root_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.euid = os.geteuid()
        self.egid = os.getegid()
        # umask 0 while restoring: nodes are created with their final permissions
        # (and, as root, regular files too), which saves a chmod per file
        self._umask = os.umask(0)
        self.fds = DirFds(self.root_fd, root, limit=_fd_limit())

    def close(self) -> None:
        self.fds.close()
        os.close(self.root_fd)
        os.umask(self._umask)

    def create_mode(self, inode: Inode, parent: Entry) -> int:
        """Permissions to create a regular file with; mode_fd() then has nothing to do
        for a new file in a directory without a default ACL (root only)."""
        if self.is_root and self.fds.new_gid.get(parent.ino) is not None:
            return inode.mode & 0o777
        return 0o600

    # -- directories -----------------------------------------------------------
    def make_dir(self, entry: Entry) -> bool:
        """Create a directory or merge into an existing one (SPEC §5.3).

        Created with mode 0700: the dump's mode comes at the very end, after
        the contents (a read-only directory could not be filled).
        """
        pfd = self.fds.get(entry.parent)
        try:
            os.mkdir(entry.name, 0o700, dir_fd=pfd)
            return True
        except FileExistsError:
            pass
        st = os.stat(entry.name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return True
        if self.keep_existing:
            raise FileExistsError(errno.EEXIST, "exists and is not a directory (kept)")
        # a file or symlink where a directory belongs: replace it, never follow it
        os.unlink(entry.name, dir_fd=pfd)
        os.mkdir(entry.name, 0o700, dir_fd=pfd)
        return True

    def temp_name(self, dfd: int, ino: int) -> bytes:
        """A fresh name beside the final one, for an atomic replace."""
        return b".ndump-%d-%s" % (ino, secrets.token_hex(4).encode())

    def replace(self, dfd: int, temp: bytes, name: bytes) -> None:
        """Rename the finished temporary over the existing name (atomic)."""
        try:
            os.rename(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError:
            _unlink_quietly(dfd, temp)
            raise
        # rename() between two names of one inode does nothing: drop the temp name
        _unlink_quietly(dfd, temp)

    def exists(self, dfd: int, name: bytes) -> bool:
        try:
            os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def existing_is_dir(self, dfd: int, name: bytes) -> bool:
        try:
            return stat.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    # -- metadata: open files (regular files, directories) ---------------------
    def owner_fd(self, fd: int, inode: Inode, parent: Entry | None = None) -> None:
        """Owner first: chown clears setuid/setgid and file capabilities.

        Skipped when a new file in ``parent`` already has the right owner.
        """
        if not self.is_root:
            return
        if parent is not None and inode.uid == self.euid and inode.gid == self.fds.new_gid.get(parent.ino):
            return
        os.fchown(fd, inode.uid, inode.gid)

    def mode_fd(self, fd: int, inode: Inode, parent: Entry | None = None) -> None:
        """Mode after owner and attributes (non-root needs write access for user.* xattrs).

        Skipped for a new file whose create_mode() already was its mode.
        """
        mode = inode.mode & 0o7777
        if not self.is_root:
            mode &= ~0o6000          # SPEC §5.4: non-root restores drop setuid/setgid
        elif parent is not None and not mode & 0o7000 and self.fds.new_gid.get(parent.ino) is not None:
            return
        os.fchmod(fd, mode)

    def xattrs(self, target, xattrs: list[tuple[str, bytes]], entry: Entry) -> None:
        """Set extended attributes and ACLs; refusals warn once per namespace."""
        for name, value in xattrs:
            namespace = name.split(".", 1)[0]
            if not self.is_root and namespace in ("trusted", "security"):
                continue             # SPEC §5.4: skipped quietly when not root
            try:
                # an fd names the file itself; a path (name_path) must not be followed
                os.setxattr(target, name, value, 0, follow_symlinks=isinstance(target, int))
            except OSError as e:
                if e.errno not in _XATTR_REFUSED:
                    raise
                self.reporter.warning(f"{entry.spath()}: the target refuses {namespace}. attributes"
                                      f" ({reason(e)}); they are not restored", once=f"xattr-{namespace}")

    def flags_fd(self, fd: int, flags: int, entry: Entry) -> None:
        """Inode flags last: immutable/append-only would forbid what comes after."""
        if not flags & fsmeta.SETTABLE_FLAGS:
            return
        try:
            fsmeta.set_flags(fd, flags)
        except OSError as e:
            if e.errno not in _FLAGS_REFUSED:
                raise
            self.reporter.warning(f"{entry.spath()}: cannot set inode flags ({reason(e)})", once="flags")

    # -- metadata: names (symlinks, devices, fifos, sockets) ---------------------
    def owner_mode_name(self, dfd: int, name: bytes, inode: Inode) -> None:
        if self.is_root:
            os.chown(name, inode.uid, inode.gid, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISLNK(inode.mode):
            return                   # a symlink's mode means nothing on Linux
        mode = inode.mode & 0o7777
        if not self.is_root:
            mode &= ~0o6000
        # Linux has no lchmod; this node is not a symlink and was made a moment ago
        os.chmod(name, mode, dir_fd=dfd)

    def name_path(self, dfd: int, name: bytes) -> bytes:
        """A path that reaches ``name`` without following it (for *xattr calls)."""
        return b"/proc/self/fd/%d/%s" % (dfd, name)

    def times_name(self, dfd: int, name: bytes, inode: Inode) -> None:
        os.utime(name, ns=(inode.atime_total_ns, inode.mtime_total_ns), dir_fd=dfd,
                 follow_symlinks=False)


def _new_file_gid(dfd: int) -> int | None:
    """The gid a file created in this directory gets; None if it has a default ACL."""
    try:
        os.getxattr(dfd, "system.posix_acl_default")
        return None
    except OSError:
        pass
    st = os.fstat(dfd)
    return st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()


def _unlink_quietly(dfd: int, name: bytes) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _fd_limit() -> int:
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 64
    if soft == resource.RLIM_INFINITY:
        return 512
    return max(16, min(512, soft // 4))
