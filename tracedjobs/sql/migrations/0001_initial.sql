-- tracedjobs schema, version 1.
-- Every statement here runs inside one transaction under an advisory lock (see migrations.py).

CREATE TABLE tracedjobs_jobs (
    id            bigserial PRIMARY KEY,
    queue_name    text        NOT NULL,
    task_name     text        NOT NULL,
    priority      integer     NOT NULL DEFAULT 0,
    lock          text,
    queueing_lock text,
    args          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status        text        NOT NULL DEFAULT 'todo'
        CHECK (status IN ('todo', 'doing', 'succeeded', 'failed', 'cancelled', 'aborting', 'aborted')),
    -- When the job may start; NULL means as soon as it was deferred.
    scheduled_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Last status change.
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Attempts made so far (an attempt deferred with increment_attempts=False does not count).
    attempts      integer     NOT NULL DEFAULT 0,
    -- The worker running the job and its current attempt, while doing/aborting.
    worker_id     uuid,
    attempt_id    bigint,
    started_at    timestamptz,
    -- W3C trace context of the producer span, stored at defer time.
    traceparent   text,
    tracestate    text
);

-- The claim path: ready jobs in priority order.
CREATE INDEX tracedjobs_jobs_todo_idx ON tracedjobs_jobs (priority DESC, id) WHERE status = 'todo';
-- Lock ordering checks only look at unfinished jobs.
CREATE INDEX tracedjobs_jobs_lock_idx ON tracedjobs_jobs (lock, id)
    WHERE lock IS NOT NULL AND status IN ('todo', 'doing', 'aborting');
-- At most one waiting job per queueing lock.
CREATE UNIQUE INDEX tracedjobs_jobs_queueing_lock_idx ON tracedjobs_jobs (queueing_lock)
    WHERE status = 'todo' AND queueing_lock IS NOT NULL;
-- Running jobs by worker (rescue, stalled jobs, top).
CREATE INDEX tracedjobs_jobs_doing_idx ON tracedjobs_jobs (worker_id) WHERE status IN ('doing', 'aborting');
-- Listing and pruning finished jobs.
CREATE INDEX tracedjobs_jobs_status_updated_idx ON tracedjobs_jobs (status, updated_at);
CREATE INDEX tracedjobs_jobs_queue_status_idx ON tracedjobs_jobs (queue_name, status);

CREATE TABLE tracedjobs_attempts (
    id            bigserial PRIMARY KEY,
    job_id        bigint      NOT NULL REFERENCES tracedjobs_jobs (id) ON DELETE CASCADE,
    -- 1-based attempt number (jobs.attempts + 1 when it started).
    attempt       integer     NOT NULL,
    worker_id     uuid,
    worker_name   text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    -- Time the job waited to start, from when it became runnable.
    queue_wait    double precision,
    finished_at   timestamptz,
    -- NULL while running; then succeeded, failed, retried, deferred, aborted or lost.
    -- Written once: the finish and the rescue both require NULL, so a late finish
    -- after a rescue cannot overwrite it.
    outcome       text,
    duration      double precision,
    error_type    text,
    error_message text,
    traceback     text,
    trace_id      text,
    span_id       text
);
CREATE INDEX tracedjobs_attempts_job_idx ON tracedjobs_attempts (job_id);
CREATE INDEX tracedjobs_attempts_finished_idx ON tracedjobs_attempts (finished_at);

CREATE TABLE tracedjobs_events (
    id      bigserial PRIMARY KEY,
    job_id  bigint      NOT NULL REFERENCES tracedjobs_jobs (id) ON DELETE CASCADE,
    type    text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    -- Small structured details: the retry time, the attempt, who asked for a cancel.
    detail  jsonb
);
CREATE INDEX tracedjobs_events_job_idx ON tracedjobs_events (job_id);

CREATE TABLE tracedjobs_workers (
    id                uuid        PRIMARY KEY,
    name              text        NOT NULL,
    hostname          text        NOT NULL,
    pid               integer     NOT NULL,
    queues            text[],
    concurrency       integer     NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracedjobs_workers_heartbeat_idx ON tracedjobs_workers (last_heartbeat_at);

-- One row per periodic task tick: the primary key is what makes a tick deferred once
-- across any number of workers.
CREATE TABLE tracedjobs_periodic_ticks (
    task_name   text        NOT NULL,
    periodic_id text        NOT NULL DEFAULT '',
    tick        bigint      NOT NULL,
    job_id      bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_name, periodic_id, tick)
);

-- The single definition of liveness. Every query that decides whether a worker is alive
-- (stalled jobs, automatic rescue, pruning, `top`, the liveness gauges) calls this.
CREATE FUNCTION tracedjobs_heartbeat_cutoff(seconds_since_heartbeat double precision)
    RETURNS timestamptz LANGUAGE sql STABLE
    AS $$ SELECT now() - make_interval(secs => seconds_since_heartbeat) $$;

-- Wake workers: one NOTIFY per statement and queue, not per row.
CREATE FUNCTION tracedjobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tracedjobs_jobs', q.queue_name)
       FROM (SELECT DISTINCT queue_name FROM new_jobs WHERE status = 'todo') AS q;
    RETURN NULL;
END $$;

CREATE TRIGGER tracedjobs_jobs_inserted
    AFTER INSERT ON tracedjobs_jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tracedjobs_notify_inserted();

-- A job back to `todo` (retry) or a finished job releasing a lock can make work ready.
CREATE FUNCTION tracedjobs_notify_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tracedjobs_jobs', q.queue_name)
       FROM (SELECT DISTINCT n.queue_name
               FROM new_jobs n JOIN old_jobs o ON o.id = n.id
              WHERE (n.status = 'todo' AND o.status <> 'todo')
                 OR (o.lock IS NOT NULL AND o.status IN ('doing', 'aborting')
                     AND n.status NOT IN ('doing', 'aborting'))) AS q;
    PERFORM pg_notify('tracedjobs_abort', n.id::text)
       FROM new_jobs n JOIN old_jobs o ON o.id = n.id
      WHERE n.status = 'aborting' AND o.status = 'doing';
    RETURN NULL;
END $$;

CREATE TRIGGER tracedjobs_jobs_updated
    AFTER UPDATE ON tracedjobs_jobs REFERENCING NEW TABLE AS new_jobs OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tracedjobs_notify_updated();

-- The live tail of `tracedjobs top`: one NOTIFY per statement carrying the newest event id.
CREATE FUNCTION tracedjobs_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tracedjobs_events', (SELECT max(id)::text FROM new_events));
    RETURN NULL;
END $$;

CREATE TRIGGER tracedjobs_events_inserted
    AFTER INSERT ON tracedjobs_events REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION tracedjobs_notify_events();
