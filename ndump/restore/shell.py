"""restore -i: the interactive shell (classic: restore/interactive.c runcmdshell(),
getcmd(), printlist(), formatf(); dirs.c setdirmodes()).

The directories of the dump are read first; the shell then walks that name
tree (``ls``, ``cd``, ``pwd``), keeps an extraction list (``add``, ``delete``)
and extracts it through the same path as ``-x`` (``extract``), so files come
back exactly as ``-x`` would bring them.  Commands may be abbreviated as in the
classic shell (the first letter picks the command: ``e`` is ``extract``) and
names may be quoted, escaped with a backslash and globbed (``*``, ``?``,
``[...]``) against the names in the dump.

On a terminal, lines are edited with readline, with history, and the Tab key
completes command names and the paths inside the dump.  From a pipe or a file
the commands are read line by line and echoed after the prompt, as classic
restore does, which makes scripts and their transcripts readable.

A second ``extract`` reads the dump again from the start, which needs an input
that can be reopened (a regular file).  No command ends the shell with a
traceback: every problem is one line and the shell goes on.
"""
from __future__ import annotations

import cmd
import fnmatch
import os
import re
import shlex
import signal
import stat
import sys

from ndump.errors import Interrupted, NdumpError, OperatorAbort, UsageError
from ndump.format import (
    DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, DT_UNKNOWN, ROOTINO,
)
from ndump.restore.dirs import Entry, read_dirs
from ndump.restore.extract import Extractor, ExtractList
from ndump.restore.target import reason
from ndump.restore.volumes import DumpInput

PROMPT = "restore > "
# in the classic order: the first command whose name starts with what was typed wins
COMMANDS = ("ls", "cd", "pwd", "prompt", "add", "delete", "extract", "setmodes", "verbose",
            "what", "help", "quit", "xit")
HELP = """Available commands are:
\tls [arg] - list directory
\tcd arg - change directory
\tpwd - print current directory
\tadd [arg] - add `arg' to list of files to be extracted
\tdelete [arg] - delete `arg' from list of files to be extracted
\textract - extract requested files
\tsetmodes - set modes of requested directories
\tquit - immediately exit program
\txit - the same as quit
\twhat - list dump header information
\tverbose - toggle verbose flag (useful with ``ls'')
\tprompt - toggle the prompt display
\thelp or `?' - print this list
If no `arg' is supplied, the current directory is used
"""
_MAGIC = re.compile(rb"[*?[]")
_ESCAPE = re.compile(r"([\s\\'\"])")
# d_type -> the mark ls puts after a name (classic mkentry())
_DT_MARK = {DT_FIFO: "=", DT_SOCK: "=", DT_CHR: "#", DT_BLK: "#", DT_REG: " ", DT_LNK: "@"}
_DT_DIR_OR_UNKNOWN = (DT_UNKNOWN, DT_DIR)


class ShellError(Exception):
    """A command cannot be done: one line for the user, and the shell goes on."""


def interact(run) -> None:
    """Run the shell for one restore run (``ndump.restore.RestoreRun``)."""
    if run.options.paths:
        raise UsageError("-i takes no file names: name them with 'add' in the shell")
    tree, first = run.read_tree()
    stdin, own = _command_input(run.options.file)
    try:
        Shell(run, tree, first, stdin).loop()
    finally:
        if own:
            stdin.close()


def _command_input(spec):
    """Where commands come from: standard input, or the terminal when the dump does."""
    if spec != "-":
        return sys.stdin, False
    try:
        return open("/dev/tty", "r", encoding="utf-8", errors="surrogateescape"), True
    except OSError as e:
        raise UsageError("the dump is read from standard input, so the commands of -i must"
                         f" come from the terminal, and /dev/tty cannot be opened: {reason(e)}")


# -- the extraction side -------------------------------------------------------------
class ShellState:
    """The dump, its name tree, the extraction list and the extraction itself.

    The first extraction reads on from the run's input, where the directories
    end; each later one reads the dump again through an input the shell opens
    (and closes) itself.  Each extraction is a RestoreRun of its own over the
    input it reads, so an abort ends that extraction, not the shell."""

    def __init__(self, run, tree, first):
        self.run = run
        self.tree = tree
        self.in_bits = run.dump.in_bits
        self.marked: set[Entry] = set()
        self.info = run.dump.info_lines()
        self._first = first
        self._fresh = True              # the run's input is positioned at ``first``
        self._own_input: DumpInput | None = None         # the dump read again (_rewind)
        self.aborted: str | None = run.aborted          # the directories may be incomplete
        if run.aborted:
            run.reporter.warning(f"reading the directories stopped early: {run.aborted}")

    def listable(self, e: Entry) -> bool:
        return e.is_dir or self.in_bits(e.ino)

    def close(self) -> None:
        if self._own_input is not None:
            self._own_input.close()
            self._own_input = None
        if self.aborted and not self.run.aborted:
            self.run.abort(self.aborted)

    def _input(self) -> DumpInput:
        return self._own_input if self._own_input is not None else self.run.dump

    # -- the list ---------------------------------------------------------------------
    def add(self, start: Entry) -> None:
        """``start`` with all below it, and the directories on its way (not '.')."""
        p = start.parent
        while p is not None and p.parent is not None:
            self.marked.add(p)
            p = p.parent
        for e in self.tree.walk(start):
            if self.listable(e):
                self.marked.add(e)

    def delete(self, start: Entry) -> None:
        for e in self.tree.walk(start):
            self.marked.discard(e)

    def selection(self) -> ExtractList:
        """The marked names, with the directories on their way (as -x makes them)."""
        sel = ExtractList()
        seen: set[int] = set()
        for e in self.tree.walk():
            if e not in self.marked:
                continue
            chain = []
            while e is not None and id(e) not in seen:
                chain.append(e)
                e = e.parent
            for a in reversed(chain):
                seen.add(id(a))
                if a.is_dir:
                    sel.dirs.append(a)
                else:
                    sel.leaves.setdefault(a.ino, []).append(a)
        sel.dirs.sort(key=lambda d: d.depth)
        return sel

    # -- extract, setmodes --------------------------------------------------------------
    def extract(self, sel: ExtractList, set_root: bool) -> None:
        first = self._rewind()
        # the space check measures just the selection
        writer = self.run.on_input(self._input(), whole_tree=False)
        for d in sel.dirs:
            d.failed = False
        extracted = [e for names in sel.leaves.values() for e in names] + sel.dirs
        try:
            writer.write(self.tree, sel, first, set_root=set_root, symtab=False)
        finally:
            if writer.aborted:
                self.aborted = self.aborted or writer.aborted
                writer.reporter.error(writer.aborted)
        left = {id(e) for names in sel.leaves.values() for e in names}
        self.marked.difference_update(e for e in extracted if id(e) not in left and not e.failed)

    def setmodes(self, dirs: list[Entry], set_root: bool) -> int:
        """Owner, mode and times of the directories that exist; returns how many."""
        run = self.run
        target = run.open_target(self.tree)
        if target is None:
            return 0
        try:
            ex = Extractor(self._input().reader, self.tree, target, run.reporter)
            ex.made_dirs = [d for d in dirs if _exists(target, d)]
            ex.finish_dirs(set_root=set_root)
        finally:
            target.close()
        self.marked.difference_update(ex.made_dirs)
        return len(ex.made_dirs)

    def _rewind(self):
        """The first file record, reading the dump again after an extraction."""
        if self._fresh:
            self._fresh = False
            return self._first
        run = self.run
        options = run.options
        if not _rereadable(run.dump):
            raise ShellError("the dump cannot be read a second time (it is not a regular"
                             " file): start restore -i again to extract more")
        dump = DumpInput(run.dump.spec, run.reporter, run.settings,
                         multi=options.multi_volume, verify_checksums=options.verify_checksums,
                         blocksize=options.blocksize)
        try:
            dump.read_maps()
            if dump.tape.date != run.dump.tape.date:
                raise ShellError(f"{dump.name} is no longer the dump that was read")
            first = read_dirs(dump.reader, lambda path, why: None, _Discard())
        except BaseException:
            dump.close()
            raise
        if self._own_input is not None:
            self._own_input.close()
        self._own_input = dump
        return first


class _Discard(dict):
    """A dict that keeps nothing: the directories read a second time."""

    def __setitem__(self, key, value) -> None:
        pass


def _rereadable(dump: DumpInput) -> bool:
    fd = getattr(dump.medium, "fd", None)
    if dump.spec == "-" or fd is None:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _exists(target, d: Entry) -> bool:
    try:
        target.fds.get(d)
    except OSError:
        return False
    return True


# -- names ---------------------------------------------------------------------------
def show(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


def safe(name: bytes) -> str:
    """Classic ls: control and non-ASCII bytes as '?' (without verbose)."""
    return "".join(chr(b) if 0x20 <= b < 0x7f else "?" for b in name)


def canon(cwd: Entry, raw: str) -> bytes:
    """'./a/b' for a name typed in ``cwd``; '..' never goes above the root."""
    parts = [] if raw.startswith("/") else _parts(cwd)
    for p in raw.encode("utf-8", "surrogateescape").split(b"/"):
        if p in (b"", b"."):
            continue
        if p == b"..":
            if parts:
                parts.pop()
        else:
            parts.append(p)
    return b"/".join([b"."] + parts)


def _parts(e: Entry) -> list[bytes]:
    return e.path().split(b"/")[1:]


class Names:
    """Typed names -> entries of the tree, relative to the current directory."""

    def __init__(self, session: ShellState):
        self.state = session
        self.tree = session.tree
        self.cwd = session.tree.root

    def expand(self, raw: str) -> list[tuple[bytes, Entry | None]]:
        """Each (path, entry) a name stands for; entry None: not on the tape."""
        path = canon(self.cwd, raw)
        if _MAGIC.search(path):
            found = self._glob(path.split(b"/")[1:])
            if found:
                return [(e.path(), e) for e in found]
        e = self.tree.lookup(path)
        if e is not None and not self.state.listable(e):
            e = None
        return [(path, e)]

    def _glob(self, parts: list[bytes]) -> list[Entry]:
        found = [self.tree.root]
        for part in parts:
            magic = _MAGIC.search(part) is not None
            found = [c for e in found for c in sorted(e.children or (), key=lambda c: c.name)
                     if self.state.listable(c) and _matches(c.name, part, magic)]
        return found

    def complete(self, text: str) -> list[str]:
        """Readline candidates for a path: directories end in '/', files in ' ';
        blanks, quotes and backslashes in names are escaped with a backslash."""
        head, slash, tail = text.rpartition("/")
        where = self.tree.lookup(canon(self.cwd, head + slash or "."))
        if where is None or where.children is None:
            return []
        prefix = tail.encode("utf-8", "surrogateescape")
        found = [c for c in where.children if c.name.startswith(prefix) and self.state.listable(c)]
        return sorted(head + slash + _ESCAPE.sub(r"\\\1", c.name.decode("utf-8", "surrogateescape"))
                      + ("/" if c.is_dir else " ") for c in found)


def _matches(name: bytes, part: bytes, magic: bool) -> bool:
    if not magic:
        return name == part
    if name.startswith(b".") and not part.startswith(b"."):
        return False
    return fnmatch.fnmatchcase(name, part)


# -- ls --------------------------------------------------------------------------------
def listing(session: ShellState, path: bytes, e: Entry, cwd: Entry, verbose: bool) -> list[str]:
    """The lines of classic ls for one name (printlist())."""
    if e.children is None:
        name = e.path()
        base = cwd.path() + b"/"
        name = name[len(base):] if name.startswith(base) else name
        items = [_item(session, e, name, _dtypes(session, e.parent).get(e.name, 0), verbose)]
        return formatf(items, verbose)
    dtypes = _dtypes(session, e)
    named = [(c.name, _item(session, c, c.name, dtypes.get(c.name, 0), verbose))
             for c in e.children if session.listable(c)]
    if verbose:
        named += [(b".", (e.ino, " ", ".", "/")), (b"..", ((e.parent or e).ino, " ", "..", "/"))]
    head = [show(path) + ":"]
    if not named:
        return head + [""]
    # classic fcmp(): strcmp of the names as shown ('?' for odd bytes without verbose)
    named.sort(key=lambda pair: pair[0] if verbose else safe(pair[0]))
    return head + formatf([item for _, item in named], verbose) + [""]


def _dtypes(session: ShellState, d: Entry) -> dict[bytes, int]:
    rec = session.tree.dirs.get(d.ino)
    return {de.name: de.dtype for de in rec.entries} if rec is not None else {}


def _item(session: ShellState, e: Entry, name: bytes, dtype: int, verbose: bool):
    prefix = "*" if e in session.marked else " "
    if dtype in _DT_DIR_OR_UNKNOWN:
        postfix = "/" if e.is_dir else " "
    else:
        postfix = _DT_MARK.get(dtype, " ")
    return e.ino, prefix, show(name) if verbose else safe(name), postfix


def formatf(items: list[tuple[int, str, str, str]], verbose: bool) -> list[str]:
    """Columns as classic formatf(): 81 // width columns, filled down first."""
    haveprefix = any(i[1] != " " for i in items)
    havepostfix = any(i[3] != " " for i in items)
    width = max(len(i[2]) for i in items) + haveprefix + havepostfix + 1
    precision = len(str(max([ROOTINO] + [i[0] for i in items]))) if verbose else 0
    if verbose:
        width += precision + 1
    columns = max(1, 81 // width)
    n = len(items)
    lines = (n + columns - 1) // columns
    out = []
    for row in range(lines):
        cells = []
        for k in range(row, n, lines):
            ino, pre, name, post = items[k]
            cell = (f"{ino:>{precision}} " if verbose else "") + (pre if haveprefix else "") \
                + name + (post if havepostfix else "")
            cells.append(cell if k + lines >= n else cell.ljust(width))
        out.append("".join(cells))
    return out


# -- questions ------------------------------------------------------------------------------
class NoOperator(OperatorAbort):
    """A question with nobody to answer it: ends the shell and the run (status 3)."""


def _ask_terminal(question: str) -> bool:
    """A [yn] question on /dev/tty, for commands read from a pipe or a file."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise NoOperator(f"\"{question}?\" needs an answer, but the commands come from a pipe or"
                         " file and there is no terminal to ask: give -y to answer yes") from None
    with open(fd, "r", encoding="utf-8", errors="replace") as tty:   # a tty cannot seek: no r+
        while True:
            os.write(fd, f"{question}? [yn] ".encode())
            line = tty.readline()
            if not line:
                return False
            answer = line.strip()[:1]
            if answer in ("y", "n"):
                return answer == "y"


# -- the shell ------------------------------------------------------------------------------
class Shell(cmd.Cmd):
    """The commands (cmd.Cmd dispatch); ``loop`` reads the lines."""

    def __init__(self, run, tree, first, stdin):
        super().__init__(stdin=stdin, stdout=sys.stdout)
        self.state = ShellState(run, tree, first)
        self.names = Names(self.state)
        self.reporter = run.reporter
        self.base_verbosity = run.reporter.verbosity
        self.verbose = run.options.verbose > 0
        self.yes = run.options.yes
        self.dry_run = run.options.dry_run
        self.prompt = PROMPT
        self.tty = stdin.isatty()
        self.use_rawinput = self.tty and stdin is sys.stdin
        self.readline = _setup_readline(self) if self.use_rawinput else None

    # -- reading lines --------------------------------------------------------------------
    def loop(self) -> None:
        try:
            while True:
                line = self._read()
                if line is None:
                    self.say("")
                    break
                if self.onecmd(line):
                    break
        finally:
            self.state.close()
            self.reporter.verbosity = self.base_verbosity

    def _read(self) -> str | None:
        """One command line; None at the end of the input (Ctrl-D)."""
        try:
            if self.use_rawinput:
                return input(self.prompt)
            self.stdout.write(self.prompt)
            self.stdout.flush()
            line = self.stdin.readline()
        except Interrupted as e:
            if e.signo != signal.SIGINT:
                raise
            self.say("")             # Ctrl-C drops the line, as in a shell
            return ""
        except EOFError:
            return None
        if not line:
            return None
        if not self.tty and self.prompt:
            self.say(line.rstrip("\n"))      # the transcript, as classic restore
        return line.rstrip("\n")

    def ask(self, question: str) -> bool:
        """A [yn] question (classic reply()); the end of the input answers no.

        Commands from a pipe or file: the answer comes from the terminal, never
        from the next command line; with no terminal the run aborts."""
        if not self.tty:
            return _ask_terminal(question)
        while True:
            self.stdout.write(f"{question}? [yn] ")
            self.stdout.flush()
            line = self.stdin.readline()
            if not line:
                self.say("")
                return False
            if not self.tty:
                self.say(line.rstrip("\n"))
            answer = line.strip()[:1]
            if answer in ("y", "n"):
                return answer == "y"

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def complain(self, text: str) -> None:
        self.stdout.flush()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    # -- dispatch ---------------------------------------------------------------------------
    def parseline(self, line: str):
        word, arg, line = super().parseline(line)
        if word == "?":
            return "help", arg, line
        if word:
            for name in COMMANDS:
                if name.startswith(word):
                    return name, arg, line
        return word, arg, line

    def onecmd(self, line: str) -> bool:
        try:
            return bool(super().onecmd(line))
        except NoOperator:
            raise
        except Interrupted as e:
            if e.signo != signal.SIGINT:
                raise
            self.complain("interrupted")
        except (ShellError, NdumpError) as e:
            self.complain(str(e))
        except OSError as e:
            self.complain((f"{e.filename}: " if e.filename else "") + reason(e))
        except Exception as e:       # a bug: still one line, and the shell goes on
            self.complain(f"internal error: {type(e).__name__}: {e}")
        return False

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        self.complain(f"{line.split()[0]}: unknown command; type ? for help")
        return False

    def args(self, arg: str) -> list[tuple[bytes, Entry | None]]:
        """The names a command line gives (the current directory when none)."""
        try:
            words = shlex.split(arg)
        except ValueError:
            raise ShellError("missing closing quote") from None
        if not words:
            return [(self.names.cwd.path(), self.names.cwd)]
        return [found for w in words for found in self.names.expand(w)]

    def found(self, arg: str):
        """The entries named, complaining of those not on the tape."""
        for path, e in self.args(arg):
            if e is None:
                self.complain(f"{show(path)} is not on the tape")
            else:
                yield path, e

    # -- completion -----------------------------------------------------------------------
    def completenames(self, text, *ignored):
        return [name + " " for name in COMMANDS if name.startswith(text)]

    def completedefault(self, text, line, begidx, endidx):
        return self.names.complete(text)

    # -- the commands ------------------------------------------------------------------------
    def do_ls(self, arg):
        for path, e in self.found(arg):
            for text in listing(self.state, path, e, self.names.cwd, self.verbose):
                self.say(text)

    def do_cd(self, arg):
        for path, e in self.found(arg):
            if e.children is None:
                self.complain(f"{show(path)}: not a directory")
            else:
                self.names.cwd = e

    def do_pwd(self, arg):
        self.say("/" + show(self.names.cwd.path()[2:]))

    def do_add(self, arg):
        for path, e in self.found(arg):
            self.state.add(e)

    def do_delete(self, arg):
        for path, e in self.args(arg):
            if e is None or e not in self.state.marked:
                self.complain(f"{show(path)}: not on extraction list")
            else:
                self.state.delete(e)

    def do_extract(self, arg):
        sel = self.state.selection()
        if not sel.dirs:
            raise ShellError("nothing to extract: add names to the extraction list first")
        self.state.extract(sel, self._set_root())

    def do_setmodes(self, arg):
        dirs = [d for d in self.state.selection().dirs if d in self.state.marked]
        if not dirs:
            raise ShellError("setmodes: no directories on the extraction list")
        set_root = dirs[0].parent is None and self._set_root()
        done = self.state.setmodes(dirs, set_root)
        self.reporter.verbose(f"set the modes of {done} directories")

    def _set_root(self) -> bool:
        if self.dry_run:
            return False
        return self.yes or self.ask("set owner/mode for '.'")

    def do_verbose(self, arg):
        self.verbose = not self.verbose
        self.reporter.verbosity = max(self.base_verbosity, 1) if self.verbose else 0
        self.say(f"verbose mode {'on' if self.verbose else 'off'}")

    def do_prompt(self, arg):
        self.prompt = "" if self.prompt else PROMPT

    def do_what(self, arg):
        for text in self.state.info:
            self.say(text)

    def do_help(self, arg):
        self.stdout.write(HELP)
        self.stdout.flush()

    def do_quit(self, arg):
        return True

    do_xit = do_quit


def _setup_readline(shell: Shell):
    """Line editing, history and Tab completion of dump paths (GNU readline or libedit)."""
    try:
        import readline
    except ImportError:
        return None
    readline.set_completer(shell.complete)
    readline.set_completer_delims(" \t\n\"'")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    return readline
