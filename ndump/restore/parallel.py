"""Extract the file part of a dump image in several processes (ndump only; no
classic counterpart).

Reading a dump costs Python time per header, writing it costs system time per
file; one process cannot overlap them.  For an uncompressed image in a
regular file, the file part is cut into byte ranges at inode headers and each
range is restored by its own process (the first by this one).  Cuts are found
by walking the header chain from the first file's header, seeking over the
data each header announces, so a block inside a file's data that looks like a
header (a user can write one into a file of theirs) is never taken for one.
Each inode lies in exactly one range, so hard links, attributes and flags stay
within one process.  Workers die with this process (PR_SET_PDEATHSIG) and
always exit, whatever happens to their report.

Workers print their per-file problems as they happen; their warnings,
problems, the inodes they restored and an abort reason come back as one JSON
document through a pipe.
"""
from __future__ import annotations

import array
import base64
import ctypes
import json
import os
import signal
import stat
import sys
import traceback

from ndump.errors import FileProblem, RunEndingError
from ndump.format import TP_BSIZE, TS_END, FormatReader
from ndump.format.header import chain_link
from ndump.report import Reporter

MIN_RANGE = 24 << 20          # bytes of file data that make another process worth it
MAX_WORKERS = 4
PARENT_SHARE = 0.85           # of a worker's share of the file part, for this process
WALK_WINDOW = 64 << 10        # bytes read at a time while walking the headers: a big
                              # file's data between two of its headers is seeked over, not read


def plan(dump, reader: FormatReader) -> list[int]:
    """Blocks near which further workers start ([]: one process).  Each worker
    finds its own start, the first inode header at or after its block, by walking
    the header chain (find_cuts()) while this process already restores files:
    the walk reads every header before the cut (a second for a million files)."""
    fd = getattr(dump.medium, "fd", None)
    if (fd is None or reader.compressed or reader.volume != 1 or reader.order != "<"
            or reader.layout != "linux"):       # workers find headers by the Linux magic
        return []
    try:
        st = os.fstat(fd)
    except OSError:
        return []
    if not stat.S_ISREG(st.st_mode):
        return []
    first = reader.blocks_read - 1                  # the first file's header
    span = st.st_size - (first + 1) * TP_BSIZE
    workers = min(_cpus(), MAX_WORKERS, 1 + span // MIN_RANGE)
    if workers < 2:
        return []
    # this process also reads the directories before and sets their modes after:
    # give it a smaller share, so that all finish together
    weights = [PARENT_SHARE] + [1.0] * (workers - 1)
    return [first + 1 + int(span * sum(weights[:k]) / sum(weights)) // TP_BSIZE
            for k in range(1, workers)]


def find_cuts(fd: int, reader: FormatReader, targets: list[int]) -> list[int]:
    """The blocks where the workers of ``targets`` (plan()) start, as they find them."""
    first = reader.blocks_read - 1
    return _walk_cuts(fd, first, list(targets), reader.tape.date)


def _cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _walk_cuts(fd: int, block: int, targets: list[int], date: int) -> list[int]:
    """The first inode header at or after each target block, found by walking the
    header chain from ``block`` (a header) and seeking over the data each header
    announces: a block inside a file's data is never taken for a header, whatever
    it holds.  Where the chain breaks (damage), no further cut is made."""
    cuts: list[int] = []
    window, at = b"", 0                 # a buffer of the image, from block ``at``
    while targets:
        off = (block - at) * TP_BSIZE
        if not 0 <= off <= len(window) - TP_BSIZE:
            window, at, off = os.pread(fd, WALK_WINDOW, block * TP_BSIZE), block, 0
            if len(window) < TP_BSIZE:
                break
        link = chain_link(window[off:off + TP_BSIZE])
        if link is None:
            break
        htype, hdate, volume, tapea, is_inode, present = link
        if hdate != date or htype == TS_END:
            break
        if block >= targets[0] and is_inode and volume == 1 and tapea == block:
            cuts.append(block)
            while targets and targets[0] <= block:
                targets.pop(0)
        block += 1 + present
    return cuts


class _WorkerReporter(Reporter):
    """A worker's reporter: problems printed at once, warnings kept for the parent."""

    def __init__(self, parent: Reporter):
        super().__init__(parent.prefix, verbosity=parent.verbosity, quiet=parent.quiet,
                         stream=parent.stream)
        self.warnings: list[tuple[str, str | None]] = []

    def warning(self, text: str, once: str | None = None) -> None:
        self.warnings.append((text, once))

    def progress_start(self, total: int, unit: str = "B") -> None:
        pass

    def progress(self, done: int, volume: int = 1) -> None:
        pass


class _RangeRead:
    """read(n) for a worker: the volume header block, then the dump from a block on."""

    def __init__(self, fd: int, tape_block: bytes, block: int):
        self.fd = fd
        self.pending = tape_block
        self.pos = block * TP_BSIZE

    def __call__(self, n: int) -> bytes:
        if self.pending:
            out, self.pending = self.pending, b""
            return out
        data = os.pread(self.fd, n, self.pos)
        self.pos += len(data)
        return data


def run(ex, dump, first, leaves: dict, targets: list[int], make_extractor,
        started=lambda: None) -> str | None:
    """Restore the file part with len(targets) + 1 processes; returns an abort reason.

    ``ex`` is this process's Extractor (it does the first range);
    ``make_extractor(reader, reporter)`` builds a worker's.  ``leaves`` and
    ``ex.modes`` are updated with what the workers restored.  ``started`` is
    called once the workers run (a progress bar's thread must not exist when
    forking).  Worker k starts at the first inode header at or after
    targets[k] and stops before worker k+1's; it tells this process where it
    starts (a cut pipe), which this process needs once it reaches targets[0].
    """
    fd = dump.medium.fd
    tape_block = os.pread(fd, TP_BSIZE, 0)
    start = dump.reader.blocks_read - 1         # the header of ``first``
    children = []
    try:
        try:
            for i, target in enumerate(targets):
                following = targets[i + 1] if i + 1 < len(targets) else None
                children.append(_spawn(fd, tape_block, start, target, following, dump, leaves,
                                       make_extractor, ex))
        except OSError:                     # no process (or pipe) to be had: do it all here
            for child in children:
                _kill(*child)
            children = []
        started()
        aborted = None
        try:
            rec = ex.run(first, leaves, stop_block=targets[0] if children else None)
            if rec is not None:
                # at or past the first worker's target: its start is where this range ends
                cut = _read_cut(children[0][2])
                ex.run(rec, leaves, stop_block=cut)
        except RunEndingError as e:
            aborted = str(e)
        for child in children:
            aborted = _collect(child, ex, leaves) or aborted
        children = []
        return aborted
    finally:
        for child in children:              # interrupted: stop the workers
            _kill(*child)


def _read_cut(cfd: int) -> int | None:
    """A worker's start block from its cut pipe; None when it found none (a broken
    header chain) or died before saying (then it restored nothing)."""
    raw = b""
    while len(raw) < 8:
        try:
            more = os.read(cfd, 8 - len(raw))
        except InterruptedError:
            continue
        if not more:
            return None
        raw += more
    cut = int.from_bytes(raw, "little", signed=True)
    return cut if cut >= 0 else None


def _spawn(fd, tape_block, start, target, following, dump, leaves, make_extractor, ex):
    rfd, wfd = os.pipe()
    try:
        cfd, cwfd = os.pipe()
    except OSError:
        os.close(rfd)
        os.close(wfd)
        raise
    sys.stdout.flush()                  # else a worker could write the parent's buffers again
    sys.stderr.flush()
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        for end in (rfd, wfd, cfd, cwfd):
            os.close(end)
        raise
    if pid:
        os.close(wfd)
        os.close(cwfd)
        return pid, rfd, cfd
    # the worker: whatever happens below, it ends here, with os._exit
    status = 1
    try:
        os.close(rfd)
        os.close(cfd)
        _die_with_parent(parent)
        result = {"aborted": None, "modes": "", "problems": [], "warnings": []}
        try:
            for signo in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signo, signal.SIG_DFL)    # the parent handles interrupts
            date = dump.reader.tape.date
            found = _walk_cuts(fd, start, [target], date)
            block = found[0] if found else None
            try:        # only the first worker's start is read; the others' may go unread
                os.write(cwfd, (-1 if block is None else block).to_bytes(8, "little", signed=True))
            except BrokenPipeError:
                pass
            os.close(cwfd)
            if block is not None:
                stop = None
                if following is not None:
                    after = _walk_cuts(fd, block, [following], date)
                    stop = after[0] if after else None
                if stop is None or stop > block:
                    result.update(_work(fd, tape_block, block, stop, dump, leaves, make_extractor, ex))
        except Exception as e:  # a bug: say so and let the parent abort
            traceback.print_exc()
            result["aborted"] = f"internal error in a restore worker: {type(e).__name__}: {e}"
        view = memoryview(json.dumps(result).encode())
        while view:
            view = view[os.write(wfd, view):]
        status = 0
    except BaseException:
        pass                            # no parent to report to (EPIPE), or a signal
    finally:
        os._exit(status)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGKILL this worker when its parent dies; exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def _work(fd, tape_block, block, stop, dump, leaves, make_extractor, parent_ex) -> dict:
    reporter = _WorkerReporter(parent_ex.reporter)
    reader = FormatReader(_RangeRead(fd, tape_block, block), verify_crc=parent_ex.reader.verify_crc,
                          on_problem=lambda text: reporter.warning(text))
    wex = make_extractor(reader, reporter)
    if wex.target is not None:
        wex.target.forked()
    aborted = None
    try:
        wex.run(reader.next_record(), leaves, stop_block=stop, base=block - 1)
    except RunEndingError as e:
        aborted = str(e)
    finally:
        if wex.target is not None:
            wex.target.drop_private()
    return {"aborted": aborted, "modes": _pack_modes(wex.modes),
            "problems": [[p.path, p.reason] for p in reporter.problems],
            "warnings": reporter.warnings}


def _collect(child: tuple[int, int, int], ex, leaves: dict) -> str | None:
    pid, rfd, cfd = child
    chunks = []
    with os.fdopen(rfd, "rb") as f:
        chunks.append(f.read())
    os.waitpid(pid, 0)
    os.close(cfd)                       # after the worker is gone: it never writes to a closed pipe
    try:
        result = json.loads(b"".join(chunks))
    except ValueError:
        return "a restore worker died without a report"
    for ino, mode in _unpack_modes(result["modes"]):
        names = leaves.pop(ino, None)
        ex.note_mode(names[0].ino if names else ino, mode)
    ex.reporter.problems.extend(FileProblem(p, r) for p, r in result["problems"])
    for text, once in result["warnings"]:
        ex.reporter.warning(text, once=once or f"worker:{text}")
    return result["aborted"]


def _pack_modes(modes: dict[int, int]) -> str:
    """Inode -> mode as base64 of 32-bit pairs: about 11 bytes a file in the report,
    where JSON pairs cost a parent ~150 bytes each to decode (a million files)."""
    flat = array.array("I")
    for ino, mode in modes.items():
        flat.append(ino)
        flat.append(mode)
    return base64.b64encode(flat.tobytes()).decode("ascii")


def _unpack_modes(packed: str):
    flat = array.array("I")
    flat.frombytes(base64.b64decode(packed))
    return zip(flat[0::2], flat[1::2])


def _kill(pid: int, rfd: int, cfd: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except OSError:
        pass
    for end in (rfd, cfd):
        try:
            os.close(end)
        except OSError:
            pass

