-- stuck-runs: adopting a runs table, whoever created it and whatever it calls its columns.

CREATE OR REPLACE FUNCTION _stuck_runs_column_type(table_name regclass, column_name text)
RETURNS regtype
LANGUAGE sql STABLE
AS $$
    SELECT a.atttypid::regtype
    FROM pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) table_name AND a.attname OPERATOR(pg_catalog.=) column_name
      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION _stuck_runs_column_type(regclass, text) IS
    'The type of a column, or NULL when the table has no such column: the one catalog lookup adoption and the sweeps share.';

CREATE OR REPLACE FUNCTION _stuck_runs_column_kind(column_type regtype) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN column_type OPERATOR(pg_catalog.=) ANY (ARRAY['timestamptz'::regtype, 'timestamp'::regtype]) THEN 'time'
        WHEN column_type OPERATOR(pg_catalog.=) ANY (ARRAY['int2'::regtype, 'int4'::regtype, 'int8'::regtype]) THEN 'count'
        WHEN column_type OPERATOR(pg_catalog.=) ANY (ARRAY['text'::regtype, 'varchar'::regtype]) THEN 'text'
        WHEN EXISTS (SELECT FROM pg_type AS ty WHERE ty.oid OPERATOR(pg_catalog.=) column_type AND ty.typtype OPERATOR(pg_catalog.=) 'e') THEN 'status'
        ELSE 'other'
    END
$$;
COMMENT ON FUNCTION _stuck_runs_column_kind(regtype) IS
    'What a column of this type can hold, in stuck_runs_roles.kind terms (an enum is a status; text can be a status too).';

CREATE OR REPLACE FUNCTION _stuck_runs_fits(kind text, column_type regtype) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT kind OPERATOR(pg_catalog.=) 'any' OR _stuck_runs_column_kind(column_type) OPERATOR(pg_catalog.=) kind
           OR (kind OPERATOR(pg_catalog.=) 'status' AND _stuck_runs_column_kind(column_type) OPERATOR(pg_catalog.=) 'text')
$$;
COMMENT ON FUNCTION _stuck_runs_fits(text, regtype) IS
    'Whether a column of this type can play a role of this kind: the one rule adoption, the proposal and the coverage report share.';

CREATE OR REPLACE FUNCTION _stuck_runs_qualified_name(table_name regclass) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    WHERE c.oid OPERATOR(pg_catalog.=) table_name
$$;
COMMENT ON FUNCTION _stuck_runs_qualified_name(regclass) IS
    'schema.table, both quoted: how built statements name a table, whatever search_path runs them.';

CREATE OR REPLACE FUNCTION stuck_runs_label(status anyenum) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS 'SELECT pg_catalog.textin(pg_catalog.enum_out($1))';
COMMENT ON FUNCTION stuck_runs_label(anyenum) IS
    'A status as text, for the sweep index''s predicate. Not the enum itself: a predicate naming the enum type (''PENDING''::"RunStatus") makes the ORM''s next migration fail when it re-creates the type to drop or rename a value, because ALTER COLUMN ... TYPE rebuilds the index against the new type. Declared IMMUTABLE, which enum_out is not (ALTER TYPE ... RENAME VALUE: the sweep index must then be rebuilt), so that an index predicate may call it; called by function name, never a cast, so a cast the enum''s owner defines is never run. No pinned search_path and EXECUTE for everyone: every write to the application''s table evaluates it, and it names only pg_catalog.';

CREATE OR REPLACE FUNCTION stuck_runs_label(status text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS 'SELECT $1';
COMMENT ON FUNCTION stuck_runs_label(text) IS
    'A text status as it is: inlined by the planner, so the predicate of a text column stays a plain comparison, and an index built on it survives the column becoming an enum or varchar.';

CREATE OR REPLACE FUNCTION stuck_runs_label(status varchar) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS 'SELECT $1::pg_catalog.text';
COMMENT ON FUNCTION stuck_runs_label(varchar) IS
    'A varchar status as text (inlined): an exact match, so that the index''s printed predicate holds no cast that would stop the column from becoming an enum.';

CREATE OR REPLACE FUNCTION _stuck_runs_label_ok() RETURNS boolean
LANGUAGE sql STABLE
AS $$
    -- The call is resolved by name in stuck-runs' schema, where an exact-type
    -- overload would win over (anyenum). No role but stuck-runs' owner may
    -- create there (migrate refuses such a schema), but the legacy layout in
    -- public may have been opened since.
    SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 3
    FROM pg_catalog.pg_proc AS p
    WHERE p.proname OPERATOR(pg_catalog.=) 'stuck_runs_label'
      AND p.pronamespace OPERATOR(pg_catalog.=) _stuck_runs_schema()::pg_catalog.regnamespace
$$;
COMMENT ON FUNCTION _stuck_runs_label_ok() IS
    'Whether stuck-runs'' schema holds only its own three stuck_runs_label() functions, so that a call by name can only reach them.';

CREATE OR REPLACE FUNCTION _stuck_runs_label_sql(status_sql text) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT _stuck_runs_label_ok() THEN
        RAISE EXCEPTION 'schema % holds a function stuck_runs_label() that stuck-runs did not create', _stuck_runs_schema()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop it, and take CREATE on the schema away from every role but stuck-runs'' owner.';
    END IF;
    RETURN pg_catalog.format('%s.stuck_runs_label(%s)', _stuck_runs_schema(), status_sql);
END
$$;
COMMENT ON FUNCTION _stuck_runs_label_sql(text) IS
    'SQL text calling stuck_runs_label() on a status; refused while the schema holds an overload stuck-runs did not create, which an exact-type match would reach instead.';

CREATE OR REPLACE FUNCTION _stuck_runs_text_list(statuses text[]) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT pg_catalog.format('ARRAY[%s]', pg_catalog.string_agg(pg_catalog.format('%L::pg_catalog.text', v), ', ' ORDER BY o))
    FROM pg_catalog.unnest(statuses) WITH ORDINALITY AS x(v, o)
$$;
COMMENT ON FUNCTION _stuck_runs_text_list(text[]) IS
    'SQL text of the statuses as a text array of literals (the planner matches a partial index only against literals).';

CREATE OR REPLACE FUNCTION _stuck_runs_status_in(status_sql text, statuses text[], status_type regtype)
RETURNS text
LANGUAGE sql STABLE
AS $$
    -- What `status IN ('PENDING', 'PROCESSING')` means for the sweeps and the
    -- views, spelled so that only pg_catalog's = can be chosen. The text form
    -- through stuck_runs_label() is the sweep index's predicate, so the index
    -- serves it. An enum is also compared as itself: that form is exact
    -- whatever happened to the labels, and it matches the index that releases
    -- before 0.4 built, until `stuck-runs migrate` replaces it.
    SELECT CASE WHEN ty.typtype OPERATOR(pg_catalog.=) 'e'
                THEN pg_catalog.format('(%s AND %s OPERATOR(pg_catalog.=) ANY (ARRAY[%s]))', l.text_form, status_sql,
                         (SELECT pg_catalog.string_agg(pg_catalog.format('%L::%s', v, pg_catalog.format_type(ty.oid, NULL)), ', ' ORDER BY o)
                          FROM pg_catalog.unnest(statuses) WITH ORDINALITY AS x(v, o)))
                ELSE l.text_form END
    FROM pg_catalog.pg_type AS ty,
         LATERAL (SELECT pg_catalog.format('%s OPERATOR(pg_catalog.=) ANY (%s)', _stuck_runs_label_sql(status_sql),
                                           _stuck_runs_text_list(statuses)) AS text_form) AS l
    WHERE ty.oid OPERATOR(pg_catalog.=) status_type
$$;
COMMENT ON FUNCTION _stuck_runs_status_in(text, text[], regtype) IS
    'SQL text of "this status is one of these": the condition the sweeps and the views share, which implies the sweep index''s predicate.';

CREATE OR REPLACE FUNCTION _stuck_runs_index_predicate(status_column text, statuses text[])
RETURNS text
LANGUAGE sql STABLE
AS $$
    -- How pg_get_expr() prints the predicate that stuck_runs_index_ddl() builds,
    -- under this function's pinned search_path (our schema visible, so the
    -- function name unqualified), literals quoted as the server quotes them
    -- (backslashes doubled while standard_conforming_strings is off, and never
    -- an E''): an index whose predicate
    -- reads otherwise was built by an older release (naming the enum type) or
    -- for other statuses.
    SELECT pg_catalog.format('(stuck_runs_label(%s) = ANY (ARRAY[%s]))', pg_catalog.quote_ident(status_column),
               pg_catalog.string_agg(
                   '''' OPERATOR(pg_catalog.||)
                   CASE WHEN pg_catalog.current_setting('standard_conforming_strings') OPERATOR(pg_catalog.=) 'off'
                        THEN pg_catalog.replace(pg_catalog.replace(v, E'\\', E'\\\\'), '''', '''''')
                        ELSE pg_catalog.replace(v, '''', '''''') END
                   OPERATOR(pg_catalog.||) '''::text',
                   ', ' ORDER BY o))
    FROM pg_catalog.unnest(statuses) WITH ORDINALITY AS x(v, o)
$$;
COMMENT ON FUNCTION _stuck_runs_index_predicate(text, text[]) IS
    'The sweep index''s predicate as PostgreSQL prints it back: how stuck_runs_index_ddl() tells a current sweep index from one built by an older release or for other statuses.';

CREATE OR REPLACE FUNCTION _stuck_runs_index_name(table_name regclass) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- PostgreSQL cuts names at 63 bytes, which would give two tables with a long
    -- common prefix one index name (and a multibyte name none that matches):
    -- a long name keeps what fits and adds a hash of the whole name.
    SELECT CASE
               WHEN pg_catalog.octet_length(c.relname OPERATOR(pg_catalog.||) '_stuck_runs_idx') OPERATOR(pg_catalog.<=) 63 THEN c.relname OPERATOR(pg_catalog.||) '_stuck_runs_idx'
               ELSE (SELECT pg_catalog.left(c.relname, n) FROM pg_catalog.generate_series(pg_catalog.char_length(c.relname), 0, -1) AS n
                     WHERE pg_catalog.octet_length(pg_catalog.left(c.relname, n)) OPERATOR(pg_catalog.<=) 38 LIMIT 1)
                    || '_' || pg_catalog.left(pg_catalog.md5(c.relname), 8) || '_stuck_runs_idx'
           END
    FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) table_name
$$;
COMMENT ON FUNCTION _stuck_runs_index_name(regclass) IS
    'Name of the partial index that keeps sweeps of a runs table cheap: the table''s name plus _stuck_runs_idx, shortened with a hash when that would not fit in 63 bytes.';

CREATE OR REPLACE FUNCTION _stuck_runs_may_adopt(table_name regclass) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    -- The rule of ALTER TABLE and CREATE INDEX: the owner, a member of the
    -- owning role, or a superuser. Whatever the caller may read or write.
    SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
    FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) table_name
$$;
COMMENT ON FUNCTION _stuck_runs_may_adopt(regclass) IS
    'Whether the current role may have recovery write to a table: only its owner may, as for CREATE INDEX; otherwise a role could point a superuser''s recovery at any table.';

CREATE OR REPLACE FUNCTION _stuck_runs_may_forget(t stuck_runs_tables) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    -- Taking a table out of recovery takes its runs' safety net away: while
    -- the table exists, the rule of adopting it (its owner, a member of the
    -- owning role, a superuser). A dropped table has no owner left: the role
    -- that adopted it may, and so may whoever may adopt the table that bears
    -- its name now (adoption replaces such an entry). The registry's own owner
    -- (whoever installed stuck-runs, who could disable this check anyway) may
    -- always. Nobody else: an entry is what re-adoption keeps (time zone,
    -- statuses) and what warns that coverage was lost.
    SELECT coalesce(
        pg_catalog.pg_has_role(current_user,
                               (SELECT r.relowner FROM pg_catalog.pg_class AS r
                                WHERE r.oid OPERATOR(pg_catalog.=) 'stuck_runs_tables'::regclass),
                               'USAGE')
        OR CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name)
                THEN _stuck_runs_may_adopt(t.table_name)
                ELSE coalesce(CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles AS a
                                                WHERE a.oid OPERATOR(pg_catalog.=) t.adopted_by)
                                   THEN pg_catalog.pg_has_role(current_user, t.adopted_by, 'USAGE') END, false)
                     OR EXISTS (SELECT FROM pg_catalog.pg_class AS c
                                JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                                WHERE n.nspname OPERATOR(pg_catalog.=) t.schema_name
                                  AND c.relname OPERATOR(pg_catalog.=) t.relation_name
                                  AND c.relkind IN ('r', 'p')
                                  AND pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'))
           END, false)
$$;
COMMENT ON FUNCTION _stuck_runs_may_forget(stuck_runs_tables) IS
    'Whether the current role may take this entry out of the registry: the table''s owner while it exists; once it is dropped, the role that adopted it or the owner of a table now bearing its name; always the registry''s owner.';

CREATE OR REPLACE FUNCTION _stuck_runs_tables_check() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- An entry removed, or rewritten into another (UPDATE ... SET table_name),
    -- is an entry taken away: only by those who may unadopt it.
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT _stuck_runs_may_forget(OLD) THEN
        RAISE EXCEPTION 'stuck-runs: only the owner of % (once it is dropped: the role that adopted it) may take it out of recovery',
            coalesce(pg_catalog.format('%I.%I', OLD.schema_name, OLD.relation_name), OLD.table_name::pg_catalog.oid::text)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF NOT coalesce(_stuck_runs_may_adopt(NEW.table_name), false) THEN
        RAISE EXCEPTION 'stuck-runs: only the owner of % may register it for recovery', NEW.table_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- The name it is known by once dropped is the table's own, whatever the
    -- statement said: an entry relabelled as another table would warn about
    -- it, flip the runner's exit status, and let its writer forget that
    -- table's real entry.
    SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text INTO NEW.schema_name, NEW.relation_name
    FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    WHERE c.oid OPERATOR(pg_catalog.=) NEW.table_name;
    -- Who registered it: an entry stays in force only while that role could
    -- still adopt the table (_stuck_runs_covered), whoever owns it later.
    NEW.adopted_by := (SELECT r.oid FROM pg_catalog.pg_roles AS r
                       WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)::regrole;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION _stuck_runs_tables_check() IS
    'Guards every write to the registry, not only adopt_runs_table() and unadopt: a role with INSERT on stuck_runs_tables still cannot get a table it does not own swept, nor with DELETE or UPDATE take another owner''s table out of recovery.';

DROP TRIGGER IF EXISTS _stuck_runs_tables_check ON stuck_runs_tables;
CREATE TRIGGER _stuck_runs_tables_check BEFORE INSERT OR UPDATE OR DELETE ON stuck_runs_tables
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

CREATE OR REPLACE FUNCTION unadopt_runs_table(table_name regclass, drop_index boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    qualified text;
BEGIN
    DELETE FROM stuck_runs_tables AS t WHERE t.table_name OPERATOR(pg_catalog.=) unadopt_runs_table.table_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Only the index adoption made, on this very table, whatever its name says.
    SELECT pg_catalog.format('%I.%I', n.nspname, ic.relname) INTO qualified
    FROM pg_index AS i
    JOIN pg_class AS ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
    JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) ic.relnamespace
    WHERE i.indrelid OPERATOR(pg_catalog.=) table_name AND ic.relname OPERATOR(pg_catalog.=) _stuck_runs_index_name(table_name);
    IF qualified IS NOT NULL THEN
        IF drop_index THEN
            EXECUTE pg_catalog.format('DROP INDEX %s', qualified);
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

CREATE OR REPLACE FUNCTION _stuck_runs_forget(dropped_schema text, dropped_name text) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    forgotten integer;
BEGIN
    -- unadopt_runs_table() takes a regclass, which the name of a dropped table
    -- no longer resolves to: its entry is found by the schema and name it was
    -- adopted under. Only entries whose table is gone; who may remove them is
    -- the registry's trigger's to decide (_stuck_runs_may_forget).
    DELETE FROM stuck_runs_tables AS t
    WHERE t.schema_name OPERATOR(pg_catalog.=) dropped_schema
      AND t.relation_name OPERATOR(pg_catalog.=) dropped_name
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name)
      -- Another role's entry under the same name is left, not an error that
      -- would keep the caller from removing its own.
      AND _stuck_runs_may_forget(t);
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    RETURN forgotten;
END
$$;
COMMENT ON FUNCTION _stuck_runs_forget(text, text) IS
    'Removes the entry of a dropped table, named by the schema and name it was adopted under (what `stuck-runs unadopt --table NAME` calls for a table that is gone); returns how many entries went. Only the role that adopted it (or the registry''s owner) may.';

CREATE OR REPLACE FUNCTION _stuck_runs_forget_superseded() RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    forgotten integer;
BEGIN
    IF NOT pg_catalog.has_table_privilege('stuck_runs_tables'::regclass, 'DELETE') THEN
        RETURN 0;  -- a role that may only recover: nothing to tidy
    END IF;
    -- The entry of a dropped table whose name a registered table bears now
    -- (renamed away and dropped later, while a new table took the name and was
    -- adopted) can never cover anything again, and `unadopt --table NAME`
    -- would take the live table out too. `stuck-runs migrate` removes it, for
    -- the roles that may.
    DELETE FROM stuck_runs_tables AS t
    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name)
      AND EXISTS (SELECT FROM stuck_runs_tables AS u
                  JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) u.table_name
                  JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                  WHERE n.nspname OPERATOR(pg_catalog.=) t.schema_name
                    AND c.relname OPERATOR(pg_catalog.=) t.relation_name)
      AND _stuck_runs_may_forget(t);
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    RETURN forgotten;
END
$$;
COMMENT ON FUNCTION _stuck_runs_forget_superseded() IS
    'Removes the entries of dropped tables whose name a registered table bears now (for the roles that may): they can never cover anything again.';

CREATE OR REPLACE FUNCTION _stuck_runs_resolve_table(name text, app_schema text) RETURNS regclass
LANGUAGE sql STABLE
AS $$
    -- A name as a person writes it (qualification_runs, "QualificationRun",
    -- app.runs): unqualified names are looked up in the application's schema,
    -- never along a search path.
    SELECT c.oid::regclass
    FROM (SELECT pg_catalog.parse_ident(name) AS parts) AS p
    JOIN pg_namespace AS n
      ON n.nspname OPERATOR(pg_catalog.=) CASE pg_catalog.cardinality(p.parts) WHEN 1 THEN app_schema ELSE p.parts[1] END
    JOIN pg_class AS c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relname OPERATOR(pg_catalog.=) p.parts[pg_catalog.cardinality(p.parts)]
    WHERE pg_catalog.cardinality(p.parts) IN (1, 2)
$$;
COMMENT ON FUNCTION _stuck_runs_resolve_table(text, text) IS
    'The table a user named on the command line, unqualified names in the application''s schema (Prisma''s ?schema=); NULL when there is none.';

CREATE OR REPLACE FUNCTION _stuck_runs_mapping_problem(t stuck_runs_tables) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name)
             AND EXISTS (SELECT FROM pg_class AS c JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                         WHERE n.nspname OPERATOR(pg_catalog.=) t.schema_name AND c.relname OPERATOR(pg_catalog.=) t.relation_name
                           AND c.relkind IN ('r', 'p')
                           AND EXISTS (SELECT FROM stuck_runs_tables AS u WHERE u.table_name OPERATOR(pg_catalog.=) c.oid))
        THEN pg_catalog.format('an earlier table named %I.%I was dropped; the table of that name now is registered on its own, and `stuck-runs migrate` (or `start`) removes the old entry',
                    t.schema_name, t.relation_name)
        WHEN NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name)
             AND EXISTS (SELECT FROM pg_class AS c JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                         WHERE n.nspname OPERATOR(pg_catalog.=) t.schema_name AND c.relname OPERATOR(pg_catalog.=) t.relation_name
                           AND c.relkind IN ('r', 'p'))
        THEN pg_catalog.format('%I.%I was dropped and re-created: recovery does not cover the new table; adopt it again (stuck-runs migrate --adopt)',
                    t.schema_name, t.relation_name)
        WHEN NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name)
        THEN pg_catalog.format('%s was dropped: recovery no longer covers it; adopt it again if it comes back, or remove its entry (stuck-runs unadopt --table)',
                    coalesce(pg_catalog.format('%I.%I', t.schema_name, t.relation_name), t.table_name::oid::text))
        WHEN t.adopted_by IS NULL
        THEN pg_catalog.format('%s was registered before stuck-runs 0.3, which did not record by whom: recovery skips it until it is adopted again (stuck-runs migrate --adopt %s)',
                               t.table_name, t.table_name)
        WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c
                         WHERE c.oid OPERATOR(pg_catalog.=) t.table_name
                           AND CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles AS a
                                                 WHERE a.oid OPERATOR(pg_catalog.=) t.adopted_by)
                                    THEN pg_catalog.pg_has_role(t.adopted_by, c.relowner, 'USAGE') END)
        THEN pg_catalog.format('%s was registered by %s, who may no longer adopt it (its owner changed, or that role is gone): recovery skips it until its owner adopts it again',
                               t.table_name, t.adopted_by)
        ELSE (SELECT pg_catalog.format('%s no longer fits its mapping: column "%s" (%s) %s; adopt it again',
                            t.table_name, m.name, r.role,
                            CASE WHEN m.type IS NULL THEN 'is gone'
                                 ELSE pg_catalog.format('is now of type %s', m.type) END)
              FROM stuck_runs_roles AS r
              CROSS JOIN LATERAL (
                  SELECT pg_catalog.to_jsonb(t) ->> r.parameter AS name,
                         _stuck_runs_column_type(t.table_name, pg_catalog.to_jsonb(t) ->> r.parameter) AS type
              ) AS m
              WHERE m.name IS NOT NULL AND (m.type IS NULL OR NOT _stuck_runs_fits(r.kind, m.type))
              ORDER BY r.position
              LIMIT 1)
    END
$$;
COMMENT ON FUNCTION _stuck_runs_mapping_problem(stuck_runs_tables) IS
    'Why a registered table can no longer be swept (dropped, a mapped column gone), or NULL when it can.';

CREATE OR REPLACE FUNCTION _stuck_runs_index_state(t stuck_runs_tables, index_name text) RETURNS text
LANGUAGE sql STABLE
AS $$
    -- 'current', 'outdated' (valid, but an older release's predicate, which
    -- names the enum type and fails the ORM's next re-creation of it, or one
    -- for other statuses or another column), 'invalid' (left by an interrupted
    -- CREATE INDEX CONCURRENTLY, which IF NOT EXISTS would take for done), or
    -- NULL when there is no index of that name on the table.
    SELECT CASE WHEN NOT i.indisvalid THEN 'invalid'
                WHEN i.indnatts OPERATOR(pg_catalog.=) 1 AND i.indexprs IS NULL
                     AND a.attname OPERATOR(pg_catalog.=) t.updated_at_column
                     AND pg_catalog.pg_get_expr(i.indpred, i.indrelid) OPERATOR(pg_catalog.=)
                         _stuck_runs_index_predicate(t.status_column, t.active_statuses)
                THEN 'current'
                ELSE 'outdated' END
    FROM pg_catalog.pg_index AS i
    JOIN pg_catalog.pg_class AS ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
    LEFT JOIN pg_catalog.pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                                           AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
    WHERE i.indrelid OPERATOR(pg_catalog.=) t.table_name AND ic.relname OPERATOR(pg_catalog.=) index_name
$$;
COMMENT ON FUNCTION _stuck_runs_index_state(stuck_runs_tables, text) IS
    'Whether the named index of a registered table is its current sweep index, an outdated or invalid one, or missing (NULL).';

CREATE OR REPLACE FUNCTION stuck_runs_index_ddl(table_name regclass) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    -- A new index is built beside an outdated one under a second name, and
    -- swapped in only once it is valid: a build cut short (an old transaction
    -- holds CREATE INDEX CONCURRENTLY back) leaves the old index serving, and
    -- the next run picks up where this one stopped. The built-in table's index
    -- is made by its migration, as the table is. A table that no longer fits
    -- its mapping gets nothing: it is not swept until adopted again.
    WITH target AS (
        SELECT pg_catalog.quote_ident(n.nspname) AS nsp, c.relname, t.updated_at_column,
               x.index_name, x.next_name, t.managed,
               _stuck_runs_index_state(t, x.index_name) AS state,
               _stuck_runs_index_state(t, x.next_name) AS next_state,
               pg_catalog.format('%s OPERATOR(pg_catalog.=) ANY (%s)',
                   _stuck_runs_label_sql(pg_catalog.quote_ident(t.status_column)),
                   _stuck_runs_text_list(t.active_statuses)) AS predicate
        FROM stuck_runs_tables AS t
        JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) t.table_name
        JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        CROSS JOIN LATERAL (
            SELECT _stuck_runs_index_name(t.table_name) AS index_name,
                   pg_catalog.left(_stuck_runs_index_name(t.table_name),
                                   pg_catalog.length(_stuck_runs_index_name(t.table_name)) OPERATOR(pg_catalog.-) 3)
                   OPERATOR(pg_catalog.||) 'new' AS next_name
        ) AS x
        WHERE t.table_name OPERATOR(pg_catalog.=) stuck_runs_index_ddl.table_name
          AND _stuck_runs_mapping_problem(t) IS NULL
          AND _stuck_runs_label_ok()
          AND NOT (t.managed AND _stuck_runs_index_state(t, x.index_name) IS NOT NULL)
    ), steps AS (
        -- 1. Whatever is invalid goes, and a finished second index that is no
        --    longer needed (or not current).
        SELECT 1 AS step, pg_catalog.format('DROP INDEX CONCURRENTLY IF EXISTS %s.%I', x.nsp, x.index_name) AS ddl
        FROM target AS x WHERE x.state OPERATOR(pg_catalog.=) 'invalid'
        UNION ALL
        SELECT 2, pg_catalog.format('DROP INDEX CONCURRENTLY IF EXISTS %s.%I', x.nsp, x.next_name)
        FROM target AS x
        WHERE x.next_state OPERATOR(pg_catalog.<>) 'current'
           OR (x.next_state OPERATOR(pg_catalog.=) 'current' AND x.state OPERATOR(pg_catalog.=) 'current')
        UNION ALL
        -- 2. No usable index: built under its own name. An outdated one: the new
        --    one is built beside it, which then takes its place.
        SELECT 3, pg_catalog.format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON %s.%I (%I) WHERE %s',
                      CASE WHEN x.state OPERATOR(pg_catalog.=) 'outdated' THEN x.next_name ELSE x.index_name END,
                      x.nsp, x.relname, x.updated_at_column, x.predicate)
        FROM target AS x
        WHERE (x.state IS NULL OR x.state OPERATOR(pg_catalog.<>) 'current')
          AND x.next_state IS DISTINCT FROM 'current'
        UNION ALL
        SELECT 4, pg_catalog.format('DROP INDEX CONCURRENTLY IF EXISTS %s.%I', x.nsp, x.index_name)
        FROM target AS x
        WHERE x.state OPERATOR(pg_catalog.=) 'outdated'
        UNION ALL
        SELECT 5, pg_catalog.format('ALTER INDEX %s.%I RENAME TO %I', x.nsp, x.next_name, x.index_name)
        FROM target AS x
        WHERE (x.state IS NULL OR x.state OPERATOR(pg_catalog.<>) 'current')
          AND (x.state OPERATOR(pg_catalog.=) 'outdated' OR x.next_state OPERATOR(pg_catalog.=) 'current')
    )
    SELECT s.ddl FROM steps AS s ORDER BY s.step
$$;
COMMENT ON FUNCTION stuck_runs_index_ddl(regclass) IS
    'The statements that give an adopted table its current sweep index, in order; none when it has it. Run them one by one and stop at the first that fails: the index in use is only replaced once its successor is valid. Returned, not run: CONCURRENTLY cannot run inside a function''s transaction, and a plain CREATE INDEX would block the application''s writes.';

CREATE OR REPLACE FUNCTION stuck_runs_coverage_problems(app_schema text DEFAULT 'public')
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(pg_catalog.format('%I.%I', t.schema_name, t.relation_name), t.table_name::oid::text),
           _stuck_runs_mapping_problem(t)
    FROM stuck_runs_tables AS t
    WHERE _stuck_runs_mapping_problem(t) IS NOT NULL
    UNION ALL
    SELECT c.oid::regclass::text,
           pg_catalog.format('%s exists but recovery does not cover it: adopt it (stuck-runs migrate --adopt %s)',
                  c.oid::regclass, c.relname)
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    WHERE n.nspname OPERATOR(pg_catalog.=) app_schema AND c.relname OPERATOR(pg_catalog.=) 'qualification_runs' AND c.relkind IN ('r', 'p')
      AND NOT EXISTS (SELECT FROM stuck_runs_tables AS t WHERE t.table_name OPERATOR(pg_catalog.=) c.oid)
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
               pg_catalog.lower(pg_catalog.regexp_replace(a.attname, '[^[:alnum:]]', '', 'g')) AS norm,
               a.atttypid AS type
        FROM pg_attribute AS a
        WHERE a.attrelid OPERATOR(pg_catalog.=) table_name AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
    )
    SELECT r.role, (
        SELECT c.name
        FROM cols AS c
        CROSS JOIN LATERAL (
            SELECT pg_catalog.min(x.rank) AS rank FROM (
                SELECT s.rank FROM pg_catalog.unnest(r.synonyms) WITH ORDINALITY AS s(word, rank)
                WHERE s.word OPERATOR(pg_catalog.=) c.norm
                UNION ALL
                SELECT 100 + p.rank FROM pg_catalog.unnest(r.prefixes) WITH ORDINALITY AS p(word, rank)
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
