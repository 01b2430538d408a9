"""Restartable dump contexts (SPEC §6): what a dump in progress keeps under
``STATE_DIR/contexts/`` so that ``ndump dump --restart ID`` can continue it.
See store.py for the files and the busy lock."""
from ndump.contexts.store import (
    Context, ContextBusy, ContextError, Store, holds_snapshot,
)

__all__ = ["Context", "ContextBusy", "ContextError", "Store", "holds_snapshot"]
