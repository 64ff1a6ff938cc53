"""The SQL blocks of docs/ run as printed, statement by statement, against a real PostgreSQL.

Each test takes its block by name (`<!-- block: NAME -->` before the fence), sends its
statements as psql would, one by one in autocommit (so that `CALL drain_stuck_runs()`
commits), and checks that each did what the page says beside it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from .docs_text import block, sql_statements
from .helpers import insert_run, status_of

AUDIT_RUN_ID = 2  # run_recoveries: id, table_name, run_id, ...
PRISMA_SCHEMA = Path(__file__).resolve().parent / "prisma" / "schema.prisma"
# docs/adoption.md's table, as Prisma creates it in the app's schema.
PRISMA_TABLE = """
CREATE SCHEMA app;
CREATE TYPE app."RunStatus" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');
CREATE TABLE app.qualification_runs (
    id text PRIMARY KEY,
    status app."RunStatus" NOT NULL DEFAULT 'PENDING',
    "totalProspects" integer NOT NULL DEFAULT 0,
    "processedProspects" integer NOT NULL DEFAULT 0,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" timestamp(3) NOT NULL,
    "completedAt" timestamp(3),
    "errorMessage" text
)
"""


def rows(conn: psycopg.Connection, statement: str) -> list[tuple]:
    """What one statement returned (nothing for a CALL or an UPDATE)."""
    cur = conn.execute(statement)
    return cur.fetchall() if cur.description else []


def test_the_sql_reference_block_runs(conn):
    """docs/sql.md's tour: recover, the threshold's default, limits, retries, drain, the views,
    the audit, resume (of the run id it names) and the sweep statement."""
    stuck = insert_run(conn, idle="1 hour", completed=3)
    failed = insert_run(conn, "FAILED", run_id="cmgz47wkm0005on6t8hxo4b9a")
    results = [rows(conn, statement) for statement in sql_statements(block("sql-reference"))]
    assert len(results) == 10
    [recovered] = results[0]
    assert (recovered[1], recovered[2], recovered[3], recovered[4]) == (
        stuck,
        "PROCESSING",
        "FAILED",
        3,
    )
    assert results[1:7] == [[], [], [], [], [], []]  # nothing else stuck, nothing active
    assert [r[AUDIT_RUN_ID] for r in results[7]] == [stuck]  # the audit
    [resumed] = results[8]
    assert resumed[1] == failed and resumed[2] == "PENDING"
    assert [table for table, _ in results[9]] == ["qualification_runs"]
    assert status_of(conn, failed) == "PENDING"


def test_the_drain_block_runs(conn):
    """docs/sql.md's drain calls, outside a transaction block, and the NOTICE it shows."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    runs = [insert_run(conn, idle="2 hours") for _ in range(3)]
    statements = sql_statements(block("sql-drain"))
    assert len(statements) == 3
    for statement in statements:
        conn.execute(statement)
    assert {status_of(conn, run) for run in runs} == {"FAILED"}
    assert notices[0].startswith("stuck-runs: recovered 3 run(s) (0 requeued) in 1 batch(es)")


def test_the_threshold_block_sets_the_threshold(conn):
    [statement] = sql_statements(block("sql-threshold"))
    conn.execute(statement)
    threshold = conn.execute("SELECT older_than::text FROM stuck_runs.stuck_runs_settings")
    assert threshold.fetchone()[0] == "00:15:00"


def test_the_grant_block_prints_what_the_page_shows(conn):
    """stuck_runs_grant_sql('app') prints the lines the page lists under it."""
    conn.execute("DO $$ BEGIN CREATE ROLE app; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    code = block("sql-grants")
    [statement] = sql_statements(code)
    printed = [row[0] for row in rows(conn, statement)]
    shown = [
        line.removeprefix("-- ").split("   (", 1)[0]
        for line in code.splitlines()
        if line.startswith("-- ")
    ]
    assert printed == shown


def test_the_adoption_block_covers_a_prisma_table(conn):
    """docs/adoption.md's adopt_runs_table() call and its index statement(s), on Prisma's
    table in `app`: afterwards a run idle for an hour there is recovered."""
    conn.execute(PRISMA_TABLE)
    adopt, index_ddl = sql_statements(block("sql-adopt"))
    conn.execute(adopt)
    for (ddl,) in rows(conn, index_ddl):
        conn.execute(ddl)  # outside a transaction, as the page says
    assert conn.execute("SELECT to_regclass('app.qualification_runs_stuck_runs_idx')").fetchone()[0]
    conn.execute(
        'INSERT INTO app.qualification_runs (id, status, "updatedAt")'
        " VALUES ('p1', 'PROCESSING', (now() - interval '1 hour') AT TIME ZONE 'UTC')"
    )
    recovered = conn.execute(
        "SELECT table_name::text, run_id FROM stuck_runs.recover_stuck_runs('5 minutes')"
    ).fetchall()
    assert recovered == [("app.qualification_runs", "p1")]


def test_the_adoption_page_model_is_the_one_the_prisma_tests_run():
    """docs/adoption.md's Prisma model, line for line, is tests/prisma's (which adds an
    owner field, docs/owners.md), so the Prisma tests run on what the page shows."""
    project = [line.strip() for line in PRISMA_SCHEMA.read_text().splitlines()]
    shown = [line.strip() for line in block("prisma-model").splitlines() if line.strip()]
    missing = [line for line in shown if line not in project]
    assert not missing, missing


def test_the_owner_blocks_run(conn):
    """docs/owners.md's calls for one life on the built-in table, then its guarded finish:
    the life's own finish changes the run, another life's changes nothing."""
    run1 = insert_run(conn, run_id="run1")
    statements = sql_statements(block("sql-owners"))
    assert len(statements) == 6
    life = "9b2f6c1e-5d0a-4f7e-8a43-0c6d2b1e7f55"
    results = [rows(conn, statement) for statement in statements]
    assert results[0] == []  # a first life: nothing to recover
    assert results[1][0][0] == "alive"
    assert results[2] == [(True,)] and results[3] == [(True,)]
    [(instance, listed_life, state, *_)] = results[4]
    assert (instance, listed_life, state) == ("web", life, "live")
    [guard] = sql_statements(block("sql-finish-guard"))
    conn.execute(sql.SQL("PREPARE finish AS ") + sql.SQL(guard))
    finish = sql.SQL("EXECUTE finish({}, {})")
    other = finish.format(sql.Literal(run1), sql.Literal(str(uuid.uuid4())))
    assert conn.execute(other).rowcount == 0
    assert status_of(conn, run1) == "PROCESSING"
    assert conn.execute(finish.format(sql.Literal(run1), sql.Literal(life))).rowcount == 1
    assert status_of(conn, run1) == "COMPLETED"


@pytest.mark.parametrize("name", ["sql-owners", "sql-finish-guard"])
def test_the_owner_blocks_are_whole(name):
    """Nothing of a block is left out by the statement split above."""
    code = block(name)
    kept = "".join("".join(s.split()) for s in sql_statements(code))
    body = "".join(
        "".join(line.split("--", 1)[0].split())
        for line in code.splitlines()
        if not line.lstrip().startswith("--")
    )
    assert kept == body.replace(";", "")
