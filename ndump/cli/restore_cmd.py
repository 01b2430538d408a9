"""`ndump restore`: parse, build RestoreOptions, run the engine (classic:
restore/main.c option handling)."""
from __future__ import annotations

from pathlib import Path

import click

from ndump.cli import result
from ndump.cli.common import (
    blocksize_option, catalog_option, file_option, quiet_option, settings, verbose_option,
)
from ndump.report import make_reporter
from ndump.restore import RestoreOptions, run_restore
from ndump.restore.options import TIME_PRECISIONS

def _rules_options(f):
    """SPEC §5.1-§5.4: EXTRACT, FORCE and permission mapping (RestoreOptions fields)."""
    path = click.Path(dir_okay=False, path_type=Path)
    for decorator in reversed((
        click.option("--extract", "extract", type=click.Choice(["N", "Y", "E"], case_sensitive=False),
                     default=None, metavar="N|Y|E", help="N: the whole tree; Y: only the named paths; E: named"
                     " SRC=DEST pairs, each restored under its new name (default: $NDUMP_EXTRACT,"
                     " else N, or Y when paths are named)."),
        click.option("--force", "force", is_flag=True,
                     help="Skip the space and inode check; stop when the target fills up."),
        click.option("--no-inherit", "no_inherit", is_flag=True,
                     help="Do not give files without an ACL the target directory's default ACL."),
        click.option("--owner-map", "owner_map", metavar="FILE", type=path, default=None,
                     help="Translate owners: 'OLD NEW' lines, names or numbers."),
        click.option("--group-map", "group_map", metavar="FILE", type=path, default=None,
                     help="Translate groups: 'OLD NEW' lines, names or numbers."),
    )):
        f = decorator(f)
    return f


_MODE_FLAGS = (("rebuild", "r"), ("resume", "R"), ("extract_files", "x"), ("list_", "t"),
               ("compare", "C"), ("interactive", "i"))


@click.command("restore")
@click.option("-r", "--rebuild", is_flag=True,
              help="Rebuild a whole tree into the target: a level 0 dump, then each incremental.")
@click.option("-R", "--resume", is_flag=True, help="Resume an interrupted -r restore.")
@click.option("-x", "--extract-files", "extract_files", is_flag=True,
              help="Extract the named files and directories (everything when none are named).")
@click.option("-t", "--list", "list_", is_flag=True,
              help="List the names on the dump (all, or the named ones).")
@click.option("-C", "--compare", is_flag=True, help="Compare the dump with the files on disk.")
@click.option("-i", "--interactive", is_flag=True,
              help="Read the dump's directories, then choose the files to extract in a shell.")
@file_option("Read the dump from FILE.")
@blocksize_option("KiB per tape record (read from the medium when not given).")
@verbose_option
@quiet_option
@click.option("-y", "--yes", is_flag=True,
              help="Never ask: answer yes (with -x this also sets the owner and mode of '.').")
@click.option("-N", "--dry-run", "dry_run", is_flag=True,
              help="Read the dump and do everything but write to disk.")
@click.option("--target", "target", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Restore into DIR instead of the current directory.")
@click.option("--original", "original", is_flag=True,
              help="Restore into the directory the dump was made of, as its header records it"
              " (made if missing).")
@click.option("--keep-existing", "keep_existing", is_flag=True,
              help="Leave files that already exist alone instead of replacing them.")
@click.option("-M", "--multi-volume", "multi_volume", is_flag=True,
              help="FILE is a prefix: read volumes FILE001, FILE002, ... (as written by dump -M).")
@click.option("-s", "--file-number", "file_number", type=click.IntRange(1), default=1,
              metavar="N", help="Read the N-th dump on the tape (default 1).")
@click.option("-F", "--script", "script", metavar="SCRIPT", default=None,
              help="Run SCRIPT DEVICE VOLUME when the next volume is needed: exit 0 goes on,"
              " 1 asks the operator, anything else aborts.")
@click.option("--max-sessions", "max_sessions", type=click.IntRange(1, None), metavar="N",
              default=None, help="Dump and restore sessions allowed at once (default"
              " $NDUMP_MAX_SESSIONS, else 4, 16 or 32 by memory).")
@click.option("--time-precision", "time_precision", type=click.Choice(TIME_PRECISIONS),
              default="auto", show_default=True,
              help="-C: how closely modification times must agree (auto: to the nanosecond,"
              " or to the microsecond when no file differs by more, as after stock restore).")
@catalog_option("With -x and named files: seek to each file's position as the catalog FILE"
                " records it, instead of reading the whole dump.")
@_rules_options
@result.json_option
@click.argument("paths", nargs=-1)
def restore(rebuild, resume, extract_files, list_, compare, interactive, file, blocksize, verbose,
            quiet, yes, dry_run, target, original, keep_existing, multi_volume, file_number, catalog,
            script, max_sessions, time_precision, extract, force, no_inherit, owner_map, group_map, paths):
    """Restore files from a dump: -r, -R, -x, -t, -C or -i, as classic restore."""
    chosen = {"rebuild": rebuild, "resume": resume, "extract_files": extract_files,
              "list_": list_, "compare": compare, "interactive": interactive}
    modes = [letter for name, letter in _MODE_FLAGS if chosen[name]]
    if len(modes) != 1:
        raise click.UsageError("give exactly one of -r, -R, -x, -t, -C, -i"
                               + (f" (got {' '.join('-' + m for m in modes)})" if modes else ""))
    if original and target is not None:
        raise click.UsageError("--original and --target name two different places: give one")
    s = settings()
    opts = RestoreOptions(mode=modes[0], file=file or s.tape, paths=tuple(paths), target=target,
                          original=original, verbose=verbose, quiet=quiet, yes=yes,
                          dry_run=dry_run, blocksize=blocksize, keep_existing=keep_existing,
                          multi_volume=multi_volume, file_number=file_number, catalog=catalog,
                          script=script,
                          max_sessions=max_sessions, time_precision=time_precision,
                          extract=extract if extract is not None else s.extract,
                          force=force or s.force, no_inherit=no_inherit,
                          owner_map=owner_map, group_map=group_map)
    reporter = make_reporter("RESTORE", s, verbosity=verbose, quiet=quiet)
    result.watch(reporter)
    return run_restore(opts, s, reporter)
