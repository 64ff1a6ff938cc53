-- 0005: the sweep index never stands in the way of the application's own migrations.
--   * The sweep index's predicate compares statuses as text through stuck_runs_label()
--     instead of naming the enum type: an ORM that re-creates the enum to drop or rename a
--     value (ALTER COLUMN ... TYPE "X_new") no longer fails on the index.
--   * stuck_runs_index_ddl() now also rebuilds (CONCURRENTLY) a sweep index whose predicate,
--     key or statuses are not the current ones: `stuck-runs migrate` replaces the indexes that
--     0.2 and 0.3 built, and SQL-only installs see them listed in a NOTICE here.
-- Landed migrations are immutable (tests/test_migrations.py checks their checksums).
-- depends: 0004_owners_code

-- from sql/02_as_owner.sql
CREATE OR REPLACE FUNCTION _stuck_runs_session_state() RETURNS text
LANGUAGE sql VOLATILE
AS $$
    -- Inside a SECURITY DEFINER step the owner's code cannot change roles, but
    -- a plain SET, a temporary object, a prepared statement or a held cursor
    -- would outlive the step in the caller's session (a search_path that puts
    -- the owner's schema first, a temporary table that shadows a catalog view).
    -- Not seen: custom placeholder settings (SET a.b), which nothing of
    -- stuck-runs or PostgreSQL reads, and which the rollback undoes anyway.
    -- _stuck_runs_as_owner() compares this before and after the step and rolls
    -- the step back on any difference. (It reads search_path itself: here the
    -- function's own pinned path would hide the session's.)
    SELECT pg_catalog.array_to_string(ARRAY[
        (SELECT pg_catalog.md5(pg_catalog.string_agg(pg_catalog.concat(s.name, '=', s.setting), ',' ORDER BY s.name))
         FROM pg_catalog.pg_settings AS s),
        (SELECT pg_catalog.string_agg(pg_catalog.concat(o.kind, o.oid), ',' ORDER BY o.kind, o.oid)
         FROM (SELECT 'r'::pg_catalog.text AS kind, c.oid FROM pg_catalog.pg_class AS c
               WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
               UNION ALL
               SELECT 'f'::pg_catalog.text, p.oid FROM pg_catalog.pg_proc AS p
               WHERE p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
               UNION ALL
               SELECT 't'::pg_catalog.text, ty.oid FROM pg_catalog.pg_type AS ty
               WHERE ty.typnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
               UNION ALL
               SELECT 'o'::pg_catalog.text, op.oid FROM pg_catalog.pg_operator AS op
               WHERE op.oprnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
               UNION ALL
               SELECT 'c'::pg_catalog.text, co.oid FROM pg_catalog.pg_collation AS co
               WHERE co.collnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
               UNION ALL
               SELECT 'v'::pg_catalog.text, cv.oid FROM pg_catalog.pg_conversion AS cv
               WHERE cv.connamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
               UNION ALL
               SELECT 'x'::pg_catalog.text, sx.oid FROM pg_catalog.pg_statistic_ext AS sx
               WHERE sx.stxnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
               UNION ALL
               SELECT 'g'::pg_catalog.text, tc.oid FROM pg_catalog.pg_ts_config AS tc
               WHERE tc.cfgnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
               UNION ALL
               SELECT 'd'::pg_catalog.text, td.oid FROM pg_catalog.pg_ts_dict AS td
               WHERE td.dictnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) AS o),
        (SELECT pg_catalog.string_agg(l.channel, ',' ORDER BY l.channel)
         FROM pg_catalog.pg_listening_channels() AS l(channel)),
        (SELECT pg_catalog.string_agg(pg_catalog.concat(k.classid, ':', k.objid, ':', k.objsubid, ':', k.mode),
                                      ',' ORDER BY k.classid, k.objid, k.objsubid, k.mode)
         FROM pg_catalog.pg_locks AS k
         WHERE k.locktype OPERATOR(pg_catalog.=) 'advisory'
           AND k.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()),
        (SELECT pg_catalog.string_agg(ps.name, ',' ORDER BY ps.name) FROM pg_catalog.pg_prepared_statements AS ps),
        (SELECT pg_catalog.string_agg(cu.name, ',' ORDER BY cu.name) FROM pg_catalog.pg_cursors AS cu),
        -- A deferrable trigger of a non-superuser made during the step could
        -- have been queued by it.
        _stuck_runs_deferred_risk()
    ]::pg_catalog.text[], ' | ', '')
$$;

-- from sql/03_adoption.sql
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
    SELECT n.nspname, c.relname INTO NEW.schema_name, NEW.relation_name
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

-- from sql/99_hardening.sql
-- stuck-runs: pin every function's search_path, take EXECUTE away from PUBLIC,
-- and say which GRANTs a role needs to use stuck-runs.
--
-- Naming: the functions a user calls have plain names (recover_stuck_runs,
-- adopt_runs_table, stuck_runs_grant_sql, ...); private helpers start with an
-- underscore (_stuck_runs_*), so that \df stuck_runs.* shows the API at a glance.

CREATE OR REPLACE FUNCTION _stuck_runs_share_label() RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    fn     regprocedure;
    schema text := _stuck_runs_schema();
BEGIN
    -- The sweep index's predicate calls stuck_runs_label() at every write of
    -- an adopted table, by whichever role writes, and the sweeps that run as
    -- the table's owner name it: every role may look it up and execute it.
    -- USAGE lets a role look names up, nothing more: no table, view or other
    -- function of ours is granted to PUBLIC. It pins nothing (a pinned setting
    -- would cost every write a GUC switch and keep the planner from inlining
    -- the text variants); its bodies name only pg_catalog. Granted only when
    -- missing (`stuck-runs migrate` calls this every time: a restore with
    -- --no-acl drops the grants), and only the schema's owner may.
    IF NOT (SELECT pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE')
            FROM pg_catalog.pg_namespace AS n WHERE n.oid OPERATOR(pg_catalog.=) schema::regnamespace) THEN
        IF NOT pg_catalog.has_schema_privilege('public', schema::regnamespace::oid, 'USAGE') THEN
            RAISE NOTICE 'stuck-runs: the owner of schema % should run: GRANT USAGE ON SCHEMA % TO PUBLIC (sweeps of tables other roles own name stuck_runs_label() there)', schema, schema;
        END IF;
        RETURN;
    END IF;
    IF NOT pg_catalog.has_schema_privilege('public', schema::regnamespace::oid, 'USAGE') THEN
        EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %s TO PUBLIC', schema);
    END IF;
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace OPERATOR(pg_catalog.=) schema::regnamespace
          AND p.proname OPERATOR(pg_catalog.=) 'stuck_runs_label'
          AND NOT pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', fn);
    END LOOP;
END
$$;
COMMENT ON FUNCTION _stuck_runs_share_label() IS
    'Lets every role look up and execute stuck_runs_label(), which sweep indexes call at every write, where those grants are missing.';
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
          AND (p.proname LIKE 'stuck\_runs\_%' OR p.proname LIKE '\_stuck\_runs\_%' OR p.proname IN (
               'recover_stuck_runs', 'adopt_runs_table', 'unadopt_runs_table',
               'propose_runs_table_mapping', 'resume_run', 'qualification_runs_touch'))
          AND p.proname OPERATOR(pg_catalog.<>) 'stuck_runs_label'
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %s, pg_temp',
                                  fn, schema);
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
    PERFORM _stuck_runs_share_label();
END
$$;
COMMENT ON FUNCTION stuck_runs_harden() IS
    'Pins the search_path of every stuck-runs function of the current schema and revokes EXECUTE from PUBLIC, but for stuck_runs_label(), which sweep indexes call at every write; each migration calls it last.';

DO $harden$ BEGIN PERFORM stuck_runs_harden(); END $harden$;

DO $outdated$
DECLARE
    tbl regclass;
    ddl text;
BEGIN
    FOR tbl, ddl IN
        SELECT t.table_name, d FROM stuck_runs_tables AS t
        JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) t.table_name
        CROSS JOIN LATERAL stuck_runs_index_ddl(t.table_name) AS d
    LOOP
        RAISE NOTICE 'stuck-runs: the sweep index of % is out of date; run outside a transaction (`stuck-runs migrate` does it): %', tbl, ddl;
    END LOOP;
END
$outdated$;
