"""Clocks: tables written in local time, signs of life dated when written, DST (issue 13)."""

from __future__ import annotations

import json
import time

import psycopg

from .helpers import insert_run, open_conn, run_cli

LOCAL_TABLE = (
    "CREATE TABLE local_runs (id text PRIMARY KEY, status text NOT NULL,"
    " created_at timestamp NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now())"
)


def adopt_local(conn: psycopg.Connection, zone: str) -> None:
    conn.execute(LOCAL_TABLE)
    conn.execute(
        "SELECT adopt_runs_table('local_runs', completed_at_column => NULL, error_column => NULL,"
        " completed_column => NULL, total_column => NULL, time_zone => %s)",
        (zone,),
    )


def test_a_table_written_in_local_time(db_url, conn):
    """The app writes CURRENT_TIMESTAMP into `timestamp` columns, in New York time."""
    dbname = conn.info.dbname
    conn.execute(f"ALTER DATABASE \"{dbname}\" SET TimeZone = 'America/New_York'")
    with open_conn(db_url) as app:
        adopt_local(app, "America/New_York")
        app.execute("INSERT INTO local_runs (id, status) VALUES ('fresh', 'PROCESSING')")
        app.execute(
            "INSERT INTO local_runs (id, status, updated_at)"
            " VALUES ('idle-2h', 'PROCESSING', CURRENT_TIMESTAMP - interval '2 hours')"
        )
    idles = {}
    for zone in ("UTC", "Asia/Tokyo", "America/New_York"):
        with open_conn(db_url) as reader:
            reader.execute(f"SET TimeZone = '{zone}'")
            idles[zone] = dict(
                reader.execute("SELECT run_id, idle FROM stuck_runs.active_runs").fetchall()
            )
    for zone, idle in idles.items():
        assert idle["fresh"].total_seconds() < 60, (zone, idle)
        assert 7190 < idle["idle-2h"].total_seconds() < 7260, (zone, idle)
    result = run_cli("--database-url", db_url, "recover", "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["run_id"] for line in result.stdout.splitlines()] == ["idle-2h"]


def test_idle_time_across_a_dst_change(conn):
    """2026-03-08 in New York: 01:30 and 03:30 on the wall clock are one hour apart."""
    adopt_local(conn, "America/New_York")
    conn.execute(
        "INSERT INTO local_runs (id, status, created_at, updated_at) VALUES"
        " ('before-jump', 'PROCESSING', '2026-03-08 01:30', '2026-03-08 01:30'),"
        " ('after-jump', 'PROCESSING', '2026-03-08 03:30', '2026-03-08 03:30')"
    )
    idle = dict(conn.execute("SELECT run_id, idle FROM stuck_runs.active_runs").fetchall())
    assert (idle["before-jump"] - idle["after-jump"]).total_seconds() == 3600
    # And the fall back on 2026-11-01: 00:30 EDT and 03:30 EST are four hours apart.
    conn.execute("DELETE FROM local_runs")
    conn.execute(
        "INSERT INTO local_runs (id, status, created_at, updated_at) VALUES"
        " ('before-fall', 'PROCESSING', '2026-11-01 00:30', '2026-11-01 00:30'),"
        " ('after-fall', 'PROCESSING', '2026-11-01 03:30', '2026-11-01 03:30')"
    )
    idle = dict(conn.execute("SELECT run_id, idle FROM stuck_runs.active_runs").fetchall())
    assert (idle["before-fall"] - idle["after-fall"]).total_seconds() == 4 * 3600


def test_a_sign_of_life_is_dated_when_written_not_when_its_transaction_began(db_url, conn):
    run_id = insert_run(conn, "PROCESSING", idle="0 seconds")
    with open_conn(db_url) as worker, worker.transaction():
        for done in range(1, 4):
            time.sleep(1)
            worker.execute(
                "UPDATE qualification_runs SET completed = %s WHERE id = %s", (done, run_id)
            )
    rows = conn.execute("SELECT * FROM stuck_runs.recover_stuck_runs('2 seconds')").fetchall()
    assert rows == []


def test_a_requeue_in_a_long_transaction_starts_a_fresh_idle_clock(db_url, conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    with open_conn(db_url) as reaper, reaper.transaction():
        reaper.execute("SELECT pg_sleep(2.5)")
        rows = reaper.execute(
            "SELECT action FROM stuck_runs.recover_stuck_runs('2 seconds', max_attempts => 5)"
        ).fetchall()
        assert rows == [("requeued",)]
    again = conn.execute(
        "SELECT run_id FROM stuck_runs.recover_stuck_runs('2 seconds', max_attempts => 5)"
    ).fetchall()
    assert again == []
    assert conn.execute(
        "SELECT attempts FROM qualification_runs WHERE id = %s", (run_id,)
    ).fetchone() == (1,)


def test_a_resume_in_a_long_transaction_starts_a_fresh_idle_clock(db_url, conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    conn.execute("SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')")
    with open_conn(db_url) as app, app.transaction():
        app.execute("SELECT pg_sleep(2.5)")
        app.execute("SELECT * FROM stuck_runs.resume_run(%s)", (run_id,))
    assert conn.execute("SELECT * FROM stuck_runs.recover_stuck_runs('2 seconds')").fetchall() == []


def seed_backlog(conn: psycopg.Connection, runs: int) -> None:
    conn.execute(
        "INSERT INTO qualification_runs (status, created_at, updated_at)"
        " SELECT 'PROCESSING', now() - interval '1 hour', now() - interval '1 hour'"
        " FROM generate_series(1, %s)",
        (runs,),
    )


def test_batched_fail_open_keeps_the_start_up_bound(db_url, conn):
    seed_backlog(conn, 20_000)
    started = time.monotonic()
    result = run_cli(
        "--database-url",
        db_url,
        "recover",
        "--fail-open",
        "--batch-size",
        "20",
        "--connect-timeout",
        "1",
        "--statement-timeout",
        "0.5",
        "--json",
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    recovered = len(result.stdout.splitlines())
    assert 0 < recovered < 20_000
    assert "a backlog remains" in result.stderr and "error" not in result.stderr
    # The bound (1.5 s) plus the interpreter's start.
    assert elapsed < 1.5 + 1.5, elapsed
    left = conn.execute(
        "SELECT count(*) FROM qualification_runs WHERE status = 'PROCESSING'"
    ).fetchone()[0]
    assert left == 20_000 - recovered


def test_batched_without_fail_open_runs_until_the_backlog_is_done(db_url, conn):
    seed_backlog(conn, 5_000)
    result = run_cli(
        "--database-url",
        db_url,
        "recover",
        "--batch-size",
        "20",
        "--connect-timeout",
        "1",
        "--statement-timeout",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    assert "Recovered 5000 stuck run(s)" in result.stderr
