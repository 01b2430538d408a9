"""`ndump contexts list|show|delete`: the contexts of restartable dumps (SPEC §6;
ONTAP's `vserver ndmp restartable-backup show|delete`)."""
from __future__ import annotations

import json
import time

import click

from ndump.cli.common import complete_context_id, quiet_option, settings
from ndump.report import make_reporter

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def _when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _yes(flag) -> str:
    return "yes" if flag else "no"


@click.group("contexts", context_settings={"help_option_names": ["--help"]})
def contexts() -> None:
    """List, show and delete the contexts of restartable dumps."""


@contexts.command("list")
@json_option
def list_(as_json):
    """One line per context: id, tree, level, pass, state, busy, cleanup pending, last update."""
    from ndump.contexts import Store
    from ndump.dump.restart import describe
    s = settings()
    store = Store(s)
    rows = [describe(store, cid, s) for cid in store.ids()]
    if as_json:
        click.echo(json.dumps(rows, indent=1, ensure_ascii=False))
        return 0
    if not rows:
        click.echo("no dump contexts")
        return 0
    click.echo(f"{'ID':36}  {'LEVEL':>5}  PASS  {'STATE':11}  BUSY  CLEANUP  {'UPDATED':19}  TREE")
    for r in rows:
        click.echo(f"{r['id']:36}  {r.get('level', '-')!s:>5}  {r.get('pass', '-'):4}"
                   f"  {r['state']:11}  {_yes(r['busy']):4}  {_yes(r['cleanup_pending']):7}"
                   f"  {_when(r.get('updated')):19}  {r.get('tree', '-')}")
    return 0


_FIELDS = [
    ("Context Identifier", "id"), ("Dump Path", "tree"), ("Incremental Backup Level", "level"),
    ("Dump Date", "date"), ("Base Date", "base_date"), ("Dump Name (label)", "label"),
    ("Host", "host"), ("Snapshot Copy Name", "snapshot"),
    ("Is Snapshot Copy Auto-created?", "snapshot_created"), ("Read From", "read_from"),
    ("Medium", "medium"), ("Multi-volume (-M)", "multi_volume"),
    ("Blocking Factor", "blocking_factor"), ("Compression", "compression"),
    ("Volume", "volume"), ("Restart Pass", "pass"), ("State of the Context", "state"),
    ("Reason", "reason"), ("Is Context Busy?", "busy"), ("Busy Process", "pid"),
    ("Is Context Restartable?", "restartable"), ("Why Not", "why_not"),
    ("Is Cleanup Pending?", "cleanup_pending"), ("Has Offset Map?", "offset_map"),
    ("Restarts", "restarts"), ("Context Created", "created"),
    ("Context Last Updated Time", "updated"), ("Restart Command", "command"),
]


@contexts.command("show")
@json_option
@click.argument("context_id", metavar="ID", shell_complete=complete_context_id)
def show(as_json, context_id):
    """Every field of context ID (an ID or a unique prefix of it)."""
    from ndump.contexts import Store
    from ndump.dump.restart import describe
    s = settings()
    store = Store(s)
    facts = describe(store, store.resolve(context_id), s)
    if as_json:
        click.echo(json.dumps(facts, indent=1, ensure_ascii=False))
        return 0
    for title, key in _FIELDS:
        if key not in facts:
            continue
        value = facts[key]
        if key in ("date", "base_date", "created", "updated"):
            value = _when(value) if key != "base_date" or value else "the epoch"
        elif isinstance(value, bool):
            value = _yes(value)
        click.echo(f"{title + ':':>32} {'-' if value in (None, '') else value}")
    ck = facts.get("checkpoint")
    if ck:
        click.echo(f"{'Last Checkpoint:':>32} inode {ck['ino']}, volume {ck['volume']}, byte"
                   f" {ck['offset']} ({ck['records']} records), block {ck['blocks']},"
                   f" {_when(ck['time'])}")
    return 0


@contexts.command("delete")
@quiet_option
@click.argument("context_id", metavar="ID", shell_complete=complete_context_id)
def delete(quiet, context_id):
    """Remove context ID and release the snapshot it kept (refused while busy)."""
    from ndump.dump.restart import delete_context
    s = settings()
    delete_context(context_id, s, make_reporter("NDUMP", s, quiet=quiet))
    return 0
