"""DumpOptions: everything `ndump dump` was asked to do (filled in by cli)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DumpOptions:
    path: str
    level: int = 0
    file: str = "/dev/nst0"
    ntrec: int = 10
    label: str | None = None
    verbose: int = 0
    quiet: bool = False
    update: bool = False
    dumpdates: Path | None = None
    base_date: int | None = None          # -T: overrides the dumpdates base
    honor_level: int = 1                  # -h: nodump honoured at and above this level
    excludes: tuple[str, ...] = field(default_factory=tuple)
    snapshot: str = "none"                # "auto" | "none" | NAME (the CLI's default is auto)
    snapshot_size: str | None = None      # --snapshot-size: LVM snapshot size (512M, 2G, 10%)
    max_sessions: int | None = None       # --max-sessions: overrides NDUMP_MAX_SESSIONS and memory
    compress: str | None = None           # "zlib" | "bzip2" | "zstd"
    compress_level: int = 2
    estimate_only: bool = False           # -S
    checksums: bool = True                # per-chunk CRC32 extension
    multi_volume: bool = False            # -M: FILE is a prefix, volumes FILE001, FILE002, ...
    volume_sizes: tuple[int, ...] = ()    # -B: blocks per volume, per volume (last repeats)
    script: str | None = None             # -F: run at each volume change
    catalog: Path | None = None           # -A: the file-history catalog (None: the default)
    file_history: bool = True             # --no-catalog: False
