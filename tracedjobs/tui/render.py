"""Rich renderables for `tracedjobs top`: used by ``--once`` and by the interactive app."""

from __future__ import annotations

import datetime
import json
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tracedjobs.tui.fit import Column, fitted_table
from tracedjobs.tui.model import Snapshot, TailEntry, trace_link

STATUS_STYLE = {
    "todo": "cyan",
    "doing": "yellow",
    "aborting": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "lost": "red",
    "cancelled": "dim",
    "aborted": "magenta",
}


def make_console() -> Console:
    """A console for command output whose closed pipe ends the command like any other.

    Rich answers a closed pipe with ``SystemExit(1)``; raising ``BrokenPipeError`` instead
    lets the command line end every command the same quiet way.
    """
    console = Console(highlight=False)

    def broken_pipe() -> None:
        raise BrokenPipeError

    console.on_broken_pipe = broken_pipe  # type: ignore[method-assign]
    return console


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def fmt_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def short_task(name: str) -> str:
    """``app.tasks.send_email`` → ``send_email`` (the full name is in the detail view)."""
    return name.rsplit(".", 1)[-1]


def _table(*columns: str, right: tuple[str, ...] = ()) -> Table:
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=False, show_edge=False)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", no_wrap=True)
    return table


def header(snapshot: Snapshot | None, *, error: str | None = None, database: str = "",
           width: int = 80, stale_for: float | None = None) -> Text:
    """Two lines (more with an error, stale data or a filter); short labels below 120 columns.

    The time comes before the database URL so a narrow terminal cuts the URL, not the time.
    ``stale_for`` (seconds since the last successful refresh) marks a screen that is not live.
    """
    wide = width >= 120
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" tracedjobs top", style="bold")
    if snapshot:
        text.append(f"  {fmt_time(snapshot.now)}", style="dim")
        text.append(f"  schema {snapshot.schema_version}")
    text.append(f" — {snapshot.database if snapshot else database}")
    if error:
        text.append("\n ")
        text.append(error, style="bold white on red")
    if stale_for is not None:
        text.append("\n ")
        text.append(f"NOT LIVE: last data {fmt_age(stale_for)} old", style="bold white on red")
    if snapshot is None:
        return text
    s = snapshot
    failure = "-" if s.failure_percent is None else f"{s.failure_percent:.1f}%"
    text.append("\n ")
    text.append(f"{s.jobs_per_second:.1f} jobs/s", style="bold")
    if wide:
        text.append(f" · failures {failure} · ready {s.ready} · running {s.running}"
                    f" · oldest ready {fmt_age(s.oldest_ready_age)} · workers ")
    else:
        text.append(f" · fail {failure} · ready {s.ready} · run {s.running}"
                    f" · oldest {fmt_age(s.oldest_ready_age)} · ")
    text.append(f"{s.workers_alive} alive", style="green")
    text.append(" · ")
    text.append(f"{s.workers_stale} stale", style="bold red" if s.workers_stale else "")
    if s.stalled:
        text.append(" · ")
        text.append(f"{s.stalled} stalled", style="bold red")
    if s.filter_text:
        text.append(f"\n filter: {s.filter_text}", style="italic")
    return text


def _with_note(table: Table, note: str | None) -> Any:
    """The table, and below its header a dim note when it has no rows ("no workers")."""
    return Group(table, Text(f" {note}", style="dim")) if note else table


def queues(snapshot: Snapshot, width: int = 80) -> Any:
    qs = snapshot.queues

    def numbers(header: str, values: list[Any], rank: int) -> Column:
        return Column(header, values, rank=rank, justify="right")

    return _with_note(fitted_table([
        Column("QUEUE", [q.name for q in qs], keep=True),
        numbers("ready", [str(q.ready) for q in qs], 1),
        numbers("sched", [str(q.scheduled) for q in qs], 5),
        numbers("running", [str(q.running) for q in qs], 2),
        numbers("failed", [Text(str(q.failed), style="red" if q.failed else "") for q in qs], 3),
        numbers("done/1m", [str(q.done_1m) for q in qs], 4),
        numbers("oldest", [fmt_age(q.oldest_ready_age) for q in qs], 6),
        numbers("wait p95", [fmt_age(q.wait_p95) for q in qs], 7),
    ], width), None if qs else "no jobs yet")


def _state(w: Any) -> Text:
    state = Text("alive", style="green") if w.alive else Text("STALE", style="bold red")
    if w.stalled:
        state.append(f" {w.stalled} stalled", style="bold white on red")
    return state


def workers(snapshot: Snapshot, width: int = 80) -> Any:
    ws = snapshot.workers
    return _with_note(fitted_table([
        Column("WORKER", [w.name for w in ws], min_width=12),
        Column("host:pid", [f"{w.hostname}:{w.pid}" for w in ws], rank=4, min_width=10),
        Column("queues", [",".join(w.queues) if w.queues else "all" for w in ws], rank=5,
               min_width=6),
        Column("running", [f"{w.running}/{w.concurrency}" for w in ws], rank=2, justify="right"),
        Column("beat", [fmt_age(w.heartbeat_age) for w in ws], rank=3, justify="right"),
        Column("state", [_state(w) for w in ws], keep=True),
    ], width), None if ws else "no workers")


def transition(entry: TailEntry) -> Text:
    old, new = entry.transition
    text = Text()
    if old:
        text.append(old, style=STATUS_STYLE.get(old, ""))
        text.append("→")
    else:
        text.append("new→")
    text.append(new, style=STATUS_STYLE.get(new, ""))
    return text


TAIL_COLUMNS = ("time", "job", "task", "queue", "transition", "att", "duration", "error", "trace")


def tail_cells(entry: TailEntry) -> tuple[Any, ...]:
    return (
        fmt_time(entry.at),
        f"#{entry.job_id}",
        short_task(entry.task_name),
        entry.queue_name,
        transition(entry),
        str(entry.attempt) if entry.attempt else "",
        f"{entry.duration:.2f}s" if entry.duration is not None else "",
        Text(entry.error_type or "", style="red"),
        (entry.trace_id or "")[:8],
    )


JOB_COLUMNS = ("job", "task", "queue", "status", "att", "updated", "error", "trace")


def job_cells(job: Any) -> tuple[Any, ...]:
    return (
        f"#{job.id}",
        short_task(job.task_name),
        job.queue_name,
        Text(job.status, style=STATUS_STYLE.get(job.status, "")),
        str(job.attempts),
        fmt_time(job.at),
        Text(job.error_type or "", style="red"),
        (job.trace_id or "")[:8],
    )


def tail(snapshot: Snapshot, limit: int = 10, width: int = 80) -> Any:
    entries = snapshot.tail[:limit]
    cells = [tail_cells(e) for e in entries]
    # Ranks follow TAIL_COLUMNS: time and job id are never cut nor dropped.
    ranks = {"time": None, "job": None, "transition": 0, "task": 1, "error": 2, "duration": 3,
             "queue": 4, "att": 5, "trace": 6}
    # Task names and errors may be cut, to these widths; other columns are dropped whole.
    cut_to = {"task": 12, "error": 10}
    return _with_note(fitted_table([
        Column(name, [row[i] for row in cells], keep=ranks[name] is None,
               rank=ranks[name] or 0, min_width=cut_to.get(name))
        for i, name in enumerate(TAIL_COLUMNS)
    ], width), None if entries else "no events yet")


def failures(snapshot: Snapshot, limit: int = 5, width: int = 80) -> Any:
    fs = snapshot.failures[:limit]

    def message(f: Any) -> Text:
        text = f"{f.error_type or ''}: {f.error_message or ''}".strip(": ")
        return Text(text.splitlines()[0] if text else "", style="red")

    return _with_note(fitted_table([
        Column("FAILED", [f"#{f.id}" for f in fs], keep=True),
        Column("task", [short_task(f.task_name) for f in fs], rank=1, min_width=8),
        Column("att", [str(f.attempts) for f in fs], rank=3, justify="right"),
        Column("error", [message(f) for f in fs], rank=2, min_width=10),
        Column("at", [fmt_time(f.at) for f in fs], keep=True),
    ], width), None if fs else "no failed jobs")


def matching(snapshot: Snapshot, limit: int = 20, width: int = 80) -> Any:
    cells = [job_cells(j) for j in snapshot.jobs[:limit]]
    ranks = {"job": None, "status": None, "updated": None, "task": 1, "error": 2, "queue": 3,
             "att": 4, "trace": 5}
    cut_to = {"task": 12, "error": 10}
    return fitted_table([
        Column(name, [row[i] for row in cells], keep=ranks[name] is None,
               rank=ranks[name] or 0, min_width=cut_to.get(name))
        for i, name in enumerate(JOB_COLUMNS)
    ], width)


def searched(snapshot: Snapshot) -> str:
    """How far the matching list looked, when not through every job."""
    return f" (among the newest {snapshot.searched:,} jobs)" if snapshot.searched else ""


def snapshot_view(snapshot: Snapshot, width: int = 80) -> Group:
    """The whole screen as one renderable (``--once``), fitted to ``width`` columns."""
    parts: list[RenderableType] = [
        header(snapshot, width=width), Text(""), queues(snapshot, width), Text(""),
        workers(snapshot, width), Text(""), Text(" LIVE", style="bold"),
        tail(snapshot, width=width), Text(""), Text(" RECENT FAILURES", style="bold"),
        failures(snapshot, width=width),
    ]
    if snapshot.filter_text:
        parts += [Text(""), Text(f" MATCHING {snapshot.filter_text}{searched(snapshot)}",
                                 style="bold"),
                  matching(snapshot, width=width)]
    return Group(*parts)


def attempts_summary(job: Any) -> str:
    """Attempts so far, counting the one running now: ``attempts 2 (#2 running)``.

    ``job.attempts`` counts only finished attempts (Procrastinate's meaning, 0 while the
    first one runs); next to a running attempt #1 that reads as a contradiction.
    """
    records = job.attempt_records
    running = [a for a in records if a.outcome is None]
    text = f"attempts={len(records)}"
    return f"{text} (#{running[-1].attempt} running)" if running else text


def job_detail(job: Any, trace_url: str | None = None) -> Group:
    """A job with pretty-printed args, its event timeline and every attempt."""
    from rich.syntax import Syntax

    def when(value: datetime.datetime | None) -> str:
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"

    parts: list[RenderableType] = []
    title = Text()
    title.append(f"job #{job.id}  ", style="bold")
    title.append(job.task_name)
    title.append(f"  queue {job.queue_name}  ")
    title.append(str(job.status), style=STATUS_STYLE.get(str(job.status), ""))
    title.append(f"  {attempts_summary(job).replace('=', ' ')}  priority {job.priority}")
    parts.append(title)
    parts.append(Text(f"created {when(job.created_at)}  scheduled {when(job.scheduled_at)}  "
                      f"lock {job.lock or '-'}  queueing lock {job.queueing_lock or '-'}"))
    trace_ids = [job.trace_id] + [a.trace_id for a in job.attempt_records]
    trace_id = next((t for t in trace_ids if t), None)
    line = Text(f"trace id {trace_id or '-'}")
    link = trace_link(trace_url, trace_id)
    if link:
        line.append("  ")
        line.append(link, style=f"underline link {link}")
    parts.append(line)
    parts.append(Text("\nargs", style="bold"))
    parts.append(Syntax(json.dumps(job.args, indent=2, sort_keys=True), "json",
                        theme="ansi_dark", background_color="default"))
    parts.append(Text("\nevents", style="bold"))
    events = _table("at", "event", "detail")
    for event in job.events:
        events.add_row(when(event.at), event.type,
                       json.dumps(event.detail) if event.detail else "")
    parts.append(events)
    parts.append(Text("\nattempts", style="bold"))
    for a in job.attempt_records:
        head = Text(f" #{a.attempt}  {when(a.started_at)}  ")
        outcome = a.outcome or "running"
        head.append(outcome, style=STATUS_STYLE.get(outcome, "yellow"))
        duration = f"{a.duration:.3f}s" if a.duration is not None else "-"
        head.append(f"  {duration}  worker {a.worker_name or '-'}  "
                    f"wait {fmt_age(a.queue_wait)}  trace {a.trace_id or '-'}")
        attempt_link = trace_link(trace_url, a.trace_id)
        if attempt_link:
            head.append("  ")
            head.append(attempt_link, style=f"underline link {attempt_link}")
        parts.append(head)
        if a.error_type or a.error_message:
            parts.append(Text(f"    {a.error_type}: {a.error_message}", style="red"))
        if a.traceback:
            parts.append(Text(a.traceback.rstrip(), style="dim"))
    if not job.attempt_records:
        parts.append(Text(" not run yet", style="dim"))
    return Group(*parts)
