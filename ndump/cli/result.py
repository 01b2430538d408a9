"""``--json TARGET``: one JSON object describing the run, written when it ends.

The object (schemas/result.schema.json) is built from the Reporter's facts and
problems and the final exit status, so a scheduler or a monitoring system can
consume a dump or restore without parsing ``DUMP:`` lines.  TARGET is a file
(replaced atomically), ``fd:N`` (an open descriptor, e.g. a pipe) or ``-``
(standard output).  An aborted or failed run still writes its object.
"""
from __future__ import annotations

import os
import sys
import time

import click

from ndump import __version__
from ndump.errors import ExitStatus
from ndump.report import Reporter

_STATUS = {ExitStatus.OK: "ok", ExitStatus.STARTUP: "failed", ExitStatus.PARTIAL: "partial",
           ExitStatus.ABORTED: "aborted"}


class _Run:
    """The run being recorded: where to write, and what is known so far."""

    def __init__(self, target: str, command: str):
        self.target = target
        self.command = command
        self.started = time.time()
        self.clock = time.monotonic()
        self.reporter: Reporter | None = None
        self.message: str | None = None


_run: _Run | None = None


def _parse_target(ctx, param, value):
    global _run
    if value is None:
        return None
    if value.startswith("fd:"):
        if not value[3:].isdigit():
            raise click.BadParameter(f"fd:N takes a descriptor number, not {value[3:]!r}")
        try:
            os.fstat(int(value[3:]))
        except OSError:
            raise click.BadParameter(f"descriptor {value[3:]} is not open") from None
    elif value != "-" and os.path.isdir(value):
        raise click.BadParameter(f"{value} is a directory")
    elif value != "-" and not os.path.isdir(os.path.dirname(os.path.abspath(value))):
        raise click.BadParameter(f"{os.path.dirname(os.path.abspath(value))}: no such directory")
    _run = _Run(value, ctx.info_name or "ndump")
    return value


json_option = click.option(
    "--json", "json_target", metavar="FILE|fd:N|-", default=None, expose_value=False,
    is_eager=True, callback=_parse_target,
    help="When the run ends, write one JSON object (status, level, dates, bytes, files,"
    " problems, volumes, duration) to FILE, descriptor N or standard output.")


def watch(reporter: Reporter, *, stdout_busy: bool = False) -> None:
    """The command's reporter holds the facts; ``stdout_busy``: data goes to stdout."""
    if _run is None:
        return
    if stdout_busy and _run.target == "-":
        raise click.UsageError("--json - and -f - both want standard output: give --json a"
                               " FILE or fd:N")
    _run.reporter = reporter


def note(message: str) -> None:
    """The one line main() printed about a failure or an abort."""
    if _run is not None and _run.message is None:
        _run.message = message


def _iso(epoch) -> str | None:
    if not isinstance(epoch, int):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def build(run: _Run, status: int, finished: float, duration: float) -> dict:
    facts = run.reporter.facts if run.reporter is not None else {}
    problems = run.reporter.problems if run.reporter is not None else []
    status = ExitStatus(status) if status in ExitStatus._value2member_map_ else ExitStatus.ABORTED
    return {
        "ndump": __version__,
        "command": run.command,
        "status": _STATUS[status],
        "exit_status": int(status),
        "message": run.message,
        "path": facts.get("path"),
        "level": facts.get("level"),
        "date": _iso(facts.get("date")),
        "base_date": _iso(facts.get("base_date")),
        "started": _iso(int(run.started)),
        "finished": _iso(int(finished)),
        "duration": round(duration, 3),
        "bytes": facts.get("bytes"),
        "estimated_bytes": facts.get("estimated_bytes"),
        "files": facts.get("files"),
        "volumes": facts.get("volumes"),
        "problems": [{"path": p.path, "reason": p.reason} for p in problems],
        "context_id": facts.get("context_id"),
    }


def finish(status: int) -> None:
    """Write the object, if --json was given; a failure to write is one stderr line."""
    global _run
    run, _run = _run, None
    if run is None:
        return
    import json                  # only with --json: start-up stays lean
    text = json.dumps(build(run, status, time.time(), time.monotonic() - run.clock),
                      ensure_ascii=False) + "\n"
    data = text.encode("utf-8", "surrogateescape")
    try:
        _write(run.target, data)
    except OSError as e:
        sys.stderr.write(f"{run.command.upper()}: cannot write --json {run.target}:"
                         f" {e.strerror or e}\n")


def _write(target: str, data: bytes) -> None:
    if target == "-":
        sys.stdout.flush()
        _write_fd(sys.stdout.fileno(), data)
    elif target.startswith("fd:"):
        _write_fd(int(target[3:]), data)
    else:
        tmp = f"{target}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, target)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
