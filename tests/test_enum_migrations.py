"""The application's own migrations of an adopted table's status column (issue 19, point 1).

Prisma removes or renames an enum value by re-creating the type: CREATE TYPE "X_new", ALTER
COLUMN ... TYPE "X_new" USING, rename, DROP TYPE. ALTER COLUMN ... TYPE rebuilds every index
on the column from its printed definition, so a sweep index whose predicate named the enum
('PENDING'::"X") failed the migration, and Prisma then refused every later deploy. The sweep
index now compares statuses as text through stuck_runs_label(); these tests run the
application's statements exactly as its ORM writes them, on an adopted table.
"""

from __future__ import annotations

import psycopg
import pytest

from .helpers import explain_sweep, run_cli, with_query
from .test_upgrades import build_release, conn_to

TABLE = "app.jobs"

SCHEMA = """
CREATE SCHEMA app;
CREATE TYPE app."JobStatus" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'ARCHIVED');
CREATE TABLE app.jobs (
    id text PRIMARY KEY,
    status app."JobStatus" NOT NULL DEFAULT 'PENDING',
    "updatedAt" timestamptz NOT NULL DEFAULT now(),
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    error text
);
"""

# Prisma's migration for an enum that loses a value (here ARCHIVED), as `prisma migrate
# dev` writes it.
REMOVE_VALUE = """
BEGIN;
CREATE TYPE app."JobStatus_new" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');
ALTER TABLE app.jobs ALTER COLUMN "status" DROP DEFAULT;
ALTER TABLE app.jobs ALTER COLUMN "status" TYPE app."JobStatus_new"
    USING ("status"::text::app."JobStatus_new");
ALTER TYPE app."JobStatus" RENAME TO "JobStatus_old";
ALTER TYPE app."JobStatus_new" RENAME TO "JobStatus";
DROP TYPE app."JobStatus_old";
ALTER TABLE app.jobs ALTER COLUMN "status" SET DEFAULT 'PENDING';
COMMIT;
"""

# The same shape renames a value (COMPLETED becomes DONE; Prisma re-creates the type).
RENAME_VALUE = """
BEGIN;
CREATE TYPE app."JobStatus_new" AS ENUM ('PENDING', 'PROCESSING', 'DONE', 'FAILED');
ALTER TABLE app.jobs ALTER COLUMN "status" DROP DEFAULT;
ALTER TABLE app.jobs ALTER COLUMN "status" TYPE app."JobStatus_new"
    USING (CASE WHEN "status"::text = 'COMPLETED' THEN 'DONE' ELSE "status"::text END)::app."JobStatus_new";
ALTER TYPE app."JobStatus" RENAME TO "JobStatus_old";
ALTER TYPE app."JobStatus_new" RENAME TO "JobStatus";
DROP TYPE app."JobStatus_old";
ALTER TABLE app.jobs ALTER COLUMN "status" SET DEFAULT 'PENDING';
COMMIT;
"""

CHANGES = {
    "remove an enum value": [REMOVE_VALUE],
    "remove, then rename an enum value": [REMOVE_VALUE, RENAME_VALUE],
    "add an enum value": ["ALTER TYPE app.\"JobStatus\" ADD VALUE 'PAUSED'"],
    "enum to text and back": [
        'ALTER TABLE app.jobs ALTER COLUMN "status" DROP DEFAULT',
        'ALTER TABLE app.jobs ALTER COLUMN "status" TYPE text',
        'ALTER TABLE app.jobs ALTER COLUMN "status" TYPE app."JobStatus"'
        ' USING ("status"::app."JobStatus")',
    ],
    "enum to varchar": ['ALTER TABLE app.jobs ALTER COLUMN "status" TYPE varchar(32)'],
}


def adopted(url: str) -> str:
    """The app's schema and table, with stuck-runs installed and the table adopted as the
    README's start-up line does it."""
    with conn_to(url, "public") as conn:
        conn.execute(SCHEMA)
    app_url = with_query(url, schema="app")
    result = run_cli("--database-url", app_url, "migrate", "--adopt", "jobs")
    assert result.returncode == 0, result.stderr
    return app_url


def apply(url: str, statements: list[str]) -> None:
    with conn_to(url, "public") as conn:
        for statement in statements:
            conn.execute(statement)


def seed_and_recover(url: str) -> list[str]:
    """One run idle an hour, one active now: recovery takes the first and only it."""
    with conn_to(url, "stuck_runs") as conn:
        conn.execute("DELETE FROM app.jobs")
        conn.execute(
            'INSERT INTO app.jobs (id, status, "updatedAt") VALUES'
            " ('dead', 'PROCESSING', now() - interval '1 hour'),"
            " ('alive', 'PROCESSING', now())"
        )
        return [r[0] for r in conn.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')")]


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_apps_status_migrations_apply_on_an_adopted_table(change, empty_db_url):
    url = adopted(empty_db_url)
    apply(empty_db_url, CHANGES[change])
    # Recovery still covers the table, still through its index, which is still current.
    assert seed_and_recover(url) == ["dead"]
    with conn_to(url, "stuck_runs") as conn:
        assert conn.execute("SELECT status::text FROM app.jobs WHERE id = 'alive'").fetchone() == (
            "PROCESSING",
        )
        assert "jobs_stuck_runs_idx" in explain_sweep(conn, TABLE)
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl(%s)", (TABLE,)).fetchall() == []
    again = run_cli("--database-url", url, "start", "--adopt", "jobs")
    assert again.returncode == 0 and "warning" not in again.stderr.lower(), again.stderr


def test_a_sweep_index_built_before_0_4_is_replaced_by_migrate(empty_db_url):
    """0.3 built the index with the enum in its predicate: the next migrate rebuilds it."""
    build_release(
        empty_db_url,
        "stuck_runs",
        ("0001_core", "0002_retries", "0003_beside_the_app", "0004_owners_code"),
    )
    with conn_to(empty_db_url, "public") as conn:
        conn.execute(SCHEMA)
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute(
            "SELECT adopt_runs_table('app.jobs', updated_at_column => 'updatedAt',"
            " created_at_column => 'createdAt', completed_at_column => NULL,"
            " completed_column => NULL, total_column => NULL)"
        )
        for (ddl,) in conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall():
            conn.execute(ddl)
        old = conn.execute(
            "SELECT pg_get_indexdef('app.jobs_stuck_runs_idx'::regclass)"
        ).fetchone()[0]
    assert '"JobStatus"' in old
    # What the user met: the ORM's migration fails on the old index.
    with pytest.raises(psycopg.errors.UndefinedFunction):
        apply(empty_db_url, [REMOVE_VALUE])
    apply(empty_db_url, ["ROLLBACK"])

    url = with_query(empty_db_url, schema="app")
    upgraded = run_cli("--database-url", url, "migrate")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "creating the sweep index concurrently on app.jobs" in upgraded.stderr
    with conn_to(empty_db_url, "stuck_runs") as conn:
        new = conn.execute("SELECT pg_get_indexdef('app.jobs_stuck_runs_idx'::regclass)").fetchone()
        assert "stuck_runs_label(status)" in new[0] and "JobStatus" not in new[0]
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall() == []
    apply(empty_db_url, [REMOVE_VALUE])
    assert seed_and_recover(url) == ["dead"]


def test_readoption_with_other_statuses_rebuilds_the_index(empty_db_url):
    """An index for other statuses would never match the sweep: it is rebuilt, not kept."""
    url = adopted(empty_db_url)
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute(
            "SELECT adopt_runs_table('app.jobs', updated_at_column => 'updatedAt',"
            " created_at_column => 'createdAt', completed_at_column => NULL,"
            " completed_column => NULL, total_column => NULL,"
            " active_statuses => '{PENDING,PROCESSING,ARCHIVED}')"
        )
        ddl = [r[0] for r in conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')")]
    assert ddl[0].startswith("DROP INDEX CONCURRENTLY IF EXISTS app.jobs_stuck_runs_idx")
    assert "'ARCHIVED'::pg_catalog.text" in ddl[1]
    rebuilt = run_cli("--database-url", url, "migrate")
    assert rebuilt.returncode == 0, rebuilt.stderr
    with conn_to(empty_db_url, "stuck_runs") as conn:
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall() == []
        assert "jobs_stuck_runs_idx" in explain_sweep(conn, TABLE)


def test_odd_column_names_and_statuses_keep_a_current_index(empty_db_url):
    """The printed predicate is compared as PostgreSQL prints it: no rebuild at every start."""
    with conn_to(empty_db_url, "public") as conn:
        conn.execute(
            """CREATE SCHEMA app;
            CREATE TYPE app.st AS ENUM ('it''s pending', 'läuft', 'a\\b', 'done', 'x y');
            CREATE TABLE app.jobs (id text PRIMARY KEY, "Sta""tus" app.st NOT NULL,
                                   "updated At" timestamptz NOT NULL DEFAULT now(),
                                   born timestamptz NOT NULL DEFAULT now());
            CREATE TABLE app.vjobs (id text PRIMARY KEY, state varchar(40) NOT NULL,
                                    touched timestamptz NOT NULL DEFAULT now(),
                                    born timestamptz NOT NULL DEFAULT now());"""
        )
    url = with_query(empty_db_url, schema="app")
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute(
            "SELECT adopt_runs_table('app.jobs', status_column => 'Sta\"tus',"
            " updated_at_column => 'updated At', created_at_column => 'born',"
            " completed_at_column => NULL, error_column => NULL, completed_column => NULL,"
            " total_column => NULL,"
            " active_statuses => ARRAY['it''s pending', 'läuft', 'a\\b', 'x y'],"
            " failed_status => 'done')"
        )
        conn.execute(
            "SELECT adopt_runs_table('app.vjobs', status_column => 'state',"
            " updated_at_column => 'touched', created_at_column => 'born',"
            " completed_at_column => NULL, error_column => NULL, completed_column => NULL,"
            " total_column => NULL)"
        )
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with conn_to(empty_db_url, "stuck_runs") as conn:
        for table in ("app.jobs", "app.vjobs"):
            assert conn.execute("SELECT * FROM stuck_runs_index_ddl(%s)", (table,)).fetchall() == []
            assert f"{table[4:]}_stuck_runs_idx" in explain_sweep(conn, table)
