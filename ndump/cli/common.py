"""Options and types shared by the commands, declared once."""
from __future__ import annotations

from pathlib import Path

import click

from ndump.settings import Settings


def settings() -> Settings:
    obj = click.get_current_context().find_root().obj
    return obj if isinstance(obj, Settings) else Settings.from_environ()


def complete_context_id(ctx, param, incomplete: str):
    """The ids of the dump contexts this user can see (shell completion)."""
    from ndump.contexts import Store
    obj = ctx.find_root().obj
    found = Store(obj if isinstance(obj, Settings) else Settings.from_environ()).ids()
    return [cid for cid in found if cid.startswith(incomplete)]


def file_option(help_text: str):
    return click.option("-f", "--file", "file", metavar="FILE", default=None,
                        help=help_text + " '-' is standard input/output; default $TAPE, else /dev/nst0.")


def blocksize_option(help_text: str, default=None):
    return click.option("-b", "--blocksize", "blocksize", type=click.IntRange(1, 1024),
                        default=default, metavar="KIB", help=help_text)


def catalog_option(help_text: str):
    return click.option("-A", "--catalog", "catalog", metavar="FILE", default=None,
                        type=click.Path(dir_okay=False, path_type=Path), help=help_text)


verbose_option = click.option("-v", "--verbose", count=True, help="Say more; -vv names every file.")
quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="Only errors; never ask the operator (abort instead).")


class CompressType(click.ParamType):
    """zlib[:LEVEL] | bzip2[:LEVEL] | zstd[:LEVEL]."""
    name = "ALGO[:LEVEL]"
    _LIMITS = {"zlib": (1, 9), "bzip2": (1, 9), "zstd": (1, 22)}

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        algo, _, level = str(value).partition(":")
        if algo not in self._LIMITS:
            self.fail(f"unknown compression {algo!r} (zlib, bzip2 or zstd)", param, ctx)
        lo, hi = self._LIMITS[algo]
        if not level:
            return algo, 2 if algo != "zstd" else 3
        if not level.isdigit() or not lo <= int(level) <= hi:
            self.fail(f"{algo} level must be {lo} to {hi}", param, ctx)
        return algo, int(level)
