"""The command line: the only place that knows click, sys.exit and os.environ.

main() translates classic syntax, runs click with standalone_mode=False and
turns the Outcome or the exception into the exit status (SPEC §2).
"""
from __future__ import annotations

import gc
import signal
import sys

import click

from ndump import __version__
from ndump.errors import ExitStatus, Interrupted, NdumpError, Outcome
from ndump.settings import Settings
from ndump.cli.argv import classic_argv

_PREFIX = {"dump": "DUMP", "restore": "RESTORE"}
# command name -> module: each is imported only when used, so a restore does not
# pay for loading the dump engine (and the reverse)
_COMMANDS = {"dump": "ndump.cli.dump_cmd", "restore": "ndump.cli.restore_cmd",
             "catalog": "ndump.cli.catalog_cmd", "contexts": "ndump.cli.contexts_cmd"}


# the first paragraph of each command's help, for `ndump --help` without importing
# the commands (tests/cli/test_help_summaries.py checks that they match)
_SUMMARIES = {
    "catalog": "Search and keep the file-history catalog: which dumps hold which files.",
    "contexts": "List, show and delete the contexts of restartable dumps.",
    "dump": "Dump the directory tree at PATH (levels 0-31) in the classic dump format.",
    "restore": "Restore files from a dump: -r, -R, -x, -t, -C or -i, as classic restore.",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def format_commands(self, ctx, formatter):
        """The command list of --help, from _SUMMARIES: no command module is loaded."""
        limit = formatter.width - 6 - max(len(name) for name in _COMMANDS)
        rows = [(name, click.Command(name, help=_SUMMARIES[name]).get_short_help_str(limit))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx, name):
        module = _COMMANDS.get(name)
        if module is None:
            return None
        import importlib
        return getattr(importlib.import_module(module), name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["--help"]})
@click.version_option(__version__, "--version", prog_name="ndump")
def cli() -> None:
    """ndump: dump and restore Linux directory trees in the classic dump format."""


def _raise_interrupted(signo, _frame):
    raise Interrupted(signo)


def _install_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    # a closed pipe downstream must be an EPIPE error we report, not a silent death
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def entry() -> int:
    """The process entry (``python -m ndump``, the ``ndump`` script): main(), after
    the command's modules are imported with the cyclic collector off and then
    frozen (gc.freeze).  Imports make no garbage for it to find, and the ~20
    collections they would set off cost 3-5 ms of a start-up (issue 16)."""
    gc.disable()
    try:
        argv = sys.argv[1:]
        module = _COMMANDS.get(argv[0]) if argv else None
        if module is not None:
            import importlib
            importlib.import_module(module)
        gc.freeze()
    finally:
        gc.enable()
    return main()


def main(argv: list[str] | None = None) -> int:
    status = _main(argv)
    from ndump.cli import result     # --json: one object once the exit status is known
    result.finish(status)
    return status



def _print_traceback() -> None:
    import traceback                # only on the error paths: start-up stays lean
    traceback.print_exc()


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prefix = _PREFIX.get(argv[0] if argv else "", "NDUMP")
    try:
        settings = Settings.from_environ()
    except NdumpError as e:                 # a bad NDUMP_* value, named
        _say(prefix, str(e))
        return e.exit_status
    _install_signals()
    try:
        rv = cli.main(classic_argv(argv), prog_name="ndump", standalone_mode=False, obj=settings)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.NoArgsIsHelpError as e:
        sys.stderr.write(e.format_message() + "\n")     # bare `ndump`: the help, as is
        return ExitStatus.STARTUP
    except click.UsageError as e:
        _say(prefix, e.format_message())
        return ExitStatus.STARTUP
    except click.ClickException as e:
        _say(prefix, e.format_message())
        return ExitStatus.STARTUP
    except click.Abort:
        _say(prefix, "aborted")
        return ExitStatus.ABORTED
    except Interrupted as e:
        _say(prefix, f"interrupted by signal {e.signo}, aborting")
        _notes(prefix, e)
        return ExitStatus.ABORTED
    except NdumpError as e:
        _say(prefix, str(e))
        _notes(prefix, e)
        if settings.debug:
            _print_traceback()
        return e.exit_status
    except BrokenPipeError as e:
        _say(prefix, "broken pipe, aborting")
        _notes(prefix, e)
        return ExitStatus.ABORTED
    except OSError as e:
        _say(prefix, f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        _notes(prefix, e)
        if settings.debug:
            _print_traceback()
        return ExitStatus.ABORTED
    except Exception as e:  # a bug: say so, with the traceback
        _say(prefix, f"internal error: {type(e).__name__}: {e}")
        _print_traceback()
        return ExitStatus.ABORTED
    if isinstance(rv, Outcome):
        if rv.aborted:
            _say(prefix, rv.aborted)
        return rv.exit_status
    return rv if isinstance(rv, int) else ExitStatus.OK


def _notes(prefix: str, e: BaseException) -> None:
    """What the engine added on the way out (e.g. that a dump image is incomplete)."""
    for note in getattr(e, "__notes__", ()):
        _say(prefix, note)


def _say(prefix: str, text: str) -> None:
    text = "; ".join(line.strip() for line in str(text).splitlines() if line.strip())
    from ndump.cli import result
    result.note(text)
    sys.stderr.write(f"{prefix}: {text}\n")
    sys.stderr.flush()
