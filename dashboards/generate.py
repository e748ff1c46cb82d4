"""Writes the Grafana dashboards of tracedjobs from one description, so that they agree.

    python dashboards/generate.py           # rewrites tracedjobs.json and tracedjobs-task.json
    python dashboards/generate.py --check   # exits 1 if the checked-in JSON is out of date

Plain Python dicts in Grafana's dashboard JSON model (schemaVersion 39, Grafana 10/11): no
dependency. Panels that show what an alert watches query the recording rules of alerts.yaml
(`tracedjobs:…`), so the dashboards and the alerts show the same numbers; the rest query the
raw metrics with `$__rate_interval`. Every histogram panel over the raw buckets asks for
exemplars: each dot is one attempt, linked to its trace through the datasource's
`exemplarTraceIdDestinations` (deploy/grafana/provisioning/datasources/datasources.yaml).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

QUEUE = "messaging_destination_name"
TASK = "tracedjobs_task_name"
OUTCOME = "tracedjobs_job_outcome"
STATUS = "tracedjobs_job_status"
CONSUMED = "messaging_client_consumed_messages_total"
SENT = "messaging_client_sent_messages_total"
DURATION = "messaging_process_duration_seconds_bucket"
WAIT = "tracedjobs_job_queue_wait_seconds_bucket"
FAILING = 'tracedjobs_job_outcome=~"failed|retried|lost"'
FINISHED = 'tracedjobs_job_outcome=~"succeeded|failed|retried|lost"'
RUNNING_AGAIN = 'tracedjobs_job_outcome=~"retried|lost|deferred"'
# The thresholds of the alerts (alerts.yaml), drawn on the panels that show their numbers.
FAILURE_RATIO = 0.2
QUEUE_WAIT_P95 = 300
OLDEST_READY = 600
BACKLOG_GROWTH = 0.1
TASK_DASHBOARD = "/d/tracedjobs-task/tracedjobs-task"
OVERVIEW_DASHBOARD = "/d/tracedjobs/tracedjobs"


def sel(*extra: str, service: bool = True, queue: bool = True, task: bool = True) -> str:
    """A label selector with the dashboard's variables."""
    parts = []
    if service:
        parts.append('job=~"$service"')
    if queue:
        parts.append(f'{QUEUE}=~"$queue"')
    if task:
        parts.append(f'{TASK}=~"$task"')
    return "{" + ", ".join([*parts, *extra]) + "}"


def rate(metric: str, selector: str) -> str:
    return f"rate({metric}{selector}[$__rate_interval])"


def quantile(q: float, metric: str, selector: str) -> str:
    return f"histogram_quantile({q}, sum by (le) ({rate(metric, selector)}))"


# -- panels ---------------------------------------------------------------------------------


def target(
    expr: str,
    legend: str = "",
    *,
    exemplar: bool = False,
    instant: bool = False,
    fmt: str = "time_series",
) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "exemplar": exemplar,
        "range": not instant,
        "instant": instant,
        "format": fmt,
    }


def _thresholds(red_at: float | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_at is not None:
        steps.append({"color": "red", "value": red_at})
    return {"mode": "absolute", "steps": steps}


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str,
    stack: bool = False,
    alert_threshold: float | None = None,
    width: int = 12,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 40 if stack else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "line" if alert_threshold is not None else "off"},
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": custom,
                "thresholds": _thresholds(alert_threshold),
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "_width": width,
    }


def throughput_by_outcome(selector: str) -> dict[str, Any]:
    return timeseries(
        "Throughput by outcome",
        "Finished attempts per second, by outcome (succeeded, failed, retried, deferred, "
        "cancelled, aborted, lost).",
        [target(f"sum by ({OUTCOME}) ({rate(CONSUMED, selector)})", "{{tracedjobs_job_outcome}}")],
        unit="ops",
        stack=True,
    )


def percentiles(title: str, description: str, metric: str, selector: str) -> dict[str, Any]:
    """p50 / p95 / p99 of a raw histogram, with exemplars (each dot: one attempt's trace)."""
    return timeseries(
        title,
        description,
        [
            target(quantile(q, metric, selector), f"p{round(q * 100)}", exemplar=True)
            for q in (0.5, 0.95, 0.99)
        ],
        unit="s",
    )


def stat(
    title: str,
    description: str,
    expr: str,
    *,
    unit: str,
    red_at: float | None = None,
    decimals: int | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "thresholds": _thresholds(red_at)}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, instant=True)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
        },
        "_width": 6,
        "_height": 4,
    }


def heatmap(title: str, description: str, metric: str, selector: str) -> dict[str, Any]:
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [
            target(
                f"sum by (le) ({rate(metric, selector)})", "{{le}}", exemplar=True, fmt="heatmap"
            )
        ],
        "fieldConfig": {"defaults": {"unit": "s"}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "scale": "exponential",
                "exponent": 0.5,
            },
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "rowsFrame": {"layout": "auto"},
            "yAxis": {"axisPlacement": "left", "unit": "s"},
            "tooltip": {"mode": "single", "yHistogram": True},
            "legend": {"show": True},
        },
        "_width": 12,
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def _layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids in order; panels flow left to right, 24 columns wide, rows full width."""
    out = []
    x = y = row_height = 0
    for number, panel in enumerate(panels, start=1):
        panel = dict(panel)
        width = panel.pop("_width", 12)
        height = panel.pop("_height", 8)
        if panel["type"] == "row":
            if x:
                y += row_height
            width, height, x = 24, 1, 0
        elif x + width > 24:
            x, y = 0, y + row_height
        panel = {"id": number, **panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}}
        for index, t in enumerate(panel.get("targets", [])):
            t["refId"] = chr(ord("A") + index)
        out.append(panel)
        if panel["type"] == "row":
            y += 1
            row_height = 0
        else:
            x += width
            row_height = max(row_height, height)
            if x >= 24:
                x, y, row_height = 0, y + row_height, 0
    return out


# -- variables ------------------------------------------------------------------------------


def _query_variable(
    name: str, label: str, definition: str, *, multi: bool = True
) -> dict[str, Any]:
    all_selected = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": definition, "refId": f"{name}-var"},
        "definition": definition,
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
        "allValue": ".*" if multi else None,
        "current": all_selected if multi else {},
        "sort": 1,
        "hide": 0,
        "regex": "",
        "options": [],
    }


def variables(*, single_task: bool = False) -> dict[str, Any]:
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {"selected": False, "text": "Prometheus", "value": "prometheus"},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
            },
            # The service is Prometheus' `job`: the scrape job of a worker scraped directly,
            # `service.name` when the collector's exporter is scraped with honor_labels.
            _query_variable("service", "Service", f"label_values({CONSUMED}, job)"),
            _query_variable(
                "queue", "Queue", f'label_values({CONSUMED}{{job=~"$service"}}, {QUEUE})'
            ),
            _query_variable(
                "task",
                "Task",
                f'label_values({CONSUMED}{{job=~"$service", {QUEUE}=~"$queue"}}, {TASK})',
                multi=not single_task,
            ),
        ]
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    templating: dict[str, Any],
    links: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tracedjobs", "opentelemetry"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "annotations": {"list": []},
        "links": links,
        "templating": templating,
        "panels": _layout(panels),
    }


def _link(title: str, url: str) -> dict[str, Any]:
    return {
        "title": title,
        "type": "link",
        "url": url,
        "includeVars": True,
        "keepTime": True,
        "targetBlank": False,
        "asDropdown": False,
        "icon": "dashboard",
        "tags": [],
    }


# -- the overview ---------------------------------------------------------------------------


def _done_in_last_minute(outcomes: str) -> str:
    """Attempts finished in the last minute per queue, as `tracedjobs top` counts them.

    increase() misses the first value of a series born inside the window (a queue's first
    failure, a restarted worker): such series are counted whole instead.
    """
    selector = sel(f'{OUTCOME}=~"{outcomes}"', task=False)
    return (
        f"round(sum by ({QUEUE}) (({CONSUMED}{selector} unless {CONSUMED}{selector} offset 1m)"
        f" or increase({CONSUMED}{selector}[1m])))"
    )


def queues_table() -> dict[str, Any]:
    """The `QUEUES` table of `tracedjobs top`, column for column where Prometheus has it."""
    jobs = "tracedjobs:queue_jobs:max"
    queue = f'{QUEUE}=~"$queue"'
    columns = [
        ("todo", f'sum by ({QUEUE}) ({jobs}{{{queue}, {STATUS}="todo"}})'),
        ("running", f'sum by ({QUEUE}) ({jobs}{{{queue}, {STATUS}=~"doing|aborting"}})'),
        ("failed", f'sum by ({QUEUE}) ({jobs}{{{queue}, {STATUS}="failed"}})'),
        ("done/1m", _done_in_last_minute("succeeded")),
        ("failed/1m", _done_in_last_minute("failed|retried|lost")),
        ("oldest ready", f"max by ({QUEUE}) (tracedjobs:queue_oldest_age_seconds:max{{{queue}}})"),
    ]
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    return {
        "type": "table",
        "title": "Queues (as in tracedjobs top)",
        "description": (
            "The QUEUES table of `tracedjobs top`: jobs in todo (ready and scheduled), running "
            "(doing, aborting) and failed, from the database-wide gauges; attempts that "
            "succeeded and that failed, were retried or lost in the last minute; age of the "
            "oldest ready job. Same definitions as top (a test compares them)."
        ),
        "datasource": DATASOURCE,
        "targets": [target(expr, name, instant=True, fmt="table") for name, expr in columns],
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        QUEUE: "queue",
                        **{
                            f"Value #{ref}": name
                            for ref, (name, _) in zip(refs, columns, strict=True)
                        },
                    },
                },
            },
        ],
        "fieldConfig": {
            "defaults": {"unit": "none", "decimals": 0},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": "oldest ready"},
                    "properties": [{"id": "unit", "value": "s"}, {"id": "decimals", "value": 1}],
                }
            ],
        },
        "options": {"showHeader": True, "cellHeight": "sm"},
        "_width": 24,
    }


def firing_alerts() -> dict[str, Any]:
    return {
        "type": "table",
        "title": "Firing alerts",
        "description": (
            "Alerts of dashboards/alerts.yaml firing now (Prometheus' ALERTS series). Each has "
            "a runbook in docs/operations.md."
        ),
        "datasource": DATASOURCE,
        "targets": [
            target(
                'ALERTS{alertname=~"Tracedjobs.*", alertstate="firing"}', instant=True, fmt="table"
            )
        ],
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {
                        "Time": True,
                        "Value": True,
                        "__name__": True,
                        "alertstate": True,
                        "instance": True,
                    },
                    "renameByName": {QUEUE: "queue", TASK: "task"},
                },
            }
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "_width": 24,
        "_height": 5,
    }


def slowest_tasks() -> dict[str, Any]:
    task_link = (
        TASK_DASHBOARD + "?${datasource:queryparam}&var-service=$__all"
        "&var-queue=${__field.labels.messaging_destination_name}"
        "&var-task=${__field.labels.tracedjobs_task_name}&${__url_time_range}"
    )
    return {
        "type": "bargauge",
        "title": "Top 10 slowest tasks (p95 duration, 5m)",
        "description": "Tasks by the p95 of their attempts' duration; click one to drill into it.",
        "datasource": DATASOURCE,
        "targets": [
            target(
                "topk(10, tracedjobs:process_duration_seconds:p95_rate5m"
                f'{{{QUEUE}=~"$queue", {TASK}=~"$task"}})',
                "{{tracedjobs_task_name}} ({{messaging_destination_name}})",
                instant=True,
            )
        ],
        "fieldConfig": {
            "defaults": {
                "unit": "s",
                "thresholds": _thresholds(None),
                "links": [{"title": "Open the task dashboard", "url": task_link}],
            },
            "overrides": [],
        },
        "options": {
            "orientation": "horizontal",
            "displayMode": "basic",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
        },
        "_width": 12,
    }


def overview() -> dict[str, Any]:
    s = sel()
    panels = [
        row("Alerts"),
        firing_alerts(),
        row("Throughput"),
        throughput_by_outcome(s),
        timeseries(
            "Failure ratio",
            "Attempts that failed, were retried or were lost, over all finished attempts "
            "(5-minute window, as TracedjobsFailureRatioHigh: the red line is its threshold).",
            [
                target(
                    f"sum(tracedjobs:attempts:rate5m{sel(FAILING)}) / "
                    f"sum(tracedjobs:attempts:rate5m{sel(FINISHED)})",
                    "all selected tasks",
                ),
                target(
                    f"tracedjobs:attempt_failures:ratio_rate5m{s}",
                    "{{tracedjobs_task_name}} ({{messaging_destination_name}})",
                ),
            ],
            unit="percentunit",
            alert_threshold=FAILURE_RATIO,
        ),
        timeseries(
            "Deferred and run, by queue",
            "Jobs deferred per second (by producers) and attempts finished per second (by "
            "workers). Deferred with nothing run is TracedjobsSentNotConsumed.",
            [
                target(
                    f'sum by ({QUEUE}) (tracedjobs:sent:rate5m{{{QUEUE}=~"$queue"}})',
                    "deferred {{messaging_destination_name}}",
                ),
                target(
                    f"sum by ({QUEUE}) (tracedjobs:attempts:rate5m{s})",
                    "run {{messaging_destination_name}}",
                ),
            ],
            unit="ops",
            width=24,
        ),
        row("Latency (click an exemplar dot to open the job's trace)"),
        percentiles(
            "Queue wait p50 / p95 / p99",
            "From when a job became runnable (scheduled_at, else deferral) to the start of "
            "the attempt. Exemplar dots link to the attempt's trace.",
            WAIT,
            s,
        ),
        percentiles(
            "Processing duration p50 / p95 / p99",
            "Duration of each attempt in its worker. Exemplar dots link to the attempt's trace.",
            DURATION,
            s,
        ),
        timeseries(
            "Queue wait p95 by queue",
            "As TracedjobsQueueWaitHigh sees it (5-minute window; the red line is its threshold).",
            [
                target(
                    f'tracedjobs:queue_wait_seconds:p95_rate5m{{{QUEUE}=~"$queue"}}',
                    "{{messaging_destination_name}}",
                )
            ],
            unit="s",
            alert_threshold=QUEUE_WAIT_P95,
        ),
        slowest_tasks(),
        row("Queues"),
        queues_table(),
        timeseries(
            "Queue depth by status",
            "Jobs in the database by status (the elected worker's gauges).",
            [
                target(
                    f"sum by ({STATUS}) (tracedjobs:queue_jobs:max"
                    f'{{{QUEUE}=~"$queue", {STATUS}=~"todo|doing|aborting|failed"}})',
                    "{{tracedjobs_job_status}}",
                )
            ],
            unit="none",
            stack=True,
            width=8,
        ),
        timeseries(
            "Oldest ready job age",
            "Age of the oldest job that is ready to run and has not started (red line: "
            "TracedjobsOldestReadyJobTooOld).",
            [
                target(
                    f'tracedjobs:queue_oldest_age_seconds:max{{{QUEUE}=~"$queue"}}',
                    "{{messaging_destination_name}}",
                )
            ],
            unit="s",
            alert_threshold=OLDEST_READY,
            width=8,
        ),
        timeseries(
            "Backlog growth",
            "Trend of the todo count over 10 minutes, jobs per second (red line: "
            "TracedjobsBacklogGrowing, which also needs more than 100 jobs waiting).",
            [
                target(
                    f'deriv(tracedjobs:queue_jobs:max{{{QUEUE}=~"$queue", {STATUS}="todo"}}[10m])',
                    "{{messaging_destination_name}}",
                )
            ],
            unit="none",
            alert_threshold=BACKLOG_GROWTH,
            width=8,
        ),
        row("Workers"),
        timeseries(
            "Workers alive / stale",
            "Registered workers by liveness (heartbeat newer than the stalled timeout or not).",
            [target("tracedjobs:workers:max", "{{state}}")],
            unit="none",
        ),
        timeseries(
            "Heartbeat age by worker",
            "Seconds since each registered worker's last heartbeat.",
            [
                target(
                    "max by (host_name, tracedjobs_worker_id) "
                    "(tracedjobs_worker_heartbeat_age_seconds)",
                    "{{host_name}} {{tracedjobs_worker_id}}",
                )
            ],
            unit="s",
        ),
    ]
    return dashboard(
        "tracedjobs",
        "tracedjobs",
        "Jobs, queues and workers of tracedjobs (OpenTelemetry metrics via Prometheus, "
        "with the recording rules of dashboards/alerts.yaml).",
        panels,
        variables(),
        [_link("Task detail", TASK_DASHBOARD)],
    )


# -- one task -------------------------------------------------------------------------------


def task_detail() -> dict[str, Any]:
    s = sel()
    panels = [
        row("$task"),
        stat(
            "Attempts / s", "Finished attempts per second.", f"sum({rate(CONSUMED, s)})", unit="ops"
        ),
        stat(
            "Failure ratio (5m)",
            "Attempts that failed, were retried or lost, over all finished attempts.",
            f"(sum(tracedjobs:attempts:rate5m{sel(FAILING)}) or vector(0)) / "
            f"sum(tracedjobs:attempts:rate5m{sel(FINISHED)})",
            unit="percentunit",
            red_at=FAILURE_RATIO,
        ),
        stat(
            "Duration p95 (5m)",
            "p95 of the attempts' duration.",
            f"histogram_quantile(0.95, sum by (le) "
            f"(tracedjobs:process_duration_seconds_bucket:rate5m{s}))",
            unit="s",
        ),
        stat(
            "Queue wait p95 (5m)",
            "p95 of the time from runnable to start.",
            "histogram_quantile(0.95, sum by (le) "
            f"(tracedjobs:queue_wait_seconds_bucket:rate5m{s}))",
            unit="s",
        ),
        row("Outcomes"),
        throughput_by_outcome(s),
        timeseries(
            "Errors by error.type",
            "Attempts that failed, were retried or lost, per second, by exception type "
            "(`error.type`; WorkerLost for lost attempts).",
            [target(f"sum by (error_type) ({rate(CONSUMED, sel(FAILING))})", "{{error_type}}")],
            unit="ops",
            stack=True,
        ),
        timeseries(
            "Retries, lost and deferred attempts",
            "Attempts that will run again: retried after an error, lost with their worker, "
            "or deferred by the task (DeferJob).",
            [
                target(
                    f"sum by ({OUTCOME}) ({rate(CONSUMED, sel(RUNNING_AGAIN))})",
                    "{{tracedjobs_job_outcome}}",
                )
            ],
            unit="ops",
        ),
        timeseries(
            "Deferred and attempted",
            "Jobs of this task deferred per second, and attempts finished per second: more "
            "attempts than jobs means retries.",
            [
                target(f"sum({rate(SENT, sel(service=False))})", "deferred"),
                target(f"sum({rate(CONSUMED, s)})", "attempts"),
            ],
            unit="ops",
        ),
        row("Latency (click an exemplar dot to open the attempt's trace)"),
        heatmap(
            "Duration",
            "Attempts by duration over time; exemplar dots link to traces.",
            DURATION,
            s,
        ),
        heatmap(
            "Queue wait",
            "Attempts by queue wait over time; exemplar dots link to traces.",
            WAIT,
            s,
        ),
        percentiles(
            "Duration p50 / p95 / p99",
            "Duration of each attempt in its worker.",
            DURATION,
            s,
        ),
        percentiles(
            "Queue wait p50 / p95 / p99",
            "From when the job became runnable to the start of the attempt.",
            WAIT,
            s,
        ),
    ]
    return dashboard(
        "tracedjobs-task",
        "tracedjobs task",
        "One task of tracedjobs: outcomes, errors by type, retries, duration and queue wait "
        "with exemplar links to traces.",
        panels,
        variables(single_task=True),
        [_link("Overview", OVERVIEW_DASHBOARD)],
    )


DASHBOARDS = {"tracedjobs.json": overview, "tracedjobs-task.json": task_detail}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a JSON file is stale")
    options = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if options.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(
            f"out of date: {', '.join(stale)} (run python dashboards/generate.py)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
