-- tracedjobs schema, version 3: fewer writes per job.
--
-- A job used to cost eight row writes from defer to result; now five. The running attempt
-- lives on the job row (attempt_id, started_at, worker_id, worker_name); its attempt row is
-- written once, when it ends (a late finish after a rescue hits the rescue's row on the
-- primary key and is discarded, as before). The `deferred` and `started` entries of a
-- job's history are read from the job and attempt rows (view tracedjobs_job_history)
-- instead of being written as events. Stop every worker before applying this migration.

ALTER TABLE tracedjobs_jobs ADD COLUMN worker_name text;

-- Attempts still open were written by workers of the previous version; their job rows
-- hold everything about them.
DELETE FROM tracedjobs_attempts WHERE outcome IS NULL;

-- The history now derives these two.
DELETE FROM tracedjobs_events WHERE type IN ('deferred', 'started');

-- Wake-ups on updates are sent by the statements that make work ready (a retry, a lock
-- released, a manual retry, an abort request) instead of a trigger whose transition tables
-- copied every row of every claim and finish.
DROP TRIGGER tracedjobs_jobs_updated ON tracedjobs_jobs;
DROP FUNCTION tracedjobs_notify_updated();

-- A retry may not put a second job with the same queueing lock in `todo` (the unique index
-- would refuse the whole batch): such a job fails instead. Read with the statement's
-- snapshot, so every part of a finish agrees.
CREATE FUNCTION tracedjobs_retry_blocked(job_id bigint, queueing_lock text, next_status text)
    RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT next_status = 'todo' AND queueing_lock IS NOT NULL AND EXISTS (
              SELECT 1 FROM tracedjobs_jobs other
               WHERE other.queueing_lock = $2 AND other.status = 'todo' AND other.id <> $1) $$;

-- One index for counts by status and queue (gauges, `top`) and pruning by age, instead of
-- two updated on every status change; it carries the times `top` needs, so its counts are
-- read from the index alone.
DROP INDEX tracedjobs_jobs_status_updated_idx;
DROP INDEX tracedjobs_jobs_queue_status_idx;
CREATE INDEX tracedjobs_jobs_status_queue_idx ON tracedjobs_jobs (status, queue_name, updated_at)
    INCLUDE (scheduled_at, created_at);
-- The newest failures (`top`, the retry commands): failed jobs only, so rows that never fail
-- cost this index nothing.
CREATE INDEX tracedjobs_jobs_failed_idx ON tracedjobs_jobs (updated_at) WHERE status = 'failed';
-- "When is the next scheduled job due?", asked by every claim that finds nothing: one index
-- probe instead of a scan of the whole backlog.
CREATE INDEX tracedjobs_jobs_scheduled_idx ON tracedjobs_jobs (scheduled_at)
    WHERE status = 'todo' AND scheduled_at IS NOT NULL;

-- A job's whole history in order: its creation, each attempt's start (ended attempts and
-- the running one), and the recorded events (schedule, each attempt's end, lost, retried,
-- cancelled, abort requested...). `key` names an entry (e<event id>, d<job id>,
-- s<attempt id>); `attempt` and `seq` order entries that share a timestamp (a finish and
-- the next claim can be one transaction).
CREATE VIEW tracedjobs_job_history AS
SELECT 'd' || j.id AS key, NULL::bigint AS id, j.id AS job_id, 'deferred'::text AS type,
       j.created_at AS at, NULL::jsonb AS detail, 0 AS attempt, 0 AS seq
  FROM tracedjobs_jobs j
UNION ALL
SELECT 's' || a.id, NULL, a.job_id, 'started', a.started_at,
       jsonb_build_object('attempt', a.attempt, 'worker', a.worker_name), a.attempt, 1
  FROM tracedjobs_attempts a
UNION ALL
SELECT 's' || j.attempt_id, NULL, j.id, 'started', j.started_at,
       jsonb_build_object('attempt', j.attempts + j.lost_attempts + 1, 'worker', j.worker_name),
       j.attempts + j.lost_attempts + 1, 1
  FROM tracedjobs_jobs j
 WHERE j.status IN ('doing', 'aborting')
   AND NOT EXISTS (SELECT 1 FROM tracedjobs_attempts a WHERE a.id = j.attempt_id)
UNION ALL
SELECT 'e' || e.id, e.id, e.job_id, e.type, e.at, e.detail,
       coalesce((e.detail ->> 'attempt')::integer, 0), 2
  FROM tracedjobs_events e;
