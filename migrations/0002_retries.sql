-- 0002: bounded retries: qualification_runs.attempts, resume_run(), and
-- recover_stuck_runs(..., max_attempts) returning action and attempts.
-- Landed migrations are immutable (tests/test_migrations.py checks their checksums).
-- depends: 0001_core

-- The built-in table gets an attempts column; an application's table is never
-- altered (map its own column with adopt_runs_table(..., attempts_column => ...)).
-- ADD COLUMN with a constant default rewrites nothing.
DO $attempts$
BEGIN
    IF EXISTS (SELECT FROM stuck_runs_tables AS t
               WHERE t.managed
                 AND t.table_name = to_regclass(format('%I.qualification_runs', current_schema()))) THEN
        ALTER TABLE qualification_runs
            ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0
                CONSTRAINT qualification_runs_attempts_check CHECK (attempts >= 0);
        COMMENT ON COLUMN qualification_runs.attempts IS
            'Retries so far: resume_run() and a requeueing recover_stuck_runs(max_attempts => N) add one.';
        UPDATE stuck_runs_tables AS t SET attempts_column = 'attempts'
        WHERE t.table_name = 'qualification_runs'::regclass;
    END IF;
END
$attempts$;

-- The signature and the return type change: replace, do not redefine in place.
DROP FUNCTION recover_stuck_runs(interval, integer);

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

-- New and replaced functions: pin and revoke again.
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
