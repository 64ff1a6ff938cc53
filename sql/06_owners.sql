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
    ended_at     timestamptz,
    end_reason   text CHECK (end_reason IN ('restarted', 'stopped heartbeating')),
    cleared_at   timestamptz
) WITH (fillfactor = 50);
COMMENT ON TABLE stuck_runs_lives IS
    'One row per life of an application instance: started by stuck_runs_start(), kept alive by stuck_runs_heartbeat(), ended by a newer life of the same instance or by silence longer than stuck_runs_settings.dead_after. cleared_at: no active run names the ended life any more, so sweeps stop looking for it. Row-level security: every role reads every life (a sweep must know who is alive), only the role that started a life (or may act as it) keeps it alive or ends it, and any role may end a life only once it is silent. fillfactor 50 leaves room on each page, so a heartbeat is a HOT update.';
CREATE INDEX IF NOT EXISTS stuck_runs_lives_instance_idx ON stuck_runs_lives (instance);

CREATE OR REPLACE FUNCTION _stuck_runs_may_speak_for(started_by oid) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    -- The role that started a life (or one that may act as it: the runner's
    -- role at a deploy, a superuser) may end it or heartbeat it. The current
    -- role, not the session's: code of a table's owner that runs during a
    -- superuser's sweep runs as that owner, and speaks for its lives only.
    SELECT coalesce((SELECT pg_catalog.pg_has_role(CURRENT_USER, o.oid, 'MEMBER')
                     FROM pg_catalog.pg_roles AS o WHERE o.oid OPERATOR(pg_catalog.=) started_by), false)
$$;
COMMENT ON FUNCTION _stuck_runs_may_speak_for(oid) IS
    'Whether the current role may end or heartbeat a life started by the given role: only that role, its members, or a superuser.';

CREATE OR REPLACE FUNCTION _stuck_runs_silent(heartbeat_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    -- No heartbeat for dead_after, by the database's clock; and not right
    -- after a restart of the server, which makes every heartbeat stale at
    -- once: that is no death.
    SELECT heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.dead_after)
           AND (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) pg_catalog.pg_postmaster_start_time())
               OPERATOR(pg_catalog.>) s.dead_after
    FROM stuck_runs_settings AS s
$$;
COMMENT ON FUNCTION _stuck_runs_silent(timestamptz) IS
    'Whether a life with this last heartbeat is silent: no heartbeat for dead_after, counted only once the server has been up for dead_after.';

CREATE OR REPLACE FUNCTION _stuck_runs_lives_fixed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Whoever may update a row (its role, or anyone ending it once silent)
    -- changes its state, never whose life it is.
    IF (NEW.life, NEW.instance, NEW.started_by, NEW.started_at)
       IS DISTINCT FROM (OLD.life, OLD.instance, OLD.started_by, OLD.started_at) THEN
        RAISE EXCEPTION 'stuck-runs: a life''s name, instance, role and start never change'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION _stuck_runs_lives_fixed() IS
    'Keeps a life''s identity (token, instance, role, start) as it was started: row-level security lets any role end a silent life, and that must not let it take the life over.';
DROP TRIGGER IF EXISTS _stuck_runs_lives_fixed ON stuck_runs_lives;
CREATE TRIGGER _stuck_runs_lives_fixed BEFORE UPDATE ON stuck_runs_lives
    FOR EACH ROW EXECUTE FUNCTION _stuck_runs_lives_fixed();

ALTER TABLE stuck_runs_lives ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS stuck_runs_lives_read ON stuck_runs_lives;
CREATE POLICY stuck_runs_lives_read ON stuck_runs_lives FOR SELECT USING (true);
DROP POLICY IF EXISTS stuck_runs_lives_start ON stuck_runs_lives;
CREATE POLICY stuck_runs_lives_start ON stuck_runs_lives FOR INSERT
    WITH CHECK (started_by OPERATOR(pg_catalog.=) (SELECT o.oid FROM pg_catalog.pg_roles AS o
                                                   WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER));
DROP POLICY IF EXISTS stuck_runs_lives_own ON stuck_runs_lives;
CREATE POLICY stuck_runs_lives_own ON stuck_runs_lives FOR UPDATE
    USING (_stuck_runs_may_speak_for(started_by));
DROP POLICY IF EXISTS stuck_runs_lives_end ON stuck_runs_lives;
CREATE POLICY stuck_runs_lives_end ON stuck_runs_lives FOR UPDATE
    USING (ended_at IS NOT NULL OR _stuck_runs_silent(heartbeat_at))
    WITH CHECK (ended_at IS NOT NULL);
DROP POLICY IF EXISTS stuck_runs_lives_forget ON stuck_runs_lives;
CREATE POLICY stuck_runs_lives_forget ON stuck_runs_lives FOR DELETE
    USING (cleared_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '7 days'));

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
    -- Two processes starting under one name at once are serialised: each new
    -- life ends the lives before it, never one that began after it.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('stuck_runs_lives'), pg_catalog.hashtext(instance));
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
        UPDATE stuck_runs_lives AS l SET heartbeat_at = pg_catalog.clock_timestamp()
        WHERE l.life OPERATOR(pg_catalog.=) life;
        RETURN 'alive';
    END IF;
    -- A new life (or, with life NULL, a deploy announcing one): every earlier
    -- life of the name is over, and its runs are recovered by the sweep that
    -- follows in the same call.
    UPDATE stuck_runs_lives AS l
    SET ended_at = pg_catalog.clock_timestamp(),
        end_reason = 'restarted'
    WHERE l.instance OPERATOR(pg_catalog.=) instance AND l.ended_at IS NULL
      AND _stuck_runs_may_speak_for(l.started_by);
    IF life IS NOT NULL THEN
        INSERT INTO stuck_runs_lives (life, instance, started_by)
        VALUES (life, instance, (SELECT o.oid FROM pg_catalog.pg_roles AS o WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER));
    END IF;
    RETURN 'started';
END
$$;
COMMENT ON FUNCTION _stuck_runs_begin_life(text, text) IS
    'Records a new life of an instance and ends every earlier life of that name the caller may speak for (life NULL: ends them only, for a deploy step that runs before the app). The same life again changes nothing. Returns started, alive or fenced (that life is already over).';

CREATE OR REPLACE FUNCTION _stuck_runs_beat(life text) RETURNS text
LANGUAGE sql VOLATILE
AS $$
    -- One HOT update (heartbeat_at is in no index) when the life is alive.
    WITH beat AS (
        UPDATE stuck_runs_lives AS l SET heartbeat_at = pg_catalog.clock_timestamp()
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
    'Moves a live life''s heartbeat to the database''s clock: alive; fenced when the life is over (its runs were or will be recovered: the process must stop working on them); unknown when no such life was started.';

CREATE OR REPLACE FUNCTION _stuck_runs_owner_states(end_silent boolean, OUT lives jsonb, OUT dead boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
BEGIN
    -- Silent lives end here, at the sweep (no clock of the application's).
    -- The UPDATE finds nothing to write while every instance heartbeats.
    IF end_silent THEN
        UPDATE stuck_runs_lives AS l
        SET ended_at = pg_catalog.clock_timestamp(), end_reason = 'stopped heartbeating'
        WHERE l.ended_at IS NULL AND _stuck_runs_silent(l.heartbeat_at);
    END IF;
    -- Live lives, and ended ones whose runs may still be active: life ->
    -- 'live' or what ended it. The views (end_silent false) take silent lives
    -- as ended, so they show what the next sweep will do.
    SELECT coalesce(pg_catalog.jsonb_object_agg(l.life, CASE
               WHEN l.ended_at IS NOT NULL THEN pg_catalog.format('instance %s %s', l.instance, l.end_reason)
               WHEN _stuck_runs_silent(l.heartbeat_at) THEN pg_catalog.format('instance %s stopped heartbeating', l.instance)
               ELSE 'live' END), '{}'::jsonb),
           coalesce(pg_catalog.bool_or(l.ended_at IS NOT NULL OR _stuck_runs_silent(l.heartbeat_at)), false)
        INTO lives, dead
    FROM stuck_runs_lives AS l
    WHERE l.cleared_at IS NULL;
END
$$;
COMMENT ON FUNCTION _stuck_runs_owner_states(boolean) IS
    'What the sweep needs to know about owners, as one jsonb: every life not yet cleared, mapped to ''live'' or to why it ended; dead says whether any has ended. With end_silent, first ends the lives that are silent (_stuck_runs_silent). SECURITY DEFINER: any role that may recover reads every life and ends silent ones (what row-level security lets anyone do), without grants on the lives table.';

CREATE OR REPLACE FUNCTION _stuck_runs_clear_lives(cleared text[]) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
AS $$
    -- Ended lives no active run names any more: sweeps stop scanning for them.
    UPDATE stuck_runs_lives AS l SET cleared_at = pg_catalog.clock_timestamp()
    WHERE l.life OPERATOR(pg_catalog.=) ANY ($1) AND l.ended_at IS NOT NULL AND l.cleared_at IS NULL;
    -- A cleared life is kept a week, so that a zombie's heartbeat hears it is
    -- fenced; after that it hears unknown, which means the same.
    DELETE FROM stuck_runs_lives AS l
    WHERE l.cleared_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '7 days');
$$;
COMMENT ON FUNCTION _stuck_runs_clear_lives(text[]) IS
    'Marks ended lives as cleared once a sweep found no active run of theirs in any covered table, and forgets lives cleared a week ago.';

CREATE OR REPLACE FUNCTION _stuck_runs_owner_sql(t stuck_runs_tables) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    -- The owner's state for row r, from the lives the caller passed as $5
    -- (jsonb text): 'live', why its life ended, or NULL (no owner, or a life
    -- stuck-runs does not know: the threshold decides). The owner column is
    -- read through its type's output function, never a cast.
    SELECT pg_catalog.format('($5::pg_catalog.jsonb OPERATOR(pg_catalog.->>) pg_catalog.format(''%%s'', r.%I))',
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

CREATE OR REPLACE FUNCTION _stuck_runs_owned_runs(lives jsonb DEFAULT '{}'::jsonb)
RETURNS TABLE (table_name text, run_id text, owner text, state text)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
    t    stuck_runs_tables;
    rows jsonb;
BEGIN
    -- Active runs that name an owner, in every covered table with an owner
    -- column, read as each table's owner (its code may run as it is read).
    -- A table that cannot be read raises; callers decide what that means.
    FOR t IN SELECT * FROM _stuck_runs_covered AS c WHERE c.owner_column IS NOT NULL LOOP
        rows := _stuck_runs_as_owner(t.table_name, pg_catalog.format(
            'SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(%s, pg_catalog.format(''%%s'', r.%I), %s))'
            ' FROM %s AS r WHERE %s AND r.%I IS NOT NULL',
            _stuck_runs_text_sql(t.id_column), t.owner_column, _stuck_runs_owner_sql(t),
            _stuck_runs_qualified_name(t.table_name),
            _stuck_runs_status_in('r.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.status_column),
                                  t.active_statuses, _stuck_runs_column_type(t.table_name, t.status_column)),
            t.owner_column), value => lives::text);
        RETURN QUERY SELECT t.table_name::text, e OPERATOR(pg_catalog.->>) 0, e OPERATOR(pg_catalog.->>) 1,
                            e OPERATOR(pg_catalog.->>) 2
                     FROM pg_catalog.jsonb_array_elements(coalesce(rows, '[]'::jsonb)) AS e;
    END LOOP;
END
$$;
COMMENT ON FUNCTION _stuck_runs_owned_runs(jsonb) IS
    'Every active run that names an owner, with the owner''s state in the given lives (live, why it ended, or NULL for a life stuck-runs does not know), read as each table''s owner.';

CREATE OR REPLACE FUNCTION _stuck_runs_dead_owners_left(lives jsonb) RETURNS text[]
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    -- Ended lives that still own an active run somewhere (locked by a zombie
    -- that outlived its life, say); NULL when a table could not be read, so
    -- that no life is cleared on a guess.
    RETURN ARRAY(SELECT DISTINCT o.owner FROM _stuck_runs_owned_runs(lives) AS o
                 WHERE coalesce(o.state, 'live') OPERATOR(pg_catalog.<>) 'live');
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION _stuck_runs_dead_owners_left(jsonb) IS
    'The ended lives that still own an active run in a covered table, or NULL when some table could not be read.';

CREATE OR REPLACE FUNCTION _stuck_runs_deaths_due() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
AS $$
    SELECT EXISTS (SELECT FROM stuck_runs_lives AS l
                   WHERE l.cleared_at IS NULL AND (l.ended_at IS NOT NULL OR _stuck_runs_silent(l.heartbeat_at)))
$$;
COMMENT ON FUNCTION _stuck_runs_deaths_due() IS
    'Whether some life has ended, or gone silent for dead_after, and its runs may still need recovering: when a heartbeat also sweeps.';

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
BEGIN
    state := _stuck_runs_beat(life);
    recovered := 0;
    -- Someone else died (or this very life was declared dead): any live
    -- instance's heartbeat is a sweep, so a death is acted on within one
    -- heartbeat interval of dead_after, without pg_cron.
    IF _stuck_runs_deaths_due() THEN
        BEGIN
            SELECT pg_catalog.count(*)::integer INTO recovered FROM recover_stuck_runs(max_runs => 1000) AS r;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'stuck-runs: the heartbeat''s sweep failed: %', SQLERRM
                USING DETAIL = pg_catalog.format('SQLSTATE %s; the heartbeat itself was recorded.', SQLSTATE);
            recovered := NULL;
        END;
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION stuck_runs_heartbeat(text) IS
    'Called by a live instance every few seconds (well under dead_after): records the heartbeat of its life (one HOT update) and says whether the life is alive, fenced (it has ended: its runs were or will be recovered, so the process must stop working on them) or unknown. When some life has ended or gone silent, it also sweeps (at most 1000 runs) and says how many runs it recovered.';

CREATE OR REPLACE FUNCTION _stuck_runs_hold_life(life text) RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    -- FOR SHARE: a sweep that ends this life waits for the write it guards to
    -- commit, and then sees the run it claimed.
    SELECT coalesce((SELECT true FROM stuck_runs_lives AS l
                     WHERE l.life OPERATOR(pg_catalog.=) $1 AND l.ended_at IS NULL
                       AND _stuck_runs_may_speak_for(l.started_by)
                     FOR SHARE), false)
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
LANGUAGE sql STABLE SECURITY DEFINER
AS $$
    SELECT l.instance, l.life,
           CASE WHEN l.ended_at IS NOT NULL THEN 'ended' WHEN _stuck_runs_silent(l.heartbeat_at) THEN 'silent'
                ELSE 'live' END,
           l.started_at, l.heartbeat_at, l.ended_at, l.end_reason
    FROM stuck_runs_lives AS l
    WHERE l.cleared_at IS NULL OR l.ended_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '1 day')
$$;
COMMENT ON FUNCTION _stuck_runs_instances() IS
    'The lives of the last day and those still of interest, for the stuck_runs_instances view.';

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
