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
    max_runs     integer  DEFAULT NULL,
    max_attempts integer  DEFAULT NULL
) RETURNS TABLE (
    table_name      text,
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
            USING cutoff, max_runs - cardinality(ids), max_attempts, older_than;
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
    SELECT u.*
    FROM unnest(tables, ids, statuses, dones, totals, ages, idles, actions, tries)
         AS u(table_name, run_id, previous_status, completed, total, age, idle, action, attempts)
    ORDER BY u.idle DESC, u.table_name, u.run_id;
END
$$;
COMMENT ON FUNCTION recover_stuck_runs(interval, integer, integer) IS
    'Marks FAILED every active run, in every adopted table, with no sign of life (updated_at) for longer than older_than, keeping its progress; returns one row per run this call changed and audits each in run_recoveries. Rows locked by a worker are skipped, never waited on; max_runs bounds one call for batching big backlogs; with max_attempts a run with retries left goes back to its first active status instead (action requeued). Sends one NOTIFY stuck_runs_recovered per call that changed anything.';

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

CREATE OR REPLACE FUNCTION resume_run(run_id text, in_table regclass DEFAULT NULL)
RETURNS TABLE (
    table_name text,
    id         text,
    status     text,
    completed  integer,
    total      integer,
    attempts   integer
)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    t         stuck_runs_tables;
    found_in  stuck_runs_tables;
    qualified text;
    found_q   text;
    found_status text;
    status_of text;
BEGIN
    IF run_id IS NULL THEN
        RAISE EXCEPTION 'resume_run: run_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR t IN
        SELECT s.* FROM stuck_runs_tables AS s
        WHERE EXISTS (SELECT FROM pg_class AS c WHERE c.oid = s.table_name)
          AND (in_table IS NULL OR s.table_name = in_table)
        ORDER BY s.table_name::text
    LOOP
        qualified := stuck_runs_qualified_name(t.table_name);
        BEGIN
            EXECUTE format('SELECT r.%I::text FROM %s AS r WHERE r.%I = $1::%s FOR UPDATE',
                           t.status_column, qualified, t.id_column,
                           stuck_runs_column_type(t.table_name, t.id_column))
                INTO status_of USING run_id;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            status_of := NULL;  -- not an id this table can hold
        END;
        CONTINUE WHEN status_of IS NULL;
        IF found_in IS NOT NULL THEN
            RAISE EXCEPTION 'resume_run: run % exists in % and in %; name the table', run_id, found_in.table_name, t.table_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        found_in := t;
        found_q := qualified;
        found_status := status_of;
    END LOOP;
    IF found_in IS NULL THEN
        RAISE EXCEPTION 'resume_run: no run with id %', run_id USING ERRCODE = 'no_data_found';
    END IF;
    IF found_status <> found_in.failed_status THEN
        RAISE EXCEPTION 'resume_run: run % is %; only a % run can be resumed', run_id, found_status, found_in.failed_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    t := found_in;
    RETURN QUERY EXECUTE format(
        'UPDATE %s AS r SET %I = %L::%s, %I = %s%s%s%s WHERE r.%I = $1::%s'
        ' RETURNING %L::text, r.%I::text, r.%I::text, %s, %s, %s',
        found_q, t.status_column, t.active_statuses[1],
        stuck_runs_column_type(t.table_name, t.status_column),
        t.updated_at_column, stuck_runs_now_sql(t.table_name, t.updated_at_column),
        CASE WHEN t.completed_at_column IS NULL THEN '' ELSE format(', %I = NULL', t.completed_at_column) END,
        CASE WHEN t.error_column IS NULL THEN '' ELSE format(', %I = NULL', t.error_column) END,
        CASE WHEN t.attempts_column IS NULL THEN '' ELSE format(', %I = r.%I + 1', t.attempts_column, t.attempts_column) END,
        t.id_column, stuck_runs_column_type(t.table_name, t.id_column),
        t.table_name::text, t.id_column, t.status_column,
        stuck_runs_count_sql(t.completed_column), stuck_runs_count_sql(t.total_column),
        stuck_runs_count_sql(t.attempts_column))
    USING run_id;
END
$$;
COMMENT ON FUNCTION resume_run(text, regclass) IS
    'Gives a FAILED run another go: back to its first active status (PENDING) with its progress kept, one more attempt counted, and a fresh idle clock so recovery does not take it straight back. Looks the id up in every adopted table unless one is named.';
