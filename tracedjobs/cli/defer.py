"""``tracedjobs defer TASK ARGS``: ours and Procrastinate's shapes.

Arguments come as one JSON object (``'{"to": "a@b.c"}'``) or as ``key=value`` pairs
(``to=a@b.c count=3``: a value that reads as JSON is JSON, anything else a string). A task
the app knows is checked against its signature before anything is written; ``--unknown``
defers by name a task the app does not import.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
from typing import Any

from tracedjobs.cli.base import UsageError, has_app, load_app, stderr
from tracedjobs.exceptions import AlreadyEnqueued, TaskNotFound

_KEY_VALUE = re.compile(r"^([A-Za-z_]\w*)=(.*)$", re.DOTALL)


def _string_params(task: Any) -> set[str]:
    """Parameters annotated ``str``: ``key=007`` stays the string ``"007"`` for them."""
    if task is None:
        return set()
    try:
        params = inspect.signature(task.func).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.annotation in (str, "str")}


def parse_arguments(tokens: list[str], task: Any = None) -> dict[str, Any]:
    """The job's keyword arguments from ``'{json}'`` or ``key=value …``."""
    if not tokens:
        return {}
    if len(tokens) == 1 and not _KEY_VALUE.match(tokens[0]):
        try:
            kwargs = json.loads(tokens[0])
        except json.JSONDecodeError as exc:
            raise UsageError(f"arguments are not valid JSON: {exc}") from None
        if not isinstance(kwargs, dict):
            raise UsageError(
                'arguments must be a JSON object, e.g. \'{"to": "a@b.c"}\', or key=value pairs'
            )
        return kwargs
    strings = _string_params(task)
    kwargs = {}
    for token in tokens:
        match = _KEY_VALUE.match(token)
        if not match:
            raise UsageError(
                f"{token!r} is not key=value; give one JSON object or key=value pairs"
            )
        key, raw = match[1], match[2]
        if key in strings:
            kwargs[key] = raw
            continue
        try:
            kwargs[key] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key] = raw
    return kwargs


def check_signature(task: Any, kwargs: dict[str, Any]) -> None:
    """Refuse arguments the task's function cannot take (before anything is written)."""
    try:
        signature = inspect.signature(task.func)
    except (TypeError, ValueError):
        return  # builtins and the like: nothing to check against
    # With pass_context the worker passes the JobContext first.
    leading = [None] if task.pass_context else []
    params = list(signature.parameters.values())[len(leading):]
    takes = f"(it takes: {', '.join(p.name for p in params) or 'no arguments'})"
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        unknown = [key for key in kwargs if key not in {p.name for p in params}]
        if unknown:
            raise UsageError(
                f"task {task.name!r} has no argument {', '.join(map(repr, unknown))} {takes}"
            )
    try:
        signature.bind(*leading, **kwargs)
    except TypeError as exc:
        raise UsageError(f"task {task.name!r} cannot take these arguments: {exc} {takes}") from None


def _schedule(args: argparse.Namespace) -> dict[str, Any]:
    if args.schedule_at is not None:
        return {"schedule_at": args.schedule_at}
    if args.schedule_in is not None:
        return {"schedule_in": {"seconds": args.schedule_in}}
    return {}


def cmd_defer(args: argparse.Namespace) -> int:
    from tracedjobs import otel_sdk

    if not args.unknown and not has_app(args):
        raise UsageError(
            "this command needs --app module:app (or $TRACEDJOBS_APP); "
            "--unknown defers a task by name without it"
        )
    if not args.unknown:
        parse_arguments(args.arguments)  # bad JSON is reported before the app is imported
    app = load_app(args, required=False)
    task = None
    if has_app(args):
        try:
            task = app.get_task(args.task)
        except TaskNotFound:
            if not args.unknown:
                raise
    kwargs = parse_arguments(args.arguments, task)
    if task is None:
        task = app.unknown_task(args.task)
    else:
        check_signature(task, kwargs)
    app.check_schema()
    options: dict[str, Any] = {
        key: getattr(args, key)
        for key in ("queue", "priority", "lock", "queueing_lock")
        if getattr(args, key) is not None
    }
    options.update(_schedule(args))
    sdk = otel_sdk.configure(default_service_name="tracedjobs-cli")
    try:
        job_id = task.configure(**options).defer(**kwargs)
    except AlreadyEnqueued as exc:
        if not args.ignore_already_enqueued:
            raise
        stderr(f"tracedjobs: {exc} (ignored)")
        return 0
    finally:
        sdk.shutdown()
    print(job_id)
    return 0
