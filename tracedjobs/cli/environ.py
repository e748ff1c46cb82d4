"""Every option's environment variable, as in Procrastinate: ``TRACEDJOBS_<OPTION>`` for the
global options and ``TRACEDJOBS_<COMMAND>_<OPTION>`` for a command's (``TRACEDJOBS_WORKER_
CONCURRENCY=4``, ``TRACEDJOBS_DEFER_UNKNOWN=1``, ``TRACEDJOBS_DEFER_JSON_ARGS='{...}'``).

A variable sets the option's default: the command line still wins. Booleans read
``1/y/t/yes/true/on`` and ``0/n/f/no/false/off``. ``--app`` and ``--database-url`` keep their
own variables (``TRACEDJOBS_APP``, ``TRACEDJOBS_DATABASE_URL``), read where they are used.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from tracedjobs.cli.base import UsageError

PREFIX = "TRACEDJOBS_"
_OWN_VARIABLES = ("app", "database_url", "help", "version")
_TRUE = ("1", "y", "t", "yes", "true", "on")
_FALSE = ("0", "n", "f", "no", "false", "off")


def _boolean(variable: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise UsageError(f"${variable}={text!r} is not a boolean (use 1/y/t or 0/n/f)")


def _convert(action: argparse.Action, variable: str, text: str) -> Any:
    if isinstance(action, argparse._StoreTrueAction):
        return _boolean(variable, text)
    if isinstance(action, argparse._CountAction):
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"${variable}={text!r} is not a whole number") from None
    try:
        value = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise UsageError(f"${variable}={text!r}: {exc}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise UsageError(f"${variable}={text!r} is not one of {choices}")
    return [value] if isinstance(action, argparse._AppendAction) else value


def _variables(action: argparse.Action, prefix: str) -> list[str]:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return [prefix + o[2:].replace("-", "_").upper() for o in longs]


def apply(parser: argparse.ArgumentParser, prefix: str = PREFIX) -> None:
    """Set option defaults from the environment, for this parser and every subcommand's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                apply(sub, f"{prefix}{name.upper()}_")
            continue
        if action.dest in _OWN_VARIABLES or isinstance(action, argparse._StoreFalseAction):
            continue  # the negative half of a flag pair: its positive half reads the variable
        names = _variables(action, prefix) or (
            # Procrastinate's name for defer's positional JSON arguments.
            [f"{prefix}JSON_ARGS"] if action.dest == "arguments" else []
        )
        for variable in names:
            text = os.environ.get(variable)
            if text:  # empty means unset, as in Procrastinate
                value = _convert(action, variable, text)
                parser.set_defaults(**{action.dest: [text] if action.dest == "arguments"
                                       else value})
                break
