-- stuck-runs: doing what recovery does to a table as that table's owner.
--
-- A table's owner may attach code to it: triggers, CHECK functions, generated
-- columns, index expressions, row-level security policies, casts on its types.
-- That code runs as whoever writes or validates the table. A superuser's
-- pg_cron job must therefore never write an application's table as itself:
-- the owner's code would run as the superuser. PostgreSQL's own maintenance
-- (VACUUM, CREATE INDEX, REFRESH MATERIALIZED VIEW) switches to the table's
-- owner for this reason (CVE-2022-1552); stuck-runs does the same.
--
-- Every body here names built-ins as * (and operators as
-- OPERATOR(x) where the operand types have no exact built-in): a
-- role that may create in a schema on the path cannot plant a better match.

CREATE OR REPLACE FUNCTION _stuck_runs_runs_here(table_name regclass) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    -- The owner's code may run with this session's rights when that gives it
    -- nothing new: the owner is a superuser (trusted), or it is this session's
    -- role, current and session user alike (SET ROLE could otherwise be undone
    -- by that code). Row-level security that applies to the caller would hide
    -- rows, and its policies are the owner's code too.
    SELECT (o.rolsuper
            OR (o.rolname OPERATOR(pg_catalog.=) CURRENT_USER
                AND o.rolname OPERATOR(pg_catalog.=) SESSION_USER))
           AND NOT pg_catalog.row_security_active(table_name)
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_roles AS o ON o.oid OPERATOR(pg_catalog.=) c.relowner
    WHERE c.oid OPERATOR(pg_catalog.=) table_name
$$;
COMMENT ON FUNCTION _stuck_runs_runs_here(regclass) IS
    'Whether code attached to the table may run as the current role: only when its owner is a superuser or is this very session''s role. Otherwise recovery writes the table as its owner (_stuck_runs_as_owner).';

CREATE OR REPLACE FUNCTION _stuck_runs_deferred_risk() RETURNS text
LANGUAGE sql STABLE
AS $$
    -- A deferred check fires at COMMIT, after the step and outside the
    -- table's subtransaction: before PostgreSQL 17 as whoever commits (the
    -- caller's rights for the owner's code), and on any version a failure
    -- there loses every table's recovery. The owner's code can queue one on
    -- any deferrable constraint it can reach (through a parent table, a
    -- column grant, another role's function) and defer it again after SET
    -- CONSTRAINTS ALL IMMEDIATE, so no narrower rule holds: while any
    -- non-superuser owns a deferrable constraint or trigger, tables of
    -- untrusted owners are not touched.
    SELECT pg_catalog.string_agg(tg.oid::text, ',' ORDER BY tg.oid)
    FROM pg_catalog.pg_trigger AS tg
    JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) tg.tgrelid
    JOIN pg_catalog.pg_roles AS o ON o.oid OPERATOR(pg_catalog.=) c.relowner
    WHERE tg.tgdeferrable AND NOT o.rolsuper
$$;
COMMENT ON FUNCTION _stuck_runs_deferred_risk() IS
    'The deferrable triggers (user triggers, and those of deferrable UNIQUE, EXCLUDE and FOREIGN KEY constraints) on tables of non-superusers: while there are any, a step as a table''s owner could leave a check to fire at COMMIT, outside that table''s subtransaction. NULL when there are none.';

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
COMMENT ON FUNCTION _stuck_runs_session_state() IS
    'A fingerprint of what a step run as a table''s owner could leave behind in the caller''s session: settings, temporary objects, prepared statements, cursors, LISTEN channels, advisory locks, deferrable triggers of non-superusers.';

CREATE OR REPLACE FUNCTION _stuck_runs_as_owner(
    table_name   regclass,
    statement    text,
    cutoff       timestamptz DEFAULT NULL,
    max_runs     integer     DEFAULT NULL,
    max_attempts integer     DEFAULT NULL,
    older_than   interval    DEFAULT NULL,
    value        text        DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    owner_name name;
    home       text := _stuck_runs_schema();
    before     text;
    after      text;
    result     jsonb;
    locks      text[];
    prepared   text[];
    leftover   record;
BEGIN
    -- statement reads or writes table_name with parameters $1..$5 (the
    -- arguments above, in order) and yields one jsonb value. It names every
    -- object it uses with its schema, and none of stuck-runs' own: the owner
    -- may have no rights on them.
    IF _stuck_runs_runs_here(table_name) THEN
        EXECUTE statement INTO result USING cutoff, max_runs, max_attempts, older_than, value;
        RETURN result;
    END IF;

    SELECT o.rolname INTO owner_name
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_roles AS o ON o.oid OPERATOR(pg_catalog.=) c.relowner
    WHERE c.oid OPERATOR(pg_catalog.=) table_name;
    -- search_path is read here, not in the pinned fingerprint function: a plain
    -- SET by the owner's code overrides this function's pinned path too.
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.concat(pg_catalog.current_setting(''search_path''), '' | '', %s._stuck_runs_session_state())',
        home) INTO before;
    -- What cannot be rolled back (session advisory locks, prepared
    -- statements) is undone by hand if the step adds any.
    SELECT pg_catalog.array_agg(pg_catalog.concat(k.classid, ':', k.objid, ':', k.objsubid, ':', k.mode))
        INTO locks
    FROM pg_catalog.pg_locks AS k
    WHERE k.locktype OPERATOR(pg_catalog.=) 'advisory' AND k.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
    SELECT pg_catalog.array_agg(ps.name) INTO prepared FROM pg_catalog.pg_prepared_statements AS ps;
    IF _stuck_runs_deferred_risk() IS NOT NULL THEN
        RAISE EXCEPTION 'stuck-runs: % was not touched: a non-superuser owns a deferrable constraint or trigger, whose check could be left to fire at COMMIT, outside this table''s step', table_name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('Recover it as %s, its owner.', owner_name);
    END IF;

    -- A function of the owner's, made and dropped inside this transaction (no
    -- other session ever sees it): SECURITY DEFINER runs the step as the owner
    -- and forbids SET ROLE to everything the step calls, so the owner's
    -- triggers cannot become the caller again.
    BEGIN
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION pg_temp._stuck_runs_step(timestamptz, integer, integer, interval, text)'
            ' RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L',
            pg_catalog.format(
                'DECLARE result jsonb; BEGIN'
                ' IF CURRENT_USER OPERATOR(pg_catalog.<>) %L THEN'
                '  RAISE EXCEPTION %L USING ERRCODE = %L; END IF;'
                ' EXECUTE %L INTO result USING $1, $2, $3, $4, $5;'
                -- Deferred constraints and triggers fire here, as the owner,
                -- and a failure stays this table's.
                ' SET CONSTRAINTS ALL IMMEDIATE;'
                ' RETURN result; END',
                owner_name, 'stuck-runs: the step did not run as the table''s owner',
                'insufficient_privilege', statement));
        EXECUTE pg_catalog.format(
            'ALTER FUNCTION pg_temp._stuck_runs_step(timestamptz, integer, integer, interval, text) OWNER TO %I',
            owner_name);
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'stuck-runs: % was not touched: it belongs to %, and % cannot act as that role', table_name, owner_name, CURRENT_USER
                USING ERRCODE = 'insufficient_privilege',
                      HINT = pg_catalog.format('Recover it as %s (or a superuser): its own code must not run as %s.', owner_name, CURRENT_USER);
        WHEN read_only_sql_transaction THEN
            RAISE EXCEPTION 'stuck-runs: % was not touched: it belongs to %, and a read-only transaction cannot act as that role', table_name, owner_name
                USING ERRCODE = 'insufficient_privilege',
                      HINT = pg_catalog.format('Read it as %s, or outside a read-only transaction.', owner_name);
    END;
    EXECUTE pg_catalog.format('SELECT %s($1, $2, $3, $4, $5)', 'pg_temp._stuck_runs_step')
        INTO result USING cutoff, max_runs, max_attempts, older_than, value;
    -- From here on the owner's code may have changed this session's
    -- search_path, which then applies here too: every name below is qualified.
    EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %s(pg_catalog.timestamptz, pg_catalog.int4,'
                              ' pg_catalog.int4, pg_catalog.interval, pg_catalog.text)', 'pg_temp._stuck_runs_step');
    EXECUTE pg_catalog.format(
        'SELECT pg_catalog.concat(pg_catalog.current_setting(''search_path''), '' | '', %s._stuck_runs_session_state())',
        home) INTO after;
    IF after OPERATOR(pg_catalog.<>) before THEN
        FOR leftover IN
            SELECT k.classid, k.objid, k.objsubid, k.mode
            FROM pg_catalog.pg_locks AS k
            WHERE k.locktype OPERATOR(pg_catalog.=) 'advisory'
              AND k.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
              AND pg_catalog.concat(k.classid, ':', k.objid, ':', k.objsubid, ':', k.mode)
                  OPERATOR(pg_catalog.<>) ALL (coalesce(locks, '{}'::pg_catalog.text[]))
        LOOP
            -- A session lock outlives any rollback; a transaction lock is
            -- released with it (the unlock below then just says no).
            FOR i IN 1..1000 LOOP
                EXIT WHEN NOT CASE
                    WHEN leftover.objsubid OPERATOR(pg_catalog.=) 1 AND leftover.mode OPERATOR(pg_catalog.=) 'ShareLock'
                    THEN pg_catalog.pg_advisory_unlock_shared(
                             (leftover.classid::pg_catalog.int8 OPERATOR(pg_catalog.<<) 32)
                             OPERATOR(pg_catalog.|) leftover.objid::pg_catalog.int8)
                    WHEN leftover.objsubid OPERATOR(pg_catalog.=) 1
                    THEN pg_catalog.pg_advisory_unlock(
                             (leftover.classid::pg_catalog.int8 OPERATOR(pg_catalog.<<) 32)
                             OPERATOR(pg_catalog.|) leftover.objid::pg_catalog.int8)
                    WHEN leftover.mode OPERATOR(pg_catalog.=) 'ShareLock'
                    THEN pg_catalog.pg_advisory_unlock_shared(
                             leftover.classid::pg_catalog.int8::pg_catalog.bit(32)::pg_catalog.int4,
                             leftover.objid::pg_catalog.int8::pg_catalog.bit(32)::pg_catalog.int4)
                    ELSE pg_catalog.pg_advisory_unlock(
                             leftover.classid::pg_catalog.int8::pg_catalog.bit(32)::pg_catalog.int4,
                             leftover.objid::pg_catalog.int8::pg_catalog.bit(32)::pg_catalog.int4)
                END;
            END LOOP;
        END LOOP;
        FOR leftover IN
            SELECT ps.name FROM pg_catalog.pg_prepared_statements AS ps
            WHERE ps.name OPERATOR(pg_catalog.<>) ALL (coalesce(prepared, '{}'::pg_catalog.text[]))
        LOOP
            EXECUTE pg_catalog.format('DEALLOCATE %I', leftover.name);
        END LOOP;
        -- Raised inside the caller's per-table subtransaction: the step, and
        -- whatever else it left in the session, is rolled back with it.
        RAISE EXCEPTION 'stuck-runs: code on % (owned by %) changed this session''s settings or objects; its changes were rolled back', table_name, owner_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION _stuck_runs_as_owner(regclass, text, timestamptz, integer, integer, interval, text) IS
    'Runs one statement on a table with its owner''s rights when its code must not run as the caller (see _stuck_runs_runs_here): through a SECURITY DEFINER function owned by the owner that lives only inside this transaction. Refuses (42501) when the caller cannot act as the owner, or when the step changed the session. Callers run it in a subtransaction of their own, so a refusal costs only that table.';
