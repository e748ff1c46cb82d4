"""What `tracedjobs top` shows, loaded from a real database in one query."""

from __future__ import annotations

import uuid

import pytest

import tracedjobs
from tests.helpers import query
from tests.integration.test_worker import run_until_idle
from tracedjobs.tui.model import Options, load_snapshot, parse_filter


def _add_worker(db_url: str, name: str, heartbeat_age: float, queues: list[str] | None = None) -> str:
    worker_id = str(uuid.uuid4())
    query(
        db_url,
        "INSERT INTO tracedjobs_workers (id, name, hostname, pid, queues, concurrency, "
        "last_heartbeat_at) VALUES (%s, %s, 'h', 1, %s, 4, now() - make_interval(secs => %s))",
        (worker_id, name, queues, heartbeat_age),
    )
    return worker_id


def _hold(db_url: str, job_id: int, worker_id: str) -> None:
    query(db_url, "UPDATE tracedjobs_jobs SET status = 'doing', worker_id = %s WHERE id = %s",
          (worker_id, job_id))


def test_queue_counts_split_ready_scheduled_running_and_failed(app: tracedjobs.App, db_url: str) -> None:
    @app.task(queue="mail")
    def send(n: int) -> None: ...

    @app.task(queue="img", retry=0)
    def resize(n: int) -> None:
        raise OSError(f"disk full on {n}")

    for n in range(3):
        send.defer(n=n)
    send.configure(schedule_in={"hours": 1}).defer(n=9)
    resize.defer(n=1)
    run_until_idle(app, queues=["img"])
    held = send.defer(n=4)
    _hold(db_url, held, _add_worker(db_url, "w-alive", 1))

    snap = load_snapshot(app, Options(seconds=30))
    queues = {q.name: q for q in snap.queues}
    assert (queues["mail"].ready, queues["mail"].scheduled, queues["mail"].running) == (3, 1, 1)
    assert queues["img"].failed == 1 and queues["img"].failed_1m == 1
    assert queues["img"].wait_p95 is not None and queues["mail"].oldest_ready_age is not None
    assert snap.ready == 3 and snap.running == 1 and snap.failure_percent == 100.0
    assert snap.schema_version >= 1
    (failure,) = snap.failures
    assert failure.error_type == "OSError" and failure.error_message == "disk full on 1"

    only_img = load_snapshot(app, Options(queue="img"))
    assert [q.name for q in only_img.queues] == ["img"]


def test_worker_liveness_comes_from_the_heartbeat_cutoff(app: tracedjobs.App, db_url: str) -> None:
    @app.task
    def job() -> None: ...

    alive = _add_worker(db_url, "fresh", heartbeat_age=5)
    stale = _add_worker(db_url, "silent", heartbeat_age=60)
    _hold(db_url, job.defer(), alive)
    _hold(db_url, job.defer(), stale)
    _hold(db_url, job.defer(), str(uuid.uuid4()))  # its worker row is gone

    snap = load_snapshot(app, Options(seconds=30))
    workers = {w.name: w for w in snap.workers}
    assert workers["fresh"].alive and workers["fresh"].stalled == 0
    assert not workers["silent"].alive and workers["silent"].stalled == 1
    assert (snap.workers_alive, snap.workers_stale) == (1, 1)
    assert snap.stalled == 2  # the stale worker's job and the orphan

    # The same rows with a longer cutoff: everyone is alive.
    relaxed = load_snapshot(app, Options(seconds=120))
    assert relaxed.workers_stale == 0 and relaxed.stalled == 1


def test_tail_lists_transitions_newest_first_and_only_new_ones_after_an_id(
    app: tracedjobs.App,
) -> None:
    @app.task(retry=0)
    def boom() -> None:
        raise ValueError("nope")

    job_id = boom.defer()
    run_until_idle(app)
    snap = load_snapshot(app, Options())
    mine = [(t.type, t.transition) for t in snap.tail if t.job_id == job_id]
    assert mine == [
        ("failed", ("doing", "failed")),
        ("started", ("todo", "doing")),
        ("deferred", ("", "todo")),
    ]
    failed = snap.tail[0]
    assert failed.attempt == 1 and failed.error_type == "ValueError" and failed.duration is not None

    boom.defer()
    import anyio

    from tracedjobs.tui.model import load_snapshot_async

    later = anyio.run(lambda: load_snapshot_async(app, Options(), after=snap.last_at + 1e-6))
    assert [t.type for t in later.tail] == ["deferred"]


def test_filter_selects_jobs_by_args_status_and_error(app: tracedjobs.App) -> None:
    @app.task(retry=0)
    def charge(user: int, amount: int) -> None:
        if amount > 100:
            raise ValueError("card declined")

    charge.defer(user=1, amount=10)
    declined = charge.defer(user=2, amount=500)
    waiting_ids = []
    run_until_idle(app)
    waiting_ids.append(charge.defer(user=2, amount=5))

    def ids(text: str) -> list[int]:
        return [j.id for j in load_snapshot(app, Options(filter=parse_filter(text))).jobs]

    assert ids("args.user:2") == [waiting_ids[0], declined]
    assert ids("args.user:2 status:failed") == [declined]
    assert ids("error:declined") == [declined]
    assert ids("status:todo age<1h") == waiting_ids
    assert ids("age>1h") == []
    # The screen shows short task names; filtering by one finds the jobs (full names too).
    short = charge.name.rsplit(".", 1)[-1]
    assert ids(f"task:{short}") == ids(f"task:{charge.name}") == [waiting_ids[0], declined, declined - 1]
    assert ids(f"task:{short[:3]}*") == ids(f"task:{short}")
    assert ids(f"task:{short[1:]}") == []  # a short name is the whole last part, not a suffix
    # Without a filter the matching list is not loaded at all.
    assert load_snapshot(app, Options()).jobs == []


def test_json_snapshot_has_every_panel(app: tracedjobs.App, db_url: str) -> None:
    @app.task(queue="q1")
    def t() -> None: ...

    t.defer()
    _add_worker(db_url, "w1", 1, ["q1"])
    data = load_snapshot(app, Options()).to_dict()
    assert set(data) >= {"database", "schema_version", "summary", "queues", "workers", "tail",
                         "failures", "jobs"}
    assert data["summary"]["ready"] == 1 and data["summary"]["workers_alive"] == 1
    assert data["tail"][0]["new_status"] == "todo"
    assert data["workers"][0]["queues"] == ["q1"]


def test_an_args_filter_lists_matches_among_the_newest_jobs_only_and_says_so(
    app: tracedjobs.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """args.* has no index: on a big table the matching list would read it back to its
    start on every refresh. It looks at the newest ARGS_SCAN_WINDOW jobs and says so;
    indexed filters (status, queue, …) still list every match."""
    from tracedjobs.tui import model, render

    monkeypatch.setattr(model, "ARGS_SCAN_WINDOW", 10)

    @app.task
    def work(user: int) -> None: ...

    ids = work.batch_defer(*({"user": n % 3} for n in range(30)))
    snapshot = load_snapshot(app, Options(filter=parse_filter("args.user:1")))
    newest_ten = ids[-10:]
    assert [j.id for j in snapshot.jobs] == [
        i for i, n in reversed(list(zip(ids, range(30), strict=True)))
        if n % 3 == 1 and i in newest_ten
    ]
    assert snapshot.searched == 10
    assert "(among the newest 10 jobs)" in render.searched(snapshot)
    assert snapshot.to_dict()["jobs_searched"] == 10
    # Without an args part: every matching job, and no such note.
    everything = load_snapshot(app, Options(filter=parse_filter("status:todo")))
    assert len(everything.jobs) == 30 and everything.searched is None
    # Bulk actions (retry/cancel all matching) still see every job.
    filt = parse_filter("args.user:1")
    params = {**filt.params, "queue": None, "task": None}
    assert len(app.job_manager.top_matching_ids(filt.where, params, ["todo"])) == 10
