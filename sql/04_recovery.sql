-- stuck-runs: the recovery function, the views that show its work, and resume.

CREATE OR REPLACE FUNCTION _stuck_runs_threshold() RETURNS interval
LANGUAGE sql STABLE
AS $$ SELECT s.older_than FROM stuck_runs_settings AS s $$;
COMMENT ON FUNCTION _stuck_runs_threshold() IS
    'The database''s default threshold, for recover_stuck_runs()''s DEFAULT (a parameter default cannot hold a subquery).';

DO $type$
BEGIN
    CREATE TYPE stuck_runs_recovered_run AS (
        table_name      text,
        run_id          text,
        previous_status text,
        status          text,
        completed       integer,
        total           integer,
        age             interval,
        idle            interval,
        action          text,
        attempts        integer,
        reason          text
    );
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- sql/ is re-runnable; a change of this type needs a migration anyway
END
$type$;
COMMENT ON TYPE stuck_runs_recovered_run IS
    'One run a recover_stuck_runs() call changed: what the call returns and the sweeps collect, table by table.';

CREATE OR REPLACE FUNCTION _stuck_runs_time_sql(t stuck_runs_tables, column_name text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    -- A timestamp without time zone is read in the zone the application writes
    -- it in (UTC for Prisma and most ORMs), so the result never depends on the
    -- reading session's TimeZone.
    SELECT CASE WHEN _stuck_runs_column_type(t.table_name, column_name) OPERATOR(pg_catalog.=) 'timestamp'::regtype
                THEN pg_catalog.format('(r.%I AT TIME ZONE %L)', column_name, t.time_zone)
                ELSE pg_catalog.format('r.%I', column_name)
           END
$$;
COMMENT ON FUNCTION _stuck_runs_time_sql(stuck_runs_tables, text) IS
    'SQL text reading a time column of row r as timestamptz, whichever of the two timestamp types it has.';

CREATE OR REPLACE FUNCTION _stuck_runs_now_sql(t stuck_runs_tables, column_name text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    -- clock_timestamp(), not now(): a sign of life is dated when it is written,
    -- not when a long transaction began, or the next sweep would find it stale.
    SELECT CASE WHEN _stuck_runs_column_type(t.table_name, column_name) OPERATOR(pg_catalog.=) 'timestamp'::regtype
                THEN pg_catalog.format('(pg_catalog.clock_timestamp() AT TIME ZONE %L)', t.time_zone)
                ELSE 'pg_catalog.clock_timestamp()' END
$$;
COMMENT ON FUNCTION _stuck_runs_now_sql(stuck_runs_tables, text) IS
    'SQL text for the current time as a time column stores it: wall-clock time in the table''s zone for timestamp without time zone.';

CREATE OR REPLACE FUNCTION _stuck_runs_count_sql(column_name text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN column_name IS NULL THEN 'NULL::integer' ELSE pg_catalog.format('r.%I::integer', column_name) END
$$;
COMMENT ON FUNCTION _stuck_runs_count_sql(text) IS
    'SQL text reading an optional integer column (completed, total, attempts) of row r, or NULL when the table has none.';

CREATE OR REPLACE FUNCTION _stuck_runs_text_sql(column_name text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    -- format('%s') prints a value with its type's output function. A cast
    -- (status::text) would look up pg_cast, where the owner of an enum or a
    -- domain may have put a function of its own, which would then run as the
    -- reader: a superuser's `stuck-runs list`, say.
    SELECT pg_catalog.format('pg_catalog.format(''%%s'', r.%I)', column_name)
$$;
COMMENT ON FUNCTION _stuck_runs_text_sql(text) IS
    'SQL text reading a column of row r (a status, an id of any type) as text through its type''s output function, never through a cast its owner may have defined.';

CREATE OR REPLACE FUNCTION _stuck_runs_touched_sql(t stuck_runs_tables) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- A run whose updated_at is NULL has shown no sign of life since it was created.
    SELECT CASE WHEN a.attnotnull THEN _stuck_runs_time_sql(t, t.updated_at_column)
                ELSE pg_catalog.format('coalesce(%s, %s)', _stuck_runs_time_sql(t, t.updated_at_column),
                                       _stuck_runs_time_sql(t, t.created_at_column)) END
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) t.table_name AND a.attname OPERATOR(pg_catalog.=) t.updated_at_column
$$;
COMMENT ON FUNCTION _stuck_runs_touched_sql(stuck_runs_tables) IS
    'SQL text for the last sign of life of row r as timestamptz: updated_at, or created_at where updated_at is NULL.';

CREATE OR REPLACE FUNCTION _stuck_runs_stuck_sql(t stuck_runs_tables, cutoff text) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- The one definition of "stuck" for row r, shared by the sweep, its probe and
    -- the views. The comparison stays on the bare columns (the timestamptz cutoff
    -- is converted to what a `timestamp` column stores, in the table's zone) and
    -- statuses are literals, so the partial sweep index serves it. The created_at
    -- arm only exists where updated_at may be NULL. One catalog read: every sweep
    -- builds this.
    SELECT pg_catalog.format('%s AND (r.%I OPERATOR(pg_catalog.<) %s%s)',
                  _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column), t.active_statuses,
                                        _stuck_runs_column_type(t.table_name, t.status_column)),
                  t.updated_at_column,
                  CASE WHEN u.atttypid OPERATOR(pg_catalog.=) 'timestamp'::regtype
                       THEN pg_catalog.format('(%s AT TIME ZONE %L)', cutoff, t.time_zone) ELSE cutoff END,
                  CASE WHEN u.attnotnull THEN ''
                       ELSE pg_catalog.format(' OR (r.%I IS NULL AND r.%I OPERATOR(pg_catalog.<) %s)',
                                   t.updated_at_column, t.created_at_column,
                                   CASE WHEN c.atttypid OPERATOR(pg_catalog.=) 'timestamp'::regtype
                                        THEN pg_catalog.format('(%s AT TIME ZONE %L)', cutoff, t.time_zone)
                                        ELSE cutoff END) END)
    FROM pg_catalog.pg_attribute AS u, pg_catalog.pg_attribute AS c
    WHERE u.attrelid OPERATOR(pg_catalog.=) t.table_name AND u.attname OPERATOR(pg_catalog.=) t.updated_at_column
      AND c.attrelid OPERATOR(pg_catalog.=) t.table_name AND c.attname OPERATOR(pg_catalog.=) t.created_at_column
$$;
COMMENT ON FUNCTION _stuck_runs_stuck_sql(stuck_runs_tables, text) IS
    'SQL text of the condition "row r is stuck": active and no sign of life since the cutoff (a timestamptz expression such as $1).';

CREATE OR REPLACE FUNCTION _stuck_runs_sweep_ctes(t stuck_runs_tables, dead boolean) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    -- Parameters of the statement: $1 cutoff (timestamptz), $2 limit,
    -- $3 max_attempts, $4 older_than, $5 the owners' lives (jsonb text, see
    -- _stuck_runs_owner_states; dead: some have ended). The CTEs end in
    -- `changed`, the runs the UPDATE wrote; the statements that end them
    -- (_stuck_runs_sweep_sql, _stuck_runs_sweep_direct_sql) say what they
    -- return.
    qualified   text := _stuck_runs_qualified_name(t.table_name);
    status_type text := pg_catalog.format_type(_stuck_runs_column_type(t.table_name, t.status_column), NULL);
    requeue     text := CASE WHEN t.attempts_column IS NULL THEN 'false'
                             ELSE pg_catalog.format('coalesce(r.%I OPERATOR(pg_catalog.<) $3, false)', t.attempts_column) END;
    error_len   integer;
    message     text;
    sets        text[];
BEGIN
    SELECT a.atttypmod OPERATOR(pg_catalog.-) 4 INTO error_len
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) t.table_name AND a.attname OPERATOR(pg_catalog.=) t.error_column
      AND a.atttypmod OPERATOR(pg_catalog.>) 0;
    -- Never NULL, whatever the progress columns hold; cut to the column's width.
    message := pg_catalog.format(
        $msg$pg_catalog.left(pg_catalog.concat(CASE WHEN c.reason IS NULL THEN pg_catalog.concat('Recovered as stuck by stuck-runs: ', c.status, ' with no sign of life for ', coalesce(CASE WHEN pg_catalog.isfinite(c.touched) THEN pg_catalog.date_trunc('second', pg_catalog.now() OPERATOR(pg_catalog.-) c.touched)::text END, 'an unknown time'), ' (threshold ', $4::text, ')') ELSE pg_catalog.concat('Recovered by stuck-runs: ', c.status, ' when its owner''s life ended (', c.reason, ')') END, %s), %s)$msg$,
        CASE WHEN t.completed_column IS NULL OR t.total_column IS NULL
             THEN $msg$'. Partial progress was kept.'$msg$
             ELSE pg_catalog.format($msg$'. Partial progress (', coalesce(r.%I::text, '?'), '/', coalesce(r.%I::text, '?'), ') was kept.'$msg$,
                         t.completed_column, t.total_column) END,
        coalesce(error_len, 1000));
    sets := ARRAY[
        pg_catalog.format('%I = CASE WHEN %s THEN %L::%s ELSE %L::%s END',
               t.status_column, requeue, t.active_statuses[1], status_type, t.failed_status, status_type),
        pg_catalog.format('%I = CASE WHEN %s THEN %s ELSE r.%I END',
               t.updated_at_column, requeue, _stuck_runs_now_sql(t, t.updated_at_column),
               t.updated_at_column)];
    IF t.attempts_column IS NOT NULL THEN
        sets := sets OPERATOR(pg_catalog.||) pg_catalog.format('%I = CASE WHEN %s THEN r.%I OPERATOR(pg_catalog.+) 1 ELSE r.%I END',
                               t.attempts_column, requeue, t.attempts_column, t.attempts_column);
    END IF;
    IF t.owner_column IS NOT NULL THEN
        -- A requeued run waits for a new owner to claim it; a failed one keeps
        -- the life that had it, for the record.
        sets := sets OPERATOR(pg_catalog.||) pg_catalog.format('%I = CASE WHEN %s THEN NULL ELSE r.%I END',
                               t.owner_column, requeue, t.owner_column);
    END IF;
    IF t.completed_at_column IS NOT NULL THEN
        sets := sets OPERATOR(pg_catalog.||) pg_catalog.format('%I = CASE WHEN %s THEN r.%I ELSE %s END',
            t.completed_at_column, requeue, t.completed_at_column,
            _stuck_runs_now_sql(t, t.completed_at_column));
    END IF;
    IF t.error_column IS NOT NULL THEN
        sets := sets OPERATOR(pg_catalog.||) pg_catalog.format('%I = CASE WHEN %s THEN r.%I ELSE %s END',
                               t.error_column, requeue, t.error_column, message);
    END IF;

    -- Rows are matched by ctid (locked by the first step, so it cannot move):
    -- no equality operator of the id's type, whatever that type is, is needed.
    RETURN pg_catalog.format($sql$
        WITH candidates AS (
            SELECT r.ctid AS row_id, %2$s AS status, %3$s AS touched, %13$s AS requeue, %14$s AS reason
            FROM %4$s AS r
            WHERE %5$s
            ORDER BY r.%6$I
            LIMIT $2
            FOR UPDATE OF r SKIP LOCKED
        ), changed AS (
            UPDATE %4$s AS r
            SET %7$s
            FROM candidates AS c
            WHERE r.ctid OPERATOR(pg_catalog.=) c.row_id AND %5$s
            RETURNING %1$s AS run_id, c.status AS previous_status, %2$s AS status,
                      %8$s AS completed, %9$s AS total,
                      CASE WHEN pg_catalog.isfinite(%10$s) THEN pg_catalog.now() OPERATOR(pg_catalog.-) %10$s END AS age,
                      CASE WHEN pg_catalog.isfinite(c.touched) THEN pg_catalog.now() OPERATOR(pg_catalog.-) c.touched END AS idle,
                      CASE WHEN %2$s OPERATOR(pg_catalog.=) %11$L THEN 'failed' ELSE 'requeued' END AS action,
                      %12$s AS attempts, c.requeue, c.reason
        ), kept AS (
            -- Only runs that took the status recovery wrote: one a trigger kept
            -- active is not reported, audited or counted against the batch.
            SELECT c.* FROM changed AS c
            WHERE c.action OPERATOR(pg_catalog.=) CASE WHEN c.requeue THEN 'requeued' ELSE 'failed' END
        )$sql$,
        _stuck_runs_text_sql(t.id_column), _stuck_runs_text_sql(t.status_column), _stuck_runs_touched_sql(t),
        qualified, _stuck_runs_recoverable_sql(t, '$1', dead), t.updated_at_column,
        pg_catalog.array_to_string(sets, ', '),
        _stuck_runs_count_sql(t.completed_column), _stuck_runs_count_sql(t.total_column),
        _stuck_runs_time_sql(t, t.created_at_column),
        t.failed_status,
        _stuck_runs_count_sql(t.attempts_column), requeue,
        CASE WHEN t.owner_column IS NULL THEN 'NULL::text'
             ELSE pg_catalog.format('NULLIF(%s, ''live'')', _stuck_runs_owner_sql(t)) END);
END
$$;
COMMENT ON FUNCTION _stuck_runs_sweep_ctes(stuck_runs_tables, boolean) IS
    'The part of a sweep''s statement that recovers the stuck runs of one registered table, as CTEs: lock candidates skipping busy rows, re-check state in the UPDATE, keep the runs that took the status it wrote (kept). With dead, it also takes every active run whose owner''s life has ended. Identifiers go through %I, values through %L or parameters.';

CREATE OR REPLACE FUNCTION _stuck_runs_sweep_sql(t stuck_runs_tables, dead boolean) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- It may run as the table's owner (_stuck_runs_as_owner), so it names
    -- nothing of stuck-runs' own and returns its runs as jsonb; the caller
    -- writes the audit.
    SELECT _stuck_runs_sweep_ctes(t, dead) OPERATOR(pg_catalog.||) '
        SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(k)) FROM kept AS k'
$$;
COMMENT ON FUNCTION _stuck_runs_sweep_sql(stuck_runs_tables, boolean) IS
    'The one statement that recovers the stuck runs of one registered table as its owner may run it: returns the runs it changed as jsonb, for the caller to audit.';

CREATE OR REPLACE FUNCTION _stuck_runs_sweep_direct_sql(t stuck_runs_tables, dead boolean) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- Where the caller runs the statement itself (_stuck_runs_runs_here):
    -- the audit rows are written by the same statement, stamped as the
    -- audit's trigger would stamp them (so it has nothing to do), and the
    -- runs come back as rows of stuck-runs' own type, with no jsonb between.
    SELECT _stuck_runs_sweep_ctes(t, dead) OPERATOR(pg_catalog.||) pg_catalog.format('
        , audit AS (
            INSERT INTO %1$s.run_recoveries
                (table_name, run_id, previous_status, completed, total, age, idle, older_than, action, reason,
                 recovered_by, recovered_at)
            SELECT %2$L, k.run_id, k.previous_status, k.completed, k.total, k.age, k.idle, $4, k.action, k.reason,
                   CURRENT_USER::pg_catalog.text, pg_catalog.now()
            FROM kept AS k
        )
        SELECT pg_catalog.array_agg(ROW(%2$L, k.run_id, k.previous_status, k.status, k.completed, k.total,
                                        k.age, k.idle, k.action, k.attempts, k.reason)::%1$s.stuck_runs_recovered_run)
        FROM kept AS k', _stuck_runs_schema(), t.table_name::text)
$$;
COMMENT ON FUNCTION _stuck_runs_sweep_direct_sql(stuck_runs_tables, boolean) IS
    'The statement that recovers the stuck runs of one registered table where the caller may write it itself: writes their audit rows in the same statement and returns them as an array of stuck_runs_recovered_run.';

CREATE OR REPLACE FUNCTION stuck_runs_sweep_sql(t stuck_runs_tables) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT _stuck_runs_sweep_sql(t, true) $$;
COMMENT ON FUNCTION stuck_runs_sweep_sql(stuck_runs_tables) IS
    'The statement that recovers the stuck runs of one registered table, as a sweep runs it when some owner''s life has ended (without one, the arm for ended owners is left out): SELECT t.table_name, stuck_runs_sweep_sql(t) FROM stuck_runs_tables AS t shows exactly what runs.';

CREATE OR REPLACE VIEW _stuck_runs_covered AS
    -- Every sweep starts here, so it is a view (planned into the caller's query,
    -- no function call): the table exists (still a table), every mapped column
    -- is still there with a type that fits its role,
    -- and whoever registered it could still adopt it (an entry written before
    -- 0.3 has no adopter and waits for `migrate --adopt` to confirm it). Why a
    -- table is left out is for stuck_runs_coverage_problems() to say.
    SELECT s.* FROM stuck_runs_tables AS s
    WHERE EXISTS (SELECT FROM pg_catalog.pg_class AS c
                  WHERE c.oid OPERATOR(pg_catalog.=) s.table_name
                    AND c.relkind OPERATOR(pg_catalog.=) 'r'
                    AND CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles AS a
                                          WHERE a.oid OPERATOR(pg_catalog.=) s.adopted_by)
                             THEN pg_catalog.pg_has_role(s.adopted_by, c.relowner, 'USAGE') END)
      AND NOT EXISTS (
          SELECT FROM pg_catalog.jsonb_each_text(pg_catalog.to_jsonb(s)) AS j(key, name)
          JOIN stuck_runs_roles AS r ON r.parameter OPERATOR(pg_catalog.=) j.key
          WHERE j.name IS NOT NULL
            AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                            WHERE a.attrelid OPERATOR(pg_catalog.=) s.table_name
                              AND a.attname OPERATOR(pg_catalog.=) j.name
                              AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                              -- _stuck_runs_fits(), spelled out: this runs at every call.
                              AND (r.kind OPERATOR(pg_catalog.=) 'any'
                                   OR a.atttypid OPERATOR(pg_catalog.=) ANY (CASE r.kind
                                       WHEN 'time' THEN '{timestamptz,timestamp}'::regtype[]::pg_catalog.oid[]
                                       WHEN 'count' THEN '{int2,int4,int8}'::regtype[]::pg_catalog.oid[]
                                       ELSE '{text,varchar}'::regtype[]::pg_catalog.oid[] END)
                                   OR (r.kind OPERATOR(pg_catalog.=) 'status'
                                       AND EXISTS (SELECT FROM pg_catalog.pg_type AS ty
                                                   WHERE ty.oid OPERATOR(pg_catalog.=) a.atttypid
                                                     AND ty.typtype OPERATOR(pg_catalog.=) 'e')))))
    ORDER BY s.table_name::text;
COMMENT ON VIEW _stuck_runs_covered IS
    'The registered tables recovery can sweep now (stuck_runs_coverage_problems() reports the others), in a stable order: the one list the sweep, the views and resume_run() share.';

CREATE OR REPLACE FUNCTION _stuck_runs_bound_lock_wait() RETURNS void
LANGUAGE sql VOLATILE
AS $$
    -- A table someone holds locked (a long migration, VACUUM FULL, a hostile
    -- owner's LOCK TABLE) is given up after at most 2 s instead of holding up
    -- every other table until statement_timeout, whatever lock_timeout the
    -- database, the role or the session set. Local to the transaction; the
    -- callers put the old value back.
    SELECT pg_catalog.set_config('lock_timeout', '2s', true)
    FROM (SELECT pg_catalog.current_setting('lock_timeout')::interval AS wait) AS s
    WHERE s.wait OPERATOR(pg_catalog.=) interval '0' OR s.wait OPERATOR(pg_catalog.>) interval '2s'
$$;
COMMENT ON FUNCTION _stuck_runs_bound_lock_wait() IS
    'Bounds the wait for one table''s lock to 2 seconds for the rest of the transaction (callers restore lock_timeout when done), so that one locked table never stalls the others.';

CREATE OR REPLACE FUNCTION _stuck_runs_warn_uncovered(covered integer) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    problem text;
BEGIN
    -- Where psql, pg_cron and an app's own query look: a registered table the
    -- call could not cover is a WARNING there too, not only in the runner.
    -- The registry is a handful of rows; the reasons are only worked out when
    -- the counts differ.
    IF (SELECT pg_catalog.count(*) FROM stuck_runs_tables) OPERATOR(pg_catalog.>) covered THEN
        FOR problem IN
            SELECT _stuck_runs_mapping_problem(s) FROM stuck_runs_tables AS s
            WHERE NOT EXISTS (SELECT FROM _stuck_runs_covered AS c
                              WHERE c.table_name OPERATOR(pg_catalog.=) s.table_name)
            ORDER BY s.table_name::text
        LOOP
            CONTINUE WHEN problem IS NULL;
            RAISE WARNING 'stuck-runs: %', problem;
        END LOOP;
    END IF;
END
$$;
COMMENT ON FUNCTION _stuck_runs_warn_uncovered(integer) IS
    'Raises one WARNING per registered table that recovery and the views no longer cover (dropped, re-created, a mapped column gone, an adopter that may no longer adopt it), given how many they did cover.';

CREATE OR REPLACE FUNCTION _stuck_runs_sweep_all(
    older_than interval, cutoff timestamptz, max_runs integer, max_attempts integer,
    lives jsonb, dead boolean, quiet integer
) RETURNS SETOF stuck_runs_recovered_run
LANGUAGE plpgsql VOLATILE
-- Before the body runs: compiling it opens the registry (a row variable of its
-- type), which a role with write grants on it may hold locked. Bounded, that
-- is an error after 2 s instead of a wait until statement_timeout.
SET lock_timeout = '2s'
AS $$
#variable_conflict use_variable
DECLARE
    t         stuck_runs_tables;
    runs      stuck_runs_recovered_run[] := '{}'::stuck_runs_recovered_run[];
    swept     stuck_runs_recovered_run[];
    any_stuck boolean;
    n         integer;
    requeued  integer;
    payload   text;
    lock_wait text := pg_catalog.current_setting('lock_timeout');
    covered   integer := 0;
    tables    integer;
    share     integer;
    failed    regclass[] := '{}'::regclass[];
BEGIN
    PERFORM _stuck_runs_bound_lock_wait();
    IF max_runs IS NOT NULL THEN
        SELECT pg_catalog.count(*)::integer INTO tables FROM _stuck_runs_covered;
    END IF;

    -- For each table: probe, sweep, collect. A table that fails (altered under
    -- us, locked, a row that a trigger or a CHECK refuses, a value out of
    -- range, an owner this role may not act as) is rolled back alone and
    -- reported; the other tables are still recovered. With max_runs, a first
    -- pass gives every table its share of the batch, so that one table with a
    -- backlog (or an owner whose trigger keeps its runs stuck) cannot starve
    -- the tables after it; a second pass spends what the others left.
    FOR pass IN 1..CASE WHEN max_runs IS NULL THEN 1 ELSE 2 END LOOP
    FOR t IN SELECT * FROM _stuck_runs_covered LOOP
        IF pass OPERATOR(pg_catalog.=) 1 THEN
            covered := covered OPERATOR(pg_catalog.+) 1;
        END IF;
        EXIT WHEN max_runs IS NOT NULL AND pg_catalog.cardinality(runs) OPERATOR(pg_catalog.>=) max_runs;
        CONTINUE WHEN t.table_name OPERATOR(pg_catalog.=) ANY (failed);
        share := CASE WHEN max_runs IS NULL THEN NULL
                      WHEN pass OPERATOR(pg_catalog.=) 1
                      THEN LEAST(max_runs OPERATOR(pg_catalog.-) pg_catalog.cardinality(runs),
                                            (max_runs OPERATOR(pg_catalog.+) tables OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog./) GREATEST(tables, 1))
                      ELSE max_runs OPERATOR(pg_catalog.-) pg_catalog.cardinality(runs) END;
        BEGIN
            -- Nothing stuck is the usual case: a probe that costs a fraction of
            -- building and planning the full sweep answers it. Even a read runs
            -- code of the table's owner (the planner evaluates its immutable
            -- functions in index expressions and predicates; its policies), so
            -- where that code may not run here the sweep, as the owner, answers
            -- instead.
            -- Without an ended owner, the probe is the threshold's alone: a live
            -- owner's silent run only costs the sweep that then leaves it be.
            IF _stuck_runs_runs_here(t.table_name) THEN
                EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM %s AS r WHERE %s)',
                               _stuck_runs_qualified_name(t.table_name),
                               CASE WHEN dead THEN _stuck_runs_recoverable_sql(t, '$1', true)
                                    ELSE _stuck_runs_stuck_sql(t, '$1') END)
                    INTO any_stuck USING cutoff, NULL::integer, NULL::integer, NULL::interval, lives::text;
                CONTINUE WHEN NOT any_stuck;
                -- The sweep, its audit and its result in one statement.
                EXECUTE _stuck_runs_sweep_direct_sql(t, dead)
                    INTO swept USING cutoff, share, max_attempts, older_than, lives::text;
            ELSE
                SELECT pg_catalog.array_agg(ROW(t.table_name::text, j.run_id, j.previous_status, j.status,
                                                j.completed, j.total, j.age, j.idle, j.action,
                                                j.attempts, j.reason)::stuck_runs_recovered_run ORDER BY j.run_id)
                    INTO swept
                FROM pg_catalog.jsonb_populate_recordset(
                         NULL::stuck_runs_recovered_run,
                         _stuck_runs_as_owner(t.table_name, _stuck_runs_sweep_sql(t, dead), cutoff,
                                              share, max_attempts, older_than, lives::text)) AS j;
                -- The audit is written by this role, never by the owner's step.
                INSERT INTO run_recoveries
                    (table_name, run_id, previous_status, completed, total, age, idle, older_than, action, reason)
                SELECT u.table_name, u.run_id, u.previous_status, u.completed, u.total, u.age, u.idle,
                       older_than, u.action, u.reason
                FROM pg_catalog.unnest(swept) AS u;
            END IF;
            runs := runs OPERATOR(pg_catalog.||) coalesce(swept, '{}'::stuck_runs_recovered_run[]);
        EXCEPTION WHEN OTHERS THEN
            failed := failed OPERATOR(pg_catalog.||) t.table_name;
            RAISE WARNING 'stuck-runs: % was not swept: %', t.table_name, SQLERRM
                USING DETAIL = pg_catalog.format('SQLSTATE %s; the other tables were recovered.', SQLSTATE);
            -- A WARNING cannot be caught: drain_stuck_runs() reads the tables
            -- that failed from this transaction-local setting, to end in an
            -- ERROR (what pg_cron records) after committing the others.
            PERFORM pg_catalog.set_config('stuck_runs.unswept',
                (CASE WHEN coalesce(pg_catalog.current_setting('stuck_runs.unswept', true), '') OPERATOR(pg_catalog.=) ''
                      THEN '{}'::jsonb ELSE pg_catalog.current_setting('stuck_runs.unswept')::jsonb END
                 OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(t.table_name::text, SQLERRM))::text, true);
        END;
    END LOOP;
    END LOOP;

    PERFORM pg_catalog.set_config('lock_timeout', lock_wait, true);
    IF max_runs IS NULL OR pg_catalog.cardinality(runs) OPERATOR(pg_catalog.<) max_runs THEN
        PERFORM _stuck_runs_warn_uncovered(covered);
    END IF;

    n := pg_catalog.cardinality(runs);
    IF n OPERATOR(pg_catalog.>) 0 THEN
        -- One notification per recovering call, delivered on commit only. Run ids
        -- are listed while the payload stays under PostgreSQL's 8000-byte limit.
        SELECT (pg_catalog.count(*) FILTER (WHERE u.action OPERATOR(pg_catalog.=) 'requeued'))::integer INTO requeued
        FROM pg_catalog.unnest(runs) AS u;
        IF n OPERATOR(pg_catalog.<=) 200 THEN
            payload := pg_catalog.json_build_object(
                'count', n, 'failed', n OPERATOR(pg_catalog.-) requeued, 'requeued', requeued,
                'runs', (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('table', u.table_name, 'run_id', u.run_id,
                                                                                  'action', u.action))
                         FROM pg_catalog.unnest(runs) AS u),
                'runs_omitted', false)::text;
        END IF;
        IF payload IS NULL OR pg_catalog.octet_length(payload) OPERATOR(pg_catalog.>=) 8000 THEN
            payload := pg_catalog.json_build_object(
                'count', n, 'failed', n OPERATOR(pg_catalog.-) requeued, 'requeued', requeued,
                'runs_omitted', true)::text;
        END IF;
        PERFORM pg_catalog.pg_notify('stuck_runs_recovered', payload);
    END IF;

    -- The fast path stepped aside because it was out of date (a table altered,
    -- or an uncovered table covered again): rebuild it, if this role may.
    IF quiet IN (-1, 3)
       OR (quiet OPERATOR(pg_catalog.=) 4
           AND (SELECT pg_catalog.count(*) FROM stuck_runs_tables)
               OPERATOR(pg_catalog.=) (SELECT pg_catalog.count(*) FROM _stuck_runs_covered)) THEN
        PERFORM _stuck_runs_refresh_quiet();
    END IF;

    RETURN QUERY SELECT u.* FROM pg_catalog.unnest(runs) AS u ORDER BY u.idle DESC, u.table_name, u.run_id;
END
$$;
COMMENT ON FUNCTION _stuck_runs_sweep_all(interval, timestamptz, integer, integer, jsonb, boolean, integer) IS
    'recover_stuck_runs()''s general path, for when the fast path cannot say that nothing is to be done: each covered table probed and swept on its own (as its owner where needed), the audit, the notification, the warnings for tables not covered.';


CREATE OR REPLACE FUNCTION recover_stuck_runs(
    older_than   interval DEFAULT _stuck_runs_threshold(),
    max_runs     integer  DEFAULT NULL,
    max_attempts integer  DEFAULT NULL
) RETURNS SETOF stuck_runs_recovered_run
LANGUAGE plpgsql VOLATILE
-- The fast path reads the registry, which a role with write grants on it may
-- hold locked: bounded, that is an error after 2 s (and the general path,
-- which says which table it could not sweep) instead of a wait until
-- statement_timeout.
SET lock_timeout = '2s'
AS $$
#variable_conflict use_variable
DECLARE
    cutoff timestamptz;
    lives  jsonb;
    dead   boolean;
    silent boolean := false;
    quiet  integer;
BEGIN
    IF older_than IS NULL OR NOT _stuck_runs_positive(older_than) THEN
        RAISE EXCEPTION 'recover_stuck_runs: older_than must be a positive interval, got %',
            coalesce(older_than::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: SELECT * FROM recover_stuck_runs(''5 minutes'').';
    END IF;
    IF max_runs IS NOT NULL AND max_runs OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'recover_stuck_runs: max_runs must be at least 1 (or NULL for no limit), got %', max_runs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_attempts IS NOT NULL AND max_attempts OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'recover_stuck_runs: max_attempts must be 0 or more (or NULL: never requeue), got %', max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- An exception block costs every call a subtransaction: only a threshold
    -- of millennia can overflow.
    IF older_than OPERATOR(pg_catalog.<) interval '5000 years' THEN
        cutoff := pg_catalog.now() OPERATOR(pg_catalog.-) older_than;
    ELSE
        BEGIN
            cutoff := pg_catalog.now() OPERATOR(pg_catalog.-) older_than;
        EXCEPTION WHEN datetime_field_overflow THEN
            RAISE EXCEPTION 'recover_stuck_runs: older_than % is out of range', older_than
                USING ERRCODE = 'invalid_parameter_value';
        END;
    END IF;

    -- Whatever a session, a role's settings or a pooled neighbour left there:
    -- this call reports its own failures only.
    PERFORM pg_catalog.set_config('stuck_runs.unswept', '', true);
    -- Nothing to do is the usual answer: the generated fast path gives it with
    -- two planned statements (_stuck_runs_quiet_sql). Only roles trusted with
    -- stuck-runs' schema can create or replace a function there, and the
    -- pinned path finds no other. 0 means nothing is recoverable in any
    -- covered table and every registered table is covered; anything else, or
    -- an error, leaves the answer to the general path below.
    BEGIN
        quiet := _stuck_runs_quiet(cutoff, NULL::integer, NULL::integer, NULL::interval, NULL::text, NULL::boolean);
    EXCEPTION WHEN OTHERS THEN
        quiet := -1;  -- gone, or a table altered or locked under it
    END;
    IF quiet OPERATOR(pg_catalog.=) 0 THEN
        RETURN;
    END IF;

    -- Owners: the lives once per call, as one parameter of the sweeps; the
    -- writing path only when a life may be silent.
    IF NOT pg_catalog.has_table_privilege('stuck_runs_lives', 'SELECT') THEN
        RAISE WARNING 'stuck-runs: this role may not read the owners'' lives (stuck_runs_grant_sql() prints the GRANTs)'
            USING DETAIL = 'Runs with an owner were left alone this time.';
        lives := '{"": "live"}'::jsonb;  -- every owned run counts as a live owner's
        dead := false;
    ELSE
        EXECUTE _stuck_runs_lives_sql() INTO lives, dead, silent;
        IF silent THEN
            SELECT o.lives, o.dead INTO lives, dead FROM _stuck_runs_owner_states(true) AS o;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM _stuck_runs_sweep_all(older_than, cutoff, max_runs, max_attempts, lives, dead, quiet);
END
$$;
COMMENT ON FUNCTION recover_stuck_runs(interval, integer, integer) IS
    'Marks FAILED every active run, in every adopted table, with no sign of life (updated_at) for longer than older_than, keeping its progress; returns one row per run this call changed, with the status it has now, and audits each in run_recoveries. Each table is written as its owner (or by its owner''s own session), so code on the table never runs with the caller''s rights. Rows locked by a worker are skipped, never waited on; max_runs bounds one call for batching big backlogs; with max_attempts a run with retries left goes back to its first active status instead (action requeued). A table that cannot be swept raises a WARNING naming it and does not stop the others. Sends one NOTIFY stuck_runs_recovered per call that changed anything.';

CREATE OR REPLACE FUNCTION _stuck_runs_count_stuck(older_than interval, cap integer DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    t         stuck_runs_tables;
    cutoff    timestamptz := pg_catalog.now() OPERATOR(pg_catalog.-) older_than;
    lock_wait text := pg_catalog.current_setting('lock_timeout');
    query     text;
    counted   bigint;
    total     bigint := 0::bigint;
BEGIN
    -- How many runs recovery would still take: what a drain stopped by its
    -- bound says remains. `cap` bounds the work (and the answer) per table, so
    -- that saying it never costs as much as the backlog; NULL counts them all.
    PERFORM _stuck_runs_bound_lock_wait();
    FOR t IN SELECT * FROM _stuck_runs_covered LOOP
        BEGIN
            query := pg_catalog.format(
                'SELECT pg_catalog.to_jsonb(pg_catalog.count(*)) FROM (SELECT FROM %s AS r WHERE %s LIMIT $2) AS s',
                _stuck_runs_qualified_name(t.table_name), _stuck_runs_stuck_sql(t, '$1'));
            -- Reading runs the owner's code too (index expressions, policies).
            counted := (_stuck_runs_as_owner(t.table_name, query, cutoff, cap) OPERATOR(pg_catalog.#>>) '{}')::bigint;
            total := total OPERATOR(pg_catalog.+) counted;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- the sweep that failed on this table has already said why
        END;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', lock_wait, true);
    RETURN total;
END
$$;
COMMENT ON FUNCTION _stuck_runs_count_stuck(interval, integer) IS
    'How many runs of the covered tables are stuck now for this threshold, counting at most cap per table (NULL: all): what remains after a drain stopped by its bound. Tables that cannot be read are left out.';

-- A procedure, so that it can COMMIT between batches. A SET clause would
-- forbid that, so it has no pinned search_path: it names nothing through the
-- caller's path. Every call goes to the schema `home`, whose default is
-- bound to _stuck_runs_schema() by OID when it is created (and follows the
-- install if it moves), every built-in is qualified with pg_catalog, and
-- every operator is spelled OPERATOR(pg_catalog.x).
CREATE OR REPLACE FUNCTION _stuck_runs_lost() RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
AS $$
    -- Registered tables recovery no longer covers although a table is there:
    -- the entry's own (a mapped column dropped, renamed by drop and add, or
    -- retyped; its owner changed), or a new table under the name it was
    -- adopted under that nothing else registered (dropped and re-created).
    -- The runner fails on these; so does drain_stuck_runs(), for pg_cron.
    SELECT coalesce(
               (SELECT c.oid::regclass::text FROM pg_catalog.pg_class AS c
                WHERE c.oid OPERATOR(pg_catalog.=) t.table_name),
               (SELECT c.oid::regclass::text FROM pg_catalog.pg_class AS c
                JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                WHERE n.nspname OPERATOR(pg_catalog.=) t.schema_name
                  AND c.relname OPERATOR(pg_catalog.=) t.relation_name
                  AND c.relkind IN ('r', 'p')
                  AND NOT EXISTS (SELECT FROM stuck_runs_tables AS u
                                  WHERE u.table_name OPERATOR(pg_catalog.=) c.oid))),
           _stuck_runs_mapping_problem(t)
    FROM stuck_runs_tables AS t
    WHERE NOT EXISTS (SELECT FROM _stuck_runs_covered AS v
                      WHERE v.table_name OPERATOR(pg_catalog.=) t.table_name)
$$;
COMMENT ON FUNCTION _stuck_runs_lost() IS
    'Registered tables that recovery no longer covers although a table is there (table_name NULL: dropped for good, which only warns), with why.';

CREATE OR REPLACE PROCEDURE drain_stuck_runs(
    older_than   interval DEFAULT _stuck_runs_threshold(),
    batch_size   integer  DEFAULT 10000,
    time_budget  interval DEFAULT '45 seconds',
    max_attempts integer  DEFAULT NULL,
    home         text     DEFAULT _stuck_runs_schema()
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_variable
DECLARE
    -- Types too are named in pg_catalog (text, jsonb and timestamptz are
    -- found by name, not by the grammar as integer and interval are).
    started   pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    taken     integer;
    requeued  integer;
    unswept   pg_catalog.text;
    faults    pg_catalog.jsonb := '{}'::pg_catalog.jsonb;
    recovered bigint := 0::bigint;
    requeues  bigint := 0::bigint;
    batches   integer := 0;
    remaining bigint;
    stopped   boolean := false;
    cap       constant integer := 1000000;
BEGIN
    -- older_than and max_attempts are checked by recover_stuck_runs, before its first batch.
    IF batch_size IS NULL OR batch_size OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'drain_stuck_runs: batch_size must be at least 1, got %',
            coalesce(batch_size::pg_catalog.text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF time_budget IS NOT NULL AND time_budget OPERATOR(pg_catalog.<=) '0'::interval THEN
        RAISE EXCEPTION 'drain_stuck_runs: time_budget must be a positive interval (or NULL: until nothing is left), got %',
            time_budget USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF home IS NULL OR pg_catalog.to_regnamespace(home) IS NULL THEN
        RAISE EXCEPTION 'drain_stuck_runs: home must name the schema stuck-runs lives in (leave it out), got %',
            coalesce(home, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One identifier, quoted as needed, whatever spelling was given.
    SELECT pg_catalog.quote_ident(n.nspname) INTO home
    FROM pg_catalog.pg_namespace AS n
    WHERE n.oid OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace(home)::pg_catalog.oid;

    -- One batch per transaction: the memory and time of each are those of
    -- batch_size runs, whatever the backlog; each that commits stays
    -- recovered if a later one fails or the budget ends the drain.
    LOOP
        PERFORM pg_catalog.set_config('stuck_runs.unswept', '', true);
        -- Every argument typed: an exact match in that schema.
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*)::integer,'
            ' (pg_catalog.count(*) FILTER (WHERE r.action OPERATOR(pg_catalog.=) ''requeued''))::integer'
            ' FROM %s.recover_stuck_runs($1, $2, $3) AS r', home)
            INTO taken, requeued USING older_than, batch_size, max_attempts;
        unswept := pg_catalog.current_setting('stuck_runs.unswept', true);
        COMMIT;
        batches := batches OPERATOR(pg_catalog.+) 1;
        recovered := recovered OPERATOR(pg_catalog.+) taken;
        requeues := requeues OPERATOR(pg_catalog.+) requeued;
        IF unswept IS NOT NULL AND unswept OPERATOR(pg_catalog.<>) '' THEN
            faults := faults OPERATOR(pg_catalog.||) unswept::pg_catalog.jsonb;
        END IF;
        -- A short batch means every covered table gave all it had (rows a
        -- worker holds locked wait for the next run).
        EXIT WHEN taken OPERATOR(pg_catalog.<) batch_size;
        IF time_budget IS NOT NULL
           AND pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started OPERATOR(pg_catalog.>=) time_budget THEN
            stopped := true;
            EXIT;
        END IF;
    END LOOP;

    EXECUTE pg_catalog.format('SELECT %s._stuck_runs_count_stuck($1, $2)', home)
        INTO remaining USING older_than, cap;
    -- A table recovery no longer covers while it still exists (its ORM dropped
    -- a mapped column, say) fails the job as a table that could not be swept.
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.jsonb_object_agg(l.table_name, pg_catalog.concat(''no longer covered: '', l.problem))'
        ' FROM %s._stuck_runs_lost() AS l WHERE l.table_name IS NOT NULL', home)
        INTO unswept;
    IF unswept IS NOT NULL THEN
        faults := faults OPERATOR(pg_catalog.||) unswept::pg_catalog.jsonb;
    END IF;
    RAISE NOTICE 'stuck-runs: recovered % run(s) (% requeued) in % batch(es) of at most %; % remain%',
        recovered, requeues, batches, batch_size,
        CASE WHEN remaining OPERATOR(pg_catalog.>=) cap THEN pg_catalog.concat('at least ', remaining) ELSE remaining::pg_catalog.text END,
        CASE WHEN stopped THEN pg_catalog.format(' (stopped at the time budget of %s)', time_budget)
             WHEN remaining OPERATOR(pg_catalog.>) 0 THEN ' (locked by workers, or in tables that could not be swept)'
             ELSE '' END;
    IF faults OPERATOR(pg_catalog.<>) '{}'::pg_catalog.jsonb THEN
        -- After the COMMIT of everything that could be recovered: an ERROR is
        -- what pg_cron records as a failed run (a WARNING only reaches the log).
        RAISE EXCEPTION 'stuck-runs: % table(s) could not be swept: %; % run(s) recovered and committed, % remain',
            (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(faults)),
            (SELECT pg_catalog.string_agg(pg_catalog.concat(f.key, ' (', f.value, ')'), ', ' ORDER BY f.key)
             FROM pg_catalog.jsonb_each_text(faults) AS f),
            recovered, remaining
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The other tables were recovered; see the WARNING of each batch for the cause.';
    END IF;
END
$$;
COMMENT ON PROCEDURE drain_stuck_runs(interval, integer, interval, integer, text) IS
    'Recovers a backlog of any size in batches of at most batch_size runs, each committed before the next starts, until nothing is left or time_budget has passed: CALL stuck_runs.drain_stuck_runs(). Says how many were recovered and how many remain (NOTICE); ends in an ERROR, after committing what it could, when a table could not be swept. Must be CALLed outside a transaction block. Leave home out: it is the schema stuck-runs lives in. What the pg_cron job runs.';

CREATE OR REPLACE FUNCTION stuck_runs_job_sql(older_than text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- pg_cron runs the job with the default search_path, so it names the schema.
    IF older_than IS NOT NULL AND NOT _stuck_runs_positive(older_than::interval) THEN
        RAISE EXCEPTION 'stuck_runs_job_sql: older_than must be a positive interval, got %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Batches that commit, within a budget shorter than the job's minute.
    -- Every argument typed: an exact match, which no overload planted
    -- beside it (in public, say) can beat or make ambiguous.
    RETURN pg_catalog.format('CALL %1$s.drain_stuck_runs(%2$s, 10000::integer, ''45 seconds''::interval, NULL::integer, %1$L::text)',
                  _stuck_runs_schema(),
                  CASE WHEN older_than IS NULL THEN pg_catalog.format('%s._stuck_runs_threshold()', _stuck_runs_schema())
                       ELSE pg_catalog.format('%L::interval', older_than) END);
END
$$;
COMMENT ON FUNCTION stuck_runs_job_sql(text) IS
    'The statement a pg_cron job runs to recover stuck runs (with the database''s threshold, or older_than), in committed batches: what `stuck-runs schedule` installs, for psql users too: SELECT cron.schedule(''stuck-runs-recovery'', ''* * * * *'', stuck_runs.stuck_runs_job_sql()).';

CREATE OR REPLACE FUNCTION _stuck_runs_list(idle_longer_than interval, threshold interval)
RETURNS TABLE (
    table_name text,
    run_id     text,
    status     text,
    completed  integer,
    total      integer,
    age        interval,
    idle       interval,
    stuck      boolean
)
LANGUAGE plpgsql VOLATILE
SET lock_timeout = '2s'  -- see recover_stuck_runs()
AS $$
#variable_conflict use_variable
DECLARE
    t         stuck_runs_tables;
    lock_wait text := pg_catalog.current_setting('lock_timeout');
    covered   integer := 0;
    query     text;
    lives     jsonb;
    dead      boolean;
BEGIN
    PERFORM _stuck_runs_bound_lock_wait();
    -- What a sweep would decide about owners, without ending any life: a
    -- read changes nothing.
    SELECT o.lives, o.dead INTO lives, dead FROM _stuck_runs_owner_states(false) AS o;
    FOR t IN SELECT * FROM _stuck_runs_covered LOOP
        covered := covered OPERATOR(pg_catalog.+) 1;
        BEGIN
            -- Statuses and ids print through their types' output functions,
            -- never a cast. An infinite timestamp has no age: NULL.
            query := pg_catalog.format(
                'SELECT %1$L::text AS table_name, %2$s AS run_id, %3$s AS status, %4$s AS completed,'
                ' %5$s AS total,'
                ' CASE WHEN pg_catalog.isfinite(%6$s) THEN pg_catalog.now() OPERATOR(pg_catalog.-) %6$s END AS age,'
                ' CASE WHEN pg_catalog.isfinite(%7$s) THEN pg_catalog.now() OPERATOR(pg_catalog.-) %7$s END AS idle,'
                ' coalesce(%10$s, false) AS stuck'
                ' FROM %8$s AS r WHERE %9$s',
                t.table_name::text, _stuck_runs_text_sql(t.id_column), _stuck_runs_text_sql(t.status_column),
                _stuck_runs_count_sql(t.completed_column), _stuck_runs_count_sql(t.total_column),
                _stuck_runs_time_sql(t, t.created_at_column), _stuck_runs_touched_sql(t),
                _stuck_runs_qualified_name(t.table_name),
                CASE WHEN idle_longer_than IS NULL
                     THEN _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column), t.active_statuses,
                                                _stuck_runs_column_type(t.table_name, t.status_column))
                     ELSE _stuck_runs_recoverable_sql(t, '(pg_catalog.now() OPERATOR(pg_catalog.-) $4)', dead) END,
                -- What a sweep with the threshold would do to it, owners included.
                _stuck_runs_recoverable_sql(t, '$1', dead));
            IF _stuck_runs_runs_here(t.table_name) THEN
                RETURN QUERY EXECUTE query USING pg_catalog.now() OPERATOR(pg_catalog.-) threshold, NULL::integer, NULL::integer,
                                                 idle_longer_than, lives::text;
            ELSE
                -- Even reading runs the owner's code (the planner evaluates the
                -- immutable functions of its index expressions; its policies):
                -- read as the owner. A read-only transaction cannot, and says so.
                RETURN QUERY
                    SELECT x.* FROM pg_catalog.jsonb_to_recordset(coalesce(_stuck_runs_as_owner(
                        t.table_name,
                        pg_catalog.format('SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(l)) FROM (%s) AS l', query),
                        cutoff => pg_catalog.now() OPERATOR(pg_catalog.-) threshold,
                        older_than => idle_longer_than, value => lives::text), '[]')) AS x(
                        table_name text, run_id text, status text, completed integer, total integer,
                        age interval, idle interval, stuck boolean);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stuck-runs: % was not read: %', t.table_name, SQLERRM
                USING DETAIL = pg_catalog.format('SQLSTATE %s; the other tables are listed.', SQLSTATE);
        END;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', lock_wait, true);
    PERFORM _stuck_runs_warn_uncovered(covered);
END
$$;
COMMENT ON FUNCTION _stuck_runs_list(interval, interval) IS
    'Active runs of every adopted table, all of them (NULL) or only those a sweep with that threshold would recover (owners included), each with whether a sweep with the threshold would recover it: the body of the active_runs and stuck_runs views. Reads a table as its owner where the owner''s code may not run as the reader; a table that cannot be read that way raises a WARNING and is left out.';

CREATE OR REPLACE VIEW active_runs AS
SELECT l.table_name, l.run_id, l.status, l.completed, l.total, l.age, l.idle, l.stuck
FROM _stuck_runs_list(NULL::interval, _stuck_runs_threshold()) AS l;
COMMENT ON VIEW active_runs IS
    'Every run still active (PENDING/PROCESSING or the adopted table''s own statuses), stuck or not (stuck: a sweep with the default threshold would recover it now, owners included): what a status page or `stuck-runs list` shows.';

CREATE OR REPLACE VIEW stuck_runs AS
SELECT l.table_name, l.run_id, l.status, l.completed, l.total, l.age, l.idle
FROM _stuck_runs_list(_stuck_runs_threshold(), _stuck_runs_threshold()) AS l;
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
    status_of text;
    found_status text;
    resumed   jsonb;
    lock_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    IF run_id IS NULL THEN
        RAISE EXCEPTION 'resume_run: run_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM _stuck_runs_bound_lock_wait();
    FOR t IN
        SELECT * FROM _stuck_runs_covered AS s
        WHERE in_table IS NULL OR s.table_name OPERATOR(pg_catalog.=) in_table
    LOOP
        -- Looked up as the table's owner: the id is converted to the id
        -- column's type, and a domain's CHECK or a cast is the owner's code.
        BEGIN
            status_of := _stuck_runs_as_owner(t.table_name, pg_catalog.format(
                'SELECT pg_catalog.to_jsonb(%s) FROM %s AS r WHERE r.%I OPERATOR(pg_catalog.=) $5::%s FOR UPDATE',
                _stuck_runs_text_sql(t.status_column), _stuck_runs_qualified_name(t.table_name), t.id_column,
                pg_catalog.format_type(_stuck_runs_column_type(t.table_name, t.id_column), NULL)),
                value => run_id) OPERATOR(pg_catalog.->>) 0;
        EXCEPTION
            WHEN data_exception OR integrity_constraint_violation THEN
                status_of := NULL;  -- not an id this table can hold
            WHEN OTHERS THEN
                -- Locked, refused, or its owner's code raised: that table's
                -- fault, not a reason to fail resuming a run elsewhere.
                RAISE WARNING 'stuck-runs: % was not searched: %', t.table_name, SQLERRM;
                status_of := NULL;
        END;
        CONTINUE WHEN status_of IS NULL;
        IF found_in IS NOT NULL THEN
            RAISE EXCEPTION 'resume_run: run % exists in % and in %; name the table', run_id, found_in.table_name, t.table_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        found_in := t;
        found_status := status_of;
    END LOOP;
    IF found_in IS NULL THEN
        RAISE EXCEPTION 'resume_run: no run with id %', run_id USING ERRCODE = 'no_data_found';
    END IF;
    IF found_status OPERATOR(pg_catalog.<>) found_in.failed_status THEN
        RAISE EXCEPTION 'resume_run: run % is %; only a % run can be resumed', run_id, found_status, found_in.failed_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    t := found_in;
    resumed := _stuck_runs_as_owner(t.table_name, pg_catalog.format(
        'UPDATE %s AS r SET %I = %L::%s, %I = %s%s%s%s WHERE r.%I OPERATOR(pg_catalog.=) $5::%s'
        ' RETURNING pg_catalog.jsonb_build_array(%s, %s, %s, %s, %s)',
        _stuck_runs_qualified_name(t.table_name), t.status_column, t.active_statuses[1],
        pg_catalog.format_type(_stuck_runs_column_type(t.table_name, t.status_column), NULL),
        t.updated_at_column, _stuck_runs_now_sql(t, t.updated_at_column),
        CASE WHEN t.completed_at_column IS NULL THEN '' ELSE pg_catalog.format(', %I = NULL', t.completed_at_column) END,
        CASE WHEN t.error_column IS NULL THEN '' ELSE pg_catalog.format(', %I = NULL', t.error_column) END,
        CASE WHEN t.attempts_column IS NULL THEN ''
             ELSE pg_catalog.format(', %I = r.%I OPERATOR(pg_catalog.+) 1', t.attempts_column, t.attempts_column) END
        -- A resumed run waits for a new owner: the life that had it is over.
        OPERATOR(pg_catalog.||) CASE WHEN t.owner_column IS NULL THEN '' ELSE pg_catalog.format(', %I = NULL', t.owner_column) END,
        t.id_column, pg_catalog.format_type(_stuck_runs_column_type(t.table_name, t.id_column), NULL),
        _stuck_runs_text_sql(t.id_column), _stuck_runs_text_sql(t.status_column),
        _stuck_runs_count_sql(t.completed_column), _stuck_runs_count_sql(t.total_column),
        _stuck_runs_count_sql(t.attempts_column)),
        value => run_id);
    PERFORM pg_catalog.set_config('lock_timeout', lock_wait, true);
    RETURN QUERY SELECT t.table_name::text, resumed OPERATOR(pg_catalog.->>) 0, resumed OPERATOR(pg_catalog.->>) 1,
                        (resumed OPERATOR(pg_catalog.->>) 2)::integer, (resumed OPERATOR(pg_catalog.->>) 3)::integer,
                        (resumed OPERATOR(pg_catalog.->>) 4)::integer;
END
$$;
COMMENT ON FUNCTION resume_run(text, regclass) IS
    'Gives a FAILED run another go: back to its first active status (PENDING) with its progress kept, one more attempt counted, and a fresh idle clock so recovery does not take it straight back. Looks the id up in every adopted table unless one is named, as each table''s owner.';
