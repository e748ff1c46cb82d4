"""Commands that read and change jobs: ``jobs list|show|retry|cancel``, ``stalled``, ``prune``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tracedjobs.cli.base import (
    UsageError,
    console,
    fmt_time,
    has_app,
    parse_when,
    print_json,
    ready_app,
    stderr,
)
from tracedjobs.exceptions import TracedJobsError


def _task_name(app: Any, args: argparse.Namespace) -> str | None:
    """``--task send_email`` means the app's ``myapp.tasks.send_email`` when the app is known."""
    name: str | None = args.task
    if name and has_app(args):
        try:
            return str(app.get_task(name).name)
        except TracedJobsError:
            return name  # jobs of a task the app no longer has can still be listed
    return name


def jobs_table(jobs: list[Any], width: int) -> Any:
    from tracedjobs.tui.fit import Column, fitted_table
    from tracedjobs.tui.render import short_task

    return fitted_table(
        [
            Column("id", [str(j.id) for j in jobs], keep=True, justify="right"),
            Column("task", [j.task_name for j in jobs], rank=2,
                   short=[short_task(j.task_name) for j in jobs], min_width=10),
            Column("queue", [j.queue_name for j in jobs], rank=4, min_width=8),
            Column("status", [str(j.status) for j in jobs], keep=True),
            Column("attempts", [str(j.attempts) for j in jobs], rank=5, justify="right"),
            Column("priority", [str(j.priority) for j in jobs], rank=7, justify="right"),
            Column("scheduled", [fmt_time(j.scheduled_at) for j in jobs], rank=6),
            Column("updated", [fmt_time(j.updated_at) for j in jobs], keep=True),
        ],
        width,
    )


def cmd_jobs_list(args: argparse.Namespace) -> int:
    app = ready_app(args)
    try:
        jobs = app.job_manager.list_jobs(
            status=args.status, queue=args.queue, task_name=_task_name(app, args),
            limit=args.limit,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print_json([j.to_dict() for j in jobs])
        return 0
    out = console()
    out.print(jobs_table(jobs, out.width))
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from tracedjobs.tui.render import attempts_summary

    app = ready_app(args)
    job = app.job_manager.get_job(args.id)
    if args.json:
        print_json(job.to_dict())
        return 0
    out = console()
    out.print(
        f"[bold]job {job.id}[/]  {job.task_name}  queue={job.queue_name}  "
        f"status=[bold]{job.status}[/]  {attempts_summary(job)}  priority={job.priority}"
    )
    out.print(
        f"  lock={job.lock or '-'}  queueing_lock={job.queueing_lock or '-'}  "
        f"scheduled={fmt_time(job.scheduled_at)}  created={fmt_time(job.created_at)}"
    )
    out.print(f"  trace id: {job.trace_id or '-'}")
    out.print("  args: " + json.dumps(job.args), markup=False)
    out.print("[bold]events[/]")
    for event in job.events:
        detail = f"  {json.dumps(event.detail)}" if event.detail else ""
        out.print(f"  {fmt_time(event.at)}  {event.type}{detail}", markup=False)
    out.print("[bold]attempts[/]")
    for a in job.attempt_records:
        duration = f"{a.duration:.3f}s" if a.duration is not None else "running"
        line = (
            f"  #{a.attempt}  {fmt_time(a.started_at)}  {a.outcome or 'running'}  "
            f"{duration}  worker={a.worker_name or '-'}  trace={a.trace_id or '-'}"
        )
        out.print(line, markup=False)
        if a.error_type:
            out.print(f"      {a.error_type}: {a.error_message}", markup=False)
        if a.traceback and args.traceback:
            out.print("      " + a.traceback.rstrip().replace("\n", "\n      "), markup=False)
    return 0


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    app = ready_app(args)
    if args.failed == bool(args.ids):
        raise UsageError("give job ids, or --failed (with --task/--queue/--since), not both")
    if args.failed:
        since = parse_when(args.since) if args.since else None
        ids = app.job_manager.failed_job_ids(
            queue=args.queue, task_name=_task_name(app, args), since=since
        )
    else:
        ids = args.ids
    retried: list[int] = []
    errors: list[dict[str, Any]] = []
    for job_id in ids:
        try:
            app.job_manager.retry_job_by_id(job_id)
            retried.append(job_id)
        except TracedJobsError as exc:
            errors.append({"id": job_id, "error": str(exc)})
            if not args.json:
                stderr(f"tracedjobs: {exc}")
    if args.json:
        print_json({"retried": retried, "errors": errors})
    else:
        print(f"retried {len(retried)} job(s)")
    return 1 if errors else 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    app = ready_app(args)
    results: list[dict[str, Any]] = []
    errors = 0
    for job_id in args.ids:
        try:
            changed = app.job_manager.cancel_job_by_id(job_id, abort=args.abort)
            status = str(app.job_manager.get_job_status(job_id))  # JobNotFound: no such job
        except TracedJobsError as exc:
            errors += 1
            results.append({"id": job_id, "changed": False, "error": str(exc)})
            if not args.json:
                stderr(f"tracedjobs: {exc}")
            continue
        results.append({"id": job_id, "changed": changed, "status": status})
        if args.json:
            errors += not changed
        elif changed:
            print(f"job {job_id}: {status}")
        else:
            errors += 1
            hint = " (use --abort to stop a running job)" if status == "doing" else ""
            stderr(f"tracedjobs: job {job_id} is {status}, nothing to cancel{hint}")
    if args.json:
        print_json(results)
    return 1 if errors else 0


def _worker_names(app: Any, jobs: list[Any]) -> dict[int, str]:
    """Job id → the name of the worker that holds it (from the attempt when its row is gone)."""
    live = {str(w["id"]): str(w["name"]) for w in app.job_manager.list_workers()}
    names: dict[int, str] = {}
    for job in jobs:
        name = live.get(job.worker_id or "")
        if name is None:
            # A dead worker's row may already be pruned; its attempt remembers the name.
            attempts = app.job_manager.get_job(job.id).attempt_records
            current = [a for a in attempts if a.id == job.attempt_id] or attempts[-1:]
            name = current[0].worker_name if current and current[0].worker_name else None
        names[job.id] = name or "-"
    return names


def cmd_stalled(args: argparse.Namespace) -> int:
    app = ready_app(args)
    jobs = app.job_manager.get_stalled_jobs_sync(seconds_since_heartbeat=args.seconds)
    if args.json and not args.retry:
        print_json([j.to_dict() for j in jobs])
        return 0
    names = _worker_names(app, jobs)
    for job in jobs:
        print(f"{job.id}\t{job.task_name}\t{job.queue_name}\tworker={names[job.id]}")
    if args.retry:
        for job in jobs:
            app.job_manager.retry_job_sync(job)
        print(f"retried {len(jobs)} stalled job(s)")
    elif not jobs:
        print("no stalled jobs")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from tracedjobs.utils import parse_duration

    try:
        older_than = parse_duration(args.older_than)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    statuses = ["succeeded", "cancelled", "aborted"] + (["failed"] if args.include_failed else [])
    app = ready_app(args)
    count = app.job_manager.prune_jobs(older_than, statuses)
    print(f"deleted {count} finished job(s) older than {args.older_than} ({', '.join(statuses)})")
    return 0
