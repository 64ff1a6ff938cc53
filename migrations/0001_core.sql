-- 0001: the core: qualification_runs, run_recoveries, settings, recover_stuck_runs, views.
-- Landed migrations are immutable (tests/test_migrations.py checks their checksums).

-- stuck-runs: tables, index and trigger.
--
-- Everything is created unqualified, so it lands in the schema that the
-- connection's search_path selects (current_schema()): `public` by default,
-- the Prisma `?schema=` schema when the runner is given one.

-- An application may already have created qualification_runs through its ORM.
-- We never drop or rewrite it; if it lacks a column that recovery needs we stop
-- here, before anything else is created, and say which columns are missing.
DO $check_existing_table$
DECLARE
    required constant text[] := ARRAY[
        'id', 'status', 'total', 'completed', 'created_at', 'updated_at',
        'completed_at', 'error'];
    missing text[];
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_class c
        WHERE c.relname = 'qualification_runs'
          AND c.relnamespace = pg_catalog.quote_ident(pg_catalog.current_schema())::pg_catalog.regnamespace
    ) THEN
        RETURN;
    END IF;
    SELECT pg_catalog.array_agg(r.col ORDER BY r.ord) INTO missing
    FROM pg_catalog.unnest(required) WITH ORDINALITY AS r(col, ord)
    WHERE NOT EXISTS (
        SELECT FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = pg_catalog.format('%I.qualification_runs',
                                             pg_catalog.current_schema())::pg_catalog.regclass
          AND a.attname = r.col AND a.attnum > 0 AND NOT a.attisdropped);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'stuck-runs: table %.qualification_runs already exists but lacks the column(s) %',
            pg_catalog.current_schema(), pg_catalog.array_to_string(missing, ', ')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'stuck-runs never alters an existing table: add or rename these columns, then migrate again.';
    END IF;
END
$check_existing_table$;

CREATE TABLE IF NOT EXISTS stuck_runs_settings (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    older_than interval NOT NULL DEFAULT interval '5 minutes'
               CHECK (older_than > interval '0')
);
COMMENT ON TABLE stuck_runs_settings IS
    'One row per database. older_than is the default threshold of recover_stuck_runs() and of the stuck_runs view; change it with UPDATE stuck_runs_settings SET older_than = ''15 minutes''.';
INSERT INTO stuck_runs_settings DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS qualification_runs (
    id           text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    status       text NOT NULL DEFAULT 'PENDING'
                 CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
    total        integer NOT NULL DEFAULT 0 CHECK (total >= 0),
    completed    integer NOT NULL DEFAULT 0 CHECK (completed >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    error        text
);
COMMENT ON COLUMN qualification_runs.updated_at IS
    'Last sign of life of the run. Any update that leaves the run PENDING or PROCESSING moves it to now() unless the update sets it itself; recovery (a move to FAILED) leaves it as it was.';

-- A sweep must cost O(active runs), not O(table): finished runs pile up by the
-- million and are never looked at. The predicate spells the statuses literally,
-- because the planner only matches a partial index against literal values.
CREATE INDEX IF NOT EXISTS qualification_runs_active_idx
    ON qualification_runs (updated_at)
    WHERE status IN ('PENDING', 'PROCESSING');

CREATE TABLE IF NOT EXISTS run_recoveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          text NOT NULL,
    previous_status text NOT NULL,
    completed       integer,
    total           integer,
    age             interval,
    idle            interval,
    older_than      interval NOT NULL,
    recovered_at    timestamptz NOT NULL DEFAULT now(),
    recovered_by    text NOT NULL DEFAULT current_user
);
COMMENT ON TABLE run_recoveries IS
    'Audit trail: one row per run that recover_stuck_runs() changed, written in the same transaction as the change. No foreign key, so the trail outlives deleted runs.';
CREATE INDEX IF NOT EXISTS run_recoveries_run_id_idx ON run_recoveries (run_id);

CREATE OR REPLACE FUNCTION qualification_runs_touch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.status IN ('PENDING', 'PROCESSING')
       AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at
       AND NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION qualification_runs_touch() IS
    'Makes progress a sign of life: a worker that only bumps completed keeps its run alive without knowing about updated_at. A move to a final status is not activity, so recovery keeps the run''s real last sign of life.';

CREATE OR REPLACE TRIGGER qualification_runs_touch
    BEFORE UPDATE ON qualification_runs
    FOR EACH ROW EXECUTE FUNCTION qualification_runs_touch();
-- stuck-runs: the recovery function and the two views that show its work.

CREATE OR REPLACE FUNCTION stuck_runs_threshold() RETURNS interval
LANGUAGE sql STABLE
AS $$ SELECT s.older_than FROM stuck_runs_settings AS s $$;
COMMENT ON FUNCTION stuck_runs_threshold() IS
    'The database''s default threshold, for recover_stuck_runs()''s DEFAULT (a parameter default cannot hold a subquery).';

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
-- stuck-runs: pin every function's search_path and take EXECUTE away from PUBLIC.
--
-- The schema is only known at install time (public, or the app's own schema),
-- so the pinning is done here for every function of ours in current_schema():
-- pg_catalog first so no one can shadow now() or format(), our schema next,
-- pg_temp last so a temporary table cannot stand in for ours (CVE-2018-1058).
-- Run this after any CREATE OR REPLACE FUNCTION: replacing a function resets
-- its SET clauses.
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
