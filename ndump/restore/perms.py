"""Permission mapping (SPEC §5.4; ONTAP dump's ACL/mode mapping; classic
restore has none): owner and group maps, ACLs onto filesystems without them,
default-ACL inheritance, and the rules for an unprivileged restore.

* ``--owner-map`` / ``--group-map`` files: ``OLD NEW`` lines, names or
  numbers; ``#`` starts a comment.  Owners not listed stay as dumped.
* A file whose ACL the target refuses (ext4 mounted ``noacl``, tmpfs without
  ACLs, NFS) gets the mode bits the ACL implies: owner bits from the owner
  entry, group bits from the mask (else the owning group entry), other bits
  from the other entry.  One warning per run.
* A regular file or directory without an access ACL of its own, restored into a
  directory that has a default ACL, gets the ACL that default ACL gives a new
  file of its mode (POSIX.1e; the kernel's posix_acl_create()); with
  ``--no-inherit`` it gets its plain mode and no ACL instead.
* Not root: files belong to the restoring user, setuid/setgid are cleared and
  trusted./security. attributes skipped (restore/target.py does those).

``MappedTarget`` is a ``Target`` with these rules; run_restore uses it.
"""
from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from pathlib import Path

from ndump.errors import StartupError
from ndump.format import ACL_ACCESS, ACL_DEFAULT, ExtAttrError, Inode
from ndump.format.extattr import (
    ACL_GROUP, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ, pack_acl, parse_acl,
)
from ndump.restore.dirs import Entry
from ndump.restore.target import O_DIR, Target, reason

_NO_ACLS = (errno.EOPNOTSUPP, errno.ENOTSUP)
_NONE_GIVEN: frozenset[str] = frozenset()     # a file the dump gave no ACL
_MAX_MAP_BYTES = 16 << 20


# -- owner and group maps ---------------------------------------------------------------
def load_id_map(path: Path | None, kind: str) -> dict[int, int]:
    """An ``OLD NEW`` file -> {old id: new id}; ``kind`` is 'owner' or 'group'."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            text = f.read(_MAX_MAP_BYTES).decode("utf-8", "surrogateescape")
    except OSError as e:
        raise StartupError(f"cannot read the {kind} map {path}: {reason(e)}") from None
    ids: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise StartupError(f"{path}:{number}: expected 'OLD NEW', got {line.strip()!r}")
        old, new = (_id(w, kind, f"{path}:{number}") for w in words)
        ids[old] = new
    return ids


def _id(word: str, kind: str, where: str) -> int:
    if word.isdigit():
        value = int(word)
        if value >= 0xFFFFFFFF:
            raise StartupError(f"{where}: {kind} id {word} is out of range")
        return value
    try:
        return pwd.getpwnam(word).pw_uid if kind == "owner" else grp.getgrnam(word).gr_gid
    except KeyError:
        raise StartupError(f"{where}: no {'user' if kind == 'owner' else 'group'} named {word!r}"
                           " on this system") from None


# -- POSIX ACLs (the codec: format/extattr.py) ----------------------------------------------
def acl_entries(value: bytes) -> list[tuple[int, int, int]] | None:
    """system.posix_acl_* value -> [(tag, perm, id)]; None when it is not one."""
    try:
        return parse_acl(value)
    except ExtAttrError:
        return None


def acl_mode(entries: list[tuple[int, int, int]]) -> int | None:
    """The permission bits an access ACL implies (mask -> group bits); None if incomplete."""
    perms = {tag: perm & 7 for tag, perm, _ in entries if tag != ACL_USER and tag != ACL_GROUP}
    if not {ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER} <= perms.keys():
        return None
    group = perms.get(ACL_MASK, perms[ACL_GROUP_OBJ])
    return perms[ACL_USER_OBJ] << 6 | group << 3 | perms[ACL_OTHER]


def inherit(default: list[tuple[int, int, int]], mode: int) -> tuple[list, int]:
    """The access ACL and permission bits a new file of ``mode`` gets from a default ACL
    (posix_acl_create_masq())."""
    has_mask = any(tag == ACL_MASK for tag, _, _ in default)
    out = []
    bits = {ACL_USER_OBJ: 0, ACL_OTHER: 0, "group": 0}
    for tag, perm, ident in default:
        if tag == ACL_USER_OBJ:
            perm &= mode >> 6 & 7
            bits[ACL_USER_OBJ] = perm
        elif tag == ACL_OTHER:
            perm &= mode & 7
            bits[ACL_OTHER] = perm
        elif tag == ACL_MASK or (tag == ACL_GROUP_OBJ and not has_mask):
            perm &= mode >> 3 & 7
            bits["group"] = perm
        out.append((tag, perm, ident))
    return out, bits[ACL_USER_OBJ] << 6 | bits["group"] << 3 | bits[ACL_OTHER]


# -- the target with the rules ----------------------------------------------------------------
class MappedTarget(Target):
    """A Target that maps owners, maps ACLs to modes and inherits default ACLs."""

    def __init__(self, path, root: Entry, reporter, *, is_root: bool, keep_existing: bool = False,
                 resume: bool = False, no_inherit: bool = False, uid_map: dict | None = None,
                 gid_map: dict | None = None):
        super().__init__(path, root, reporter, is_root=is_root, keep_existing=keep_existing,
                         resume=resume)
        self.no_inherit = no_inherit
        self.uid_map = uid_map or {}
        self.gid_map = gid_map or {}
        self._acl_set: dict[object, set[str]] = {}    # file -> ACL names the dump gave it
        self._acl_mode: dict[object, int] = {}        # file -> bits from a refused ACL
        if (self.uid_map or self.gid_map) and not is_root:
            reporter.warning("not running as root: owner and group maps are not applied,"
                             " files belong to the restoring user", once="maps-not-root")

    def _ids(self, inode: Inode) -> tuple[int, int]:
        return self.uid_map.get(inode.uid, inode.uid), self.gid_map.get(inode.gid, inode.gid)

    # -- owners ---------------------------------------------------------------------------
    def owner_fd(self, fd: int, inode: Inode, parent: Entry | None = None) -> None:
        # the first call for an open file: forget what a file that failed half-way left
        if self._acl_set or self._acl_mode:
            self._acl_set.pop(fd, None)
            self._acl_mode.pop(fd, None)
        super().owner_fd(fd, inode, parent)

    # -- ACLs and other attributes ----------------------------------------------------------
    def xattrs(self, target, xattrs: list[tuple[str, bytes]], entry: Entry) -> None:
        acls = [(n, v) for n, v in xattrs if n in (ACL_ACCESS, ACL_DEFAULT)]
        rest = [(n, v) for n, v in xattrs if n not in (ACL_ACCESS, ACL_DEFAULT)] if acls else xattrs
        if rest:
            super().xattrs(target, rest, entry)
        for name, value in acls:
            if isinstance(target, int):      # mode_fd() follows for files and directories
                self._acl_set.setdefault(target, set()).add(name)
            self._set_acl(target, name, value, entry)

    def _set_acl(self, target, name: str, value: bytes, entry: Entry) -> None:
        try:
            self.set_xattr(target, name, value)
            return
        except OSError as e:
            err = e
        if err.errno not in _NO_ACLS:
            self.reporter.warning(f"{entry.spath()}: the target refuses its ACL ({reason(err)});"
                                  " it is not restored", once="acl-refused")
            return
        self.reporter.warning("the target filesystem does not support POSIX ACLs: files get the"
                              " mode bits their ACLs imply", once="acl-unsupported")
        entries = acl_entries(value) if name == ACL_ACCESS else None
        bits = acl_mode(entries) if entries else None
        if bits is None:
            return
        if isinstance(target, int):
            self._acl_mode[target] = bits          # mode_fd() comes next and uses it
        else:
            self._acl_mode[target] = bits          # node_mode() comes next and uses it

    # -- modes ------------------------------------------------------------------------------
    def mode_fd(self, fd: int, inode: Inode, parent: Entry | None = None) -> None:
        given = self._acl_set.pop(fd, _NONE_GIVEN) if self._acl_set else _NONE_GIVEN
        bits = self._acl_mode.pop(fd, None) if self._acl_mode else None
        special = inode.mode & (0o7000 if self.is_root else 0o1000)
        if bits is not None:
            self.chmod_fd(fd, special | bits)
            return
        if ACL_ACCESS not in given:
            default = self._parent_default(fd, parent)
            if default is not None:
                self._inherit_or_not(fd, inode, default, given, special)
                return
        super().mode_fd(fd, inode, parent)

    def _parent_default(self, fd: int, parent: Entry | None) -> list | None:
        """The default ACL of the directory the file ``fd`` is in (None: it has none)."""
        if parent is not None:
            if self.fds.new_gid.get(parent.ino) is not None:
                return None              # known: no default ACL there
            return _default_acl(self.fds.get(parent))
        if fd == self.root_fd or not stat.S_ISDIR(os.fstat(fd).st_mode):
            return None
        pfd = os.open("..", O_DIR, dir_fd=fd)          # a directory: its own '..'
        try:
            return _default_acl(pfd)
        finally:
            os.close(pfd)

    def _inherit_or_not(self, fd: int, inode: Inode, default: list, given: set, special: int) -> None:
        mode = inode.mode & 0o777
        if self.no_inherit:
            self._remove_acl(fd, ACL_ACCESS)
            if ACL_DEFAULT not in given and stat.S_ISDIR(inode.mode):
                self._remove_acl(fd, ACL_DEFAULT)
            self.chmod_fd(fd, special | mode)
            return
        acl, bits = inherit(default, mode)
        if len(acl) > 3:
            self.set_xattr(fd, ACL_ACCESS, pack_acl(acl))
        else:
            self._remove_acl(fd, ACL_ACCESS)
        self.chmod_fd(fd, special | bits)

    def _remove_acl(self, fd: int, name: str) -> None:
        try:
            self.remove_xattr(fd, name)
        except OSError as e:
            if e.errno not in (errno.ENODATA, *_NO_ACLS):
                raise

    def node_mode(self, where: str, mode: int) -> None:
        bits = self._acl_mode.pop(where, None)
        super().node_mode(where, mode if bits is None else mode & 0o7000 | bits)


def _default_acl(dfd: int) -> list | None:
    try:
        value = os.getxattr(dfd, ACL_DEFAULT)
    except OSError:
        return None
    entries = acl_entries(value)
    return entries if entries and acl_mode(entries) is not None else None

