"""python -m ndump."""
from ndump.cli import main

raise SystemExit(main())
