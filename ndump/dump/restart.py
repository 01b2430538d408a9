"""Restartable dumps (SPEC §6; ONTAP's restartable backups): the context a dump
keeps, its checkpoints in Pass IV, and ``ndump dump --restart ID``.

A dump that got a snapshot (or reads the live tree) keeps a context from the
start (contexts/store.py).  It is removed, with the snapshot, when the dump ends
before Pass IV, or completes.  In Pass IV a checkpoint is taken at an inode
boundary every few seconds (``NDUMP_CHECKPOINT_INTERVAL``, default 5) and at
each volume change: every whole record pending goes to the medium, an image
file is fsynced, the file-history positions noted since the last checkpoint are
appended to ``ID.offsets``, and the context is replaced atomically.  The
checkpoint holds the less-than-a-record tail still pending, so that

- on an image file, ``--restart`` cuts the file back to the checkpoint's bytes
  and writes on from there: the finished image is byte for byte the one an
  uninterrupted dump would have written;
- on a pipe or a tape, it starts a new volume whose TS_TAPE says where in the
  dump it begins (c_firstrec: the number of the first block it holds), so that
  restore, reading the interrupted volume and then this one, skips the blocks it
  read already (FORMAT §7.3, as after an end of medium) and goes on where the
  first one stopped, even in the middle of a record.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import struct
import threading
from array import array
import time
from contextlib import nullcontext
from pathlib import Path

from ndump.catalog import CatalogError, NewDump, default_path, medium_spec
from ndump.contexts import Context, ContextBusy, ContextError, Store
from ndump.contexts.store import PASS_IV, Handle, new_id
from ndump.errors import Outcome, reason
from ndump.format import DumpIdent
from ndump.format.records import ALGORITHMS
from ndump.media import open_output
from ndump.report import Reporter
from ndump.sessions import open_session
from ndump.settings import Settings
from ndump.snapshot import Snapshot, reopen_kept
from ndump.dump.history import FileHistory
from ndump.dump.options import DumpOptions

_ROW = struct.Struct("<qqqIqq")       # dino, block, size, mode, mtime, ctime


# -- the context of a dump ---------------------------------------------------
def options_json(opts: DumpOptions) -> dict:
    out = {}
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else \
            list(value) if isinstance(value, tuple) else value
    return out


def options_from(data: dict) -> DumpOptions:
    kwargs = {}
    for f in dataclasses.fields(DumpOptions):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in ("dumpdates", "catalog") and value is not None:
            value = Path(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return DumpOptions(**kwargs)


def begin(opts: DumpOptions, settings: Settings, snap: Snapshot, date: int, base_date: int,
          reporter: Reporter) -> Handle | None:
    """The context of a dump about to walk its tree (None: this dump cannot be restarted)."""
    if snap.kind not in (None, "btrfs"):
        reporter.verbose(f"a dump from an {snap.kind} snapshot is not restartable")
        return None
    directory = snap.directory
    ctx = Context(id=new_id(), tree=snap.origin, root=snap.root, level=opts.level,
                  base_date=base_date, date=date, medium=opts.file, options=options_json(opts),
                  snapshot=snap.name, snapshot_kind=snap.kind, snapshot_created=snap.created,
                  snapshot_rel=os.path.relpath(snap.root, directory) if directory else ".",
                  host=settings.hostname)
    store = Store(settings)
    try:
        store.purge_unrestartable()
        handle = store.create(ctx)
    except (ContextError, OSError) as e:
        what = str(e) if isinstance(e, ContextError) else \
            f"cannot keep dump contexts in {store.directory}: {reason(e)}"
        reporter.warning(f"{what}; this dump cannot be restarted", once="contexts")
        return None
    reporter.fact("context_id", ctx.id)
    reporter.verbose(f"dump context {ctx.id}")
    return handle


def note_pass(handle: Handle, reporter: Reporter) -> None:
    """Record how far the dump came (for ``contexts list``; not fsynced)."""
    try:
        handle.save(durable=False)
    except OSError as e:
        reporter.warning(f"cannot write dump context {handle.ctx.id}: {reason(e)}",
                         once="contexts")


def restart_command(cid: str) -> str:
    return f"ndump dump --restart {cid}"


def stopped(handle: Handle, snap: Snapshot, e: BaseException, reporter: Reporter) -> None:
    """The dump stopped on ``e``: keep a context that reached Pass IV (and its snapshot),
    remove any other."""
    ctx = handle.ctx
    if ctx.dump_pass != PASS_IV or ctx.checkpoint is None:
        handle.remove()
        return
    ctx.state = "interrupted"
    ctx.reason = str(e) or type(e).__name__
    try:
        handle.save()
    except OSError as err:
        reporter.warning(f"cannot update dump context {ctx.id}: {reason(err)}")
    handle.release()
    snap.keep()
    how = " --force (the tree is read live)" if ctx.snapshot is None else ""
    e.add_note(f"dump context {ctx.id} can be restarted from inode {ctx.checkpoint['ino']}:"
               f" {restart_command(ctx.id)}{how}")


# -- checkpoints -------------------------------------------------------------
class Checkpointer:
    """Called before each file of Pass IV; takes a checkpoint when one is due."""

    def __init__(self, handle: Handle, settings: Settings, sink, fmt, ident: DumpIdent,
                 history: FileHistory | None, reporter: Reporter, *, clock=time.monotonic):
        self.handle = handle
        self.store = handle.store
        self.rep = reporter
        self.sink = sink
        self.fmt = fmt
        self.ident = ident
        self.history = history if history is not None and history.active else None
        self.interval = settings.checkpoint_interval
        self.clock = clock
        self.taken = 0
        self.seconds = 0.0
        self._due = 0.0
        self._selection = None
        self._pending = array("q")            # 8 bytes an inode, not an int object's 36
        self._heads: dict[int, str] = {}
        ck = handle.ctx.checkpoint
        self._offsets_len = ck["offsets_len"] if ck else 0
        self._rows_len = 0
        self._inflight: threading.Thread | None = None
        self._failed: BaseException | None = None

    def on_inode(self, hook):
        """The file-history hook, noting each inode for the next checkpoint (the
        file history's own hook appends to the pending list itself: one call a file)."""
        if hook is None or self.history is None:
            return hook
        pending = self._pending
        if getattr(hook, "__self__", None) is self.history:
            self.history.pending = pending
            return hook

        def noted(dino, block, mode, size, mtime, ctime):
            hook(dino, block, mode, size, mtime, ctime)
            pending.append(dino)
        return noted

    def on_volume(self) -> None:
        self._due = 0.0                       # a checkpoint at the next inode boundary

    def start_pass_iv(self, sel, inomap_map: dict) -> None:
        """Pass IV begins; the first checkpoint comes one interval later (a dump
        shorter than that pays nothing for being restartable)."""
        self._selection = (sel, inomap_map)
        self._due = self.clock() + self.interval

    def _keep_selection(self) -> None:
        """Before the first checkpoint: keep the selection (Pass III may have changed it)."""
        import pickle
        path = self.store.path(self.handle.ctx.id, ".sel")
        tmp = path.with_name(path.name + ".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600),
                  "wb") as f:
            pickle.dump(self._selection, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._selection = None
        self.handle.ctx.dump_pass = PASS_IV

    def __call__(self, dino: int) -> None:
        if self.clock() >= self._due:
            self.take(dino)

    def take(self, dino: int) -> None:
        """Put the records written so far on the medium and note where the dump is;
        the fsyncs and the context file are left to a thread (the dump reads on
        while the image is synced: done here, they cost a quarter of a dump to disk).
        One checkpoint at a time: while one is being made, a due one waits for the
        next inode, except at a volume change (``on_volume``), which waits for it, and
        with an interval of 0 (a checkpoint before every file), where each waits."""
        if self._inflight is not None and self._inflight.is_alive() and self._due > 0.0 \
                and self.interval > 0:
            return
        started = self.clock()
        self._join()
        if self.interval == float("inf"):
            return
        state = self.sink.checkpoint()
        output = self.sink.output
        syncer = getattr(output, "syncer", None)
        sync = syncer() if syncer is not None else None
        try:
            if self._selection is not None:
                self._keep_selection()
            rows = self._offset_rows()
            checkpoint = self._checkpoint(dino, state, output)
        except OSError as e:
            if sync is not None:
                sync()
            self._give_up(e)
            return
        self._inflight = threading.Thread(target=self._commit, name="ndump-checkpoint",
                                          args=(sync, rows, checkpoint, state["volume"]),
                                          daemon=True)
        self._inflight.start()
        now = self.clock()
        self.seconds += now - started
        self._due = now + self.interval

    def finish(self) -> None:
        """Wait for the checkpoint being made (before the context is saved, kept or
        removed by anyone else); its media error, if any, goes up."""
        self._join()

    def _join(self) -> None:
        if self._inflight is not None:
            self._inflight.join()
            self._inflight = None
        failed, self._failed = self._failed, None
        if isinstance(failed, OSError):
            self._give_up(failed)
        elif failed is not None:
            raise failed

    def _give_up(self, e: OSError) -> None:
        """A context that cannot be written is one warning; the dump goes on without."""
        self.interval = float("inf")
        self._due = float("inf")
        self.rep.warning(f"cannot write dump context {self.handle.ctx.id}"
                         f" ({reason(e)}): no more checkpoints for this dump")

    def _commit(self, sync, rows: bytes, checkpoint: dict, volume: int) -> None:
        """In the thread: the image, then the offsets, then the context, each durable
        before the next names it."""
        try:
            if sync is not None:
                sync()
            self._append_offsets(rows)
            ctx = self.handle.ctx
            ctx.checkpoint = checkpoint
            ctx.volume = volume
            self.handle.save()
            self.taken += 1
        except BaseException as e:          # handed to the dump's thread (_join)
            self._failed = e

    def _checkpoint(self, dino: int, state: dict, output) -> dict:
        return {
            "ino": dino, "tapea": self.fmt.tapea, "fmt_volume": self.fmt.volume,
            "firstrec": self.fmt.firstrec, "sink": state,
            "offsets_len": self._offsets_len + self._rows_len,
            "starts": list(self.history._starts) if self.history is not None else [0],
            "ident": dataclasses.asdict(self.ident), "medium": self._medium(output, state),
            "time": time.time()}

    def _offset_rows(self) -> bytes:
        """The file-history rows of the inodes written since the last checkpoint (made
        here: the dump's thread changes the arrays they come from)."""
        pending = self._pending
        if not pending:
            self._rows_len = 0
            return b""
        h = self.history
        # packed into one buffer: a join of one bytes object per row made the first
        # checkpoint of a fast dump of many files its peak of memory (~140 bytes a row)
        rows = bytearray(len(pending) * _ROW.size)
        pack_into, size = _ROW.pack_into, _ROW.size
        block, fsize, mode, mtime, ctime = h._block, h._size, h._mode, h._mtime, h._ctime
        for k, d in enumerate(pending):
            pack_into(rows, k * size, d, block[d], fsize[d], mode[d], mtime[d], ctime[d])
        del pending[:]
        self._rows_len = len(rows)
        return rows

    def _append_offsets(self, rows: bytes) -> None:
        if not rows:
            return
        path = self.store.path(self.handle.ctx.id, ".offsets")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, self._offsets_len)
            os.pwrite(fd, rows, self._offsets_len)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._offsets_len += len(rows)

    def _medium(self, output, state: dict) -> dict:
        """How --restart goes on: on the same image file, or on a new volume."""
        fd = getattr(output, "fd", -1)
        name = getattr(output, "name", "")
        regular = False
        if fd >= 0 and self.handle.ctx.medium != "-" and not getattr(output, "is_tape", False):
            try:
                regular = stat.S_ISREG(os.fstat(fd).st_mode)
            except OSError:
                regular = False
        out = {"kind": "file" if regular else "stream", "name": name}
        volume = state["volume"]
        if regular and state["vol_bytes"] >= 1024:       # its TS_TAPE is on it
            if volume not in self._heads:
                self._heads[volume] = _head(name)
            out["head"] = self._heads[volume]
        return out


def settle(ckpt: Checkpointer) -> None:
    """On the way out of a failed dump: let the checkpoint being made finish (the
    context is saved next); its own error is not the one to report."""
    try:
        ckpt.finish()
    except Exception:
        pass


def _head(path: str) -> str:
    """A digest of a volume's first block (its TS_TAPE: dump date, volume number)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read(1024)).hexdigest()
    except OSError:
        return ""


# -- --restart ---------------------------------------------------------------
def check_restartable(ctx: Context, *, force: bool) -> None:
    """Raise ContextError with the reason when ``ctx`` cannot be restarted."""
    if ctx.dump_pass != PASS_IV or ctx.checkpoint is None:
        raise ContextError(f"dump context {ctx.id} cannot be restarted: the dump stopped in"
                           f" Pass {ctx.dump_pass}, before any file data was written; start a new"
                           f" dump (ndump contexts delete {ctx.id} removes it)")
    if ctx.snapshot is None and not force:
        raise ContextError(f"dump context {ctx.id} read the live tree {ctx.tree}, which may have"
                           " changed since: restart it only with --force")


def restart_dump(cid: str, settings: Settings, reporter: Reporter, *,
                 force: bool = False) -> Outcome:
    store = Store(settings)
    handle = store.hold(store.resolve(cid))
    try:
        ctx = handle.ctx
        check_restartable(ctx, force=force)
        opts = options_from(ctx.options)
        reporter.fact("context_id", ctx.id)
        reporter.fact("level", ctx.level); reporter.fact("path", ctx.tree)
        reporter.fact("date", ctx.date); reporter.fact("base_date", ctx.base_date)
        reporter.info(f"Restarting dump context {ctx.id}: level {ctx.level} dump of {ctx.tree}"
                      f" of {time.ctime(ctx.date)}, from inode {ctx.checkpoint['ino']}")
        if ctx.snapshot is None:
            reporter.warning(f"{ctx.tree} is read live (no snapshot): files changed since the"
                             " interruption are dumped as they are now (--force)")
        with open_session(settings, "dump", ctx.tree, opts.max_sessions, reporter), \
                _snapshot(ctx, settings, reporter) as snap:
            try:
                outcome = _continue(handle, opts, settings, reporter, snap)
            except BaseException as e:
                ctx.restarts += 1
                stopped(handle, snap, e, reporter)
                raise
        ctx.restarts += 1
        handle.remove()
    finally:
        handle.release()
    if opts.update:
        from ndump.dump.dumpdates import DumpDates
        dumpdates = DumpDates(opts.dumpdates or settings.dumpdates)
        if outcome.problems:
            reporter.warning(f"{dumpdates.path} not updated: {len(outcome.problems)} file(s)"
                             " could not be dumped")
        else:
            dumpdates.record(ctx.tree, ctx.level, ctx.date)
            reporter.info(f"level {ctx.level} dump of {ctx.tree} recorded in {dumpdates.path}")
    return outcome


def _snapshot(ctx: Context, settings: Settings, reporter: Reporter):
    from ndump.errors import SnapshotError
    if ctx.snapshot is None:
        return nullcontext(Snapshot(ctx.tree, ctx.tree))
    if ctx.snapshot_created:
        try:
            return reopen_kept(ctx.tree, ctx.snapshot, ctx.snapshot_rel, settings, reporter)
        except SnapshotError as e:
            raise ContextError(f"dump context {ctx.id} cannot be restarted: {e}") from None
    if not os.path.isdir(ctx.root):
        raise ContextError(f"dump context {ctx.id} cannot be restarted: snapshot {ctx.snapshot}"
                           f" is gone ({ctx.root} does not exist)")
    return nullcontext(Snapshot(ctx.tree, ctx.root, name=ctx.snapshot, kind=ctx.snapshot_kind))


class _Map:
    """What the tree writer needs of an InodeMap."""

    def __init__(self, mapping: dict):
        self.map = mapping


# what a selection record may name: pickle runs whatever a record names, so only
# these are found (a record planted or damaged under the state directory is refused)
_SELECTION_TYPES = {("ndump.dump.select", "Selection"), ("ndump.dump.select", "DirNode"),
                    ("array", "array"), ("array", "_array_reconstructor"),
                    ("builtins", "bytearray"), ("builtins", "list"), ("builtins", "dict"),
                    ("builtins", "bytes"), ("builtins", "set"), ("builtins", "frozenset"),
                    ("copyreg", "_reconstructor"), ("builtins", "object")}


def _load_selection(path: Path, cid: str):
    """The Pass I-III selection kept with a context: read only if this user wrote it
    (owned by us, writable by nobody else) and only from the types a selection holds."""
    import pickle

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in _SELECTION_TYPES:
                raise pickle.UnpicklingError(f"unexpected {module}.{name}")
            return super().find_class(module, name)

    def refuse(why: str):
        return ContextError(f"dump context {cid} cannot be restarted: its inode selection"
                            f" {why}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise refuse(f"is unreadable ({reason(e)})") from None
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise refuse(f"is not a file only this user can write ({path})")
        try:
            sel, mapping = _Unpickler(f).load()
        except Exception as e:          # any damage: the record is refused, never run
            raise refuse(f"is damaged ({e})") from None
    from ndump.dump.select import Selection
    if not isinstance(sel, Selection) or not isinstance(mapping, dict):
        raise refuse("is damaged (not a selection)")
    return sel, mapping


def _continue(handle: Handle, opts: DumpOptions, settings: Settings, reporter: Reporter,
              snap: Snapshot) -> Outcome:
    from ndump.dump import VolumeStarts, open_writers, run_passes, write_passes
    from ndump.dump.volchange import VolumeChanger
    ctx = handle.ctx
    ck = ctx.checkpoint
    sel, mapping = _load_selection(handle.store.path(ctx.id, ".sel"), ctx.id)
    ident = DumpIdent(**ck["ident"])
    changer = VolumeChanger(opts, settings, reporter)
    history = _history(opts, settings, reporter, ctx, sel, mapping, ident)
    on_volume = VolumeStarts(history, changer)
    algorithm = ALGORITHMS[opts.compress] if opts.compress else None
    fmt, sink = open_writers(ident, changer.open, algorithm=algorithm, level=opts.compress_level,
                             capacities=list(opts.volume_sizes), change_volume=changer.change,
                             on_volume=on_volume)
    on_volume.sink = sink
    fmt.tapea, fmt.volume, fmt.firstrec = ck["tapea"], ck["fmt_volume"], ck["firstrec"]
    state = ck["sink"]
    medium = ck["medium"]
    if medium["kind"] == "file":
        name = changer.name(state["volume"])
        if medium.get("head") and _head(name) != medium["head"]:
            raise ContextError(f"dump context {ctx.id} cannot be restarted on {name}: it is not"
                               f" volume {state['volume']} of that dump (another file or medium)")
        sink.resume(state, open_output(name, settings, resume_at=state["vol_bytes"]))
        reporter.info(f"continuing {name} from byte {state['vol_bytes']}")
    else:
        volume = state["volume"] + 1
        if opts.file != "-" and not opts.multi_volume:
            changer.change(volume, "")
        sink.resume_on_new_volume(state, changer.open(volume))
    ckpt = on_volume.ckpt = Checkpointer(handle, settings, sink, fmt, ident, history, reporter)
    on_inode = history.on_inode if history is not None and history.active else None
    return run_passes(lambda: write_passes(os.fsencode(snap.root), sel, _Map(mapping), fmt, sink,
                                           reporter, checksums=opts.checksums,
                                           on_inode=ckpt.on_inode(on_inode), checkpoint=ckpt,
                                           resume_from=ck["ino"]),
                      opts, reporter, sink, sel, history, ckpt, restarted=True)


def _history(opts, settings, reporter, ctx: Context, sel, mapping, ident) -> FileHistory | None:
    """The file history of the restarted dump: a new catalog entry holding the
    positions recorded before the checkpoint and those written now."""
    if not opts.file_history:
        return None
    history = FileHistory(opts.catalog or default_path(settings.state_dir), reporter)
    history.begin(NewDump(tree=ident.filesys, level=ctx.level, date=ctx.date,
                          base_date=ctx.base_date, label=ident.label, host=ident.host,
                          medium=medium_spec(opts.file), multi=opts.multi_volume,
                          ntrec=opts.ntrec, compression=opts.compress, context=ctx.id),
                  sel, mapping)
    if not history.active:
        return history
    if ctx.catalog_dump_id is not None:       # the interrupted run's entry: replaced
        try:
            history.catalog.forget_dump(ctx.catalog_dump_id)
        except CatalogError as e:
            reporter.warning(f"{e}; the entry of the interrupted dump stays in the catalog")
    ctx.catalog_dump_id = history.dump_id
    ck = ctx.checkpoint
    history._starts = list(ck["starts"])
    try:
        with open(Path(Store(settings).path(ctx.id, ".offsets")), "rb") as f:
            data = f.read(ck["offsets_len"])
    except FileNotFoundError:
        data = b""
    for dino, block, size, mode, mtime, ctime in _ROW.iter_unpack(data[:len(data) - len(data) % _ROW.size]):
        history._block[dino], history._size[dino], history._mode[dino] = block, size, mode
        history._mtime[dino], history._ctime[dino] = mtime, ctime
    return history


# -- ndump contexts list|show|delete ------------------------------------------
def _snapshot_gone(ctx: Context, settings: Settings) -> str:
    """Why the snapshot of ``ctx`` cannot be read any more ("" when it can)."""
    from ndump.snapshot import registry
    if ctx.snapshot is None or os.path.isdir(ctx.root):
        return ""
    if ctx.snapshot_created:
        record = next((r for r in registry.live(settings) if r.name == ctx.snapshot), None)
        if record is None:
            return f"snapshot {ctx.snapshot} is gone (no record of it)"
        if record.data.get("mounted_top"):
            return ""                         # the restart mounts its filesystem again
    return f"snapshot {ctx.snapshot} is gone ({ctx.root} does not exist)"


def describe(store: Store, cid: str, settings: Settings) -> dict:
    """Every field of context ``cid`` for ``ndump contexts show`` (ONTAP's
    ``restartable-backup show -context-id``), the unreadable ones said so."""
    busy = store.busy(cid)
    try:
        ctx = store.load(cid)
    except ContextError as e:
        return {"id": cid, "state": "corrupt", "busy": busy, "restartable": False,
                "reason": str(e), "cleanup_pending": not busy}
    ck = ctx.checkpoint or {}
    try:
        check_restartable(ctx, force=True)
        why = ""
    except ContextError as e:
        why = str(e)
    why = why or _snapshot_gone(ctx, settings)
    state = ctx.state if busy or ctx.state != "running" else "killed"
    opts = ctx.options
    return {
        "id": ctx.id, "tree": ctx.tree, "level": ctx.level,
        "base_date": ctx.base_date, "date": ctx.date, "label": opts.get("label") or "none",
        "host": ctx.host, "snapshot": ctx.snapshot, "snapshot_created": ctx.snapshot_created,
        "read_from": ctx.root, "medium": ctx.medium, "multi_volume": opts.get("multi_volume"),
        "blocking_factor": opts.get("ntrec"), "compression": opts.get("compress"),
        "volume": ctx.volume, "pass": ctx.dump_pass, "state": state, "reason": ctx.reason,
        "busy": busy, "pid": ctx.pid if busy else None,
        "restartable": not why and not busy, "why_not": why,
        "needs_force": ctx.snapshot is None,
        "cleanup_pending": not busy and ctx.dump_pass != PASS_IV,
        "offset_map": ck.get("offsets_len", 0) > 0,
        "checkpoint": {"ino": ck.get("ino"), "volume": ck.get("sink", {}).get("volume"),
                       "offset": ck.get("sink", {}).get("vol_bytes"),
                       "records": ck.get("sink", {}).get("vol_records"),
                       "blocks": ck.get("tapea"), "time": ck.get("time")} if ck else None,
        "restarts": ctx.restarts, "created": ctx.created, "updated": ctx.updated,
        "command": restart_command(ctx.id) + (" --force" if ctx.snapshot is None else ""),
    }


def delete_context(cid: str, settings: Settings, reporter: Reporter) -> None:
    """Remove a context (refused while busy) and release the snapshot it kept."""
    from ndump.snapshot import remove_stale
    store = Store(settings)
    cid = store.resolve(cid)
    try:
        handle = store.hold(cid)
    except ContextBusy:
        raise
    except ContextError:
        store.unlink(cid)                     # a corrupt context goes all the same
        reporter.info(f"dump context {cid} deleted")
        remove_stale(settings, reporter)
        return
    snapshot = handle.ctx.snapshot if handle.ctx.snapshot_created else None
    handle.remove()
    reporter.info(f"dump context {cid} deleted")
    removed = remove_stale(settings, reporter) if snapshot else []
    if snapshot and snapshot not in removed:
        reporter.warning(f"snapshot {snapshot} was not removed (see above); the next ndump"
                         " run tries again")
