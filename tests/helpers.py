"""Small helpers shared by the tests: URLs, seeding runs, opening connections."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg

from runner.connection import parse_database_url


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))


def with_query(url: str, **params: str) -> str:
    """Add query parameters (Prisma's schema=, pool options) to a URL that may have some."""
    parts = urlsplit(url)
    query = "&".join([*filter(None, [parts.query]), urlencode(params, quote_via=quote)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def open_conn(url: str, **kwargs: object) -> psycopg.Connection:
    """A connection as the app sees it: its schema (the URL's ?schema=) first, then stuck-runs'.

    Tables a test creates land in the app's schema; stuck-runs' functions, views
    and built-in table are found in theirs.
    """
    kwargs.setdefault("autocommit", True)
    target = parse_database_url(url)
    conn = psycopg.connect(target.conninfo, **kwargs)  # type: ignore[arg-type]
    conn.execute(
        "SELECT set_config('search_path', quote_ident(%s) || ', ' || quote_ident(%s), false)",
        (target.app_schema, target.schema),
    )
    return conn


def insert_run(
    conn: psycopg.Connection,
    status: str = "PROCESSING",
    *,
    idle: str = "0 seconds",
    age: str | None = None,
    completed: int = 0,
    total: int = 10,
    run_id: str | None = None,
) -> str:
    """Insert a run whose last sign of life was `idle` ago (created `age` ago)."""
    row = conn.execute(
        "INSERT INTO qualification_runs (id, status, completed, total, created_at, updated_at)"
        " VALUES (coalesce(%s, gen_random_uuid()::text), %s, %s, %s,"
        "         now() - %s::interval, now() - %s::interval)"
        " RETURNING id",
        (run_id, status, completed, total, age or idle, idle),
    ).fetchone()
    assert row is not None
    return row[0]


def status_of(conn: psycopg.Connection, run_id: str) -> str:
    row = conn.execute("SELECT status FROM qualification_runs WHERE id = %s", (run_id,)).fetchone()
    assert row is not None
    return row[0]


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None):
    """The console script's code path (`python -m runner`), in a fresh interpreter.

    DATABASE_URL from the test environment is dropped unless `env` sets it, so a
    test only ever talks to the database it names.
    """
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def explain_sweep(conn: psycopg.Connection, table: str) -> str:
    """EXPLAIN the exact statement recover_stuck_runs() builds for one adopted table (no owner's life ended)."""
    sweep = conn.execute(
        "SELECT _stuck_runs_sweep_sql(t, false) FROM stuck_runs_tables AS t"
        " WHERE t.table_name = %s::regclass",
        (table,),
    ).fetchone()[0]
    conn.execute(f"PREPARE sweep(timestamptz, integer, integer, interval, text) AS {sweep}")
    plan = conn.execute(
        "EXPLAIN EXECUTE sweep(now() - interval '5 minutes', NULL, NULL, interval '5 minutes', '{}')"
    ).fetchall()
    conn.execute("DEALLOCATE sweep")
    return "\n".join(r[0] for r in plan)


# What `prisma migrate` creates for
#   enum RunStatus { PENDING PROCESSING COMPLETED FAILED }
#   model QualificationRun { id String @id @default(cuid()) status RunStatus @default(PENDING)
#     totalProspects Int @default(0) processedProspects Int @default(0)
#     createdAt DateTime @default(now()) updatedAt DateTime @updatedAt
#     completedAt DateTime? errorMessage String? }
PRISMA_DDL = """
CREATE TYPE "RunStatus" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');
CREATE TABLE "QualificationRun" (
    "id" TEXT NOT NULL,
    "status" "RunStatus" NOT NULL DEFAULT 'PENDING',
    "totalProspects" INTEGER NOT NULL DEFAULT 0,
    "processedProspects" INTEGER NOT NULL DEFAULT 0,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    "completedAt" TIMESTAMP(3),
    "errorMessage" TEXT,
    CONSTRAINT "QualificationRun_pkey" PRIMARY KEY ("id")
);
"""
TABLE = '"QualificationRun"'
# How recovery's rows name it: qualified, since the app's schema is not stuck-runs' own.
SHOWN = 'public."QualificationRun"'


def prisma_run(conn: psycopg.Connection, cuid: str, status: str, idle: str, done: int = 0) -> None:
    """Prisma writes UTC wall-clock time into `timestamp without time zone` columns."""
    conn.execute(
        'INSERT INTO "QualificationRun" (id, status, "totalProspects", "processedProspects",'
        ' "createdAt", "updatedAt")'
        " VALUES (%s, %s, 10, %s, (now() - interval '1 day') AT TIME ZONE 'UTC',"
        "         (now() - %s::interval) AT TIME ZONE 'UTC')",
        (cuid, status, done, idle),
    )


def cli(*args: str, env: dict[str, str] | None = None):
    """The command in this process (click's runner): fast, with stdout and stderr apart."""
    from click.testing import CliRunner

    from runner.cli import main

    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
