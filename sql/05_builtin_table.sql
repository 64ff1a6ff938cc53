-- stuck-runs: the built-in qualification_runs table.
--
-- An application without a runs table gets this one, adopted and managed by
-- stuck-runs. An application whose ORM already created qualification_runs
-- keeps its table untouched: with our column names it is adopted as it is
-- (its index is then built CONCURRENTLY by `stuck-runs migrate`); with other
-- names `stuck-runs migrate` proposes the `stuck-runs adopt` command.

CREATE OR REPLACE FUNCTION qualification_runs_touch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.status IN ('PENDING', 'PROCESSING')
       AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        -- When the write happens, not when its transaction began: a worker
        -- reporting progress inside a long transaction is alive now.
        NEW.updated_at := pg_catalog.clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION qualification_runs_touch() IS
    'Makes every write to an active run a sign of life on the built-in table: a worker that only bumps completed, or sends a keep-alive UPDATE that changes nothing, keeps its run alive without knowing about updated_at. A move to a final status is not activity, so recovery keeps the run''s real last sign of life.';

CREATE OR REPLACE FUNCTION _stuck_runs_builtin_missing_columns(table_name regclass)
RETURNS text[]
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(pg_catalog.array_agg(c.name ORDER BY c.ord), '{}'::text[])
    FROM pg_catalog.unnest(ARRAY['id', 'status', 'total', 'completed', 'created_at', 'updated_at',
                      'completed_at', 'error']) WITH ORDINALITY AS c(name, ord)
    WHERE _stuck_runs_column_type(table_name, c.name) IS NULL
$$;
COMMENT ON FUNCTION _stuck_runs_builtin_missing_columns(regclass) IS
    'Which of the built-in table''s columns an existing qualification_runs lacks: none means it can be adopted as it is; otherwise `stuck-runs migrate` proposes an adopt command with its own names.';

DO $builtin$
DECLARE
    existing regclass := pg_catalog.to_regclass(pg_catalog.format('%I.qualification_runs', pg_catalog.current_schema()));
BEGIN
    IF existing IS NULL THEN
        CREATE TABLE qualification_runs (
            id           text PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid()::text,
            status       text NOT NULL DEFAULT 'PENDING'
                         CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
            total        integer NOT NULL DEFAULT 0 CHECK (total >= 0),
            completed    integer NOT NULL DEFAULT 0 CHECK (completed >= 0),
            created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
            updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
            completed_at timestamptz,
            error        text,
            attempts     integer NOT NULL DEFAULT 0
                         CONSTRAINT qualification_runs_attempts_check CHECK (attempts >= 0),
            owner        text
        );
        COMMENT ON COLUMN qualification_runs.updated_at IS
            'Last sign of life of the run. Any update that leaves the run PENDING or PROCESSING moves it to clock_timestamp() unless the update sets it itself; recovery (a move to FAILED) leaves it as it was.';
        COMMENT ON COLUMN qualification_runs.attempts IS
            'Retries so far: resume_run() and a requeueing recover_stuck_runs(max_attempts => N) add one.';
        COMMENT ON COLUMN qualification_runs.owner IS
            'The life of the application instance working on the run (stuck_runs_claim()): recovered at once when that life ends, never for silence while it lives. NULL: the threshold decides, as for every run before owners.';
        -- A sweep must cost O(active runs), not O(table): finished runs pile up
        -- by the million and are never looked at.
        CREATE INDEX qualification_runs_stuck_runs_idx ON qualification_runs (updated_at)
            WHERE status IN ('PENDING', 'PROCESSING');
        CREATE TRIGGER qualification_runs_touch BEFORE UPDATE ON qualification_runs
            FOR EACH ROW WHEN (NEW.status IN ('PENDING', 'PROCESSING'))
            EXECUTE FUNCTION qualification_runs_touch();
        PERFORM adopt_runs_table('qualification_runs', attempts_column => 'attempts', owner_column => 'owner');
        UPDATE stuck_runs_tables SET managed = true
        WHERE table_name = 'qualification_runs'::regclass;
    ELSIF NOT EXISTS (SELECT FROM stuck_runs_tables AS t WHERE t.table_name = existing)
          AND pg_catalog.cardinality(_stuck_runs_builtin_missing_columns(existing)) = 0 THEN
        BEGIN
            PERFORM adopt_runs_table(existing);
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE NOTICE 'stuck-runs: qualification_runs was not adopted: %', SQLERRM;
        END;
    END IF;
END
$builtin$;
