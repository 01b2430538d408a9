"""The read side of the medium (classic: restore/tape.c setup(), getvol(),
printdumpinfo()): open the input, check it is a dump, read the maps.

This is the only restore module that handles both the medium and the format.
"""
from __future__ import annotations

import os
import stat
import time

from ndump.errors import NotADumpImageError, StartupError
from ndump.format import DumpFormatError, FormatReader, NotADumpError
from ndump.media import open_input, volume_name
from ndump.report import Reporter
from ndump.settings import Settings


class DumpInput:
    """An open dump: the medium, its FormatReader and the dump's identity.

    ``name`` is what messages call the input (the -f argument).
    """

    def __init__(self, spec: str, reporter: Reporter, settings: Settings, *,
                 verify_checksums: bool = True, multi: bool = False, blocksize: int | None = None,
                 skip_files: int = 0):
        self.spec = spec
        self.multi = multi
        self.settings = settings
        self.blocksize = blocksize
        self.name = "standard input" if spec == "-" else volume_name(spec, 1, multi)
        self.reporter = reporter
        self.medium = open_input(self.name if multi else spec, self.settings, blocksize=blocksize,
                                 skip_files=skip_files)
        self._later_media: list = []
        # without -M: asks for the next volume (restore/volchange.py); None: there is none
        self.changer = None
        try:
            self.reader = FormatReader(self.medium.read, next_volume=self._next_volume,
                                       on_problem=self._problem, verify_crc=verify_checksums)
        except NotADumpError as e:
            self.close()
            raise NotADumpImageError(f"{self.name} is not a dump image{_detail(e)}") from None
        except BaseException:
            self.close()
            raise
        self.tape = self.reader.tape

    # -- life cycle ----------------------------------------------------------
    def close(self) -> None:
        for medium in [self.medium] + self._later_media:
            try:
                medium.close()
            except OSError:
                pass

    def __enter__(self) -> "DumpInput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------
    def check_first_volume(self) -> None:
        """Classic "Tape is not volume 1 of the dump", before anything is listed."""
        if self.tape.volume != 1:
            raise StartupError(f"{self.name} is volume {self.tape.volume} of the dump, not volume 1:"
                               " start with volume 1")

    def read_maps(self) -> None:
        """TS_CLRI and TS_BITS; a dump without them cannot be restored at all."""
        self.check_first_volume()
        try:
            self.reader.read_maps()
        except NotADumpError as e:
            raise NotADumpImageError(f"{self.name} is not a dump image{_detail(e)}") from None
        except DumpFormatError as e:
            raise StartupError(f"{self.name}: {e}") from None

    def in_bits(self, ino: int) -> bool:
        """Whether the inode is written on this dump (TS_BITS)."""
        i = ino - 1
        bits = self.reader.bits
        return 0 <= i < len(bits) * 8 and bits[i >> 3] >> (i & 7) & 1 == 1

    def in_clri(self, ino: int) -> bool:
        """Whether the inode existed when the dump was made (TS_CLRI)."""
        i = ino - 1
        clri = self.reader.clri
        return 0 <= i < len(clri) * 8 and clri[i >> 3] >> (i & 7) & 1 == 1

    def input_size(self) -> int | None:
        """Bytes in a regular-file input, for progress; None when unknown."""
        fd = getattr(self.medium, "fd", None)
        if fd is None or self.reader.compressed:
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def bytes_read(self) -> int:
        return self.reader.blocks_read * 1024

    def info_lines(self) -> list[str]:
        """What classic printdumpinfo() says about the dump (FORMAT §2.7)."""
        t = self.tape
        lines = [f"Dump   date: {time.ctime(t.date)}",
                 "Dumped from: " + ("the epoch" if t.ddate == 0 else time.ctime(t.ddate))]
        if t.host:
            lines.append(f"Level {t.level} dump of {t.filesys} on {t.host}:{t.dev}")
            lines.append(f"Label: {t.label}")
        return lines

    # -- hooks for the reader ------------------------------------------------
    def _problem(self, text: str) -> None:
        self.reporter.warning(text)

    def _next_volume(self, number: int):
        """The read() of volume ``number``: with -M the file PREFIX%03d; otherwise
        what ``changer`` gets (an operator or -F script changing the tape), or none."""
        if not self.multi and self.changer is not None:
            return self.changer(number)
        if not self.multi:
            hint = (f"-M -f {self.name[:-3]} reads {self.name} and the volumes after it"
                    if self.name.endswith("001") else "-M PREFIX reads PREFIX001, PREFIX002, ...")
            self.reporter.error(f"{self.name} ends before the dump does: volume {number} is needed"
                                f" (written by dump -M? {hint}; otherwise the dump is truncated)")
            return None
        name = volume_name(self.spec, number, True)
        try:
            medium = open_input(name, self.settings, blocksize=self.blocksize)
        except StartupError as e:
            self.reporter.error(f"cannot open volume {number}: {e}")
            return None
        self._later_media.append(medium)
        self.reporter.verbose(f"reading volume {number} from {name}")
        return medium.read


def _detail(e: Exception) -> str:
    text = str(e)
    if text.startswith("not a dump image"):
        text = text[len("not a dump image"):].strip()
        return f" {text}" if text else ""
    return f" ({text})" if text else ""
