-- Undo 0002: back to the 0001 recovery function; drops attempts and audit actions.
DROP FUNCTION IF EXISTS resume_run(text);
DROP FUNCTION IF EXISTS recover_stuck_runs(interval, integer, integer);

CREATE OR REPLACE FUNCTION recover_stuck_runs(
    older_than interval DEFAULT stuck_runs_threshold(),
    max_runs   integer  DEFAULT NULL
) RETURNS TABLE (
    run_id          text,
    previous_status text,
    completed       integer,
    total           integer,
    age             interval,
    idle            interval
)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    cutoff timestamptz;
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
    RETURN QUERY
    WITH candidates AS (
        SELECT r.id, r.status
        FROM qualification_runs AS r
        WHERE r.status IN ('PENDING', 'PROCESSING')
          AND r.updated_at < cutoff
        ORDER BY r.updated_at
        LIMIT max_runs
        FOR UPDATE SKIP LOCKED
    ), failed AS (
        UPDATE qualification_runs AS r
        SET status       = 'FAILED',
            completed_at = now(),
            error        = format(
                'Recovered as stuck by stuck-runs: %s with no sign of life for %s (threshold %s). Partial progress (%s/%s) was kept.',
                c.status, date_trunc('second', now() - r.updated_at), older_than,
                r.completed, r.total)
        FROM candidates AS c
        WHERE r.id = c.id
          AND r.status IN ('PENDING', 'PROCESSING')
          AND r.updated_at < cutoff
        RETURNING r.id, c.status, r.completed, r.total,
                  now() - r.created_at AS age, now() - r.updated_at AS idle
    ), audit AS (
        INSERT INTO run_recoveries (run_id, previous_status, completed, total, age, idle, older_than)
        SELECT f.id, f.status, f.completed, f.total, f.age, f.idle, older_than
        FROM failed AS f
    )
    SELECT f.id, f.status, f.completed, f.total, f.age, f.idle
    FROM failed AS f
    ORDER BY f.idle DESC, f.id;
END
$$;
COMMENT ON FUNCTION recover_stuck_runs(interval, integer) IS
    'Marks FAILED every PENDING/PROCESSING run with no sign of life (updated_at) for longer than older_than, keeping its progress, and returns one row per run this call changed. Rows locked by a worker are skipped, never waited on; max_runs bounds one call for batching big backlogs.';

DO $harden$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = pg_catalog.quote_ident(pg_catalog.current_schema())::pg_catalog.regnamespace
          AND p.proname IN ('recover_stuck_runs', 'stuck_runs_threshold',
                            'qualification_runs_touch')
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                                  fn, pg_catalog.current_schema());
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$harden$;

ALTER TABLE run_recoveries DROP COLUMN IF EXISTS action;
ALTER TABLE qualification_runs DROP COLUMN IF EXISTS attempts;
