-- 0003: stuck-runs beside the application.
--   * The registry remembers each table's name and the zone its timestamp
--     columns are written in; only a table's owner may register it.
--   * One table that cannot be swept no longer stops the others (a WARNING names it).
--   * Signs of life written by stuck-runs are dated with clock_timestamp().
--   * recover_stuck_runs() returns the status each run now has.
--   * New functions: report coverage problems, print the GRANTs a role needs and the
--     pg_cron job's statement; hardening is one function, stuck_runs_harden().
--   * Column roles are data (stuck_runs_roles); private helpers are named _stuck_runs_*.
-- Landed migrations are immutable (tests/test_migrations.py checks their checksums).
-- depends: 0002_retries

ALTER TABLE stuck_runs_tables
    ADD COLUMN schema_name   text,
    ADD COLUMN relation_name text,
    ADD COLUMN time_zone     text NOT NULL DEFAULT 'UTC';
UPDATE stuck_runs_tables AS t
SET schema_name = n.nspname, relation_name = c.relname
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = t.table_name;
COMMENT ON TABLE stuck_runs_tables IS
    'Runs tables that recovery covers, with their column names. Write it through adopt_runs_table(), which validates the mapping and checks that the caller owns the table. managed marks the qualification_runs table that stuck-runs created itself.';
COMMENT ON COLUMN stuck_runs_tables.relation_name IS
    'The table''s name when it was adopted (with schema_name): an ORM that drops and re-creates the table gives it a new oid, and the name is how the stale entry is reported and replaced.';
COMMENT ON COLUMN stuck_runs_tables.time_zone IS
    'The zone in which the application writes its timestamp without time zone columns (UTC for Prisma); unused for timestamptz columns.';

-- The built-in table's signs of life are now dated when written (see its trigger).
DO $comment$
BEGIN
    IF to_regclass(format('%I.qualification_runs', current_schema())) IS NOT NULL THEN
        COMMENT ON COLUMN qualification_runs.updated_at IS
            'Last sign of life of the run. Any update that leaves the run PENDING or PROCESSING moves it to clock_timestamp() unless the update sets it itself; recovery (a move to FAILED) leaves it as it was.';
    END IF;
END
$comment$;

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
     '{attempts,attempt,attemptcount,retries,retrycount}', '{attempt,retr}', 9)
ON CONFLICT (role) DO NOTHING;

CREATE OR REPLACE FUNCTION _stuck_runs_column_type(table_name regclass, column_name text)
RETURNS regtype
LANGUAGE sql STABLE
AS $$
    SELECT a.atttypid::regtype
    FROM pg_attribute AS a
    WHERE a.attrelid = table_name AND a.attname = column_name
      AND a.attnum > 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION _stuck_runs_column_type(regclass, text) IS
    'The type of a column, or NULL when the table has no such column: the one catalog lookup adoption and the sweeps share.';

CREATE OR REPLACE FUNCTION _stuck_runs_column_kind(column_type regtype) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN column_type IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN 'time'
        WHEN column_type IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) THEN 'count'
        WHEN column_type IN ('text'::regtype, 'varchar'::regtype) THEN 'text'
        WHEN EXISTS (SELECT FROM pg_type AS ty WHERE ty.oid = column_type AND ty.typtype = 'e') THEN 'status'
        ELSE 'other'
    END
$$;
COMMENT ON FUNCTION _stuck_runs_column_kind(regtype) IS
    'What a column of this type can hold, in stuck_runs_roles.kind terms (an enum is a status; text can be a status too).';

CREATE OR REPLACE FUNCTION _stuck_runs_fits(kind text, column_type regtype) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT kind = 'any' OR _stuck_runs_column_kind(column_type) = kind
           OR (kind = 'status' AND _stuck_runs_column_kind(column_type) = 'text')
$$;
COMMENT ON FUNCTION _stuck_runs_fits(text, regtype) IS
    'Whether a column of this type can play a role of this kind: the one rule adoption, the proposal and the coverage report share.';

CREATE OR REPLACE FUNCTION _stuck_runs_qualified_name(table_name regclass) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = table_name
$$;
COMMENT ON FUNCTION _stuck_runs_qualified_name(regclass) IS
    'schema.table, both quoted: how built statements name a table, whatever search_path runs them.';

CREATE OR REPLACE FUNCTION _stuck_runs_literals(vals text[]) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT string_agg(quote_literal(v), ', ' ORDER BY o) FROM unnest(vals) WITH ORDINALITY AS x(v, o) $$;
COMMENT ON FUNCTION _stuck_runs_literals(text[]) IS
    'A status list as quoted literals for IN (...): the planner matches a partial index only against literal values.';

CREATE OR REPLACE FUNCTION _stuck_runs_index_name(table_name regclass) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- PostgreSQL cuts names at 63 bytes, which would give two tables with a long
    -- common prefix one index name (and a multibyte name none that matches):
    -- a long name keeps what fits and adds a hash of the whole name.
    SELECT CASE
               WHEN octet_length(c.relname || '_stuck_runs_idx') <= 63 THEN c.relname || '_stuck_runs_idx'
               ELSE (SELECT left(c.relname, n) FROM generate_series(char_length(c.relname), 0, -1) AS n
                     WHERE octet_length(left(c.relname, n)) <= 38 LIMIT 1)
                    || '_' || left(md5(c.relname), 8) || '_stuck_runs_idx'
           END
    FROM pg_class AS c WHERE c.oid = table_name
$$;
COMMENT ON FUNCTION _stuck_runs_index_name(regclass) IS
    'Name of the partial index that keeps sweeps of a runs table cheap: the table''s name plus _stuck_runs_idx, shortened with a hash when that would not fit in 63 bytes.';

CREATE OR REPLACE FUNCTION stuck_runs_index_ddl(table_name regclass) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    WITH target AS (
        SELECT t.*, n.nspname, c.relname, _stuck_runs_index_name(t.table_name) AS index_name,
               (SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
                WHERE i.indrelid = t.table_name AND ic.relname = _stuck_runs_index_name(t.table_name)
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
                  _stuck_runs_literals(x.active_statuses))
    FROM target AS x WHERE x.valid IS DISTINCT FROM true
$$;
COMMENT ON FUNCTION stuck_runs_index_ddl(regclass) IS
    'The statements that give an adopted table its sweep index, in order; none when the index exists. Returned, not run: CONCURRENTLY cannot run inside a function''s transaction, and a plain CREATE INDEX would block the application''s writes.';

CREATE OR REPLACE FUNCTION _stuck_runs_may_adopt(table_name regclass) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    -- The rule of ALTER TABLE and CREATE INDEX: the owner, a member of the
    -- owning role, or a superuser. Whatever the caller may read or write.
    SELECT pg_has_role(current_user, c.relowner, 'USAGE')
    FROM pg_class AS c WHERE c.oid = table_name
$$;
COMMENT ON FUNCTION _stuck_runs_may_adopt(regclass) IS
    'Whether the current role may have recovery write to a table: only its owner may, as for CREATE INDEX; otherwise a role could point a superuser''s recovery at any table.';

CREATE OR REPLACE FUNCTION _stuck_runs_tables_check() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT coalesce(_stuck_runs_may_adopt(NEW.table_name), false) THEN
        RAISE EXCEPTION 'stuck-runs: only the owner of % may register it for recovery', NEW.table_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION _stuck_runs_tables_check() IS
    'Guards every write to the registry, not only adopt_runs_table(): a role with INSERT on stuck_runs_tables still cannot get a table it does not own swept.';

DROP TRIGGER IF EXISTS _stuck_runs_tables_check ON stuck_runs_tables;
CREATE TRIGGER _stuck_runs_tables_check BEFORE INSERT OR UPDATE ON stuck_runs_tables
    FOR EACH ROW EXECUTE FUNCTION _stuck_runs_tables_check();

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
    time_zone           text   DEFAULT 'UTC'
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
        SELECT FROM pg_class AS c WHERE c.oid = table_name AND c.relkind IN ('r', 'p')
    ) THEN
        RAISE EXCEPTION 'adopt_runs_table: % is not a table', coalesce(table_name::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Its sweep index could not be built CONCURRENTLY, and every migrate would
    -- fail trying: refused up front instead.
    IF EXISTS (SELECT FROM pg_class AS c WHERE c.oid = table_name AND c.relkind = 'p') THEN
        RAISE EXCEPTION 'adopt_runs_table: % is a partitioned table, which stuck-runs does not cover yet', table_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Adopt each partition instead: they are tables of their own.';
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

    FOR col IN
        SELECT r.parameter AS role, r.required, r.kind, to_jsonb(entry) ->> r.parameter AS name
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

    SELECT to_jsonb(entry) ->> r.parameter INTO wanted
    FROM stuck_runs_roles AS r
    WHERE to_jsonb(entry) ->> r.parameter IS NOT NULL
    GROUP BY 1 HAVING count(*) > 1
    LIMIT 1;
    IF wanted IS NOT NULL THEN
        RAISE EXCEPTION 'adopt_runs_table: column "%" is given for two roles; each role needs a column of its own', wanted
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT a.atttypmod - 4 INTO max_len
    FROM pg_attribute AS a
    WHERE a.attrelid = table_name AND a.attname = error_column AND a.atttypmod > 0;
    IF max_len < 255 THEN
        RAISE EXCEPTION 'adopt_runs_table: column "%" (given as error_column) holds at most % characters; recovery''s message needs up to 255', error_column, max_len
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map a wider column, or none (error_column => NULL).';
    END IF;

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
    WHERE e.enumtypid = _stuck_runs_column_type(table_name, status_column);
    IF labels IS NOT NULL THEN
        FOREACH wanted IN ARRAY active_statuses || failed_status LOOP
            IF NOT wanted = ANY (labels) THEN
                RAISE EXCEPTION 'adopt_runs_table: status "%" is not a value of the enum % of column "%"',
                    wanted, _stuck_runs_column_type(table_name, status_column), status_column
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Its values are: %s.', array_to_string(labels, ', '));
            END IF;
        END LOOP;
    END IF;

    -- A CHECK constraint on the status column alone must allow every status
    -- recovery writes (or reads): try each value against its expression.
    FOR col IN
        SELECT con.conname, pg_get_expr(con.conbin, con.conrelid) AS expr
        FROM pg_constraint AS con
        JOIN pg_attribute AS a ON a.attrelid = con.conrelid AND a.attname = status_column
        WHERE con.conrelid = table_name AND con.contype = 'c' AND con.conkey = ARRAY[a.attnum]
    LOOP
        FOREACH wanted IN ARRAY active_statuses || failed_status LOOP
            EXECUTE format('SELECT %s FROM (SELECT $1::%s AS %I) AS r', col.expr,
                           _stuck_runs_column_type(table_name, status_column), status_column)
                INTO allowed USING wanted;
            IF allowed = false THEN
                RAISE EXCEPTION 'adopt_runs_table: status "%" is not allowed by the CHECK constraint % of %',
                    wanted, col.conname, table_name
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('The constraint reads: %s.', col.expr);
            END IF;
        END LOOP;
    END LOOP;

    BEGIN
        PERFORM now() AT TIME ZONE time_zone;
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
    WHERE NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid = t.table_name)
      AND (t.schema_name, t.relation_name) = (
          SELECT n.nspname::text, c.relname::text
          FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
          WHERE c.oid = table_name);

    SELECT n.nspname::text, c.relname::text INTO entry.schema_name, entry.relation_name
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = table_name;
    entry.adopted_at := now();
    DELETE FROM stuck_runs_tables AS t WHERE t.table_name = entry.table_name
    RETURNING t.managed INTO entry.managed;
    entry.managed := coalesce(entry.managed, false);
    INSERT INTO stuck_runs_tables SELECT (entry).*;

    -- 'processing' is not 'PROCESSING': when a sample of the table holds rows
    -- and none has any status we were told about, say what it does hold.
    EXECUTE format('SELECT array_agg(DISTINCT s ORDER BY s), bool_or(s = ANY ($1))'
                   ' FROM (SELECT r.%I::text AS s FROM %s AS r LIMIT 10000) AS sample',
                   status_column, _stuck_runs_qualified_name(table_name))
        INTO labels, allowed USING active_statuses || failed_status;
    IF labels IS NOT NULL AND NOT allowed THEN
        RAISE WARNING 'stuck-runs: no row of % has status %; its rows have: %',
            table_name, array_to_string(active_statuses || failed_status, ', '),
            array_to_string(labels[1:10], ', ')
            USING HINT = 'Statuses are compared exactly, case included: give --active-statuses and --failed-status as the table spells them.';
    END IF;

    IF EXISTS (SELECT FROM stuck_runs_index_ddl(table_name)) THEN
        RAISE NOTICE 'stuck-runs: % has no index for sweeps yet; run outside a transaction: %',
            table_name, (SELECT string_agg(d, '; ') FROM stuck_runs_index_ddl(table_name) AS d);
    END IF;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION adopt_runs_table(regclass, text, text, text, text, text, text, text, text, text[], text, text, text) IS
    'Registers (or re-maps) a runs table so recovery covers it: which column plays which role, which statuses are active and which one means failed, and in which zone the application writes timestamp without time zone columns. Only the table''s owner may adopt it. Validates everything up front (SQLSTATE 22023 naming the column or value) so a sweep never meets a bad mapping. Never alters the table; see stuck_runs_index_ddl() for its index.';

CREATE OR REPLACE FUNCTION unadopt_runs_table(table_name regclass, drop_index boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    qualified text;
BEGIN
    DELETE FROM stuck_runs_tables AS t WHERE t.table_name = unadopt_runs_table.table_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Only the index adoption made, on this very table, whatever its name says.
    SELECT format('%I.%I', n.nspname, ic.relname) INTO qualified
    FROM pg_index AS i
    JOIN pg_class AS ic ON ic.oid = i.indexrelid
    JOIN pg_namespace AS n ON n.oid = ic.relnamespace
    WHERE i.indrelid = table_name AND ic.relname = _stuck_runs_index_name(table_name);
    IF qualified IS NOT NULL THEN
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

CREATE OR REPLACE FUNCTION _stuck_runs_resolve_table(name text, app_schema text) RETURNS regclass
LANGUAGE sql STABLE
AS $$
    -- A name as a person writes it (qualification_runs, "QualificationRun",
    -- app.runs): unqualified names are looked up in the application's schema,
    -- never along a search path.
    SELECT c.oid::regclass
    FROM (SELECT parse_ident(name) AS parts) AS p
    JOIN pg_namespace AS n
      ON n.nspname = CASE cardinality(p.parts) WHEN 1 THEN app_schema ELSE p.parts[1] END
    JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = p.parts[cardinality(p.parts)]
    WHERE cardinality(p.parts) IN (1, 2)
$$;
COMMENT ON FUNCTION _stuck_runs_resolve_table(text, text) IS
    'The table a user named on the command line, unqualified names in the application''s schema (Prisma''s ?schema=); NULL when there is none.';

CREATE OR REPLACE FUNCTION _stuck_runs_mapping_problem(t stuck_runs_tables) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid = t.table_name)
        THEN format('%s was dropped (or dropped and re-created): recovery no longer covers it; adopt it again',
                    coalesce(format('%I.%I', t.schema_name, t.relation_name), t.table_name::oid::text))
        ELSE (SELECT format('%s no longer fits its mapping: column "%s" (%s) %s; adopt it again',
                            t.table_name, m.name, r.role,
                            CASE WHEN m.type IS NULL THEN 'is gone'
                                 ELSE format('is now of type %s', m.type) END)
              FROM stuck_runs_roles AS r
              CROSS JOIN LATERAL (
                  SELECT to_jsonb(t) ->> r.parameter AS name,
                         _stuck_runs_column_type(t.table_name, to_jsonb(t) ->> r.parameter) AS type
              ) AS m
              WHERE m.name IS NOT NULL AND (m.type IS NULL OR NOT _stuck_runs_fits(r.kind, m.type))
              ORDER BY r.position
              LIMIT 1)
    END
$$;
COMMENT ON FUNCTION _stuck_runs_mapping_problem(stuck_runs_tables) IS
    'Why a registered table can no longer be swept (dropped, a mapped column gone), or NULL when it can.';

CREATE OR REPLACE FUNCTION stuck_runs_coverage_problems(app_schema text DEFAULT 'public')
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(format('%I.%I', t.schema_name, t.relation_name), t.table_name::oid::text),
           _stuck_runs_mapping_problem(t)
    FROM stuck_runs_tables AS t
    WHERE _stuck_runs_mapping_problem(t) IS NOT NULL
    UNION ALL
    SELECT c.oid::regclass::text,
           format('%s exists but recovery does not cover it: adopt it (stuck-runs migrate --adopt %s)',
                  c.oid::regclass, c.relname)
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = app_schema AND c.relname = 'qualification_runs' AND c.relkind IN ('r', 'p')
      AND NOT EXISTS (SELECT FROM stuck_runs_tables AS t WHERE t.table_name = c.oid)
    ORDER BY 1
$$;
COMMENT ON FUNCTION stuck_runs_coverage_problems(text) IS
    'What recovery silently misses: registered tables that are gone or no longer fit their mapping, and a qualification_runs in the application''s schema that nothing covers. The runner prints one warning per row at every recover and list.';

CREATE OR REPLACE FUNCTION propose_runs_table_mapping(table_name regclass)
RETURNS TABLE (role text, column_name text)
LANGUAGE sql STABLE
AS $$
    -- Match roles to columns by their normalised names (created_at ~ createdAt ~
    -- created), preferring exact synonyms in order, then name prefixes
    -- (processedProspects, totalProspects), and only columns of a fitting type.
    WITH roles AS (
        SELECT r.parameter AS role, r.synonyms, r.prefixes, r.kind, r.position AS ord
        FROM stuck_runs_roles AS r
    ), cols AS (
        SELECT a.attname::text AS name,
               lower(regexp_replace(a.attname, '[^[:alnum:]]', '', 'g')) AS norm,
               a.atttypid AS type
        FROM pg_attribute AS a
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
          AND _stuck_runs_fits(r.kind, c.type::regtype)
        ORDER BY m.rank, c.name
        LIMIT 1)
    FROM roles AS r
    ORDER BY r.ord
$$;
COMMENT ON FUNCTION propose_runs_table_mapping(regclass) IS
    'A guess at adopt_runs_table()''s column arguments for a table, by name and type; NULL where nothing fits. `stuck-runs adopt` shows it and asks before adopting.';

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
        attempts        integer
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
    SELECT CASE _stuck_runs_column_type(t.table_name, column_name)
               WHEN 'timestamp'::regtype THEN format('(r.%I AT TIME ZONE %L)', column_name, t.time_zone)
               ELSE format('r.%I', column_name)
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
    SELECT CASE _stuck_runs_column_type(t.table_name, column_name)
               WHEN 'timestamp'::regtype THEN format('(clock_timestamp() AT TIME ZONE %L)', t.time_zone)
               ELSE 'clock_timestamp()' END
$$;
COMMENT ON FUNCTION _stuck_runs_now_sql(stuck_runs_tables, text) IS
    'SQL text for the current time as a time column stores it: wall-clock time in the table''s zone for timestamp without time zone.';

CREATE OR REPLACE FUNCTION _stuck_runs_count_sql(column_name text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN column_name IS NULL THEN 'NULL::integer' ELSE format('r.%I::integer', column_name) END
$$;
COMMENT ON FUNCTION _stuck_runs_count_sql(text) IS
    'SQL text reading an optional integer column (completed, total, attempts) of row r, or NULL when the table has none.';

CREATE OR REPLACE FUNCTION _stuck_runs_touched_sql(t stuck_runs_tables) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- A run whose updated_at is NULL has shown no sign of life since it was created.
    SELECT CASE WHEN a.attnotnull THEN _stuck_runs_time_sql(t, t.updated_at_column)
                ELSE format('coalesce(%s, %s)', _stuck_runs_time_sql(t, t.updated_at_column),
                            _stuck_runs_time_sql(t, t.created_at_column)) END
    FROM pg_attribute AS a
    WHERE a.attrelid = t.table_name AND a.attname = t.updated_at_column
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
    SELECT format('r.%I IN (%s) AND (r.%I < %s%s)',
                  t.status_column, _stuck_runs_literals(t.active_statuses), t.updated_at_column,
                  CASE WHEN u.atttypid = 'timestamp'::regtype
                       THEN format('(%s AT TIME ZONE %L)', cutoff, t.time_zone) ELSE cutoff END,
                  CASE WHEN u.attnotnull THEN ''
                       ELSE format(' OR (r.%I IS NULL AND r.%I < %s)',
                                   t.updated_at_column, t.created_at_column,
                                   CASE WHEN c.atttypid = 'timestamp'::regtype
                                        THEN format('(%s AT TIME ZONE %L)', cutoff, t.time_zone)
                                        ELSE cutoff END) END)
    FROM pg_attribute AS u, pg_attribute AS c
    WHERE u.attrelid = t.table_name AND u.attname = t.updated_at_column
      AND c.attrelid = t.table_name AND c.attname = t.created_at_column
$$;
COMMENT ON FUNCTION _stuck_runs_stuck_sql(stuck_runs_tables, text) IS
    'SQL text of the condition "row r is stuck": active and no sign of life since the cutoff (a timestamptz expression such as $1).';

CREATE OR REPLACE FUNCTION stuck_runs_sweep_sql(t stuck_runs_tables) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    -- Parameters of the statement: $1 cutoff (timestamptz), $2 limit,
    -- $3 max_attempts, $4 older_than.
    qualified   text := _stuck_runs_qualified_name(t.table_name);
    status_type text := _stuck_runs_column_type(t.table_name, t.status_column)::text;
    requeue     text := CASE WHEN t.attempts_column IS NULL THEN 'false'
                             ELSE format('coalesce(r.%I < $3, false)', t.attempts_column) END;
    error_len   integer;
    message     text;
    sets        text[];
BEGIN
    SELECT a.atttypmod - 4 INTO error_len
    FROM pg_attribute AS a
    WHERE a.attrelid = t.table_name AND a.attname = t.error_column AND a.atttypmod > 0;
    -- Never NULL, whatever the progress columns hold; cut to the column's width.
    message := format(
        $msg$left('Recovered as stuck by stuck-runs: ' || c.status || ' with no sign of life for ' || coalesce(CASE WHEN isfinite(c.touched) THEN date_trunc('second', now() - c.touched)::text END, 'an unknown time') || ' (threshold ' || $4::text || ')' || %s, %s)$msg$,
        CASE WHEN t.completed_column IS NULL OR t.total_column IS NULL
             THEN $msg$'. Partial progress was kept.'$msg$
             ELSE format($msg$'. Partial progress (' || coalesce(r.%I::text, '?') || '/' || coalesce(r.%I::text, '?') || ') was kept.'$msg$,
                         t.completed_column, t.total_column) END,
        coalesce(error_len, 1000));
    sets := ARRAY[
        format('%I = CASE WHEN %s THEN %L::%s ELSE %L::%s END',
               t.status_column, requeue, t.active_statuses[1], status_type, t.failed_status, status_type),
        format('%I = CASE WHEN %s THEN %s ELSE r.%I END',
               t.updated_at_column, requeue, _stuck_runs_now_sql(t, t.updated_at_column),
               t.updated_at_column)];
    IF t.attempts_column IS NOT NULL THEN
        sets := sets || format('%I = CASE WHEN %s THEN r.%I + 1 ELSE r.%I END',
                               t.attempts_column, requeue, t.attempts_column, t.attempts_column);
    END IF;
    IF t.completed_at_column IS NOT NULL THEN
        sets := sets || format('%I = CASE WHEN %s THEN r.%I ELSE %s END',
            t.completed_at_column, requeue, t.completed_at_column,
            _stuck_runs_now_sql(t, t.completed_at_column));
    END IF;
    IF t.error_column IS NOT NULL THEN
        sets := sets || format('%I = CASE WHEN %s THEN r.%I ELSE %s END',
                               t.error_column, requeue, t.error_column, message);
    END IF;

    RETURN format($sql$
        WITH candidates AS (
            SELECT r.%1$I AS id, r.%2$I::text AS status, %3$s AS touched
            FROM %4$s AS r
            WHERE %5$s
            ORDER BY r.%6$I
            LIMIT $2
            FOR UPDATE OF r SKIP LOCKED
        ), changed AS (
            UPDATE %4$s AS r
            SET %7$s
            FROM candidates AS c
            WHERE r.%1$I = c.id AND %5$s
            RETURNING %8$L::text AS table_name, r.%1$I::text AS run_id, c.status AS previous_status,
                      r.%2$I::text AS status, %9$s AS completed, %10$s AS total,
                      CASE WHEN isfinite(%11$s) THEN now() - %11$s END AS age,
                      CASE WHEN isfinite(c.touched) THEN now() - c.touched END AS idle,
                      CASE WHEN r.%2$I::text = %12$L THEN 'failed' ELSE 'requeued' END AS action,
                      %13$s AS attempts
        ), audit AS (
            INSERT INTO run_recoveries
                (table_name, run_id, previous_status, completed, total, age, idle, older_than, action)
            SELECT c.table_name, c.run_id, c.previous_status, c.completed, c.total, c.age, c.idle, $4, c.action
            FROM changed AS c
        )
        SELECT array_agg(c::stuck_runs_recovered_run) FROM changed AS c
        $sql$,
        t.id_column, t.status_column, _stuck_runs_touched_sql(t),
        qualified, _stuck_runs_stuck_sql(t, '$1'), t.updated_at_column,
        array_to_string(sets, ', '),
        t.table_name::text,
        _stuck_runs_count_sql(t.completed_column), _stuck_runs_count_sql(t.total_column),
        _stuck_runs_time_sql(t, t.created_at_column),
        t.failed_status,
        _stuck_runs_count_sql(t.attempts_column));
END
$$;
COMMENT ON FUNCTION stuck_runs_sweep_sql(stuck_runs_tables) IS
    'Builds the one statement that recovers the stuck runs of one registered table: lock candidates skipping busy rows, re-check state in the UPDATE, write the audit rows, all at once. Identifiers go through %I, values through %L or parameters. SELECT t.table_name, stuck_runs_sweep_sql(t) FROM stuck_runs_tables AS t shows exactly what runs.';

CREATE OR REPLACE VIEW _stuck_runs_covered AS
    -- Every sweep starts here, so it is a view (planned into the caller's query,
    -- no function call): the table exists and every mapped column is still
    -- there. Why a table is left out is for stuck_runs_coverage_problems() to
    -- say, once per command, not per sweep.
    SELECT s.* FROM stuck_runs_tables AS s
    WHERE EXISTS (SELECT FROM pg_class AS c WHERE c.oid = s.table_name)
      AND NOT EXISTS (
          SELECT FROM jsonb_each_text(to_jsonb(s)) AS j(key, name)
          JOIN stuck_runs_roles AS r ON r.parameter = j.key
          WHERE j.name IS NOT NULL
            AND NOT EXISTS (SELECT FROM pg_attribute AS a
                            WHERE a.attrelid = s.table_name AND a.attname = j.name
                              AND a.attnum > 0 AND NOT a.attisdropped))
    ORDER BY s.table_name::text;
COMMENT ON VIEW _stuck_runs_covered IS
    'The registered tables recovery can sweep now (stuck_runs_coverage_problems() reports the others), in a stable order: the one list the sweep, the views and resume_run() share.';

-- The return type changes (status added): replace, do not redefine in place.
DROP FUNCTION recover_stuck_runs(interval, integer, integer);

CREATE OR REPLACE FUNCTION recover_stuck_runs(
    older_than   interval DEFAULT _stuck_runs_threshold(),
    max_runs     integer  DEFAULT NULL,
    max_attempts integer  DEFAULT NULL
) RETURNS SETOF stuck_runs_recovered_run
LANGUAGE plpgsql VOLATILE
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

    -- For each table: probe, sweep, collect. A table that fails (altered under
    -- us, a row that a trigger or a CHECK refuses, a value out of range) is
    -- rolled back alone and reported; the other tables are still recovered.
    FOR t IN SELECT * FROM _stuck_runs_covered LOOP
        EXIT WHEN max_runs IS NOT NULL AND cardinality(runs) >= max_runs;
        BEGIN
            -- Nothing stuck is the usual case: a probe that costs a fraction of
            -- building and planning the full sweep answers it.
            EXECUTE format('SELECT EXISTS (SELECT FROM %s AS r WHERE %s)',
                           _stuck_runs_qualified_name(t.table_name), _stuck_runs_stuck_sql(t, '$1'))
                INTO any_stuck USING cutoff;
            CONTINUE WHEN NOT any_stuck;
            EXECUTE stuck_runs_sweep_sql(t)
                INTO swept
                USING cutoff, max_runs - cardinality(runs), max_attempts, older_than;
            runs := runs || coalesce(swept, '{}'::stuck_runs_recovered_run[]);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stuck-runs: % was not swept: %', t.table_name, SQLERRM
                USING DETAIL = format('SQLSTATE %s; the other tables were recovered.', SQLSTATE);
        END;
    END LOOP;

    n := cardinality(runs);
    IF n > 0 THEN
        -- One notification per recovering call, delivered on commit only. Run ids
        -- are listed while the payload stays under PostgreSQL's 8000-byte limit.
        SELECT (count(*) FILTER (WHERE u.action = 'requeued'))::integer INTO requeued
        FROM unnest(runs) AS u;
        IF n <= 200 THEN
            payload := json_build_object(
                'count', n, 'failed', n - requeued, 'requeued', requeued,
                'runs', (SELECT json_agg(json_build_object('table', u.table_name, 'run_id', u.run_id,
                                                           'action', u.action))
                         FROM unnest(runs) AS u),
                'runs_omitted', false)::text;
        END IF;
        IF payload IS NULL OR octet_length(payload) >= 8000 THEN
            payload := json_build_object(
                'count', n, 'failed', n - requeued, 'requeued', requeued,
                'runs_omitted', true)::text;
        END IF;
        PERFORM pg_notify('stuck_runs_recovered', payload);
    END IF;

    RETURN QUERY SELECT u.* FROM unnest(runs) AS u ORDER BY u.idle DESC, u.table_name, u.run_id;
END
$$;
COMMENT ON FUNCTION recover_stuck_runs(interval, integer, integer) IS
    'Marks FAILED every active run, in every adopted table, with no sign of life (updated_at) for longer than older_than, keeping its progress; returns one row per run this call changed, with the status it has now, and audits each in run_recoveries. Rows locked by a worker are skipped, never waited on; max_runs bounds one call for batching big backlogs; with max_attempts a run with retries left goes back to its first active status instead (action requeued). A table that cannot be swept raises a WARNING naming it and does not stop the others. Sends one NOTIFY stuck_runs_recovered per call that changed anything.';

CREATE OR REPLACE FUNCTION stuck_runs_job_sql(older_than text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- pg_cron runs the job with the default search_path, so it names the schema.
    IF older_than IS NOT NULL AND older_than::interval <= interval '0' THEN
        RAISE EXCEPTION 'stuck_runs_job_sql: older_than must be a positive interval, got %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN format('SELECT * FROM %s.recover_stuck_runs(%s)', _stuck_runs_schema(),
                  CASE WHEN older_than IS NULL THEN ''
                       ELSE format('older_than => %L::interval', older_than) END);
END
$$;
COMMENT ON FUNCTION stuck_runs_job_sql(text) IS
    'The statement a pg_cron job runs to recover stuck runs (with the database''s threshold, or older_than): what `stuck-runs schedule` installs, for psql users too: SELECT cron.schedule(''stuck-runs-recovery'', ''* * * * *'', stuck_runs.stuck_runs_job_sql()).';

CREATE OR REPLACE FUNCTION _stuck_runs_list(idle_longer_than interval)
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
    t stuck_runs_tables;
BEGIN
    FOR t IN SELECT * FROM _stuck_runs_covered LOOP
        BEGIN
            -- An infinite timestamp has no age: NULL, not an out-of-range error.
            RETURN QUERY EXECUTE format(
                'SELECT %1$L::text, r.%2$I::text, r.%3$I::text, %4$s, %5$s,'
                ' CASE WHEN isfinite(%6$s) THEN now() - %6$s END,'
                ' CASE WHEN isfinite(%7$s) THEN now() - %7$s END'
                ' FROM %8$s AS r WHERE %9$s',
                t.table_name::text, t.id_column, t.status_column,
                _stuck_runs_count_sql(t.completed_column), _stuck_runs_count_sql(t.total_column),
                _stuck_runs_time_sql(t, t.created_at_column), _stuck_runs_touched_sql(t),
                _stuck_runs_qualified_name(t.table_name),
                CASE WHEN idle_longer_than IS NULL
                     THEN format('r.%I IN (%s)', t.status_column, _stuck_runs_literals(t.active_statuses))
                     ELSE _stuck_runs_stuck_sql(t, '(now() - $1)') END)
            USING idle_longer_than;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stuck-runs: % was not read: %', t.table_name, SQLERRM
                USING DETAIL = format('SQLSTATE %s; the other tables are listed.', SQLSTATE);
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION _stuck_runs_list(interval) IS
    'Active runs of every adopted table, all of them (NULL) or only those idle for longer than the given interval: the body of the active_runs and stuck_runs views. A table that cannot be read raises a WARNING and is left out.';

CREATE OR REPLACE VIEW active_runs AS
SELECT l.table_name, l.run_id, l.status, l.completed, l.total, l.age, l.idle,
       l.idle > _stuck_runs_threshold() AS stuck
FROM _stuck_runs_list(NULL::interval) AS l;
COMMENT ON VIEW active_runs IS
    'Every run still active (PENDING/PROCESSING or the adopted table''s own statuses), stuck or not (stuck: the default threshold would recover it): what a status page or `stuck-runs list` shows.';

CREATE OR REPLACE VIEW stuck_runs AS
SELECT l.table_name, l.run_id, l.status, l.completed, l.total, l.age, l.idle
FROM _stuck_runs_list(_stuck_runs_threshold()) AS l;
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
        SELECT * FROM _stuck_runs_covered AS s WHERE in_table IS NULL OR s.table_name = in_table
    LOOP
        qualified := _stuck_runs_qualified_name(t.table_name);
        BEGIN
            EXECUTE format('SELECT r.%I::text FROM %s AS r WHERE r.%I = $1::%s FOR UPDATE',
                           t.status_column, qualified, t.id_column,
                           _stuck_runs_column_type(t.table_name, t.id_column))
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
        _stuck_runs_column_type(t.table_name, t.status_column),
        t.updated_at_column, _stuck_runs_now_sql(t, t.updated_at_column),
        CASE WHEN t.completed_at_column IS NULL THEN '' ELSE format(', %I = NULL', t.completed_at_column) END,
        CASE WHEN t.error_column IS NULL THEN '' ELSE format(', %I = NULL', t.error_column) END,
        CASE WHEN t.attempts_column IS NULL THEN '' ELSE format(', %I = r.%I + 1', t.attempts_column, t.attempts_column) END,
        t.id_column, _stuck_runs_column_type(t.table_name, t.id_column),
        t.table_name::text, t.id_column, t.status_column,
        _stuck_runs_count_sql(t.completed_column), _stuck_runs_count_sql(t.total_column),
        _stuck_runs_count_sql(t.attempts_column))
    USING run_id;
END
$$;
COMMENT ON FUNCTION resume_run(text, regclass) IS
    'Gives a FAILED run another go: back to its first active status (PENDING) with its progress kept, one more attempt counted, and a fresh idle clock so recovery does not take it straight back. Looks the id up in every adopted table unless one is named.';

CREATE OR REPLACE FUNCTION qualification_runs_touch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.status IN ('PENDING', 'PROCESSING')
       AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        -- When the write happens, not when its transaction began: a worker
        -- reporting progress inside a long transaction is alive now.
        NEW.updated_at := clock_timestamp();
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
    SELECT coalesce(array_agg(c.name ORDER BY c.ord), '{}'::text[])
    FROM unnest(ARRAY['id', 'status', 'total', 'completed', 'created_at', 'updated_at',
                      'completed_at', 'error']) WITH ORDINALITY AS c(name, ord)
    WHERE _stuck_runs_column_type(table_name, c.name) IS NULL
$$;
COMMENT ON FUNCTION _stuck_runs_builtin_missing_columns(regclass) IS
    'Which of the built-in table''s columns an existing qualification_runs lacks: none means it can be adopted as it is; otherwise `stuck-runs migrate` proposes an adopt command with its own names.';

-- Helpers under their 0.1 names, now private (_stuck_runs_*) or with new signatures.
DROP FUNCTION adopt_runs_table(regclass, text, text, text, text, text, text, text, text, text[], text, text);
DROP FUNCTION stuck_runs_column_type(regclass, text);
DROP FUNCTION stuck_runs_qualified_name(regclass);
DROP FUNCTION stuck_runs_literals(text[]);
DROP FUNCTION stuck_runs_index_name(regclass);
DROP FUNCTION stuck_runs_threshold();
DROP FUNCTION stuck_runs_count_sql(text);
DROP FUNCTION stuck_runs_list(interval);
DROP FUNCTION stuck_runs_builtin_missing_columns(regclass);
DROP FUNCTION stuck_runs_time_sql(regclass, text, text);
DROP FUNCTION stuck_runs_now_sql(regclass, text);

-- stuck-runs: pin every function's search_path, take EXECUTE away from PUBLIC,
-- and say which GRANTs a role needs to use stuck-runs.
--
-- Naming: the functions a user calls have plain names (recover_stuck_runs,
-- adopt_runs_table, stuck_runs_grant_sql, ...); private helpers start with an
-- underscore (_stuck_runs_*), so that \df stuck_runs.* shows the API at a glance.

CREATE OR REPLACE FUNCTION _stuck_runs_schema() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT c.relnamespace::regnamespace::text FROM pg_catalog.pg_class AS c
    WHERE c.oid = 'stuck_runs_settings'::regclass
$$;
COMMENT ON FUNCTION _stuck_runs_schema() IS
    'The schema stuck-runs lives in, quoted as needed: inside a function with a pinned search_path, current_schema() is pg_catalog.';

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
        WHERE p.pronamespace = schema::regnamespace
          AND (p.proname LIKE 'stuck\_runs\_%' OR p.proname LIKE '\_stuck\_runs\_%' OR p.proname IN (
               'recover_stuck_runs', 'adopt_runs_table', 'unadopt_runs_table',
               'propose_runs_table_mapping', 'resume_run', 'qualification_runs_touch'))
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %s, pg_temp',
                                  fn, schema);
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$$;
COMMENT ON FUNCTION stuck_runs_harden() IS
    'Pins the search_path of every stuck-runs function of the current schema and revokes EXECUTE from PUBLIC; each migration calls it last.';

CREATE OR REPLACE FUNCTION stuck_runs_grant_sql(role_name text) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    -- Everything `stuck-runs recover`, `list` and `resume` (and the pg_cron job)
    -- touch, and nothing more: the schema, every function (the public ones call
    -- the helpers), the settings, registry and roles (read), the audit (append),
    -- the views, and each covered table (read and update).
    SELECT format('GRANT USAGE ON SCHEMA %s TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %s TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT format('GRANT SELECT ON %1$s.stuck_runs_settings, %1$s.stuck_runs_tables, %1$s.stuck_runs_roles, %1$s._stuck_runs_covered, %1$s.active_runs, %1$s.stuck_runs TO %2$I',
                  _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT format('GRANT SELECT, INSERT ON %s.run_recoveries TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT * FROM (
        SELECT format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, role_name)
        FROM stuck_runs_tables AS t
        JOIN pg_class AS c ON c.oid = t.table_name
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.oid <> _stuck_runs_schema()::regnamespace
        GROUP BY n.nspname
        ORDER BY n.nspname) AS schemas
    UNION ALL
    SELECT * FROM (
        SELECT format('GRANT SELECT, UPDATE ON %s TO %I', _stuck_runs_qualified_name(t.table_name), role_name)
        FROM stuck_runs_tables AS t
        WHERE EXISTS (SELECT FROM pg_class AS c WHERE c.oid = t.table_name)
        ORDER BY t.table_name::text) AS tables
$$;
COMMENT ON FUNCTION stuck_runs_grant_sql(text) IS
    'The exact GRANT statements a role needs to recover, list and resume runs with stuck-runs (run them as the owner): SELECT * FROM stuck_runs_grant_sql(''app'').';

-- A DO block: yoyo would print a SELECT's result.
DO $harden$ BEGIN PERFORM stuck_runs_harden(); END $harden$;
