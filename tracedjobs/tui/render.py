"""Rich renderables for `tracedjobs top`: used by ``--once`` and by the interactive app."""

from __future__ import annotations

import datetime
import json
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

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
           width: int = 80) -> Text:
    """Two lines (three with an error or a filter); short labels below 120 columns."""
    wide = width >= 120
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" tracedjobs top", style="bold")
    text.append(f" — {snapshot.database if snapshot else database}")
    if snapshot:
        text.append(f" (schema {snapshot.schema_version})")
        text.append(f"  {fmt_time(snapshot.now)}", style="dim")
    if error:
        text.append("\n ")
        text.append(error, style="bold white on red")
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


def queues(snapshot: Snapshot) -> Table:
    table = _table("QUEUE", "ready", "sched", "running", "failed", "done/1m", "oldest", "wait p95",
                   right=("ready", "sched", "running", "failed", "done/1m", "oldest", "wait p95"))
    for q in snapshot.queues:
        table.add_row(
            q.name, str(q.ready), str(q.scheduled), str(q.running),
            Text(str(q.failed), style="red" if q.failed else ""), str(q.done_1m),
            fmt_age(q.oldest_ready_age), fmt_age(q.wait_p95),
        )
    if not snapshot.queues:
        table.add_row(Text("no jobs yet", style="dim"))
    return table


def workers(snapshot: Snapshot) -> Table:
    table = _table("WORKER", "host:pid", "queues", "running", "beat", "state",
                   right=("running", "beat"))
    for w in snapshot.workers:
        state = Text("alive", style="green") if w.alive else Text("STALE", style="bold red")
        if w.stalled:
            state.append(f" {w.stalled} stalled", style="bold white on red")
        table.add_row(
            w.name if len(w.name) <= 20 else w.name[:19] + "…",
            f"{w.hostname}:{w.pid}",
            ",".join(w.queues) if w.queues else "all",
            f"{w.running}/{w.concurrency}",
            fmt_age(w.heartbeat_age),
            state,
        )
    if not snapshot.workers:
        table.add_row(Text("no workers", style="dim"))
    return table


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


def tail(snapshot: Snapshot, limit: int = 10) -> Table:
    table = _table(*TAIL_COLUMNS)
    for entry in snapshot.tail[:limit]:
        table.add_row(*tail_cells(entry))
    return table


def failures(snapshot: Snapshot, limit: int = 5) -> Table:
    table = _table("FAILED", "task", "att", "error", "at")
    for f in snapshot.failures[:limit]:
        message = f"{f.error_type or ''}: {f.error_message or ''}".strip(": ")
        table.add_row(f"#{f.id}", short_task(f.task_name), str(f.attempts),
                      Text(message.splitlines()[0] if message else "", style="red"),
                      fmt_time(f.at))
    if not snapshot.failures:
        table.add_row(Text("no failed jobs", style="dim"))
    return table


def snapshot_view(snapshot: Snapshot) -> Group:
    """The whole screen as one renderable (``top --once``)."""
    parts: list[RenderableType] = [
        header(snapshot), Text(""), queues(snapshot), Text(""), workers(snapshot), Text(""),
        Text(" LIVE", style="bold"), tail(snapshot), Text(""),
        Text(" RECENT FAILURES", style="bold"), failures(snapshot),
    ]
    if snapshot.filter_text:
        table = _table(*JOB_COLUMNS)
        for job in snapshot.jobs[:20]:
            table.add_row(*job_cells(job))
        parts += [Text(""), Text(f" MATCHING {snapshot.filter_text}", style="bold"), table]
    return Group(*parts)


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
    title.append(f"  attempts {job.attempts}  priority {job.priority}")
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
