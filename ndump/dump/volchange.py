"""Opening volumes and changing them (classic: dump/tape.c startnewtape(),
close_rewind() and optr.c query()).

-M names volumes FILE001, FILE002, ...; otherwise every volume goes to the same
-f name and someone must change the medium: the -F script (called with the
device and the volume number: exit 0 go on, 1 ask the operator, else abort), else
the operator on /dev/tty, else — cron — the dump aborts naming the volume.
"""
from __future__ import annotations

import os
import stat

from ndump.errors import OperatorAbort
from ndump.media import check_output, open_output, volume_name
from ndump.operator import Operator
from ndump.report import Reporter
from ndump.settings import Settings
from ndump.dump.options import DumpOptions
from ndump.dump.volumes import VOLUME_SIZE_REACHED


class VolumeChanger:
    def __init__(self, opts: DumpOptions, settings: Settings, reporter: Reporter):
        self.opts = opts
        self.settings = settings
        self.reporter = reporter
        self.operator = Operator(settings, script=opts.script, quiet=opts.quiet, prefix="DUMP")

    def name(self, volume: int) -> str:
        return volume_name(self.opts.file, volume, self.opts.multi_volume)

    def check(self) -> None:
        """Refuse now an output that could not be opened once the tree is walked."""
        check_output(self.name(1), self.settings)

    def open(self, volume: int):
        return open_output(self.name(volume), self.settings)

    def change(self, volume: int, why: str = "") -> None:
        """Called between closing volume-1 and opening ``volume``; ``why``: what
        ended volume-1 (the medium's end-of-medium message, or the -B size)."""
        name = self.name(volume)
        if self.opts.file == "-":
            raise OperatorAbort(f"volume {volume - 1} is full, and standard output cannot"
                                " change volumes; use -B/-M or a larger medium")
        status = self.operator.run_script(name, str(volume))
        if status == 0:
            return
        if status is not None and status != 1:
            raise OperatorAbort(f"{self.opts.script} exited {status}: dump aborted at volume {volume}")
        if self.opts.multi_volume and status is None:
            return
        if why and why != VOLUME_SIZE_REACHED:
            fs = _filesystem_of(self.name(volume - 1))
            full = f"the filesystem at {fs} is full" if fs else "the medium is full"
            need = f"{why} ({full}); volume #{volume} must be mounted on {name}"
        else:
            need = f"volume #{volume} must be mounted on {name}"
        # stock dump: "Change Volumes: Mount volume #2", then a yes/no question
        self.operator.confirm("Is the new volume mounted and ready to go?", need=need,
                              notice=f"Change Volumes: Mount volume #{volume} on {name}")

    def started(self, volume: int, ino: int) -> None:
        more = f", continuing with inode {ino}" if ino else ""
        self.reporter.info(f"Volume {volume} begins on {self.name(volume)}{more}")


def _filesystem_of(name: str) -> str | None:
    """The mount point of the filesystem holding the regular file ``name``
    (the highest directory above it on the same device); None for a device."""
    try:
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            return None
        path = os.path.dirname(os.path.abspath(name))
        while path != "/" and os.stat(os.path.dirname(path)).st_dev == st.st_dev:
            path = os.path.dirname(path)
        return path
    except OSError:
        return None
