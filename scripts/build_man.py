#!/usr/bin/env python3
"""Build the man pages for installation: man/*.8 with the version filled in.

The pages in man/ are hand-written and carry the placeholder ``__VERSION__``
in their .TH line, as the Linux dump sources carry ``__VERSION__`` and
``__DATE__`` until ``configure`` fills them in.  This script writes copies with
``ndump.__version__`` substituted:

    python3 scripts/build_man.py [OUTDIR]        # default: build/man

Packagers install OUTDIR/*.8 under share/man/man8.  tests/test_docs.py uses
``render()`` from here, so the pages it checks with groff are the ones this
script builds.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAN_DIR = REPO / "man"
PLACEHOLDER = "__VERSION__"


def version() -> str:
    """ndump.__version__, read from the source (nothing needs to be installed)."""
    text = (REPO / "ndump" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.M)
    if not m:
        raise SystemExit("build_man.py: no __version__ in ndump/__init__.py")
    return m.group(1)


def pages() -> list[Path]:
    return sorted(MAN_DIR.glob("*.8"))


def render(text: str, ver: str | None = None) -> str:
    return text.replace(PLACEHOLDER, ver or version())


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: build_man.py [OUTDIR]", file=sys.stderr)
        return 1
    out = Path(argv[0]) if argv else REPO / "build" / "man"
    out.mkdir(parents=True, exist_ok=True)
    ver = version()
    for page in pages():
        (out / page.name).write_text(render(page.read_text(encoding="utf-8"), ver), encoding="utf-8")
        print(out / page.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
