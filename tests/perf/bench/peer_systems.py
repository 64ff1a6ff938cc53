"""The five peers of issue 20, each on its own schema, with its own rescue as it ships.

Every peer's SQL is vendored, with source and licence, in tests/perf/peers/*.sql; this
module only loads it, fills the peer's tables with the benchmark's shape of data, puts
them back in a known state, and drives the rescue the way the peer's own code does
(River's batch loop, Oban's transaction, procrastinate's per-job retries). Nothing here
rewrites a peer's statement.

The shape of data is the same for every system, ours included: rows 1..N, row g is
live (healthy, running, fresh) when g is a multiple of 1000, labelled "stuck" when
g mod 10 = 1, finished otherwise. For a no-op the "stuck" rows are finished too; for
bulk they are running with a sign of life 5 hours old, past every peer's default
threshold (graphile-worker's hard-coded 4 hours included). Each row carries its label
in a column the rescue never changes (River's kind, Oban's worker, graphile-worker's
task, procrastinate's task_name, pg-boss's data), so a reset can find it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import psycopg
from psycopg.types.json import Jsonb

PEERS_DIR = Path(__file__).resolve().parent.parent / "peers"

Mode = Literal["noop", "bulk"]

# The labelled rows, spread over the whole heap; the parameter is N.
ROWS = """
    SELECT g,
           CASE WHEN mod(g, 1000) = 0 THEN 'live'
                WHEN mod(g, 10) = 1 THEN 'stuck'
                ELSE 'done' END AS k,
           now() - interval '1 day' - (%(n)s - g) * (interval '365 days' / %(n)s) AS c
    FROM generate_series(1, %(n)s) AS g
"""

STALE = "interval '5 hours'"


def sections(file_name: str) -> dict[str, str]:
    """The vendored file's parts, split at its '-- bench: NAME' markers."""
    text = (PEERS_DIR / file_name).read_text()
    parts = re.split(r"^-- bench: (\S+)\n", text, flags=re.MULTILINE)
    found = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}
    if "schema" not in found:
        raise ValueError(f"{file_name}: no '-- bench: schema' section")
    return found


def sqlc_params(query: str) -> str:
    """sqlc's @name placeholders (River) as psycopg's %(name)s; nothing else changes."""
    return re.sub(r"@(\w+)", r"%(\1)s", query)


def vacuum(conn: psycopg.Connection, *tables: str) -> None:
    for table in tables:
        conn.execute(f"VACUUM ANALYZE {table}")


@dataclass
class Pass:
    """What one rescue pass did: statements sent, rows its statements reported."""

    statements: int
    reported: int


class Peer:
    """One peer: schema, load, reset, rescue, and an untimed count of rescued rows."""

    name = ""
    file_name = ""
    tables: tuple[str, ...] = ()
    does = ""  # what its rescue does and does not do, for the report

    def __init__(self) -> None:
        self.sql = sections(self.file_name)

    def setup(self, conn: psycopg.Connection) -> None:
        # A value ALTER TYPE ... ADD VALUE adds may only be used once committed
        # (PostgreSQL 15 enforces it within one multi-statement query): each
        # such statement ends a piece of its own, as the peer's migrations do.
        pieces = re.split(r"(ALTER TYPE [^;]* ADD VALUE [^;]*;)", self.sql["schema"])
        for piece in pieces:
            if piece.strip():
                conn.execute(piece)

    def load(self, conn: psycopg.Connection, n: int) -> None:
        raise NotImplementedError

    def reset(self, conn: psycopg.Connection, mode: Mode) -> None:
        """Put the labelled rows in the mode's state and the live rows' life fresh."""
        raise NotImplementedError

    def after_reset(self, conn: psycopg.Connection) -> None:
        """The last touch before timing (a heartbeat), after VACUUM and CHECKPOINT."""

    def rescue(self, conn: psycopg.Connection) -> Pass:
        raise NotImplementedError

    def rescued(self, conn: psycopg.Connection) -> int:
        """Rows now in the peer's rescued state (0 after a no-op, N/10 after bulk)."""
        raise NotImplementedError


class River(Peer):
    name = "River"
    file_name = "river.sql"
    tables = ("river_job",)
    batch = 10_000  # riversharedmaintenance.BatchSizeDefault
    rescue_after = timedelta(hours=1)  # JobRescuerRescueAfterDefault
    does = (
        "JobGetStuck (running, attempted_at older than 1 h, by id, LIMIT 10,000) then, "
        "in the client, one error JSON and a retry decision per job, then JobRescueMany "
        "(unnest of arrays): the job goes back to retryable (or discarded when out of "
        "attempts) with the error appended and a rescue count in its metadata. Looped "
        "until a batch comes back short, as runOnce does (River also sleeps 50 ms-1 s "
        "between batches; the benchmark does not). No SKIP LOCKED, no re-check of the "
        "age at update time, no audit row."
    )

    def load(self, conn: psycopg.Connection, n: int) -> None:
        conn.execute(
            f"""
            INSERT INTO river_job (state, attempt, max_attempts, attempted_at, created_at,
                                   finalized_at, scheduled_at, args, kind, attempted_by)
            SELECT CASE k WHEN 'done' THEN 'completed' ELSE 'running' END::river_job_state,
                   1, 25,
                   CASE k WHEN 'live' THEN now() WHEN 'stuck' THEN now() - {STALE}
                          ELSE c END,
                   c, CASE k WHEN 'done' THEN c + interval '10 minutes' END, c,
                   '{{}}'::jsonb, 'bench_' || k, ARRAY['worker-1']
            FROM ({ROWS}) AS s
            """,
            {"n": n},
        )

    def reset(self, conn: psycopg.Connection, mode: Mode) -> None:
        if mode == "noop":
            conn.execute(
                "UPDATE river_job SET state = 'completed', finalized_at = now(),"
                " attempted_at = now() - interval '1 hour', errors = NULL, metadata = '{}',"
                " scheduled_at = created_at WHERE kind = 'bench_stuck'"
            )
        else:
            conn.execute(
                "UPDATE river_job SET state = 'running', finalized_at = NULL,"
                f" attempted_at = now() - {STALE}, errors = NULL, metadata = '{{}}',"
                " scheduled_at = created_at WHERE kind = 'bench_stuck'"
            )
        conn.execute("UPDATE river_job SET attempted_at = now() WHERE kind = 'bench_live'")

    def rescue(self, conn: psycopg.Connection) -> Pass:
        get_stuck = sqlc_params(self.sql["JobGetStuck"])
        rescue_many = sqlc_params(self.sql["JobRescueMany"])
        zero_time = datetime(1, 1, 1, tzinfo=UTC)  # Go's nil time, as River's driver sends it
        horizon = datetime.now(UTC) - self.rescue_after
        after_id, statements, found = 0, 0, 0
        while True:
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            jobs = cur.execute(
                get_stuck, {"after_id": after_id, "stuck_horizon": horizon, "max": self.batch}
            ).fetchall()
            statements += 1
            if jobs:
                after_id = jobs[-1]["id"]
            now = datetime.now(UTC)
            ids, errors, finalized, scheduled, states = [], [], [], [], []
            for job in jobs:
                error = {
                    "at": now.isoformat(),
                    "attempt": max(job["attempt"], 0),
                    "error": "Stuck job rescued by JobRescuer",
                    "trace": "",
                }
                if job["metadata"].get("cancel_attempted_at"):
                    state, fin, at = "cancelled", now, job["scheduled_at"]
                elif job["attempt"] >= job["max_attempts"]:
                    state, fin, at = "discarded", now, job["scheduled_at"]
                else:  # DefaultClientRetryPolicy: attempt^4 seconds (its jitter left out)
                    state, fin, at = (
                        "retryable",
                        zero_time,
                        now + timedelta(seconds=job["attempt"] ** 4),
                    )
                ids.append(job["id"])
                errors.append(Jsonb(error))
                finalized.append(fin)
                scheduled.append(at)
                states.append(state)
            if ids:
                conn.execute(
                    rescue_many,
                    {
                        "id": ids,
                        "error": errors,
                        "finalized_at": finalized,
                        "scheduled_at": scheduled,
                        "state": states,
                    },
                )
                statements += 1
                found += len(ids)
            if len(jobs) < self.batch:
                return Pass(statements, found)

    def rescued(self, conn: psycopg.Connection) -> int:
        return conn.execute(
            "SELECT count(*) FROM river_job WHERE state IN ('retryable', 'discarded', 'cancelled')"
        ).fetchone()[0]  # type: ignore[index]


class Oban(Peer):
    name = "Oban"
    file_name = "oban.sql"
    tables = ("oban_jobs",)
    rescue_after = timedelta(minutes=60)  # Oban.Lifeline's default
    does = (
        "Lifeline plugin: in one transaction, executing jobs with attempted_at older than "
        "60 min go back to available (or to discarded when out of attempts). No error "
        "text (errors is untouched), no SKIP LOCKED, no audit."
    )

    def load(self, conn: psycopg.Connection, n: int) -> None:
        conn.execute(
            f"""
            INSERT INTO oban_jobs (state, queue, worker, args, attempt, max_attempts,
                                   inserted_at, scheduled_at, attempted_at, completed_at,
                                   attempted_by)
            SELECT CASE k WHEN 'done' THEN 'completed' ELSE 'executing' END::oban_job_state,
                   'default', 'Bench.' || k, '{{}}', 1, 20,
                   c AT TIME ZONE 'UTC', c AT TIME ZONE 'UTC',
                   (CASE k WHEN 'live' THEN now() WHEN 'stuck' THEN now() - {STALE}
                           ELSE c END) AT TIME ZONE 'UTC',
                   CASE k WHEN 'done' THEN (c + interval '10 minutes') AT TIME ZONE 'UTC' END,
                   ARRAY['node-1']
            FROM ({ROWS}) AS s
            """,
            {"n": n},
        )

    def reset(self, conn: psycopg.Connection, mode: Mode) -> None:
        if mode == "noop":
            conn.execute(
                "UPDATE oban_jobs SET state = 'completed', discarded_at = NULL,"
                " completed_at = now() AT TIME ZONE 'UTC',"
                " attempted_at = (now() - interval '1 hour') AT TIME ZONE 'UTC'"
                " WHERE worker = 'Bench.stuck'"
            )
        else:
            conn.execute(
                "UPDATE oban_jobs SET state = 'executing', discarded_at = NULL,"
                f" completed_at = NULL, attempted_at = (now() - {STALE}) AT TIME ZONE 'UTC'"
                " WHERE worker = 'Bench.stuck'"
            )
        conn.execute(
            "UPDATE oban_jobs SET attempted_at = now() AT TIME ZONE 'UTC'"
            " WHERE worker = 'Bench.live'"
        )

    def rescue(self, conn: psycopg.Connection) -> Pass:
        now = datetime.now(UTC).replace(tzinfo=None)
        params = {"cut": now - self.rescue_after, "now": now}
        with conn.transaction():
            available = conn.execute(self.sql["rescue"], {**params, "available": "available"})
            n = len(available.fetchall())
            discarded = conn.execute(self.sql["discard"], {**params, "discarded": "discarded"})
            n += len(discarded.fetchall())
        return Pass(2, n)

    def rescued(self, conn: psycopg.Connection) -> int:
        return conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE state IN ('available', 'discarded')"
        ).fetchone()[0]  # type: ignore[index]


class GraphileWorker(Peer):
    name = "graphile-worker"
    file_name = "graphile_worker.sql"
    tables = ("graphile_worker._private_jobs", "graphile_worker._private_job_queues")
    does = (
        "resetLockedAt: one statement clears locked_at/locked_by (and pulls run_at "
        "forward) on every job and queue locked more than 4 hours ago (hard-coded). "
        "It only clears a lock: no error text, no attempt counted, no audit, no SKIP "
        "LOCKED, no index on locked_at (a full scan of the jobs table every time)."
    )

    def load(self, conn: psycopg.Connection, n: int) -> None:
        # graphile-worker deletes completed jobs; its long-lived rows are permanently
        # failed ones (attempts = max_attempts), which is what 'done' is here.
        conn.execute(
            "INSERT INTO graphile_worker._private_tasks (identifier)"
            " VALUES ('bench_done'), ('bench_live'), ('bench_stuck')"
        )
        conn.execute(
            f"""
            INSERT INTO graphile_worker._private_jobs
                (task_id, payload, run_at, attempts, max_attempts, last_error,
                 created_at, updated_at, locked_at, locked_by)
            SELECT t.id, '{{}}'::json, c,
                   CASE k WHEN 'done' THEN 25 ELSE 1 END, 25,
                   CASE k WHEN 'done' THEN 'worker error: upstream timeout' END,
                   c, c,
                   CASE k WHEN 'live' THEN now() WHEN 'stuck' THEN now() - {STALE} END,
                   CASE k WHEN 'live' THEN 'worker-live' WHEN 'stuck' THEN 'worker-dead' END
            FROM ({ROWS}) AS s
            JOIN graphile_worker._private_tasks AS t ON t.identifier = 'bench_' || s.k
            """,
            {"n": n},
        )

    def reset(self, conn: psycopg.Connection, mode: Mode) -> None:
        stuck_task = "(SELECT id FROM graphile_worker._private_tasks WHERE identifier = %s)"
        if mode == "noop":
            conn.execute(
                "UPDATE graphile_worker._private_jobs SET attempts = 25, locked_at = NULL,"
                " locked_by = NULL, run_at = created_at,"
                " last_error = 'worker error: upstream timeout'"
                f" WHERE task_id = {stuck_task}",
                ("bench_stuck",),
            )
        else:
            conn.execute(
                "UPDATE graphile_worker._private_jobs SET attempts = 1, last_error = NULL,"
                f" locked_at = now() - {STALE}, locked_by = 'worker-dead', run_at = created_at"
                f" WHERE task_id = {stuck_task}",
                ("bench_stuck",),
            )
        conn.execute(
            "UPDATE graphile_worker._private_jobs SET locked_at = now()"
            f" WHERE task_id = {stuck_task}",
            ("bench_live",),
        )

    def rescue(self, conn: psycopg.Connection) -> Pass:
        cur = conn.execute(self.sql["rescue"])
        return Pass(1, cur.rowcount)  # the rows of the last UPDATE: the queues

    def rescued(self, conn: psycopg.Connection) -> int:
        return conn.execute(
            "SELECT count(*) FROM graphile_worker._private_jobs j"
            " JOIN graphile_worker._private_tasks t ON t.id = j.task_id"
            " WHERE t.identifier = 'bench_stuck' AND j.locked_at IS NULL"
            " AND j.attempts < j.max_attempts"
        ).fetchone()[0]  # type: ignore[index]


class Procrastinate(Peer):
    name = "procrastinate"
    file_name = "procrastinate.sql"
    tables = ("procrastinate_jobs", "procrastinate_workers", "procrastinate_events")
    does = (
        "The documented recipe: select_stalled_jobs_by_heartbeat (doing jobs of workers "
        "with no heartbeat for 30 s, or of no worker), then procrastinate_retry_job_v2 "
        "once per job, each its own statement: back to todo, attempts + 1, an event row "
        "per status change and per schedule (triggers). No error text, no SKIP LOCKED "
        "(the function takes FOR UPDATE one job at a time)."
    )

    def setup(self, conn: psycopg.Connection) -> None:
        super().setup(conn)
        self.live_worker, self.dead_worker = (
            row[0]
            for row in conn.execute(
                "INSERT INTO procrastinate_workers (last_heartbeat)"
                f" VALUES (now()), (now() - {STALE}) RETURNING id"
            ).fetchall()
        )

    def load(self, conn: psycopg.Connection, n: int) -> None:
        conn.execute(
            f"""
            INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts,
                                            worker_id)
            SELECT 'default', 'bench_' || k, '{{}}',
                   CASE k WHEN 'done' THEN 'succeeded' ELSE 'doing' END::procrastinate_job_status,
                   0,
                   CASE k WHEN 'live' THEN %(live)s::bigint WHEN 'stuck' THEN %(dead)s::bigint END
            FROM ({ROWS}) AS s
            """,
            {"n": n, "live": self.live_worker, "dead": self.dead_worker},
        )

    def reset(self, conn: psycopg.Connection, mode: Mode) -> None:
        status, worker = ("succeeded", None) if mode == "noop" else ("doing", self.dead_worker)
        conn.execute(
            "UPDATE procrastinate_jobs SET status = %s::procrastinate_job_status,"
            " worker_id = %s, attempts = 0, scheduled_at = NULL"
            " WHERE task_name = 'bench_stuck'",
            (status, worker),
        )
        conn.execute("TRUNCATE procrastinate_events")
        conn.execute(
            f"UPDATE procrastinate_workers SET last_heartbeat = now() - {STALE} WHERE id = %s",
            (self.dead_worker,),
        )

    def after_reset(self, conn: psycopg.Connection) -> None:
        conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() WHERE id = %s",
            (self.live_worker,),
        )

    def rescue(self, conn: psycopg.Connection) -> Pass:
        stalled = conn.execute(
            self.sql["select_stalled_jobs_by_heartbeat"],
            {"seconds_since_heartbeat": 30.0, "queue": None, "task_name": None},
        ).fetchall()
        retry = self.sql["retry_job"]
        now = datetime.now(UTC)
        for job in stalled:
            conn.execute(
                retry,
                {
                    "job_id": job[0],
                    "retry_at": now,
                    "new_priority": None,
                    "new_queue_name": None,
                    "new_lock": None,
                },
            )
        return Pass(1 + len(stalled), len(stalled))

    def rescued(self, conn: psycopg.Connection) -> int:
        return conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'"
        ).fetchone()[0]  # type: ignore[index]


class PgBoss(Peer):
    name = "pg-boss"
    file_name = "pg_boss.sql"
    tables = ("pgboss.job",)
    does = (
        "failJobsByTimeout under an advisory lock: deletes every active job started more "
        "than expire_in (15 min) ago and re-inserts it as retry (or failed, with a "
        "dead-letter copy) with an output JSON saying it timed out. No index on active "
        "jobs (a scan of the queue's partition), no SKIP LOCKED, no audit."
    )

    def setup(self, conn: psycopg.Connection) -> None:
        super().setup(conn)
        conn.execute("SELECT pgboss.create_queue(%s, %s)", ("bench", '{"policy": "standard"}'))

    def load(self, conn: psycopg.Connection, n: int) -> None:
        conn.execute(
            f"""
            INSERT INTO pgboss.job (name, data, state, start_after, started_on, created_on,
                                    completed_on, policy)
            SELECT 'bench', jsonb_build_object('k', k),
                   CASE k WHEN 'done' THEN 'completed' ELSE 'active' END::pgboss.job_state,
                   c,
                   CASE k WHEN 'live' THEN now() WHEN 'stuck' THEN now() - {STALE} ELSE c END,
                   c, CASE k WHEN 'done' THEN c + interval '10 minutes' END, 'standard'
            FROM ({ROWS}) AS s
            """,
            {"n": n},
        )

    def reset(self, conn: psycopg.Connection, mode: Mode) -> None:
        if mode == "noop":
            conn.execute(
                "UPDATE pgboss.job SET state = 'completed', completed_on = now(), output = NULL,"
                " start_after = created_on WHERE data->>'k' = 'stuck'"
            )
        else:
            conn.execute(
                "UPDATE pgboss.job SET state = 'active', completed_on = NULL, output = NULL,"
                f" start_after = created_on, started_on = now() - {STALE}"
                " WHERE data->>'k' = 'stuck'"
            )
        conn.execute("UPDATE pgboss.job SET started_on = now() WHERE data->>'k' = 'live'")

    def rescue(self, conn: psycopg.Connection) -> Pass:
        conn.execute(self.sql["rescue"])  # BEGIN; SET LOCAL ...; lock; the CTE; COMMIT
        return Pass(1, -1)

    def rescued(self, conn: psycopg.Connection) -> int:
        return conn.execute(
            "SELECT count(*) FROM pgboss.job WHERE state IN ('retry', 'failed')"
        ).fetchone()[0]  # type: ignore[index]


def all_peers() -> list[Peer]:
    return [River(), Oban(), GraphileWorker(), Procrastinate(), PgBoss()]
