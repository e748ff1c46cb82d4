"""Chaos run (a script, not a test): mixed jobs through 3 workers while everything fails.

    .venv/bin/python bench/chaos.py [--jobs 10000] [--quick] [--outage 30] [--keep]

It starts a PRIVATE PostgreSQL (Debian's binaries, ``--pg-bin``, default
/usr/lib/postgresql/15/bin; initdb in a temporary directory, a free port on 127.0.0.1),
never a shared server, because it restarts and stops it. Then:

1. defers ``--jobs`` jobs (fast, slow and failing-then-retried, each sync and async; see
   bench/chaos_tasks.py), due at moments spread over the whole run, so work flows while
   the faults happen;
2. runs 3 ``tracedjobs worker`` processes (heartbeat 1 s, stalled after 5 s, Prometheus
   ``--metrics-port``) and, on a fixed timeline, SIGKILLs workers (restarting them),
   SIGSTOPs workers for longer than the stalled cutoff (then SIGCONT), restarts PostgreSQL
   (``pg_ctl stop -m immediate``, a crash, then start) and stops it for ``--outage`` s;
   a worker that exits without being killed is a crash: it is counted and restarted;
3. waits until every job has finished (or ``--drain-timeout``), scrapes every worker,
   stops them with SIGTERM and checks the database.

Invariants (exit status 1 if one fails):

- lost = jobs never finished + jobs finished twice (more than one final event or more than
  one succeeded attempt): must be 0.
- re-runs without a lost attempt: attempts whose previous attempt of the same job did not
  end ``retried``, ``lost`` or ``deferred``: must be 0.
- crashes (worker exits we did not cause) and workers that did not stop within 30 s of
  SIGTERM: must be 0.
- consumed counters vs attempt rows, per outcome. Method: every worker process is scraped
  (``messaging_client_consumed_messages_total`` summed by ``tracedjobs_job_outcome``) every
  2 s, just before it is SIGKILLed, and at the end before SIGTERM; the counters of a process
  are its last scrape, summed over all processes. A SIGKILL loses what the process counted
  after its last scrape (its counters die with it), and a kill can land between a commit
  and the counter's increment. So, per outcome, counters must not exceed attempt rows (no
  double counting), and rows minus counters must not exceed the "unscraped" rows: rows that
  worker wrote after its last scrape (from 0.5 s before it), plus ``lost`` rows written in
  the window between a killed worker's last scrape and its death (it may have been the
  rescuer). Processes stopped cleanly must agree exactly.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import tracedjobs  # noqa: E402

APP = "bench.chaos_tasks:app"
FINAL = ("succeeded", "failed", "cancelled", "aborted")
HEARTBEAT = 1.0
STALLED = 5.0
WORKERS = 3
# (task, share of the jobs, seconds it sleeps or None)
MIX: list[tuple[str, float, tuple[float, float] | None]] = [
    ("fast", 0.35, None),
    ("fast_sync", 0.25, None),
    ("flaky", 0.12, None),
    ("flaky_sync", 0.08, None),
    ("slow", 0.12, (0.2, 1.5)),
    ("slow_sync", 0.08, (0.2, 1.0)),
]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CONSUMED = "messaging_client_consumed_messages_total{"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(start: float, text: str) -> None:
    print(f"  t={time.monotonic() - start:6.1f} s  {text}", flush=True)


# -- the private PostgreSQL server -----------------------------------------------------------


class Postgres:
    """initdb + pg_ctl in a temporary directory, on a free port; run as `postgres` if root."""

    def __init__(self, bindir: Path, workdir: Path) -> None:
        self.bindir = bindir
        self.data = workdir / "data"
        self.sockets = workdir / "sockets"
        self.logfile = workdir / "postgres.log"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.up = False

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / program), *args],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed: {result.stderr.strip()}")

    def init(self) -> None:
        self.sockets.mkdir()
        if self.user is not None:
            for path in (self.data.parent, self.sockets):
                shutil.chown(path, self.user, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options,
                  "-w", "-t", "120", "start")  # fmt: skip
        self.up = True

    def stop(self, mode: str = "fast") -> None:
        self.up = False
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"


# -- worker processes ------------------------------------------------------------------------


@dataclass
class Incarnation:
    """One worker process (a slot is restarted as a new incarnation)."""

    slot: int
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started: float
    worker_id: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    scraped_at: float | None = None  # wall time of the last successful scrape
    ended: str | None = None  # killed, crashed, stopped, hung
    ended_at: float | None = None  # wall time
    paused_until: float | None = None  # monotonic

    @property
    def alive(self) -> bool:
        return self.ended is None


def scrape(port: int) -> Counter[str] | None:
    """Consumed counters by outcome from a worker's /metrics, or None if it did not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return None
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(CONSUMED):
            labels, _, value = line.rpartition(" ")
            outcome = re.search(r'tracedjobs_job_outcome="([^"]*)"', labels)
            counts[outcome.group(1) if outcome else "?"] += int(float(value))
    return counts


class Fleet:
    def __init__(self, url: str, workdir: Path, concurrency: int, start: float) -> None:
        self.url = url
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.concurrency = concurrency
        self.start_time = start
        self.all: list[Incarnation] = []
        self.slots: dict[int, Incarnation] = {}
        self.kills = self.stops = self.crashes = 0
        self.crash_notes: list[str] = []

    def spawn(self, slot: int) -> Incarnation:
        port = free_port()
        log_path = self.logs / f"worker{slot}-{len(self.all)}.log"
        env = dict(os.environ)
        env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
        env.update(
            TRACEDJOBS_DATABASE_URL=self.url,
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            PYTHONUNBUFFERED="1",
        )
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tracedjobs.cli", "worker", "--app", APP,
                 "--concurrency", str(self.concurrency),
                 "--heartbeat-interval", str(HEARTBEAT), "--stalled-timeout", str(STALLED),
                 "--polling-interval", "1", "--metrics-port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        inc = Incarnation(slot, proc, port, log_path, time.monotonic())
        self.all.append(inc)
        self.slots[slot] = inc
        return inc

    def scrape_all(self) -> None:
        for inc in self.slots.values():
            if inc.alive and inc.paused_until is None:
                self._scrape(inc)

    def _scrape(self, inc: Incarnation) -> bool:
        counts = scrape(inc.port)
        if counts is None:
            return False
        inc.counts, inc.scraped_at = counts, time.time()
        return True

    def learn_ids(self, db_up: bool) -> None:
        """Map processes to worker ids: from the database when up, else from their log."""
        rows: dict[int, str] = {}
        if db_up:
            try:
                with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
                    rows = {
                        pid: str(wid)
                        for wid, pid in conn.execute("SELECT id, pid FROM tracedjobs_workers")
                    }
            except psycopg.Error:
                rows = {}
        for inc in self.all:
            if inc.worker_id is None and inc.alive:
                inc.worker_id = rows.get(inc.proc.pid) or _id_from_log(inc.log_path)

    def victim(self) -> Incarnation | None:
        """A running, unpaused worker that registered at least 2 s ago."""
        now = time.monotonic()
        ready = [
            inc
            for inc in self.slots.values()
            if inc.alive and inc.paused_until is None and inc.worker_id
            and now - inc.started > 2
        ]  # fmt: skip
        return random.choice(ready) if ready else None

    def kill(self, db_up: bool) -> None:
        inc = self.victim()
        if inc is None or not self._scrape(inc):
            log(self.start_time, "SIGKILL skipped: no worker ready")
            return
        inc.proc.send_signal(signal.SIGKILL)
        inc.proc.wait()
        inc.ended, inc.ended_at = "killed", time.time()
        self.kills += 1
        log(
            self.start_time,
            f"SIGKILL worker {inc.slot} (pid {inc.proc.pid}; {sum(inc.counts.values())} "
            "attempts counted at its last scrape)",
        )
        if db_up:
            self.spawn(inc.slot)

    def pause(self, seconds: float) -> None:
        if sum(1 for i in self.slots.values() if i.alive and i.paused_until is None) < 2:
            return  # keep a worker running to rescue the paused one's jobs
        inc = self.victim()
        if inc is None:
            return
        self._scrape(inc)
        inc.proc.send_signal(signal.SIGSTOP)
        inc.paused_until = time.monotonic() + seconds
        self.stops += 1
        log(self.start_time, f"SIGSTOP worker {inc.slot} (pid {inc.proc.pid}) for {seconds:.0f} s")

    def tend(self, db_up: bool) -> None:
        """Resume paused workers when due; count and restart crashed ones; fill empty slots."""
        for slot, inc in list(self.slots.items()):
            if inc.paused_until is not None and time.monotonic() >= inc.paused_until:
                inc.proc.send_signal(signal.SIGCONT)
                inc.paused_until = None
                log(self.start_time, f"SIGCONT worker {slot} (pid {inc.proc.pid})")
            if inc.alive and inc.proc.poll() is not None:
                inc.ended, inc.ended_at = "crashed", time.time()
                self.crashes += 1
                tail = inc.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                note = f"worker {slot} (pid {inc.proc.pid}) exited {inc.proc.returncode}"
                self.crash_notes.append(f"{note}: {' | '.join(tail)}")
                log(self.start_time, f"CRASH: {note}")
            if not inc.alive and db_up:
                self.spawn(slot)

    def stop_all(self) -> int:
        """Final scrape, SIGTERM, wait; returns how many did not stop within 30 s."""
        hung = 0
        for inc in self.slots.values():
            if inc.paused_until is not None:
                inc.proc.send_signal(signal.SIGCONT)
                inc.paused_until = None
        for inc in self.slots.values():
            if inc.alive:
                self._scrape(inc)
                inc.proc.send_signal(signal.SIGTERM)
        for inc in self.slots.values():
            if not inc.alive:
                continue
            try:
                inc.proc.wait(30)
                inc.ended = "stopped"
            except subprocess.TimeoutExpired:
                inc.proc.send_signal(signal.SIGKILL)
                inc.proc.wait()
                inc.ended = "hung"
                hung += 1
            inc.ended_at = time.time()
        return hung

    def kill_everything(self) -> None:
        for inc in self.all:
            if inc.proc.poll() is None:
                inc.proc.send_signal(signal.SIGCONT)
                inc.proc.send_signal(signal.SIGKILL)
                inc.proc.wait()


def _id_from_log(path: Path) -> str | None:
    try:
        for line in path.read_text(errors="replace").splitlines()[:20]:
            if "started" in line and (match := UUID.search(line)):
                return match.group(0)
    except OSError:
        pass
    return None


# -- jobs ----------------------------------------------------------------------------------


def defer_all(url: str, jobs: int, window: float, begin: datetime.datetime) -> None:
    """Defer ``jobs`` jobs of the mix, due at moments spread over ``window`` seconds."""
    app = tracedjobs.App(database_url=url)
    for name, _, _ in MIX:
        app.task(name=name)(lambda **_: None)
    rng = random.Random(42)
    names = rng.choices([m[0] for m in MIX], weights=[m[1] for m in MIX], k=jobs)
    sleeps = {m[0]: m[2] for m in MIX}
    buckets: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for i, name in enumerate(names):
        second = int(window * i / jobs)
        kwargs: dict[str, Any] = {"i": i}
        span = sleeps[name]
        if span is not None:
            kwargs["seconds"] = round(rng.uniform(*span), 3)
        buckets.setdefault((second, name), []).append(kwargs)
    try:
        for (second, name), kwargs_list in sorted(buckets.items()):
            when = begin + datetime.timedelta(seconds=second)
            app.configure_task(name, schedule_at=when).batch_defer(*kwargs_list)
    finally:
        app.close()


def timeline(quick: bool, outage: float) -> list[tuple[float, str]]:
    """(seconds from the start, action): the faults, spread over the run."""
    pause = STALLED + 3
    steps: list[tuple[float, str]]
    if quick:
        steps = [
            (3, "kill"),
            (3, "pause"),
            (pause + 2, "restart_pg"),
            (3, "kill"),
            (3, "outage"),
            (outage / 2, "kill"),
            (outage / 2 + 4, "kill"),
            (2, "pause"),
        ]
    else:
        steps = [(3, "kill"), (4, "pause"), (pause / 2 + 2, "kill"), (4, "restart_pg"),
                 (4, "kill"), (3, "pause"), (pause + 2, "outage"), (outage * 0.3, "kill"),
                 (outage * 0.3, "pause"), (outage * 0.4 + 4, "kill"), (4, "pause"),
                 (pause + 2, "kill"), (4, "kill")]  # fmt: skip
    events, t = [], 0.0
    for delay, action in steps:
        t += delay
        events.append((t, action))
    return events


# -- the verdict ---------------------------------------------------------------------------


def check(url: str, fleet: Fleet, hung: int, outages: str) -> tuple[list[str], bool]:
    """Lines of the report and whether every invariant holds."""
    with psycopg.connect(url, autocommit=True) as conn:

        def one(sql: str, params: Any = None) -> Any:
            return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]

        jobs = one("SELECT count(*) FROM tracedjobs_jobs")
        by_status: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM tracedjobs_jobs GROUP BY 1")
        )
        unfinished = one(
            "SELECT count(*) FROM tracedjobs_jobs WHERE status <> ALL(%s)", (list(FINAL),)
        )
        twice = one(
            """SELECT count(*) FROM (
                 SELECT job_id FROM tracedjobs_events
                  WHERE type IN ('succeeded', 'failed', 'cancelled', 'aborted')
                  GROUP BY job_id HAVING count(*) > 1
                 UNION
                 SELECT job_id FROM tracedjobs_attempts WHERE outcome = 'succeeded'
                  GROUP BY job_id HAVING count(*) > 1) t"""
        )
        rerun_rows = conn.execute(
            """SELECT job_id, attempt, previous FROM (
                 SELECT job_id, attempt, id,
                        lag(outcome, 1, 'first') OVER (PARTITION BY job_id ORDER BY id) AS previous
                   FROM tracedjobs_attempts) a
               WHERE previous IS DISTINCT FROM 'first'
                 AND previous IS DISTINCT FROM 'retried'
                 AND previous IS DISTINCT FROM 'lost'
                 AND previous IS DISTINCT FROM 'deferred'
               ORDER BY job_id LIMIT 1000"""
        ).fetchall()
        reruns_after_lost = one(
            """SELECT count(*) FROM (
                 SELECT lag(outcome) OVER (PARTITION BY job_id ORDER BY id) AS previous
                   FROM tracedjobs_attempts) a WHERE previous = 'lost'"""
        )
        rows: Counter[str] = Counter(
            dict(
                conn.execute(
                    "SELECT outcome, count(*) FROM tracedjobs_attempts "
                    "WHERE outcome IS NOT NULL GROUP BY 1"
                )
            )
        )
        open_attempts = one("SELECT count(*) FROM tracedjobs_attempts WHERE outcome IS NULL")
        # A process stopped cleanly was scraped after its last attempt: its counters must
        # equal the rows it wrote itself (``lost`` rows carry the dead worker's id and are
        # counted by whoever rescued them, so they are left out here).
        inexact: list[str] = []
        for inc in fleet.all:
            if inc.ended != "stopped" or not inc.worker_id:
                continue
            own: Counter[str] = Counter(
                dict(
                    conn.execute(
                        "SELECT outcome, count(*) FROM tracedjobs_attempts WHERE worker_id = %s "
                        "AND outcome IS NOT NULL AND outcome <> 'lost' GROUP BY 1",
                        (inc.worker_id,),
                    )
                )
            )
            counted = Counter({k: v for k, v in inc.counts.items() if k != "lost" and v})
            if own != counted:
                inexact.append(f"worker {inc.slot} pid {inc.proc.pid}: {counted} vs rows {own}")
        unscraped: Counter[str] = Counter()
        for inc in fleet.all:
            if inc.ended not in ("killed", "crashed", "hung"):
                continue
            since = (inc.scraped_at or 0.0) - 0.5
            until = (inc.ended_at or time.time()) + 0.5
            if inc.worker_id:
                unscraped.update(
                    dict(
                        conn.execute(
                            "SELECT outcome, count(*) FROM tracedjobs_attempts "
                            "WHERE worker_id = %s AND outcome IS NOT NULL AND outcome <> 'lost' "
                            "AND finished_at > to_timestamp(%s) GROUP BY 1",
                            (inc.worker_id, since),
                        )
                    )
                )
            unscraped["lost"] += one(
                "SELECT count(*) FROM tracedjobs_attempts WHERE outcome = 'lost' "
                "AND finished_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
                (since, until),
            )
    counters: Counter[str] = Counter()
    for inc in fleet.all:
        counters.update(inc.counts)

    lost = unfinished + twice
    ok = lost == 0 and not rerun_rows and fleet.crashes == 0 and hung == 0 and not inexact
    status_text = ", ".join(f"{k} {v}" for k, v in sorted(by_status.items()))
    lines = [
        f"jobs      {jobs}  ({status_text})",
        f"kills     {fleet.kills}  (SIGKILL, worker restarted)",
        f"stops     {fleet.stops}  (SIGSTOP for {STALLED + 3:.0f} s, past the "
        f"{STALLED:.0f} s stalled cutoff)",
        f"outages   {outages}",
        f"lost      {lost}  (never finished {unfinished}, finished twice {twice})   must be 0",
        f"re-runs without a lost attempt  {len(rerun_rows)}   must be 0"
        + (f"  e.g. (job, attempt, previous outcome) {rerun_rows[:5]}" if rerun_rows else ""),
        f"re-runs after a lost attempt    {reruns_after_lost}",
        f"crashes   {fleet.crashes}  (worker exits we did not cause)   must be 0",
        f"hung      {hung}  (workers not stopped 30 s after SIGTERM)   must be 0",
        f"attempts still open  {open_attempts}",
        "consumed counters vs attempt rows, by outcome:",
        f"  {'outcome':<10} {'rows':>7} {'counters':>9} {'unscraped':>10}  agree",
    ]
    for outcome in sorted(set(rows) | set(counters)):
        r, c, u = rows[outcome], counters[outcome], unscraped[outcome]
        agree = c <= r and r - c <= u
        ok = ok and agree
        lines.append(f"  {outcome:<10} {r:>7} {c:>9} {u:>10}  {'yes' if agree else 'NO'}")
    lines.append(
        "  (counters: each process's last scrape, summed; unscraped: rows a killed or crashed "
        "process wrote after its last scrape, which died with it)"
    )
    stopped = sum(1 for inc in fleet.all if inc.ended == "stopped")
    lines.append(
        f"  workers stopped cleanly whose counters equal their own rows exactly: "
        f"{stopped - len(inexact)}/{stopped}"
        + ("" if not inexact else "  NO: " + "; ".join(inexact))
    )
    for note in fleet.crash_notes[:10]:
        lines.append(f"  crash: {note}")
    return lines, ok


# -- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tj-chaos-"))
    os.chmod(workdir, 0o755)
    pg = Postgres(Path(args.pg_bin), workdir)
    fleet: Fleet | None = None
    outage = 8.0 if args.quick and args.outage is None else (args.outage or 30.0)
    events = timeline(args.quick, outage)
    window = events[-1][0] + 5
    restarts = stops_pg = 0
    passed = False
    try:
        pg.init()
        pg.start()
        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos")
        url = pg.url("chaos")
        tracedjobs.App(database_url=url).migrate()
        begin = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)
        print(
            f"chaos: {args.jobs} jobs due over {window:.0f} s through {WORKERS} workers × "
            f"concurrency {args.concurrency}; private PostgreSQL on 127.0.0.1:{pg.port} "
            f"({workdir}); heartbeat {HEARTBEAT:.0f} s, stalled after {STALLED:.0f} s",
            flush=True,
        )
        defer_all(url, args.jobs, window, begin)
        start = time.monotonic()
        fleet = Fleet(url, workdir, args.concurrency, start)
        for slot in range(WORKERS):
            fleet.spawn(slot)

        outage_ends: float | None = None
        deadline = window + args.drain_timeout
        last_scrape = last_ids = last_check = 0.0
        pending = list(events)
        drained = False
        while True:
            now = time.monotonic() - start
            while pending and pending[0][0] <= now:
                _, action = pending.pop(0)
                if action == "kill":
                    fleet.kill(pg.up)
                elif action == "pause":
                    fleet.pause(STALLED + 3)
                elif action == "restart_pg":
                    log(start, "PostgreSQL: crash (stop -m immediate) and start again")
                    pg.stop("immediate")
                    pg.start()
                    restarts += 1
                elif action == "outage":
                    log(start, f"PostgreSQL: stopped for {outage:.0f} s")
                    pg.stop("fast")
                    outage_ends = now + outage
                    stops_pg += 1
            if outage_ends is not None and now >= outage_ends:
                pg.start()
                outage_ends = None
                log(start, "PostgreSQL: started again")
            fleet.tend(pg.up)
            if now - last_scrape >= 2:
                fleet.scrape_all()
                last_scrape = now
            if now - last_ids >= 1:
                fleet.learn_ids(pg.up)
                last_ids = now
            if not pending and pg.up and now >= window and now - last_check >= 1:
                last_check = now
                with psycopg.connect(url, autocommit=True) as conn:
                    left = conn.execute(
                        "SELECT count(*) FROM tracedjobs_jobs WHERE status <> ALL(%s)",
                        (list(FINAL),),
                    ).fetchone()[0]  # type: ignore[index]
                if left == 0:
                    drained = True
                    log(start, "every job has finished")
                    break
            if now > deadline:
                log(start, f"gave up waiting: jobs still unfinished after {deadline:.0f} s")
                break
            time.sleep(0.1)

        fleet.learn_ids(True)
        hung = fleet.stop_all()
        outages = (
            f"{restarts + stops_pg}  (crash-restart: {restarts}, "
            f"stopped {outage:.0f} s: {stops_pg})"
        )
        lines, ok = check(url, fleet, hung, outages)
        passed = ok and drained
        print("\n".join(lines))
        print(f"result: {'OK' if passed else 'FAILED'}  ({time.monotonic() - start:.0f} s)")
    finally:
        if fleet is not None:
            fleet.kill_everything()
        if pg.up:
            pg.stop("fast")
        if args.keep or not passed:
            print(f"data and worker logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if passed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="how many jobs (default 10000)")
    parser.add_argument(
        "--quick", action="store_true", help="a short timeline: fewer faults, an 8 s outage"
    )
    parser.add_argument("--outage", type=float, help="seconds PostgreSQL stays stopped (30)")
    parser.add_argument("--concurrency", type=int, default=10, help="per worker (default 10)")
    parser.add_argument(
        "--drain-timeout", type=float, default=240, help="seconds to wait for the last jobs"
    )
    parser.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    parser.add_argument("--keep", action="store_true", help="keep the data and worker logs")
    args = parser.parse_args()
    if args.quick and args.jobs == 10_000:
        args.jobs = 2_000
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
