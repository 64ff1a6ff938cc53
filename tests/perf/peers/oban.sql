-- Oban's job table and its Lifeline plugin's rescue, for tests/perf/bench_peers.py.
--
-- Source:   https://github.com/oban-bg/oban (commit 2939e3134d0812195fbfcfe9a8e8d4bbd30bb23b,
--           version 2.23.0 in mix.exs)
-- Files:    lib/oban/migrations/postgres/v01.ex ... v14.ex (schema),
--           lib/oban/lifeline.ex (the plugin: rescue_after defaults to 60 minutes),
--           lib/oban/engines/basic.ex, rescue_jobs/3 (the two queries).
-- Licence:  Apache License 2.0 (Oban's LICENSE.txt).
--
-- Oban writes neither its migrations nor its rescue in SQL: both are Ecto. The schema
-- below is the net effect of migrations v01 to v14 on oban_jobs, written out as the DDL
-- Ecto emits for them (:map -> jsonb, :utc_datetime_usec -> timestamp without time zone,
-- index names as Ecto derives them); oban_peers (v11) is left out. Changes undone by a
-- later migration (the v01 notify trigger, dropped by v12; the v01/v02/v05/v07 indexes,
-- dropped by v05/v08/v10) are left out.
--
-- The rescue (Oban.Engines.Basic.rescue_jobs/3), Ecto:
--     base = where(Job, [j], j.state == "executing" and j.attempted_at < ^cut)
--            |> select([j], map(j, [:id, :queue, :state]))
--     Repo.update_all(where(base, [j], j.attempt < j.max_attempts), set: [state: "available"])
--     Repo.update_all(where(base, [j], j.attempt >= j.max_attempts),
--                     set: [state: "discarded", discarded_at: now])
-- run in one transaction by the Lifeline plugin (Repo.transaction). The two statements
-- below are those queries written out in the form Ecto's PostgreSQL adapter gives them
-- (literals inline, SET values and ^pinned values as parameters, the select as RETURNING);
-- they were not captured from a running Oban, so spacing and parentheses may differ.
-- cut = now - rescue_after (60 minutes by default), now = the current UTC time.

-- bench: schema
CREATE TYPE oban_job_state AS ENUM (
  'available',
  'suspended',
  'scheduled',
  'executing',
  'retryable',
  'completed',
  'discarded',
  'cancelled'
);

CREATE TABLE oban_jobs (
  id bigserial PRIMARY KEY,
  state oban_job_state NOT NULL DEFAULT 'available',
  queue text NOT NULL DEFAULT 'default',
  worker text NOT NULL,
  args jsonb NOT NULL DEFAULT '{}',
  errors jsonb[] NOT NULL DEFAULT ARRAY[]::jsonb[],
  attempt integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 20,
  inserted_at timestamp NOT NULL DEFAULT timezone('UTC', now()),
  scheduled_at timestamp NOT NULL DEFAULT timezone('UTC', now()),
  attempted_at timestamp,
  completed_at timestamp,
  attempted_by text[],                                   -- v03
  discarded_at timestamp,                                -- v08
  priority integer NOT NULL DEFAULT 0,                   -- v08, NOT NULL since v10
  tags text[] DEFAULT ARRAY[]::text[],                   -- v08
  meta jsonb DEFAULT '{}',                               -- v09
  cancelled_at timestamp                                 -- v09
);

-- v02
ALTER TABLE oban_jobs ADD CONSTRAINT worker_length
  CHECK (char_length(worker) > 0 AND char_length(worker) < 128);
ALTER TABLE oban_jobs ADD CONSTRAINT queue_length
  CHECK (char_length(queue) > 0 AND char_length(queue) < 128);

-- v08 (and v09)
CREATE INDEX IF NOT EXISTS oban_jobs_state_queue_priority_scheduled_at_id_index
  ON oban_jobs (state, queue, priority, scheduled_at, id);

-- v10
ALTER TABLE oban_jobs ADD CONSTRAINT positive_max_attempts CHECK (max_attempts > 0);
ALTER TABLE oban_jobs ADD CONSTRAINT attempt_range CHECK (attempt between 0 and max_attempts);
CREATE INDEX IF NOT EXISTS oban_jobs_args_index ON oban_jobs USING gin (args);
CREATE INDEX IF NOT EXISTS oban_jobs_meta_index ON oban_jobs USING gin (meta);

-- v12
ALTER TABLE oban_jobs ADD CONSTRAINT non_negative_priority CHECK (priority >= 0) NOT VALID;

-- v13
CREATE INDEX IF NOT EXISTS oban_jobs_state_cancelled_at_index ON oban_jobs (state, cancelled_at);
CREATE INDEX IF NOT EXISTS oban_jobs_state_discarded_at_index ON oban_jobs (state, discarded_at);

-- bench: rescue
UPDATE "public"."oban_jobs" AS o0 SET "state" = %(available)s
WHERE ((o0."state" = 'executing') AND (o0."attempted_at" < %(cut)s))
  AND (o0."attempt" < o0."max_attempts")
RETURNING o0."id", o0."queue", o0."state";

-- bench: discard
UPDATE "public"."oban_jobs" AS o0 SET "state" = %(discarded)s, "discarded_at" = %(now)s
WHERE ((o0."state" = 'executing') AND (o0."attempted_at" < %(cut)s))
  AND (o0."attempt" >= o0."max_attempts")
RETURNING o0."id", o0."queue", o0."state";
