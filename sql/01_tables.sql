-- stuck-runs: settings, the registry of runs tables, and the audit trail.
--
-- Everything is created unqualified, so it lands in the schema that the
-- connection's search_path selects (current_schema()): stuck-runs' own schema,
-- `stuck_runs` unless the runner is given --schema.

CREATE TABLE IF NOT EXISTS stuck_runs_settings (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    older_than interval NOT NULL DEFAULT interval '5 minutes'
               CHECK (older_than > interval '0')
);
COMMENT ON TABLE stuck_runs_settings IS
    'One row per database. older_than is the default threshold of recover_stuck_runs() and of the stuck_runs view; change it with UPDATE stuck_runs_settings SET older_than = ''15 minutes''.';
INSERT INTO stuck_runs_settings DEFAULT VALUES ON CONFLICT DO NOTHING;

-- Which tables hold runs, and which of their columns play which role. The
-- functions read this registry and build their statements from it, quoting
-- every identifier (format %I) and literal (%L): no name is ever concatenated.
CREATE TABLE IF NOT EXISTS stuck_runs_tables (
    table_name          regclass PRIMARY KEY,
    id_column           text NOT NULL,
    status_column       text NOT NULL,
    created_at_column   text NOT NULL,
    updated_at_column   text NOT NULL,
    completed_at_column text,
    error_column        text,
    completed_column    text,
    total_column        text,
    attempts_column     text,
    active_statuses     text[] NOT NULL,
    failed_status       text NOT NULL,
    managed             boolean NOT NULL DEFAULT false,
    adopted_at          timestamptz NOT NULL DEFAULT now(),
    schema_name         text,
    relation_name       text,
    time_zone           text NOT NULL DEFAULT 'UTC'
);
COMMENT ON TABLE stuck_runs_tables IS
    'Runs tables that recovery covers, with their column names. Write it through adopt_runs_table(), which validates the mapping and checks that the caller owns the table. managed marks the qualification_runs table that stuck-runs created itself.';
COMMENT ON COLUMN stuck_runs_tables.relation_name IS
    'The table''s name when it was adopted (with schema_name): an ORM that drops and re-creates the table gives it a new oid, and the name is how the stale entry is reported and replaced.';
COMMENT ON COLUMN stuck_runs_tables.time_zone IS
    'The zone in which the application writes its timestamp without time zone columns (UTC for Prisma); unused for timestamptz columns.';

CREATE TABLE IF NOT EXISTS run_recoveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name      text NOT NULL,
    run_id          text NOT NULL,
    previous_status text NOT NULL,
    completed       integer,
    total           integer,
    age             interval,
    idle            interval,
    older_than      interval NOT NULL,
    recovered_at    timestamptz NOT NULL DEFAULT now(),
    recovered_by    text NOT NULL DEFAULT current_user,
    action          text NOT NULL DEFAULT 'failed' CHECK (action IN ('failed', 'requeued'))
);
COMMENT ON TABLE run_recoveries IS
    'Audit trail: one row per run that recover_stuck_runs() changed, written in the same transaction as the change. No foreign key, so the trail outlives deleted runs.';
CREATE INDEX IF NOT EXISTS run_recoveries_run_id_idx ON run_recoveries (run_id);
