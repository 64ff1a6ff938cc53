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
-- Added after the first release (migration 0002); ADD COLUMN with a constant
-- default rewrites nothing, so it is safe on an application's big table too.
ALTER TABLE qualification_runs
    ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0
        CONSTRAINT qualification_runs_attempts_check CHECK (attempts >= 0);
COMMENT ON COLUMN qualification_runs.attempts IS
    'Retries so far: resume_run() and a requeueing recover_stuck_runs(max_attempts => N) add one.';
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
    recovered_by    text NOT NULL DEFAULT current_user,
    action          text NOT NULL DEFAULT 'failed'
                    CONSTRAINT run_recoveries_action_check CHECK (action IN ('failed', 'requeued'))
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
