"""What the restore command asked for (classic: restore/main.c's flag variables)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODES = {
    "r": "rebuild",        # whole tree; level 0 then each incremental (restoresymtable)
    "R": "resume",         # continue an interrupted -r
    "x": "extract",        # named files and directories, all when none are named
    "t": "list",           # list names
    "C": "compare",        # compare the dump with the filesystem
    "i": "interactive",    # the shell (restore/shell.py)
}
# --time-precision (-C, restore/compare.py): nanoseconds per unit; "auto" compares to
# the nanosecond and falls back to the microsecond when every difference is below it
# (a tree that stock restore, or any utimes()-based restore, made from an image
# carrying nanoseconds)
PRECISIONS = {"ns": 1, "us": 1000, "s": 1_000_000_000}
TIME_PRECISIONS = ("auto",) + tuple(PRECISIONS)


@dataclass(frozen=True)
class RestoreOptions:
    """Filled in by cli.restore_cmd; read by run_restore.

    ``file`` None means the settings' tape ($TAPE, else /dev/nst0).  ``target``
    None means the current directory, as in classic restore.
    """
    mode: str
    file: str | None = None
    paths: tuple[str, ...] = ()
    target: Path | None = None
    original: bool = False          # --original: the directory recorded in the dump header
    verbose: int = 0
    quiet: bool = False
    yes: bool = False               # -y: never ask; answers "yes" where restore would ask
    dry_run: bool = False           # -N: do everything but write
    blocksize: int | None = None    # -b KiB per record; files and pipes do not need it
    keep_existing: bool = False     # leave existing files alone (SPEC §5.3)
    multi_volume: bool = False      # -M: volumes are the files FILE001, FILE002, ...
    file_number: int = 1            # -s N: the N-th dump file on a tape
    verify_checksums: bool = True   # ndump per-chunk data checksums
    time_precision: str = "auto"    # -C: ns, us, s, or auto (ns, us when all differ below 1 us)
    # SPEC §5.1/§5.2 (restore/space.py, rename.py); the CLI resolves the option, else
    # NDUMP_EXTRACT / NDUMP_FORCE, into these; extract None: by mode and names
    extract: str | None = None      # 'N' whole tree, 'Y' named paths, 'E' renamed pairs
    renames: tuple[tuple[str, str], ...] = ()   # E: (SRC, DEST); else parsed from paths
    force: bool = False             # skip the space and inode checks
    # SPEC §5.4 (restore/perms.py)
    no_inherit: bool = False        # do not give files the target directory's default ACL
    owner_map: Path | None = None   # 'OLD NEW' lines, names or numbers
    group_map: Path | None = None
    # volume changes without -M (restore/volchange.py) and session slots (SPEC §3.6)
    script: str | None = None       # -F SCRIPT DEVICE VOLUME: 0 go on, 1 ask, else abort
    max_sessions: int | None = None  # --max-sessions; None: $NDUMP_MAX_SESSIONS, else by memory
    catalog: Path | None = None     # -A: with -x and paths, seek to each file (restore/direct.py)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown restore mode {self.mode!r}")

    @property
    def writes(self) -> bool:
        """Whether this run creates anything under the target."""
        return self.mode in ("r", "R", "x", "i") and not self.dry_run
