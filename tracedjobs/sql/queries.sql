-- Named queries. Each starts with a "-- name: NAME" line; sql/__init__.py loads them.
-- Every value is a bound parameter (psycopg's %(name)s); nothing is formatted into SQL.

-- name: defer_jobs
-- Insert a batch of jobs in one statement. A job's `deferred` entry in its history is its
-- row's created_at; only a job scheduled for later gets an event (when it is due).
WITH inserted AS (
    INSERT INTO tracedjobs_jobs
        (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at,
         traceparent, tracestate)
    -- One send span per batch: its context is one value for every row. Arrays of one
    -- Python type travel in binary (%%(name)b): psycopg's text arrays escape each element.
    SELECT b.*, %(traceparent)s::text, %(tracestate)s::text FROM unnest(
        %(queue_name)b::text[], %(task_name)b::text[], %(priority)b::integer[], %(lock)b::text[],
        %(queueing_lock)b::text[], %(args)b::jsonb[], %(scheduled_at)s::timestamptz[]) AS b
    RETURNING id, scheduled_at
), events AS (
    INSERT INTO tracedjobs_events (job_id, type, detail)
    SELECT id, 'scheduled', jsonb_build_object('scheduled_at', scheduled_at)
      FROM inserted
     WHERE scheduled_at > now()
)
SELECT id FROM inserted ORDER BY id;

-- name: defer_job
-- One job due now (the common defer): a plain insert, cheaper to bind and plan than the
-- batch's unnest of arrays.
INSERT INTO tracedjobs_jobs
    (queue_name, task_name, priority, lock, queueing_lock, args, traceparent, tracestate)
VALUES (%(queue_name)s, %(task_name)s, %(priority)s, %(lock)s, %(queueing_lock)s,
        %(args)s::jsonb, %(traceparent)s, %(tracestate)s)
RETURNING id;

-- name: claim_jobs
-- Claim up to %(limit)s ready jobs for a worker: priority first, then defer order. The
-- running attempt lives on the job row; its attempt row is written when it ends.
-- One row per claimed job, or a single row of NULL job columns when none was claimed: each
-- row also carries `more` and `next_in`, so that a claim is one statement (a transaction of
-- its own when it travels alone).
WITH candidates AS (
    SELECT j.id
      FROM tracedjobs_jobs j
     WHERE j.status = 'todo'
       AND (%(queues)s::text[] IS NULL OR j.queue_name = ANY (%(queues)s::text[]))
       AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
       -- A worker declared dead (its row deleted by a rescuer) claims nothing until it
       -- registers again: its new jobs would otherwise look orphaned and be rescued.
       AND EXISTS (SELECT 1 FROM tracedjobs_workers w WHERE w.id = %(worker_id)s)
       -- As in Procrastinate: a job with a lock waits while another job with that lock
       -- runs, or waits before it (higher priority, or same priority and deferred first).
       AND (j.lock IS NULL OR NOT EXISTS (
            SELECT 1 FROM tracedjobs_jobs o
             WHERE o.lock = j.lock
               AND o.status IN ('todo', 'doing', 'aborting')
               AND (o.status <> 'todo' OR o.priority > j.priority
                    OR (o.priority = j.priority AND o.id < j.id))))
     ORDER BY j.priority DESC, j.id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE tracedjobs_jobs j
       SET status = 'doing', worker_id = %(worker_id)s, worker_name = %(worker_name)s,
           started_at = now(), updated_at = now(),
           attempt_id = nextval(pg_get_serial_sequence('tracedjobs_attempts', 'id'))
      FROM candidates c
     WHERE j.id = c.id
    RETURNING j.id, j.queue_name, j.task_name, j.priority, j.lock, j.queueing_lock,
              -- As text: the worker decodes each job's args on its own, so that one it
              -- cannot decode fails that job only.
              j.args::text AS args_text,
              j.status, j.scheduled_at, j.created_at, j.attempts, j.lost_attempts,
              j.attempt_id, j.traceparent, j.tracestate,
              extract(epoch FROM now() - coalesce(j.scheduled_at, j.created_at))::float8
                  AS queue_wait
), short AS (
    SELECT (SELECT count(*) FROM candidates) < %(limit)s AS short
)
SELECT c.*,
       -- Whether a job may be left ready. No, if the claim took fewer than it asked for.
       -- Yes, if a bigger claim filled up (a backlog, most likely). For a claim of one job
       -- (concurrency 1, or one slot free), a look one job further in the claim's own order
       -- (its index: to this statement the claimed job is still todo). It may say yes for a
       -- job another claim holds or one waiting on a lock, never no for a ready one: "no"
       -- lets the worker stop claiming until a notification or a poll.
       CASE WHEN s.short THEN false
            WHEN %(limit)s > 1 THEN true
            ELSE EXISTS (
                SELECT 1 FROM tracedjobs_jobs r
                 WHERE r.status = 'todo'
                   AND (%(queues)s::text[] IS NULL OR r.queue_name = ANY (%(queues)s::text[]))
                   AND (r.scheduled_at IS NULL OR r.scheduled_at <= now())
                 ORDER BY r.priority DESC, r.id
                OFFSET 1 LIMIT 1) END AS more,
       -- Seconds until the next scheduled job of these queues becomes ready (NULL if none,
       -- or when the claim filled up and will claim again anyway). Same now() as the claim:
       -- a job that became due since is not "ready" to it, and must not be missed here.
       CASE WHEN s.short THEN (
            SELECT extract(epoch FROM min(n.scheduled_at) - now())::float8
              FROM tracedjobs_jobs n
             WHERE n.status = 'todo' AND n.scheduled_at > now()
               AND (%(queues)s::text[] IS NULL OR n.queue_name = ANY (%(queues)s::text[])))
            END AS next_in
  FROM short s
  LEFT JOIN claimed c ON true;

-- name: finish_jobs
-- Record the end of a batch of attempts: each attempt's row (written once: if a rescuer
-- already wrote this attempt as lost, the primary key refuses this late finish, and its
-- job is left alone — a late finish never overwrites a rescue), its job's next state, and
-- the event it caused. Returns the ids of the jobs whose result was recorded.
--
-- Each part joins the batch to the job rows by id, and the parts refer to each other
-- through `= ANY (ARRAY(...))`, computed once: the planner misjudges the size of CTEs
-- built on other CTEs, and joining those nested loops over them.
-- "Running" is written as NOT IN the other statuses so that job rows are looked up by id:
-- the planner would otherwise scan the (often misjudged) index of running jobs once per
-- result. Every part sees the job rows as they were before this statement.
-- tracedjobs_retry_blocked is called only where it can say yes (a retry of a job with a
-- queueing lock): a call to an SQL function with a subquery plans its body again in each
-- statement, 0.2-0.4 ms a call site (three quarters of a one-job finish's time).
WITH batch AS (
    SELECT * FROM unnest(
        %(job_id)b::bigint[], %(attempt_id)b::bigint[], %(status)b::text[], %(outcome)b::text[],
        %(event)b::text[], %(inc)b::integer[], %(retry_in)b::float8[], %(retry_at)s::timestamptz[],
        %(priority)b::integer[], %(queue)b::text[], %(lock)b::text[], %(duration)b::float8[],
        %(error_type)b::text[], %(error_message)b::text[], %(traceback)b::text[],
        %(trace_id)b::text[], %(span_id)b::text[])
        AS r(job_id, attempt_id, status, outcome, event, inc, retry_in, retry_at, priority, queue,
             lock, duration, error_type, error_message, traceback, trace_id, span_id)
), attempts AS (
    INSERT INTO tracedjobs_attempts
        (id, job_id, attempt, worker_id, worker_name, started_at, queue_wait, finished_at,
         outcome, duration, error_type, error_message, traceback, trace_id, span_id)
    SELECT r.attempt_id, r.job_id, j.attempts + j.lost_attempts + 1, j.worker_id, j.worker_name,
           j.started_at,
           greatest(extract(epoch FROM j.started_at - coalesce(j.scheduled_at, j.created_at)), 0),
           now(), CASE WHEN r.status = 'todo' AND j.queueing_lock IS NOT NULL
                            AND tracedjobs_retry_blocked(j.id, j.queueing_lock, r.status)
                       THEN 'failed' ELSE r.outcome END,
           coalesce(r.duration, extract(epoch FROM now() - j.started_at)),
           r.error_type, r.error_message, r.traceback, r.trace_id, r.span_id
      FROM batch r
      JOIN tracedjobs_jobs j ON j.id = r.job_id
     WHERE j.attempt_id = r.attempt_id
       AND j.status NOT IN ('todo', 'succeeded', 'failed', 'cancelled', 'aborted')
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), jobs AS (
    UPDATE tracedjobs_jobs j
       SET status = CASE WHEN r.status = 'todo' AND j.queueing_lock IS NOT NULL
                              AND tracedjobs_retry_blocked(j.id, j.queueing_lock, r.status)
                         THEN 'failed' ELSE r.status END,
           attempts = j.attempts + r.inc,
           lost_attempts = j.lost_attempts + CASE WHEN r.outcome = 'lost' THEN 1 ELSE 0 END,
           worker_id = NULL,
           updated_at = now(),
           scheduled_at = CASE WHEN r.status = 'todo'
                                    AND NOT (j.queueing_lock IS NOT NULL
                                             AND tracedjobs_retry_blocked(j.id, j.queueing_lock,
                                                                          r.status))
                               THEN coalesce(r.retry_at,
                                             now() + make_interval(secs => coalesce(r.retry_in, 0)))
                               ELSE j.scheduled_at END,
           priority = coalesce(r.priority, j.priority),
           queue_name = coalesce(r.queue, j.queue_name),
           lock = coalesce(r.lock, j.lock)
      FROM batch r
     -- The state is checked again on the row as it is when locked (another transaction may
     -- have changed it since this statement's snapshot).
     WHERE j.id = r.job_id AND j.attempt_id = r.attempt_id
       AND j.status NOT IN ('todo', 'succeeded', 'failed', 'cancelled', 'aborted')
       AND r.attempt_id = ANY (ARRAY(SELECT id FROM attempts))
    RETURNING j.id, j.status, j.scheduled_at, j.queue_name
), done AS (
    -- The recorded attempts, with their job as it was before.
    SELECT r.*, j.attempts + j.lost_attempts + 1 AS attempt, j.lock AS old_lock,
           (r.status = 'todo' AND j.queueing_lock IS NOT NULL
            AND tracedjobs_retry_blocked(j.id, j.queueing_lock, r.status)) AS blocked
      FROM batch r
      JOIN tracedjobs_jobs j ON j.id = r.job_id
     WHERE r.job_id = ANY (ARRAY(SELECT id FROM jobs))
), woken AS (
    -- Wake the workers of queues with work made ready: retried jobs, and jobs waiting on
    -- a lock these attempts held.
    SELECT count(pg_notify('tracedjobs_jobs', q.queue_name)) AS n
      FROM (SELECT queue_name FROM jobs WHERE status = 'todo'
            UNION
            SELECT o.queue_name FROM tracedjobs_jobs o
             -- Checked once first: no lock released, no scan of the waiting jobs.
             WHERE EXISTS (SELECT 1 FROM done WHERE old_lock IS NOT NULL)
               AND o.lock = ANY (ARRAY(SELECT old_lock FROM done WHERE old_lock IS NOT NULL))
               AND o.status = 'todo') q
), events AS (
    INSERT INTO tracedjobs_events (job_id, type, detail)
    SELECT job_id, 'lost', jsonb_build_object('attempt', attempt)
      FROM done WHERE outcome = 'lost'
    UNION ALL
    SELECT job_id,
           CASE WHEN blocked THEN 'failed' ELSE event END,
           jsonb_strip_nulls(jsonb_build_object(
               'attempt', attempt,
               'attempt_id', attempt_id,
               'error_type', error_type,
               'scheduled_at', CASE WHEN status = 'todo' AND NOT blocked
                                    THEN coalesce(retry_at, now() + make_interval(
                                                  secs => coalesce(retry_in, 0))) END,
               'reason', CASE WHEN blocked THEN 'queueing lock taken by a waiting job' END))
      FROM done
)
SELECT id FROM jobs, woken;

-- name: register_worker
INSERT INTO tracedjobs_workers (id, name, hostname, pid, queues, concurrency)
VALUES (%(id)s, %(name)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s)
ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now();

-- name: heartbeat
UPDATE tracedjobs_workers SET last_heartbeat_at = now() WHERE id = %(id)s RETURNING id;

-- name: unregister_worker
DELETE FROM tracedjobs_workers WHERE id = %(id)s;

-- name: dead_workers
-- Workers whose heartbeat is older than the cutoff.
SELECT id FROM tracedjobs_workers
 WHERE last_heartbeat_at < tracedjobs_heartbeat_cutoff(%(seconds)s)
 ORDER BY last_heartbeat_at;

-- name: claim_dead_worker
-- The atomic claim of a dead worker: of two rescuers, only one deletes the row.
DELETE FROM tracedjobs_workers
 WHERE id = %(id)s AND last_heartbeat_at < tracedjobs_heartbeat_cutoff(%(seconds)s)
RETURNING id;

-- name: lock_jobs_of_worker
SELECT id, queue_name, task_name, priority, lock, queueing_lock, args, status, scheduled_at,
       created_at, attempts, lost_attempts, attempt_id, traceparent, tracestate
  FROM tracedjobs_jobs
 WHERE worker_id = %(id)s AND status IN ('doing', 'aborting')
   FOR UPDATE;

-- name: lock_orphan_jobs
-- Running jobs whose worker row is gone (pruned, or deleted by hand) are stalled too —
-- once they have run that long: a paused worker's claim can race with the rescuer deleting
-- its row, and that job is not lost (the worker registers again at its next heartbeat).
SELECT id, queue_name, task_name, priority, lock, queueing_lock, args, status, scheduled_at,
       created_at, attempts, lost_attempts, attempt_id, traceparent, tracestate
  FROM tracedjobs_jobs j
 WHERE status IN ('doing', 'aborting')
   AND NOT EXISTS (SELECT 1 FROM tracedjobs_workers w WHERE w.id = j.worker_id)
   AND j.started_at < tracedjobs_heartbeat_cutoff(%(seconds)s)
   FOR UPDATE SKIP LOCKED;

-- name: prune_dead_workers
DELETE FROM tracedjobs_workers
 WHERE last_heartbeat_at < tracedjobs_heartbeat_cutoff(%(seconds)s)
RETURNING id;

-- name: release_jobs
-- Hand prefetched jobs back to the queue (worker option `prefetch`, at shutdown): claimed,
-- never started, so the attempt is forgotten (it wrote no row and counted nothing). Only
-- this worker's claim of each, and only while it is plainly `doing`: a job asked to abort
-- meanwhile is ended `aborted` by the worker instead.
UPDATE tracedjobs_jobs j
   SET status = 'todo', worker_id = NULL, worker_name = NULL, started_at = NULL,
       attempt_id = NULL, updated_at = now()
  FROM unnest(%(ids)s::bigint[], %(attempt_ids)s::bigint[]) AS r(id, attempt_id)
 WHERE j.id = r.id AND j.attempt_id = r.attempt_id
   AND j.worker_id = %(worker_id)s AND j.status = 'doing'
RETURNING j.id;

-- name: claimed_by
-- Which of these claims (prefetched jobs, checked after a pause or an outage) the worker
-- still holds: a peer that declared it dead meanwhile recorded their attempts lost.
SELECT j.id
  FROM tracedjobs_jobs j
  JOIN unnest(%(ids)s::bigint[], %(attempt_ids)s::bigint[]) AS r(id, attempt_id)
    ON j.id = r.id AND j.attempt_id = r.attempt_id
 WHERE j.worker_id = %(worker_id)s AND j.status IN ('doing', 'aborting');

-- name: fail_unrecordable
-- The database refused an attempt's result (a value out of range, bad text from a retry
-- decision…): end the attempt and the job `failed` with fixed values only, so this write
-- cannot be refused for the same reason.
WITH job AS (
    SELECT j.id, j.attempt_id, j.worker_id, j.worker_name, j.started_at,
           j.attempts + j.lost_attempts + 1 AS attempt
      FROM tracedjobs_jobs j
     WHERE j.id = %(job_id)s AND j.attempt_id = %(attempt_id)s AND j.status IN ('doing', 'aborting')
), attempt AS (
    INSERT INTO tracedjobs_attempts
        (id, job_id, attempt, worker_id, worker_name, started_at, finished_at, outcome,
         duration, error_type, error_message)
    SELECT attempt_id, id, attempt, worker_id, worker_name, started_at, now(), 'failed',
           extract(epoch FROM now() - started_at), %(error_type)s, %(error_message)s
      FROM job
    ON CONFLICT (id) DO NOTHING
    RETURNING id, job_id, attempt
), updated AS (
    UPDATE tracedjobs_jobs j
       SET status = 'failed', attempts = j.attempts + 1, worker_id = NULL, updated_at = now()
      FROM attempt
     WHERE j.id = attempt.job_id
    RETURNING j.id
), events AS (
    INSERT INTO tracedjobs_events (job_id, type, detail)
    SELECT job_id, 'failed', jsonb_build_object('attempt', attempt, 'attempt_id', id,
                                                'error_type', %(error_type)s::text)
      FROM attempt
)
SELECT id FROM updated;

-- name: delete_finished_jobs
-- Worker option delete_jobs: remove jobs that just ended in one of these statuses.
DELETE FROM tracedjobs_jobs
 WHERE id = ANY (%(ids)s::bigint[]) AND status = ANY (%(statuses)s::text[])
RETURNING id;

-- name: aborting_jobs_of_worker
SELECT id FROM tracedjobs_jobs WHERE worker_id = %(id)s AND status = 'aborting';

-- name: get_stalled_jobs
SELECT j.* FROM tracedjobs_jobs j
  LEFT JOIN tracedjobs_workers w ON w.id = j.worker_id
 WHERE j.status IN ('doing', 'aborting')
   AND (w.id IS NULL OR w.last_heartbeat_at < tracedjobs_heartbeat_cutoff(%(seconds)s))
   AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
   AND (%(task_name)s::text IS NULL OR j.task_name = %(task_name)s)
 ORDER BY j.id;

-- name: get_stalled_jobs_by_started
-- Deprecated selection by time spent in `doing`, whatever the heartbeat says.
SELECT j.* FROM tracedjobs_jobs j
 WHERE j.status IN ('doing', 'aborting')
   AND j.started_at < now() - make_interval(secs => %(seconds)s)
   AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
   AND (%(task_name)s::text IS NULL OR j.task_name = %(task_name)s)
 ORDER BY j.id;

-- name: heartbeat_cutoff
SELECT tracedjobs_heartbeat_cutoff(%(seconds)s) AS cutoff;

-- name: lock_job
SELECT * FROM tracedjobs_jobs WHERE id = %(id)s FOR UPDATE;

-- name: requeue_job
-- Manual retry: back to `todo`, history kept. A running attempt is recorded lost.
WITH running AS (
    SELECT j.id, j.attempt_id, j.worker_id, j.worker_name, j.started_at,
           j.attempts + j.lost_attempts + 1 AS attempt
      FROM tracedjobs_jobs j
     WHERE j.id = %(id)s AND j.attempt_id = %(attempt_id)s AND %(was_running)s
), lost AS (
    INSERT INTO tracedjobs_attempts
        (id, job_id, attempt, worker_id, worker_name, started_at, finished_at, outcome,
         duration, error_type, error_message)
    SELECT attempt_id, id, attempt, worker_id, worker_name, started_at, now(), 'lost',
           extract(epoch FROM now() - started_at), 'WorkerLost', 'retried by hand while running'
      FROM running
    ON CONFLICT (id) DO NOTHING
    RETURNING id, attempt
), job AS (
    UPDATE tracedjobs_jobs
       SET status = 'todo', worker_id = NULL, updated_at = now(),
           -- A lost attempt does not spend the retry budget (see the worker's rescue).
           lost_attempts = lost_attempts + (SELECT count(*) FROM lost)::integer,
           scheduled_at = coalesce(%(retry_at)s, now()),
           priority = coalesce(%(priority)s, priority),
           queue_name = coalesce(%(queue)s, queue_name),
           lock = coalesce(%(lock)s, lock)
     WHERE id = %(id)s
    RETURNING id, scheduled_at, queue_name, attempts + lost_attempts AS runs
), woken AS (
    SELECT count(pg_notify('tracedjobs_jobs', queue_name)) AS n FROM job
)
INSERT INTO tracedjobs_events (job_id, type, detail)
SELECT job.id, 'lost', jsonb_build_object('attempt', lost.attempt) FROM job, lost
UNION ALL
SELECT id, 'retried', jsonb_build_object('scheduled_at', scheduled_at, 'attempt', runs)
  FROM job, woken;

-- name: cancel_job
-- Cancel a waiting job (or delete it), or, with abort, ask a running one to stop.
-- Returns the job's id when something changed (nothing for an unknown or finished job).
WITH cancelled AS (
    UPDATE tracedjobs_jobs SET status = 'cancelled', updated_at = now()
     WHERE id = %(id)s AND status = 'todo' AND NOT %(delete_job)s
    RETURNING id
), deleted AS (
    DELETE FROM tracedjobs_jobs WHERE id = %(id)s AND status = 'todo' AND %(delete_job)s
    RETURNING id
), aborting AS (
    UPDATE tracedjobs_jobs SET status = 'aborting', updated_at = now()
     WHERE id = %(id)s AND status = 'doing' AND %(abort)s
    RETURNING id
), events AS (
    INSERT INTO tracedjobs_events (job_id, type)
    SELECT id, 'cancelled' FROM cancelled
    UNION ALL
    SELECT id, 'abort_requested' FROM aborting
), abort_sent AS (
    -- The running job's worker hears it at once (it also polls, in case it missed it).
    SELECT count(pg_notify('tracedjobs_abort', id::text)) AS n FROM aborting
)
SELECT id FROM cancelled
UNION ALL SELECT id FROM deleted
UNION ALL SELECT id FROM aborting, abort_sent;

-- name: backend_pid
-- A pooler answers the start-up with a process id (cancel key) of its own; a direct
-- connection's is the server process that runs its statements (see the connector).
SELECT pg_backend_pid();

-- name: check_connection
-- NULL when the tracedjobs tables do not exist (Procrastinate's check_connection).
SELECT to_regclass('tracedjobs_jobs') AS check;

-- name: count_unfinished_jobs
SELECT count(*) AS n FROM tracedjobs_jobs
 WHERE id = ANY (%(ids)s::bigint[]) AND status IN ('todo', 'doing', 'aborting');

-- name: get_job
SELECT * FROM tracedjobs_jobs WHERE id = %(id)s;

-- name: get_job_status
SELECT status FROM tracedjobs_jobs WHERE id = %(id)s;

-- name: job_events
-- A job's whole history (see the view tracedjobs_job_history).
SELECT id, job_id, type, at, detail FROM tracedjobs_job_history
 WHERE job_id = %(id)s
 ORDER BY at, attempt, seq, id;

-- name: job_attempts
-- Ended attempts, then the running one (read from the job row until it ends).
SELECT * FROM (
    SELECT id, job_id, attempt, worker_id, worker_name, started_at, queue_wait, finished_at,
           outcome, duration, error_type, error_message, traceback, trace_id, span_id
      FROM tracedjobs_attempts WHERE job_id = %(id)s
    UNION ALL
    SELECT j.attempt_id, j.id, j.attempts + j.lost_attempts + 1, j.worker_id, j.worker_name,
           j.started_at,
           greatest(extract(epoch FROM j.started_at - coalesce(j.scheduled_at, j.created_at)), 0),
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
      FROM tracedjobs_jobs j
     WHERE j.id = %(id)s AND j.status IN ('doing', 'aborting')
       AND NOT EXISTS (SELECT 1 FROM tracedjobs_attempts a WHERE a.id = j.attempt_id)
) attempts ORDER BY id;

-- name: list_jobs
SELECT * FROM tracedjobs_jobs
 WHERE (%(id)s::bigint IS NULL OR id = %(id)s)
   AND (%(status)s::text IS NULL OR status = %(status)s)
   AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
   AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s)
   AND (%(lock)s::text IS NULL OR lock = %(lock)s)
   AND (%(queueing_lock)s::text IS NULL OR queueing_lock = %(queueing_lock)s)
   AND (%(worker_id)s::uuid IS NULL OR worker_id = %(worker_id)s::uuid)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: list_groups
-- Jobs per queue, task or lock and per status (Procrastinate's list_queues/list_tasks/
-- list_locks shape: name, jobs_count, stats). {column} is one of queue_name, task_name,
-- lock (an identifier chosen in manager.py, never user input).
WITH counts AS (
    SELECT {column} AS name, status, count(*) AS n
      FROM tracedjobs_jobs
     WHERE {column} IS NOT NULL
       AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
       AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s)
       AND (%(status)s::text IS NULL OR status = %(status)s)
       AND (%(lock)s::text IS NULL OR lock = %(lock)s)
     GROUP BY 1, 2
)
SELECT name, sum(n)::bigint AS jobs_count, jsonb_object_agg(status, n) AS stats
  FROM counts GROUP BY name ORDER BY name;

-- name: list_workers
SELECT w.*,
       extract(epoch FROM now() - w.last_heartbeat_at)::float8 AS heartbeat_age,
       w.last_heartbeat_at >= tracedjobs_heartbeat_cutoff(%(seconds)s) AS alive,
       (SELECT count(*) FROM tracedjobs_jobs j
         WHERE j.worker_id = w.id AND j.status IN ('doing', 'aborting'))::integer AS running
  FROM tracedjobs_workers w
 ORDER BY w.started_at;

-- name: defer_periodic_job
-- Defer one periodic tick. The tick row's primary key makes this happen once across all
-- workers; a task whose queueing lock is taken is skipped silently.
WITH tick AS (
    INSERT INTO tracedjobs_periodic_ticks (task_name, periodic_id, tick)
    VALUES (%(task_name)s, %(periodic_id)s, %(tick)s)
    ON CONFLICT DO NOTHING
    RETURNING tick
), job AS (
    INSERT INTO tracedjobs_jobs
        (queue_name, task_name, priority, lock, queueing_lock, args, traceparent, tracestate)
    SELECT %(queue_name)s, %(task_name)s, %(priority)s, %(lock)s, %(queueing_lock)s,
           %(args)s::jsonb, %(traceparent)s, %(tracestate)s
      FROM tick
    ON CONFLICT (queueing_lock) WHERE status = 'todo' AND queueing_lock IS NOT NULL DO NOTHING
    RETURNING id
), linked AS (
    UPDATE tracedjobs_periodic_ticks t SET job_id = job.id FROM job
     WHERE t.task_name = %(task_name)s AND t.periodic_id = %(periodic_id)s AND t.tick = %(tick)s
)
SELECT (SELECT count(*) FROM tick)::integer AS tick_taken, (SELECT id FROM job) AS job_id;

-- name: prune_periodic_ticks
DELETE FROM tracedjobs_periodic_ticks WHERE created_at < now() - interval '1 day';

-- name: prune_finished_batch
-- A worker's `retention`: delete a batch of jobs that ended well (succeeded, cancelled,
-- aborted) more than %(seconds)s ago, with their history. Failed jobs are kept for people to
-- look at (`tracedjobs prune --include-failed`). Workers pruning at once skip each other's rows.
DELETE FROM tracedjobs_jobs WHERE id IN (
    SELECT id FROM tracedjobs_jobs
     WHERE status IN ('succeeded', 'cancelled', 'aborted')
       AND updated_at < now() - make_interval(secs => %(seconds)s)
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED)
RETURNING id;

-- name: prune_jobs
-- Delete finished jobs (with their attempts and events) older than the given age.
DELETE FROM tracedjobs_jobs
 WHERE status = ANY (%(statuses)s::text[])
   AND updated_at < now() - make_interval(secs => %(seconds)s)
   AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
RETURNING id;

-- name: retry_failed_ids
SELECT id FROM tracedjobs_jobs
 WHERE status = 'failed'
   AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
   AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s)
   AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s)
 ORDER BY id;

-- name: try_gauge_lock
-- Elects the one worker that exports the database-wide gauges: a session-level advisory
-- lock, held by that worker's dedicated connection until it closes (or its process dies).
SELECT pg_try_advisory_lock(7264051894);

-- name: gauge_workers
-- Liveness comes from tracedjobs_heartbeat_cutoff, like every other liveness decision.
SELECT id::text AS id, hostname,
       greatest(extract(epoch FROM now() - last_heartbeat_at), 0)::float8 AS heartbeat_age,
       last_heartbeat_at >= tracedjobs_heartbeat_cutoff(%(seconds)s) AS alive
  FROM tracedjobs_workers;

-- name: gauge_queue_jobs
SELECT queue_name, status, count(*)::bigint AS jobs
  FROM tracedjobs_jobs
 GROUP BY queue_name, status;

-- name: gauge_oldest_ready
-- Age of the oldest ready `todo` job per queue, counted from when it became runnable.
SELECT queue_name,
       greatest(extract(epoch FROM now() - min(coalesce(scheduled_at, created_at))), 0)::float8 AS age
  FROM tracedjobs_jobs
 WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
 GROUP BY queue_name;

-- name: top_snapshot
-- Everything one refresh of `tracedjobs top` shows, in one round trip. {filter} is a WHERE
-- fragment over tracedjobs_jobs j assembled by tui/model.py from fixed pieces whose values
-- are bound parameters. Ages and times are epoch seconds (database clock).
WITH raw_counts AS (
    -- Few rows: one per queue, status and "scheduled later". Failed jobs (which may pile
    -- up) are counted from the (queue_name, status) index alone.
    SELECT j.queue_name, j.status, j.scheduled_at > now() AS later, count(*) AS n,
           min(coalesce(j.scheduled_at, j.created_at)) AS oldest
      FROM tracedjobs_jobs j
     WHERE j.status IN ('todo', 'doing', 'aborting')
       AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
     GROUP BY 1, 2, 3
    UNION ALL
    SELECT j.queue_name, 'failed', false, count(*), NULL
      FROM tracedjobs_jobs j
     WHERE j.status = 'failed'
       AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
     GROUP BY 1
), counts AS (
    SELECT queue_name,
           coalesce(sum(n) FILTER (WHERE status = 'todo' AND later IS NOT TRUE), 0) AS ready,
           coalesce(sum(n) FILTER (WHERE status = 'todo' AND later), 0) AS scheduled,
           coalesce(sum(n) FILTER (WHERE status IN ('doing', 'aborting')), 0) AS running,
           coalesce(sum(n) FILTER (WHERE status = 'failed'), 0) AS failed,
           extract(epoch FROM now() - min(oldest)
                   FILTER (WHERE status = 'todo' AND later IS NOT TRUE))::float8 AS oldest_ready_age
      FROM raw_counts
     GROUP BY queue_name
), recent AS (
    -- Attempts finished in the last minutes (the finished_at index bounds the scan).
    SELECT j.queue_name, a.outcome, a.finished_at, a.queue_wait
      FROM tracedjobs_attempts a JOIN tracedjobs_jobs j ON j.id = a.job_id
     WHERE a.finished_at >= now() - make_interval(secs => %(window)s)
       AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
), rates AS (
    SELECT queue_name,
           count(*) FILTER (WHERE outcome = 'succeeded'
                            AND finished_at >= now() - interval '1 minute') AS done_1m,
           count(*) FILTER (WHERE outcome IN ('failed', 'retried', 'lost')
                            AND finished_at >= now() - interval '1 minute') AS failed_1m,
           count(*) FILTER (WHERE finished_at >= now() - interval '10 seconds') AS finished_10s,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY queue_wait) AS wait_p95
      FROM recent
     GROUP BY queue_name
), queues AS (
    SELECT coalesce(c.queue_name, r.queue_name) AS name,
           coalesce(c.ready, 0) AS ready, coalesce(c.scheduled, 0) AS scheduled,
           coalesce(c.running, 0) AS running, coalesce(c.failed, 0) AS failed,
           coalesce(r.done_1m, 0) AS done_1m, coalesce(r.failed_1m, 0) AS failed_1m,
           coalesce(r.finished_10s, 0) AS finished_10s,
           c.oldest_ready_age, r.wait_p95
      FROM counts c FULL JOIN rates r ON r.queue_name = c.queue_name
), workers AS (
    SELECT w.id::text AS id, w.name, w.hostname, w.pid, w.queues, w.concurrency,
           greatest(extract(epoch FROM now() - w.last_heartbeat_at), 0)::float8 AS heartbeat_age,
           w.last_heartbeat_at >= tracedjobs_heartbeat_cutoff(%(seconds)s) AS alive,
           (SELECT count(*) FROM tracedjobs_jobs j
             WHERE j.worker_id = w.id AND j.status IN ('doing', 'aborting')) AS running
      FROM tracedjobs_workers w
), tail AS (
    -- The newest entries of every job's history (see tracedjobs_job_history), each source
    -- read newest first from its primary key and bounded by its last 5,000 rows, so the
    -- cost does not grow with the tables. `key` names an entry across refreshes (a running
    -- attempt's `started` keeps its key once the attempt is written).
    -- Each source joins its job already: the job's columns come along from there.
    SELECT t.key, extract(epoch FROM t.at)::float8 AS at, t.type, t.job_id, t.task_name,
           t.queue_name, t.attempt, t.duration, t.error_type,
           coalesce(t.trace_id, nullif(split_part(t.traceparent, '-', 2), '')) AS trace_id, t.seq
      FROM (
        (SELECT 'e' || e.id AS key, e.at, e.type, e.job_id,
                coalesce(a.attempt, (e.detail ->> 'attempt')::integer) AS attempt, a.duration,
                coalesce(a.error_type, e.detail ->> 'error_type') AS error_type, a.trace_id, 2 AS seq,
                j.task_name, j.queue_name, j.traceparent
           FROM tracedjobs_events e
           JOIN tracedjobs_jobs j ON j.id = e.job_id
           LEFT JOIN tracedjobs_attempts a ON a.id = (e.detail ->> 'attempt_id')::bigint
          WHERE e.id > (SELECT coalesce(max(id), 0) FROM tracedjobs_events) - 5000
            AND e.at >= to_timestamp(%(after)s)
            AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
            AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
          ORDER BY e.id DESC LIMIT %(tail_limit)s)
        UNION ALL
        (SELECT 'd' || j.id, j.created_at, 'deferred', j.id, NULL, NULL, NULL, NULL, 0,
                j.task_name, j.queue_name, j.traceparent
           FROM tracedjobs_jobs j
          WHERE j.id > (SELECT coalesce(max(id), 0) FROM tracedjobs_jobs) - 5000
            AND j.created_at >= to_timestamp(%(after)s)
            AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
            AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
          ORDER BY j.id DESC LIMIT %(tail_limit)s)
        UNION ALL
        (SELECT 's' || a.id, a.started_at, 'started', a.job_id, a.attempt, NULL, NULL, a.trace_id, 1,
                j.task_name, j.queue_name, j.traceparent
           FROM tracedjobs_attempts a
           JOIN tracedjobs_jobs j ON j.id = a.job_id
          WHERE a.id > (SELECT coalesce(max(id), 0) FROM tracedjobs_attempts) - 5000
            AND a.started_at >= to_timestamp(%(after)s)
            AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
            AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
          ORDER BY a.id DESC LIMIT %(tail_limit)s)
        UNION ALL
        (SELECT 's' || j.attempt_id, j.started_at, 'started', j.id,
                j.attempts + j.lost_attempts + 1, NULL, NULL, NULL, 1,
                j.task_name, j.queue_name, j.traceparent
           FROM tracedjobs_jobs j
          WHERE j.status IN ('doing', 'aborting')
            AND j.started_at >= to_timestamp(%(after)s)
            AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
            AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
          ORDER BY j.started_at DESC LIMIT %(tail_limit)s)
      ) t
     ORDER BY t.at DESC, coalesce(t.attempt, 0) DESC, t.seq DESC
     LIMIT %(tail_limit)s
), failures AS (
    SELECT j.id, j.task_name, j.queue_name, j.attempts,
           extract(epoch FROM j.updated_at)::float8 AS at,
           a.error_type, a.error_message, a.trace_id
      FROM tracedjobs_jobs j
      LEFT JOIN LATERAL (SELECT * FROM tracedjobs_attempts a WHERE a.job_id = j.id
                          ORDER BY a.id DESC LIMIT 1) a ON true
     WHERE j.status = 'failed'
       AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
       AND {filter}
     ORDER BY j.updated_at DESC
     LIMIT %(failures_limit)s
), matching AS (
    SELECT j.id, j.task_name, j.queue_name, j.status, j.attempts,
           extract(epoch FROM j.updated_at)::float8 AS at,
           (SELECT a.error_type FROM tracedjobs_attempts a WHERE a.job_id = j.id
             ORDER BY a.id DESC LIMIT 1) AS error_type,
           nullif(split_part(j.traceparent, '-', 2), '') AS trace_id
      FROM tracedjobs_jobs j
     WHERE (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
       AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
       AND {filter}
       -- A bound on the primary key scan (the newest scan_window jobs; unbounded: 2^62).
       AND j.id > (SELECT coalesce(max(id), 0) FROM tracedjobs_jobs) - %(scan_window)s
     ORDER BY j.id DESC
     LIMIT %(jobs_limit)s
)
SELECT extract(epoch FROM now())::float8 AS now,
       (SELECT coalesce(max(version), 0) FROM tracedjobs_migrations) AS schema_version,
       (SELECT count(*) FROM tracedjobs_jobs j
         WHERE j.status IN ('doing', 'aborting')
           AND NOT EXISTS (SELECT 1 FROM tracedjobs_workers w
                            WHERE w.id = j.worker_id
                              AND w.last_heartbeat_at >= tracedjobs_heartbeat_cutoff(%(seconds)s))
       ) AS stalled,
       (SELECT coalesce(json_agg(q ORDER BY q.name), '[]') FROM queues q) AS queues,
       (SELECT coalesce(json_agg(w ORDER BY w.alive DESC, w.name), '[]') FROM workers w) AS workers,
       (SELECT coalesce(json_agg(t ORDER BY t.at DESC, coalesce(t.attempt, 0) DESC, t.seq DESC), '[]')
          FROM tail t) AS tail,
       (SELECT coalesce(json_agg(f ORDER BY f.at DESC), '[]') FROM failures f) AS failures,
       (SELECT coalesce(json_agg(m ORDER BY m.id DESC), '[]') FROM matching m) AS jobs;

-- name: top_matching_ids
-- Ids of the jobs a `top` filter matches, among the given statuses ({filter} as above).
SELECT j.id FROM tracedjobs_jobs j
 WHERE j.status = ANY (%(statuses)s::text[])
   AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s)
   AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
   AND {filter}
 ORDER BY j.id;

-- name: retry_failed_jobs
-- Bulk manual retry: failed jobs back to todo, history kept. A job whose queueing lock is
-- held by a waiting job stays failed (the unique index would refuse it).
WITH job AS (
    UPDATE tracedjobs_jobs j
       SET status = 'todo', worker_id = NULL, updated_at = now(), scheduled_at = now()
     WHERE j.id = ANY (%(ids)s::bigint[]) AND j.status = 'failed'
       AND (j.queueing_lock IS NULL OR NOT EXISTS (
            SELECT 1 FROM tracedjobs_jobs o
             WHERE o.queueing_lock = j.queueing_lock AND o.status = 'todo'))
    RETURNING j.id, j.scheduled_at, j.queue_name
), woken AS (
    SELECT count(pg_notify('tracedjobs_jobs', queue_name)) AS n
      FROM (SELECT DISTINCT queue_name FROM job) q
)
INSERT INTO tracedjobs_events (job_id, type, detail)
SELECT id, 'retried', jsonb_build_object('scheduled_at', scheduled_at) FROM job, woken
RETURNING job_id;

-- name: cancel_todo_jobs
-- Bulk cancel of waiting jobs (running ones are left alone).
WITH job AS (
    UPDATE tracedjobs_jobs SET status = 'cancelled', updated_at = now()
     WHERE id = ANY (%(ids)s::bigint[]) AND status = 'todo'
    RETURNING id
)
INSERT INTO tracedjobs_events (job_id, type) SELECT id, 'cancelled' FROM job RETURNING job_id;

-- Queries of tracedjobs.testing (the InMemoryConnector's views of its throwaway database).

-- name: testing_jobs
-- Every job (or one, with %(id)s) as Procrastinate's InMemoryConnector.jobs rows show it.
SELECT id, queue_name, task_name, priority, lock, queueing_lock, args, status, scheduled_at,
       attempts, status = 'aborting' AS abort_requested, worker_id, created_at, updated_at
  FROM tracedjobs_jobs
 WHERE %(id)s::bigint IS NULL OR id = %(id)s::bigint
 ORDER BY id;

-- name: testing_job_ids
SELECT id FROM tracedjobs_jobs ORDER BY id;

-- name: testing_events
SELECT job_id, type, at FROM tracedjobs_job_history ORDER BY at, job_id, attempt, seq, id;

-- name: testing_reset
-- Empty every table and restart the ids at 1. DELETE, not TRUNCATE: on a few rows it is
-- ~100x faster (TRUNCATE replaces files and takes exclusive locks).
DELETE FROM tracedjobs_events;
DELETE FROM tracedjobs_attempts;
DELETE FROM tracedjobs_jobs;
DELETE FROM tracedjobs_workers;
DELETE FROM tracedjobs_periodic_ticks;
SELECT setval(pg_get_serial_sequence('tracedjobs_jobs', 'id'), 1, false),
       setval(pg_get_serial_sequence('tracedjobs_events', 'id'), 1, false),
       setval(pg_get_serial_sequence('tracedjobs_attempts', 'id'), 1, false);
