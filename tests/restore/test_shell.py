"""restore -i: the interactive shell, driven through a real pseudo-terminal (readline,
Tab completion, Ctrl-C, Ctrl-D) and through a pipe (scripts), and compared with -x
and with the stock restore's ls."""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from craft import Craft, MODE_TO_DT
from trees import Fifo, Hardlink, Symlink, assert_trees_equal, build_tree

REPO = Path(__file__).resolve().parents[2]
PROMPT = rb"restore > "
_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]")


@pytest.fixture
def image(tmp_path):
    """. = {dir1/{c, dir2/{deep.txt}}, text.txt, one, link@, fifo=, 'spaced name'}"""
    img = Craft()
    img.dir(10, {"deep.txt": 11}, parent=3)
    img.dir(3, {"c": 9, "dir2": 10})
    img.dir(2, {"dir1": 3, "text.txt": 4, "one": 5, "link": 6, "fifo": 8, "spaced name": 7},
            types={b"link": MODE_TO_DT[stat.S_IFLNK], b"fifo": MODE_TO_DT[stat.S_IFIFO]})
    img.file(4, b"hello text\n").file(5, b"one\n").symlink(6, "text.txt").file(7, b"spaced\n")
    img.node(8, stat.S_IFIFO).file(9, b"c data\n").file(11, b"deep\n")
    path = tmp_path / "img.dump"
    path.write_bytes(img.build())
    return path


@pytest.fixture
def out(tmp_path):
    path = tmp_path / "out"
    path.mkdir()
    return path


def _env() -> dict:
    env = dict(os.environ, TERM="xterm", LC_ALL="C.UTF-8")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


class Pty:
    """`ndump ARGS` on a new pseudo-terminal: expect() output, send() keys (a tiny pexpect)."""

    def __init__(self, *args, cwd: Path, stdin: Path | None = None):
        argv = [sys.executable, "-m", "ndump", *map(str, args)]
        env = _env()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:                       # the child: exec at once, whatever happens
            try:
                os.chdir(cwd)
                if stdin is not None:
                    os.dup2(os.open(stdin, os.O_RDONLY), 0)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.seen = b""         # everything read, escapes removed, \r\n -> \n
        self._pos = 0
        self.status: int | None = None

    def _fill(self, deadline: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:          # EIO: the child closed the terminal
            data = b""
        if not data:
            raise EOFError
        self.seen += _ESCAPES.sub(b"", data).replace(b"\r\n", b"\n").replace(b"\r", b"")
        return True

    def expect(self, pattern: bytes, timeout: float = 60) -> str:
        """The output up to and including ``pattern`` (a regex), from the last match on."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.compile(pattern).search(self.seen, self._pos)
            if m:
                text = self.seen[self._pos:m.end()]
                self._pos = m.end()
                return text.decode("utf-8", "replace")
            try:
                if not self._fill(deadline) and time.monotonic() >= deadline:
                    raise AssertionError(f"no {pattern!r} within {timeout}s; output:\n"
                                         + self.seen[self._pos:].decode("utf-8", "replace"))
            except EOFError:
                raise AssertionError(f"the program ended before {pattern!r}; output:\n"
                                     + self.seen[self._pos:].decode("utf-8", "replace")) from None

    def send(self, keys: str | bytes) -> None:
        os.write(self.fd, keys.encode() if isinstance(keys, str) else keys)

    def command(self, line: str) -> str:
        """Type a line at the prompt; returns what it printed up to the next prompt."""
        self.send(line + "\n")
        return self.expect(PROMPT)

    def interrupt(self) -> str:
        """Ctrl-C until a new prompt shows.  A SIGINT that lands just between two reads of
        readline is only seen with the next key (CPython's readline loop): send another."""
        for _ in range(5):
            self.send(b"\x03")
            try:
                return self.expect(PROMPT, timeout=3)
            except AssertionError:
                continue
        raise AssertionError("Ctrl-C does not bring a new prompt")

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._fill(deadline)
        except EOFError:
            pass
        _, status = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def spawn():
    started = []

    def start(*args, **kwargs) -> Pty:
        p = Pty(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def _script(run_ndump, image, out, lines, *options, status=0):
    return run_ndump("restore", "-i", "-f", image, "--target", out, *options,
                     input="".join(line + "\n" for line in lines), status=status)


# -- through a pseudo-terminal ------------------------------------------------------------

def test_pty_ls_cd_add_extract_quit(spawn, image, out):
    sh = spawn("restore", "-i", "-f", image, "--target", out, cwd=out)
    sh.expect(PROMPT)
    listing = sh.command("ls")
    assert ".:\n" in listing
    assert re.search(r"dir1/ +fifo= +link@ +one +spaced name +text.txt", listing), listing
    sh.command("cd dir1")
    assert "/dir1\n" in sh.command("pwd")
    assert re.search(r"\./dir1:\nc +dir2/\n", sh.command("ls"))
    sh.command("add c")
    sh.command("cd ..")
    sh.command("add text.txt 'spaced name'")
    assert re.search(r"\*text\.txt", sh.command("ls"))
    assert re.search(r"\*c +dir2/", sh.command("ls dir1"))
    sh.send("extract\n")
    sh.expect(rb"set owner/mode for '\.'\? \[yn\] ")
    sh.send("n\n")
    sh.expect(PROMPT)
    assert re.search(r"\nc +dir2/\n", sh.command("ls dir1")), "the list is empty after extract"
    sh.send("quit\n")
    assert sh.wait() == 0, sh.seen.decode()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        ["dir1", "dir1/c", "spaced name", "text.txt"]
    assert (out / "dir1/c").read_bytes() == b"c data\n"
    assert (out / "text.txt").read_bytes() == b"hello text\n"
    assert (out / "spaced name").read_bytes() == b"spaced\n"


def test_pty_tab_completes_paths_in_the_dump(spawn, image, out):
    (out / "dirlocal").mkdir()             # a local name that must not be offered
    sh = spawn("restore", "-i", "-f", image, cwd=out)
    sh.expect(PROMPT)
    sh.send("cd di\t")
    sh.expect(rb"cd dir1/")
    sh.send("\n")
    sh.expect(PROMPT)
    assert "/dir1\n" in sh.command("pwd")
    sh.send("ls d\t")                      # unique in dir1: dir2/
    sh.expect(rb"ls dir2/")
    sh.send("de")                          # dir2/deep.txt, a file: completed with a space
    sh.expect(rb"de")
    sh.send("\t")
    sh.expect(rb"ep\.txt ")            # what the Tab key added to the line
    assert "deep.txt\n" in sh.command("")
    sh.send("a\t")                         # command names complete too
    sh.expect(rb"dd ")
    sh.send("/te")
    sh.expect(rb"/te")
    sh.send("\t")
    sh.expect(rb"xt\.txt ")
    sh.command("")
    sh.send("add /sp\t")                   # a blank in a name is escaped
    sh.expect(rb"aced\\ name ")
    sh.command("")
    listing = sh.command("ls /")
    assert "*spaced name" in listing and "*text.txt" in listing, listing
    sh.send("\x04")                        # Ctrl-D
    assert sh.wait() == 0
    assert os.listdir(out) == ["dirlocal"]


def test_pty_ctrl_c_drops_the_line_and_history_recalls(spawn, image, out):
    sh = spawn("restore", "-i", "-f", image, cwd=out)
    sh.expect(PROMPT)
    sh.command("cd dir1")
    sh.send("this is not a command")
    sh.expect(rb"not a command")           # readline has the line
    sh.interrupt()                         # Ctrl-C: the line is dropped, the shell stays
    sh.send("\x1b[A\x1b[A\n")             # up twice: "cd dir1" again, from the history
    sh.expect(PROMPT)
    assert "/dir1\n" in sh.command("pwd")
    assert "unknown command" not in sh.seen.decode()
    sh.send("xit\n")
    assert sh.wait() == 0


def test_pty_dump_on_stdin_takes_commands_from_the_terminal(spawn, image, out):
    sh = spawn("restore", "-i", "-y", "-f", "-", "--target", out, cwd=out, stdin=image)
    sh.expect(PROMPT)
    sh.command("add dir1/dir2")
    sh.command("extract")
    sh.command("add one")
    assert "the dump cannot be read a second time" in sh.command("extract")
    sh.send("quit\n")
    assert sh.wait() == 0, sh.seen.decode()
    assert (out / "dir1/dir2/deep.txt").read_bytes() == b"deep\n"
    assert not (out / "dir1/c").exists()


# -- through a pipe --------------------------------------------------------------------------

def test_script_from_a_pipe(run_ndump, image, out):
    proc = _script(run_ndump, image, out, ["add dir1", "delete dir1/dir2", "extract", "quit"], "-y")
    assert proc.stdout.splitlines() == [
        "restore > add dir1", "restore > delete dir1/dir2", "restore > extract", "restore > quit"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["dir1", "dir1/c"]
    assert (out / "dir1/c").read_bytes() == b"c data\n"


def test_a_question_never_eats_a_command_from_the_pipe(run_ndump, image, out):
    """Issue 12: without -y and without a terminal, the question ends the run (status 3)
    before anything is extracted; the next line is not taken as the answer."""
    proc = _script(run_ndump, image, out, ["add dir1", "extract", "y", "add one", "extract", "quit"],
                   status=3)
    assert proc.stderr == ("RESTORE: \"set owner/mode for '.'?\" needs an answer, but the commands"
                           " come from a pipe or file and there is no terminal to ask: give -y to"
                           " answer yes\n")
    assert "restore > y" not in proc.stdout and "add one" not in proc.stdout
    assert list(out.iterdir()) == []


def test_piped_commands_get_their_answer_from_the_terminal(spawn, image, out, tmp_path):
    script = tmp_path / "commands"
    script.write_text("add one\nextract\nadd text.txt\nextract\nquit\n")
    sh = spawn("restore", "-i", "-f", image, "--target", out, cwd=out, stdin=script)
    sh.expect(rb"set owner/mode for '\.'\? \[yn\] ")
    sh.send("n\n")
    sh.expect(rb"set owner/mode for '\.'\? \[yn\] ")
    sh.send("n\n")
    assert sh.wait() == 0, sh.seen.decode()
    assert sorted(os.listdir(out)) == ["one", "text.txt"]


def test_extract_is_what_x_restores(tmp_path, run_ndump, out):
    src = build_tree(tmp_path / "src", {
        "a/one": b"1" * 5000, "a/link": Symlink(target="one"), "a/hard": Hardlink("a/one"),
        "a/sub/two": b"two", "b/fifo": Fifo(), "b/three": b"3", "top": b"top"},
        times_from=1_600_000_000_000_000_000)
    image = tmp_path / "l0.dump"
    run_ndump("dump", "-0", "-f", image, src, status=0)
    by_x = tmp_path / "by_x"
    by_x.mkdir()
    run_ndump("restore", "-x", "-y", "-f", image, "--target", by_x, "a", "b/three", status=0)
    _script(run_ndump, image, out, ["add a b/three", "extract", "quit"], "-y")
    assert_trees_equal(by_x, out, ns=True)
    assert (out / "a/hard").stat().st_ino == (out / "a/one").stat().st_ino


def test_errors_are_one_line_and_the_shell_goes_on(run_ndump, image, out):
    proc = _script(run_ndump, image, out, [
        "frobnicate", "cd nowhere", "cd text.txt", "add nothing", "delete one", "ls 'open",
        "extract", "setmodes", "cd ../../..", "pwd", "cd /dir1/../../dir1/./dir2", "pwd",
        "ls ../../../..", "quit"])
    assert proc.stderr.splitlines() == [
        "frobnicate: unknown command; type ? for help",
        "./nowhere is not on the tape",
        "./text.txt: not a directory",
        "./nothing is not on the tape",
        "./one: not on extraction list",
        "missing closing quote",
        "nothing to extract: add names to the extraction list first",
        "setmodes: no directories on the extraction list"]
    pwds = [line for line in proc.stdout.splitlines() if line.startswith("/")]
    assert pwds == ["/", "/dir1/dir2"]
    assert ".:\n" in proc.stdout           # ls above the root lists the root
    assert os.listdir(out) == []


def test_abbreviations_globs_verbose_what_help(run_ndump, image, out):
    proc = _script(run_ndump, image, out, [
        "w", "?", "v", "l dir1", "v", "a dir1/d*", "a t?xt.*", "l", "l dir1", "e", "x"], "-y")
    text = proc.stdout
    assert "Label: crafted" in text and "Level 0 dump of /crafted on testhost:/dev/null" in text
    assert "\tsetmodes - set modes of requested directories" in text
    assert "verbose mode on" in text and "verbose mode off" in text
    assert re.search(r"\n 3 \./ +2 \.\./ +9 c +10 dir2/\n", text), text
    assert "*dir1/" in text                # on the way to dir1/dir2, as in the stock restore
    assert "*text.txt" in text
    assert re.search(r"\n c +\*dir2/\n", text), text
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        ["dir1", "dir1/dir2", "dir1/dir2/deep.txt", "text.txt"]


def test_second_extract_reads_the_dump_again(run_ndump, image, out):
    _script(run_ndump, image, out, ["add one", "extract", "add dir1/c", "extract", "quit"], "-y")
    assert (out / "one").read_bytes() == b"one\n"
    assert (out / "dir1/c").read_bytes() == b"c data\n"


def test_an_extraction_cut_short_ends_only_itself(run_ndump, image, out, tmp_path):
    short = tmp_path / "short.dump"
    data = image.read_bytes()
    short.write_bytes(data[:len(data) - 12288])     # the dump ends before deep.txt's record
    proc = _script(run_ndump, short, out, ["add dir1/dir2/deep.txt", "extract", "add one",
                                           "extract", "quit"], "-y", status=3)
    assert (out / "one").read_bytes() == b"one\n"         # read again, through a new input
    assert not (out / "dir1/dir2/deep.txt").exists()
    assert proc.stderr.count("without an end marker\n") == 2, proc.stderr
    assert proc.stderr.endswith("without an end marker; aborting\n"), proc.stderr


def test_dump_on_stdin_needs_a_terminal_for_the_commands(run_ndump, image, out):
    proc = run_ndump("restore", "-i", "-f", "-", "--target", out, input=image.read_bytes(),
                     status=1)
    assert "/dev/tty" in proc.stderr


def test_setmodes_sets_directories_without_files(run_ndump, image, out):
    (out / "dir1").mkdir(mode=0o700)
    proc = _script(run_ndump, image, out, ["add dir1", "setmodes", "quit"])
    assert "[yn]" not in proc.stdout            # '.' is not on the list: not asked
    st = (out / "dir1").stat()
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert st.st_mtime_ns == 1_600_000_000_123_456_789
    assert os.listdir(out / "dir1") == []


def test_end_of_input_quits_and_dry_run_writes_nothing(run_ndump, image, out):
    proc = _script(run_ndump, image, out, ["add .", "extract"], "-N")
    assert proc.stdout.endswith("restore > extract\nrestore > \n")
    assert os.listdir(out) == []


@pytest.mark.compat
def test_ls_is_the_stock_restore_s(golden_dir, run_ndump, tmp_path):
    """Stock restore prints its listings on stderr, ndump on stdout: otherwise the same."""
    image = golden_dir / "l0-basic.dump"
    commands = ("ls\nls names\ncd dir1\nls\nls c\nadd c\nls /dir1\nadd /text.txt\nls /\n"
                "verbose\nls /\nls /names\nls /many\n")
    stock = subprocess.run(["/usr/sbin/restore", "-i", "-f", str(image)], input=commands.encode(),
                           capture_output=True, cwd=tmp_path, timeout=60,
                           env={**os.environ, "TMPDIR": str(tmp_path)})   # its rstdir<seconds> files
    ours = run_ndump("restore", "-i", "-f", image, input=commands, status=0)
    expected = [line for line in stock.stderr.decode("utf-8", "replace").splitlines()
                if not line.startswith("verbose mode")]
    got = [line for line in ours.stdout.splitlines()
           if not line.startswith(("restore > ", "verbose mode"))]
    assert got == expected
