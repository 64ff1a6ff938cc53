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
    'A status as text, for the sweep index''s predicate. Not the enum itself: a predicate naming the enum type (''PENDING''::"RunStatus") makes the ORM''s next migration fail when it re-creates the type to drop or rename a value, because ALTER COLUMN ... TYPE rebuilds the index against the new type. Declared IMMUTABLE, which enum_out is not (RENAME VALUE), so that an index predicate may call it; called by function name, never a cast, so a cast the enum''s owner defines is never run. No pinned search_path and EXECUTE for everyone: every write to the application''s table evaluates it, and it names only pg_catalog.';
CREATE OR REPLACE FUNCTION stuck_runs_label(status text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS 'SELECT $1';
COMMENT ON FUNCTION stuck_runs_label(text) IS
    'A text (or varchar) status as it is: inlined by the planner, so the sweep predicate of a text column stays a plain comparison that matches any index on it, and an index built on it survives the column becoming an enum.';
CREATE OR REPLACE FUNCTION _stuck_runs_status_in(status_sql text, statuses text[], status_type regtype)
RETURNS text
LANGUAGE sql STABLE
AS $$
    -- What `status IN ('PENDING', 'PROCESSING')` means, compared as text
    -- through stuck_runs_label() so that the sweep index's predicate names no
    -- type of the application's (see stuck_runs_label(anyenum)), and spelled so
    -- that only pg_catalog's = can be chosen. Literals, because the planner
    -- matches a partial index only against them. The text form is the same for
    -- every status type; status_type only says whether the column exists.
    SELECT pg_catalog.format('%s.stuck_runs_label(%s) OPERATOR(pg_catalog.=) ANY (ARRAY[%s])',
               _stuck_runs_schema(), status_sql,
               pg_catalog.string_agg(pg_catalog.format('%L::pg_catalog.text', v), ', ' ORDER BY o))
    FROM pg_catalog.unnest(statuses) WITH ORDINALITY AS x(v, o)
    WHERE status_type IS NOT NULL
$$;
CREATE OR REPLACE FUNCTION _stuck_runs_index_predicate(status_column text, statuses text[], status_type regtype)
RETURNS text
LANGUAGE sql STABLE
AS $$
    -- How pg_get_expr() prints the predicate that stuck_runs_index_ddl() builds,
    -- under this function's pinned search_path (our schema visible, so the
    -- function name unqualified): an index whose predicate reads otherwise was
    -- built by an older release (naming the enum type) or for other statuses.
    SELECT pg_catalog.format('(stuck_runs_label(%s) = ANY (ARRAY[%s]))',
               CASE WHEN ty.typtype OPERATOR(pg_catalog.=) 'e' OR ty.oid OPERATOR(pg_catalog.=) 'pg_catalog.text'::pg_catalog.regtype
                    THEN pg_catalog.quote_ident(status_column)
                    ELSE pg_catalog.format('(%I)::text', status_column) END,
               pg_catalog.string_agg(
                   '''' OPERATOR(pg_catalog.||) pg_catalog.replace(v, '''', '''''') OPERATOR(pg_catalog.||) '''::text',
                   ', ' ORDER BY o))
    FROM pg_catalog.unnest(statuses) WITH ORDINALITY AS x(v, o),
         pg_catalog.pg_type AS ty
    WHERE ty.oid OPERATOR(pg_catalog.=) status_type
    GROUP BY ty.typtype, ty.oid
$$;
COMMENT ON FUNCTION _stuck_runs_index_predicate(text, text[], regtype) IS
    'The sweep index''s predicate as PostgreSQL prints it back: how stuck_runs_index_ddl() tells a current sweep index from one built by an older release or for other statuses.';
CREATE OR REPLACE FUNCTION stuck_runs_index_ddl(table_name regclass) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    WITH target AS (
        SELECT t.*, n.nspname, c.relname, _stuck_runs_index_name(t.table_name) AS index_name,
               -- NULL: no index of that name; false: one to drop (an interrupted
               -- CREATE INDEX CONCURRENTLY leaves an invalid index behind, which
               -- IF NOT EXISTS would take for done; an older release's predicate
               -- names the enum type and would fail the ORM's next migration of
               -- it); true: current. The built-in table's index is made by its
               -- migration, as the table is.
               (SELECT i.indisvalid
                       AND (t.managed
                            OR (i.indnatts OPERATOR(pg_catalog.=) 1
                                AND i.indexprs IS NULL
                                AND (SELECT a.attname FROM pg_attribute AS a
                                     WHERE a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                                       AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0])
                                    OPERATOR(pg_catalog.=) t.updated_at_column
                                AND pg_catalog.pg_get_expr(i.indpred, i.indrelid) OPERATOR(pg_catalog.=)
                                    _stuck_runs_index_predicate(t.status_column, t.active_statuses,
                                        _stuck_runs_column_type(t.table_name, t.status_column))))
                FROM pg_index AS i JOIN pg_class AS ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
                WHERE i.indrelid OPERATOR(pg_catalog.=) t.table_name AND ic.relname OPERATOR(pg_catalog.=) _stuck_runs_index_name(t.table_name)
               ) AS current
        FROM stuck_runs_tables AS t
        JOIN pg_class AS c ON c.oid OPERATOR(pg_catalog.=) t.table_name
        JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE t.table_name OPERATOR(pg_catalog.=) stuck_runs_index_ddl.table_name
    )
    SELECT pg_catalog.format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', x.nspname, x.index_name)
    FROM target AS x WHERE x.current OPERATOR(pg_catalog.=) false
    UNION ALL
    SELECT pg_catalog.format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON %I.%I (%I) WHERE %s',
                  x.index_name, x.nspname, x.relname, x.updated_at_column,
                  _stuck_runs_status_in(pg_catalog.quote_ident(x.status_column), x.active_statuses,
                                        _stuck_runs_column_type(x.table_name, x.status_column)))
    FROM target AS x WHERE x.current IS DISTINCT FROM true
$$;
COMMENT ON FUNCTION stuck_runs_index_ddl(regclass) IS
    'The statements that give an adopted table its sweep index, in order; none when the index is current. Returned, not run: CONCURRENTLY cannot run inside a function''s transaction, and a plain CREATE INDEX would block the application''s writes.';
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
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name);
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    RETURN forgotten;
END
$$;
COMMENT ON FUNCTION _stuck_runs_forget(text, text) IS
    'Removes the entry of a dropped table, named by the schema and name it was adopted under (what `stuck-runs unadopt --table NAME` calls for a table that is gone); returns how many entries went. Only the role that adopted it (or the registry''s owner) may.';
CREATE OR REPLACE FUNCTION _stuck_runs_mapping_problem(t stuck_runs_tables) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE
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

-- from sql/99_hardening.sql
-- stuck-runs: pin every function's search_path, take EXECUTE away from PUBLIC,
-- and say which GRANTs a role needs to use stuck-runs.
--
-- Naming: the functions a user calls have plain names (recover_stuck_runs,
-- adopt_runs_table, stuck_runs_grant_sql, ...); private helpers start with an
-- underscore (_stuck_runs_*), so that \df stuck_runs.* shows the API at a glance.

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
    -- The sweep index's predicate calls stuck_runs_label() at every write of
    -- an adopted table, by whichever role writes: everyone may execute it, and
    -- it pins nothing (a pinned setting would cost every write a GUC switch
    -- and keep the planner from inlining the text variant). Its bodies name
    -- only pg_catalog.
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace OPERATOR(pg_catalog.=) schema::regnamespace
          AND p.proname OPERATOR(pg_catalog.=) 'stuck_runs_label'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', fn);
    END LOOP;
    -- And a table's owner names it, as schema.stuck_runs_label, in the sweeps
    -- that run as that owner. USAGE lets a role look names up, nothing more:
    -- no table, view or other function of ours is granted to PUBLIC. Only the
    -- schema's owner may grant it; another installer leaves it to them.
    IF (SELECT pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE')
        FROM pg_catalog.pg_namespace AS n WHERE n.oid OPERATOR(pg_catalog.=) schema::regnamespace) THEN
        EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %s TO PUBLIC', schema);
    ELSE
        RAISE NOTICE 'stuck-runs: the owner of schema % should run: GRANT USAGE ON SCHEMA % TO PUBLIC (sweeps of tables other roles own name stuck_runs_label() there)', schema, schema;
    END IF;
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
