"""``python -m tracedjobs.cli``."""

from __future__ import annotations

import sys

from tracedjobs.cli import main

sys.exit(main())
