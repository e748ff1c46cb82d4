"""``python -m tracedjobs``: the command line, as the ``tracedjobs`` script."""

from __future__ import annotations

import sys

from tracedjobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
