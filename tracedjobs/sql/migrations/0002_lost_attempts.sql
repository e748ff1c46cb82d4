-- tracedjobs schema, version 2.
-- A lost attempt (its worker died) is the worker's failure, not the task's: it does not
-- spend the task's retry budget (`attempts`). It is counted here instead, so that a job
-- that kills its worker every time still ends failed after a few re-runs.
ALTER TABLE tracedjobs_jobs ADD COLUMN lost_attempts integer NOT NULL DEFAULT 0;
