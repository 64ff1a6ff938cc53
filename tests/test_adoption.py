"""Adopting an application's own runs table: a Prisma-shaped one, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from click.testing import CliRunner

from runner.cli import main

from .helpers import PRISMA_DDL, SHOWN, TABLE, explain_sweep, open_conn, prisma_run, run_cli

PROPOSED = {
    "id_column": "id",
    "status_column": "status",
    "created_at_column": "createdAt",
    "updated_at_column": "updatedAt",
    "completed_at_column": "completedAt",
    "error_column": "errorMessage",
    "completed_column": "processedProspects",
    "total_column": "totalProspects",
    "attempts_column": None,
    "owner_column": None,
}


@pytest.fixture
def prisma(db_url, conn):
    conn.execute(PRISMA_DDL)
    return conn


def adopt_via_cli(db_url: str, *extra: str):
    return CliRunner().invoke(
        main, ["--database-url", db_url, "adopt", "--table", TABLE, "--yes", *extra]
    )


def test_proposal_matches_prisma_names(prisma):
    rows = prisma.execute(
        "SELECT role, column_name FROM propose_runs_table_mapping(%s::regclass)", (TABLE,)
    ).fetchall()
    assert dict(rows) == PROPOSED


def test_adopt_cli_accepts_the_proposal_and_builds_the_index_concurrently(db_url, prisma):
    result = adopt_via_cli(db_url)
    assert result.exit_code == 0, result.stderr
    assert "updated_at    updatedAt  [proposed]" in result.stderr
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS" in result.stderr
    index = prisma.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'QualificationRun'"
        " AND indexname = 'QualificationRun_stuck_runs_idx'"
    ).fetchone()[0]
    # Compared as text: a predicate naming "RunStatus" would fail the ORM's next re-creation
    # of the enum (tests/test_enum_migrations.py).
    assert "stuck_runs_label(status) = ANY (ARRAY['PENDING'::text, 'PROCESSING'::text])" in index
    assert "RunStatus" not in index
    again = adopt_via_cli(db_url)
    assert again.exit_code == 0 and "its sweep index already exists" in again.stderr


def test_adopt_asks_and_refusal_changes_nothing(db_url, prisma):
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "adopt", "--table", TABLE], input="n\n"
    )
    assert result.exit_code == 1
    assert "Adopt" in result.stderr
    assert (
        prisma.execute(
            "SELECT count(*) FROM stuck_runs_tables WHERE table_name = %s::regclass", (TABLE,)
        ).fetchone()[0]
        == 0
    )


@pytest.fixture
def adopted(db_url, prisma):
    assert adopt_via_cli(db_url).exit_code == 0
    return prisma


def test_recover_from_sql_on_the_prisma_table(adopted):
    prisma_run(adopted, "ckstuck0001", "PROCESSING", "20 minutes", done=4)
    prisma_run(adopted, "ckalive0001", "PROCESSING", "2 minutes", done=7)
    prisma_run(adopted, "ckdone00001", "COMPLETED", "3 hours", done=10)
    # The caller's time zone must not matter: timestamps are read as UTC.
    adopted.execute("SET TimeZone = 'Pacific/Kiritimati'")
    rows = adopted.execute(
        "SELECT table_name, run_id, previous_status, completed, total, idle"
        " FROM recover_stuck_runs('5 minutes')"
    ).fetchall()
    assert [r[:5] for r in rows] == [(SHOWN, "ckstuck0001", "PROCESSING", 4, 10)]
    assert 19 * 60 < rows[0][5].total_seconds() < 21 * 60
    adopted.execute("SET TimeZone = 'UTC'")
    run = adopted.execute(
        'SELECT status, "processedProspects", "errorMessage", "completedAt" > now() AT TIME ZONE'
        " 'UTC' - interval '1 minute', \"updatedAt\" < now() AT TIME ZONE 'UTC' - interval '19 minutes'"
        ' FROM "QualificationRun" WHERE id = %s',
        ("ckstuck0001",),
    ).fetchone()
    assert run[0] == "FAILED" and run[1] == 4 and "stuck" in run[2] and run[3] and run[4]
    statuses = dict(adopted.execute('SELECT id, status::text FROM "QualificationRun"').fetchall())
    assert statuses == {
        "ckstuck0001": "FAILED",
        "ckalive0001": "PROCESSING",
        "ckdone00001": "COMPLETED",
    }
    audit = adopted.execute("SELECT table_name, run_id FROM run_recoveries").fetchall()
    assert audit == [(SHOWN, "ckstuck0001")]


def test_views_and_runner_cover_the_adopted_table(db_url, adopted):
    prisma_run(adopted, "ckstuck0002", "PENDING", "1 hour")
    prisma_run(adopted, "ckalive0002", "PROCESSING", "10 seconds")
    active = adopted.execute("SELECT table_name, run_id, stuck FROM active_runs ORDER BY run_id")
    assert active.fetchall() == [(SHOWN, "ckalive0002", False), (SHOWN, "ckstuck0002", True)]
    assert adopted.execute("SELECT run_id FROM stuck_runs").fetchall() == [("ckstuck0002",)]
    result = subprocess.run(
        [sys.executable, "-m", "runner", "--database-url", db_url, "recover", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (row["table_name"], row["run_id"], row["previous_status"]) == (
        SHOWN,
        "ckstuck0002",
        "PENDING",
    )


def test_locked_and_completing_runs_of_the_adopted_table_are_safe(db_url, adopted):
    prisma_run(adopted, "cklocked001", "PROCESSING", "1 hour")
    prisma_run(adopted, "ckfinish001", "PROCESSING", "1 hour")
    with open_conn(db_url, autocommit=False) as worker:
        worker.execute(
            'SELECT 1 FROM "QualificationRun" WHERE id = %s FOR UPDATE', ("cklocked001",)
        )
        worker.execute(
            """UPDATE "QualificationRun" SET status = 'COMPLETED' WHERE id = %s""", ("ckfinish001",)
        )
        started = time.monotonic()
        rows = adopted.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')").fetchall()
        assert time.monotonic() - started < 1 and rows == []
        worker.commit()
    statuses = dict(adopted.execute('SELECT id, status::text FROM "QualificationRun"').fetchall())
    assert statuses == {"cklocked001": "PROCESSING", "ckfinish001": "COMPLETED"}
    assert [
        r[0] for r in adopted.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')")
    ] == ["cklocked001"]


def test_sweep_of_the_adopted_table_uses_its_index(adopted):
    adopted.execute(
        'INSERT INTO "QualificationRun" (id, status, "updatedAt")'
        " SELECT 'ckold' || g, 'COMPLETED', now() AT TIME ZONE 'UTC' FROM generate_series(1, 30000) g"
    )
    adopted.execute('ANALYZE "QualificationRun"')
    plan = explain_sweep(adopted, TABLE)
    assert '"QualificationRun_stuck_runs_idx"' in plan and "Seq Scan" not in plan, plan


def test_resume_run_on_the_adopted_table(adopted):
    prisma_run(adopted, "ckresume001", "PROCESSING", "1 hour", done=3)
    adopted.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
    row = adopted.execute("SELECT * FROM resume_run('ckresume001')").fetchone()
    assert row == (SHOWN, "ckresume001", "PENDING", 3, 10, None)
    run = adopted.execute(
        'SELECT "completedAt", "errorMessage" FROM "QualificationRun" WHERE id = %s',
        ("ckresume001",),
    ).fetchone()
    assert run == (None, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"updated_at_column": "updated_at"}, 'has no column "updated_at"'),
        (
            {"updated_at_column": "errorMessage"},
            'column "errorMessage" (given as updated_at_column) is of type text',
        ),
        ({"completed_column": "createdAt"}, 'column "createdAt" (given as completed_column)'),
        (
            {"active_statuses": ["PENDING", "RUNNING"]},
            'status "RUNNING" is not a value of the enum',
        ),
        ({"failed_status": "PENDING"}, "failed_status must be a status outside active_statuses"),
        (
            {"id_column": "processedProspects", "completed_column": None},
            'column "processedProspects" (given as id_column) is neither',
        ),
        ({"status_column": None}, "status_column is required"),
    ],
)
def test_invalid_mappings_are_rejected_naming_the_column(prisma, args, message):
    mapping = {k: v for k, v in PROPOSED.items() if k != "attempts_column"} | args
    names = ", ".join(f"{k} => %({k})s" for k in mapping)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as error:
        prisma.execute(f"SELECT * FROM adopt_runs_table('\"QualificationRun\"', {names})", mapping)
    assert message in str(error.value)
    assert (
        prisma.execute("SELECT count(*) FROM stuck_runs_tables WHERE NOT managed").fetchone()[0]
        == 0
    )


def test_readopt_replaces_the_mapping_and_unadopt_keeps_or_drops_the_index(db_url, adopted):
    adopted.execute(
        "SELECT adopt_runs_table(%s::regclass, created_at_column => 'createdAt',"
        " updated_at_column => 'completedAt', completed_at_column => NULL, error_column => NULL,"
        " completed_column => NULL, total_column => NULL)",
        (TABLE,),
    )
    entry = adopted.execute(
        "SELECT updated_at_column, error_column FROM stuck_runs_tables WHERE table_name = %s::regclass",
        (TABLE,),
    ).fetchone()
    assert entry == ("completedAt", None)
    kept = CliRunner().invoke(main, ["--database-url", db_url, "unadopt", "--table", TABLE])
    assert kept.exit_code == 0 and "left in place" in kept.stderr
    assert adopted.execute("SELECT to_regclass('\"QualificationRun_stuck_runs_idx\"')").fetchone()[
        0
    ]
    assert adopt_via_cli(db_url).exit_code == 0
    dropped = CliRunner().invoke(
        main, ["--database-url", db_url, "unadopt", "--table", TABLE, "--drop-index"]
    )
    assert dropped.exit_code == 0 and "dropped index" in dropped.stderr
    assert (
        adopted.execute("SELECT to_regclass('\"QualificationRun_stuck_runs_idx\"')").fetchone()[0]
        is None
    )
    assert (
        adopted.execute("SELECT count(*) FROM stuck_runs_tables WHERE NOT managed").fetchone()[0]
        == 0
    )


def test_hostile_identifiers_are_quoted_never_concatenated(db_url, conn):
    conn.execute(
        'CREATE TABLE "Runs ""Table""; DROP TABLE x" ("Run Id" text PRIMARY KEY, "Sta""tus" text,'
        ' "Created At" timestamptz DEFAULT now(), "Up; dated" timestamptz,'
        ' "Done %s" int DEFAULT 0, "All $1" int DEFAULT 5)'
    )
    table = '"Runs ""Table""; DROP TABLE x"'
    result = CliRunner().invoke(
        main,
        [
            "--database-url",
            db_url,
            "adopt",
            "--table",
            table,
            "--yes",
            "--column",
            "id=Run Id",
            "--column",
            'status=Sta"tus',
            "--column",
            "created_at=Created At",
            "--column",
            "updated_at=Up; dated",
            "--column",
            "completed=Done %s",
            "--column",
            "total=All $1",
            "--column",
            "completed_at=",
            "--column",
            "error=",
        ],
    )
    assert result.exit_code == 0, result.stderr
    conn.execute(
        f'INSERT INTO {table} ("Run Id", "Sta""tus", "Up; dated")'
        " VALUES ('r''1', 'PROCESSING', now() - interval '1 hour')"
    )
    rows = conn.execute(
        "SELECT table_name, run_id, completed, total FROM recover_stuck_runs('5 minutes')"
    ).fetchall()
    assert rows == [(f"public.{table}", "r'1", 0, 5)]
    assert conn.execute(f'SELECT "Sta""tus" FROM {table}').fetchone()[0] == "FAILED"


def test_concurrent_callers_recover_each_adopted_run_once(db_url, adopted):
    adopted.execute(
        'INSERT INTO "QualificationRun" (id, status, "updatedAt")'
        " SELECT 'ckrace' || g, 'PROCESSING', (now() - interval '1 hour') AT TIME ZONE 'UTC'"
        " FROM generate_series(1, 600) AS g"
    )
    barrier = threading.Barrier(4)

    def reaper(_: int) -> list[str]:
        got: list[str] = []
        with open_conn(db_url) as c:
            barrier.wait()
            while rows := c.execute(
                "SELECT run_id FROM recover_stuck_runs('5 minutes', max_runs => 25)"
            ).fetchall():
                got.extend(r[0] for r in rows)
        return got

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(reaper, range(4)))
    recovered = [run for result in results for run in result]
    assert len(recovered) == len(set(recovered)) == 600
    assert sum(1 for r in results if r) > 1, "the callers did not overlap"
    audit = adopted.execute(
        "SELECT count(*), count(DISTINCT run_id) FROM run_recoveries"
    ).fetchone()
    assert audit == (600, 600)


def test_only_its_owner_or_adopter_may_take_a_table_out_of_recovery(db_url):
    """Issue 19, point 2: a registry entry is a table's safety net and what re-adoption keeps.

    An untrusted role with every grant `unadopt` needs (EXECUTE, DELETE and
    UPDATE on the registry) removes neither another owner's live table nor,
    once it is dropped, its entry: not through unadopt_runs_table(), not by
    name through `stuck-runs unadopt`, not by writing the registry. The role
    that adopted it may.
    """
    from .test_attacks import as_user

    suffix = uuid.uuid4().hex[:8]
    owner, intruder = f"runs_owner_{suffix}", f"intruder_{suffix}"
    entry = "SELECT count(*) FROM stuck_runs.stuck_runs_tables WHERE relation_name = 'jobs'"
    with open_conn(db_url) as conn:
        for role in (owner, intruder):
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
            conn.execute(f'GRANT USAGE ON SCHEMA stuck_runs TO "{role}"')
            conn.execute(f'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA stuck_runs TO "{role}"')
            conn.execute(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON stuck_runs.stuck_runs_tables,"
                f' stuck_runs.stuck_runs_roles, stuck_runs._stuck_runs_covered TO "{role}"'
            )
        conn.execute(f'CREATE SCHEMA app AUTHORIZATION "{owner}"')
        conn.execute(f'GRANT USAGE ON SCHEMA app TO "{intruder}"')
        conn.execute(f'SET ROLE "{owner}"')
        conn.execute(
            "CREATE TABLE app.jobs (id text PRIMARY KEY, status text NOT NULL,"
            " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
        )
        conn.execute(
            "SELECT stuck_runs.adopt_runs_table('app.jobs', completed_at_column => NULL,"
            " error_column => NULL, completed_column => NULL, total_column => NULL)"
        )
        conn.execute("RESET ROLE")
        try:
            attempts = [
                "SELECT stuck_runs.unadopt_runs_table('app.jobs')",
                "DELETE FROM stuck_runs.stuck_runs_tables WHERE relation_name = 'jobs'",
                "UPDATE stuck_runs.stuck_runs_tables SET failed_status = 'PENDING'"
                " WHERE relation_name = 'jobs'",
            ]
            conn.execute(f'SET ROLE "{intruder}"')
            for attempt in attempts:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only the owner"):
                    conn.execute(attempt)
            conn.execute("RESET ROLE")
            assert conn.execute(entry).fetchone() == (1,)

            # Dropped: nobody owns it any more.
            conn.execute("DROP TABLE app.jobs")
            conn.execute(f'SET ROLE "{intruder}"')
            # Forgetting by name skips what the caller may not forget (it must not keep
            # anyone from removing their own entry of the same name); direct writes fail.
            forget = "SELECT stuck_runs._stuck_runs_forget('app', 'jobs')"
            assert conn.execute(forget).fetchone() == (0,)
            for attempt in attempts[1:]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only the owner"):
                    conn.execute(attempt)
            conn.execute("RESET ROLE")
            refused = run_cli(
                "--database-url", as_user(db_url, intruder), "unadopt", "--table", "app.jobs"
            )
            assert refused.returncode == 1, refused.stderr
            assert refused.stderr.splitlines() == [
                "stuck-runs: error: only the owner of app.jobs (once it is dropped:"
                " the role that adopted it) may take it out of recovery"
            ]
            assert conn.execute(entry).fetchone() == (1,)

            forgotten = run_cli(
                "--database-url", as_user(db_url, owner), "unadopt", "--table", "app.jobs"
            )
            assert forgotten.returncode == 0, forgotten.stderr
            assert conn.execute(entry).fetchone() == (0,)
        finally:
            conn.execute("RESET ROLE")
            conn.execute("DROP SCHEMA app CASCADE")
            for role in (owner, intruder):
                conn.execute(f'DROP OWNED BY "{role}"')
                conn.execute(f'DROP ROLE "{role}"')
