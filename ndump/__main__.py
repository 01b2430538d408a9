"""python -m ndump."""
import gc

gc.disable()            # start-up: importing makes no garbage for the collector (cli.entry)
from ndump.cli import entry  # noqa: E402

raise SystemExit(entry())
