-- 0005: the sweep index never stands in the way of the application's own migrations, a
-- backlog of any size drains in batches that commit, and lost coverage is loud.
--   * The sweep index's predicate compares statuses as text through stuck_runs_label()
--     instead of naming the enum type: an ORM that re-creates the enum to drop or rename a
--     value (ALTER COLUMN ... TYPE "X_new") no longer fails on the index. Sweeps and views
--     compare the enum itself too, so indexes of earlier releases keep serving.
--   * stuck_runs_index_ddl() builds a successor beside an outdated sweep index (an earlier
--     release's, or one for other statuses) and swaps it in once valid: `stuck-runs migrate`
--     replaces the indexes 0.2 and 0.3 built; SQL-only installs see them in a NOTICE here.
--   * drain_stuck_runs(): recovery in batches that each commit, ending in an ERROR when a
--     table could not be swept (what the pg_cron job now calls).
--   * The registry keeps each entry's own name, lets only the owner, the adopter or the
--     registry's owner remove an entry, and finds a dropped table's entry by that name.
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
        _stuck_runs_deferred_risk(),
        -- The one custom setting stuck-runs reads: which tables a batch could
        -- not sweep (drain_stuck_runs() ends in an ERROR naming them). An
        -- owner's step that wrote it would hide or forge failures.
        coalesce(pg_catalog.current_setting('stuck_runs.unswept', true), '')
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

-- from sql/04_recovery.sql
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
            IF _stuck_runs_runs_here(t.table_name) THEN
                EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM %s AS r WHERE %s)',
                               _stuck_runs_qualified_name(t.table_name), _stuck_runs_stuck_sql(t, '$1'))
                    INTO any_stuck USING cutoff;
                CONTINUE WHEN NOT any_stuck;
            END IF;
            SELECT pg_catalog.array_agg(ROW(t.table_name::text, j.run_id, j.previous_status, j.status,
                                            j.completed, j.total, j.age, j.idle, j.action,
                                            j.attempts)::stuck_runs_recovered_run ORDER BY j.run_id)
                INTO swept
            FROM pg_catalog.jsonb_populate_recordset(
                     NULL::stuck_runs_recovered_run,
                     _stuck_runs_as_owner(t.table_name, stuck_runs_sweep_sql(t), cutoff,
                                          share, max_attempts, older_than)) AS j;
            -- The audit is written by this role, never by the owner's step.
            INSERT INTO run_recoveries
                (table_name, run_id, previous_status, completed, total, age, idle, older_than, action)
            SELECT u.table_name, u.run_id, u.previous_status, u.completed, u.total, u.age, u.idle,
                   older_than, u.action
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
LANGUAGE plpgsql VOLATILE
SET lock_timeout = '2s'  -- see recover_stuck_runs()
AS $$
#variable_conflict use_variable
DECLARE
    t         stuck_runs_tables;
    lock_wait text := pg_catalog.current_setting('lock_timeout');
    covered   integer := 0;
    query     text;
BEGIN
    PERFORM _stuck_runs_bound_lock_wait();
    FOR t IN SELECT * FROM _stuck_runs_covered LOOP
        covered := covered OPERATOR(pg_catalog.+) 1;
        BEGIN
            -- Statuses and ids print through their types' output functions,
            -- never a cast. An infinite timestamp has no age: NULL.
            query := pg_catalog.format(
                'SELECT %1$L::text AS table_name, %2$s AS run_id, %3$s AS status, %4$s AS completed,'
                ' %5$s AS total,'
                ' CASE WHEN pg_catalog.isfinite(%6$s) THEN pg_catalog.now() OPERATOR(pg_catalog.-) %6$s END AS age,'
                ' CASE WHEN pg_catalog.isfinite(%7$s) THEN pg_catalog.now() OPERATOR(pg_catalog.-) %7$s END AS idle'
                ' FROM %8$s AS r WHERE %9$s',
                t.table_name::text, _stuck_runs_text_sql(t.id_column), _stuck_runs_text_sql(t.status_column),
                _stuck_runs_count_sql(t.completed_column), _stuck_runs_count_sql(t.total_column),
                _stuck_runs_time_sql(t, t.created_at_column), _stuck_runs_touched_sql(t),
                _stuck_runs_qualified_name(t.table_name),
                CASE WHEN idle_longer_than IS NULL
                     THEN _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column), t.active_statuses,
                                                _stuck_runs_column_type(t.table_name, t.status_column))
                     ELSE _stuck_runs_stuck_sql(t, '(pg_catalog.now() OPERATOR(pg_catalog.-) $4)') END);
            IF _stuck_runs_runs_here(t.table_name) THEN
                RETURN QUERY EXECUTE query USING NULL::timestamptz, NULL::integer, NULL::integer, idle_longer_than;
            ELSE
                -- Even reading runs the owner's code (the planner evaluates the
                -- immutable functions of its index expressions; its policies):
                -- read as the owner. A read-only transaction cannot, and says so.
                RETURN QUERY
                    SELECT x.* FROM pg_catalog.jsonb_to_recordset(coalesce(_stuck_runs_as_owner(
                        t.table_name,
                        pg_catalog.format('SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(l)) FROM (%s) AS l', query),
                        older_than => idle_longer_than), '[]')) AS x(
                        table_name text, run_id text, status text, completed integer, total integer,
                        age interval, idle interval);
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
          AND p.prokind OPERATOR(pg_catalog.=) 'f'
          AND (p.proname LIKE 'stuck\_runs\_%' OR p.proname LIKE '\_stuck\_runs\_%' OR p.proname IN (
               'recover_stuck_runs', 'adopt_runs_table', 'unadopt_runs_table',
               'propose_runs_table_mapping', 'resume_run', 'qualification_runs_touch'))
          AND p.proname OPERATOR(pg_catalog.<>) 'stuck_runs_label'
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
CREATE OR REPLACE FUNCTION stuck_runs_grant_sql(role_name text) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    -- Everything `stuck-runs recover`, `list` and `resume` (and the pg_cron job)
    -- touch, and nothing more: the schema, every function (the public ones call
    -- the helpers), the settings, registry and roles (read), the audit (append),
    -- the views, and each covered table (read and update).
    SELECT pg_catalog.format('GRANT USAGE ON SCHEMA %s TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT pg_catalog.format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA %s TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT pg_catalog.format('GRANT SELECT ON %1$s.stuck_runs_settings, %1$s.stuck_runs_tables, %1$s.stuck_runs_roles, %1$s._stuck_runs_covered, %1$s.active_runs, %1$s.stuck_runs TO %2$I',
                  _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT pg_catalog.format('GRANT SELECT, INSERT ON %s.run_recoveries TO %I', _stuck_runs_schema(), role_name)
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
