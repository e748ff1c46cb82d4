"""What `tracedjobs top` shows: a plain data snapshot, loaded with one query per refresh.

Also the filter language of the `/` prompt (``queue:mail status:failed args.user:42
age>10m``), compiled to a WHERE fragment over ``tracedjobs_jobs j`` from fixed pieces: user
values only ever travel as bound parameters.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import shlex
from typing import Any

from psycopg import sql

from tracedjobs.jobs import Status
from tracedjobs.utils import parse_duration, redact_url

TAIL_LIMIT = 200
FAILURES_LIMIT = 10
JOBS_LIMIT = 100
# How many of the newest jobs the matching list reads under an ``args.`` filter: a
# selective one would otherwise read the table back to its start on every refresh
# (~0.6 ms per 1,000 jobs).
ARGS_SCAN_WINDOW = 50_000
_ALL_JOBS = 2**62
# Attempts finished in this window feed the queue-wait p95.
RATE_WINDOW_SECONDS = 300.0

# -- the filter language --------------------------------------------------------------


class FilterError(ValueError):
    """A filter the `/` prompt cannot understand (its message is shown as is)."""


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """A compiled filter: a WHERE fragment and the parameters it binds."""

    text: str = ""
    where: sql.Composable = dataclasses.field(default_factory=lambda: sql.SQL("TRUE"))
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    # An ``args.`` part has no index: the matching-jobs list then reads only the newest
    # ARGS_SCAN_WINDOW jobs (bulk actions and the failures list still see every job).
    bounded: bool = False

    @property
    def scan_window(self) -> int | None:
        """How many of the newest jobs the matching list reads (None: every job)."""
        return ARGS_SCAN_WINDOW if self.bounded else None

    @property
    def active(self) -> bool:
        return bool(self.text.strip())


_KEY_VALUE = re.compile(
    r"^(?P<key>args\.[^:<>=]*|[A-Za-z_]\w*)(?P<op>:|>=|<=|>|<|=)(?P<value>.*)$", re.DOTALL
)
_STATUSES = [s.value for s in Status]
FILTER_HELP = (
    "queue:NAME task:NAME status:failed[,todo] error:TEXT args.KEY:VALUE id:N "
    "age>10m age<1h (a * in queue/task is a wildcard)"
)


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def parse_filter(text: str) -> JobFilter:
    """Compile filter text; raises FilterError with a one-line reason."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise FilterError(f"cannot read the filter: {exc}") from None
    parts: list[sql.Composable] = []
    params: dict[str, Any] = {}
    bounded = False

    def bind(value: Any) -> sql.Placeholder:
        name = f"f{len(params)}"
        params[name] = value
        return sql.Placeholder(name)

    for token in tokens:
        match = _KEY_VALUE.match(token)
        if not match:
            raise FilterError(f"{token!r} is not KEY:VALUE or age>DURATION; try {FILTER_HELP}")
        key, op, value = match["key"], match["op"], match["value"]
        if key == "age":
            if op not in (">", "<", ">=", "<="):
                raise FilterError("age needs > or <, e.g. age>10m")
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                raise FilterError(str(exc)) from None
            # ``op`` is one of four fixed strings, never user text.
            parts.append(sql.SQL("j.created_at {} now() - make_interval(secs => {})").format(
                sql.SQL({">": "<", "<": ">", ">=": "<=", "<=": ">="}[op]), bind(seconds)))
            continue
        if op not in (":", "="):
            raise FilterError(f"{key} takes KEY:VALUE, not {key}{op}…")
        if not value:
            raise FilterError(f"{key}: needs a value")
        if key == "task" and "." not in value:
            # The screen shows short names (send_email for myapp.tasks.send_email): a name
            # without a dot matches them as well as a full name.
            pattern = _like(value)
            parts.append(sql.SQL("(j.task_name LIKE {} OR j.task_name LIKE {})").format(
                bind(pattern), bind("%." + pattern)))
        elif key in ("queue", "task"):
            column = sql.SQL("j.queue_name" if key == "queue" else "j.task_name")
            if "*" in value:
                parts.append(sql.SQL("{} LIKE {}").format(column, bind(_like(value))))
            else:
                parts.append(sql.SQL("{} = {}").format(column, bind(value)))
        elif key == "status":
            statuses = [s.strip() for s in value.split(",") if s.strip()]
            unknown = [s for s in statuses if s not in _STATUSES]
            if unknown:
                raise FilterError(f"unknown status {unknown[0]!r}; one of {', '.join(_STATUSES)}")
            parts.append(sql.SQL("j.status = ANY ({}::text[])").format(bind(statuses)))
        elif key == "id":
            try:
                parts.append(sql.SQL("j.id = {}").format(bind(int(value))))
            except ValueError:
                raise FilterError(f"id:{value} is not a job id") from None
        elif key == "error":
            parts.append(sql.SQL(
                "EXISTS (SELECT 1 FROM tracedjobs_attempts fa WHERE fa.job_id = j.id "
                "AND (fa.error_type ILIKE {p} OR fa.error_message ILIKE {p}))"
            ).format(p=bind("%" + _like(value) + "%")))
        elif key.startswith("args."):
            path = key.split(".")[1:]
            if not all(path):
                raise FilterError(f"{key} is not args.KEY or args.KEY.SUBKEY")
            parts.append(sql.SQL("j.args #>> {}::text[] = {}").format(bind(path), bind(value)))
            bounded = True
        else:
            raise FilterError(f"unknown filter key {key!r}; try {FILTER_HELP}")
    if not parts:
        return JobFilter()
    return JobFilter(
        text=text.strip(),
        where=sql.SQL(" AND ").join(parts),
        params=params,
        bounded=bounded,
    )


# -- the snapshot ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QueueRow:
    name: str
    ready: int
    scheduled: int
    running: int
    failed: int
    done_1m: int
    failed_1m: int
    finished_10s: int
    oldest_ready_age: float | None
    wait_p95: float | None


@dataclasses.dataclass(frozen=True)
class WorkerRow:
    id: str
    name: str
    hostname: str
    pid: int
    queues: list[str] | None
    concurrency: int
    heartbeat_age: float
    alive: bool
    running: int

    @property
    def stalled(self) -> int:
        """Jobs this worker holds while stale: nobody is running them."""
        return 0 if self.alive else self.running


# What each event means as a status transition (old → new) for the live tail.
TRANSITIONS: dict[str, tuple[str, str]] = {
    "deferred": ("", "todo"),
    "scheduled": ("", "todo"),
    "started": ("todo", "doing"),
    "succeeded": ("doing", "succeeded"),
    "failed": ("doing", "failed"),
    "deferred_for_retry": ("doing", "todo"),
    "rescheduled": ("doing", "todo"),
    "lost": ("doing", "lost"),
    "retried": ("failed", "todo"),
    "cancelled": ("todo", "cancelled"),
    "abort_requested": ("doing", "aborting"),
    "aborted": ("aborting", "aborted"),
}


@dataclasses.dataclass(frozen=True)
class TailEntry:
    key: str  # names the entry across refreshes: e<event id>, d<job id>, s<attempt id>
    at: float
    type: str
    job_id: int
    task_name: str
    queue_name: str
    attempt: int | None
    duration: float | None
    error_type: str | None
    trace_id: str | None

    @property
    def transition(self) -> tuple[str, str]:
        return TRANSITIONS.get(self.type, ("", self.type))


@dataclasses.dataclass(frozen=True)
class FailureRow:
    id: int
    task_name: str
    queue_name: str
    attempts: int
    at: float
    error_type: str | None
    error_message: str | None
    trace_id: str | None


@dataclasses.dataclass(frozen=True)
class JobRow:
    id: int
    task_name: str
    queue_name: str
    status: str
    attempts: int
    at: float
    error_type: str | None
    trace_id: str | None


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One refresh: everything on the screen, as read from the database."""

    database: str
    now: float
    schema_version: int
    stalled: int
    queues: list[QueueRow]
    workers: list[WorkerRow]
    tail: list[TailEntry]
    failures: list[FailureRow]
    jobs: list[JobRow]
    filter_text: str = ""
    searched: int | None = None  # the matching list covers only this many newest jobs

    @property
    def ready(self) -> int:
        return sum(q.ready for q in self.queues)

    @property
    def running(self) -> int:
        return sum(q.running for q in self.queues)

    @property
    def oldest_ready_age(self) -> float | None:
        ages = [q.oldest_ready_age for q in self.queues if q.oldest_ready_age is not None]
        return max(ages) if ages else None

    @property
    def jobs_per_second(self) -> float:
        return sum(q.finished_10s for q in self.queues) / 10.0

    @property
    def failure_percent(self) -> float | None:
        """Share of attempts finished in the last minute that did not succeed."""
        done = sum(q.done_1m for q in self.queues)
        failed = sum(q.failed_1m for q in self.queues)
        return 100.0 * failed / (done + failed) if done + failed else None

    @property
    def workers_alive(self) -> int:
        return sum(w.alive for w in self.workers)

    @property
    def workers_stale(self) -> int:
        return sum(not w.alive for w in self.workers)

    @property
    def last_at(self) -> float:
        """When the newest entry of the tail happened (epoch seconds, database clock)."""
        return max((t.at for t in self.tail), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (``top --json``); times as ISO 8601, ages in seconds."""
        def iso(ts: float) -> str:
            return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat()

        def rows(items: list[Any], time_key: str | None = None) -> list[dict[str, Any]]:
            out = []
            for item in items:
                row = dataclasses.asdict(item)
                if time_key:
                    row[time_key] = iso(row[time_key])
                out.append(row)
            return out

        tail = rows(self.tail, "at")
        for row, entry in zip(tail, self.tail, strict=True):
            row["old_status"], row["new_status"] = entry.transition
        workers = rows(self.workers)
        for row, worker in zip(workers, self.workers, strict=True):
            row["stalled"] = worker.stalled
        return {
            "database": self.database,
            "at": iso(self.now),
            "schema_version": self.schema_version,
            "filter": self.filter_text,
            "jobs_searched": self.searched,  # null: the matching list saw every job
            "summary": {
                "jobs_per_second": self.jobs_per_second,
                "failure_percent": self.failure_percent,
                "ready": self.ready,
                "running": self.running,
                "oldest_ready_age": self.oldest_ready_age,
                "workers_alive": self.workers_alive,
                "workers_stale": self.workers_stale,
                "stalled_jobs": self.stalled,
            },
            "queues": rows(self.queues),
            "workers": workers,
            "tail": tail,
            "failures": rows(self.failures, "at"),
            "jobs": rows(self.jobs, "at"),
        }


@dataclasses.dataclass(frozen=True)
class Options:
    """What to load: the command-line scope and the `/` filter."""

    queue: str | None = None
    task: str | None = None
    seconds: float = 30.0
    filter: JobFilter = dataclasses.field(default_factory=JobFilter)


def snapshot_params(options: Options, after: float = 0.0) -> dict[str, Any]:
    return {
        **options.filter.params,
        "queue": options.queue,
        "task": options.task,
        "seconds": float(options.seconds),
        "window": RATE_WINDOW_SECONDS,
        "after": after,
        "tail_limit": TAIL_LIMIT,
        "failures_limit": FAILURES_LIMIT,
        # The matching-jobs list is only shown (and only worth its query) under a filter.
        "jobs_limit": JOBS_LIMIT if options.filter.active else 0,
        "scan_window": options.filter.scan_window or _ALL_JOBS,
    }


def _build(cls: type, row: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in row.items() if k in names})


def snapshot_from_row(row: dict[str, Any], database: str, options: Options) -> Snapshot:
    return Snapshot(
        database=redact_url(database),
        now=row["now"],
        schema_version=row["schema_version"],
        stalled=row["stalled"],
        queues=[_build(QueueRow, q) for q in row["queues"]],
        workers=[_build(WorkerRow, w) for w in row["workers"]],
        tail=[_build(TailEntry, t) for t in row["tail"]],
        failures=[_build(FailureRow, f) for f in row["failures"]],
        jobs=[_build(JobRow, j) for j in row["jobs"]],
        filter_text=options.filter.text,
        searched=options.filter.scan_window,
    )


def load_snapshot(app: Any, options: Options, *, conn: Any = None) -> Snapshot:
    """One refresh, one query."""
    row = app.job_manager.top_snapshot(options.filter.where, snapshot_params(options), conn=conn)
    return snapshot_from_row(row, app.connector.safe_url, options)


async def load_snapshot_async(
    app: Any, options: Options, *, after: float = 0.0, conn: Any = None
) -> Snapshot:
    """``after``: only tail entries from then on (epoch seconds), e.g. a second before the
    newest one already shown."""
    row = await app.job_manager.top_snapshot_async(
        options.filter.where, snapshot_params(options, after), conn=conn
    )
    return snapshot_from_row(row, app.connector.safe_url, options)


def trace_link(template: str | None, trace_id: str | None) -> str | None:
    """``--trace-url 'https://tempo/…/{trace_id}'`` filled in (None without either)."""
    if not template or not trace_id:
        return None
    return template.replace("{trace_id}", trace_id)
