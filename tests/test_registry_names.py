"""The names the registry keeps for a dropped table's entry: the table's own, and only
what they can still cover (review of issue 19, point 2)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from .helpers import run_cli, with_query
from .test_upgrades import conn_to

TABLE = (
    "CREATE TABLE {name} (id text PRIMARY KEY, status text NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())"
)
ADOPT = (
    "SELECT adopt_runs_table(%s::regclass, completed_at_column => NULL, error_column => NULL,"
    " completed_column => NULL, total_column => NULL)"
)


@pytest.fixture
def hostile(db_url):
    """A role that owns evil.jobs and may write the registry, as adopting its own tables needs."""
    name = f"hostile_{uuid.uuid4().hex[:8]}"
    with conn_to(db_url, "stuck_runs") as conn:
        conn.execute(f'CREATE ROLE "{name}"')
        conn.execute(f'CREATE SCHEMA evil AUTHORIZATION "{name}"')
        conn.execute("CREATE SCHEMA app")
        conn.execute(TABLE.format(name="app.audit_log"))
        for (grant,) in conn.execute("SELECT * FROM stuck_runs_grant_sql(%s)", (name,)).fetchall():
            conn.execute(grant)
        conn.execute(f'GRANT INSERT, UPDATE, DELETE ON stuck_runs_tables TO "{name}"')
        conn.execute(f'SET ROLE "{name}"')
        conn.execute(TABLE.format(name="evil.jobs"))
        conn.execute(ADOPT, ("evil.jobs",))
        conn.execute("RESET ROLE")
    yield name
    with conn_to(db_url, "stuck_runs") as conn:
        conn.execute("DELETE FROM stuck_runs_tables WHERE schema_name = 'evil'")
        conn.execute("DROP SCHEMA evil CASCADE")
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')


def test_an_entry_cannot_be_relabelled_as_another_table(db_url, hostile):
    with conn_to(db_url, "stuck_runs") as conn:
        conn.execute(f'SET ROLE "{hostile}"')
        conn.execute(
            "UPDATE stuck_runs_tables SET schema_name = 'app', relation_name = 'audit_log'"
            " WHERE table_name = 'evil.jobs'::regclass"
        )
        assert conn.execute(
            "SELECT schema_name, relation_name FROM stuck_runs_tables"
            " WHERE table_name = 'evil.jobs'::regclass"
        ).fetchone() == ("evil", "jobs")
        conn.execute("DROP TABLE evil.jobs")
        conn.execute("RESET ROLE")
    # Its dropped table warns under its own name, never the victim's, and fails nothing.
    result = run_cli("--database-url", db_url, "recover")
    assert result.returncode == 0, result.stderr
    assert "evil.jobs was dropped" in result.stderr
    assert "audit_log" not in result.stderr


def test_a_dropped_table_whose_name_a_registered_table_bears_is_removed_by_migrate(empty_db_url):
    """Renamed away, a new table adopted under the old name, then the renamed one dropped."""
    url = with_query(empty_db_url, schema="app")
    with conn_to(empty_db_url, "public") as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(TABLE.format(name="app.jobs"))
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute(ADOPT, ("app.jobs",))
        conn.execute("ALTER TABLE app.jobs RENAME TO jobs_archive")
        conn.execute(TABLE.format(name="app.jobs"))
        conn.execute(ADOPT, ("app.jobs",))
        conn.execute("DROP TABLE app.jobs_archive")
    before = run_cli("--database-url", url, "recover")
    assert before.returncode == 0, before.stderr
    assert "an earlier table named app.jobs was dropped" in before.stderr
    assert "re-created" not in before.stderr
    cleaned = run_cli("--database-url", url, "migrate")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 1 registry entry" in cleaned.stderr
    after = run_cli("--database-url", url, "recover")
    assert after.returncode == 0 and "warning" not in after.stderr, after.stderr
    with conn_to(empty_db_url, "stuck_runs") as conn:
        assert conn.execute(
            "SELECT count(*) FROM stuck_runs_tables WHERE table_name = 'app.jobs'::regclass"
        ).fetchone() == (1,)


def test_forgetting_skips_what_the_caller_may_not_forget(db_url, hostile):
    """unadopt of one's own dropped table is not blocked by another role's entry of that name."""
    with conn_to(db_url, "stuck_runs") as conn:
        conn.execute(TABLE.format(name="evil.other"))
        conn.execute("ALTER TABLE evil.other OWNER TO postgres")
        conn.execute(ADOPT, ("evil.other",))
        conn.execute("DROP TABLE evil.other")
        conn.execute(f'SET ROLE "{hostile}"')
        # The superuser's entry is not the hostile role's to forget: skipped, no error.
        assert conn.execute("SELECT _stuck_runs_forget('evil', 'other')").fetchone() == (0,)
        conn.execute("RESET ROLE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SET ROLE "{hostile}"')
            conn.execute("DELETE FROM stuck_runs_tables WHERE relation_name = 'other'")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT _stuck_runs_forget('evil', 'other')").fetchone() == (1,)


def test_a_locked_registry_fails_recovery_within_seconds(db_url):
    """A role with write grants on the registry may lock it: the call fails, bounded, loudly
    (pg_cron records an error) instead of waiting until statement_timeout."""
    import time

    holder = psycopg.connect(conn_to(db_url, "stuck_runs").info.dsn)
    try:
        holder.execute("LOCK TABLE stuck_runs.stuck_runs_tables IN ACCESS EXCLUSIVE MODE")
        with conn_to(db_url, "stuck_runs") as conn:
            conn.execute("SET statement_timeout = '30s'")
            started = time.monotonic()
            with pytest.raises(psycopg.errors.LockNotAvailable):
                conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
            assert time.monotonic() - started < 10
    finally:
        holder.close()
