"""restore -r and -R of an incremental dump (classic: restore/restore.c
removeoldleaves(), nodeupdates(), findunreflinks(), removeoldnodes(),
createleaves(), createlinks(); FORMAT §6.2).

The tree in the target was restored from the dump its ``restoresymtable``
names; this dump's base date must be that dump's date.  The names of the
new tree come from the directories on this tape, and, for directories not
on it (unchanged since the base), from the table.  Every name is matched by
(parent inode, name) -> inode:

0. the table is marked "extracting" with no names: a run stopped during steps
   1-3 cannot be resumed (its old names no longer hold) and says so;
1. clear:  every old name that the new tree does not hold for the same inode
   and kind is removed (a deleted inode, another name of an inode that keeps
   one) or moved aside to ``RSTTMP<ino>`` at the top of the target (a
   directory, or the only remaining name of a file);
2. place:  top down, every new name that is not kept is made: a directory
   moved back from its temporary name or created, an old file renamed from
   its temporary name or linked to a kept name (new files come in step 4);
3. remove: the directories left under temporary names (deleted, or whose type
   changed) are removed once empty;
4. the table is checkpointed ("extracting"), then every inode in TS_BITS is
   extracted in tape order (existing names replaced), directory modes and
   times are set last, and the table is saved as complete.

-R after an interruption in step 4 re-reads the tape and repeats step 4.
Everything goes through directory descriptors and never follows a symlink.
"""
from __future__ import annotations

import errno
import os
import re
import time

from ndump.errors import RunEndingError
from ndump.format import ROOTINO, DirEntry
from ndump.restore.dirs import DirRecord, Entry, Tree
from ndump.restore import nodeupdates, space
from ndump.restore.extract import Extractor, ExtractList
from ndump.restore.symtab import COMPLETE, EXTRACTING, NoSymtabError, SymbolTable, SymtabError
from ndump.restore.target import check_space, reason, unlink_quietly

TMP_PREFIX = b"RSTTMP"
_REPLACE_TEMP = re.compile(rb"\.ndump-[0-9]+-[0-9a-f]{8}\Z")


def _when(date: int) -> str:
    return time.ctime(date) if date else "the epoch"


def check_order(table: SymbolTable, tape) -> None:
    """The classic "Incremental tape too low/too high" check, naming the dump to use."""
    if table.dumpdate == tape.ddate:
        return
    this = (f"this is a level {tape.level} dump based on the dump of {_when(tape.ddate)};"
            f" the tree here was last restored from the dump of {_when(table.dumpdate)}")
    if table.dumpdate < tape.ddate:
        raise SymtabError(f"incremental tape too high: {this}: restore the dump made on"
                          f" {_when(tape.ddate)} next")
    raise SymtabError(f"incremental tape too low: {this}, which is newer: restore next a dump"
                      f" based on the dump of {_when(table.dumpdate)}")


def load_table(path) -> SymbolTable:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SymtabError(f"cannot open the target directory {path}: {reason(e)}") from None
    try:
        return SymbolTable.load(fd)
    finally:
        os.close(fd)


def _table_records(table: SymbolTable, skip=lambda ino: False,
                   alive=lambda ino: True) -> dict[int, DirRecord]:
    """The table's directories as DirRecords (no inode: only names are known),
    less the names of inodes ``alive`` says the dump does not hold."""
    return {ino: DirRecord(ino, None, [DirEntry(child, 0, name) for name, child in names
                                       if alive(child)])
            for ino, names in table.dirs.items() if not skip(ino)}


def _quiet(path: str, why: str) -> None:
    pass


class IncrementalRestore:
    """One incremental -r (or -R) on top of the restore engine's run ``run``."""

    def __init__(self, run, table: SymbolTable, *, resume: bool):
        self.run = run
        self.dump = run.dump
        self.reporter = run.reporter
        self.table = table
        self.resume = resume

    # -- the whole thing ---------------------------------------------------------
    def rebuild(self) -> None:
        tape_dirs, first = self._read_dirs()
        self.reporter.verbose("Begin incremental restore")
        new = self._new_tree(tape_dirs)
        self._check_space(new, tape_dirs)
        target = self.run.open_target(new)
        try:
            if target is not None and not self.resume:
                self._save_marker(target)
                self._update_names(target, new)
            elif target is not None:
                self._make_missing_dirs(target, new, tape_dirs)
                _sweep_temps(target, new)
            self._extract(new, tape_dirs, first, target)
        finally:
            if target is not None:
                target.close()

    def _check_space(self, new: Tree, tape_dirs: dict) -> None:
        """SPEC §5.2 for what this tape brings: its files and new directories."""
        sel = ExtractList()
        for e in new.walk():
            if e.is_dir:
                if e.ino in tape_dirs:
                    sel.dirs.append(e)
            elif self.dump.in_bits(e.ino):
                sel.leaves.setdefault(e.ino, []).append(e)
        space.before_write(self.run, _TapeDirs(tape_dirs), sel)

    def _read_dirs(self):
        dirs, first = self.run.read_dirs()
        if self.run.aborted:        # names cannot be matched against half a tree
            raise SymtabError(f"{self.dump.name}: {self.run.aborted} while reading the"
                              " directories; nothing was changed")
        if ROOTINO not in dirs:
            raise SymtabError(f"{self.dump.name}: the root directory is not on the tape")
        return dirs, first

    def _new_tree(self, tape_dirs: dict) -> Tree:
        """Tape directories, plus the table's for directories not on the tape."""
        in_bits = self.dump.in_bits
        if self.resume:     # the table already is the new tree
            old = _table_records(self.table, lambda ino: ino in tape_dirs)
        else:
            # a name in a directory that is not on the tape (unchanged) whose inode
            # is not in use on it is gone: a nodump file (dump -h) leaves its
            # directory's times alone (classic removeoldleaves() drops it too)
            old = _table_records(self.table, lambda ino: ino in tape_dirs or in_bits(ino),
                                 self.dump.in_clri)
        merged = {**old, **tape_dirs}
        self.reporter.verbose("Initialize symbol table.")
        return Tree(merged, max(self.dump.reader.maxino, self.table.maxino), self.reporter.file_problem)

    # -- steps 1 to 3: names -------------------------------------------------------
    def _update_names(self, target, new: Tree) -> None:
        old = Tree(_table_records(self.table), self.table.maxino or self.dump.reader.maxino, _quiet)
        names = _NameUpdate(target, old, new, self.dump, self.reporter)
        self.reporter.verbose("Mark entries to be removed.")
        names.clear()
        self.reporter.verbose("Calculate node updates.")
        names.place()
        self.reporter.verbose("Remove old nodes (directories).")
        names.remove()
        names.restore_times()

    def _make_missing_dirs(self, target, new: Tree, tape_dirs: dict) -> None:
        """-R: directories made before the checkpoint exist; make any that do not."""
        for e in new.walk():
            if e.parent is None or not e.is_dir:
                continue
            if e.parent.failed:
                e.failed = True
                continue
            target.fds.next_op()
            try:
                target.make_dir(e)
            except OSError as err:
                e.failed = True
                check_space(err, e.spath())
                self.reporter.file_problem(e.spath(), f"cannot create directory: {reason(err)}")

    # -- step 4: files -------------------------------------------------------------
    def _extract(self, new: Tree, tape_dirs: dict, first, target) -> None:
        run = self.run
        tape_tree = _TapeDirs(tape_dirs)
        ex = Extractor(self.dump.reader, tape_tree, target, self.reporter,
                       keep_existing=run.options.keep_existing, progress=run.progress)
        ex.made_dirs = [e for e in new.walk() if e.is_dir and e.ino in tape_dirs and not e.failed]
        leaves: dict[int, list[Entry]] = {}
        for e in new.walk():
            if not e.is_dir and self.dump.in_bits(e.ino) and not e.parent.failed:
                leaves.setdefault(e.ino, []).append(e)
        try:
            if target is not None:
                self._save(new, tape_dirs, ex, target, EXTRACTING)
            self.reporter.verbose("Extract new leaves.")
            run.extract_files(ex, first, leaves, target)
        except RunEndingError as e:
            run.abort(e)
        finally:
            self.reporter.progress_end()
        self.reporter.verbose("Add links.")
        if target is not None and not run.aborted:
            self._save(new, tape_dirs, ex, target, COMPLETE)
        ex.finish_dirs(set_root=True)
        run.report_missing(leaves)

    def _save_marker(self, target) -> None:
        """Names are about to change: the table says so (an empty name tree), so that
        neither -r nor -R later works from names that no longer hold."""
        tape = self.dump.tape
        table = SymbolTable(dumpdate=tape.date, dumptime=tape.ddate, level=tape.level, volume=1,
                            maxino=self.table.maxino, ntrec=tape.ntrec, state=EXTRACTING)
        try:
            table.save(target.root_fd)
        except OSError as e:
            raise SymtabError(f"cannot write restoresymtable: {reason(e)}") from None

    def _save(self, new: Tree, tape_dirs: dict, ex: Extractor, target, state: str) -> None:
        tape = self.dump.tape
        table = SymbolTable(dumpdate=tape.date, dumptime=tape.ddate, level=tape.level,
                            volume=self.dump.reader.volume,
                            maxino=max(self.dump.reader.maxino, self.table.maxino),
                            ntrec=tape.ntrec, state=state)
        for e in new.walk():
            if e.children is not None and not e.failed:
                table.dirs[e.ino] = [(c.name, c.ino) for c in e.children if not c.failed]
        alive = set(new.by_ino)
        table.modes = {ino: m for ino, m in self.table.modes.items() if ino in alive}
        table.modes.update((ino, rec.inode.mode) for ino, rec in tape_dirs.items())
        table.modes.update(ex.modes)
        try:
            table.save(target.root_fd)
        except OSError as e:
            self.reporter.file_problem("./restoresymtable", f"cannot write: {reason(e)}")


class _TapeDirs:
    """What the Extractor needs of a tree: the tape's directory records."""

    def __init__(self, dirs: dict):
        self.dirs = dirs


class _NameUpdate:
    """Steps 1-3: make the names on disk those of the new tree (FORMAT §6.2), as
    nodeupdates.plan() decided.  A step that fails changes what later names of
    the same inode can use: those fall back to what is really on disk."""

    def __init__(self, target, old: Tree, new: Tree, dump, reporter):
        self.target = target
        self.fds = target.fds
        self.old = old
        self.new = new
        self.dump = dump
        self.reporter = reporter
        self.plan = nodeupdates.plan(old, new, dump.in_clri, dump.in_bits)
        for c in old.root.children:          # one root: DirFds knows only the new one
            c.parent = new.root
        self.new_at = {(e.parent.ino, e.name): e for e in new.walk() if e.parent is not None}
        self.kept = self.plan.kept           # id() of kept entries, old and new
        self.leaf_at: dict[int, Entry] = {}  # inode -> a name holding a file to link from
        for e in old.walk():
            if id(e) in self.kept and not e.is_dir:
                self.leaf_at.setdefault(e.ino, e)       # old entries stay valid paths
        self.parked: dict[int, Entry] = {}   # inode -> its entry under a temporary name
        self.park_failed: set[int] = set()   # inodes whose planned parking did not happen
        self.doomed: list[Entry] = []        # directories to remove
        # directories not on this tape that lose a name (a nodump file left out):
        # inode -> their (atime, mtime) before, put back after step 3
        self.times: dict[int, tuple[int, int]] = {}

    # -- step 1 ----------------------------------------------------------------------
    def clear(self) -> None:
        for e, action in self.plan.old:
            if e.parent.failed:
                continue
            self.fds.next_op()
            try:
                self._keep_times(e.parent)
                self._clear_one(e, action)
            except OSError as err:
                check_space(err, e.spath())
                e.failed = True
                self.reporter.file_problem(e.spath(), f"cannot remove or move the old name: {reason(err)}")

    def _keep_times(self, d: Entry) -> None:
        """Note the times of a directory that is not on this tape (nothing else sets
        them) before the first name in it is removed."""
        if d.ino in self.times or self.dump.in_bits(d.ino):
            return
        st = os.fstat(self.fds.get(d))
        self.times[d.ino] = (st.st_atime_ns, st.st_mtime_ns)

    def restore_times(self) -> None:
        for ino, times in self.times.items():
            names = self.new.by_ino.get(ino)
            if not names or not names[0].is_dir or names[0].failed:
                continue
            self.fds.next_op()
            try:
                self.target.put_back_times(self.fds.get(names[0]), times)
            except OSError as err:
                self.reporter.file_problem(names[0].spath(), f"cannot set times: {reason(err)}")

    def _clear_one(self, e: Entry, action: str) -> None:
        """An old name someone removed since is no error: there is nothing to clear."""
        if e.is_dir:
            if self._park(e) and id(e) in self.plan.doomed:
                self.doomed.append(e)
            return
        if action == nodeupdates.PARK or e.ino in self.park_failed:
            try:
                parked = self._park(e)
            except OSError:
                self.park_failed.add(e.ino)      # another name of it may keep the data
                raise
            if parked:
                self.leaf_at[e.ino] = e
                self.park_failed.discard(e.ino)
            else:
                self.park_failed.add(e.ino)
            return
        self.reporter.verbose(f"{e.spath()}: remove old name", 2)
        try:
            os.unlink(e.name, dir_fd=self.fds.get(e.parent))
        except FileNotFoundError:
            pass

    def _park(self, e: Entry) -> bool:
        """Move an old name to RSTTMP<ino> at the top of the target (classic
        mktempname()); False when it is in neither place (moved on already)."""
        temp = self._temp_name(e.ino)
        self.reporter.verbose(f"{e.spath()}: rename to ./{temp.decode()}", 2)
        try:
            os.rename(e.name, temp, src_dir_fd=self.fds.get(e.parent), dst_dir_fd=self.fds.root_fd)
        except FileNotFoundError:
            if not _exists(self.fds.root_fd, temp):
                return False
        e.parent, e.name, e.depth = self.new.root, temp, 1
        self.parked[e.ino] = e
        return True

    def _temp_name(self, ino: int) -> bytes:
        """RSTTMP<ino> (a name left by an earlier run is ours to reuse)."""
        name = TMP_PREFIX + b"%d" % ino
        while (self.new.root.ino, name) in self.new_at:
            name += b"_"
        return name

    # -- step 2 ----------------------------------------------------------------------
    def place(self) -> None:
        for n in self.new.walk():
            if n.parent is None or id(n) in self.kept:
                continue
            if n.parent.failed:
                n.failed = True
                continue
            self.fds.next_op()
            try:
                self._place_one(n, *self.plan.new[id(n)])
            except OSError as err:
                check_space(err, n.spath())
                n.failed = True
                self.reporter.file_problem(n.spath(), f"cannot create: {reason(err)}")

    def _place_one(self, n: Entry, action: str, planned: Entry | None) -> None:
        if action == nodeupdates.TAPE:
            return                      # a new file: extracted from the tape later
        dfd = self.fds.get(n.parent)
        if n.is_dir:
            moved = self.parked.get(n.ino)
            if action == nodeupdates.UNPARK and moved is planned:
                os.rename(moved.name, n.name, src_dir_fd=self.fds.root_fd, dst_dir_fd=dfd)
                del self.parked[n.ino]
                moved.parent, moved.name = n.parent, n.name     # old paths below it stay right
            else:
                self.reporter.verbose(f"{n.spath()}: make node", 2)
                self.target.make_dir(n)
            return
        # UNPARK or LINK: from the name that really holds the data now (the planned
        # one, unless a step before failed)
        src = self.leaf_at.get(n.ino)
        if src is None and self.dump.in_bits(n.ino):
            return
        if src is None:
            self.reporter.file_problem(n.spath(), f"(inode {n.ino}) is neither on this tape nor in"
                                       " the restored tree; not restored")
            return
        if self.parked.get(n.ino) is src:
            os.rename(src.name, n.name, src_dir_fd=self.fds.root_fd, dst_dir_fd=dfd)
            del self.parked[n.ino]
            self.leaf_at[n.ino] = n
            return
        src_fd = self.fds.get(src.parent)
        try:
            os.link(src.name, n.name, src_dir_fd=src_fd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            if _same_file(src_fd, src.name, dfd, n.name):
                return
            temp = self.target.temp_name(dfd, n.ino)
            os.link(src.name, temp, src_dir_fd=src_fd, dst_dir_fd=dfd, follow_symlinks=False)
            self.target.replace(dfd, temp, n.name)

    # -- step 3 ----------------------------------------------------------------------
    def remove(self) -> None:
        root_fd = self.fds.root_fd
        for ino, e in list(self.parked.items()):
            if e.is_dir:
                continue
            unlink_quietly(root_fd, e.name)      # a file whose every new name failed
        for e in self.doomed:
            self.fds.forget(e)
            try:
                os.rmdir(e.name, dir_fd=root_fd)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                self.reporter.file_problem(f"./{e.name.decode('utf-8', 'surrogateescape')}",
                                    "a removed directory still holds files that are not from"
                                    " the dump; left in place")


def _sweep_temps(target, tree: Tree) -> None:
    """-R: remove the temporary names of replacements a killed run left behind
    (Target.temp_name(): .ndump-INO-XXXXXXXX)."""
    for e in tree.walk():
        if not e.is_dir or e.failed:
            continue
        target.fds.next_op()
        try:
            dfd = target.fds.get(e)
            names = {c.name for c in e.children}
            for name in map(os.fsencode, os.listdir(dfd)):
                if _REPLACE_TEMP.match(name) and name not in names:
                    unlink_quietly(dfd, name)
        except OSError:
            continue


def _same_file(afd: int, a: bytes, bfd: int, b: bytes) -> bool:
    sa = os.stat(a, dir_fd=afd, follow_symlinks=False)
    sb = os.stat(b, dir_fd=bfd, follow_symlinks=False)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _exists(dfd: int, name: bytes) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def rebuild(run, *, resume: bool) -> None:
    """restore -r/-R of a dump with a base date (c_ddate > 0)."""
    path = run.target_path()
    tape = run.dump.tape
    try:
        table = load_table(path)
    except NoSymtabError:
        raise SymtabError(f"{run.dump.name} is a level {tape.level} (incremental) dump and {path}"
                          " has no restoresymtable: restore the level 0 dump there first"
                          " (restore -r), then each incremental in turn") from None
    this = _is_this_dump(table, tape)
    if resume and table.state == EXTRACTING and this:
        if not table.dirs:
            raise SymtabError("this restore was interrupted while it renamed and removed names,"
                              " which cannot be resumed: restore the chain again, from the"
                              " level 0 dump, into an empty directory")
        run.reporter.info("resuming: files already restored are replaced by the dump's copies")
        IncrementalRestore(run, table, resume=True).rebuild()
        return
    if this and table.state == COMPLETE:
        raise SymtabError(f"the dump of {_when(tape.date)} is already restored here"
                          + (": nothing to resume" if resume else
                             ": restore next a dump based on it"))
    if table.state != COMPLETE:
        raise SymtabError(f"the restore of the dump of {_when(table.dumpdate)} was interrupted:"
                          " finish it with restore -R and that dump first")
    check_order(table, tape)
    if resume:
        run.reporter.info("restoresymtable shows this dump was not started yet: restoring it"
                          " from the beginning")
    IncrementalRestore(run, table, resume=False).rebuild()


def _is_this_dump(table: SymbolTable, tape) -> bool:
    """The table was written for this very dump (dumps of one second share c_date)."""
    return (table.dumpdate, table.dumptime, table.level) == (tape.date, tape.ddate, tape.level)
