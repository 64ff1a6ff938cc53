-- 0001: the core: settings, the registry of runs tables and adoption,
-- recover_stuck_runs(), the stuck_runs/active_runs views, the audit trail and
-- the built-in qualification_runs table.
-- Landed migrations are immutable (tests/test_migrations.py checks their checksums).

-- stuck-runs: settings, the registry of runs tables, and the audit trail.
--
-- Everything is created unqualified, so it lands in the schema that the
-- connection's search_path selects (current_schema()): `public` by default,
-- the Prisma `?schema=` schema when the runner is given one.

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
    adopted_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE stuck_runs_tables IS
    'Runs tables that recovery covers, with their column names. Write it through adopt_runs_table(), which validates the mapping. managed marks the qualification_runs table that stuck-runs created itself.';

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

-- stuck-runs: adopting a runs table, whoever created it and whatever it calls its columns.

CREATE OR REPLACE FUNCTION stuck_runs_column_type(table_name regclass, column_name text)
RETURNS regtype
LANGUAGE sql STABLE
AS $$
    SELECT a.atttypid::regtype
    FROM pg_attribute AS a
    WHERE a.attrelid = table_name AND a.attname = column_name
      AND a.attnum > 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION stuck_runs_column_type(regclass, text) IS
    'The type of a column, or NULL when the table has no such column: the one catalog lookup adoption and the sweeps share.';

CREATE OR REPLACE FUNCTION stuck_runs_qualified_name(table_name regclass) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = table_name
$$;
COMMENT ON FUNCTION stuck_runs_qualified_name(regclass) IS
    'schema.table, both quoted: how built statements name a table, whatever search_path runs them.';

CREATE OR REPLACE FUNCTION stuck_runs_literals(vals text[]) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT string_agg(quote_literal(v), ', ' ORDER BY o) FROM unnest(vals) WITH ORDINALITY AS x(v, o) $$;
COMMENT ON FUNCTION stuck_runs_literals(text[]) IS
    'A status list as quoted literals for IN (...): the planner matches a partial index only against literal values.';

CREATE OR REPLACE FUNCTION stuck_runs_index_name(table_name regclass) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT left(c.relname, 47) || '_stuck_runs_idx' FROM pg_class AS c WHERE c.oid = table_name
$$;
COMMENT ON FUNCTION stuck_runs_index_name(regclass) IS
    'Name of the partial index that keeps sweeps of a runs table cheap (kept under 63 bytes).';

CREATE OR REPLACE FUNCTION stuck_runs_index_ddl(table_name regclass) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    WITH target AS (
        SELECT t.*, n.nspname, c.relname, stuck_runs_index_name(t.table_name) AS index_name,
               (SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
                WHERE i.indrelid = t.table_name AND ic.relname = stuck_runs_index_name(t.table_name)
               ) AS valid
        FROM stuck_runs_tables AS t
        JOIN pg_class AS c ON c.oid = t.table_name
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE t.table_name = stuck_runs_index_ddl.table_name
    )
    -- An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index behind,
    -- which IF NOT EXISTS would take for done: drop it first.
    SELECT format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', x.nspname, x.index_name)
    FROM target AS x WHERE x.valid = false
    UNION ALL
    SELECT format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON %I.%I (%I) WHERE %I IN (%s)',
                  x.index_name, x.nspname, x.relname, x.updated_at_column, x.status_column,
                  stuck_runs_literals(x.active_statuses))
    FROM target AS x WHERE x.valid IS DISTINCT FROM true
$$;
COMMENT ON FUNCTION stuck_runs_index_ddl(regclass) IS
    'The statements that give an adopted table its sweep index, in order; none when the index exists. Returned, not run: CONCURRENTLY cannot run inside a function''s transaction, and a plain CREATE INDEX would block the application''s writes.';

CREATE OR REPLACE FUNCTION adopt_runs_table(
    table_name          regclass,
    id_column           text   DEFAULT 'id',
    status_column       text   DEFAULT 'status',
    created_at_column   text   DEFAULT 'created_at',
    updated_at_column   text   DEFAULT 'updated_at',
    completed_at_column text   DEFAULT 'completed_at',
    error_column        text   DEFAULT 'error',
    completed_column    text   DEFAULT 'completed',
    total_column        text   DEFAULT 'total',
    active_statuses     text[] DEFAULT '{PENDING,PROCESSING}',
    failed_status       text   DEFAULT 'FAILED',
    attempts_column     text   DEFAULT NULL
) RETURNS stuck_runs_tables
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    entry    stuck_runs_tables;
    col      record;
    col_type regtype;
    labels   text[];
    wanted   text;
BEGIN
    IF table_name IS NULL OR NOT EXISTS (
        SELECT FROM pg_class AS c WHERE c.oid = table_name AND c.relkind IN ('r', 'p')
    ) THEN
        RAISE EXCEPTION 'adopt_runs_table: % is not a table', coalesce(table_name::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    FOR col IN
        SELECT * FROM (VALUES
            ('id_column', id_column, true, 'any'),
            ('status_column', status_column, true, 'status'),
            ('created_at_column', created_at_column, true, 'time'),
            ('updated_at_column', updated_at_column, true, 'time'),
            ('completed_at_column', completed_at_column, false, 'time'),
            ('error_column', error_column, false, 'text'),
            ('completed_column', completed_column, false, 'count'),
            ('total_column', total_column, false, 'count'),
            ('attempts_column', attempts_column, false, 'count')
        ) AS v(role, name, required, kind)
    LOOP
        IF col.name IS NULL THEN
            IF col.required THEN
                RAISE EXCEPTION 'adopt_runs_table: % is required', col.role
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            CONTINUE;
        END IF;
        col_type := stuck_runs_column_type(table_name, col.name);
        IF col_type IS NULL THEN
            RAISE EXCEPTION 'adopt_runs_table: table % has no column "%" (given as %)',
                table_name, col.name, col.role
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give the column name exactly as the table spells it, without quotes.';
        END IF;
        IF (col.kind = 'time' AND col_type NOT IN ('timestamptz'::regtype, 'timestamp'::regtype))
           OR (col.kind = 'count' AND col_type NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype))
           OR (col.kind = 'text' AND col_type NOT IN ('text'::regtype, 'varchar'::regtype))
           OR (col.kind = 'status' AND col_type NOT IN ('text'::regtype, 'varchar'::regtype)
               AND NOT EXISTS (SELECT FROM pg_type AS ty WHERE ty.oid = col_type AND ty.typtype = 'e'))
        THEN
            RAISE EXCEPTION 'adopt_runs_table: column "%" (given as %) is of type %, which cannot hold %',
                col.name, col.role, col_type,
                CASE col.kind WHEN 'time' THEN 'a timestamp' WHEN 'count' THEN 'an integer count'
                              WHEN 'text' THEN 'an error message' ELSE 'a status' END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    IF NOT EXISTS (
        SELECT FROM pg_index AS i
        JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = table_name AND i.indisunique AND i.indpred IS NULL
          AND i.indnkeyatts = 1 AND a.attname = id_column
    ) THEN
        RAISE EXCEPTION 'adopt_runs_table: column "%" (given as id_column) is neither the primary key nor unique in %',
            id_column, table_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Recovery changes runs one by one and needs an id that names exactly one row.';
    END IF;

    IF active_statuses IS NULL OR cardinality(active_statuses) = 0
       OR array_position(active_statuses, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'adopt_runs_table: active_statuses must list at least one status'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF failed_status IS NULL OR failed_status = ANY (active_statuses) THEN
        RAISE EXCEPTION 'adopt_runs_table: failed_status must be a status outside active_statuses, got %',
            coalesce(failed_status, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) INTO labels
    FROM pg_enum AS e
    WHERE e.enumtypid = stuck_runs_column_type(table_name, status_column);
    IF labels IS NOT NULL THEN
        FOREACH wanted IN ARRAY active_statuses || failed_status LOOP
            IF NOT wanted = ANY (labels) THEN
                RAISE EXCEPTION 'adopt_runs_table: status "%" is not a value of the enum % of column "%"',
                    wanted, stuck_runs_column_type(table_name, status_column), status_column
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Its values are: %s.', array_to_string(labels, ', '));
            END IF;
        END LOOP;
    END IF;

    INSERT INTO stuck_runs_tables AS t
        (table_name, id_column, status_column, created_at_column, updated_at_column,
         completed_at_column, error_column, completed_column, total_column,
         active_statuses, failed_status, attempts_column)
    VALUES
        (table_name, id_column, status_column, created_at_column, updated_at_column,
         completed_at_column, error_column, completed_column, total_column,
         active_statuses, failed_status, attempts_column)
    ON CONFLICT ON CONSTRAINT stuck_runs_tables_pkey DO UPDATE
    SET id_column = excluded.id_column, status_column = excluded.status_column,
        created_at_column = excluded.created_at_column,
        updated_at_column = excluded.updated_at_column,
        completed_at_column = excluded.completed_at_column,
        error_column = excluded.error_column, completed_column = excluded.completed_column,
        total_column = excluded.total_column, active_statuses = excluded.active_statuses,
        failed_status = excluded.failed_status, attempts_column = excluded.attempts_column,
        adopted_at = now()
    RETURNING t.* INTO entry;

    IF EXISTS (SELECT FROM stuck_runs_index_ddl(table_name)) THEN
        RAISE NOTICE 'stuck-runs: % has no index for sweeps yet; run outside a transaction: %',
            table_name, (SELECT string_agg(d, '; ') FROM stuck_runs_index_ddl(table_name) AS d);
    END IF;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION adopt_runs_table(regclass, text, text, text, text, text, text, text, text, text[], text, text) IS
    'Registers (or re-maps) a runs table so recovery covers it: which column plays which role, which statuses are active and which one means failed. Validates everything up front (SQLSTATE 22023 naming the column or value) so a sweep never meets a bad mapping. Never alters the table; see stuck_runs_index_ddl() for its index.';

CREATE OR REPLACE FUNCTION unadopt_runs_table(table_name regclass, drop_index boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    index_name text := stuck_runs_index_name(table_name);
    qualified  text;
BEGIN
    DELETE FROM stuck_runs_tables AS t WHERE t.table_name = unadopt_runs_table.table_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT format('%I.%I', n.nspname, index_name) INTO qualified
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = table_name;
    IF qualified IS NOT NULL AND to_regclass(qualified) IS NOT NULL THEN
        IF drop_index THEN
            EXECUTE format('DROP INDEX %s', qualified);
            RAISE NOTICE 'stuck-runs: dropped index %', qualified;
        ELSE
            RAISE NOTICE 'stuck-runs: index % left in place (unadopt_runs_table(..., drop_index => true) drops it)', qualified;
        END IF;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION unadopt_runs_table(regclass, boolean) IS
    'Stops covering a table; its rows are never touched. The sweep index stays unless drop_index: dropping it is a plain DROP INDEX, which briefly locks the table.';

CREATE OR REPLACE FUNCTION propose_runs_table_mapping(table_name regclass)
RETURNS TABLE (role text, column_name text)
LANGUAGE sql STABLE
AS $$
    -- Match roles to columns by their normalised names (created_at ~ createdAt ~
    -- created), preferring exact synonyms in order, then name prefixes
    -- (processedProspects, totalProspects), and only columns of a fitting type.
    WITH roles (role, synonyms, prefixes, kind, ord) AS (
        VALUES
            ('id_column', ARRAY['id', 'runid', 'uuid', 'key'], ARRAY[]::text[], 'any', 1),
            ('status_column', ARRAY['status', 'state', 'runstatus'], ARRAY['status'], 'status', 2),
            ('created_at_column', ARRAY['createdat', 'created', 'insertedat', 'createdon', 'createtime', 'startedat'], ARRAY['created'], 'time', 3),
            ('updated_at_column', ARRAY['updatedat', 'updated', 'lastheartbeatat', 'heartbeatat', 'lastheartbeat', 'heartbeat', 'lastactivityat', 'modifiedat', 'updatedon', 'updatetime'], ARRAY['updated', 'heartbeat', 'lastheartbeat'], 'time', 4),
            ('completed_at_column', ARRAY['completedat', 'finishedat', 'endedat', 'doneat', 'completed', 'finished'], ARRAY['completed', 'finished'], 'time', 5),
            ('error_column', ARRAY['error', 'errormessage', 'lasterror', 'failurereason', 'reason'], ARRAY['error'], 'text', 6),
            ('completed_column', ARRAY['completed', 'completedcount', 'processed', 'processedcount', 'done', 'progress'], ARRAY['completed', 'processed', 'done'], 'count', 7),
            ('total_column', ARRAY['total', 'totalcount', 'totalitems', 'count', 'size'], ARRAY['total'], 'count', 8),
            ('attempts_column', ARRAY['attempts', 'attempt', 'attemptcount', 'retries', 'retrycount'], ARRAY['attempt', 'retr'], 'count', 9)
    ), cols AS (
        SELECT a.attname::text AS name,
               lower(regexp_replace(a.attname, '[^[:alnum:]]', '', 'g')) AS norm,
               CASE
                   WHEN a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN 'time'
                   WHEN a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) THEN 'count'
                   WHEN a.atttypid IN ('text'::regtype, 'varchar'::regtype) THEN 'text'
                   WHEN ty.typtype = 'e' THEN 'status'
                   ELSE 'other'
               END AS kind
        FROM pg_attribute AS a JOIN pg_type AS ty ON ty.oid = a.atttypid
        WHERE a.attrelid = table_name AND a.attnum > 0 AND NOT a.attisdropped
    )
    SELECT r.role, (
        SELECT c.name
        FROM cols AS c
        CROSS JOIN LATERAL (
            SELECT min(x.rank) AS rank FROM (
                SELECT s.rank FROM unnest(r.synonyms) WITH ORDINALITY AS s(word, rank)
                WHERE s.word = c.norm
                UNION ALL
                SELECT 100 + p.rank FROM unnest(r.prefixes) WITH ORDINALITY AS p(word, rank)
                WHERE c.norm LIKE p.word || '%'
            ) AS x
        ) AS m
        WHERE m.rank IS NOT NULL
          AND (r.kind = 'any' OR c.kind = r.kind OR (r.kind = 'status' AND c.kind = 'text'))
        ORDER BY m.rank, c.name
        LIMIT 1)
    FROM roles AS r
    ORDER BY r.ord
$$;
COMMENT ON FUNCTION propose_runs_table_mapping(regclass) IS
    'A guess at adopt_runs_table()''s column arguments for a table, by name and type; NULL where nothing fits. `stuck-runs adopt` shows it and asks before adopting.';

-- stuck-runs: the recovery function, the views that show its work, and resume.

CREATE OR REPLACE FUNCTION stuck_runs_threshold() RETURNS interval
LANGUAGE sql STABLE
AS $$ SELECT s.older_than FROM stuck_runs_settings AS s $$;
COMMENT ON FUNCTION stuck_runs_threshold() IS
    'The database''s default threshold, for recover_stuck_runs()''s DEFAULT (a parameter default cannot hold a subquery).';

CREATE OR REPLACE FUNCTION stuck_runs_time_sql(table_name regclass, column_name text, row_alias text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    -- A timestamp without time zone is read as UTC, which is what Prisma and
    -- most ORMs write; the comparison stays on the bare column so its index works.
    SELECT CASE stuck_runs_column_type(table_name, column_name)
               WHEN 'timestamp'::regtype THEN format('(%I.%I AT TIME ZONE ''UTC'')', row_alias, column_name)
               ELSE format('%I.%I', row_alias, column_name)
           END
$$;
COMMENT ON FUNCTION stuck_runs_time_sql(regclass, text, text) IS
    'SQL text reading a time column as timestamptz, whichever of the two timestamp types it has.';

CREATE OR REPLACE FUNCTION stuck_runs_now_sql(table_name regclass, column_name text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE stuck_runs_column_type(table_name, column_name)
               WHEN 'timestamp'::regtype THEN '(now() AT TIME ZONE ''UTC'')' ELSE 'now()' END
$$;
COMMENT ON FUNCTION stuck_runs_now_sql(regclass, text) IS
    'SQL text for now() as a time column stores it: UTC wall-clock time for timestamp without time zone.';

CREATE OR REPLACE FUNCTION stuck_runs_count_sql(column_name text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN column_name IS NULL THEN 'NULL::integer' ELSE format('r.%I::integer', column_name) END
$$;
COMMENT ON FUNCTION stuck_runs_count_sql(text) IS
    'SQL text reading an optional integer column (completed, total, attempts) of row r, or NULL when the table has none.';

CREATE OR REPLACE FUNCTION stuck_runs_sweep_sql(t stuck_runs_tables) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    -- Parameters of the statement: $1 cutoff (timestamptz), $2 limit,
    -- $3 max_attempts, $4 older_than. Statuses are spelled as literals because
    -- the planner only matches the partial index against literal values.
    qualified   text := stuck_runs_qualified_name(t.table_name);
    active      text := stuck_runs_literals(t.active_statuses);
    status_type text := stuck_runs_column_type(t.table_name, t.status_column)::text;
    is_local    boolean := stuck_runs_column_type(t.table_name, t.updated_at_column) = 'timestamp'::regtype;
    cutoff      text := CASE WHEN is_local THEN '($1 AT TIME ZONE ''UTC'')' ELSE '$1' END;
    requeue     text := CASE WHEN t.attempts_column IS NULL THEN 'false'
                             ELSE format('coalesce(r.%I < $3, false)', t.attempts_column) END;
    progress    text;
    sets        text[];
BEGIN
    progress := CASE WHEN t.completed_column IS NULL OR t.total_column IS NULL
                     THEN '''. Partial progress was kept.'''
                     ELSE format('''. Partial progress ('' || r.%I || ''/'' || r.%I || '') was kept.''',
                                 t.completed_column, t.total_column) END;
    sets := ARRAY[
        format('%I = CASE WHEN %s THEN %L::%s ELSE %L::%s END',
               t.status_column, requeue, t.active_statuses[1], status_type, t.failed_status, status_type),
        format('%I = CASE WHEN %s THEN %s ELSE r.%I END',
               t.updated_at_column, requeue, stuck_runs_now_sql(t.table_name, t.updated_at_column),
               t.updated_at_column)];
    IF t.attempts_column IS NOT NULL THEN
        sets := sets || format('%I = CASE WHEN %s THEN r.%I + 1 ELSE r.%I END',
                               t.attempts_column, requeue, t.attempts_column, t.attempts_column);
    END IF;
    IF t.completed_at_column IS NOT NULL THEN
        sets := sets || format('%I = CASE WHEN %s THEN r.%I ELSE %s END',
            t.completed_at_column, requeue, t.completed_at_column,
            stuck_runs_now_sql(t.table_name, t.completed_at_column));
    END IF;
    IF t.error_column IS NOT NULL THEN
        sets := sets || format(
            '%I = CASE WHEN %s THEN r.%I ELSE ''Recovered as stuck by stuck-runs: '' || c.status'
            ' || '' with no sign of life for '' || date_trunc(''second'', now() - c.touched)'
            ' || '' (threshold '' || $4 || '')'' || %s END',
            t.error_column, requeue, t.error_column, progress);
    END IF;

    RETURN format($sql$
        WITH candidates AS (
            SELECT r.%1$I AS id, r.%2$I::text AS status, %3$s AS touched
            FROM %4$s AS r
            WHERE r.%2$I IN (%5$s) AND r.%6$I < %7$s
            ORDER BY r.%6$I
            LIMIT $2
            FOR UPDATE OF r SKIP LOCKED
        ), changed AS (
            UPDATE %4$s AS r
            SET %8$s
            FROM candidates AS c
            WHERE r.%1$I = c.id AND r.%2$I IN (%5$s) AND r.%6$I < %7$s
            RETURNING r.%1$I::text AS id, c.status, %9$s AS completed, %10$s AS total,
                      now() - %11$s AS age, now() - c.touched AS idle,
                      CASE WHEN r.%2$I::text = %12$L THEN 'failed' ELSE 'requeued' END AS action,
                      %13$s AS attempts
        ), audit AS (
            INSERT INTO run_recoveries
                (table_name, run_id, previous_status, completed, total, age, idle, older_than, action)
            SELECT %14$L, c.id, c.status, c.completed, c.total, c.age, c.idle, $4, c.action
            FROM changed AS c
        )
        SELECT array_agg(c.id), array_agg(c.status), array_agg(c.completed), array_agg(c.total),
               array_agg(c.age), array_agg(c.idle), array_agg(c.action), array_agg(c.attempts)
        FROM changed AS c
        $sql$,
        t.id_column, t.status_column, stuck_runs_time_sql(t.table_name, t.updated_at_column, 'r'),
        qualified, active, t.updated_at_column, cutoff,
        array_to_string(sets, ', '),
        stuck_runs_count_sql(t.completed_column), stuck_runs_count_sql(t.total_column),
        stuck_runs_time_sql(t.table_name, t.created_at_column, 'r'),
        t.failed_status,
        stuck_runs_count_sql(t.attempts_column),
        t.table_name::text);
END
$$;
COMMENT ON FUNCTION stuck_runs_sweep_sql(stuck_runs_tables) IS
    'Builds the one statement that recovers the stuck runs of one registered table: lock candidates skipping busy rows, re-check state in the UPDATE, write the audit rows, all at once. Identifiers go through %I, values through %L or parameters.';

CREATE OR REPLACE FUNCTION recover_stuck_runs(
    older_than   interval DEFAULT stuck_runs_threshold(),
    max_runs     integer  DEFAULT NULL
) RETURNS TABLE (
    table_name      text,
    run_id          text,
    previous_status text,
    completed       integer,
    total           integer,
    age             interval,
    idle            interval
)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    cutoff   timestamptz;
    t        stuck_runs_tables;
    tables   text[] := '{}'::text[];
    ids      text[] := '{}'::text[];
    statuses text[] := '{}'::text[];
    dones    integer[] := '{}'::integer[];
    totals   integer[] := '{}'::integer[];
    ages     interval[] := '{}'::interval[];
    idles    interval[] := '{}'::interval[];
    actions  text[] := '{}'::text[];
    tries    integer[] := '{}'::integer[];
    p_ids    text[];
    p_st     text[];
    p_done   integer[];
    p_total  integer[];
    p_age    interval[];
    p_idle   interval[];
    p_act    text[];
    p_try    integer[];
    probe     text;
    any_stuck boolean;
    n        integer;
    requeued integer;
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
    BEGIN
        cutoff := now() - older_than;
    EXCEPTION WHEN datetime_field_overflow THEN
        RAISE EXCEPTION 'recover_stuck_runs: older_than % is out of range', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END;

    FOR t IN
        SELECT s.* FROM stuck_runs_tables AS s
        WHERE EXISTS (SELECT FROM pg_class AS c WHERE c.oid = s.table_name)
        ORDER BY s.table_name::text
    LOOP
        EXIT WHEN max_runs IS NOT NULL AND cardinality(ids) >= max_runs;
        -- Nothing stuck is the usual case: a probe that costs a fraction of
        -- building and planning the full sweep answers it.
        probe := format('SELECT EXISTS (SELECT FROM %s AS r WHERE r.%I IN (%s) AND r.%I < %s)',
                        stuck_runs_qualified_name(t.table_name), t.status_column,
                        stuck_runs_literals(t.active_statuses), t.updated_at_column,
                        CASE WHEN stuck_runs_column_type(t.table_name, t.updated_at_column)
                                  = 'timestamp'::regtype
                             THEN '($1 AT TIME ZONE ''UTC'')' ELSE '$1' END);
        EXECUTE probe INTO any_stuck USING cutoff;
        CONTINUE WHEN NOT any_stuck;
        EXECUTE stuck_runs_sweep_sql(t)
            INTO p_ids, p_st, p_done, p_total, p_age, p_idle, p_act, p_try
            USING cutoff, max_runs - cardinality(ids), NULL::integer, older_than;
        CONTINUE WHEN p_ids IS NULL;
        tables := tables || array_fill(t.table_name::text, ARRAY[cardinality(p_ids)]);
        ids := ids || p_ids;
        statuses := statuses || p_st;
        dones := dones || p_done;
        totals := totals || p_total;
        ages := ages || p_age;
        idles := idles || p_idle;
        actions := actions || p_act;
        tries := tries || p_try;
    END LOOP;

    n := cardinality(ids);
    IF n > 0 THEN
        -- One notification per recovering call, delivered on commit only. Run ids
        -- are listed while the payload stays under PostgreSQL's 8000-byte limit.
        requeued := coalesce(cardinality(array_positions(actions, 'requeued')), 0);
        IF n <= 200 THEN
            payload := json_build_object(
                'count', n, 'failed', n - requeued, 'requeued', requeued,
                'runs', (SELECT json_agg(json_build_object('table', u.tbl, 'run_id', u.id, 'action', u.act))
                         FROM unnest(tables, ids, actions) AS u(tbl, id, act)),
                'runs_omitted', false)::text;
        END IF;
        IF payload IS NULL OR octet_length(payload) >= 8000 THEN
            payload := json_build_object(
                'count', n, 'failed', n - requeued, 'requeued', requeued,
                'runs_omitted', true)::text;
        END IF;
        PERFORM pg_notify('stuck_runs_recovered', payload);
    END IF;

    RETURN QUERY
    SELECT u.table_name, u.run_id, u.previous_status, u.completed, u.total, u.age, u.idle
    FROM unnest(tables, ids, statuses, dones, totals, ages, idles, actions, tries)
         AS u(table_name, run_id, previous_status, completed, total, age, idle, action, attempts)
    ORDER BY u.idle DESC, u.table_name, u.run_id;
END
$$;
COMMENT ON FUNCTION recover_stuck_runs(interval, integer) IS
    'Marks FAILED every active run, in every adopted table, with no sign of life (updated_at) for longer than older_than, keeping its progress; returns one row per run this call changed and audits each in run_recoveries. Rows locked by a worker are skipped, never waited on; max_runs bounds one call for batching big backlogs. Sends one NOTIFY stuck_runs_recovered per call that changed anything.';

CREATE OR REPLACE FUNCTION stuck_runs_list(idle_longer_than interval)
RETURNS TABLE (
    table_name text,
    run_id     text,
    status     text,
    completed  integer,
    total      integer,
    age        interval,
    idle       interval
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_variable
DECLARE
    t        stuck_runs_tables;
    is_local boolean;
BEGIN
    FOR t IN
        SELECT s.* FROM stuck_runs_tables AS s
        WHERE EXISTS (SELECT FROM pg_class AS c WHERE c.oid = s.table_name)
        ORDER BY s.table_name::text
    LOOP
        is_local := stuck_runs_column_type(t.table_name, t.updated_at_column) = 'timestamp'::regtype;
        RETURN QUERY EXECUTE format(
            'SELECT %L::text, r.%I::text, r.%I::text, %s, %s, now() - %s, now() - %s'
            ' FROM %s AS r WHERE r.%I IN (%s) AND ($1 IS NULL OR r.%I < %s)',
            t.table_name::text, t.id_column, t.status_column,
            stuck_runs_count_sql(t.completed_column), stuck_runs_count_sql(t.total_column),
            stuck_runs_time_sql(t.table_name, t.created_at_column, 'r'),
            stuck_runs_time_sql(t.table_name, t.updated_at_column, 'r'),
            stuck_runs_qualified_name(t.table_name), t.status_column,
            stuck_runs_literals(t.active_statuses),
            t.updated_at_column,
            CASE WHEN is_local THEN '((now() - $1) AT TIME ZONE ''UTC'')' ELSE '(now() - $1)' END)
        USING idle_longer_than;
    END LOOP;
END
$$;
COMMENT ON FUNCTION stuck_runs_list(interval) IS
    'Active runs of every adopted table, all of them (NULL) or only those idle for longer than the given interval: the body of the active_runs and stuck_runs views.';

CREATE OR REPLACE VIEW active_runs AS
SELECT l.table_name, l.run_id, l.status, l.completed, l.total, l.age, l.idle,
       l.idle > stuck_runs_threshold() AS stuck
FROM stuck_runs_list(NULL::interval) AS l;
COMMENT ON VIEW active_runs IS
    'Every run still active (PENDING/PROCESSING or the adopted table''s own statuses), stuck or not (stuck: the default threshold would recover it): what a status page or `stuck-runs list` shows.';

CREATE OR REPLACE VIEW stuck_runs AS
SELECT l.table_name, l.run_id, l.status, l.completed, l.total, l.age, l.idle
FROM stuck_runs_list(stuck_runs_threshold()) AS l;
COMMENT ON VIEW stuck_runs IS
    'What recover_stuck_runs() with the default threshold would recover now; reading it changes nothing.';

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
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION qualification_runs_touch() IS
    'Makes every write to an active run a sign of life on the built-in table: a worker that only bumps completed, or sends a keep-alive UPDATE that changes nothing, keeps its run alive without knowing about updated_at. A move to a final status is not activity, so recovery keeps the run''s real last sign of life.';

CREATE OR REPLACE FUNCTION stuck_runs_builtin_missing_columns(table_name regclass)
RETURNS text[]
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(array_agg(c.name ORDER BY c.ord), '{}'::text[])
    FROM unnest(ARRAY['id', 'status', 'total', 'completed', 'created_at', 'updated_at',
                      'completed_at', 'error']) WITH ORDINALITY AS c(name, ord)
    WHERE stuck_runs_column_type(table_name, c.name) IS NULL
$$;
COMMENT ON FUNCTION stuck_runs_builtin_missing_columns(regclass) IS
    'Which of the built-in table''s columns an existing qualification_runs lacks: none means it can be adopted as it is; otherwise `stuck-runs migrate` proposes an adopt command with its own names.';

DO $builtin$
DECLARE
    existing regclass := to_regclass(format('%I.qualification_runs', current_schema()));
BEGIN
    IF existing IS NULL THEN
        CREATE TABLE qualification_runs (
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
        -- A sweep must cost O(active runs), not O(table): finished runs pile up
        -- by the million and are never looked at.
        CREATE INDEX qualification_runs_stuck_runs_idx ON qualification_runs (updated_at)
            WHERE status IN ('PENDING', 'PROCESSING');
        CREATE TRIGGER qualification_runs_touch BEFORE UPDATE ON qualification_runs
            FOR EACH ROW WHEN (NEW.status IN ('PENDING', 'PROCESSING'))
            EXECUTE FUNCTION qualification_runs_touch();
        PERFORM adopt_runs_table('qualification_runs');
        UPDATE stuck_runs_tables SET managed = true
        WHERE table_name = 'qualification_runs'::regclass;
    ELSIF NOT EXISTS (SELECT FROM stuck_runs_tables AS t WHERE t.table_name = existing)
          AND cardinality(stuck_runs_builtin_missing_columns(existing)) = 0 THEN
        BEGIN
            PERFORM adopt_runs_table(existing);
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE NOTICE 'stuck-runs: qualification_runs was not adopted: %', SQLERRM;
        END;
    END IF;
END
$builtin$;

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
        WHERE p.pronamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(pg_catalog.current_schema()))
          AND (p.proname LIKE 'stuck\_runs\_%' OR p.proname IN (
               'recover_stuck_runs', 'adopt_runs_table', 'unadopt_runs_table',
               'propose_runs_table_mapping', 'resume_run', 'qualification_runs_touch'))
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                                  fn, pg_catalog.current_schema());
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$harden$;
