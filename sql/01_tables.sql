-- stuck-runs: settings, the registry of runs tables, and the audit trail.
--
-- Everything is created unqualified, so it lands in the schema that the
-- connection's search_path selects (current_schema()): stuck-runs' own schema,
-- `stuck_runs` unless the runner is given --schema.

CREATE OR REPLACE FUNCTION _stuck_runs_positive(threshold interval) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    -- Not just threshold > 0: intervals compare as if a month were 30 days and
    -- a year 360, so '-1 year 361 days' is "positive" while now() minus it lies
    -- days in the future, where it would make every active run stuck. Every
    -- part (months, days, time) must be >= 0, and one of them > 0.
    SELECT threshold OPERATOR(pg_catalog.>) interval '0'
           AND pg_catalog.date_part('year', threshold) OPERATOR(pg_catalog.>=) 0
           AND pg_catalog.date_part('month', threshold) OPERATOR(pg_catalog.>=) 0
           AND pg_catalog.date_part('day', threshold) OPERATOR(pg_catalog.>=) 0
           AND threshold OPERATOR(pg_catalog.-) pg_catalog.date_trunc('day', threshold)
               OPERATOR(pg_catalog.>=) interval '0'
$$;
COMMENT ON FUNCTION _stuck_runs_positive(interval) IS
    'Whether a threshold lies in the past whatever the calendar: every part of it (months, days, time) at least zero, and the whole more than zero.';

CREATE TABLE IF NOT EXISTS stuck_runs_settings (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    older_than interval NOT NULL DEFAULT interval '5 minutes'
               CHECK (older_than > interval '0'),
    CONSTRAINT stuck_runs_settings_older_than_parts CHECK (_stuck_runs_positive(older_than)),
    dead_after interval NOT NULL DEFAULT interval '20 seconds'
               CONSTRAINT stuck_runs_settings_dead_after_check CHECK (_stuck_runs_positive(dead_after))
);
COMMENT ON TABLE stuck_runs_settings IS
    'One row per database. older_than is the default threshold of recover_stuck_runs() and of the stuck_runs view; change it with UPDATE stuck_runs_settings SET older_than = ''15 minutes''.';
COMMENT ON COLUMN stuck_runs_settings.dead_after IS
    'How long an application instance may go without a heartbeat (database clock) before its life is over and its runs are recovered, whatever their idle time. Counted only once the server itself has been up that long, so a restart of the database is no mass death.';
INSERT INTO stuck_runs_settings DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION _stuck_runs_schema() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT c.relnamespace::regnamespace::text FROM pg_catalog.pg_class AS c
    WHERE c.oid OPERATOR(pg_catalog.=) 'stuck_runs_settings'::regclass
$$;
COMMENT ON FUNCTION _stuck_runs_schema() IS
    'The schema stuck-runs lives in, quoted as needed: inside a function with a pinned search_path, current_schema() is pg_catalog.';

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
    adopted_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    schema_name         text,
    relation_name       text,
    time_zone           text NOT NULL DEFAULT 'UTC',
    adopted_by          regrole,
    owner_column        text
);
COMMENT ON TABLE stuck_runs_tables IS
    'Runs tables that recovery covers, with their column names. Write it through adopt_runs_table(), which validates the mapping and checks that the caller owns the table. managed marks the qualification_runs table that stuck-runs created itself.';
COMMENT ON COLUMN stuck_runs_tables.relation_name IS
    'The table''s name when it was adopted (with schema_name): an ORM that drops and re-creates the table gives it a new oid, and the name is how the stale entry is reported and replaced.';
COMMENT ON COLUMN stuck_runs_tables.adopted_by IS
    'The role that registered the table (set by the registry''s trigger): the entry is swept only while that role could still adopt the table. NULL for entries older than 0.3, which wait for `stuck-runs migrate --adopt` to confirm them.';
COMMENT ON COLUMN stuck_runs_tables.owner_column IS
    'The column naming the life of the application instance working on a run (stuck_runs_start()), if the table has one: a run whose owner''s life is over is recovered at once, one whose owner is alive never for silence alone. Any type whose text form holds the life token (text, varchar, uuid); NULL allowed.';
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
    recovered_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    recovered_by    text NOT NULL DEFAULT current_user,
    action          text NOT NULL DEFAULT 'failed' CHECK (action IN ('failed', 'requeued')),
    reason          text
);
COMMENT ON TABLE run_recoveries IS
    'Audit trail: one row per run that recover_stuck_runs() changed, written in the same transaction as the change. No foreign key, so the trail outlives deleted runs.';
COMMENT ON COLUMN run_recoveries.reason IS
    'Why the run was taken: NULL for no sign of life for older_than (the threshold, as every release before owners), or what ended its owner''s life (''instance web restarted'', ''instance web stopped heartbeating'').';
CREATE INDEX IF NOT EXISTS run_recoveries_run_id_idx ON run_recoveries (run_id);

CREATE OR REPLACE FUNCTION _stuck_runs_audit_stamp() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Who and when are never the writer's word: a role allowed to recover
    -- could otherwise file rows in another role's name, or in the past.
    NEW.recovered_by := CURRENT_USER::text;
    NEW.recovered_at := pg_catalog.now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION _stuck_runs_audit_stamp() IS
    'Stamps every audit row with the role that wrote it and the time of its transaction, whatever the INSERT said.';
DROP TRIGGER IF EXISTS _stuck_runs_audit_stamp ON run_recoveries;
-- Only rows that say otherwise are stamped: a sweep writes the stamp itself,
-- and a call of the trigger function per audit row would cost a bulk
-- recovery as much again as the audit does.
CREATE TRIGGER _stuck_runs_audit_stamp BEFORE INSERT ON run_recoveries
    FOR EACH ROW
    WHEN (NEW.recovered_by IS DISTINCT FROM CURRENT_USER::pg_catalog.text
          OR NEW.recovered_at IS DISTINCT FROM pg_catalog.now())
    EXECUTE FUNCTION _stuck_runs_audit_stamp();

-- The column roles a runs table maps, as data: adoption validates a mapping,
-- proposes one and reports a broken one from these rows, and the runner reads
-- its --column ROLE names from here. A new role is one row here, a column of
-- stuck_runs_tables named by `parameter`, and that parameter of adopt_runs_table().
CREATE TABLE IF NOT EXISTS stuck_runs_roles (
    role           text PRIMARY KEY,
    parameter      text NOT NULL UNIQUE,
    kind           text NOT NULL CHECK (kind IN ('any', 'status', 'time', 'text', 'count')),
    required       boolean NOT NULL,
    default_column text,
    synonyms       text[] NOT NULL,
    prefixes       text[] NOT NULL,
    position       integer NOT NULL UNIQUE
);
COMMENT ON TABLE stuck_runs_roles IS
    'The roles a runs table''s columns play (id, status, created_at, ...): kind of column each needs, whether it is required, adopt_runs_table()''s default name, and the names (normalised: lower case, letters and digits) that propose_runs_table_mapping() matches, exactly (synonyms) or as a prefix.';
INSERT INTO stuck_runs_roles (role, parameter, kind, required, default_column, synonyms, prefixes, position)
VALUES
    ('id', 'id_column', 'any', true, 'id', '{id,runid,uuid,key}', '{}', 1),
    ('status', 'status_column', 'status', true, 'status', '{status,state,runstatus}', '{status}', 2),
    ('created_at', 'created_at_column', 'time', true, 'created_at',
     '{createdat,created,insertedat,createdon,createtime,startedat}', '{created}', 3),
    ('updated_at', 'updated_at_column', 'time', true, 'updated_at',
     '{updatedat,updated,lastheartbeatat,heartbeatat,lastheartbeat,heartbeat,lastactivityat,modifiedat,updatedon,updatetime}',
     '{updated,heartbeat,lastheartbeat}', 4),
    ('completed_at', 'completed_at_column', 'time', false, 'completed_at',
     '{completedat,finishedat,endedat,doneat,completed,finished}', '{completed,finished}', 5),
    ('error', 'error_column', 'text', false, 'error',
     '{error,errormessage,lasterror,failurereason,reason}', '{error}', 6),
    ('completed', 'completed_column', 'count', false, 'completed',
     '{completed,completedcount,processed,processedcount,done,progress}', '{completed,processed,done}', 7),
    ('total', 'total_column', 'count', false, 'total',
     '{total,totalcount,totalitems,count,size}', '{total}', 8),
    ('attempts', 'attempts_column', 'count', false, NULL,
     '{attempts,attempt,attemptcount,retries,retrycount}', '{attempt,retr}', 9),
    ('owner', 'owner_column', 'any', false, NULL, '{stuckrunsowner,ownerlife,lifeid}', '{}', 10)
ON CONFLICT (role) DO NOTHING;
