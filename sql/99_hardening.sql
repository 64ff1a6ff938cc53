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

-- A DO block: yoyo would print a SELECT's result.
DO $harden$ BEGIN PERFORM stuck_runs_harden(); END $harden$;
