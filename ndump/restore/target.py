"""The restore target: safe creation of names and setting of metadata
(classic: restore/utilities.c newnode(), linkit(), genliteraldir(), and the
attribute code of tape.c set_extattr()/setdirmodes()).

This module is the only one under ndump/restore/ that changes metadata
(ARCHITECTURE.md, "Restore: containment by construction"):

* every name is created or opened relative to an open directory descriptor
  with O_NOFOLLOW/O_EXCL, from a chain rooted at the target, so a symlink
  planted in the target (or restored from the dump) never redirects a change;
* what is opened is fstat-checked before it is changed (a metadata-only record
  for a fifo never changes a symlink or a regular file);
* nodes that cannot be opened for writing (symlinks, fifos, devices, sockets)
  are made under a private name in a 0700 directory of our own, get their
  owner, mode, attributes and times there, and are then linked into place:
  another user who can write in the target never sees them half-made;
* directory descriptors are an LRU cache, bounded whatever the tree;
* a lock (flock on the target directory) keeps a second restore out for the run.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from collections import OrderedDict

from ndump import fsmeta
from ndump.errors import OutOfSpaceError, StartupError
from ndump.format import ACL_DEFAULT, Inode
from ndump.report import Reporter
from ndump.restore.dirs import Entry

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_NEWFILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
O_NODE = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
PRIVATE_PREFIX = b".ndump-private-"
_PRIVATE_NAME = re.compile(rb"\.ndump-private-[0-9a-f]{8}\Z")
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
        if len(self._fds) <= self.limit:
            return
        # close the least recently used, passing over the few pinned by this operation
        excess = len(self._fds) - self.limit
        victims = []
        for old, slot in self._fds.items():
            if slot[1] != self._op:
                victims.append(old)
                if len(victims) == excess:
                    break
        for old in victims:
            os.close(self._fds.pop(old)[0])

    def open_count(self) -> int:
        return len(self._fds)

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
                 keep_existing: bool = False, resume: bool = False):
        self.reporter = reporter
        self.is_root = is_root
        self.keep_existing = keep_existing
        self.resume = resume          # -R: files an interrupted run finished may be kept
        self.root_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _lock(self.root_fd, path)
            _sweep_private(self.root_fd)
        except BaseException:
            os.close(self.root_fd)
            raise
        self.euid = os.geteuid()
        self.egid = os.getegid()
        # umask 0 while restoring: nodes are created with their final permissions
        # (and, as root, regular files too), which saves a chmod per file
        self._umask = os.umask(0)
        self.fds = DirFds(self.root_fd, root, limit=_fd_limit())
        self._private: dict[int, tuple[int, int, bytes]] = {}   # st_dev -> (fd, parent fd, name)

    def close(self) -> None:
        self.fds.close()
        self.drop_private()
        os.close(self.root_fd)      # releases the lock
        os.umask(self._umask)

    def create_mode(self, inode: Inode, parent: Entry) -> int:
        """Permissions to create a regular file with; mode_fd() then has nothing to do
        for a new file in a directory without a default ACL (root only)."""
        if self.is_root and self.fds.new_gid.get(parent.ino) is not None:
            return inode.mode & 0o777
        return 0o600

    def _ids(self, inode: Inode) -> tuple[int, int]:
        """The owner and group a restored file gets (perms.MappedTarget maps them)."""
        return inode.uid, inode.gid

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
        return b".ndump-%d-%s" % (ino, _token())

    def replace(self, dfd: int, temp: bytes, name: bytes) -> None:
        """Rename the finished temporary over the existing name (atomic)."""
        try:
            os.rename(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError:
            unlink_quietly(dfd, temp)
            raise
        # rename() between two names of one inode does nothing: drop the temp name
        unlink_quietly(dfd, temp)

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

    def finished_before(self, dfd: int, name: bytes, inode: Inode) -> bool:
        """-R: the existing ``name`` is this inode as an interrupted run left it
        complete (data and times are set before the flags, so equal times mean
        the data is all there).  Locking flags it lacks are set; extra ones are
        cleared so that it can be replaced."""
        if not self.resume:
            return False
        try:
            pfd = os.open(name, O_NODE, dir_fd=dfd)
        except OSError:
            return False
        try:
            st = os.fstat(pfd)
            if not stat.S_ISREG(st.st_mode):     # never open a device or fifo found there
                return False
            fd = os.open(node_path(pfd), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        finally:
            os.close(pfd)
        try:
            same = (st.st_size == inode.size and st.st_mtime_ns == inode.mtime_total_ns
                    and st.st_mode & 0o7777 == inode.mode & 0o7777
                    and (not self.is_root or (st.st_uid, st.st_gid) == self._ids(inode)))
            flags = fsmeta.get_flags(fd)
            if same:
                if flags & fsmeta.SETTABLE_FLAGS != inode.flags & fsmeta.SETTABLE_FLAGS:
                    fsmeta.set_flags(fd, inode.flags)
                return True
            if flags & fsmeta.LOCKING_FLAGS:
                fsmeta.set_flags(fd, flags & ~fsmeta.LOCKING_FLAGS)   # ours, from the run before
            return False
        except OSError:
            return False
        finally:
            os.close(fd)

    # -- metadata: open files (regular files, directories) ---------------------
    def attrs_fd(self, fd: int, inode: Inode, xattrs, e: Entry) -> None:
        """All of an open file's metadata, in the order that keeps each: owner
        (chown clears setuid bits), attributes, mode, times, flags last."""
        self.owner_fd(fd, inode)
        if xattrs:
            self.xattrs(fd, xattrs, e)
        self.mode_fd(fd, inode)
        self.times_fd(fd, inode)
        self.flags_fd(fd, inode.flags, e)

    def owner_fd(self, fd: int, inode: Inode, parent: Entry | None = None) -> None:
        """Owner first: chown clears setuid/setgid and file capabilities.

        Skipped when a new file in ``parent`` already has the right owner.
        """
        if not self.is_root:
            return
        uid, gid = self._ids(inode)
        if parent is not None and uid == self.euid and gid == self.fds.new_gid.get(parent.ino):
            return
        os.fchown(fd, uid, gid)

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

    def chmod_fd(self, fd: int, mode: int) -> None:
        os.fchmod(fd, mode)

    def times_fd(self, fd: int, inode: Inode) -> None:
        os.utime(fd, ns=(inode.atime_total_ns, inode.mtime_total_ns))

    def put_back_times(self, fd: int, times: tuple[int, int]) -> None:
        """(atime, mtime) in ns, as an fstat() of ``fd`` gave them before a change."""
        os.utime(fd, ns=times)

    def xattrs(self, target, xattrs: list[tuple[str, bytes]], entry: Entry) -> None:
        """Set extended attributes and ACLs; refusals warn once per namespace.

        ``target`` is an open descriptor, or the /proc path of an O_PATH
        descriptor (node_path()), which names the node itself."""
        for name, value in xattrs:
            namespace = name.split(".", 1)[0]
            if not self.is_root and namespace in ("trusted", "security"):
                continue             # SPEC §5.4: skipped quietly when not root
            try:
                self.set_xattr(target, name, value)
            except OSError as e:
                if e.errno not in _XATTR_REFUSED:
                    raise
                self.reporter.warning(f"{entry.spath()}: the target refuses {namespace}. attributes"
                                      f" ({reason(e)}); they are not restored", once=f"xattr-{namespace}")

    def set_xattr(self, target, name: str, value: bytes) -> None:
        """One attribute on a descriptor or a node_path() (the magic link is followed
        to the node it was opened on, never further)."""
        os.setxattr(target, name, value, 0, follow_symlinks=True)

    def remove_xattr(self, fd: int, name: str) -> None:
        os.removexattr(fd, name)

    def chmod_node(self, where: str, bits: int) -> None:
        """The permission bits of a node_path(), keeping its set-id and sticky bits."""
        mode = os.stat(where).st_mode
        if not stat.S_ISLNK(mode):
            os.chmod(where, mode & 0o7000 | bits)

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

    def link_fd(self, fd: int, dfd: int, name: bytes) -> None:
        """Another name for the open file ``fd`` (never for what its first name holds now)."""
        os.link(node_path(fd), name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=True)

    # -- nodes that are not opened for writing: symlinks, devices, fifos, sockets --
    def make_node(self, names: list[Entry], inode: Inode, xattrs, *, symlink: bytes | None,
                  problem, os_problem) -> None:
        """Make the node privately, set its metadata, then give it ``names``: the
        other names are links to it, the first is the private node renamed.

        ``problem(entry, text)`` and ``os_problem(entry, OSError)`` report per name.
        """
        made: dict[int, tuple[int, bytes]] = {}       # st_dev -> (private fd, node name)
        try:
            for i in range(len(names) - 1, -1, -1):
                e = names[i]
                try:
                    dfd = self.fds.get(e.parent)
                    dev = os.fstat(dfd).st_dev
                    if dev not in made:
                        priv = self._private_dir(dev, dfd)
                        made[dev] = priv, self._private_node(priv, inode, xattrs, symlink, e)
                    priv, node = made[dev]
                    if self._place(priv, node, dfd, e, problem, move=i == 0):
                        del made[dev]
                except OSError as err:
                    os_problem(e, err)
        finally:
            for priv, node in made.values():
                unlink_quietly(priv, node)

    def _private_node(self, priv: int, inode: Inode, xattrs, symlink: bytes | None, e: Entry) -> bytes:
        name = b"n%d-%s" % (inode.mode, _token())
        if symlink is not None:
            os.symlink(symlink, name, dir_fd=priv)
        else:
            os.mknod(name, stat.S_IFMT(inode.mode) | 0o600, inode.rdev, dir_fd=priv)
        try:
            if xattrs:
                pfd = os.open(name, O_NODE, dir_fd=priv)
                try:
                    self.node_attrs(pfd, inode, xattrs, e)
                finally:
                    os.close(pfd)
            else:
                # by name, in a directory no one else can write
                if self.is_root:
                    uid, gid = self._ids(inode)
                    os.chown(name, uid, gid, dir_fd=priv, follow_symlinks=False)
                if symlink is None:
                    os.chmod(name, self._node_mode(inode), dir_fd=priv)
                os.utime(name, ns=(inode.atime_total_ns, inode.mtime_total_ns), dir_fd=priv,
                         follow_symlinks=False)
        except BaseException:
            unlink_quietly(priv, name)
            raise
        return name

    def _node_mode(self, inode: Inode) -> int:
        mode = inode.mode & 0o7777
        return mode if self.is_root else mode & ~0o6000

    def _place(self, priv: int, node: bytes, dfd: int, e: Entry, problem, *, move: bool) -> bool:
        """Give the finished private node the name ``e`` (replacing what is there);
        with ``move`` by renaming it (True: the private name is gone)."""
        if move and not self.keep_existing:
            try:
                os.rename(node, e.name, src_dir_fd=priv, dst_dir_fd=dfd)
                return True
            except (IsADirectoryError, FileExistsError, OSError) as err:
                if err.errno not in (errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY):
                    raise
            problem(e, "an existing directory is in the way; not replaced")
            return False
        try:
            os.link(node, e.name, src_dir_fd=priv, dst_dir_fd=dfd, follow_symlinks=False)
            return False
        except FileExistsError:
            pass
        if self.keep_existing:
            self.reporter.verbose(f"{e.spath()}: exists, kept", 2)
            return False
        if self.existing_is_dir(dfd, e.name):
            problem(e, "an existing directory is in the way; not replaced")
            return False
        temp = self.temp_name(dfd, e.ino)
        os.link(node, temp, src_dir_fd=priv, dst_dir_fd=dfd, follow_symlinks=False)
        self.replace(dfd, temp, e.name)
        return False

    def forked(self) -> None:
        """In a new worker process: its private directories are its own."""
        self._private = {}

    def drop_private(self) -> None:
        """Remove the private directories (before directory times are set)."""
        for fd, pfd, name in self._private.values():
            _remove_private(fd, pfd, name)
        self._private.clear()

    def _private_dir(self, dev: int, dfd: int) -> int:
        """A 0700 directory of ours on the filesystem ``dev`` (made in the target's
        root, or, for another filesystem mounted below it, in ``dfd``)."""
        got = self._private.get(dev)
        if got is not None:
            return got[0]
        parent = os.dup(self.root_fd if os.fstat(self.root_fd).st_dev == dev else dfd)
        name = PRIVATE_PREFIX + _token()
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, O_DIR, dir_fd=parent)
        except OSError:
            os.close(parent)
            raise
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(fd)
            os.close(parent)
            raise OSError(errno.EPERM, "the private directory was replaced")
        self._private[dev] = fd, parent, name
        return fd

    def node_attrs(self, pfd: int, inode: Inode, xattrs, e: Entry) -> None:
        """Owner, attributes, mode and times of a node opened with O_PATH|O_NOFOLLOW."""
        where = node_path(pfd)
        if self.is_root:
            uid, gid = self._ids(inode)
            os.chown(where, uid, gid)
        if xattrs:
            self.xattrs(where, xattrs, e)
        if not stat.S_ISLNK(inode.mode):      # a symlink's mode means nothing on Linux
            self.node_mode(where, self._node_mode(inode))
        os.utime(where, ns=(inode.atime_total_ns, inode.mtime_total_ns))

    def node_mode(self, where: str, mode: int) -> None:
        os.chmod(where, mode)

    # -- metadata-only records (dump -m) ---------------------------------------
    def metadata_only(self, e: Entry, inode: Inode, xattrs) -> str | None:
        """Change the metadata of the existing ``e``; a reason when it is not the
        kind of file the record describes (then nothing is changed)."""
        dfd = self.fds.get(e.parent)
        pfd = os.open(e.name, O_NODE, dir_fd=dfd)
        try:
            st = os.fstat(pfd)
            want, have = stat.S_IFMT(inode.mode), stat.S_IFMT(st.st_mode)
            if want != have:
                return (f"metadata-only record for a {type_name(want)}, but the target holds"
                        f" a {type_name(have)}; not changed")
            if have not in (stat.S_IFREG, stat.S_IFDIR):
                self.node_attrs(pfd, inode, xattrs, e)
                return None
            fd = os.open(node_path(pfd), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return "changed while it was restored; not changed"
            self.attrs_fd(fd, inode, xattrs, e)
        finally:
            os.close(fd)
        return None


def _token() -> bytes:
    """8 random hex digits for a fresh name (os.urandom: the secrets module would
    load OpenSSL's hashing for every restore, ~6 ms of its start-up)."""
    return os.urandom(4).hex().encode()


def node_path(fd: int) -> str:
    """The /proc path of an open descriptor: calls given it change that very node."""
    return f"/proc/self/fd/{fd}"


_TYPE_NAMES = {stat.S_IFREG: "regular file", stat.S_IFDIR: "directory", stat.S_IFLNK: "symbolic link",
               stat.S_IFIFO: "fifo", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
               stat.S_IFSOCK: "socket"}


def type_name(fmt: int) -> str:
    return _TYPE_NAMES.get(fmt, f"file of type {fmt:o}")


def _lock(root_fd: int, path) -> None:
    """One writing restore per target at a time (the lock goes with the descriptor)."""
    try:
        fcntl.flock(root_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StartupError(f"another restore is writing into {path} (it holds the target's lock);"
                           " wait for it to finish") from None
    except OSError:
        pass                      # a filesystem without locks: nothing to hold


def _sweep_private(root_fd: int) -> None:
    """Private directories a killed run left in the target's root (we hold the lock)."""
    for name in map(os.fsencode, os.listdir(root_fd)):
        if not _PRIVATE_NAME.match(name):
            continue
        try:
            fd = os.open(name, O_DIR, dir_fd=root_fd)
        except OSError:
            continue
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(fd)
            continue
        _remove_private(fd, os.dup(root_fd), name)


def _remove_private(fd: int, parent: int, name: bytes) -> None:
    try:
        for node in os.listdir(fd):
            unlink_quietly(fd, os.fsencode(node))
    except OSError:
        pass
    os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
    except OSError:
        pass
    os.close(parent)


def _new_file_gid(dfd: int) -> int | None:
    """The gid a file created in this directory gets; None if it has a default ACL."""
    try:
        os.getxattr(dfd, ACL_DEFAULT)
        return None
    except OSError:
        pass
    st = os.fstat(dfd)
    return st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()


def unlink_quietly(dfd: int, name: bytes) -> None:
    """Remove a name left by a step that failed, when it can be: the failure
    being reported matters more than what is left."""
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
