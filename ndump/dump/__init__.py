"""The dump engine (classic: dump/main.c): run_dump(options, settings, reporter)."""
from __future__ import annotations

import itertools
import os
import time

from ndump.errors import Outcome, StartupError, UsageError
from ndump.format import DumpIdent, FormatWriter, Totals
from ndump.format.constants import ROOTINO, TP_BSIZE
from ndump.format.records import ALGORITHMS
from ndump.report import Reporter
from ndump.sessions import open_session
from ndump.settings import Settings
from ndump.snapshot import open_snapshot
from ndump.catalog import NewDump, default_path, medium_spec
from ndump.dump.dumpdates import DumpDates, history_lines
from ndump.dump.history import FileHistory
from ndump.dump.inomap import InodeMap
from ndump.dump.options import DumpOptions
from ndump.dump.select import Selection, Walk
from ndump.dump.volumes import VolumeWriter
from ndump.dump.volchange import VolumeChanger
from ndump.dump.writer import TreeWriter

__all__ = ["DumpOptions", "run_dump", "show_history"]


def show_history(dumpdates_path, settings: Settings, *, only_needed: bool) -> list[str]:
    """Lines for -W (every tree) and -w (trees not dumped in the last day)."""
    entries = DumpDates(dumpdates_path or settings.dumpdates).read()
    return history_lines(entries, int(settings.clock()), only_needed=only_needed)


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
    """The device or source of the filesystem that holds path (/proc/self/mountinfo)."""
    best, source = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                mnt = fields[4].replace("\\040", " ")
                sep = fields.index("-")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, source = mnt, fields[sep + 2]
    except OSError:
        pass
    return source


def _bitmap(dinos, maxino: int) -> bytes:
    size = ((maxino + 7) // 8 + TP_BSIZE - 1) // TP_BSIZE * TP_BSIZE
    bits = bytearray(size)
    for n in dinos:
        bits[(n - 1) >> 3] |= 1 << ((n - 1) & 7)
    return bytes(bits)


def run_dump(opts: DumpOptions, settings: Settings, reporter: Reporter) -> Outcome:
    if not 0 <= opts.level <= 31:
        raise UsageError(f"dump level must be 0 to 31, not {opts.level}")
    if not 4 <= opts.ntrec <= 1024:
        raise UsageError(f"blocking factor must be 4 to 1024, not {opts.ntrec}")
    if opts.compress and opts.ntrec > 32:
        reporter.warning(f"stock restore reads a compressed dump with -b {opts.ntrec} only when"
                         f" given -b {opts.ntrec} itself (its default buffer is 32 KiB)")
    if len(os.fsencode(os.path.abspath(opts.path))) > 63:
        reporter.warning(f"the dump header records only the first 63 bytes of"
                         f" {os.path.abspath(opts.path)}; restore --original cannot use it")
    if opts.update and opts.base_date is not None:
        raise UsageError("-T and -u cannot be used together")
    root = _check_path(opts.path)
    ident_path = os.fsdecode(root)
    dumpdates = DumpDates(opts.dumpdates or settings.dumpdates)
    date = int(settings.clock())
    base_date = _base_date(opts, dumpdates, ident_path, reporter)
    reporter.info(f"Date of this level {opts.level} dump: {time.ctime(date)}")
    if not opts.estimate_only:
        reporter.info(f"Dumping {ident_path} to {opts.file if opts.file != '-' else 'standard output'}")

    # SPEC §3.6 session slot, then §3.4: read snap.root, record ident_path (the PATH given)
    with open_session(settings, "dump", ident_path, opts.max_sessions, reporter), \
            open_snapshot(ident_path, "none" if opts.estimate_only else opts.snapshot, settings,
                          reporter, size=opts.snapshot_size) as snap:
        root = os.fsencode(snap.root)
        inomap = _open_inomap(settings, ident_path, reporter, opts.level)
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
        if opts.estimate_only:
            return Outcome(reporter.problems, estimate=est_blocks * TP_BSIZE)
        history = FileHistory(opts.catalog or default_path(settings.state_dir), reporter) \
            if opts.file_history else None
        outcome = _write_dump(opts, settings, reporter, root, sel, inomap, date, base_date,
                              ident_path=ident_path, history=history)
    if opts.update:
        if outcome.problems:
            reporter.warning(f"{dumpdates.path} not updated: {len(outcome.problems)} file(s)"
                             " could not be dumped")
        else:
            dumpdates.record(ident_path, opts.level, date)
            reporter.info(f"level {opts.level} dump of {ident_path} recorded in {dumpdates.path}")
    return outcome


def _base_date(opts: DumpOptions, dumpdates: DumpDates, ident: str, reporter: Reporter) -> int:
    """c_ddate: -T, else the latest dump at a lower level (FORMAT §9.3), else 0."""
    if opts.base_date is not None:
        reporter.info(f"Date of last level ? dump: {time.ctime(opts.base_date)} (-T)")
        return opts.base_date
    if opts.level == 0:
        reporter.info("Date of last level dump: the epoch")
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
        reporter.warning(f"cannot keep the inode map under {settings.state_dir} ({e.strerror});"
                         " inode numbers of this dump will not match later incrementals")
        inomap = InodeMap(None, ident)
    return inomap


def _write_dump(opts, settings, reporter, root, sel: Selection, inomap, date, base_date, *,
                ident_path: str, history: FileHistory | None = None) -> Outcome:
    m = inomap.map
    maxino = sel.maxino + 1
    all_dinos = (m[k] for d in sel.dirs for k in d.keys)
    clri = _bitmap(itertools.chain([ROOTINO], all_dinos), maxino)
    files = sel.files
    dumped = itertools.chain((n for n in range(len(files)) if files[n]),
                             (m[d.key] for d in sel.dirs if d.dumped))
    bits = _bitmap(dumped, maxino)
    algorithm = ALGORITHMS[opts.compress] if opts.compress else None
    ident = DumpIdent(date=date, ddate=base_date, level=opts.level,
                      label=opts.label or "none", filesys=ident_path,
                      dev=_mount_source(ident_path), host=settings.hostname, ntrec=opts.ntrec,
                      compressed=algorithm is not None)
    changer = VolumeChanger(opts, settings, reporter)

    def on_volume(volume, ino):
        if history is not None and history.active:
            history.volume_started(volume, sink.total_blocks)
        changer.started(volume, ino)
    sink = VolumeWriter(changer.open, opts.ntrec, algorithm=algorithm, level=opts.compress_level,
                        capacities=list(opts.volume_sizes), change_volume=changer.change,
                        on_volume=on_volume)
    fmt = FormatWriter(sink, ident)
    sink.fmt = fmt
    if history is not None:
        history.begin(NewDump(tree=ident_path, level=opts.level, date=date, base_date=base_date,
                              label=ident.label, host=ident.host, medium=medium_spec(opts.file),
                              multi=opts.multi_volume, ntrec=opts.ntrec,
                              compression=opts.compress), sel, m)
    started = time.monotonic()
    try:
        fmt.write_tape_header(Totals(sel.data_bytes, sel.inodes, sel.blocks))
        fmt.write_maps(clri, bits, maxino)
        tree = TreeWriter(root, sel, inomap, fmt, reporter, checksums=opts.checksums,
                          progress=lambda n: reporter.progress(n, sink.volume),
                          on_inode=history.on_inode if history and history.active else None)
        reporter.phase("III", "dumping directories")
        tree.dump_dirs()
        reporter.phase("IV", "dumping regular files")
        reporter.progress_start(max(sel.data_bytes, 1))
        tree.dump_files()
        reporter.progress_end()
        fmt.write_end(maxino)
        sink.close()
        if history is not None:
            history.finish(status="partial" if reporter.problems else "done",
                           volumes=sink.volumes, nbytes=sel.data_bytes)
    except BaseException:
        if history is not None:
            history.finish(status="aborted", volumes=sink.volumes)
        reporter.progress_end()
        try:
            sink.output.close()
        except Exception:
            pass
        raise
    elapsed = max(time.monotonic() - started, 1e-6)
    kib = sink.blocks
    reporter.info(f"{kib} blocks (%.2fMB) on {sink.volumes} volume(s)" % (kib / 1024))
    reporter.info(f"finished in {elapsed:.2f} seconds, throughput {kib / elapsed:.0f} kBytes/sec")
    reporter.info("DUMP IS DONE" if not reporter.problems else
                  f"DUMP IS DONE, {len(reporter.problems)} file(s) could not be dumped")
    return Outcome(reporter.problems)
