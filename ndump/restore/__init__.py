"""The restore engine (classic: restore/main.c): run_restore() reads one dump
and lists (-t), extracts (-x), rebuilds (-r), resumes (-R) or compares (-C).

The steps are classic restore's: verify the tape and read the maps; extract
the directories into an in-memory name tree; create directories; extract the
files in tape order; set the directories' modes and times last.
"""
from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from ndump.errors import Outcome, RunEndingError, StartupError, UsageError, reason
from ndump.format import ROOTINO
from ndump.report import Reporter
from ndump.restore import volchange
from ndump.restore.dirs import Tree, canon, read_dir_bytes, read_dirs
from ndump.restore.listing import DumpNames, Listing, list_dump
from ndump.restore.options import MODES, RestoreOptions
from ndump.restore import rename
from ndump.restore.volumes import DumpInput
# what writes or compares (extract, target, symtab, parallel, incremental, ...) is
# imported by the steps that use it: -t does not load it (start-up, issue 16)
from ndump.sessions import open_session
from ndump.settings import Settings

__all__ = ["RestoreOptions", "run_restore", "MODES"]


def run_restore(options: RestoreOptions, settings: Settings, reporter: Reporter, *,
                out=None) -> Outcome:
    """Run one restore.  ``out`` receives -t listings (default: standard output).

    Start-up problems (no input, not a dump, bad options) raise NdumpError
    subclasses; per-file problems go to the reporter; a tape that ends early
    or a full target gives an Outcome with ``aborted`` set.
    """
    # The engine makes millions of short-lived objects and no reference cycles
    # worth collecting: the cyclic GC only costs time (~5% of a restore) here.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if options.mode in ("t", "C"):      # they write nothing: no session slot (SPEC §3.6)
            return _run_restore(options, settings, reporter, out)
        with open_session(settings, "restore", options.file or settings.tape,
                          options.max_sessions, reporter):
            return _run_restore(options, settings, reporter, out)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run_restore(options: RestoreOptions, settings: Settings, reporter: Reporter, out) -> Outcome:
    if options.mode in ("r", "R") and options.paths:
        raise UsageError(f"-{options.mode} restores the whole dump and takes no file names")
    rename.extract_mode(options)                 # SPEC §5.1: a bad EXTRACT stops here
    _prepare_target(options, reporter)
    spec = options.file or settings.tape
    with DumpInput(spec, reporter, settings, verify_checksums=options.verify_checksums,
                   multi=options.multi_volume, blocksize=options.blocksize,
                   skip_files=max(0, options.file_number - 1)) as dump:
        dump.changer = volchange.changer_for(dump, options, settings, reporter)
        run = RestoreRun(options, settings, reporter, dump, out if out is not None else sys.stdout)
        return run.dispatch()


def _prepare_target(options: RestoreOptions, reporter: Reporter) -> None:
    """--target DIR, before the dump is read: made when missing (as --original's
    directory is) for a restore that writes; it must exist for -R and -C."""
    path = options.target
    if path is None or options.mode == "t":
        return
    if os.path.isdir(path):
        return
    if not options.writes or options.mode == "R":
        if options.mode in ("R", "C"):
            raise StartupError(f"cannot open the target directory {path}: no such directory")
        return
    try:
        os.makedirs(path, mode=0o755)
    except OSError as e:
        raise StartupError(f"cannot make the target directory {path}: {reason(e)}") from None
    reporter.verbose(f"made the target directory {path}")


class RestoreRun:
    """One restore run: the input, the options and the steps the modes share
    (read the directories or the tree, open the target, write, report).  The
    mode functions below and incremental, rename, space and shell use these
    public steps; nothing outside this module touches its private parts."""

    def __init__(self, options: RestoreOptions, settings: Settings, reporter: Reporter,
                 dump: DumpInput, out):
        self.options = options
        self.settings = settings
        self.reporter = reporter
        self.dump = dump
        self.out = out
        self.aborted: str | None = None
        self.whole_tree = True      # the space check measures the whole dump (mode_extract)
        self._total: int | None = None
        self._scale = 1.0
        self.direct = None          # a direct.Plan for -x with -A (imported when used)

    def dispatch(self) -> Outcome:
        self._start()
        mode = self.options.mode
        if mode == "t":
            mode_list(self)
        elif mode == "x":
            mode_extract(self)
        elif mode in ("r", "R"):
            mode_rebuild(self, resume=mode == "R")
        elif mode == "C":
            mode_compare(self)
        elif mode == "i":
            from ndump.restore.shell import interact   # cmd/readline only when asked for
            interact(self)
        self.reporter.fact("bytes", self.dump.bytes_read())
        self.reporter.fact("volumes", self.dump.reader.volume)
        return Outcome(self.reporter.problems, f"{self.aborted}; aborting" if self.aborted else None)

    # -- steps -----------------------------------------------------------------
    def _start(self) -> None:
        self.reporter.verbose("Verify tape and initialize maps")
        self.dump.check_first_volume()
        if self.options.mode == "t":
            # before the maps: a dump cut short inside them still shows its header (as stock)
            listing = Listing(self.out)
            for line in self.dump.info_lines():
                listing.line(line.encode("utf-8", "surrogateescape"))
            listing.close()
        self.dump.read_maps()
        t = self.dump.tape
        for key, value in (("level", t.level), ("date", t.date), ("base_date", t.ddate),
                           ("path", t.filesys)):
            self.reporter.fact(key, value)
        if self.dump.reader.compressed:
            self.reporter.verbose("Dump tape is compressed.")
        if self.options.mode != "t":
            for line in self.dump.info_lines():
                self.reporter.verbose(line)

    def read_dirs(self) -> tuple[dict, object]:
        """The tape's directories and the first file record after them; an end of
        the dump met on the way is recorded in self.aborted."""
        self.reporter.verbose("Extract directories from tape")
        dirs: dict = {}
        first = None
        try:
            first = read_dirs(self.dump.reader, self.reporter.file_problem, dirs)
        except RunEndingError as e:
            self.abort(e)
        return dirs, first

    def read_tree(self, *, release: bool = False):
        """Directories -> Tree; returns (tree, first file record).  ``release``: the
        directories' parsed entries are dropped once the tree holds their names."""
        dirs, first = self.read_dirs()
        self.check_root(dirs)
        self.reporter.verbose("Initialize symbol table.")
        return Tree(dirs, self.dump.reader.maxino, self.reporter.file_problem, release=release), first

    def check_root(self, dirs: dict) -> None:
        if ROOTINO not in dirs:
            if self.aborted:
                raise StartupError(f"{self.dump.name}: {self.aborted}") from None
            raise StartupError(f"{self.dump.name}: the root directory is not on the tape")

    def abort(self, why: Exception | str) -> None:
        self.aborted = str(why)

    def on_input(self, dump: DumpInput, *, whole_tree: bool = True) -> "RestoreRun":
        """A run with these options, settings and reporter over ``dump`` (the
        shell's extractions: each reads its own input and may abort alone)."""
        run = RestoreRun(self.options, self.settings, self.reporter, dump, self.out)
        run.whole_tree = whole_tree
        return run

    def starts(self, tree: Tree) -> list:
        if not self.options.paths:
            return [tree.root]
        starts = []
        for p in self.options.paths:
            e = tree.lookup(p)
            if e is None:
                self.reporter.file_problem(canon(p), "not on the tape")
            else:
                starts.append(e)
        return starts

    # -- writing -----------------------------------------------------------------
    def target_path(self) -> Path:
        if self.options.original:
            return self._original_path()
        return Path(self.options.target) if self.options.target is not None else Path.cwd()

    def _original_path(self) -> Path:
        """--original: the dumped directory from the header, made if it is missing."""
        recorded = self.dump.tape.filesys.split(" (dir ", 1)[0]
        if not recorded.startswith("/"):
            raise StartupError(f"{self.dump.name} records no directory to restore to"
                               f" ({recorded!r}); use --target")
        if len(recorded.encode("utf-8", "surrogateescape")) >= 63:
            # c_filesys holds 63 bytes: a longer path was cut, and restoring to
            # the cut name would put the tree somewhere else
            raise StartupError(f"{self.dump.name} records only the first 63 bytes of the dumped"
                               f" path ({recorded}...); use --target")
        path = Path(recorded)
        if not path.exists() and not self.options.dry_run:
            try:
                path.mkdir(mode=0o755, parents=True)
            except OSError as e:
                raise StartupError(f"cannot make {path}: {reason(e)}") from None
        return path

    def open_target(self, tree: Tree) -> Target | None:
        if self.options.dry_run:
            return None
        from ndump.restore.perms import MappedTarget, load_id_map
        path = self.target_path()
        try:
            return MappedTarget(path, tree.root, self.reporter, is_root=self.settings.is_root,
                                keep_existing=self.options.keep_existing,
                                resume=self.options.mode == "R",
                                no_inherit=self.options.no_inherit,
                                uid_map=load_id_map(self.options.owner_map, "owner"),
                                gid_map=load_id_map(self.options.group_map, "group"))
        except OSError as e:
            raise StartupError(f"cannot open the target directory {path}: {reason(e)}") from None

    def write(self, tree: Tree, sel: ExtractList, first, *, set_root: bool, symtab: bool) -> None:
        from ndump.restore import space
        from ndump.restore.extract import Extractor
        space.before_write(self, tree, sel)      # SPEC §5.2, unless -N or --force
        self.reporter.fact("files", len(sel.dirs) + len(sel.leaves))
        target = self.open_target(tree)
        try:
            ex = Extractor(self.dump.reader, tree, target, self.reporter,
                           keep_existing=self.options.keep_existing, progress=self.progress)
            self._write_steps(ex, tree, sel, first, target, set_root=set_root, symtab=symtab)
        finally:
            if target is not None:
                target.close()
        self.report_missing(sel.leaves)

    def _write_steps(self, ex: Extractor, tree, sel, first, target, *, set_root, symtab) -> None:
        from ndump.restore.symtab import COMPLETE, EXTRACTING
        try:
            self.reporter.verbose("Make directories")
            ex.make_dirs(sel.dirs)
            if symtab and target is not None:
                self._save_symtab(tree, ex, target, EXTRACTING)
            if not self.aborted:
                self.reporter.verbose("Extract new leaves.")
                self.extract_files(ex, first, sel.leaves, target)
        except RunEndingError as e:
            self.abort(e)
        finally:
            self.reporter.progress_end()
        if symtab and target is not None and not self.aborted:
            self._save_symtab(tree, ex, target, COMPLETE)
        ex.finish_dirs(set_root=set_root)

    def extract_files(self, ex: Extractor, first, leaves: dict, target: Target | None) -> None:
        # workers cannot follow a dump onto another volume (-M files, -F changes)
        if self.direct is not None:
            self._progress_start()
            from ndump.restore import direct     # the catalog's modules only for -A
            direct.run(self.direct, ex, leaves, self.reporter)
            if leaves and first is not None:
                self.reporter.verbose(f"{len(leaves)} inode(s) not placed by the catalog: reading the dump")
                ex.run(first, leaves)
            return
        from ndump.restore import parallel
        from ndump.restore.extract import Extractor
        may_split = (target is not None and first is not None and not self.options.multi_volume
                     and self.dump.changer is None)
        targets = parallel.plan(self.dump, self.dump.reader) if may_split else []
        if not targets:
            self._progress_start()
            ex.run(first, leaves)
            return

        def worker_extractor(reader, reporter):
            return Extractor(reader, ex.tree, target, reporter,
                             keep_existing=self.options.keep_existing)

        self.reporter.verbose(f"extracting with {len(targets) + 1} processes")
        aborted = parallel.run(ex, self.dump, first, leaves, targets, worker_extractor,
                               started=lambda: self._progress_start(part=targets[0] * 1024))
        if aborted:
            self.aborted = aborted

    def _save_symtab(self, tree, ex: Extractor, target: Target, state: str) -> None:
        """The name tree only when complete: -R re-reads it from the tape anyway."""
        from ndump.restore.symtab import COMPLETE, SymbolTable
        table = SymbolTable.from_tree(tree if state == COMPLETE else None, self.dump.tape,
                                      volume=self.dump.reader.volume, modes=ex.modes, state=state)
        try:
            table.save(target.root_fd)
        except OSError as e:
            self.reporter.file_problem("./restoresymtable", f"cannot write: {reason(e)}")

    def report_missing(self, leaves: dict) -> None:
        """Names whose inode the maps promise but the tape did not deliver."""
        why = "not restored" if self.aborted else "not found on tape"
        for ino, names in sorted(leaves.items()):
            for e in names:
                if not e.parent.failed:
                    self.reporter.file_problem(e.spath(), f"(inode {ino}) {why}")

    # -- progress ----------------------------------------------------------------
    def _progress_start(self, part: int | None = None) -> None:
        """``part``: with workers, the bytes this process reads; its progress,
        scaled, stands for the whole image's."""
        totals = self.dump.tape.totals
        self._total = self.dump.input_size() or (totals.blocks * 1024 if totals else None)
        self._scale = self._total / part if part and self._total else 1.0
        if self._total:
            self.reporter.progress_start(self._total)

    def progress(self) -> None:
        if self._total:
            done = min(self._total, int(self.dump.bytes_read() * self._scale))
            self.reporter.progress(done, self.dump.reader.volume)


# -- the modes (classic main.c's switch): one public function each --------------------
def mode_list(run: RestoreRun) -> None:
    """-t: the names from the raw directories, without a name tree (listing.py)."""
    run.reporter.verbose("Extract directories from tape")
    dirs: dict[int, bytes] = {}
    damaged: dict[int, list[str]] = {}
    try:
        read_dir_bytes(run.dump.reader, run.reporter.file_problem, dirs, damaged)
    except RunEndingError as e:
        run.abort(e)
    run.check_root(dirs)
    run.reporter.verbose("Initialize symbol table.")
    reader = run.dump.reader
    names = DumpNames(dirs, damaged, reader.order, reader.maxino, run.reporter.file_problem)
    starts = []
    for p in run.options.paths or ["."]:
        found = names.lookup(p)
        if found is None:
            run.reporter.file_problem(canon(p), "not on the tape")
        else:
            starts.append(found)
    listing = Listing(run.out)
    try:
        list_dump(names, starts, run.dump.in_bits, listing, verbose=run.options.verbose > 0)
    finally:
        listing.close()


def mode_extract(run: RestoreRun) -> None:
    from ndump.restore.extract import ExtractList
    tree, first = run.read_tree(release=True)
    starts = rename.starts(run, tree)
    run.whole_tree = starts == [tree.root]
    sel = ExtractList.of(tree, starts, run.dump.in_bits)
    if run.options.catalog is not None and run.options.paths and run.dump.changer is None:
        from ndump.restore import direct     # the catalog's modules only for -A
        run.direct = direct.plan(run.dump, run.options.catalog, run.reporter, run.settings)   # -A
    # '.' is the user's directory: classic restore asks before changing it
    run.write(tree, sel, first, set_root=run.options.yes, symtab=False)


def mode_rebuild(run: RestoreRun, *, resume: bool) -> None:
    from ndump.restore import incremental
    from ndump.restore.extract import ExtractList
    tape = run.dump.tape
    if tape.ddate != 0:
        incremental.rebuild(run, resume=resume)     # FORMAT §6.2
        return
    if resume:
        check_resume(run)
    tree, first = run.read_tree(release=True)
    run.reporter.verbose("Begin level 0 restore")
    sel = ExtractList.of(tree, [tree.root], run.dump.in_bits)
    run.write(tree, sel, first, set_root=True, symtab=True)


def check_resume(run: RestoreRun) -> None:
    from ndump.restore.symtab import COMPLETE, SymbolTable, SymtabError
    path = run.target_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise StartupError(f"cannot open the target directory {path}: {reason(e)}") from None
    try:
        table = SymbolTable.load(fd)
    finally:
        os.close(fd)
    if table.dumpdate != run.dump.tape.date:
        raise SymtabError("restoresymtable belongs to another dump: resume with the same dump")
    if table.state == COMPLETE:
        raise SymtabError("restoresymtable says this restore is complete: nothing to resume")
    run.reporter.info("resuming: files already restored are replaced by the dump's copies")


def mode_compare(run: RestoreRun) -> None:
    from ndump.restore.compare import compare
    from ndump.restore.extract import ExtractList
    tree, first = run.read_tree()
    sel = ExtractList.of(tree, run.starts(tree), run.dump.in_bits)
    # classic -C compares with the dumped filesystem; --target names another place
    path = run.options.target or _dumped_fs(run.dump.tape.filesys) or Path.cwd()
    run.reporter.verbose(f"comparing with {path}")
    try:
        compare(run.dump.reader, tree, sel, first, path, run.reporter,
                precision=run.options.time_precision)
    except RunEndingError as e:
        run.abort(e)
    except OSError as e:
        raise StartupError(f"cannot compare with {path}: {reason(e)}") from None
    run.report_missing(sel.leaves)
    if run.reporter.problems:
        run.reporter.info(f"Some files were modified!  {len(run.reporter.problems)} compare errors")


def _dumped_fs(filesys: str) -> Path | None:
    """The dumped directory recorded in the header, when it is one here."""
    path = filesys.split(" (dir ", 1)[0]
    if path.startswith("/") and os.path.isdir(path):
        return Path(path)
    return None
