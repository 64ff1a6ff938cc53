"""Living beside the application: a schema of its own, coverage that survives the app's resets.

Issue 11: `prisma migrate reset` drops and re-creates the app's table, after
which recovery silently covered nothing; stuck-runs 0.1 lived in the app's
schema, where Prisma saw it as drift.
"""

from __future__ import annotations

import json

import psycopg

from runner.connection import parse_database_url
from runner.migrations import read_history, yoyo_backend

from .helpers import insert_run, open_conn, run_cli, with_query

RUNS_DDL = (
    "CREATE TABLE {name} (id text PRIMARY KEY, status text NOT NULL,"
    ' "createdAt" timestamp(3) NOT NULL DEFAULT now(), "updatedAt" timestamp(3) NOT NULL,'
    ' "completedAt" timestamp(3), "errorMessage" text)'
)


def stuck_app_run(conn: psycopg.Connection, table: str = "app.runs") -> None:
    conn.execute(
        f'INSERT INTO {table} (id, status, "createdAt", "updatedAt") VALUES'
        " ('app-stuck', 'PROCESSING', (now() - interval '30 minutes') AT TIME ZONE 'UTC',"
        " (now() - interval '30 minutes') AT TIME ZONE 'UTC')"
    )


def test_migrate_adopt_restores_coverage_after_the_app_recreates_its_table(empty_db_url):
    url = with_query(empty_db_url, schema="app")
    with open_conn(url) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(RUNS_DDL.format(name="app.runs"))
    line = ("--database-url", url, "migrate", "--adopt", "runs")
    first = run_cli(*line)
    assert first.returncode == 0, first.stderr
    assert "adopted app.runs" in first.stderr
    assert "creating the sweep index concurrently on app.runs" in first.stderr
    second = run_cli(*line)
    assert second.returncode == 0 and "adopted" not in second.stderr
    assert "creating" not in second.stderr, second.stderr

    # prisma migrate reset: the schema goes, and comes back with a stuck run in it.
    with open_conn(url) as conn:
        conn.execute("DROP SCHEMA app CASCADE")
        conn.execute("CREATE SCHEMA app")
        conn.execute(RUNS_DDL.format(name="app.runs"))
        stuck_app_run(conn)
    # Not covered while the table is there: loud, and a failure (issue 19).
    blind = run_cli("--database-url", url, "recover", "--json")
    assert blind.returncode == 1, blind.stderr
    assert blind.stdout == ""
    warnings = [line for line in blind.stderr.splitlines() if "warning:" in line]
    assert warnings == [
        "stuck-runs: warning: app.runs was dropped and re-created: recovery does not cover the "
        "new table; adopt it again (stuck-runs migrate --adopt)"
    ]
    assert "stuck-runs migrate --adopt app.runs" in blind.stderr

    restored = run_cli(*line)
    assert restored.returncode == 0, restored.stderr
    assert "adopted app.runs" in restored.stderr
    recovered = run_cli("--database-url", url, "recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert "warning" not in recovered.stderr
    row = json.loads(recovered.stdout)
    assert (row["table_name"], row["run_id"], row["status"]) == ("app.runs", "app-stuck", "FAILED")
    with open_conn(url) as conn:
        registered = conn.execute(
            "SELECT schema_name, relation_name FROM stuck_runs.stuck_runs_tables WHERE NOT managed"
        ).fetchall()
    assert registered == [("app", "runs")]


def test_a_dropped_mapped_column_is_reported_and_fails_after_the_others(empty_db_url):
    url = with_query(empty_db_url, schema="app")
    with open_conn(url) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(RUNS_DDL.format(name="app.runs"))
    assert run_cli("--database-url", url, "migrate", "--adopt", "runs").returncode == 0
    with open_conn(url) as conn:
        conn.execute('ALTER TABLE app.runs RENAME COLUMN "errorMessage" TO "lastError"')
        stuck = insert_run(conn, "PROCESSING", idle="1 hour")
    # The other tables are recovered; the table that is still there but no
    # longer covered makes the command fail after it (issue 19).
    result = run_cli("--database-url", url, "recover", "--json")
    assert result.returncode == 1, result.stderr
    assert [json.loads(line)["run_id"] for line in result.stdout.splitlines()] == [stuck]
    assert (
        'app.runs no longer fits its mapping: column "errorMessage" (error) is gone'
        in result.stderr
    )
    assert "recovery no longer covers app.runs, which still exists" in result.stderr
    listed = run_cli("--database-url", url, "list")
    assert listed.returncode == 1 and "no longer fits its mapping" in listed.stderr


def test_migrate_adopt_without_a_complete_proposal_prints_the_command(empty_db_url):
    with open_conn(empty_db_url) as conn:
        conn.execute("CREATE TABLE jobs (id text PRIMARY KEY, state text, born timestamptz)")
    result = run_cli("--database-url", empty_db_url, "migrate", "--adopt", "jobs")
    assert result.returncode == 1
    assert "no column of public.jobs looks like its created_at, updated_at" in result.stderr
    assert (
        "stuck-runs migrate --adopt jobs --column id=id --column status=state"
        " --column created_at=COLUMN --column updated_at=COLUMN" in result.stderr
    )
    with open_conn(empty_db_url) as conn:
        # The install itself went through.
        assert conn.execute("SELECT count(*) FROM stuck_runs.active_runs").fetchone()[0] == 0


def build_0_1(url: str, schema: str) -> None:
    """A database as stuck-runs 0.1 left it: migrations 0001 and 0002 in the app's schema."""
    target = parse_database_url(url).in_schema(schema)
    with yoyo_backend(target) as backend:
        old = read_history().filter(lambda m: m.id in ("0001_core", "0002_retries"))
        backend.apply_migrations(backend.to_apply(old))


def test_an_install_by_0_1_keeps_working_and_moves_with_its_data(empty_db_url):
    build_0_1(empty_db_url, "public")
    with psycopg.connect(parse_database_url(empty_db_url).conninfo, autocommit=True) as conn:
        conn.execute("UPDATE stuck_runs_settings SET older_than = '10 minutes'")
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="before-upgrade")
        conn.execute("SELECT * FROM recover_stuck_runs()")
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="after-upgrade")

    # The new runner finds 0.1's install where it is, and says how to move it.
    found = run_cli("--database-url", empty_db_url, "list", "--json")
    assert found.returncode == 0, found.stderr
    assert [json.loads(line)["run_id"] for line in found.stdout.splitlines()] == ["after-upgrade"]
    assert "stuck-runs migrate --relocate" in found.stderr

    moved = run_cli("--database-url", empty_db_url, "migrate", "--relocate")
    assert moved.returncode == 0, moved.stderr
    assert "applied 0003_beside_the_app" in moved.stdout
    recovered = run_cli("--database-url", empty_db_url, "recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert "relocate" not in recovered.stderr
    assert [json.loads(line)["run_id"] for line in recovered.stdout.splitlines()] == [
        "after-upgrade"
    ]
    with psycopg.connect(parse_database_url(empty_db_url).conninfo, autocommit=True) as conn:
        audit = conn.execute("SELECT run_id FROM stuck_runs.run_recoveries ORDER BY id").fetchall()
        assert audit == [("before-upgrade",), ("after-upgrade",)]
        assert (
            conn.execute("SELECT older_than FROM stuck_runs.stuck_runs_settings")
            .fetchone()[0]
            .total_seconds()
            == 600
        )
        # Only the app's own table stays behind: it writes to it by name.
        left = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind IN ('r', 'v') ORDER BY 1"
        ).fetchall()
        assert left == [("qualification_runs",)]
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            ).fetchone()[0]
            == 0
        )
        config = conn.execute(
            "SELECT DISTINCT (SELECT array_agg(c) FROM unnest(proconfig) AS c"
            " WHERE c LIKE 'search_path=%')::text FROM pg_proc"
            " WHERE pronamespace = 'stuck_runs'::regnamespace"
            " AND proname NOT IN ('stuck_runs_label', '_stuck_runs_quiet') AND prokind <> 'p'"
        ).fetchall()
        # (stuck_runs_label(), which sweep indexes call at every write, pins nothing; nor
        # does the generated fast path, which runs under recover_stuck_runs()'s path.)
        assert config == [('{"search_path=pg_catalog, stuck_runs, pg_temp"}',)]


def test_an_install_by_0_1_upgrades_in_place_without_relocate(empty_db_url):
    build_0_1(empty_db_url, "public")
    upgraded = run_cli("--database-url", empty_db_url, "migrate")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied 0003_beside_the_app" in upgraded.stdout
    assert "stuck-runs migrate --relocate" in upgraded.stderr
    with psycopg.connect(parse_database_url(empty_db_url).conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('stuck_runs')").fetchone()[0] is None
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="still-covered")
    recovered = run_cli("--database-url", empty_db_url, "recover", "--json")
    assert json.loads(recovered.stdout)["run_id"] == "still-covered"


def test_human_lines_show_the_statuses_the_database_returned(db_url):
    """An adopted table's own statuses, never an assumed FAILED, and no Python None."""
    with open_conn(db_url) as conn:
        conn.execute(
            "CREATE TABLE jobs (id text PRIMARY KEY, state text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL)"
        )
        conn.execute(
            "INSERT INTO jobs VALUES ('job-1', 'running', now() - interval '1 hour',"
            " now() - interval '1 hour')"
        )
    adopted = run_cli(
        "--database-url",
        db_url,
        "adopt",
        "--table",
        "jobs",
        "--yes",
        "--column",
        "status=state",
        "--column",
        "completed_at=",
        "--column",
        "error=",
        "--column",
        "completed=",
        "--column",
        "total=",
        "--active-statuses",
        "queued,running",
        "--failed-status",
        "errored",
    )
    assert adopted.returncode == 0, adopted.stderr
    assert "[stuck-runs] stuck-runs:" not in adopted.stderr
    assert "creating the sweep index concurrently on public.jobs" in adopted.stderr
    recovered = run_cli("--database-url", db_url, "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert "(status: running \u2192 errored)" in recovered.stdout
    assert "FAILED" not in recovered.stdout + recovered.stderr
    resumed = run_cli("--database-url", db_url, "resume", "job-1")
    assert resumed.returncode == 0, resumed.stderr
    assert "public.jobs job-1: resumed \u2192 queued, -/- kept" in resumed.stdout
    assert "None" not in resumed.stdout + resumed.stderr


def test_many_instances_run_migrate_adopt_at_once(empty_db_url):
    """Every pod's entrypoint runs the same line after a deploy: all succeed, one entry."""
    from concurrent.futures import ThreadPoolExecutor

    url = with_query(empty_db_url, schema="app")
    with open_conn(url) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(RUNS_DDL.format(name="app.runs"))
    line = ("--database-url", url, "migrate", "--adopt", "runs")
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: run_cli(*line), range(6)))
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    with open_conn(url) as conn:
        entries = conn.execute(
            "SELECT relation_name FROM stuck_runs.stuck_runs_tables WHERE NOT managed"
        ).fetchall()
        indexes = conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'app.runs'::regclass"
            " AND NOT indisprimary AND indisvalid"
        ).fetchone()[0]
    assert entries == [("runs",)] and indexes == 1
