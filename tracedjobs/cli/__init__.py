"""The ``tracedjobs`` command line (also ``python -m tracedjobs``).

Every command has ``--help``. Bad input or an unreachable database ends with one line on
stderr and a non-zero exit status, never a traceback (``-v`` logs it); output into a closed
pipe (``tracedjobs jobs list | head``) ends quietly.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from tracedjobs.cli.base import UsageError
from tracedjobs.cli.parser import build_parser, configure_logging
from tracedjobs.exceptions import TracedJobsError

logger = logging.getLogger("tracedjobs.cli")


def _quiet_stdout() -> None:
    # The reader went away: point stdout at /dev/null so the final flush at exit does not
    # print "Exception ignored … BrokenPipeError" (Python's documented recipe).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None, *, app: Any = None) -> int:
    """Run one command; returns the exit status. ``app=`` supplies the App (no ``--app``)."""
    import psycopg

    from tracedjobs.connector import first_line

    verbose = False
    try:
        args = build_parser().parse_args(argv)
        verbose = bool(args.verbose)
        args.preloaded_app = app
        configure_logging(args)
        return int(args.func(args))
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError) as exc:
        if verbose:
            raise
        return _fail(exc, f"error: {exc}", 2)
    except UsageError as exc:
        return _fail(exc, f"error: {exc}", 2)
    except TracedJobsError as exc:
        return _fail(exc, str(exc), 1)
    except psycopg.Error as exc:
        return _fail(exc, f"database error: {first_line(exc)}", 1)


def _fail(exc: BaseException, message: str, status: int) -> int:
    logger.debug("details", exc_info=exc)  # the traceback, with -v
    try:
        print(f"tracedjobs: {message}", file=sys.stderr)
    except BrokenPipeError:
        pass
    return status


__all__ = ["UsageError", "build_parser", "main"]
