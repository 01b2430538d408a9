"""`ndump dump`: parse, build DumpOptions, run the engine (classic: dump/main.c)."""
from __future__ import annotations

from pathlib import Path

import click

from ndump.cli import result
from ndump.cli.common import (
    complete_context_id,
    CompressType, catalog_option, file_option, quiet_option, settings, verbose_option,
)
from ndump.dump import DumpOptions, run_dump, show_history
from ndump.dump.dumpdates import parse_date
from ndump.format.constants import MAXNTREC
from ndump.report import make_reporter


@click.command("dump")
@click.option("--level", "level", type=click.IntRange(0, 31), default=0, metavar="N",
              help="Dump level 0-31 (classic: -0 ... -9, -15).")
@file_option("Write the dump to FILE.")
@click.option("-b", "--blocksize", "blocksize", type=click.IntRange(4, MAXNTREC), default=10,
              metavar="KIB", help=f"Blocking factor: KiB per tape record, 4-{MAXNTREC} (default 10;"
              " 64 suits modern tapes).")
@click.option("-L", "--label", metavar="LABEL", help="Label written in the dump header (at most 15 characters; longer ones are cut,"
              " with a warning).")
@click.option("--compress", "compress", type=CompressType(), default=None,
              help="Compress records: zlib (-z[LEVEL]), bzip2 (-j[LEVEL]) or zstd"
              " (--zstd[=LEVEL], an ndump extension that stock restore refuses).")
@click.option("--exclude", "excludes", multiple=True, metavar="PATTERN",
              help="Leave out names or paths matching PATTERN (repeatable).")
@click.option("-h", "--honor-level", "honor_level", type=click.IntRange(0, 32), default=1,
              metavar="LEVEL", help="Honour the nodump flag at and above LEVEL (default 1).")
@click.option("-S", "--estimate", "estimate", is_flag=True,
              help="Print the estimated size in bytes and exit without dumping.")
@click.option("--no-checksums", "no_checksums", is_flag=True,
              help="Leave out the per-chunk data checksums (ndump extension).")
@click.option("-u", "--update-dumpdates", "update", is_flag=True,
              help="Record this dump in the dumpdates file once it has completed.")
@click.option("-D", "--dumpdates-file", "dumpdates", type=click.Path(dir_okay=False),
              metavar="FILE", help="Dumpdates file (default $NDUMP_DUMPDATES, else"
              " /var/lib/ndump/dumpdates).")
@click.option("-T", "--date", "base_date", metavar="DATE",
              help="Dump what changed since DATE (ctime form) instead of the dumpdates base.")
@click.option("-W", "--show-history", "show_all", is_flag=True,
              help="Print the last dump of every tree in the dumpdates file and exit.")
@click.option("-w", "--show-needed", "show_needed", is_flag=True,
              help="Print the trees not dumped in the last day and exit.")
@click.option("-M", "--multi-volume", "multi_volume", is_flag=True,
              help="FILE is a prefix: volumes are FILE001, FILE002, ...")
@click.option("-B", "--volume-size", "volume_size", metavar="BLOCKS[,BLOCKS...]",
              help="1 KiB blocks per volume; a comma list gives each volume its own size"
              " (the last one repeats).")
@click.option("-F", "--script", "script", metavar="SCRIPT",
              help="Run SCRIPT DEVICE VOLUME at each volume change: exit 0 goes on,"
              " 1 asks the operator, anything else aborts.")
@click.option("--snapshot", "snapshot", default="auto", show_default=True, metavar="auto|none|NAME",
              help="Dump from a snapshot: auto (btrfs or LVM snapshot when PATH's filesystem can"
              " take one, else the live tree), none (the live tree), or NAME, an existing btrfs"
              " snapshot directory or LVM snapshot VG/LV (never created nor deleted).")
@click.option("--snapshot-size", "snapshot_size", metavar="SIZE",
              help="Size of an LVM snapshot: 512M, 2G, or N% of the LV (default 10%, at least 64M).")
@click.option("--max-sessions", "max_sessions", type=click.IntRange(1, None), metavar="N",
              help="Dump and restore sessions allowed at once (default $NDUMP_MAX_SESSIONS, else"
              " 4, 16 or 32 by memory).")
@catalog_option("Record the file history in the catalog FILE (default"
                " $NDUMP_STATE_DIR/catalog.db, else /var/lib/ndump/catalog.db).")
@click.option("--no-catalog", "no_catalog", is_flag=True,
              help="Record no file history for this dump.")
@click.option("--restart", "restart_id", metavar="ID", shell_complete=complete_context_id,
              help="Continue the interrupted dump of context ID (ndump contexts list) from its"
              " last checkpoint, with the options it was started with.")
@click.option("--force", "force", is_flag=True,
              help="With --restart: continue a dump of a tree that had no snapshot (the tree"
              " may have changed since).")
@quiet_option
@verbose_option
@result.json_option
@click.argument("path", required=False)
def dump(level, file, blocksize, label, compress, excludes, honor_level, estimate,
         no_checksums, update, dumpdates, base_date, show_all, show_needed, multi_volume,
         volume_size, script, snapshot, snapshot_size, max_sessions, catalog, no_catalog,
         restart_id, force, quiet, verbose, path):
    """Dump the directory tree at PATH (levels 0-31) in the classic dump format."""
    s = settings()
    reporter = make_reporter("DUMP", s, verbosity=verbose, quiet=quiet)
    if show_all or show_needed:
        for line in show_history(dumpdates, s, reporter, only_needed=show_needed and not show_all):
            click.echo(line)
        return 0
    if restart_id is not None:
        if path is not None:
            raise click.UsageError("--restart takes no PATH: the context records it")
        _only_restart_options(click.get_current_context())
        from ndump.dump.restart import restart_dump
        result.watch(reporter)
        return restart_dump(restart_id, s, reporter, force=force)
    if force:
        raise click.UsageError("--force goes with --restart")
    if path is None:
        raise click.UsageError("missing PATH: the directory to dump")
    opts = DumpOptions(path=path, level=level, file=file or s.tape, ntrec=blocksize, label=label,
                       verbose=verbose, quiet=quiet, excludes=tuple(excludes),
                       honor_level=honor_level, estimate_only=estimate,
                       compress=compress[0] if compress else None,
                       compress_level=compress[1] if compress else 2,
                       checksums=not no_checksums, update=update,
                       dumpdates=Path(dumpdates) if dumpdates else None,
                       base_date=parse_date(base_date) if base_date else None,
                       multi_volume=multi_volume, volume_sizes=_sizes(volume_size),
                       script=script, snapshot=snapshot, snapshot_size=snapshot_size,
                       max_sessions=max_sessions, catalog=catalog,
                       file_history=not no_catalog)
    result.watch(reporter, stdout_busy=opts.file == "-")
    outcome = run_dump(opts, s, reporter)
    if outcome.estimate is not None:
        click.echo(outcome.estimate)
    return outcome


_WITH_RESTART = {"restart_id", "force", "quiet", "verbose"}


def _only_restart_options(ctx: click.Context) -> None:
    """A restart goes on with the options recorded in its context: refuse others."""
    given = [p for p in ctx.command.params if p.name not in _WITH_RESTART and p.expose_value
             and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"--restart goes on with the options the dump was started with;"
                               f" leave out {', '.join(p.opts[-1] for p in given)}")


def _sizes(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise click.UsageError(f"-B takes block counts separated by commas, not {text!r}") from None
    if any(n < 1 for n in sizes):
        raise click.UsageError("-B sizes must be positive")
    return sizes
