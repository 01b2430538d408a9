"""The context files of restartable dumps (SPEC §6; ONTAP's restartable backups).

Under ``STATE_DIR/contexts/`` (the state directory survives reboots; the run
directory does not), each context ID (a UUID) has:

    ID.json      the context: what was dumped, with which options, where the
                 dump stands (pass, last checkpoint); replaced atomically
                 (temporary file, fsync, rename, fsync of the directory)
    ID.lock      held with flock(LOCK_EX) by the dump running it: "busy".  The
                 kernel drops the lock when that process dies, however it dies,
                 so a killed dump never leaves a busy context behind
    ID.sel       the inode selection of Pass I-III (written once, at Pass IV)
    ID.offsets   the per-inode position record (file history), appended at
                 each checkpoint; the checkpoint says how much of it counts

Nothing here knows the dump format: a checkpoint is an opaque dict.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ndump.errors import StartupError
from ndump.settings import Settings

SUBDIR = "contexts"
PASS_IV = "IV"
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class ContextError(StartupError):
    """A context that is missing, unreadable, or cannot be used as asked."""


class ContextBusy(ContextError):
    """Another ndump process holds the context."""


@dataclass
class Context:
    id: str
    tree: str                          # the PATH dumped (what the headers record)
    root: str                          # the directory read (inside the snapshot)
    level: int
    base_date: int
    date: int
    medium: str                        # -f
    options: dict                      # the dump's options, as given (for --restart)
    snapshot: str | None = None        # snapshot name (None: the live tree)
    snapshot_kind: str | None = None   # "btrfs" | None
    snapshot_created: bool = False     # made by ndump (so released by it)
    snapshot_rel: str = "."            # root relative to the snapshot's directory
    host: str = ""
    pid: int = field(default_factory=os.getpid)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    dump_pass: str = "I"               # I..IV: how far the dump came
    state: str = "running"             # running | interrupted (stopped with a message)
    reason: str = ""                   # why it stopped
    volume: int = 1
    checkpoint: dict | None = None     # the last checkpoint (dump/restart.py)
    catalog_dump_id: int | None = None
    restarts: int = 0

    @classmethod
    def from_json(cls, data: dict) -> "Context":
        names = {f.name for f in fields(cls)}
        missing = {"id", "tree", "root", "level", "base_date", "date", "medium",
                   "options"} - data.keys()
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names})


def new_id() -> str:
    """A random (version 4) UUID, without loading the uuid module (start-up time)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """flock ``path`` (made 0600 if missing) without waiting; None when another process
    holds it.  The lock only counts if the file locked is still the one at that path
    (a cleanup may have unlinked it meanwhile)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    return fd


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """tmp + fsync + rename + fsync of the directory (``durable``), or tmp + rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


class Handle:
    """A context this process holds (its lock is ours)."""

    def __init__(self, store: "Store", ctx: Context, fd: int):
        self.store = store
        self.ctx = ctx
        self._fd: int | None = fd

    def save(self, *, durable: bool = True) -> None:
        """Replace the context file; ``durable=False`` skips the fsyncs (a context not
        yet restartable need not survive a crash: its snapshot is then cleaned up)."""
        self.ctx.updated = time.time()
        self.ctx.pid = os.getpid()
        text = json.dumps(asdict(self.ctx), indent=1, sort_keys=True) + "\n"
        write_atomic(self.store.path(self.ctx.id, ".json"), text.encode("utf-8"),
                     durable=durable)

    def remove(self) -> None:
        """Delete every file of the context, then let go of the lock."""
        self.store.unlink(self.ctx.id)
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Store:
    def __init__(self, settings: Settings):
        self.directory = settings.state_dir / SUBDIR

    def path(self, cid: str, suffix: str) -> Path:
        return self.directory / f"{cid}{suffix}"

    def create(self, ctx: Context) -> Handle:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise ContextError(f"cannot keep dump contexts in {self.directory}:"
                               f" {os.strerror(e.errno).lower()}") from None
        handle = Handle(self, ctx, self._lock(ctx.id))
        handle.save(durable=False)
        return handle

    def _lock(self, cid: str) -> int:
        fd = try_lock(self.path(cid, ".lock"))
        if fd is None:
            raise ContextBusy(f"dump context {cid} is busy: another ndump process is"
                              " running it")
        return fd

    def resolve(self, cid: str) -> str:
        """A full ID from an ID or a unique prefix of at least 4 characters."""
        cid = cid.strip().lower()
        if _ID.match(cid):
            if not self.path(cid, ".json").exists():
                raise ContextError(f"no dump context {cid} in {self.directory}"
                                   " (ndump contexts list shows them)")
            return cid
        found = [c for c in self.ids() if len(cid) >= 4 and c.startswith(cid)]
        if len(found) != 1:
            why = "matches several" if found else "matches none"
            raise ContextError(f"dump context {cid!r} {why} of those in {self.directory}"
                               " (ndump contexts list shows them)")
        return found[0]

    def ids(self) -> list[str]:
        try:
            return sorted(p.name[:-5] for p in self.directory.glob("*.json")
                          if _ID.match(p.name[:-5]))
        except OSError:
            return []

    def load(self, cid: str) -> Context:
        path = self.path(cid, ".json")
        try:
            return Context.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ContextError(f"no dump context {cid} in {self.directory}") from None
        except (OSError, ValueError, TypeError) as e:
            raise ContextError(f"dump context {cid} is corrupt ({path}: {e});"
                               f" it cannot be restarted: ndump contexts delete {cid}") from None

    def hold(self, cid: str) -> Handle:
        """Lock the context (refused while busy) and load it."""
        fd = self._lock(cid)
        try:
            return Handle(self, self.load(cid), fd)
        except BaseException:
            os.close(fd)
            raise

    def busy(self, cid: str) -> bool:
        try:
            fd = self._lock(cid)
        except ContextBusy:
            return True
        except OSError:
            return False
        os.close(fd)
        return False

    def purge_unrestartable(self) -> list[str]:
        """Remove the contexts of dumps killed before Pass IV (cleanup pending)."""
        removed = []
        for cid in self.ids():
            try:
                ctx = self.load(cid)
            except ContextError:
                continue
            if ctx.dump_pass != PASS_IV and not self.busy(cid):
                self.unlink(cid)
                removed.append(cid)
        return removed

    def unlink(self, cid: str) -> None:
        # the JSON first: a context half removed is no longer listed
        # then what a killed writer may have left: .ID.json.tmpPID, ID.sel.tmp
        leftovers = [p.name for p in self.directory.glob(f".{cid}.json.tmp*")]
        for name in [cid + s for s in (".json", ".sel", ".offsets", ".sel.tmp")] + leftovers + \
                [cid + ".lock"]:
            try:
                os.unlink(self.directory / name)
            except FileNotFoundError:
                pass


def holds_snapshot(name: str, settings: Settings) -> bool:
    """Whether a restartable context (one that reached Pass IV) keeps snapshot ``name``."""
    store = Store(settings)
    for cid in store.ids():
        try:
            ctx = store.load(cid)
        except ContextError:
            continue
        if ctx.snapshot == name and ctx.snapshot_created and ctx.dump_pass == PASS_IV:
            return True
    return False
