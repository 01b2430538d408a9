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

from ndump.errors import (
    MediaError, Outcome, OutOfSpaceError, StartupError, UsageError,
)
from ndump.format import ROOTINO, DumpFormatError
from ndump.report import Reporter
from ndump.restore import direct, incremental, parallel, volchange
from ndump.restore.compare import compare
from ndump.restore.dirs import Tree, canon, read_dirs
from ndump.restore.extract import Extractor, Selection
from ndump.restore.listing import Listing, list_names
from ndump.restore.options import MODES, RestoreOptions
from ndump.restore import rename, space
from ndump.restore.perms import MappedTarget, load_id_map
from ndump.restore.symtab import COMPLETE, EXTRACTING, SymbolTable, SymtabError
from ndump.restore.target import Target, reason
from ndump.restore.volumes import DumpInput
from ndump.sessions import open_session
from ndump.settings import Settings

__all__ = ["RestoreOptions", "run_restore", "MODES"]

_ENDS_RUN = (DumpFormatError, MediaError, OutOfSpaceError)


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
        with open_session(settings, "restore", options.file or settings.tape,
                          getattr(options, "max_sessions", None), reporter):
            return _run_restore(options, settings, reporter, out)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run_restore(options: RestoreOptions, settings: Settings, reporter: Reporter, out) -> Outcome:
    if options.mode in ("r", "R") and options.paths:
        raise UsageError(f"-{options.mode} restores the whole dump and takes no file names")
    rename.extract_mode(options.mode, options.extract, settings.extract, options.paths,
                        options.renames)         # SPEC §5.1: a bad EXTRACT stops here
    spec = options.file or settings.tape
    with DumpInput(spec, reporter, settings, verify_checksums=options.verify_checksums,
                   multi=options.multi_volume, blocksize=options.blocksize,
                   skip_files=max(0, options.file_number - 1)) as dump:
        dump.changer = volchange.changer_for(dump, options, settings, reporter)
        run = _Run(options, settings, reporter, dump, out if out is not None else sys.stdout)
        return run.dispatch()


class _Run:
    """One restore run: the steps shared by the modes."""

    def __init__(self, options: RestoreOptions, settings: Settings, reporter: Reporter,
                 dump: DumpInput, out):
        self.o = options
        self.settings = settings
        self.r = reporter
        self.dump = dump
        self.out = out
        self.aborted: str | None = None
        self._total: int | None = None
        self.direct: direct.Plan | None = None

    def dispatch(self) -> Outcome:
        self._start()
        mode = self.o.mode
        if mode == "t":
            self._list()
        elif mode == "x":
            self._extract()
        elif mode in ("r", "R"):
            self._rebuild(resume=mode == "R")
        elif mode == "C":
            self._compare()
        elif mode == "i":
            from ndump.restore.shell import interact   # cmd/readline only when asked for
            interact(self)
        return Outcome(self.r.problems, self.aborted)

    # -- steps -----------------------------------------------------------------
    def _start(self) -> None:
        self.r.verbose("Verify tape and initialize maps")
        self.dump.read_maps()
        if self.dump.reader.compressed:
            self.r.verbose("Dump tape is compressed.")
        if self.o.mode == "t":
            listing = Listing(self.out)
            for line in self.dump.info_lines():
                listing.line(line.encode("utf-8", "surrogateescape"))
            listing.close()
        else:
            for line in self.dump.info_lines():
                self.r.verbose(line)

    def _read_dirs(self) -> tuple[dict, object]:
        """The tape's directories and the first file record after them; an end of
        the dump met on the way is recorded in self.aborted."""
        self.r.verbose("Extract directories from tape")
        dirs: dict = {}
        first = None
        try:
            first = read_dirs(self.dump.reader, self.r.file_problem, dirs)
        except _ENDS_RUN as e:
            self._abort(e)
        return dirs, first

    def _read_tree(self):
        """Directories -> Tree; returns (tree, first file record)."""
        dirs, first = self._read_dirs()
        if ROOTINO not in dirs:
            if self.aborted:
                raise StartupError(f"{self.dump.name}: {self.aborted}") from None
            raise StartupError(f"{self.dump.name}: the root directory is not on the tape")
        self.r.verbose("Initialize symbol table.")
        return Tree(dirs, self.dump.reader.maxino, self.r.file_problem), first

    def _abort(self, e: Exception) -> None:
        self.aborted = f"{e}; aborting"

    def _starts(self, tree: Tree) -> list:
        if not self.o.paths:
            return [tree.root]
        starts = []
        for p in self.o.paths:
            e = tree.lookup(p)
            if e is None:
                self.r.file_problem(canon(p), "not on the tape")
            else:
                starts.append(e)
        return starts

    # -- modes -------------------------------------------------------------------
    def _list(self) -> None:
        tree, _ = self._read_tree()
        listing = Listing(self.out)
        list_names(tree, self._starts(tree), self.dump.in_bits, listing, verbose=self.o.verbose > 0)
        listing.close()

    def _extract(self) -> None:
        tree, first = self._read_tree()
        sel = Selection.of(tree, rename.starts(self, tree), self.dump.in_bits)
        if self.o.catalog is not None and self.o.paths and self.dump.changer is None:
            self.direct = direct.plan(self.dump, self.o.catalog, self.r, self.settings)
        # '.' is the user's directory: classic restore asks before changing it
        self._write(tree, sel, first, set_root=self.o.yes, symtab=False)

    def _rebuild(self, *, resume: bool) -> None:
        tape = self.dump.tape
        if tape.ddate != 0:
            incremental.rebuild(self, resume=resume)     # FORMAT §6.2
            return
        if resume:
            self._check_resume()
        tree, first = self._read_tree()
        self.r.verbose("Begin level 0 restore")
        sel = Selection.of(tree, [tree.root], self.dump.in_bits)
        self._write(tree, sel, first, set_root=True, symtab=True)

    def _check_resume(self) -> None:
        path = self._target_path()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise StartupError(f"cannot open the target directory {path}: {reason(e)}") from None
        try:
            table = SymbolTable.load(fd)
        finally:
            os.close(fd)
        if table.dumpdate != self.dump.tape.date:
            raise SymtabError("restoresymtable belongs to another dump: resume with the same dump")
        if table.state == COMPLETE:
            raise SymtabError("restoresymtable says this restore is complete: nothing to resume")
        self.r.info("resuming: files already restored are replaced by the dump's copies")

    def _compare(self) -> None:
        tree, first = self._read_tree()
        sel = Selection.of(tree, self._starts(tree), self.dump.in_bits)
        # classic -C compares with the dumped filesystem; --target names another place
        path = self.o.target or _dumped_fs(self.dump.tape.filesys) or Path.cwd()
        self.r.verbose(f"comparing with {path}")
        try:
            compare(self.dump.reader, tree, sel, first, path, self.r)
        except _ENDS_RUN as e:
            self._abort(e)
        except OSError as e:
            raise StartupError(f"cannot compare with {path}: {reason(e)}") from None
        self._report_missing(sel.leaves)
        if self.r.problems:
            self.r.info(f"Some files were modified!  {len(self.r.problems)} compare errors")

    # -- writing -----------------------------------------------------------------
    def _target_path(self) -> Path:
        if self.o.original:
            return self._original_path()
        return Path(self.o.target) if self.o.target is not None else Path.cwd()

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
        if not path.exists() and not self.o.dry_run:
            try:
                path.mkdir(mode=0o755, parents=True)
            except OSError as e:
                raise StartupError(f"cannot make {path}: {reason(e)}") from None
        return path

    def _open_target(self, tree: Tree) -> Target | None:
        if self.o.dry_run:
            return None
        path = self._target_path()
        try:
            return MappedTarget(path, tree.root, self.r, is_root=self.settings.is_root,
                                keep_existing=self.o.keep_existing, no_inherit=self.o.no_inherit,
                                uid_map=load_id_map(self.o.owner_map, "owner"),
                                gid_map=load_id_map(self.o.group_map, "group"))
        except OSError as e:
            raise StartupError(f"cannot open the target directory {path}: {reason(e)}") from None

    def _write(self, tree: Tree, sel: Selection, first, *, set_root: bool, symtab: bool) -> None:
        space.before_write(self, tree, sel)      # SPEC §5.2, unless -N or --force
        target = self._open_target(tree)
        try:
            ex = Extractor(self.dump.reader, tree, target, self.r,
                           keep_existing=self.o.keep_existing, progress=self._progress)
            self._write_steps(ex, tree, sel, first, target, set_root=set_root, symtab=symtab)
        finally:
            if target is not None:
                target.close()
        self._report_missing(sel.leaves)

    def _write_steps(self, ex: Extractor, tree, sel, first, target, *, set_root, symtab) -> None:
        try:
            self.r.verbose("Make directories")
            ex.make_dirs(sel.dirs)
            if symtab and target is not None:
                self._save_symtab(tree, ex, target, EXTRACTING)
            if not self.aborted:
                self.r.verbose("Extract new leaves.")
                self._extract_files(ex, first, sel.leaves, target)
        except _ENDS_RUN as e:
            self._abort(e)
        finally:
            self.r.progress_end()
        if symtab and target is not None and not self.aborted:
            self._save_symtab(tree, ex, target, COMPLETE)
        ex.finish_dirs(set_root=set_root)

    def _extract_files(self, ex: Extractor, first, leaves: dict, target: Target | None) -> None:
        # workers cannot follow a dump onto another volume (-M files, -F changes)
        if self.direct is not None:
            self._progress_start()
            direct.run(self.direct, ex, leaves, self.r)
            if leaves and first is not None:
                self.r.verbose(f"{len(leaves)} inode(s) not placed by the catalog: reading the dump")
                ex.run(first, leaves)
            return
        may_split = (target is not None and first is not None and not self.o.multi_volume
                     and self.dump.changer is None)
        cuts = parallel.plan(self.dump, self.dump.reader) if may_split else []
        if not cuts:
            self._progress_start()
            ex.run(first, leaves)
            return

        def worker_extractor(reader, reporter):
            return Extractor(reader, ex.tree, target, reporter, keep_existing=self.o.keep_existing)

        self.r.verbose(f"extracting with {len(cuts) + 1} processes")
        aborted = parallel.run(ex, self.dump, first, leaves, cuts, worker_extractor,
                               started=lambda: self._progress_start(cuts[0] * 1024))
        if aborted:
            self.aborted = f"{aborted}; aborting"

    def _save_symtab(self, tree, ex: Extractor, target: Target, state: str) -> None:
        """The name tree only when complete: -R re-reads it from the tape anyway."""
        table = SymbolTable.from_tree(tree if state == COMPLETE else None, self.dump.tape,
                                      volume=self.dump.reader.volume, modes=ex.modes, state=state)
        try:
            table.save(target.root_fd)
        except OSError as e:
            self.r.file_problem("./restoresymtable", f"cannot write: {reason(e)}")

    def _report_missing(self, leaves: dict) -> None:
        """Names whose inode the maps promise but the tape did not deliver."""
        why = "not restored" if self.aborted else "not found on tape"
        for ino, names in sorted(leaves.items()):
            for e in names:
                if not e.parent.failed:
                    self.r.file_problem(e.spath(), f"(inode {ino}) {why}")

    # -- progress ----------------------------------------------------------------
    def _progress_start(self, total: int | None = None) -> None:
        totals = self.dump.tape.totals
        self._total = total or self.dump.input_size() or (totals.blocks * 1024 if totals else None)
        if self._total:
            self.r.progress_start(self._total)

    def _progress(self) -> None:
        if self._total:
            self.r.progress(self.dump.bytes_read(), self.dump.reader.volume)


def _dumped_fs(filesys: str) -> Path | None:
    """The dumped directory recorded in the header, when it is one here."""
    path = filesys.split(" (dir ", 1)[0]
    if path.startswith("/") and os.path.isdir(path):
        return Path(path)
    return None
