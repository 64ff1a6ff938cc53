-- 0004: a superuser's recovery never runs code that a table's owner or a schema's other users wrote.
--   * What recovery does to an adopted table (sweep, resume, adoption's CHECK test and
--     sample) it does as the table's owner: through a SECURITY DEFINER function owned by
--     the owner that exists only inside the calling transaction, unless the owner is a
--     superuser or the caller's own session role. A caller that cannot act as the owner
--     gets a WARNING for that table; the others are still recovered.
--   * Reads (probe, views, list) run no owner code: no casts of the table's types, and a
--     table whose row-level security applies to the reader is left out with a WARNING.
--   * Every built-in function and every operator whose operand types lack an exact
--     built-in is named pg_catalog.*, in the bodies and in the SQL they build: creating
--     objects in the install schema (public) gives no one a better match.
--   * The registry records who adopted each table; an entry is swept only while that role
--     could still adopt it. Entries older than 0003 (when adoption began to check the
--     owner) have no known adopter and wait for `migrate --adopt` to confirm them.
--   * Audit rows are stamped with their writer and time, whatever the INSERT says.
-- Landed migrations are immutable (tests/test_migrations.py checks their checksums).
-- depends: 0003_beside_the_app

ALTER TABLE stuck_runs_tables ADD COLUMN adopted_by regrole;
COMMENT ON COLUMN stuck_runs_tables.adopted_by IS
    'The role that registered the table (set by the registry''s trigger): the entry is swept only while that role could still adopt the table. NULL for entries older than 0.3, which wait for `stuck-runs migrate --adopt` to confirm them.';

-- Entries written since 0003 passed its owner check: their owner stands in for the
-- adopter. Earlier ones (0.1 let any role with EXECUTE register any table) stay NULL.
ALTER TABLE stuck_runs_tables DISABLE TRIGGER _stuck_runs_tables_check;
DO $adopter$
DECLARE
    since timestamptz;
BEGIN
    IF pg_catalog.to_regclass(pg_catalog.format('%I._yoyo_migration', pg_catalog.current_schema())) IS NOT NULL THEN
        EXECUTE 'SELECT pg_catalog.min(m.applied_at_utc) AT TIME ZONE ''UTC'' FROM _yoyo_migration AS m'
                ' WHERE m.migration_id OPERATOR(pg_catalog.=) ''0003_beside_the_app'''
            INTO since;
    END IF;
    UPDATE stuck_runs_tables AS t
    SET adopted_by = c.relowner::regrole
    FROM pg_catalog.pg_class AS c
    WHERE c.oid OPERATOR(pg_catalog.=) t.table_name
      AND (t.managed OR t.adopted_at OPERATOR(pg_catalog.>=) since);
END
$adopter$;
ALTER TABLE stuck_runs_tables ENABLE TRIGGER _stuck_runs_tables_check;

CREATE OR REPLACE FUNCTION _stuck_runs_positive(threshold interval) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    -- Not just threshold > 0: intervals compare as if a month were 30 days and
    -- a year 360, so '-1 year 361 days' is "positive" while now() minus it lies
    -- days in the future, where it would make every active run stuck. Every
    -- part (months, days, time) must be >= 0, and one of them > 0.
    SELECT threshold OPERATOR(pg_catalog.>) interval '0'
           AND pg_catalog.date_part('year', threshold) OPERATOR(pg_catalog.>=) 0
           AND pg_catalog.date_part('month', threshold) OPERATOR(pg_catalog.>=) 0
           AND pg_catalog.date_part('day', threshold) OPERATOR(pg_catalog.>=) 0
           AND threshold OPERATOR(pg_catalog.-) pg_catalog.date_trunc('day', threshold)
               OPERATOR(pg_catalog.>=) interval '0'
$$;
COMMENT ON FUNCTION _stuck_runs_positive(interval) IS
    'Whether a threshold lies in the past whatever the calendar: every part of it (months, days, time) at least zero, and the whole more than zero.';

-- A threshold such as '-1 year 361 days' passed the old check and made every
-- active run stuck: such a setting goes back to the default, loudly.
DO $threshold$
BEGIN
    IF EXISTS (SELECT FROM stuck_runs_settings AS s WHERE NOT _stuck_runs_positive(s.older_than)) THEN
        RAISE WARNING 'stuck-runs: the threshold in stuck_runs_settings lies in the future on some calendar days; it is reset to 5 minutes';
        UPDATE stuck_runs_settings SET older_than = interval '5 minutes';
    END IF;
END
$threshold$;
ALTER TABLE stuck_runs_settings
    ADD CONSTRAINT stuck_runs_settings_older_than_parts CHECK (_stuck_runs_positive(older_than));

CREATE OR REPLACE FUNCTION _stuck_runs_schema() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT c.relnamespace::regnamespace::text FROM pg_catalog.pg_class AS c
    WHERE c.oid OPERATOR(pg_catalog.=) 'stuck_runs_settings'::regclass
$$;
COMMENT ON FUNCTION _stuck_runs_schema() IS
    'The schema stuck-runs lives in, quoted as needed: inside a function with a pinned search_path, current_schema() is pg_catalog.';

CREATE OR REPLACE FUNCTION _stuck_runs_audit_stamp() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Who and when are never the writer's word: a role allowed to recover
    -- could otherwise file rows in another role's name, or in the past.
    NEW.recovered_by := CURRENT_USER::text;
    NEW.recovered_at := pg_catalog.now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION _stuck_runs_audit_stamp() IS
    'Stamps every audit row with the role that wrote it and the time of its transaction, whatever the INSERT said.';
DROP TRIGGER IF EXISTS _stuck_runs_audit_stamp ON run_recoveries;
CREATE TRIGGER _stuck_runs_audit_stamp BEFORE INSERT ON run_recoveries
    FOR EACH ROW EXECUTE FUNCTION _stuck_runs_audit_stamp();

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
        -- Deferrable triggers of non-superusers (see _stuck_runs_deferred_risk()):
        -- one made during the step could have been queued by it.
        (SELECT pg_catalog.string_agg(tg.oid::pg_catalog.text, ',' ORDER BY tg.oid)
         FROM pg_catalog.pg_trigger AS tg
         JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) tg.tgrelid
         JOIN pg_catalog.pg_roles AS o ON o.oid OPERATOR(pg_catalog.=) c.relowner
         WHERE tg.tgdeferrable AND NOT o.rolsuper)
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

CREATE OR REPLACE FUNCTION _stuck_runs_status_in(status_sql text, statuses text[], status_type regtype)
RETURNS text
LANGUAGE sql STABLE
AS $$
    -- What `status IN ('PENDING', 'PROCESSING')` means, spelled so that only
    -- pg_catalog's = can be chosen (an enum's owner, or whoever may create in a
    -- schema on the path, could otherwise offer a better-matching = of its
    -- own). PostgreSQL prints it exactly as it prints that IN list, so the
    -- partial index of every release matches it, and so does Prisma's @@index.
    -- Literals, because the planner matches a partial index only against them.
    SELECT pg_catalog.format('%s OPERATOR(pg_catalog.=) ANY (ARRAY[%s])', status_sql,
               pg_catalog.string_agg(pg_catalog.format('%L::%s', v,
                   CASE WHEN ty.typtype OPERATOR(pg_catalog.=) 'e' THEN pg_catalog.format_type(ty.oid, NULL)
                        ELSE 'pg_catalog.text' END), ', ' ORDER BY o))
    FROM pg_catalog.unnest(statuses) WITH ORDINALITY AS x(v, o),
         pg_catalog.pg_type AS ty
    WHERE ty.oid OPERATOR(pg_catalog.=) status_type
$$;
COMMENT ON FUNCTION _stuck_runs_status_in(text, text[], regtype) IS
    'SQL text of "this status is one of these": the condition the sweeps, the views and the sweep index share.';

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

CREATE OR REPLACE FUNCTION stuck_runs_index_ddl(table_name regclass) RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    WITH target AS (
        SELECT t.*, n.nspname, c.relname, _stuck_runs_index_name(t.table_name) AS index_name,
               (SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
                WHERE i.indrelid OPERATOR(pg_catalog.=) t.table_name AND ic.relname OPERATOR(pg_catalog.=) _stuck_runs_index_name(t.table_name)
               ) AS valid
        FROM stuck_runs_tables AS t
        JOIN pg_class AS c ON c.oid OPERATOR(pg_catalog.=) t.table_name
        JOIN pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE t.table_name OPERATOR(pg_catalog.=) stuck_runs_index_ddl.table_name
    )
    -- An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index behind,
    -- which IF NOT EXISTS would take for done: drop it first.
    SELECT pg_catalog.format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', x.nspname, x.index_name)
    FROM target AS x WHERE x.valid OPERATOR(pg_catalog.=) false
    UNION ALL
    SELECT pg_catalog.format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON %I.%I (%I) WHERE %s',
                  x.index_name, x.nspname, x.relname, x.updated_at_column,
                  _stuck_runs_status_in(pg_catalog.quote_ident(x.status_column), x.active_statuses,
                                        _stuck_runs_column_type(x.table_name, x.status_column)))
    FROM target AS x WHERE x.valid IS DISTINCT FROM true
$$;
COMMENT ON FUNCTION stuck_runs_index_ddl(regclass) IS
    'The statements that give an adopted table its sweep index, in order; none when the index exists. Returned, not run: CONCURRENTLY cannot run inside a function''s transaction, and a plain CREATE INDEX would block the application''s writes.';

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

CREATE OR REPLACE FUNCTION _stuck_runs_tables_check() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
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
        THEN pg_catalog.format('%s was dropped (or dropped and re-created): recovery no longer covers it; adopt it again',
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

CREATE OR REPLACE FUNCTION stuck_runs_sweep_sql(t stuck_runs_tables) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    -- Parameters of the statement: $1 cutoff (timestamptz), $2 limit,
    -- $3 max_attempts, $4 older_than. It may run as the table's owner
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
        $msg$pg_catalog.left(pg_catalog.concat('Recovered as stuck by stuck-runs: ', c.status, ' with no sign of life for ', coalesce(CASE WHEN pg_catalog.isfinite(c.touched) THEN pg_catalog.date_trunc('second', pg_catalog.now() OPERATOR(pg_catalog.-) c.touched)::text END, 'an unknown time'), ' (threshold ', $4::text, ')', %s), %s)$msg$,
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
            SELECT r.ctid AS row_id, %2$s AS status, %3$s AS touched, %13$s AS requeue
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
                      %12$s AS attempts, c.requeue
        )
        -- Only runs that took the status recovery wrote: one a trigger kept
        -- active is not reported, audited or counted against the batch.
        SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(c)) FROM changed AS c
        WHERE c.action OPERATOR(pg_catalog.=) CASE WHEN c.requeue THEN 'requeued' ELSE 'failed' END
        $sql$,
        _stuck_runs_text_sql(t.id_column), _stuck_runs_text_sql(t.status_column), _stuck_runs_touched_sql(t),
        qualified, _stuck_runs_stuck_sql(t, '$1'), t.updated_at_column,
        pg_catalog.array_to_string(sets, ', '),
        _stuck_runs_count_sql(t.completed_column), _stuck_runs_count_sql(t.total_column),
        _stuck_runs_time_sql(t, t.created_at_column),
        t.failed_status,
        _stuck_runs_count_sql(t.attempts_column), requeue);
END
$$;
COMMENT ON FUNCTION stuck_runs_sweep_sql(stuck_runs_tables) IS
    'Builds the one statement that recovers the stuck runs of one registered table: lock candidates skipping busy rows, re-check state in the UPDATE, return the changed runs as jsonb. Identifiers go through %I, values through %L or parameters. SELECT t.table_name, stuck_runs_sweep_sql(t) FROM stuck_runs_tables AS t shows exactly what runs.';

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
    lock_wait text := pg_catalog.current_setting('lock_timeout');
    covered   integer := 0;
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

    -- For each table: probe, sweep, collect. A table that fails (altered under
    -- us, locked, a row that a trigger or a CHECK refuses, a value out of
    -- range, an owner this role may not act as) is rolled back alone and
    -- reported; the other tables are still recovered.
    FOR t IN SELECT * FROM _stuck_runs_covered LOOP
        covered := covered OPERATOR(pg_catalog.+) 1;
        EXIT WHEN max_runs IS NOT NULL AND pg_catalog.cardinality(runs) OPERATOR(pg_catalog.>=) max_runs;
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
                                          max_runs OPERATOR(pg_catalog.-) pg_catalog.cardinality(runs),
                                          max_attempts, older_than)) AS j;
            -- The audit is written by this role, never by the owner's step.
            INSERT INTO run_recoveries
                (table_name, run_id, previous_status, completed, total, age, idle, older_than, action)
            SELECT u.table_name, u.run_id, u.previous_status, u.completed, u.total, u.age, u.idle,
                   older_than, u.action
            FROM pg_catalog.unnest(swept) AS u;
            runs := runs OPERATOR(pg_catalog.||) coalesce(swept, '{}'::stuck_runs_recovered_run[]);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stuck-runs: % was not swept: %', t.table_name, SQLERRM
                USING DETAIL = pg_catalog.format('SQLSTATE %s; the other tables were recovered.', SQLSTATE);
        END;
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
COMMENT ON FUNCTION recover_stuck_runs(interval, integer, integer) IS
    'Marks FAILED every active run, in every adopted table, with no sign of life (updated_at) for longer than older_than, keeping its progress; returns one row per run this call changed, with the status it has now, and audits each in run_recoveries. Each table is written as its owner (or by its owner''s own session), so code on the table never runs with the caller''s rights. Rows locked by a worker are skipped, never waited on; max_runs bounds one call for batching big backlogs; with max_attempts a run with retries left goes back to its first active status instead (action requeued). A table that cannot be swept raises a WARNING naming it and does not stop the others. Sends one NOTIFY stuck_runs_recovered per call that changed anything.';

CREATE OR REPLACE FUNCTION stuck_runs_job_sql(older_than text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- pg_cron runs the job with the default search_path, so it names the schema.
    IF older_than IS NOT NULL AND NOT _stuck_runs_positive(older_than::interval) THEN
        RAISE EXCEPTION 'stuck_runs_job_sql: older_than must be a positive interval, got %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Every argument typed: an exact match, which no overload planted beside
    -- it (in public, say) can beat or make ambiguous.
    RETURN pg_catalog.format('SELECT * FROM %1$s.recover_stuck_runs(%2$s, NULL::integer, NULL::integer)',
                  _stuck_runs_schema(),
                  CASE WHEN older_than IS NULL THEN pg_catalog.format('%s._stuck_runs_threshold()', _stuck_runs_schema())
                       ELSE pg_catalog.format('%L::interval', older_than) END);
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
LANGUAGE plpgsql VOLATILE
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
COMMENT ON FUNCTION _stuck_runs_list(interval) IS
    'Active runs of every adopted table, all of them (NULL) or only those idle for longer than the given interval: the body of the active_runs and stuck_runs views. Reads a table as its owner where the owner''s code may not run as the reader; a table that cannot be read that way raises a WARNING and is left out.';

CREATE OR REPLACE VIEW active_runs AS
SELECT l.table_name, l.run_id, l.status, l.completed, l.total, l.age, l.idle,
       l.idle OPERATOR(pg_catalog.>) _stuck_runs_threshold() AS stuck
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
             ELSE pg_catalog.format(', %I = r.%I OPERATOR(pg_catalog.+) 1', t.attempts_column, t.attempts_column) END,
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

CREATE OR REPLACE FUNCTION qualification_runs_touch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.status IN ('PENDING', 'PROCESSING')
       AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        -- When the write happens, not when its transaction began: a worker
        -- reporting progress inside a long transaction is alive now.
        NEW.updated_at := pg_catalog.clock_timestamp();
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
    SELECT coalesce(pg_catalog.array_agg(c.name ORDER BY c.ord), '{}'::text[])
    FROM pg_catalog.unnest(ARRAY['id', 'status', 'total', 'completed', 'created_at', 'updated_at',
                      'completed_at', 'error']) WITH ORDINALITY AS c(name, ord)
    WHERE _stuck_runs_column_type(table_name, c.name) IS NULL
$$;
COMMENT ON FUNCTION _stuck_runs_builtin_missing_columns(regclass) IS
    'Which of the built-in table''s columns an existing qualification_runs lacks: none means it can be adopted as it is; otherwise `stuck-runs migrate` proposes an adopt command with its own names.';

-- Replaced by _stuck_runs_status_in().
DROP FUNCTION _stuck_runs_literals(text[]);

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
    SELECT pg_catalog.format('GRANT USAGE ON SCHEMA %s TO %I', _stuck_runs_schema(), role_name)
    UNION ALL
    SELECT pg_catalog.format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %s TO %I', _stuck_runs_schema(), role_name)
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
COMMENT ON FUNCTION stuck_runs_grant_sql(text) IS
    'The exact GRANT statements a role needs to recover, list and resume runs with stuck-runs (run them as the owner): SELECT * FROM stuck_runs_grant_sql(''app'').';

-- A DO block: yoyo would print a SELECT's result.
DO $harden$ BEGIN PERFORM stuck_runs_harden(); END $harden$;
