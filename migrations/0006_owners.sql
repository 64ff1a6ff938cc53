-- 0006: owner-aware recovery. An application instance starts a life (stuck_runs_start),
-- heartbeats while it lives (stuck_runs_heartbeat) and claims its runs
-- (stuck_runs_claim); a run whose owner's life has ended is recovered at once, one
-- whose owner lives is never recovered for silence, and a run without an owner keeps
-- the threshold exactly as before.
--   * stuck_runs_lives, stuck_runs_settings.dead_after (20 s), the owner column role
--     (stuck_runs_tables.owner_column, adopt_runs_table(owner_column => ...)), the
--     built-in table's owner column, run_recoveries.reason and the recovered row's reason.
--   * Roles that could recover before may use the new functions and view after.
-- Landed migrations are immutable (tests/test_migrations.py checks their checksums).
-- depends: 0005_with_the_app

ALTER TABLE stuck_runs_settings ADD COLUMN dead_after interval NOT NULL DEFAULT interval '20 seconds'
    CONSTRAINT stuck_runs_settings_dead_after_check CHECK (_stuck_runs_positive(dead_after));
ALTER TABLE stuck_runs_tables ADD COLUMN owner_column text;
ALTER TABLE run_recoveries ADD COLUMN reason text;
ALTER TYPE stuck_runs_recovered_run ADD ATTRIBUTE reason text;
INSERT INTO stuck_runs_roles (role, parameter, kind, required, default_column, synonyms, prefixes, position)
VALUES ('owner', 'owner_column', 'any', false, NULL, '{stuckrunsowner,ownerlife,lifeid}', '{}', 10)
ON CONFLICT (role) DO NOTHING;

-- adopt_runs_table() gains owner_column: a new signature. Whoever could call the old
-- one may call the new one (their grants are carried over below).
CREATE TEMPORARY TABLE _stuck_runs_0006_grants ON COMMIT DROP AS
SELECT a.grantee, p.proname::text AS routine
FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
WHERE p.pronamespace OPERATOR(pg_catalog.=) _stuck_runs_schema()::regnamespace
  AND p.proname IN ('adopt_runs_table', 'recover_stuck_runs')
  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
  AND a.grantee OPERATOR(pg_catalog.<>) p.proowner AND a.grantee OPERATOR(pg_catalog.<>) 0::oid;
DROP FUNCTION adopt_runs_table(regclass, text, text, text, text, text, text, text, text, text[], text, text, text);

-- The built-in table, when stuck-runs created it here, gets its owner column.
DO $owner$
BEGIN
    IF EXISTS (SELECT FROM stuck_runs_tables AS t
               WHERE t.managed AND t.table_name OPERATOR(pg_catalog.=) pg_catalog.to_regclass(
                   pg_catalog.format('%s.qualification_runs', _stuck_runs_schema()))) THEN
        ALTER TABLE qualification_runs ADD COLUMN owner text;
        COMMENT ON COLUMN qualification_runs.owner IS
            'The life of the application instance working on the run (stuck_runs_claim()): recovered at once when that life ends, never for silence while it lives. NULL: the threshold decides, as for every run before owners.';
        UPDATE stuck_runs_tables SET owner_column = 'owner' WHERE managed;
    END IF;
END
$owner$;

-- from sql/01_tables.sql
COMMENT ON COLUMN stuck_runs_settings.dead_after IS
    'How long an application instance may go without a heartbeat (database clock) before its life is over and its runs are recovered, whatever their idle time. Counted only once the server itself has been up that long, so a restart of the database is no mass death.';

COMMENT ON COLUMN stuck_runs_tables.owner_column IS
    'The column naming the life of the application instance working on a run (stuck_runs_start()), if the table has one: a run whose owner''s life is over is recovered at once, one whose owner is alive never for silence alone. Any type whose text form holds the life token (text, varchar, uuid); NULL allowed.';

COMMENT ON COLUMN run_recoveries.reason IS
    'Why the run was taken: NULL for no sign of life for older_than (the threshold, as every release before owners), or what ended its owner''s life (''instance web restarted'', ''instance web stopped heartbeating'').';

-- from sql/03_adoption.sql
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
    attempts_column     text   DEFAULT NULL,
    time_zone           text   DEFAULT 'UTC',
    owner_column        text   DEFAULT NULL
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
    max_len  integer;
    allowed  boolean;
BEGIN
    IF table_name IS NULL OR NOT EXISTS (
        SELECT FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) table_name AND c.relkind IN ('r', 'p')
    ) THEN
        RAISE EXCEPTION 'adopt_runs_table: % is not a table', coalesce(table_name::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Its sweep index could not be built CONCURRENTLY, and every migrate would
    -- fail trying: refused up front instead.
    IF EXISTS (SELECT FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) table_name AND c.relkind OPERATOR(pg_catalog.=) 'p') THEN
        RAISE EXCEPTION 'adopt_runs_table: % is a partitioned table, which stuck-runs does not cover yet', table_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Adopt each partition instead: they are tables of their own (unless the table is partitioned by its status).';
    END IF;
    IF NOT _stuck_runs_may_adopt(table_name) THEN
        RAISE EXCEPTION 'adopt_runs_table: must be the owner of table % (or a member of its owning role) to adopt it', table_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    -- The candidate entry: from here on, roles are read through stuck_runs_roles.
    entry.table_name := table_name;
    entry.id_column := id_column;
    entry.status_column := status_column;
    entry.created_at_column := created_at_column;
    entry.updated_at_column := updated_at_column;
    entry.completed_at_column := completed_at_column;
    entry.error_column := error_column;
    entry.completed_column := completed_column;
    entry.total_column := total_column;
    entry.attempts_column := attempts_column;
    entry.active_statuses := active_statuses;
    entry.failed_status := failed_status;
    entry.time_zone := time_zone;
    entry.owner_column := owner_column;

    FOR col IN
        SELECT r.parameter AS role, r.required, r.kind, pg_catalog.to_jsonb(entry) ->> r.parameter AS name
        FROM stuck_runs_roles AS r ORDER BY r.position
    LOOP
        IF col.name IS NULL THEN
            IF col.required THEN
                RAISE EXCEPTION 'adopt_runs_table: % is required', col.role
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            CONTINUE;
        END IF;
        col_type := _stuck_runs_column_type(table_name, col.name);
        IF col_type IS NULL THEN
            RAISE EXCEPTION 'adopt_runs_table: table % has no column "%" (given as %)',
                table_name, col.name, col.role
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give the column name exactly as the table spells it, without quotes.';
        END IF;
        IF NOT _stuck_runs_fits(col.kind, col_type) THEN
            RAISE EXCEPTION 'adopt_runs_table: column "%" (given as %) is of type %, which cannot hold %',
                col.name, col.role, col_type,
                CASE col.kind WHEN 'time' THEN 'a timestamp' WHEN 'count' THEN 'an integer count'
                              WHEN 'text' THEN 'an error message' ELSE 'a status' END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    SELECT pg_catalog.to_jsonb(entry) ->> r.parameter INTO wanted
    FROM stuck_runs_roles AS r
    WHERE pg_catalog.to_jsonb(entry) ->> r.parameter IS NOT NULL
    GROUP BY 1 HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1
    LIMIT 1;
    IF wanted IS NOT NULL THEN
        RAISE EXCEPTION 'adopt_runs_table: column "%" is given for two roles; each role needs a column of its own', wanted
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A status column too narrow for a status recovery writes: every sweep of
    -- such a table would fail, so it is refused now.
    SELECT a.atttypmod OPERATOR(pg_catalog.-) 4 INTO max_len
    FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) table_name AND a.attname OPERATOR(pg_catalog.=) status_column
      AND a.atttypmod OPERATOR(pg_catalog.>) 0
      AND a.atttypid OPERATOR(pg_catalog.=) ANY (ARRAY['varchar'::regtype, 'bpchar'::regtype]);
    SELECT v INTO wanted FROM pg_catalog.unnest(active_statuses OPERATOR(pg_catalog.||) failed_status) AS v
    WHERE pg_catalog.char_length(v) OPERATOR(pg_catalog.>) max_len LIMIT 1;
    IF wanted IS NOT NULL THEN
        RAISE EXCEPTION 'adopt_runs_table: column "%" (given as status_column) holds at most % characters; status "%" does not fit', status_column, max_len, wanted
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A partition whose partition key includes the status: moving a run to its
    -- failed status moves it out of the partition, which an UPDATE of the
    -- partition itself refuses.
    IF EXISTS (
        SELECT FROM pg_catalog.pg_inherits AS i
        JOIN pg_catalog.pg_partitioned_table AS p ON p.partrelid OPERATOR(pg_catalog.=) i.inhparent
        JOIN pg_catalog.pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) i.inhparent
             AND a.attnum OPERATOR(pg_catalog.=) ANY (p.partattrs::pg_catalog.int2[])
        WHERE i.inhrelid OPERATOR(pg_catalog.=) table_name
          AND a.attname OPERATOR(pg_catalog.=) status_column
    ) THEN
        RAISE EXCEPTION 'adopt_runs_table: % is a partition by its status column "%": recovery would move its runs out of it', table_name, status_column
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'stuck-runs does not cover tables partitioned by status yet.';
    END IF;

    SELECT a.atttypmod OPERATOR(pg_catalog.-) 4 INTO max_len
    FROM pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) table_name AND a.attname OPERATOR(pg_catalog.=) error_column AND a.atttypmod OPERATOR(pg_catalog.>) 0;
    IF max_len OPERATOR(pg_catalog.<) 255 THEN
        RAISE EXCEPTION 'adopt_runs_table: column "%" (given as error_column) holds at most % characters; recovery''s message needs up to 255', error_column, max_len
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map a wider column, or none (error_column => NULL).';
    END IF;

    IF NOT EXISTS (
        SELECT FROM pg_index AS i
        JOIN pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
        WHERE i.indrelid OPERATOR(pg_catalog.=) table_name AND i.indisunique AND i.indpred IS NULL
          AND i.indnkeyatts OPERATOR(pg_catalog.=) 1 AND a.attname OPERATOR(pg_catalog.=) id_column
    ) THEN
        RAISE EXCEPTION 'adopt_runs_table: column "%" (given as id_column) is neither the primary key nor unique in %',
            id_column, table_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Recovery changes runs one by one and needs an id that names exactly one row.';
    END IF;

    IF active_statuses IS NULL OR pg_catalog.cardinality(active_statuses) OPERATOR(pg_catalog.=) 0
       OR pg_catalog.array_position(active_statuses, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'adopt_runs_table: active_statuses must list at least one status'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF failed_status IS NULL OR failed_status OPERATOR(pg_catalog.=) ANY (active_statuses) THEN
        RAISE EXCEPTION 'adopt_runs_table: failed_status must be a status outside active_statuses, got %',
            coalesce(failed_status, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.array_agg(e.enumlabel::text ORDER BY e.enumsortorder) INTO labels
    FROM pg_enum AS e
    WHERE e.enumtypid OPERATOR(pg_catalog.=) _stuck_runs_column_type(table_name, status_column);
    IF labels IS NOT NULL THEN
        FOREACH wanted IN ARRAY active_statuses OPERATOR(pg_catalog.||) failed_status LOOP
            IF NOT wanted OPERATOR(pg_catalog.=) ANY (labels) THEN
                RAISE EXCEPTION 'adopt_runs_table: status "%" is not a value of the enum % of column "%"',
                    wanted, _stuck_runs_column_type(table_name, status_column), status_column
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = pg_catalog.format('Its values are: %s.', pg_catalog.array_to_string(labels, ', '));
            END IF;
        END LOOP;
    END IF;

    -- A CHECK constraint on the status column alone must allow every status
    -- recovery writes (or reads): try each value against its expression.
    FOR col IN
        SELECT con.conname, pg_catalog.pg_get_expr(con.conbin, con.conrelid) AS expr
        FROM pg_constraint AS con
        JOIN pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) con.conrelid AND a.attname OPERATOR(pg_catalog.=) status_column
        WHERE con.conrelid OPERATOR(pg_catalog.=) table_name AND con.contype OPERATOR(pg_catalog.=) 'c' AND con.conkey OPERATOR(pg_catalog.=) ARRAY[a.attnum]
    LOOP
        FOREACH wanted IN ARRAY active_statuses OPERATOR(pg_catalog.||) failed_status LOOP
            -- The constraint's functions are the owner's code: evaluated as the owner.
            allowed := (_stuck_runs_as_owner(table_name, pg_catalog.format(
                            'SELECT pg_catalog.to_jsonb(%s) FROM (SELECT $5::%s AS %I) AS r', col.expr,
                            pg_catalog.format_type(_stuck_runs_column_type(table_name, status_column), NULL),
                            status_column), value => wanted) OPERATOR(pg_catalog.->>) 0)::boolean;
            IF allowed OPERATOR(pg_catalog.=) false THEN
                RAISE EXCEPTION 'adopt_runs_table: status "%" is not allowed by the CHECK constraint % of %',
                    wanted, col.conname, table_name
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = pg_catalog.format('The constraint reads: %s.', col.expr);
            END IF;
        END LOOP;
    END LOOP;

    -- A requeued run has no owner until a worker claims it again.
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
               WHERE a.attrelid OPERATOR(pg_catalog.=) table_name AND a.attname OPERATOR(pg_catalog.=) owner_column
                 AND a.attnotnull) THEN
        RAISE EXCEPTION 'adopt_runs_table: column "%" (given as owner_column) is NOT NULL; a requeued run has no owner until one claims it', owner_column
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map a column that allows NULL, or none (owner_column => NULL).';
    END IF;

    BEGIN
        PERFORM pg_catalog.now() AT TIME ZONE time_zone;
    EXCEPTION WHEN invalid_parameter_value OR null_value_not_allowed THEN
        RAISE EXCEPTION 'adopt_runs_table: time_zone "%" is not a time zone PostgreSQL knows', time_zone
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example UTC, or a name from pg_timezone_names such as America/New_York.';
    END;
    IF time_zone IS NULL THEN
        RAISE EXCEPTION 'adopt_runs_table: time_zone must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Serialised: many app instances run `migrate --adopt` at once after a reset.
    LOCK TABLE stuck_runs_tables IN SHARE ROW EXCLUSIVE MODE;
    -- An entry for a table of this name that was dropped (prisma migrate reset)
    -- is replaced by this one.
    DELETE FROM stuck_runs_tables AS t
    WHERE NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name)
      AND (t.schema_name, t.relation_name) = (
          SELECT n.nspname::text, c.relname::text
          FROM pg_class AS c JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
          WHERE c.oid OPERATOR(pg_catalog.=) table_name);

    SELECT n.nspname::text, c.relname::text INTO entry.schema_name, entry.relation_name
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    WHERE c.oid OPERATOR(pg_catalog.=) table_name;
    entry.adopted_at := pg_catalog.now();
    DELETE FROM stuck_runs_tables AS t WHERE t.table_name OPERATOR(pg_catalog.=) entry.table_name
    RETURNING t.managed INTO entry.managed;
    entry.managed := coalesce(entry.managed, false);
    INSERT INTO stuck_runs_tables SELECT (entry).*;

    -- 'processing' is not 'PROCESSING': when a sample of the table holds rows
    -- and none has any status we were told about, say what it does hold.
    -- Read as the owner: row-level security would hide rows from anyone else.
    SELECT pg_catalog.array_agg(l.v ORDER BY l.v), pg_catalog.bool_or(l.v OPERATOR(pg_catalog.=) ANY (active_statuses OPERATOR(pg_catalog.||) failed_status))
        INTO labels, allowed
    FROM pg_catalog.jsonb_array_elements_text(coalesce(_stuck_runs_as_owner(table_name, pg_catalog.format(
             'SELECT pg_catalog.jsonb_agg(DISTINCT s) FROM (SELECT %s AS s FROM %s AS r LIMIT 10000) AS sample',
             _stuck_runs_text_sql(status_column), _stuck_runs_qualified_name(table_name))), '[]')) AS l(v);
    IF labels IS NOT NULL AND NOT allowed THEN
        RAISE WARNING 'stuck-runs: no row of % has status %; its rows have: %',
            table_name, pg_catalog.array_to_string(active_statuses OPERATOR(pg_catalog.||) failed_status, ', '),
            pg_catalog.array_to_string(labels[1:10], ', ')
            USING HINT = 'Statuses are compared exactly, case included: give --active-statuses and --failed-status as the table spells them.';
    END IF;

    IF EXISTS (SELECT FROM stuck_runs_index_ddl(table_name)) THEN
        RAISE NOTICE 'stuck-runs: % has no index for sweeps yet; run outside a transaction: %',
            table_name, (SELECT pg_catalog.string_agg(d, '; ') FROM stuck_runs_index_ddl(table_name) AS d);
    END IF;
    RETURN entry;
END
$$;

COMMENT ON FUNCTION adopt_runs_table(regclass, text, text, text, text, text, text, text, text, text[], text, text, text, text) IS
    'Registers (or re-maps) a runs table so recovery covers it: which column plays which role, which statuses are active and which one means failed, and in which zone the application writes timestamp without time zone columns. Only the table''s owner may adopt it. Validates everything up front (SQLSTATE 22023 naming the column or value) so a sweep never meets a bad mapping. Never alters the table; see stuck_runs_index_ddl() for its index.';

-- from sql/04_recovery.sql
CREATE OR REPLACE FUNCTION _stuck_runs_sweep_sql(t stuck_runs_tables, dead boolean) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    -- Parameters of the statement: $1 cutoff (timestamptz), $2 limit,
    -- $3 max_attempts, $4 older_than, $5 the owners' lives (jsonb text, see
    -- _stuck_runs_owner_states; dead: some have ended). It may run as the table's owner
    -- (_stuck_runs_as_owner), so it names nothing of stuck-runs' own and
    -- returns its runs as jsonb; the caller writes the audit.
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
        )
        -- Only runs that took the status recovery wrote: one a trigger kept
        -- active is not reported, audited or counted against the batch.
        SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(c)) FROM changed AS c
        WHERE c.action OPERATOR(pg_catalog.=) CASE WHEN c.requeue THEN 'requeued' ELSE 'failed' END
        $sql$,
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

COMMENT ON FUNCTION _stuck_runs_sweep_sql(stuck_runs_tables, boolean) IS
    'Builds the one statement that recovers the stuck runs of one registered table: lock candidates skipping busy rows, re-check state in the UPDATE, return the changed runs as jsonb. With dead, it also takes every active run whose owner''s life has ended. Identifiers go through %I, values through %L or parameters.';

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

CREATE OR REPLACE FUNCTION recover_stuck_runs(
    older_than   interval DEFAULT _stuck_runs_threshold(),
    max_runs     integer  DEFAULT NULL,
    max_attempts integer  DEFAULT NULL
) RETURNS SETOF stuck_runs_recovered_run
LANGUAGE plpgsql VOLATILE
-- Before the body runs: compiling it opens the registry (a row variable of its
-- type), which a role with write grants on it may hold locked. Bounded, that
-- is an error after 2 s instead of a wait until statement_timeout.
SET lock_timeout = '2s'
AS $$
#variable_conflict use_variable
DECLARE
    cutoff    timestamptz;
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
    lives     jsonb;
    dead      boolean;
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
    BEGIN
        cutoff := pg_catalog.now() OPERATOR(pg_catalog.-) older_than;
    EXCEPTION WHEN datetime_field_overflow THEN
        RAISE EXCEPTION 'recover_stuck_runs: older_than % is out of range', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END;

    PERFORM _stuck_runs_bound_lock_wait();
    -- Whatever a session, a role's settings or a pooled neighbour left there:
    -- this call reports its own failures only.
    PERFORM pg_catalog.set_config('stuck_runs.unswept', '', true);
    IF max_runs IS NOT NULL THEN
        SELECT pg_catalog.count(*)::integer INTO tables FROM _stuck_runs_covered;
    END IF;
    -- Owners: the lives once per call, as one parameter of the sweeps. Inline,
    -- not through a function with a pinned search_path (the no-op sweep pays
    -- for every such call); the writing path only when a life is stale.
    IF NOT pg_catalog.has_table_privilege('stuck_runs_lives', 'SELECT') THEN
        RAISE WARNING 'stuck-runs: this role may not read the owners'' lives (stuck_runs_grant_sql() prints the GRANTs)'
            USING DETAIL = 'Runs with an owner were left alone this time.';
        lives := '{"": "live"}'::jsonb;  -- every owned run counts as a live owner's
        dead := false;
    ELSIF EXISTS (
        -- A life that may be silent (_stuck_runs_silent, less its server
        -- checks): stale, and a witness of its role or the threshold passed.
        SELECT FROM stuck_runs_lives AS l, stuck_runs_settings AS s
        WHERE l.ended_at IS NULL
          AND l.heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.dead_after)
          AND (l.heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.older_than)
               OR EXISTS (SELECT FROM stuck_runs_lives AS m
                          WHERE m.started_by OPERATOR(pg_catalog.=) l.started_by AND m.life OPERATOR(pg_catalog.<>) l.life
                            AND m.heartbeat_at OPERATOR(pg_catalog.>) (l.heartbeat_at OPERATOR(pg_catalog.+) s.dead_after)))) THEN
        SELECT o.lives, o.dead INTO lives, dead FROM _stuck_runs_owner_states(true) AS o;
    ELSE
        SELECT coalesce(pg_catalog.jsonb_object_agg(l.life, CASE WHEN l.ended_at IS NULL THEN 'live'
                            ELSE pg_catalog.format('instance %s %s', l.instance, l.end_reason) END), '{}'::jsonb),
               coalesce(pg_catalog.bool_or(l.ended_at IS NOT NULL), false)
            INTO lives, dead
        FROM stuck_runs_lives AS l
        WHERE l.ended_at IS NULL
           OR l.ended_at OPERATOR(pg_catalog.>) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '15 minutes');
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
            END IF;
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

    RETURN QUERY SELECT u.* FROM pg_catalog.unnest(runs) AS u ORDER BY u.idle DESC, u.table_name, u.run_id;
END
$$;

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

-- from sql/06_owners.sql
-- stuck-runs: owners. An application instance (a stable name: a pod, a host, "web")
-- starts a new life each time its process starts and heartbeats while it lives. A run
-- whose owner column holds a life that is over is recovered at once, whatever its idle
-- time; a run whose owner is alive is never recovered for silence. Liveness is judged
-- by the database's clock only.
--
-- Why lives, not advisory locks or backend pids: through a transaction pooler a lock
-- or a pid belongs to whichever client last used the server connection, so a dead
-- worker's lock can live on (a missed rescue) and a live worker's can vanish (a false
-- one). A row per life, written by one statement per heartbeat, means the same thing
-- whatever carries the statement.

CREATE TABLE IF NOT EXISTS stuck_runs_lives (
    life         text PRIMARY KEY CHECK (pg_catalog.length(life) BETWEEN 8 AND 200),
    instance     text NOT NULL CHECK (pg_catalog.length(instance) BETWEEN 1 AND 200),
    started_by   oid NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    heartbeat_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    alive_since  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    ended_at     timestamptz,
    end_reason   text CHECK (end_reason IN ('restarted', 'stopped heartbeating')),
    CONSTRAINT stuck_runs_lives_ended CHECK ((ended_at IS NULL) = (end_reason IS NULL))
) WITH (fillfactor = 50);

COMMENT ON TABLE stuck_runs_lives IS
    'One row per life of an application instance: started by stuck_runs_start(), kept alive by stuck_runs_heartbeat(), ended by a newer life of the same instance or by silence (_stuck_runs_silent). Written through those functions; its triggers hold every role to what they may do: start a life of its own, keep alive or end the lives it may speak for, end another role''s life only once it is silent, and never change a life that has ended. fillfactor 50 leaves room on each page, so a heartbeat is a HOT update.';

COMMENT ON COLUMN stuck_runs_lives.alive_since IS
    'Since when the life has heartbeated without a gap of half of dead_after: another life of its role is silent only when this one was heartbeating all along, so a lost connection (every heartbeat stale at once) is no death.';

CREATE INDEX IF NOT EXISTS stuck_runs_lives_instance_idx ON stuck_runs_lives (instance);

-- Ending a life changes a column of this unique index: a key update, which waits
-- for the FOR KEY SHARE that a claim or a progress report holds on the life,
-- while a heartbeat (no indexed column) waits for neither.
CREATE UNIQUE INDEX IF NOT EXISTS stuck_runs_lives_end_key ON stuck_runs_lives (life, ended_at);

-- Sweeps read the live lives and those ended lately, never the history; a
-- witness of silence is looked up by role and heartbeat.
CREATE INDEX IF NOT EXISTS stuck_runs_lives_ended_idx ON stuck_runs_lives (ended_at);

-- (Not heartbeat_at: a heartbeat must stay a HOT update.)
CREATE INDEX IF NOT EXISTS stuck_runs_lives_role_idx ON stuck_runs_lives (started_by);

CREATE OR REPLACE FUNCTION _stuck_runs_may_speak_for(started_by oid) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    -- The role that started a life (or one that may act as it: the runner's
    -- role at a deploy, a superuser) may end it or heartbeat it. The current
    -- role, not the session's: code of a table's owner that runs during a
    -- superuser's sweep runs as that owner, and speaks for its lives only.
    -- A life of a role dropped since: a superuser's.
    SELECT coalesce((SELECT pg_catalog.pg_has_role(CURRENT_USER, o.oid, 'MEMBER')
                     FROM pg_catalog.pg_roles AS o WHERE o.oid OPERATOR(pg_catalog.=) started_by),
                    (SELECT o.rolsuper FROM pg_catalog.pg_roles AS o WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER))
$$;

COMMENT ON FUNCTION _stuck_runs_may_speak_for(oid) IS
    'Whether the current role may end or heartbeat a life started by the given role: only that role, its members, or a superuser.';

-- Every heartbeat goes stale at once while the server is down, restarting, or
-- failing over to a standby: that is no death. A promoted standby's postmaster
-- may have started long before, so the timeline counts too: the first sweep on
-- a new timeline records when it saw it.
CREATE TABLE IF NOT EXISTS stuck_runs_timelines (
    timeline text PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

COMMENT ON TABLE stuck_runs_timelines IS
    'When a sweep first saw each WAL timeline of the server: after a failover, lives are judged silent only once the promoted server has been writing for dead_after.';

CREATE OR REPLACE FUNCTION _stuck_runs_timelines_guard() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Only the timeline the server writes on, seen now: no role can date a
    -- timeline in the past or the future, or one yet to come.
    NEW.timeline := _stuck_runs_timeline();
    NEW.seen_at := pg_catalog.clock_timestamp();
    IF NEW.timeline IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION _stuck_runs_timelines_guard() IS
    'Makes every row of stuck_runs_timelines the server''s current timeline, seen now, whatever the INSERT said.';

DROP TRIGGER IF EXISTS _stuck_runs_timelines_guard ON stuck_runs_timelines;

CREATE TRIGGER _stuck_runs_timelines_guard BEFORE INSERT ON stuck_runs_timelines
    FOR EACH ROW EXECUTE FUNCTION _stuck_runs_timelines_guard();

CREATE OR REPLACE FUNCTION _stuck_runs_timeline() RETURNS text
LANGUAGE sql VOLATILE
AS $$
    -- The timeline this server writes on, from the name of its current WAL
    -- file; NULL on a standby, which writes nothing and judges no one.
    SELECT CASE WHEN NOT pg_catalog.pg_is_in_recovery()
                THEN pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) END
$$;

COMMENT ON FUNCTION _stuck_runs_timeline() IS
    'The WAL timeline the server writes on (it changes at every promotion of a standby), or NULL on a standby.';

CREATE OR REPLACE FUNCTION _stuck_runs_note_timeline() RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    lock_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    IF _stuck_runs_timeline() IS NULL OR EXISTS (
        SELECT FROM stuck_runs_timelines AS t WHERE t.timeline OPERATOR(pg_catalog.=) _stuck_runs_timeline()) THEN
        RETURN;
    END IF;
    -- Another transaction recording it at the same time (or holding its
    -- insert open) is waited for briefly, then left to it.
    PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);
    BEGIN
        INSERT INTO stuck_runs_timelines (timeline) VALUES (_stuck_runs_timeline()) ON CONFLICT DO NOTHING;
    EXCEPTION WHEN lock_not_available THEN
        NULL;
    END;
    PERFORM pg_catalog.set_config('lock_timeout', lock_wait, true);
END
$$;

COMMENT ON FUNCTION _stuck_runs_note_timeline() IS
    'Records when the server''s current timeline was first seen, if it is new: at every start of a life, and at the first sweep that finds a stale life.';

CREATE OR REPLACE FUNCTION _stuck_runs_up_since() RETURNS timestamptz
LANGUAGE sql VOLATILE
AS $$
    -- Not seen yet (the first call after a promotion): up from now on.
    SELECT GREATEST(pg_catalog.pg_postmaster_start_time(),
                    coalesce((SELECT t.seen_at FROM stuck_runs_timelines AS t
                              WHERE t.timeline OPERATOR(pg_catalog.=) _stuck_runs_timeline()),
                             pg_catalog.clock_timestamp()))
$$;

COMMENT ON FUNCTION _stuck_runs_up_since() IS
    'Since when this server has been up and writing: its start, or the first sweep it ran on its current timeline (after a failover), whichever is later.';

CREATE OR REPLACE FUNCTION _stuck_runs_silent(life text, started_by oid, heartbeat_at timestamptz)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    -- No heartbeat for dead_after, by the database's clock, while the server
    -- has been up and writing for dead_after, and while another life of the
    -- same role heartbeated without a gap: proof that the database could be
    -- reached. A lost connection, a restart of the pooler or of the server
    -- makes every heartbeat of the application stale at once, and that is no
    -- death. (A lone instance that dies is recovered by its next start, at
    -- once.)
    SELECT CASE
        WHEN heartbeat_at OPERATOR(pg_catalog.>=) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.dead_after) THEN false
        -- Without a witness (a lone instance, every instance gone), the
        -- threshold: silent for older_than, as a run without an owner.
        WHEN heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.older_than)
             AND _stuck_runs_up_since() OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.older_than)
        THEN true
        ELSE _stuck_runs_up_since() OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.dead_after)
             AND EXISTS (SELECT FROM stuck_runs_lives AS m
                         WHERE m.started_by OPERATOR(pg_catalog.=) $2 AND m.life OPERATOR(pg_catalog.<>) $1
                           AND m.heartbeat_at OPERATOR(pg_catalog.>) ($3 OPERATOR(pg_catalog.+) s.dead_after)
                           AND m.heartbeat_at OPERATOR(pg_catalog.>)
                               (GREATEST($3, m.alive_since) OPERATOR(pg_catalog.+) s.dead_after))
    END
    FROM stuck_runs_settings AS s
$$;

COMMENT ON FUNCTION _stuck_runs_silent(text, oid, timestamptz) IS
    'Whether a live life is silent, and so over: no heartbeat for dead_after while the server was up and writing and another life of its role heartbeated without a gap all along; or, with no such witness, no heartbeat for the threshold (older_than).';

CREATE OR REPLACE FUNCTION _stuck_runs_lives_guard() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- A life starts fresh, as the role that starts it.
    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        NEW.started_by := (SELECT o.oid FROM pg_catalog.pg_roles AS o WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER);
        NEW.started_at := pg_catalog.clock_timestamp();
        NEW.heartbeat_at := NEW.started_at;
        NEW.alive_since := NEW.started_at;
        NEW.ended_at := NULL;
        NEW.end_reason := NULL;
        RETURN NEW;
    END IF;
    IF (NEW.life, NEW.instance, NEW.started_by, NEW.started_at)
       IS DISTINCT FROM (OLD.life, OLD.instance, OLD.started_by, OLD.started_at) THEN
        RAISE EXCEPTION 'stuck-runs: a life''s token, instance, role and start never change'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.ended_at IS NOT NULL THEN
        RAISE EXCEPTION 'stuck-runs: life % has ended; it never changes again', OLD.life
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- A heartbeat is dated here, once the row is ours (a lock waited for
    -- before it must not make it late), by the database's clock; a gap of
    -- half of dead_after starts a new streak.
    IF (NEW.heartbeat_at, NEW.alive_since) IS DISTINCT FROM (OLD.heartbeat_at, OLD.alive_since) THEN
        NEW.heartbeat_at := pg_catalog.clock_timestamp();
        NEW.alive_since := CASE WHEN NEW.heartbeat_at OPERATOR(pg_catalog.-) OLD.heartbeat_at
                                     OPERATOR(pg_catalog.>) (SELECT s.dead_after OPERATOR(pg_catalog./) 2 FROM stuck_runs_settings AS s)
                                THEN NEW.heartbeat_at ELSE OLD.alive_since END;
    END IF;
    IF NOT _stuck_runs_may_speak_for(OLD.started_by) THEN
        -- Another role may only end a silent life, and change nothing else.
        IF NOT (NEW.ended_at IS NOT NULL AND NEW.end_reason OPERATOR(pg_catalog.=) 'stopped heartbeating'
                AND NEW.heartbeat_at OPERATOR(pg_catalog.=) OLD.heartbeat_at
                AND _stuck_runs_silent(OLD.life, OLD.started_by, OLD.heartbeat_at)) THEN
            RAISE EXCEPTION 'stuck-runs: life % belongs to another role; it may only be ended once it is silent', OLD.life
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF NEW.ended_at IS NOT NULL THEN
        NEW.ended_at := pg_catalog.clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION _stuck_runs_lives_guard() IS
    'What any role may do to a life, whichever way it writes the table: start one of its own, fresh; heartbeat or end the lives it may speak for (by the database''s clock); end another role''s life only once it is silent; never change an ended life, or whose life it is.';

DROP TRIGGER IF EXISTS _stuck_runs_lives_guard ON stuck_runs_lives;

CREATE TRIGGER _stuck_runs_lives_guard BEFORE INSERT OR UPDATE ON stuck_runs_lives
    FOR EACH ROW EXECUTE FUNCTION _stuck_runs_lives_guard();

-- Row locks run no trigger: row-level security keeps another role from
-- locking (FOR UPDATE, FOR SHARE) or writing a life it may not speak for.
-- Every role reads every life. Another role's silent lives are ended by
-- that role's own heartbeats, or by a sweep of stuck-runs' owner or a
-- superuser (the pg_cron job), which row-level security does not bind.
ALTER TABLE stuck_runs_lives ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS stuck_runs_lives_read ON stuck_runs_lives;

CREATE POLICY stuck_runs_lives_read ON stuck_runs_lives FOR SELECT USING (true);

DROP POLICY IF EXISTS stuck_runs_lives_start ON stuck_runs_lives;

CREATE POLICY stuck_runs_lives_start ON stuck_runs_lives FOR INSERT WITH CHECK (true);

DROP POLICY IF EXISTS stuck_runs_lives_own ON stuck_runs_lives;

CREATE POLICY stuck_runs_lives_own ON stuck_runs_lives FOR UPDATE USING (_stuck_runs_may_speak_for(started_by));

CREATE OR REPLACE FUNCTION _stuck_runs_begin_life(instance text, life text) RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    known stuck_runs_lives;
BEGIN
    IF instance IS NULL OR pg_catalog.length(instance) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'stuck_runs_start: instance must be a name of 1 to 200 characters, got %', coalesce(pg_catalog.quote_literal(instance), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF life IS NOT NULL AND pg_catalog.length(life) NOT BETWEEN 8 AND 200 THEN
        RAISE EXCEPTION 'stuck_runs_start: life must be a token of 8 to 200 characters (a fresh UUID per process), got %', pg_catalog.quote_literal(life)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO known FROM stuck_runs_lives AS l WHERE l.life OPERATOR(pg_catalog.=) life;
    IF FOUND THEN
        IF known.instance OPERATOR(pg_catalog.<>) instance THEN
            RAISE EXCEPTION 'stuck_runs_start: life % belongs to instance %, not %', life, known.instance, instance
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NOT _stuck_runs_may_speak_for(known.started_by) THEN
            RAISE EXCEPTION 'stuck_runs_start: life % was started by another role', life
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF known.ended_at IS NOT NULL THEN
            RETURN 'fenced';
        END IF;
        -- The same life again (Next.js re-running register(), start-up code
        -- called twice in one process): nothing ends.
        RETURN _stuck_runs_beat(life);
    END IF;
    PERFORM _stuck_runs_note_timeline();
    IF life IS NOT NULL THEN
        INSERT INTO stuck_runs_lives (life, instance, started_by) VALUES (life, instance, 0);
    END IF;
    -- A new life (or, with life NULL, a deploy announcing one): every earlier
    -- life of the name is over, and its runs are recovered by the sweep that
    -- follows in the same call. A life held by a claim or a progress report
    -- in flight is skipped, not waited for: it is not dead, and if it is, it
    -- falls silent.
    UPDATE stuck_runs_lives AS l
    SET ended_at = pg_catalog.clock_timestamp(), end_reason = 'restarted'
    WHERE l.life IN (SELECT e.life FROM stuck_runs_lives AS e
                     WHERE e.instance OPERATOR(pg_catalog.=) instance AND e.ended_at IS NULL
                       AND e.life OPERATOR(pg_catalog.<>) coalesce(life, '')
                       -- An instance name is its role's: another application
                       -- (or a deploy step run as another role) on the same
                       -- host ends none of this one's lives.
                       AND e.started_by OPERATOR(pg_catalog.=) (SELECT o.oid FROM pg_catalog.pg_roles AS o
                                                                WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
                     FOR UPDATE SKIP LOCKED);
    RETURN 'started';
END
$$;

COMMENT ON FUNCTION _stuck_runs_begin_life(text, text) IS
    'Records a new life of an instance and ends every earlier life of that name the caller may speak for (life NULL: ends them only, for a deploy step that runs before the app). The same life again changes nothing. Returns started, alive or fenced (that life is already over).';

CREATE OR REPLACE FUNCTION _stuck_runs_beat(life text) RETURNS text
LANGUAGE sql VOLATILE
AS $$
    -- One HOT update (no indexed column changes) when the life is alive.
    WITH beat AS (
        UPDATE stuck_runs_lives AS l
        SET heartbeat_at = pg_catalog.clock_timestamp()  -- dated again by the trigger, after any wait
        WHERE l.life OPERATOR(pg_catalog.=) $1 AND l.ended_at IS NULL
          AND _stuck_runs_may_speak_for(l.started_by)
        RETURNING 'alive'::text AS state
    )
    SELECT coalesce((SELECT b.state FROM beat AS b),
                    (SELECT 'fenced'::text FROM stuck_runs_lives AS l
                     WHERE l.life OPERATOR(pg_catalog.=) $1 AND l.ended_at IS NOT NULL),
                    'unknown'::text)
$$;

COMMENT ON FUNCTION _stuck_runs_beat(text) IS
    'Moves a live life''s heartbeat to the database''s clock: alive; fenced when the life is over (its runs were or will be recovered: the process must stop working on them); unknown when this role started no such life.';

CREATE OR REPLACE FUNCTION _stuck_runs_owner_states(end_silent boolean, OUT lives jsonb, OUT dead boolean)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    -- While every instance heartbeats (the usual case) no life is even stale:
    -- one look at the live lives, and nothing is written.
    IF end_silent AND EXISTS (SELECT FROM stuck_runs_lives AS l, stuck_runs_settings AS s
                              WHERE l.ended_at IS NULL
                                AND l.heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.dead_after)) THEN
        -- After a failover every life is stale: the first look dates the new timeline.
        PERFORM _stuck_runs_note_timeline();
        -- Silent lives end here, at the sweep (no clock of the application's).
        -- Finds nothing to write while every instance heartbeats; skips a
        -- life that a claim in flight holds.
        UPDATE stuck_runs_lives AS l
        SET ended_at = pg_catalog.clock_timestamp(), end_reason = 'stopped heartbeating'
        WHERE l.life IN (SELECT e.life FROM stuck_runs_lives AS e
                         WHERE e.ended_at IS NULL AND _stuck_runs_silent(e.life, e.started_by, e.heartbeat_at)
                         FOR UPDATE SKIP LOCKED);
    END IF;
    -- Live lives, and lives ended in the last 15 minutes, whose runs the
    -- sweeps take at once (later, the threshold takes what is left): life ->
    -- 'live' or what ended it. The views (end_silent false) take silent lives
    -- as ended, so they show what the next sweep will do.
    SELECT coalesce(pg_catalog.jsonb_object_agg(l.life, CASE
               WHEN l.ended_at IS NOT NULL THEN pg_catalog.format('instance %s %s', l.instance, l.end_reason)
               WHEN NOT end_silent AND _stuck_runs_silent(l.life, l.started_by, l.heartbeat_at)
               THEN pg_catalog.format('instance %s stopped heartbeating', l.instance)
               ELSE 'live' END), '{}'::jsonb)
        INTO lives
    FROM stuck_runs_lives AS l
    WHERE l.ended_at IS NULL OR l.ended_at OPERATOR(pg_catalog.>) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '15 minutes');
    dead := EXISTS (SELECT FROM pg_catalog.jsonb_each_text(lives) AS e WHERE e.value OPERATOR(pg_catalog.<>) 'live');
END
$$;

COMMENT ON FUNCTION _stuck_runs_owner_states(boolean) IS
    'What the sweep needs to know about owners, as one jsonb: every live life and every life ended in the last 15 minutes, mapped to ''live'' or to why it ended; dead says whether any has ended. With end_silent, first ends the lives that are silent (_stuck_runs_silent).';

CREATE OR REPLACE FUNCTION _stuck_runs_owner_sql(t stuck_runs_tables) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    -- The owner's state for row r, from the lives the caller passed as $5
    -- (jsonb text): 'live', why its life ended, or NULL (no owner, or a life
    -- stuck-runs does not know: the threshold decides). The key '' holds the
    -- state of every owner not listed: absent, or 'live' when the lives could
    -- not be read, so that no owned run is taken on a guess. The owner column
    -- is read through its type's output function, never a cast.
    SELECT pg_catalog.format(
        'CASE WHEN r.%1$I IS NOT NULL THEN coalesce($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) pg_catalog.format(''%%s'', r.%1$I), $5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) '''') END',
        t.owner_column)
$$;

COMMENT ON FUNCTION _stuck_runs_owner_sql(stuck_runs_tables) IS
    'SQL text for the state of row r''s owner (live, why its life ended, or NULL), looked up in the lives passed as parameter $5.';

CREATE OR REPLACE FUNCTION _stuck_runs_recoverable_sql(t stuck_runs_tables, cutoff text, dead boolean) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- "Recover row r now": stuck by the threshold unless its owner is alive,
    -- or (when some life has ended) active with an ended owner, whatever its
    -- idle time. Without dead lives the statement keeps the threshold's index
    -- range; with them it reads every active run, once per death.
    SELECT CASE
        WHEN t.owner_column IS NULL THEN _stuck_runs_stuck_sql(t, cutoff)
        WHEN NOT dead THEN pg_catalog.format('%s AND coalesce(%s, '''') OPERATOR(pg_catalog.<>) ''live''',
                                             _stuck_runs_stuck_sql(t, cutoff), _stuck_runs_owner_sql(t))
        ELSE pg_catalog.format('((%1$s AND coalesce(%2$s, '''') OPERATOR(pg_catalog.<>) ''live'') OR (%3$s AND coalesce(%2$s, ''live'') OPERATOR(pg_catalog.<>) ''live''))',
                               _stuck_runs_stuck_sql(t, cutoff), _stuck_runs_owner_sql(t),
                               _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column),
                                                     t.active_statuses, _stuck_runs_column_type(t.table_name, t.status_column)))
    END
$$;

COMMENT ON FUNCTION _stuck_runs_recoverable_sql(stuck_runs_tables, text, boolean) IS
    'SQL text of "recover row r now", owners included: the threshold for runs without a known live owner, and at once for runs whose owner''s life has ended (lives passed as $5).';

CREATE OR REPLACE FUNCTION _stuck_runs_owned_runs()
RETURNS TABLE (table_name text, run_id text, owner text)
LANGUAGE plpgsql VOLATILE
SET lock_timeout = '2s'  -- see recover_stuck_runs()
AS $$
#variable_conflict use_variable
DECLARE
    t         stuck_runs_tables;
    rows      jsonb;
    lock_wait text := pg_catalog.current_setting('lock_timeout');
BEGIN
    -- Active runs that name an owner, in every covered table with an owner
    -- column, read as each table's owner (its code may run as it is read). A
    -- table that cannot be read (locked, its owner's code not to run as this
    -- role, a read-only transaction) is a WARNING, as in the other views.
    PERFORM _stuck_runs_bound_lock_wait();
    FOR t IN SELECT * FROM _stuck_runs_covered AS c WHERE c.owner_column IS NOT NULL LOOP
        BEGIN
            rows := _stuck_runs_as_owner(t.table_name, pg_catalog.format(
                'SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(%s, pg_catalog.format(''%%s'', r.%I)))'
                ' FROM %s AS r WHERE %s AND r.%I IS NOT NULL',
                _stuck_runs_text_sql(t.id_column), t.owner_column, _stuck_runs_qualified_name(t.table_name),
                _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column),
                                      t.active_statuses, _stuck_runs_column_type(t.table_name, t.status_column)),
                t.owner_column));
            RETURN QUERY SELECT t.table_name::text, e OPERATOR(pg_catalog.->>) 0, e OPERATOR(pg_catalog.->>) 1
                         FROM pg_catalog.jsonb_array_elements(coalesce(rows, '[]'::jsonb)) AS e;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stuck-runs: % was not read: %', t.table_name, SQLERRM
                USING DETAIL = pg_catalog.format('SQLSTATE %s; its runs are not counted.', SQLSTATE);
        END;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', lock_wait, true);
END
$$;

COMMENT ON FUNCTION _stuck_runs_owned_runs() IS
    'Every active run that names an owner, read as each table''s owner; a table that cannot be read is a WARNING and is left out.';

CREATE OR REPLACE FUNCTION stuck_runs_start(
    instance     text,
    life         text     DEFAULT NULL,
    older_than   interval DEFAULT _stuck_runs_threshold(),
    max_runs     integer  DEFAULT NULL,
    max_attempts integer  DEFAULT NULL
) RETURNS SETOF stuck_runs_recovered_run
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
BEGIN
    IF _stuck_runs_begin_life(instance, life) OPERATOR(pg_catalog.=) 'fenced' THEN
        RAISE EXCEPTION 'stuck_runs_start: life % of instance % has already ended, and its runs were taken from it', life, instance
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Each process start needs a life of its own: a fresh UUID, kept for as long as the process lives.';
    END IF;
    -- The earlier lives of the name ended above, in this transaction: the
    -- sweep recovers their runs now, whatever their idle time.
    RETURN QUERY SELECT * FROM recover_stuck_runs(older_than, max_runs, max_attempts);
END
$$;

COMMENT ON FUNCTION stuck_runs_start(text, text, interval, integer, integer) IS
    'The start-up call of an application instance: begins a new life of the instance (a stable name such as a pod or host name; life: a fresh UUID per process, the value its runs'' owner column gets), ends every earlier life of that name, and recovers at once the runs those lives owned, plus what recover_stuck_runs(older_than, max_runs, max_attempts) recovers. Calling it again with the same life changes nothing. With life NULL it only ends the earlier lives (a deploy step that runs before the app).';

CREATE OR REPLACE FUNCTION stuck_runs_heartbeat(life text)
RETURNS TABLE (state text, recovered integer)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    previous timestamptz;
    taken    integer;
BEGIN
    IF life IS NULL OR pg_catalog.length(life) NOT BETWEEN 8 AND 200 THEN
        RAISE EXCEPTION 'stuck_runs_heartbeat: life must be the token its instance started with, got %', coalesce(pg_catalog.quote_literal(life), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l.heartbeat_at INTO previous FROM stuck_runs_lives AS l WHERE l.life OPERATOR(pg_catalog.=) life;
    state := _stuck_runs_beat(life);
    recovered := 0;
    -- A life of this role ended since this one's last heartbeat, or one is
    -- silent: every live instance sweeps once, so a death is acted on within
    -- one heartbeat interval after dead_after, without pg_cron. Nothing another
    -- role does makes this role's heartbeats sweep.
    IF state OPERATOR(pg_catalog.=) 'alive' AND EXISTS (
        SELECT FROM stuck_runs_lives AS m
        WHERE m.life OPERATOR(pg_catalog.<>) life AND _stuck_runs_may_speak_for(m.started_by)
          AND (m.ended_at OPERATOR(pg_catalog.>=) previous
               OR (m.ended_at IS NULL AND _stuck_runs_silent(m.life, m.started_by, m.heartbeat_at)))) THEN
        BEGIN
            -- Batches of 1000 while they come full, up to 10,000 runs: what
            -- is left stays an ended owner's for the next sweeps (a start,
            -- the pg_cron job) for 15 minutes, and the threshold's after.
            FOR batch IN 1..10 LOOP
                SELECT pg_catalog.count(*)::integer INTO taken FROM recover_stuck_runs(max_runs => 1000) AS r;
                recovered := recovered OPERATOR(pg_catalog.+) taken;
                EXIT WHEN taken OPERATOR(pg_catalog.<) 1000;
            END LOOP;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            -- The heartbeat itself stays recorded, whatever the sweep met
            -- (a statement_timeout included): a busy sweep never makes a live
            -- instance look silent.
            RAISE WARNING 'stuck-runs: the heartbeat''s sweep failed: %', SQLERRM
                USING DETAIL = pg_catalog.format('SQLSTATE %s; the heartbeat was recorded.', SQLSTATE);
            recovered := NULL;
        END;
        -- Said after the sweep: never alive for a life that has just ended.
        state := _stuck_runs_beat(life);
    END IF;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION stuck_runs_heartbeat(text) IS
    'Called by a live instance every few seconds (well under dead_after): records the heartbeat of its life (one HOT update) and says whether the life is alive, fenced (it has ended: its runs were or will be recovered, so the process must stop working on them) or unknown. When a life of the same role has ended since its last heartbeat, or is silent, it also sweeps (at most 1000 runs) and says how many runs it recovered (NULL: the sweep failed, with a WARNING).';

CREATE OR REPLACE FUNCTION _stuck_runs_hold_life(life text) RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    -- FOR KEY SHARE: ending this life (a key update) waits for the write it
    -- guards to commit, or skips the life; a heartbeat does not wait.
    SELECT coalesce((SELECT true FROM stuck_runs_lives AS l
                     WHERE l.life OPERATOR(pg_catalog.=) $1 AND l.ended_at IS NULL
                       AND _stuck_runs_may_speak_for(l.started_by)
                     FOR KEY SHARE), false)
$$;

COMMENT ON FUNCTION _stuck_runs_hold_life(text) IS
    'Whether a life is alive (and this role may speak for it), holding it so until the transaction ends: no sweep can end it in between.';

CREATE OR REPLACE FUNCTION _stuck_runs_owned_table(in_table regclass, caller text) RETURNS stuck_runs_tables
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_variable
DECLARE
    t stuck_runs_tables;
BEGIN
    SELECT * INTO t FROM _stuck_runs_covered AS c WHERE c.table_name OPERATOR(pg_catalog.=) in_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION '%: % is not a runs table stuck-runs covers', caller, coalesce(in_table::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF t.owner_column IS NULL THEN
        RAISE EXCEPTION '%: % has no owner column', caller, in_table
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Adopt it with one: stuck-runs migrate --adopt TABLE --column owner=COLUMN.';
    END IF;
    RETURN t;
END
$$;

COMMENT ON FUNCTION _stuck_runs_owned_table(regclass, text) IS
    'The registry entry of a covered table with an owner column, or a clear error for the claim and progress functions.';

CREATE OR REPLACE FUNCTION stuck_runs_claim(in_table regclass, run_id text, life text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    t stuck_runs_tables := _stuck_runs_owned_table(in_table, 'stuck_runs_claim');
BEGIN
    IF run_id IS NULL OR life IS NULL THEN
        RAISE EXCEPTION 'stuck_runs_claim: run_id and life must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT _stuck_runs_hold_life(life) THEN
        RETURN false;  -- fenced (or never started): nothing is written
    END IF;
    -- The column must give the token back as it was given (a uuid column
    -- writes upper case or braces its own way), or nothing would match it.
    IF (_stuck_runs_as_owner(t.table_name, pg_catalog.format('SELECT pg_catalog.to_jsonb(pg_catalog.format(''%%s'', $5::%s))',
            pg_catalog.format_type(_stuck_runs_column_type(t.table_name, t.owner_column), NULL)), value => life)
        OPERATOR(pg_catalog.->>) 0) IS DISTINCT FROM life THEN
        RAISE EXCEPTION 'stuck_runs_claim: column % of % does not hold the life token % as it is', t.owner_column, t.table_name, life
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the token as the column prints it (a uuid column: lower case, no braces).';
    END IF;
    RETURN (_stuck_runs_as_owner(t.table_name, pg_catalog.format(
        'WITH claimed AS (UPDATE %1$s AS r SET %2$I = ($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) ''life'')::%3$s, %4$I = %5$s'
        ' WHERE r.%6$I OPERATOR(pg_catalog.=) ($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) ''run'')::%7$s AND %8$s'
        ' AND (r.%2$I IS NULL OR pg_catalog.format(''%%s'', r.%2$I) OPERATOR(pg_catalog.=) ($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) ''life''))'
        ' RETURNING 1) SELECT pg_catalog.to_jsonb(pg_catalog.count(*) OPERATOR(pg_catalog.>) 0) FROM claimed',
        _stuck_runs_qualified_name(t.table_name), t.owner_column,
        pg_catalog.format_type(_stuck_runs_column_type(t.table_name, t.owner_column), NULL),
        t.updated_at_column, _stuck_runs_now_sql(t, t.updated_at_column),
        t.id_column, pg_catalog.format_type(_stuck_runs_column_type(t.table_name, t.id_column), NULL),
        _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column),
                              t.active_statuses, _stuck_runs_column_type(t.table_name, t.status_column))),
        value => pg_catalog.jsonb_build_object('run', run_id, 'life', life)::text))::text::boolean;
END
$$;

COMMENT ON FUNCTION stuck_runs_claim(regclass, text, text) IS
    'Makes a live life the owner of an active run that has no owner (or already has this one), and marks it alive: true. False, writing nothing, when the life has ended (fenced), the run is not active, or another life owns it. Written as the table''s owner.';

CREATE OR REPLACE FUNCTION stuck_runs_progress(
    in_table  regclass,
    run_id    text,
    life      text,
    completed integer DEFAULT NULL,
    total     integer DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    t stuck_runs_tables := _stuck_runs_owned_table(in_table, 'stuck_runs_progress');
BEGIN
    IF run_id IS NULL OR life IS NULL THEN
        RAISE EXCEPTION 'stuck_runs_progress: run_id and life must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF completed OPERATOR(pg_catalog.<) 0 OR total OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'stuck_runs_progress: completed and total must be 0 or more, got % and %',
            coalesce(completed::text, 'NULL'), coalesce(total::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT _stuck_runs_hold_life(life) THEN
        RETURN false;
    END IF;
    RETURN (_stuck_runs_as_owner(t.table_name, pg_catalog.format(
        'WITH moved AS (UPDATE %1$s AS r SET %2$I = %3$s%4$s%5$s'
        ' WHERE r.%6$I OPERATOR(pg_catalog.=) ($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) ''run'')::%7$s AND %8$s'
        ' AND pg_catalog.format(''%%s'', r.%9$I) OPERATOR(pg_catalog.=) ($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) ''life'')'
        ' RETURNING 1) SELECT pg_catalog.to_jsonb(pg_catalog.count(*) OPERATOR(pg_catalog.>) 0) FROM moved',
        _stuck_runs_qualified_name(t.table_name), t.updated_at_column, _stuck_runs_now_sql(t, t.updated_at_column),
        CASE WHEN t.completed_column IS NULL THEN ''
             ELSE pg_catalog.format(', %1$I = coalesce($2, r.%1$I)', t.completed_column) END,
        CASE WHEN t.total_column IS NULL THEN ''
             ELSE pg_catalog.format(', %1$I = coalesce($3, r.%1$I)', t.total_column) END,
        t.id_column, pg_catalog.format_type(_stuck_runs_column_type(t.table_name, t.id_column), NULL),
        _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column),
                              t.active_statuses, _stuck_runs_column_type(t.table_name, t.status_column)),
        t.owner_column),
        max_runs => completed, max_attempts => total,
        value => pg_catalog.jsonb_build_object('run', run_id, 'life', life)::text))::text::boolean;
END
$$;

COMMENT ON FUNCTION stuck_runs_progress(regclass, text, text, integer, integer) IS
    'A sign of life (and, when given, progress) for a run from the life that owns it: true. False, writing nothing, once the life has ended or the run was recovered or finished: a zombie''s late write never undoes a recovery. Written as the table''s owner.';

CREATE OR REPLACE FUNCTION _stuck_runs_instances()
RETURNS TABLE (instance text, life text, state text, started_at timestamptz, heartbeat_at timestamptz,
               ended_at timestamptz, end_reason text)
LANGUAGE sql VOLATILE
AS $$
    SELECT l.instance, l.life,
           CASE WHEN l.ended_at IS NOT NULL THEN 'ended'
                WHEN _stuck_runs_silent(l.life, l.started_by, l.heartbeat_at) THEN 'silent'
                ELSE 'live' END,
           l.started_at, l.heartbeat_at, l.ended_at, l.end_reason
    FROM stuck_runs_lives AS l
    WHERE l.ended_at IS NULL OR l.ended_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '1 day')
$$;

COMMENT ON FUNCTION _stuck_runs_instances() IS
    'The live lives and those that ended in the last day, for the stuck_runs_instances view.';

CREATE OR REPLACE VIEW stuck_runs_instances AS
SELECT i.instance, i.life, i.state, i.started_at, i.heartbeat_at,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) i.heartbeat_at AS silent_for,
       i.ended_at, i.end_reason, coalesce(o.runs, 0)::integer AS active_runs
FROM _stuck_runs_instances() AS i
LEFT JOIN (SELECT w.owner, pg_catalog.count(*) AS runs FROM _stuck_runs_owned_runs() AS w GROUP BY w.owner) AS o
       ON o.owner OPERATOR(pg_catalog.=) i.life
ORDER BY i.instance, i.started_at DESC;

COMMENT ON VIEW stuck_runs_instances IS
    'Application instances and their lives: live, silent (no heartbeat for dead_after: the next sweep ends it) or ended, with their last heartbeat by the database''s clock and how many active runs each owns: what `stuck-runs instances` prints.';

-- from sql/99_hardening.sql
CREATE OR REPLACE FUNCTION stuck_runs_instance_grant_sql(role_name text) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    -- What an application instance that owns its runs tables needs to start,
    -- heartbeat, claim and report progress, and to recover its own tables at
    -- start-up: stuck-runs' schema, functions, settings, registry and views
    -- (read), the audit (append), the lives and timelines. No other
    -- application's table: a role that owns an adopted table is not trusted
    -- with another's.
    SELECT pg_catalog.format('GRANT USAGE ON SCHEMA %s TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT pg_catalog.format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA %s TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT pg_catalog.format('GRANT SELECT ON %1$s.stuck_runs_settings, %1$s.stuck_runs_tables, %1$s.stuck_runs_roles, %1$s._stuck_runs_covered, %1$s.active_runs, %1$s.stuck_runs, %1$s.stuck_runs_instances TO %2$I',
                  _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT pg_catalog.format('GRANT SELECT, INSERT ON %s.run_recoveries TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    -- The lives' trigger decides which lives a role may keep alive or end.
    -- UPDATE of columns only: the table's UPDATE would let a role LOCK it.
    SELECT pg_catalog.format('GRANT SELECT, INSERT, UPDATE (heartbeat_at, alive_since, ended_at, end_reason) ON %s.stuck_runs_lives TO %I',
                  _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT pg_catalog.format('GRANT SELECT, INSERT ON %s.stuck_runs_timelines TO %I', _stuck_runs_schema(), role_name)
$$;

COMMENT ON FUNCTION stuck_runs_instance_grant_sql(text) IS
    'The exact GRANT statements an application instance''s role (the owner of its runs tables) needs to start lives, heartbeat, claim, report progress and recover its own tables, and nothing of other applications: SELECT * FROM stuck_runs_instance_grant_sql(''app'').';

CREATE OR REPLACE FUNCTION stuck_runs_grant_sql(role_name text) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    -- Everything `stuck-runs recover`, `list` and `resume` (and the pg_cron job)
    -- touch, and nothing more: what an instance needs, plus each covered
    -- table (read and update) and its schema.
    SELECT * FROM stuck_runs_instance_grant_sql(role_name)
    UNION ALL
    SELECT * FROM (
        SELECT pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, role_name)
        FROM stuck_runs_tables AS t
        JOIN pg_class AS c ON c.oid OPERATOR(pg_catalog.=) t.table_name
        JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE n.oid OPERATOR(pg_catalog.<>) _stuck_runs_schema()::regnamespace
        GROUP BY n.nspname
        ORDER BY n.nspname) AS schemas
    UNION ALL
    SELECT * FROM (
        SELECT pg_catalog.format('GRANT SELECT, UPDATE ON %s TO %I', _stuck_runs_qualified_name(t.table_name), role_name)
        FROM stuck_runs_tables AS t
        WHERE EXISTS (SELECT FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name)
        ORDER BY t.table_name::text) AS tables
$$;

COMMENT ON FUNCTION stuck_runs_grant_sql(text) IS
    'The exact GRANT statements a role needs to recover, list and resume runs in every covered table (and everything stuck_runs_instance_grant_sql() gives an application instance), with stuck-runs (run them as the owner): SELECT * FROM stuck_runs_grant_sql(''app'').';

-- Grants carried over: adopters keep adopting; roles that recovered may start lives,
-- heartbeat, claim, report progress, and read the instances.
DO $grants$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT x.grantee::regrole::text AS grantee, x.routine FROM _stuck_runs_0006_grants AS x LOOP
        IF g.routine OPERATOR(pg_catalog.=) 'adopt_runs_table' THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION adopt_runs_table(regclass, text, text, text, text, text, text, text, text, text[], text, text, text, text) TO %s', g.grantee);
        ELSE
            EXECUTE pg_catalog.format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA %s TO %s', _stuck_runs_schema(), g.grantee);
            EXECUTE pg_catalog.format('GRANT SELECT ON stuck_runs_instances TO %s', g.grantee);
            EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE (heartbeat_at, alive_since, ended_at, end_reason) ON stuck_runs_lives TO %s', g.grantee);
            EXECUTE pg_catalog.format('GRANT SELECT, INSERT ON stuck_runs_timelines TO %s', g.grantee);
        END IF;
    END LOOP;
END
$grants$;

-- The views read _stuck_runs_list(interval, interval) now.
DROP FUNCTION _stuck_runs_list(interval);

-- A DO block: yoyo would print a SELECT's result.
DO $harden$ BEGIN PERFORM stuck_runs_harden(); END $harden$;
