-- 0007: the no-op sweep's fast path and a cheaper bulk recovery.
--   * recover_stuck_runs() first asks _stuck_runs_quiet(), a function generated from
--     the registry (_stuck_runs_quiet_sql) whose statements are planned once per
--     session; only when it cannot say "nothing to do" does the general path
--     (_stuck_runs_sweep_all, the loop of 0006) run. A trigger on the registry and the
--     general path rebuild it when the registry or a table changes.
--   * Where the caller may write a table itself, its sweep writes the audit in the
--     same statement and returns its runs without a jsonb round trip; the audit's
--     stamp trigger only fires for rows whose stamp is not already right.
--   * Roles that could call recover_stuck_runs() may call the new routines.
-- Landed migrations are immutable (tests/test_migrations.py checks their checksums).
-- depends: 0006_owners

DROP TRIGGER IF EXISTS _stuck_runs_audit_stamp ON run_recoveries;
-- Only rows that say otherwise are stamped: a sweep writes the stamp itself,
-- and a call of the trigger function per audit row would cost a bulk
-- recovery as much again as the audit does.
CREATE TRIGGER _stuck_runs_audit_stamp BEFORE INSERT ON run_recoveries
    FOR EACH ROW
    WHEN (NEW.recovered_by IS DISTINCT FROM CURRENT_USER::pg_catalog.text
          OR NEW.recovered_at IS DISTINCT FROM pg_catalog.now())
    EXECUTE FUNCTION _stuck_runs_audit_stamp();

CREATE OR REPLACE FUNCTION _stuck_runs_lives_sql() RETURNS text
LANGUAGE sql STABLE
AS $$
    -- What a sweep needs to know about owners, read without writing: the live
    -- lives and those ended in the last 15 minutes (whose runs are taken at
    -- once; later the threshold takes what is left), life -> 'live' or what
    -- ended it; whether one has ended; and whether one may be silent
    -- (_stuck_runs_silent, less its server checks: stale, and a witness of its
    -- role or the threshold passed), which only the writing path,
    -- _stuck_runs_owner_states(true), may decide. A query's text, not a view:
    -- the fast path (_stuck_runs_quiet_sql) writes it into its own statement,
    -- and a view would need a grant of its own. The settings are read through
    -- scalar subqueries, evaluated only for a stale life: a join would have
    -- the planner guess at row counts.
    SELECT pg_catalog.format($sql$
        SELECT coalesce(pg_catalog.jsonb_object_agg(l.life, CASE WHEN l.ended_at IS NULL THEN 'live'
                            ELSE pg_catalog.format('instance %%s %%s', l.instance, l.end_reason) END), '{}'::pg_catalog.jsonb) AS lives,
               coalesce(pg_catalog.bool_or(l.ended_at IS NOT NULL), false) AS dead,
               coalesce(pg_catalog.bool_or(
                   l.ended_at IS NULL
                   AND l.heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
                                                              (SELECT s.dead_after FROM %1$s.stuck_runs_settings AS s))
                   AND (l.heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
                                                               (SELECT s.older_than FROM %1$s.stuck_runs_settings AS s))
                        OR EXISTS (SELECT FROM %1$s.stuck_runs_lives AS m
                                   WHERE m.started_by OPERATOR(pg_catalog.=) l.started_by AND m.life OPERATOR(pg_catalog.<>) l.life
                                     AND m.heartbeat_at OPERATOR(pg_catalog.>) (l.heartbeat_at OPERATOR(pg_catalog.+)
                                                                                (SELECT s.dead_after FROM %1$s.stuck_runs_settings AS s))))), false) AS silent
        FROM %1$s.stuck_runs_lives AS l
        WHERE l.ended_at IS NULL
           OR l.ended_at OPERATOR(pg_catalog.>) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '15 minutes')$sql$,
        _stuck_runs_schema())
$$;
COMMENT ON FUNCTION _stuck_runs_lives_sql() IS
    'The query a sweep reads the owners'' lives with: lives (life -> live or why it ended, for the live ones and those ended in the last 15 minutes), dead (any has ended) and silent (one may be silent and must first be ended by _stuck_runs_owner_states(true)).';

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

CREATE OR REPLACE FUNCTION _stuck_runs_quiet_function() RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    -- The body is one literal (%L): whatever names the registry and the
    -- tables hold, they stay inside it. The positional parameters are those
    -- of the sweep's statement text (_stuck_runs_sweep_sql): $1 the cutoff,
    -- $5 the owners' lives, which the function reads into its own parameters
    -- lives and dead. A migration that changes this signature or its names
    -- must drop the function first: CREATE OR REPLACE cannot, and the rebuild
    -- would fail (leaving the general path).
    -- A table someone holds locked is for the general path to wait on (at
    -- most 2 s, then a WARNING that names it): the fast path gives up at once.
    SELECT 'CREATE OR REPLACE FUNCTION %s._stuck_runs_quiet(
    cutoff timestamptz, integer, integer, interval, lives text, dead boolean) RETURNS integer
LANGUAGE plpgsql STABLE
SET lock_timeout = ''50ms''
AS %L'
$$;
COMMENT ON FUNCTION _stuck_runs_quiet_function() IS
    'The CREATE statement of _stuck_runs_quiet() that _stuck_runs_quiet_sql() fills in with the schema and the body (_stuck_runs_quiet_body).';

CREATE OR REPLACE FUNCTION _stuck_runs_quiet_frame(statements text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT pg_catalog.format('
DECLARE
    state integer;
BEGIN
    -- Generated by _stuck_runs_quiet_body(): 0 nothing to do, 1 something to
    -- recover, 2 not for this caller to read, 3 out of date, 4 a table is not
    -- covered, 5 an owner''s life is stale (maybe silent).%s
END
', statements)
$$;
COMMENT ON FUNCTION _stuck_runs_quiet_frame(text) IS
    'The frame of _stuck_runs_quiet()''s body around its generated statements.';

CREATE OR REPLACE FUNCTION _stuck_runs_quiet_body() RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    schema    text := _stuck_runs_schema();
    registry  text := (SELECT pg_catalog.format(
                  $check$coalesce((SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) %s AND coalesce(pg_catalog.bool_and(s.xmin::text IN (%s)), true)
                         FROM %s.stuck_runs_tables AS s), false)$check$,
                  pg_catalog.count(*), coalesce(pg_catalog.string_agg(pg_catalog.quote_literal(s.xmin::text), ', '), 'NULL'),
                  _stuck_runs_schema())
                  FROM stuck_runs_tables AS s);
    t         stuck_runs_tables;
    owner     oid;
    tables    text;
    trusted   text[] := '{}'::text[];
    adopters  text[] := '{}'::text[];
    types     text[] := '{}'::text[];
    stuck     text[] := '{}'::text[];
    recover   text[] := '{}'::text[];
    enums     text[] := '{}'::text[];
    status_in text;
    unset     text;
BEGIN
    IF (SELECT pg_catalog.count(*) FROM stuck_runs_tables)
       OPERATOR(pg_catalog.<>) (SELECT pg_catalog.count(*) FROM _stuck_runs_covered) THEN
        -- A table recovery does not cover must be reported at every call:
        -- that is the general path's to do, until the registry changes.
        RETURN _stuck_runs_quiet_frame(pg_catalog.format($body$
    IF %s THEN
        RETURN 4;
    END IF;
    RETURN 3;$body$, registry));
    END IF;

    SELECT pg_catalog.string_agg(pg_catalog.format(
               $check$coalesce((SELECT c.xmin::text OPERATOR(pg_catalog.=) %L FROM pg_catalog.pg_class AS c
                                WHERE c.oid OPERATOR(pg_catalog.=) %s::pg_catalog.oid), false)$check$,
               c.xmin::text, c.oid), E'\n                AND ' ORDER BY c.oid)
        INTO tables
    FROM _stuck_runs_covered AS s JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) s.table_name;

    FOR t IN SELECT * FROM _stuck_runs_covered LOOP
        SELECT c.relowner INTO owner FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name;
        -- The owner's code may run as this caller (_stuck_runs_runs_here): the
        -- owner can become a superuser (is one, or may SET ROLE to the
        -- bootstrap superuser), or it is this session's role, current and
        -- session user alike; and no row-level security applies.
        trusted := trusted OPERATOR(pg_catalog.||) pg_catalog.format(
            $check$(pg_catalog.pg_has_role(%1$s::pg_catalog.oid, 10::pg_catalog.oid, 'MEMBER')
             OR (pg_catalog.pg_get_userbyid(%1$s::pg_catalog.oid) OPERATOR(pg_catalog.=) CURRENT_USER
                 AND pg_catalog.pg_get_userbyid(%1$s::pg_catalog.oid) OPERATOR(pg_catalog.=) SESSION_USER))
            AND NOT pg_catalog.row_security_active(%2$s::pg_catalog.oid::pg_catalog.regclass)$check$,
            owner, t.table_name::pg_catalog.oid);
        adopters := adopters OPERATOR(pg_catalog.||) pg_catalog.format(
            'pg_catalog.pg_has_role(%s::pg_catalog.oid, %s::pg_catalog.oid, ''USAGE'')',
            t.adopted_by::pg_catalog.oid, owner);
        -- The types of every mapped column, as the plan sees them: a
        -- null-extended row of the table, which is never read. A plan is
        -- made again whenever its table is altered; a mapped column renamed
        -- or dropped fails it, and the general path says so.
        types := types OPERATOR(pg_catalog.||) pg_catalog.format(
            '(SELECT %s FROM (VALUES (true)) AS v(x) LEFT JOIN %s AS r ON false)',
            (SELECT pg_catalog.string_agg(pg_catalog.format('pg_catalog.pg_typeof(r.%I)::pg_catalog.oid OPERATOR(pg_catalog.=) %s::pg_catalog.oid',
                                                            a.attname, a.atttypid), ' AND ' ORDER BY a.attnum)
             FROM pg_catalog.jsonb_each_text(pg_catalog.to_jsonb(t)) AS j(key, name)
             JOIN stuck_runs_roles AS o ON o.parameter OPERATOR(pg_catalog.=) j.key
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) t.table_name
                                               AND a.attname OPERATOR(pg_catalog.=) j.name),
            _stuck_runs_qualified_name(t.table_name));
        -- An enum's values as the plans were made with them: a plan keeps an
        -- enum value's OID, and ALTER TYPE ... RENAME VALUE or ADD VALUE
        -- alters neither the registry nor the table.
        enums := enums OPERATOR(pg_catalog.||) (
            SELECT pg_catalog.format(
                       $check$(SELECT pg_catalog.array_agg(pg_catalog.concat(e.oid, ':', e.enumlabel) ORDER BY e.oid)::text
                      FROM pg_catalog.pg_enum AS e WHERE e.enumtypid OPERATOR(pg_catalog.=) %s::pg_catalog.oid) OPERATOR(pg_catalog.=) %L$check$,
                       ty.oid,
                       (SELECT pg_catalog.array_agg(pg_catalog.concat(e.oid, ':', e.enumlabel) ORDER BY e.oid)::text
                        FROM pg_catalog.pg_enum AS e WHERE e.enumtypid OPERATOR(pg_catalog.=) ty.oid))
            FROM pg_catalog.pg_type AS ty
            WHERE ty.oid OPERATOR(pg_catalog.=) _stuck_runs_column_type(t.table_name, t.status_column)
              AND ty.typtype OPERATOR(pg_catalog.=) 'e');
        status_in := _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column),
                                           t.active_statuses, _stuck_runs_column_type(t.table_name, t.status_column));
        -- Built while updated_at is NOT NULL, the threshold's statement has no
        -- arm for a NULL one; should the column lose NOT NULL later, an
        -- active run without it sends the call to the general path.
        unset := CASE WHEN (SELECT a.attnotnull FROM pg_catalog.pg_attribute AS a
                            WHERE a.attrelid OPERATOR(pg_catalog.=) t.table_name
                              AND a.attname OPERATOR(pg_catalog.=) t.updated_at_column)
                      THEN pg_catalog.format(' OR EXISTS (SELECT FROM %s AS r WHERE %s AND r.%I IS NULL)',
                                             _stuck_runs_qualified_name(t.table_name), status_in, t.updated_at_column)
                      ELSE '' END;
        stuck := stuck OPERATOR(pg_catalog.||) pg_catalog.format(
            'EXISTS (SELECT FROM %s AS r WHERE %s)%s',
            _stuck_runs_qualified_name(t.table_name), _stuck_runs_recoverable_sql(t, '$1', false), unset);
        recover := recover OPERATOR(pg_catalog.||) pg_catalog.format(
            'EXISTS (SELECT FROM %s AS r WHERE %s)%s',
            _stuck_runs_qualified_name(t.table_name), _stuck_runs_recoverable_sql(t, '$1', true), unset);
    END LOOP;

    -- Built-in functions first (no statement); then one statement that reads
    -- the registry's and the tables' row versions and the owners' lives; only
    -- once these have passed is a table's statement planned, which runs code
    -- of its owner.
    RETURN _stuck_runs_quiet_frame(pg_catalog.format($body$
    IF NOT pg_catalog.has_table_privilege(%1$s::pg_catalog.oid, 'SELECT') THEN
        RETURN 2;  -- the general path says why
    END IF;
    IF NOT (%2$s) THEN
        RETURN 2;
    END IF;
    IF NOT (%3$s) THEN
        RETURN 3;
    END IF;
    SELECT CASE WHEN NOT (%4$s
                AND %5$s
                AND %10$s
                AND %11$s) THEN 3
                WHEN v.stale THEN 5
                ELSE 0 END,
           v.lives::text, v.dead
        INTO state, lives, dead
    FROM (%6$s) AS v;
    IF state OPERATOR(pg_catalog.<>) 0 THEN
        RETURN state;
    END IF;
    -- One statement per case: a statement starts every subquery it holds,
    -- run or not.
    IF dead THEN
        RETURN CASE WHEN NOT (%7$s) THEN 3
                    WHEN %8$s THEN 1
                    ELSE 0 END;
    END IF;
    RETURN CASE WHEN NOT (%7$s) THEN 3
                WHEN %9$s THEN 1
                ELSE 0 END;$body$,
        'stuck_runs_lives'::regclass::pg_catalog.oid,
        coalesce(NULLIF(pg_catalog.array_to_string(trusted, E'\n        AND '), ''), 'true'),
        coalesce(NULLIF(pg_catalog.array_to_string(adopters, E'\n        AND '), ''), 'true'),
        registry, coalesce(tables, 'true'),
        -- The owners' lives as the sweep takes them (_stuck_runs_lives_sql),
        -- less the witness: any stale live life sends the call to the general
        -- path, which decides whether it is silent.
        pg_catalog.format($lives$
        SELECT coalesce(pg_catalog.jsonb_object_agg(l.life, CASE WHEN l.ended_at IS NULL THEN 'live'
                            ELSE pg_catalog.format('instance %%s %%s', l.instance, l.end_reason) END)
                            FILTER (WHERE l.life IS NOT NULL), '{}'::pg_catalog.jsonb) AS lives,
               coalesce(pg_catalog.bool_or(l.ended_at IS NOT NULL), false) AS dead,
               coalesce(pg_catalog.bool_or(l.ended_at IS NULL
                   AND l.heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.dead_after)), false) AS stale
        FROM %1$s.stuck_runs_settings AS s
        LEFT JOIN %1$s.stuck_runs_lives AS l
               ON l.ended_at IS NULL
               OR l.ended_at OPERATOR(pg_catalog.>) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '15 minutes')$lives$,
            schema),
        coalesce(NULLIF(pg_catalog.array_to_string(types, E'\n                     AND '), ''), 'true'),
        coalesce(NULLIF(pg_catalog.array_to_string(recover, E'\n                                OR '), ''), 'false'),
        coalesce(NULLIF(pg_catalog.array_to_string(stuck, E'\n                     OR '), ''), 'false'),
        -- Only stuck-runs' own stuck_runs_label() may be reached by name
        -- (_stuck_runs_label_ok): the legacy layout in public may have been
        -- opened to other roles, and an exact-type overload would win.
        pg_catalog.format($check$(SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 3 FROM pg_catalog.pg_proc AS p
                     WHERE p.proname OPERATOR(pg_catalog.=) 'stuck_runs_label'
                       AND p.pronamespace OPERATOR(pg_catalog.=) %s::pg_catalog.oid)$check$,
                          schema::regnamespace::pg_catalog.oid),
        coalesce(NULLIF(pg_catalog.array_to_string(enums, E'\n                AND '), ''), 'true')));
END
$$;
COMMENT ON FUNCTION _stuck_runs_quiet_body() IS
    'The body of _stuck_runs_quiet() for the registry and the tables as they are now: its checks and one probe per covered table, written out, so that the no-op sweep runs planned statements only.';

CREATE OR REPLACE FUNCTION _stuck_runs_quiet_sql() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.format(_stuck_runs_quiet_function(), _stuck_runs_schema(), _stuck_runs_quiet_body())
$$;
COMMENT ON FUNCTION _stuck_runs_quiet_sql() IS
    'The CREATE statement of _stuck_runs_quiet() for the registry and the tables as they are now: what the next rebuild would run.';

CREATE OR REPLACE FUNCTION _stuck_runs_copy_execute(routine regprocedure) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    grantee text;
BEGIN
    -- A routine created after `stuck_runs_grant_sql()` was run is callable by
    -- the same roles as recover_stuck_runs(), and by no one else.
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', routine);
    FOR grantee IN
        SELECT pg_catalog.quote_ident(r.rolname)
        FROM pg_catalog.pg_proc AS p,
             pg_catalog.aclexplode(p.proacl) AS a
        JOIN pg_catalog.pg_roles AS r ON r.oid OPERATOR(pg_catalog.=) a.grantee
        WHERE p.oid OPERATOR(pg_catalog.=) 'recover_stuck_runs(interval, integer, integer)'::regprocedure
          AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
          AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', routine, grantee);
    END LOOP;
END
$$;
COMMENT ON FUNCTION _stuck_runs_copy_execute(regprocedure) IS
    'Gives a routine created by an upgrade or by the fast path''s first build the EXECUTE grants recover_stuck_runs() has, so that roles granted before keep working.';

CREATE OR REPLACE FUNCTION _stuck_runs_refresh_quiet() RETURNS boolean
LANGUAGE plpgsql VOLATILE
-- A body that does not compile is refused when it is written, not at the
-- first call, whatever the session or the database set.
SET check_function_bodies = on
AS $$
DECLARE
    signature text := _stuck_runs_schema() OPERATOR(pg_catalog.||)
                      '._stuck_runs_quiet(timestamptz, integer, integer, interval, text, boolean)';
    quiet     regprocedure := pg_catalog.to_regprocedure(signature);
    body      text;
BEGIN
    -- Best effort, never an error: without it the general path answers.
    -- Only the role that owns stuck-runs' functions (or a superuser) writes
    -- it; a read-only transaction leaves it for the next sweep.
    IF pg_catalog.current_setting('transaction_read_only')::boolean
       OR NOT EXISTS (SELECT FROM pg_catalog.pg_proc AS p, pg_catalog.pg_roles AS me
                      WHERE p.oid OPERATOR(pg_catalog.=) coalesce(quiet, 'recover_stuck_runs(interval, integer, integer)'::regprocedure)
                        AND me.rolname OPERATOR(pg_catalog.=) CURRENT_USER
                        AND (me.rolsuper OR me.oid OPERATOR(pg_catalog.=) p.proowner))
       -- Two sweeps that find it out of date at once: one rebuilds it.
       OR NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('stuck_runs._stuck_runs_quiet')) THEN
        RETURN false;
    END IF;
    BEGIN
        -- Building it fails where recovery itself would (a planted
        -- stuck_runs_label(), a table the adopter may no longer read).
        body := _stuck_runs_quiet_body();
        IF body OPERATOR(pg_catalog.=) (SELECT p.prosrc FROM pg_catalog.pg_proc AS p
                                         WHERE p.oid OPERATOR(pg_catalog.=) quiet) THEN
            RETURN true;  -- already what the registry and the tables call for
        END IF;
        EXECUTE pg_catalog.format(_stuck_runs_quiet_function(), _stuck_runs_schema(), body);
        quiet := pg_catalog.to_regprocedure(signature);
        IF body OPERATOR(pg_catalog.<>) (SELECT p.prosrc FROM pg_catalog.pg_proc AS p
                                          WHERE p.oid OPERATOR(pg_catalog.=) quiet) THEN
            RAISE EXCEPTION 'the fast path was not written as built';
        END IF;
        -- Just created, PUBLIC may call it: it takes recover_stuck_runs()'s
        -- grants instead (a replaced one keeps its own).
        IF pg_catalog.has_function_privilege('public', quiet, 'EXECUTE') THEN
            PERFORM _stuck_runs_copy_execute(quiet);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RETURN false;
    END;
    RETURN true;
END
$$;
COMMENT ON FUNCTION _stuck_runs_refresh_quiet() IS
    'Rebuilds _stuck_runs_quiet() when it no longer matches the registry and the tables, if this role owns it (or is a superuser) and the transaction may write; returns whether it is up to date. Never fails: without it, the general path answers.';

CREATE OR REPLACE FUNCTION _stuck_runs_registry_changed() RETURNS trigger
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM _stuck_runs_refresh_quiet();
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION _stuck_runs_registry_changed() IS
    'After any change of the registry, rebuilds the fast path (when this role may; otherwise the next sweep by one that may, or `stuck-runs migrate`, does).';

DROP TRIGGER IF EXISTS _stuck_runs_registry_changed ON stuck_runs_tables;
CREATE TRIGGER _stuck_runs_registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stuck_runs_tables
    FOR EACH STATEMENT EXECUTE FUNCTION _stuck_runs_registry_changed();

CREATE OR REPLACE FUNCTION stuck_runs_harden() RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    fn     regprocedure;
    schema text := _stuck_runs_schema();
BEGIN
    -- pg_catalog first so no one can shadow now() or format(), our schema next,
    -- pg_temp last so a temporary table cannot stand in for ours
    -- (CVE-2018-1058). No other schema: the application's schema and public may
    -- be writable by roles that must not get a privileged caller to run their
    -- code. Every migration that creates or replaces a function calls this:
    -- CREATE OR REPLACE resets a function's SET clauses.
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace OPERATOR(pg_catalog.=) schema::regnamespace
          AND p.prokind OPERATOR(pg_catalog.=) 'f'
          AND (p.proname LIKE 'stuck\_runs\_%' OR p.proname LIKE '\_stuck\_runs\_%' OR p.proname IN (
               'recover_stuck_runs', 'adopt_runs_table', 'unadopt_runs_table',
               'propose_runs_table_mapping', 'resume_run', 'qualification_runs_touch'))
          AND p.proname OPERATOR(pg_catalog.<>) 'stuck_runs_label'
          -- Generated with every name qualified, and only ever called from
          -- recover_stuck_runs(), whose path it runs under: a SET clause
          -- would cost the no-op sweep a second switch of search_path.
          AND p.proname OPERATOR(pg_catalog.<>) '_stuck_runs_quiet'
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %s, pg_temp',
                                  fn, schema);
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
    -- A procedure that COMMITs cannot have a SET clause (drain_stuck_runs
    -- names everything itself instead); it is taken from PUBLIC all the same.
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace OPERATOR(pg_catalog.=) schema::regnamespace
          AND p.prokind OPERATOR(pg_catalog.=) 'p' AND p.proname IN ('drain_stuck_runs')
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON PROCEDURE %s FROM PUBLIC', fn);
    END LOOP;
    PERFORM _stuck_runs_share_label();
END
$$;
COMMENT ON FUNCTION stuck_runs_harden() IS
    'Pins the search_path of every stuck-runs function of the current schema and revokes EXECUTE from PUBLIC, but for stuck_runs_label(), which sweep indexes call at every write; each migration calls it last.';

-- Whoever could recover before may call what recovery now calls.
DO $grants$
DECLARE
    fn regprocedure;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        '_stuck_runs_lives_sql()', '_stuck_runs_sweep_ctes(stuck_runs_tables, boolean)',
        '_stuck_runs_sweep_direct_sql(stuck_runs_tables, boolean)',
        '_stuck_runs_sweep_all(interval, timestamptz, integer, integer, jsonb, boolean, integer)',
        '_stuck_runs_quiet_function()', '_stuck_runs_quiet_sql()', '_stuck_runs_quiet_frame(text)',
        '_stuck_runs_quiet_body()', '_stuck_runs_copy_execute(regprocedure)',
        '_stuck_runs_refresh_quiet()', '_stuck_runs_registry_changed()']::regprocedure[]
    LOOP
        PERFORM _stuck_runs_copy_execute(fn);
    END LOOP;
END
$grants$;

-- One-row tables the planner would otherwise take for a thousand rows each.
ANALYZE stuck_runs_settings;
ANALYZE stuck_runs_tables;
ANALYZE stuck_runs_roles;

DO $harden$ BEGIN PERFORM stuck_runs_harden(); PERFORM _stuck_runs_refresh_quiet(); END $harden$;
