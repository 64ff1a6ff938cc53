"""Pinned search_path, EXECUTE privileges, and the index that keeps a sweep cheap."""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest

from .helpers import explain_sweep, insert_run, open_conn

OUR_FUNCTIONS = "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p WHERE p.pronamespace = 'stuck_runs'::regnamespace AND p.prokind <> 'p'"
# Called by sweep indexes' predicates at every write of an application's table, by whoever
# writes: executable by everyone, nothing pinned, bodies that name only pg_catalog.
INDEX_FUNCTIONS = {
    "stuck_runs_label(anyenum)",
    "stuck_runs_label(text)",
    "stuck_runs_label(character varying)",
}


def test_every_function_pins_search_path_with_pg_temp_last(conn):
    """Procedures aside: a SET clause forbids COMMIT, so the one that needs it names all itself.

    tests/test_drain.py plants objects on the caller's path against it.
    """
    procedures = conn.execute(
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p"
        " WHERE p.pronamespace = 'stuck_runs'::regnamespace AND p.prokind = 'p'"
    ).fetchall()
    assert procedures == [("drain_stuck_runs(interval,integer,interval,integer,text)", None)]
    functions = conn.execute(OUR_FUNCTIONS).fetchall()
    assert len(functions) >= 3
    assert {name for name, _ in functions} >= INDEX_FUNCTIONS
    for name, config in functions:
        if name in INDEX_FUNCTIONS:
            assert config is None, name
            continue
        if name.startswith("_stuck_runs_quiet("):
            # Generated with every name qualified, called only from
            # recover_stuck_runs() under its pinned path: a search_path of its
            # own would cost the no-op sweep a second switch. It only bounds
            # its lock waits, leaving a locked table to the general path.
            assert config == ["lock_timeout=50ms"], name
            continue
        paths = [c for c in (config or []) if c.startswith("search_path=")]
        assert paths, f"{name} does not pin search_path"
        parts = [p.strip() for p in paths[0].split("=", 1)[1].split(",")]
        # Nothing but pg_catalog, stuck-runs' own schema and pg_temp: no schema others write to.
        assert parts == ["pg_catalog", "stuck_runs", "pg_temp"], (name, parts)


def test_public_cannot_execute_any_function(conn):
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, has_function_privilege('public', p.oid, 'EXECUTE')"
        " FROM pg_proc p WHERE p.pronamespace = 'stuck_runs'::regnamespace"
    ).fetchall()
    assert len(rows) > 10
    assert {name for name, public in rows if public} == INDEX_FUNCTIONS


def test_index_functions_name_nothing_outside_pg_catalog(conn):
    """No name in their bodies resolves through a path, and no cast is looked up by type."""
    bodies = dict(
        conn.execute(
            "SELECT p.oid::regprocedure::text, p.prosrc FROM pg_proc p"
            " WHERE p.pronamespace = 'stuck_runs'::regnamespace AND p.proname = 'stuck_runs_label'"
        ).fetchall()
    )
    assert bodies == {
        "stuck_runs_label(anyenum)": "SELECT pg_catalog.textin(pg_catalog.enum_out($1))",
        "stuck_runs_label(text)": "SELECT $1",
        "stuck_runs_label(character varying)": "SELECT $1::pg_catalog.text",
    }


@pytest.fixture
def role(conn):
    name = f"reaper_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{name}"')
    conn.execute(f'GRANT USAGE ON SCHEMA stuck_runs TO "{name}"')
    conn.execute(
        f'GRANT SELECT, UPDATE ON qualification_runs, stuck_runs_settings, stuck_runs_tables, stuck_runs_roles, _stuck_runs_covered TO "{name}"'
    )
    conn.execute(f'GRANT SELECT, INSERT ON run_recoveries TO "{name}"')
    yield name
    conn.execute("RESET ROLE")
    conn.execute(f'DROP OWNED BY "{name}"')
    conn.execute(f'DROP ROLE "{name}"')


def test_role_without_execute_gets_42501_then_grant_works(conn, role):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    conn.execute(f'SET ROLE "{role}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
    conn.execute("RESET ROLE")
    conn.execute(f'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA stuck_runs TO "{role}"')
    conn.execute(f'SET ROLE "{role}"')
    assert [r[0] for r in conn.execute("SELECT run_id FROM recover_stuck_runs()")] == [run_id]
    conn.execute("RESET ROLE")
    assert conn.execute("SELECT recovered_by FROM run_recoveries").fetchone()[0] == role


def test_shadowing_objects_in_callers_search_path_change_nothing(conn):
    """CVE-2018-1058: a caller's temp table or a planted now() must not steer the function."""
    real = insert_run(conn, "PROCESSING", idle="1 hour")
    conn.execute("CREATE SCHEMA evil")
    conn.execute(
        "CREATE TABLE evil.qualification_runs (LIKE stuck_runs.qualification_runs INCLUDING ALL)"
    )
    conn.execute("CREATE TABLE evil.run_recoveries (LIKE run_recoveries)")
    conn.execute(
        "CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql"
        " AS $$ SELECT '1900-01-01'::timestamptz $$"
    )
    conn.execute("CREATE TEMP TABLE qualification_runs (LIKE qualification_runs INCLUDING ALL)")
    conn.execute(
        "INSERT INTO pg_temp.qualification_runs (id, status, updated_at)"
        " VALUES ('decoy', 'PROCESSING', now() - interval '1 day')"
    )
    conn.execute("SET search_path = pg_temp, evil, public")
    rows = conn.execute("SELECT run_id FROM stuck_runs.recover_stuck_runs('5 minutes')").fetchall()
    assert [r[0] for r in rows] == [real]
    conn.execute("SET search_path = public")
    row = conn.execute("SELECT status FROM stuck_runs.qualification_runs WHERE id = %s", (real,))
    assert row.fetchone()[0] == "FAILED"
    assert (
        conn.execute("SELECT status FROM pg_temp.qualification_runs").fetchone()[0] == "PROCESSING"
    )
    assert conn.execute("SELECT count(*) FROM evil.run_recoveries").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM stuck_runs.run_recoveries").fetchone()[0] == 1


@pytest.fixture
def big_table(conn):
    """50,000 finished runs and 50 live ones, analysed: what a real table looks like."""
    conn.execute(
        "INSERT INTO qualification_runs (status, completed, total, created_at, updated_at, completed_at)"
        " SELECT CASE WHEN g % 5 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, 10, 10,"
        "        now() - g * interval '1 minute', now() - g * interval '1 minute', now()"
        " FROM generate_series(1, 50000) AS g"
    )
    for _ in range(50):
        insert_run(conn, "PROCESSING", idle="10 seconds")
    conn.execute("ANALYZE qualification_runs")
    return conn


def test_the_sweep_statement_uses_the_partial_index(big_table):
    """EXPLAIN the exact statement recover_stuck_runs() builds and runs for the table."""
    plan = explain_sweep(big_table, "qualification_runs")
    assert "qualification_runs_stuck_runs_idx" in plan, plan
    assert "Seq Scan on qualification_runs" not in plan, plan


def scans(conn: psycopg.Connection) -> tuple[int, int]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT t.seq_scan, i.idx_scan FROM pg_stat_user_tables t"
        " JOIN pg_stat_user_indexes i ON i.relid = t.relid"
        " WHERE t.relname = 'qualification_runs' AND i.indexrelname = 'qualification_runs_stuck_runs_idx'"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM recover_stuck_runs('5 minutes')",
        "SELECT * FROM stuck_runs",
        "SELECT * FROM active_runs",
    ],
)
def test_sweeps_and_views_read_through_the_partial_index(db_url, big_table, query):
    """Count the scans a call makes on the 50,000-row table: index scans, never a seq scan."""
    calls = 8
    with open_conn(db_url) as caller:
        caller.execute(query).fetchall()
        caller.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(0.2)
    before = scans(big_table)
    with open_conn(db_url) as caller:
        for _ in range(calls):
            caller.execute(query).fetchall()
        caller.execute("SELECT pg_stat_force_next_flush()")
        caller.execute("SELECT 1")
    deadline = time.monotonic() + 5
    after = scans(big_table)
    while after[1] < before[1] + calls and time.monotonic() < deadline:
        time.sleep(0.1)
        after = scans(big_table)
    assert after[1] >= before[1] + calls, (before, after)
    assert after[0] == before[0], (before, after)


def test_cli_with_exactly_the_documented_grants(db_url, conn):
    """Every runner command an app role uses works with stuck_runs_grant_sql()'s GRANTs, no more.

    Without them the role hears what it lacks and how to get it, in one line.
    """
    from urllib.parse import urlsplit, urlunsplit

    from .helpers import run_cli

    name = f"app_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{name}" LOGIN')
    conn.execute(f'GRANT SELECT, UPDATE ON qualification_runs TO "{name}"')
    stuck = insert_run(conn, "PROCESSING", idle="1 hour")
    parts = urlsplit(db_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    url = urlunsplit((parts.scheme, f"{name}@{host}", parts.path, parts.query, ""))
    try:
        # Every role may use the schema (sweeps of other owners' tables name
        # stuck_runs_label() there); nothing else of ours is granted.
        denied = run_cli("--database-url", url, "recover")
        assert denied.returncode == 1 and "permission denied" in denied.stderr
        assert "stuck_runs_grant_sql" in denied.stderr
        assert len(denied.stderr.strip().splitlines()) == 1
        for (grant,) in conn.execute("SELECT * FROM stuck_runs_grant_sql(%s)", (name,)).fetchall():
            conn.execute(grant)
        listed = run_cli("--database-url", url, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["run_id"] for line in listed.stdout.splitlines()] == [stuck]
        allowed = run_cli("--database-url", url, "recover", "--json")
        assert allowed.returncode == 0, allowed.stderr
        assert [json.loads(line)["run_id"] for line in allowed.stdout.splitlines()] == [stuck]
        resumed = run_cli("--database-url", url, "resume", stuck)
        assert resumed.returncode == 0, resumed.stderr
        dry = run_cli("--database-url", url, "recover", "--dry-run", "--older-than", "1 second")
        assert dry.returncode == 0, dry.stderr
    finally:
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')
