"""`tracedjobs top`: a live view of workers, queues and jobs.

``--once`` and ``--json`` need only rich; the interactive screen imports Textual lazily
(it is a dependency: the quick-start install gives the live screen).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tracedjobs.tui.model import FilterError, Options, load_snapshot, parse_filter


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(queue=args.queue, task=args.task, seconds=args.seconds)


def main(args: argparse.Namespace, app: Any) -> int:
    # ValueError: the CLI turns it into one line and exit status 2 (also under
    # ``python -m tracedjobs.cli``, where cli.UsageError is another class).
    options = options_from_args(args)
    if args.interval <= 0:
        raise ValueError("--interval must be more than 0")
    if args.json or args.once:
        snapshot = load_snapshot(app, options)
        if args.json:
            print(json.dumps(snapshot.to_dict(), indent=2))
        else:
            from tracedjobs.tui import render

            console = render.make_console()
            console.print(render.snapshot_view(snapshot, width=console.width))
        return 0
    try:
        from tracedjobs.tui.app import TopApp
    except ImportError as exc:
        raise ValueError(
            f"the live screen needs Textual, a dependency of tracedjobs that is missing here "
            f"({exc}): reinstall tracedjobs, or use --once / --json"
        ) from None
    TopApp(app, options, interval=args.interval, read_only=args.read_only,
           trace_url=args.trace_url).run()
    return 0


__all__ = ["FilterError", "Options", "load_snapshot", "main", "parse_filter"]
