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

CREATE OR REPLACE FUNCTION _stuck_runs_lives_sql() RETURNS text
LANGUAGE sql STABLE
AS $$
    -- What a sweep needs to know about owners, read without writing: the live
    -- lives and those ended in the last 15 minutes (whose runs are taken at
    -- once; later the threshold takes what is left), life -> 'live' or what
    -- ended it; whether one has ended; and whether one may be silent
    -- (_stuck_runs_silent, less its server checks: stale, and a witness of its
    -- role or the threshold passed), which only the writing path,
    -- _stuck_runs_owner_states(true), may decide. A query's text, not a view:
    -- the fast path (_stuck_runs_quiet_sql) writes it into its own statement,
    -- and a view would need a grant of its own. The settings are read through
    -- scalar subqueries, evaluated only for a stale life: a join would have
    -- the planner guess at row counts.
    SELECT pg_catalog.format($sql$
        SELECT coalesce(pg_catalog.jsonb_object_agg(l.life, CASE WHEN l.ended_at IS NULL THEN 'live'
                            ELSE pg_catalog.format('instance %%s %%s', l.instance, l.end_reason) END), '{}'::pg_catalog.jsonb) AS lives,
               coalesce(pg_catalog.bool_or(l.ended_at IS NOT NULL), false) AS dead,
               coalesce(pg_catalog.bool_or(
                   l.ended_at IS NULL
                   AND l.heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
                                                              (SELECT s.dead_after FROM %1$s.stuck_runs_settings AS s))
                   AND (l.heartbeat_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
                                                               (SELECT s.older_than FROM %1$s.stuck_runs_settings AS s))
                        OR EXISTS (SELECT FROM %1$s.stuck_runs_lives AS m
                                   WHERE m.started_by OPERATOR(pg_catalog.=) l.started_by AND m.life OPERATOR(pg_catalog.<>) l.life
                                     AND m.heartbeat_at OPERATOR(pg_catalog.>) (l.heartbeat_at OPERATOR(pg_catalog.+)
                                                                                (SELECT s.dead_after FROM %1$s.stuck_runs_settings AS s))))), false) AS silent
        FROM %1$s.stuck_runs_lives AS l
        WHERE l.ended_at IS NULL
           OR l.ended_at OPERATOR(pg_catalog.>) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) interval '15 minutes')$sql$,
        _stuck_runs_schema())
$$;
COMMENT ON FUNCTION _stuck_runs_lives_sql() IS
    'The query a sweep reads the owners'' lives with: lives (life -> live or why it ended, for the live ones and those ended in the last 15 minutes), dead (any has ended) and silent (one may be silent and must first be ended by _stuck_runs_owner_states(true)).';

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
