-- graphile-worker's job tables and its stale-lock reset, for tests/perf/bench_peers.py.
--
-- Source:   https://github.com/graphile/worker (commit abfb4cff30747ad423046d117dfb88470f03ae00,
--           package version 0.17.3)
-- Files:    __tests__/schema.sql (the schema its migrations sql/000001.sql ... 000019.sql
--           produce, as the project dumps it for its own tests),
--           src/sql/resetLockedAt.ts (the rescue), src/main.ts (runs it at start-up and
--           periodically).
-- Licence:  MIT (graphile-worker's LICENSE.md, Copyright (c) 2019 Benjie Gillam).
--
-- Only _private_tasks, _private_job_queues and _private_jobs are kept, with their
-- identity columns, keys, indexes and row-level-security switch, verbatim from the dump;
-- the functions (add_job, complete_jobs, ...), the jobs view, the crontab and migrations
-- tables and the dump's set_config(search_path) lines are left out. The schema name is
-- the default, graphile_worker.
--
-- The rescue is resetLockedAt's statement with its two template values filled in:
-- ${escapedWorkerSchema} = graphile_worker, and ${now} = now() (useNodeTime off, the
-- default); it takes no parameters, and the 4-hour stale-lock age is hard-coded there.
-- It clears the lock and pulls run_at forward; it writes no error, no attempt, no
-- audit, and takes no row locks beyond the UPDATE's own (no SKIP LOCKED). There is no
-- index on locked_at: both UPDATEs scan their table.

-- bench: schema
CREATE SCHEMA graphile_worker;
CREATE TABLE graphile_worker._private_jobs (
    id bigint NOT NULL,
    job_queue_id integer,
    task_id integer NOT NULL,
    payload json DEFAULT '{}'::json NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts smallint DEFAULT 0 NOT NULL,
    max_attempts smallint DEFAULT 25 NOT NULL,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    key text,
    locked_at timestamp with time zone,
    locked_by text,
    revision integer DEFAULT 0 NOT NULL,
    flags jsonb,
    is_available boolean GENERATED ALWAYS AS (((locked_at IS NULL) AND (attempts < max_attempts))) STORED NOT NULL,
    CONSTRAINT jobs_key_check CHECK (((length(key) > 0) AND (length(key) <= 512))),
    CONSTRAINT jobs_max_attempts_check CHECK ((max_attempts >= 1))
);
CREATE TABLE graphile_worker._private_job_queues (
    id integer NOT NULL,
    queue_name text NOT NULL,
    locked_at timestamp with time zone,
    locked_by text,
    is_available boolean GENERATED ALWAYS AS ((locked_at IS NULL)) STORED NOT NULL,
    CONSTRAINT job_queues_queue_name_check CHECK ((length(queue_name) <= 128))
);
CREATE TABLE graphile_worker._private_tasks (
    id integer NOT NULL,
    identifier text NOT NULL,
    CONSTRAINT tasks_identifier_check CHECK ((length(identifier) <= 128))
);
ALTER TABLE graphile_worker._private_job_queues ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME graphile_worker.job_queues_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
ALTER TABLE graphile_worker._private_jobs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME graphile_worker.jobs_id_seq1
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
ALTER TABLE graphile_worker._private_tasks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME graphile_worker.tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
ALTER TABLE ONLY graphile_worker._private_job_queues
    ADD CONSTRAINT job_queues_pkey1 PRIMARY KEY (id);
ALTER TABLE ONLY graphile_worker._private_job_queues
    ADD CONSTRAINT job_queues_queue_name_key UNIQUE (queue_name);
ALTER TABLE ONLY graphile_worker._private_jobs
    ADD CONSTRAINT jobs_key_key1 UNIQUE (key);
ALTER TABLE ONLY graphile_worker._private_jobs
    ADD CONSTRAINT jobs_pkey1 PRIMARY KEY (id);
ALTER TABLE ONLY graphile_worker._private_tasks
    ADD CONSTRAINT tasks_identifier_key UNIQUE (identifier);
ALTER TABLE ONLY graphile_worker._private_tasks
    ADD CONSTRAINT tasks_pkey PRIMARY KEY (id);
CREATE INDEX jobs_main_index ON graphile_worker._private_jobs USING btree (priority, run_at) INCLUDE (id, task_id, job_queue_id) WHERE (is_available = true);
CREATE INDEX jobs_no_queue_index ON graphile_worker._private_jobs USING btree (priority, run_at) INCLUDE (id, task_id) WHERE ((is_available = true) AND (job_queue_id IS NULL));
ALTER TABLE graphile_worker._private_job_queues ENABLE ROW LEVEL SECURITY;
ALTER TABLE graphile_worker._private_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE graphile_worker._private_tasks ENABLE ROW LEVEL SECURITY;

-- bench: rescue
with j as (
update graphile_worker._private_jobs as jobs
set locked_at = null, locked_by = null, run_at = greatest(run_at, now())
where locked_at < now() - interval '4 hours'
)
update graphile_worker._private_job_queues as job_queues
set locked_at = null, locked_by = null
where locked_at < now() - interval '4 hours';
