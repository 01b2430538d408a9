"""The dumpdates file (classic: dump/itime.c; FORMAT.md §9).

One line per (tree, level): ``NAME LEVEL Www Mmm dd hh:mm:ss yyyy +hhmm``, the
date in local time with its UTC offset, as Linux dump writes it, so stock
``dump -W -D FILE`` reads ndump's file.  Updates take an exclusive lock on
``FILE.lock``, write a new file, fsync it and rename it over the old one, so
concurrent cron jobs never lose a line and a crash never leaves half a file.
"""
from __future__ import annotations

import calendar
import fcntl
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ndump.errors import StartupError, UsageError

_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}
_LINE = re.compile(r"^(\S+)\s+(\d+)\s+(\w{3} (\w{3}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4}))"
                   r"(?:\s+([+-])(\d\d)(\d\d))?\s*$")


@dataclass(frozen=True, slots=True)
class DumpDate:
    name: str
    level: int
    date: int              # Unix seconds


def format_date(date: int) -> str:
    """asctime() of local time plus the local UTC offset (FORMAT §9.2)."""
    lt = time.localtime(date)
    off = lt.tm_gmtoff // 60
    sign = "+" if off >= 0 else "-"
    return f"{time.asctime(lt)} {sign}{abs(off) // 60:02d}{abs(off) % 60:02d}"


def format_line(d: DumpDate) -> str:
    return f"{d.name} {d.level} {format_date(d.date)}\n"


def parse_line(line: str) -> DumpDate | None:
    m = _LINE.match(line.rstrip("\n"))
    if not m or m.group(4) not in _MONTHS:
        return None
    month, day = _MONTHS[m.group(4)], int(m.group(5))
    hh, mi, ss, year = int(m.group(6)), int(m.group(7)), int(m.group(8)), int(m.group(9))
    fields = (year, month, day, hh, mi, ss)
    if m.group(10):
        offset = (int(m.group(11)) * 60 + int(m.group(12))) * 60
        offset = offset if m.group(10) == "+" else -offset
        date = calendar.timegm(fields + (0, 0, 0)) - offset
    else:
        date = int(time.mktime(fields + (0, 0, -1)))
    return DumpDate(m.group(1), int(m.group(2)), date)


def parse_date(text: str) -> int:
    """A -T date: ctime(3) form (optionally with +hhmm), or ISO 8601."""
    parsed = parse_line(f"x 0 {text.strip()}")
    if parsed is not None:
        return parsed.date
    try:
        from datetime import datetime
        dt = datetime.fromisoformat(text.strip())
        return int(dt.timestamp())
    except ValueError:
        raise UsageError(f"bad date {text!r}: use the ctime form, e.g. "
                         "'Wed Nov 25 14:18:00 2026', or ISO 8601") from None


class DumpDates:
    def __init__(self, path: Path):
        self.path = Path(path)

    @contextmanager
    def _locked(self, exclusive: bool):
        lock = str(self.path) + ".lock"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if not exclusive and e.errno in (13, 30):    # EACCES, EROFS: read unlocked
                yield
                return
            raise StartupError(f"cannot lock {lock}: {e.strerror.lower()}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def check_writable(self) -> None:
        """Raise StartupError now if ``record`` could not update the file later:
        it replaces the file (write a new one, rename) under FILE.lock."""
        directory = self.path.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent    # record() creates the missing directories
        lock = Path(str(self.path) + ".lock")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StartupError(f"-u cannot update {self.path}: {directory} is not writable")
        if lock.exists() and not os.access(lock, os.R_OK | os.W_OK):
            raise StartupError(f"-u cannot update {self.path}: {lock} is not writable")
        if self.path.exists() and not os.access(self.path, os.R_OK):
            raise StartupError(f"-u cannot update {self.path}: it is not readable")

    def _read_unlocked(self) -> list[DumpDate]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StartupError(f"cannot read {self.path}: {e.strerror.lower()}") from None
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            parsed = parse_line(line)
            if parsed is None:
                raise StartupError(f"unknown format in {self.path}: {line.strip()[:60]!r}")
            out.append(parsed)
        return out

    def read(self) -> list[DumpDate]:
        with self._locked(exclusive=False):
            return self._read_unlocked()

    def base_for(self, name: str, level: int) -> DumpDate | None:
        """The latest dump of ``name`` at a level below ``level`` (FORMAT §9.3)."""
        best = None
        for d in self.read():
            if d.name == name and d.level < level and (
                    best is None or (d.date, d.level) > (best.date, best.level)):
                best = d                # same second: the higher level is the later dump
        return best

    def record(self, name: str, level: int, date: int) -> None:
        """Replace or add the (name, level) line, atomically and under the lock."""
        if " " in name:
            raise StartupError(f"cannot record {name!r} in dumpdates: names may not contain spaces")
        with self._locked(exclusive=True):
            entries = [d for d in self._read_unlocked() if not (d.name == name and d.level == level)]
            entries.append(DumpDate(name, level, date))
            entries.sort(key=lambda d: (d.name, d.level))
            self._write(entries)

    def _write(self, entries: list[DumpDate]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.writelines(format_line(d) for d in entries)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise StartupError(f"cannot update {self.path}: {e.strerror.lower()}") from None


def history_lines(entries: list[DumpDate], now: int, *, only_needed: bool) -> list[str]:
    """-W / -w in stock dump's layout: a header, then the last dump of each tree;
    '>' (-W only) marks those not dumped for a day, the only ones -w lists."""
    latest: dict[str, DumpDate] = {}
    for d in entries:
        cur = latest.get(d.name)
        if cur is None or d.date > cur.date or (d.date == cur.date and d.level < cur.level):
            latest[d.name] = d
    lines = ["Dump these file systems:" if only_needed
             else "Last dump(s) done (Dump '>' file systems):"]
    for name in sorted(latest):
        d = latest[name]
        due = now - d.date > 24 * 3600
        if only_needed and not due:
            continue
        mark = ">" if due and not only_needed else " "
        # stock: "%c %8s\t(%6s) Last dump: Level %c, Date %s" (the mount point is fstab's)
        lines.append(f"{mark} {name:>8}\t({'':>6}) Last dump: Level {d.level},"
                     f" Date {time.ctime(d.date)}")
    return lines
