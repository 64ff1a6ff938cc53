-- stuck-runs: the recovery function and the two views that show its work.

CREATE OR REPLACE FUNCTION stuck_runs_threshold() RETURNS interval
LANGUAGE sql STABLE
AS $$ SELECT s.older_than FROM stuck_runs_settings AS s $$;
COMMENT ON FUNCTION stuck_runs_threshold() IS
    'The database''s default threshold, for recover_stuck_runs()''s DEFAULT (a parameter default cannot hold a subquery).';

CREATE OR REPLACE FUNCTION recover_stuck_runs(
    older_than   interval DEFAULT stuck_runs_threshold(),
    max_runs     integer  DEFAULT NULL,
    max_attempts integer  DEFAULT NULL
) RETURNS TABLE (
    run_id          text,
    previous_status text,
    completed       integer,
    total           integer,
    age             interval,
    idle            interval,
    action          text,
    attempts        integer
)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    cutoff   timestamptz;
    ids      text[];
    statuses text[];
    dones    integer[];
    totals   integer[];
    ages     interval[];
    idles    interval[];
    actions  text[];
    tries    integer[];
    n        integer;
    payload  text;
BEGIN
    IF older_than IS NULL OR older_than <= interval '0' THEN
        RAISE EXCEPTION 'recover_stuck_runs: older_than must be a positive interval, got %',
            coalesce(older_than::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: SELECT * FROM recover_stuck_runs(''5 minutes'').';
    END IF;
    IF max_runs IS NOT NULL AND max_runs < 1 THEN
        RAISE EXCEPTION 'recover_stuck_runs: max_runs must be at least 1 (or NULL for no limit), got %', max_runs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_attempts IS NOT NULL AND max_attempts < 0 THEN
        RAISE EXCEPTION 'recover_stuck_runs: max_attempts must be 0 or more (or NULL: never requeue), got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        cutoff := now() - older_than;
    EXCEPTION WHEN datetime_field_overflow THEN
        RAISE EXCEPTION 'recover_stuck_runs: older_than % is out of range', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END;

    -- Lock the candidates, skipping any row a worker holds right now, then
    -- change only rows that are still active and idle: under READ COMMITTED
    -- the UPDATE re-reads a row a worker committed in the meantime and leaves
    -- it alone (the bug River shipped as riverqueue/river#1302).
    WITH candidates AS (
        SELECT r.id, r.status, r.updated_at
        FROM qualification_runs AS r
        WHERE r.status IN ('PENDING', 'PROCESSING')
          AND r.updated_at < cutoff
        ORDER BY r.updated_at
        LIMIT max_runs
        FOR UPDATE SKIP LOCKED
    ), changed AS (
        UPDATE qualification_runs AS r
        SET status       = CASE WHEN r.attempts < max_attempts THEN 'PENDING' ELSE 'FAILED' END,
            attempts     = CASE WHEN r.attempts < max_attempts THEN r.attempts + 1 ELSE r.attempts END,
            -- A requeued run starts its idle clock afresh; a failed one keeps its last sign of life.
            updated_at   = CASE WHEN r.attempts < max_attempts THEN now() ELSE r.updated_at END,
            completed_at = CASE WHEN r.attempts < max_attempts THEN r.completed_at ELSE now() END,
            error        = CASE WHEN r.attempts < max_attempts THEN r.error ELSE format(
                'Recovered as stuck by stuck-runs: %s with no sign of life for %s (threshold %s). Partial progress (%s/%s) was kept.',
                c.status, date_trunc('second', now() - r.updated_at), older_than,
                r.completed, r.total) END
        FROM candidates AS c
        WHERE r.id = c.id
          AND r.status IN ('PENDING', 'PROCESSING')
          AND r.updated_at < cutoff
        RETURNING r.id, c.status, r.completed, r.total,
                  now() - r.created_at AS age,
                  now() - c.updated_at AS idle,
                  CASE r.status WHEN 'PENDING' THEN 'requeued' ELSE 'failed' END AS action,
                  r.attempts
    ), audit AS (
        INSERT INTO run_recoveries
            (run_id, previous_status, completed, total, age, idle, older_than, action)
        SELECT c.id, c.status, c.completed, c.total, c.age, c.idle, older_than, c.action
        FROM changed AS c
    )
    SELECT array_agg(c.id), array_agg(c.status), array_agg(c.completed), array_agg(c.total),
           array_agg(c.age), array_agg(c.idle), array_agg(c.action), array_agg(c.attempts)
    INTO ids, statuses, dones, totals, ages, idles, actions, tries
    FROM changed AS c;

    n := coalesce(cardinality(ids), 0);
    IF n > 0 THEN
        -- One notification per recovering call, delivered on commit only. Run ids
        -- are listed while the payload stays under PostgreSQL's 8000-byte limit.
        payload := json_build_object(
            'count', n,
            'failed', n - cardinality(array_positions(actions, 'requeued')),
            'requeued', cardinality(array_positions(actions, 'requeued')),
            'runs', CASE WHEN n <= 200 THEN (
                SELECT json_agg(json_build_object('run_id', u.id, 'action', u.action))
                FROM unnest(ids, actions) AS u(id, action)) END,
            'runs_omitted', false)::text;
        IF n > 200 OR octet_length(payload) >= 8000 THEN
            payload := json_build_object(
                'count', n,
                'failed', n - cardinality(array_positions(actions, 'requeued')),
                'requeued', cardinality(array_positions(actions, 'requeued')),
                'runs_omitted', true)::text;
        END IF;
        PERFORM pg_notify('stuck_runs_recovered', payload);
    END IF;

    RETURN QUERY
    SELECT u.*
    FROM unnest(ids, statuses, dones, totals, ages, idles, actions, tries)
         AS u(run_id, previous_status, completed, total, age, idle, action, attempts)
    ORDER BY u.idle DESC, u.run_id;
END
$$;
COMMENT ON FUNCTION recover_stuck_runs(interval, integer, integer) IS
    'Marks FAILED every PENDING/PROCESSING run with no sign of life (updated_at) for longer than older_than, keeping its progress, and returns one row per run this call changed. Rows locked by a worker are skipped, never waited on; max_runs bounds one call for batching big backlogs. With max_attempts, a run with retries left goes back to PENDING instead (action requeued). Sends one NOTIFY stuck_runs_recovered per call that changed anything.';

CREATE OR REPLACE FUNCTION resume_run(run_id text) RETURNS qualification_runs
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    run qualification_runs;
BEGIN
    IF run_id IS NULL THEN
        RAISE EXCEPTION 'resume_run: run_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO run FROM qualification_runs AS r WHERE r.id = resume_run.run_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'resume_run: no run with id %', run_id USING ERRCODE = 'no_data_found';
    END IF;
    IF run.status <> 'FAILED' THEN
        RAISE EXCEPTION 'resume_run: run % is %; only a FAILED run can be resumed', run_id, run.status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE qualification_runs AS r
    SET status = 'PENDING', completed_at = NULL, error = NULL,
        attempts = r.attempts + 1, updated_at = now()
    WHERE r.id = resume_run.run_id
    RETURNING r.* INTO run;
    RETURN run;
END
$$;
COMMENT ON FUNCTION resume_run(text) IS
    'Gives a FAILED run another go: back to PENDING with its progress (completed/total) kept, one more attempt counted, and a fresh idle clock so recovery does not take it straight back.';

CREATE OR REPLACE VIEW active_runs AS
SELECT r.id                  AS run_id,
       r.status,
       r.completed,
       r.total,
       now() - r.created_at AS age,
       now() - r.updated_at AS idle
FROM qualification_runs AS r
WHERE r.status IN ('PENDING', 'PROCESSING');
COMMENT ON VIEW active_runs IS
    'Every run still PENDING or PROCESSING, stuck or not: what a status page or `stuck-runs list` shows.';

CREATE OR REPLACE VIEW stuck_runs AS
SELECT r.id                  AS run_id,
       r.status,
       r.completed,
       r.total,
       now() - r.created_at AS age,
       now() - r.updated_at AS idle
FROM qualification_runs AS r
WHERE r.status IN ('PENDING', 'PROCESSING')
  AND r.updated_at < now() - (SELECT s.older_than FROM stuck_runs_settings AS s);
COMMENT ON VIEW stuck_runs IS
    'What recover_stuck_runs() with the default threshold would recover now; reading it changes nothing.';
