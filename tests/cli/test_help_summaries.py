"""`ndump --help` lists the commands from a table in ndump.cli, without importing
them (start-up, issue 16): the table says what each command's own help says."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ndump.cli import _SUMMARIES, cli

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_command_list_is_what_the_commands_themselves_give(width):
    ctx = click.Context(cli, info_name="ndump", terminal_width=width, max_content_width=width)
    lazy = click.HelpFormatter(width=width)
    cli.format_commands(ctx, lazy)
    loaded = click.HelpFormatter(width=width)
    click.Group.format_commands(cli, ctx, loaded)      # click's own: imports every command
    assert lazy.getvalue() == loaded.getvalue()
    assert sorted(_SUMMARIES) == cli.list_commands(ctx)


def test_help_imports_no_command():
    probe = ("import sys\nfrom ndump.cli import main\nstatus = main(['--help'])\n"
             "print('LOADED:' + ','.join(sorted(m for m in sys.modules"
             " if m.startswith(('ndump.cli.', 'ndump.dump', 'ndump.restore', 'ndump.catalog')))))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    assert "Commands:" in out.stdout and "dump " in out.stdout
    loaded = set(out.stdout.rsplit("LOADED:", 1)[1].strip().split(",")) - {""}
    assert loaded <= {"ndump.cli.argv", "ndump.cli.result"}, loaded
