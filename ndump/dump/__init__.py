"""The dump engine (classic: dump/main.c): run_dump(options, settings, reporter)."""
from __future__ import annotations

import itertools
import os
import sys
import time
from array import array

from ndump.errors import Outcome, StartupError, UsageError, reason
from ndump.format import DumpIdent, FormatWriter, Totals
from ndump.format.constants import ROOTINO, TP_BSIZE
from ndump.format.records import ALGORITHMS
from ndump.report import Reporter
from ndump.sessions import open_session
from ndump.settings import Settings
from ndump.snapshot import open_snapshot
from ndump.snapshot.detect import mount_in, parse_mountinfo
from ndump.catalog import NewDump, default_path, medium_spec
from ndump.dump.dumpdates import DumpDates, history_lines
from ndump.dump.history import FileHistory
from ndump.dump.inomap import InodeMap
from ndump.dump.options import DumpOptions
from ndump.dump.select import Selection, Walk
from ndump.dump.volumes import VolumeWriter
from ndump.format.constants import MAXNTREC as MAX_NTREC
from ndump.dump.volchange import VolumeChanger
from ndump.dump.writer import TreeWriter
from ndump.dump import restart

__all__ = ["DumpOptions", "open_writers", "run_dump", "show_history", "write_passes"]

LABEL_MAX = 15            # c_label holds 16 bytes, the last a NUL (stock: LBLSIZE - 1)


def show_history(dumpdates_path, settings: Settings, reporter: Reporter, *,
                 only_needed: bool) -> list[str]:
    """Lines for -W (every tree) and -w (trees not dumped in the last day)."""
    dumpdates = DumpDates(dumpdates_path or settings.dumpdates)
    if not dumpdates.path.exists():
        reporter.warning(f"no file {dumpdates.path}")      # stock: "WARNING: no file `...'"
    return history_lines(dumpdates.read(), int(settings.clock()), only_needed=only_needed)


def _check_path(path: str) -> bytes:
    root = os.path.abspath(path)
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise StartupError(f"cannot dump {path}: no such file or directory") from None
    except OSError as e:
        raise StartupError(f"cannot dump {path}: {e.strerror.lower()}") from None
    if not os.path.isdir(root):
        raise StartupError(f"cannot dump {path}: not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise StartupError(f"cannot dump {path}: permission denied")
    del st
    return os.fsencode(root)


def _mount_source(path: str) -> str:
    """The device or source of the filesystem that holds path (c_dev), from
    /proc/self/mountinfo (read by snapshot.detect's parser; no findmnt run)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            mounts = parse_mountinfo(f.read())
    except OSError:
        return ""
    best = mount_in(mounts, path)
    return best.source if best is not None else ""


_GATHER = 0x0102040810204080   # times 8 little-endian 0/1 bytes: they are bits 56-63


def _bitmap(dinos, maxino: int) -> bytes:
    """TS_CLRI/TS_BITS map: bit n-1 set for each inode n.  One byte is set per
    inode, then each 8 bytes become one (a third of setting bits one by one)."""
    size = ((maxino + 7) // 8 + TP_BSIZE - 1) // TP_BSIZE * TP_BSIZE
    flags = bytearray(size * 8)
    for n in dinos:
        flags[n - 1] = 1
    words = array("Q", flags)
    if sys.byteorder == "big":
        words.byteswap()
    return bytes([(w * _GATHER >> 56) & 0xFF for w in words])


def run_dump(opts: DumpOptions, settings: Settings, reporter: Reporter) -> Outcome:
    _check_options(opts)
    dumpdates = DumpDates(opts.dumpdates or settings.dumpdates)
    if opts.update:
        dumpdates.check_writable()          # -u must be able to record: say so before writing
    root = _check_path(opts.path)
    ident_path = os.fsdecode(root)
    if opts.estimate_only:
        reporter.quiet = True               # -S prints the number alone, as stock dump does
    else:
        _warn_options(opts, ident_path, reporter)
    date = int(settings.clock())
    base_date = _base_date(opts, dumpdates, ident_path, reporter)
    reporter.fact("level", opts.level); reporter.fact("path", ident_path)
    reporter.fact("date", date); reporter.fact("base_date", base_date)
    reporter.info(f"Date of this level {opts.level} dump: {time.ctime(date)}")
    changer = None
    if not opts.estimate_only:
        reporter.info(f"Dumping {ident_path} to {opts.file if opts.file != '-' else 'standard output'}")
        changer = VolumeChanger(opts, settings, reporter)
        changer.check()                     # before the tree is walked, not after
    outcome = _run(opts, settings, reporter, ident_path, date, base_date, changer)
    if opts.update:
        if outcome.problems:
            reporter.warning(f"{dumpdates.path} not updated: {len(outcome.problems)} file(s)"
                             " could not be dumped")
        else:
            dumpdates.record(ident_path, opts.level, date)
            reporter.info(f"level {opts.level} dump of {ident_path} recorded in {dumpdates.path}")
    return outcome


def _check_options(opts: DumpOptions) -> None:
    if not 0 <= opts.level <= 31:
        raise UsageError(f"dump level must be 0 to 31, not {opts.level}")
    if not 4 <= opts.ntrec <= MAX_NTREC:
        raise UsageError(f"blocking factor must be 4 to {MAX_NTREC}, not {opts.ntrec}")
    if opts.update and opts.base_date is not None:
        raise UsageError("-T and -u cannot be used together")


def _warn_options(opts: DumpOptions, ident_path: str, reporter: Reporter) -> None:
    if opts.compress and opts.ntrec > 32:
        reporter.warning(f"stock restore reads a compressed dump with -b {opts.ntrec} only when"
                         f" given -b {opts.ntrec} itself (its default buffer is 32 KiB)")
    if len(os.fsencode(ident_path)) > 63:
        reporter.warning(f"the dump header records only the first 63 bytes of"
                         f" {ident_path}; restore --original cannot use it")
    if opts.label and len(opts.label.encode("utf-8", "surrogateescape")) > LABEL_MAX:
        short = opts.label.encode("utf-8", "surrogateescape")[:LABEL_MAX].decode("utf-8", "ignore")
        reporter.warning(f"label `{opts.label}' is larger than limit of {LABEL_MAX} characters;"
                         f" using truncated label `{short}'")


def _run(opts, settings, reporter, ident_path: str, date: int, base_date: int,
         changer) -> Outcome:
    # SPEC §3.6 session slot, then §3.4: read snap.root, record ident_path (the PATH given)
    with open_session(settings, "dump", ident_path, opts.max_sessions, reporter), \
            open_snapshot(ident_path, "none" if opts.estimate_only else opts.snapshot, settings,
                          reporter, size=opts.snapshot_size) as snap:
        context = None if opts.estimate_only else restart.begin(opts, settings, snap, date,
                                                                 base_date, reporter)
        try:
            outcome = _dump_from(opts, settings, reporter, ident_path, date, base_date, changer,
                                 snap, context)
        except BaseException as e:
            if context is not None:
                restart.stopped(context, snap, e, reporter)
            raise
        if context is not None:
            context.remove()
            reporter.fact("context_id", None)      # done: nothing left to restart
        return outcome


def _dump_from(opts, settings, reporter, ident_path: str, date: int, base_date: int, changer,
               snap, context) -> Outcome:
    root = os.fsencode(snap.root)
    # -S only estimates: it leaves the state directory as it found it
    inomap = (InodeMap(None, ident_path) if opts.estimate_only
              else _open_inomap(settings, ident_path, reporter, opts.level))
    try:
        reporter.phase("I", "mapping")
        walk = Walk(root, opts.level, base_date, opts.honor_level, opts.excludes, inomap, reporter)
        sel = walk.run()
        reporter.phase("II", "mapping")
        if inomap.persistent:
            inomap.save()
    finally:
        inomap.close()
    est_blocks = sel.blocks + 20
    reporter.info(f"estimated {est_blocks} blocks ({est_blocks / 1024:.2f}MB).")
    reporter.fact("estimated_bytes", est_blocks * TP_BSIZE); reporter.fact("files", sel.inodes)
    if opts.estimate_only:
        return Outcome(reporter.problems, estimate=est_blocks * TP_BSIZE)
    history = FileHistory(opts.catalog or default_path(settings.state_dir), reporter) \
        if opts.file_history else None
    return _write_dump(opts, reporter, root, sel, inomap, changer,
                       _ident(opts, settings, ident_path, date, base_date), history,
                       context, settings)


def _ident(opts: DumpOptions, settings: Settings, ident_path: str, date: int,
           base_date: int) -> DumpIdent:
    return DumpIdent(date=date, ddate=base_date, level=opts.level,
                     label=opts.label or "none", filesys=ident_path,
                     dev=_mount_source(ident_path), host=settings.hostname, ntrec=opts.ntrec,
                     compressed=opts.compress is not None)


def _base_date(opts: DumpOptions, dumpdates: DumpDates, ident: str, reporter: Reporter) -> int:
    """c_ddate: -T, else the latest dump at a lower level (FORMAT §9.3), else 0."""
    if opts.base_date is not None:
        reporter.info(f"Date of last level ? dump: {time.ctime(opts.base_date)} (-T)")
        return opts.base_date
    if opts.level == 0:
        reporter.info("Date of last lower-level dump: the epoch (a level 0 dump holds every file)")
        return 0
    base = dumpdates.base_for(ident, opts.level)
    if base is None:
        reporter.warning(f"there is no inferior level dump of {ident} in {dumpdates.path};"
                         f" the level {opts.level} dump will hold everything")
        return 0
    reporter.info(f"Date of last level {base.level} dump: {time.ctime(base.date)}")
    return base.date


def _open_inomap(settings: Settings, ident: str, reporter: Reporter, level: int) -> InodeMap:
    inomap = InodeMap.for_tree(settings.state_dir, ident)
    try:
        inomap.open()
        if level > 0 and not inomap.map:
            reporter.warning(f"no inode map for {ident} under {settings.state_dir}: this"
                             " incremental cannot be applied on top of earlier dumps by restore -r")
    except OSError as e:
        reporter.warning(f"cannot keep the inode map under {settings.state_dir} ({reason(e)});"
                         " inode numbers of this dump will not match later incrementals")
        inomap = InodeMap(None, ident)
    return inomap


def _write_dump(opts, reporter, root, sel: Selection, inomap, changer: VolumeChanger,
                ident: DumpIdent, history: FileHistory | None, context=None,
                settings: Settings | None = None) -> Outcome:
    algorithm = ALGORITHMS[opts.compress] if opts.compress else None
    ckpt = None
    on_volume = VolumeStarts(history, changer)
    fmt, sink = open_writers(ident, changer.open, algorithm=algorithm, level=opts.compress_level,
                             capacities=list(opts.volume_sizes), change_volume=changer.change,
                             on_volume=on_volume)
    on_volume.sink = sink
    if history is not None:
        history.begin(NewDump(tree=ident.filesys, level=opts.level, date=ident.date,
                              base_date=ident.ddate, label=ident.label, host=ident.host,
                              medium=medium_spec(opts.file), multi=opts.multi_volume,
                              ntrec=opts.ntrec, compression=opts.compress,
                              context=context.ctx.id if context is not None else None),
                      sel, inomap.map)
    on_inode = history.on_inode if history is not None and history.active else None
    if context is not None:
        ckpt = on_volume.ckpt = restart.Checkpointer(context, settings, sink, fmt, ident,
                                                     history, reporter)
        on_inode = ckpt.on_inode(on_inode)
        context.ctx.catalog_dump_id = history.dump_id if on_inode is not None else None
        context.ctx.dump_pass = "III"
        restart.note_pass(context, reporter)
    sink.start(changer.open(1))
    return run_passes(lambda: write_passes(root, sel, inomap, fmt, sink, reporter,
                                           checksums=opts.checksums, on_inode=on_inode,
                                           checkpoint=ckpt),
                      opts, reporter, sink, sel, history, ckpt)


class VolumeStarts:
    """A volume starts: the file history notes its first block, a checkpoint is due
    (``ckpt``, once there is one) and the volume changer is told."""

    def __init__(self, history: FileHistory | None, changer: VolumeChanger):
        self.history, self.changer = history, changer
        self.sink: VolumeWriter | None = None
        self.ckpt = None

    def __call__(self, volume: int, ino: int) -> None:
        if self.history is not None and self.history.active:
            self.history.volume_started(volume, self.sink.total_blocks)
        if self.ckpt is not None:
            self.ckpt.on_volume()
        self.changer.started(volume, ino)


def run_passes(passes, opts, reporter: Reporter, sink: VolumeWriter, sel: Selection,
               history: FileHistory | None, ckpt, *, restarted: bool = False) -> Outcome:
    """Run ``passes`` (the writing of a dump or of its restart), then close its file
    history and checkpoints and report what was written."""
    started = time.monotonic()
    try:
        passes()
        if ckpt is not None:
            ckpt.finish()
    except BaseException as e:
        if ckpt is not None:
            restart.settle(ckpt)
        if history is not None:
            history.finish(status="aborted", volumes=sink.volumes)
        e.add_note(f"the dump on {opts.file if opts.file != '-' else 'standard output'} is"
                   " incomplete: do not restore from it")
        raise
    if history is not None:
        history.finish(status="partial" if reporter.problems else "done",
                       volumes=sink.volumes, nbytes=sel.data_bytes)
    elapsed = max(time.monotonic() - started, 1e-6)
    kib = sink.blocks
    reporter.fact("bytes", kib * 1024); reporter.fact("volumes", sink.volumes)
    reporter.info(f"{kib} blocks (%.2fMB) on {sink.volumes} volume(s)" % (kib / 1024))
    if restarted:
        reporter.info(f"restart finished in {elapsed:.2f} seconds ({ckpt.taken} checkpoint(s))")
    else:
        reporter.info(f"finished in {elapsed:.2f} seconds, throughput {kib / elapsed:.0f}"
                      " kBytes/sec")
        if ckpt is not None:
            reporter.verbose(f"{ckpt.taken} checkpoint(s) in {ckpt.seconds:.3f} seconds")
    reporter.info("DUMP IS DONE" if not reporter.problems else
                  f"DUMP IS DONE, {len(reporter.problems)} file(s) could not be dumped")
    return Outcome(reporter.problems)


def open_writers(ident: DumpIdent, open_volume, **volume_args) -> tuple[FormatWriter, VolumeWriter]:
    """The format writer and the volume writer under it (``volume_args``: those
    of VolumeWriter).  Start the volume writer on volume 1 before writing."""

    def volume_header(volume: int, count: int, ino: int, tapea: int) -> bytes:
        """TS_TAPE of a volume after the first (FORMAT §7.2)."""
        fmt.start_volume(volume, tapea)
        return fmt.volume_header(count=count, ino=ino, tapea=tapea, consume=False)

    sink = VolumeWriter(open_volume, ident.ntrec, volume_header=volume_header, **volume_args)
    fmt = FormatWriter(sink, ident)
    return fmt, sink


def write_passes(root: bytes, sel: Selection, inomap: InodeMap, fmt: FormatWriter,
                 sink: VolumeWriter, reporter: Reporter, *, checksums: bool = True,
                 on_inode=None, checkpoint=None, resume_from: int | None = None) -> None:
    """The volume header, the maps, Pass III, IV and V, the end: the whole dump of
    what Pass I and II selected, through ``fmt`` onto ``sink`` (started).  On any
    failure the sink is aborted and the failure raised.  ``on_inode``: the file
    history's hook (dump/history.py), told of each inode's header.
    ``checkpoint``: a restart.Checkpointer, called at inode boundaries in Pass IV;
    ``resume_from``: a restarted dump goes on at this inode of Pass IV."""
    m = inomap.map
    maxino = sel.maxino + 1
    all_dinos = (m[k] for d in sel.dirs for k in d.keys)
    clri = _bitmap(itertools.chain([ROOTINO], all_dinos), maxino)
    files = sel.files
    dumped = itertools.chain((n for n in range(len(files)) if files[n]),
                             (m[d.key] for d in sel.dirs if d.dumped))
    bits = _bitmap(dumped, maxino)
    tree = TreeWriter(root, sel, inomap, fmt, reporter, checksums=checksums,
                      progress=lambda n: reporter.progress(n, sink.volume), on_inode=on_inode)
    try:
        if resume_from is None:
            fmt.write_tape_header(Totals(sel.data_bytes, sel.inodes, sel.blocks))
            fmt.write_maps(clri, bits, maxino)
            reporter.phase("III", "dumping directories")
            tree.dump_dirs()
        reporter.phase("IV", "dumping regular files")
        reporter.progress_start(max(sel.data_bytes, 1))
        if checkpoint is not None and resume_from is None:
            checkpoint.start_pass_iv(sel, inomap.map)
        tree.dump_files(resume_from or 0, checkpoint)
        reporter.progress_end()
        fmt.write_end(maxino)
        sink.close()
    except BaseException as e:
        reporter.progress_end()
        sink.abort()
        raise
    finally:
        tree.close()
