"""`ndump catalog find|list|chain|add|check|rebuild`: the file-history catalog
(SPEC §7; classic counterpart: dump -A's archive file, read with restore -t)."""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import click

from ndump.catalog import Catalog, DumpInfo, default_path, file_type
from ndump.cli.common import catalog_option, quiet_option, settings, verbose_option
from ndump.errors import ExitStatus
from ndump.report import make_reporter

# the engines are imported by the commands that need them: find and list start fast


_catalog = catalog_option("The catalog database (default $NDUMP_STATE_DIR/catalog.db,"
                          " else /var/lib/ndump/catalog.db).")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def _path(catalog: Path | None) -> Path:
    return catalog or default_path(settings().state_dir)


def _when(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _medium(d: DumpInfo) -> list[str]:
    return (["-M"] if d.multi else []) + ["-f", d.medium]


def restore_command(d: DumpInfo, mode: str, catalog: Path | None = None, path: str | None = None) -> str:
    words = ["ndump", "restore", f"-{mode}"] + _medium(d)
    if catalog is not None:
        words += ["-A", str(catalog)]
    if path is not None:
        words.append("./" + path if path != "." else ".")
    return " ".join(shlex.quote(w) for w in words)


@click.group("catalog", context_settings={"help_option_names": ["--help"]})
def catalog() -> None:
    """Search and keep the file-history catalog: which dumps hold which files."""


@catalog.command("find")
@_catalog
@json_option
@click.option("-n", "--limit", "limit", type=click.IntRange(1), default=None, metavar="N",
              help="Show at most N matches.")
@click.argument("pattern")
def find(catalog, as_json, limit, pattern):
    """Which dumps and volumes hold names matching PATTERN, newest first."""
    path = _path(catalog)
    with Catalog(path, writable=False) as cat:
        matches = cat.find(pattern, limit=limit)
    if as_json:
        out = [dict(m.to_json(), restore=restore_command(m.dump, "x", path, m.path)) for m in matches]
        click.echo(json.dumps(out, indent=1))
        return ExitStatus.OK
    for m in matches:
        d = m.dump
        name = d.tree.rstrip("/") + "/" + m.path if m.path != "." else d.tree
        click.echo(f"{_when(d.date)}  level {d.level}  {file_type(m.type)} {m.size:>12}  {name}"
                   f"  (volume {m.volume} of {d.medium}, dump {d.id})")
        click.echo(f"    {restore_command(d, 'x', path, m.path)}")
    if not matches:
        click.echo(f"NDUMP: no name in {path} matches {pattern}", err=True)
        return ExitStatus.PARTIAL
    return ExitStatus.OK


@catalog.command("list")
@_catalog
@json_option
@click.argument("tree", required=False)
def list_(catalog, as_json, tree):
    """The dumps of every tree (or of TREE): levels, dates, media and status."""
    with Catalog(_path(catalog), writable=False) as cat:
        dumps = cat.dumps(tree)
    if as_json:
        click.echo(json.dumps([d.to_json() for d in dumps], indent=1))
        return ExitStatus.OK
    last = None
    for d in dumps:
        if d.tree != last:
            click.echo(d.tree)
            last = d.tree
        click.echo(f"  {d.id:>5}  level {d.level:<2} {_when(d.date)}  {d.status:<8}"
                   f" {d.files:>9} names  {d.volumes} vol  {' '.join(_medium(d)[-1:])}")
    return ExitStatus.OK


@catalog.command("chain")
@_catalog
@json_option
@click.option("--at", "at", metavar="DATE", default=None,
              help="Restore TREE as it was at DATE (ISO 8601 or ctime form; default now).")
@click.argument("tree")
def chain(catalog, as_json, at, tree):
    """The dumps that restore TREE as it was at DATE, as restore -r commands in order."""
    from ndump.dump.dumpdates import parse_date
    when = parse_date(at) if at else int(settings().clock())
    with Catalog(_path(catalog), writable=False) as cat:
        dumps = cat.chain(tree.rstrip("/") or "/", when)
    if as_json:
        click.echo(json.dumps([dict(d.to_json(), restore=restore_command(d, "r")) for d in dumps],
                              indent=1))
        return ExitStatus.OK
    for d in dumps:
        click.echo(f"# level {d.level} of {_when(d.date)} (dump {d.id})")
        click.echo(restore_command(d, "r"))
    return ExitStatus.OK


def _reading_images(required: bool):
    """The options of the commands that read dump images into the catalog."""
    def wrap(f):
        for option in reversed((
                _catalog,
                click.option("-M", "--multi-volume", "multi_volume", is_flag=True,
                             help="Each IMAGE is a prefix: read volumes IMAGE001, IMAGE002, ..."),
                verbose_option, quiet_option,
                click.argument("images", nargs=-1, required=required))):
            f = option(f)
        return f
    return wrap


def _index(index, catalog, multi_volume, verbose, quiet, images):
    s = settings()
    reporter = make_reporter("NDUMP", s, verbosity=verbose, quiet=quiet)
    return index(_path(catalog), list(images), s, reporter, multi=multi_volume)


@catalog.command("add")
@_reading_images(required=True)
def add(catalog, multi_volume, verbose, quiet, images):
    """Index existing dump images (ndump's or stock dump's) so that they can be searched."""
    from ndump.restore.index import add_images
    return _index(add_images, catalog, multi_volume, verbose, quiet, images)


@catalog.command("check")
@_catalog
def check(catalog):
    """Verify the catalog: SQLite's integrity check and the rows of every dump."""
    path = _path(catalog)
    with Catalog(path, writable=False) as cat:
        problems = cat.check()
        dumps = cat.dumps()
    for p in problems:
        click.echo(f"NDUMP: catalog {path}: {p}", err=True)
    if problems:
        return ExitStatus.PARTIAL
    click.echo(f"catalog {path}: ok, {len(dumps)} dumps, {sum(d.files for d in dumps)} names")
    return ExitStatus.OK


@catalog.command("rebuild")
@_reading_images(required=False)
def rebuild(catalog, multi_volume, verbose, quiet, images):
    """Make the catalog anew from IMAGEs (default: the image files it lists)."""
    from ndump.restore.index import rebuild as rebuild_catalog
    return _index(rebuild_catalog, catalog, multi_volume, verbose, quiet, images)
