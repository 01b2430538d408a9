"""Opening volumes and changing them (classic: dump/tape.c startnewtape(),
close_rewind() and optr.c query()).

-M names volumes FILE001, FILE002, ...; otherwise every volume goes to the same
-f name and someone must change the medium: the -F script (called with the
device and the volume number: exit 0 go on, 1 ask the operator, else abort), else
the operator on /dev/tty, else — cron — the dump aborts naming the volume.
"""
from __future__ import annotations

from ndump.errors import OperatorAbort
from ndump.media import open_output, volume_name
from ndump.operator import Operator
from ndump.report import Reporter
from ndump.settings import Settings
from ndump.dump.options import DumpOptions


class VolumeChanger:
    def __init__(self, opts: DumpOptions, settings: Settings, reporter: Reporter):
        self.opts = opts
        self.settings = settings
        self.reporter = reporter
        self.operator = Operator(settings, script=opts.script, quiet=opts.quiet, prefix="DUMP")

    def name(self, volume: int) -> str:
        return volume_name(self.opts.file, volume, self.opts.multi_volume)

    def open(self, volume: int):
        return open_output(self.name(volume), self.settings)

    def change(self, volume: int) -> None:
        """Called between closing volume-1 and opening ``volume``."""
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
        self.operator.confirm(f"Change volumes: mount volume #{volume} on {name}; is it ready?",
                              need=f"volume #{volume} must be mounted on {name}")

    def started(self, volume: int, ino: int) -> None:
        more = f", continuing with inode {ino}" if ino else ""
        self.reporter.info(f"Volume {volume} begins on {self.name(volume)}{more}")
