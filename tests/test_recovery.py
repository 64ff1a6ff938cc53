"""recover_stuck_runs(), stuck_runs and active_runs: the contract's database section."""

from __future__ import annotations

import psycopg
import pytest

from .helpers import insert_run, status_of


def recover(conn: psycopg.Connection, *args: object) -> list[tuple]:
    placeholders = ", ".join(["%s"] * len(args))
    return conn.execute(
        f"SELECT run_id, previous_status, completed, total, age, idle"
        f" FROM recover_stuck_runs({placeholders})",
        args,
    ).fetchall()


def run_row(conn: psycopg.Connection, run_id: str) -> dict:
    cur = conn.execute("SELECT * FROM qualification_runs WHERE id = %s", (run_id,))
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING"])
def test_stuck_active_run_is_failed_with_progress_kept(conn, status):
    run_id = insert_run(conn, status, idle="10 minutes", age="12 minutes", completed=3, total=7)
    before = run_row(conn, run_id)

    rows = conn.execute(
        "SELECT run_id, previous_status, completed, total, age, idle"
        " FROM recover_stuck_runs('5 minutes')"
    ).fetchall()

    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(run_id, status, 3, 7)]
    assert rows[0][4].total_seconds() >= 12 * 60
    assert rows[0][5].total_seconds() >= 10 * 60
    after = run_row(conn, run_id)
    assert after["status"] == "FAILED"
    assert after["completed_at"] is not None
    assert "stuck" in after["error"] and status in after["error"]
    unchanged = {k: v for k, v in before.items() if k not in ("status", "completed_at", "error")}
    assert {k: after[k] for k in unchanged} == unchanged  # updated_at included


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED"])
def test_finished_runs_are_never_touched(conn, status):
    run_id = insert_run(conn, status, idle="3 days")
    before = run_row(conn, run_id)
    assert recover(conn, "1 minute") == []
    assert run_row(conn, run_id) == before


def test_recent_activity_keeps_an_old_run_alive(conn):
    old_but_alive = insert_run(conn, "PROCESSING", age="6 hours", idle="30 seconds")
    fresh = insert_run(conn, "PENDING", idle="1 minute")
    assert recover(conn, "5 minutes") == []
    assert status_of(conn, old_but_alive) == "PROCESSING"
    assert status_of(conn, fresh) == "PENDING"


def test_threshold_boundary_is_strict(conn):
    just_under = insert_run(conn, "PROCESSING", idle="4 minutes 59 seconds")
    over = insert_run(conn, "PROCESSING", idle="5 minutes 1 second")
    assert [r[0] for r in recover(conn, "5 minutes")] == [over]
    assert status_of(conn, just_under) == "PROCESSING"


def test_progress_bump_is_a_sign_of_life(conn):
    run_id = insert_run(conn, "PROCESSING", idle="10 minutes", completed=1)
    conn.execute("UPDATE qualification_runs SET completed = completed + 1 WHERE id = %s", (run_id,))
    assert recover(conn, "5 minutes") == []
    assert run_row(conn, run_id)["completed"] == 2


def test_explicit_updated_at_is_kept_by_the_trigger(conn):
    run_id = insert_run(conn, "PROCESSING")
    conn.execute(
        "UPDATE qualification_runs SET updated_at = now() - interval '1 hour' WHERE id = %s",
        (run_id,),
    )
    assert [r[0] for r in recover(conn, "5 minutes")] == [run_id]


def test_explicit_timestamps_on_insert_are_kept(conn):
    conn.execute(
        "INSERT INTO qualification_runs (id, created_at, updated_at)"
        " VALUES ('r1', '2020-01-01 00:00Z', '2020-01-02 00:00Z')"
    )
    row = run_row(conn, "r1")
    assert (row["created_at"].isoformat(), row["updated_at"].isoformat()) == (
        "2020-01-01T00:00:00+00:00",
        "2020-01-02T00:00:00+00:00",
    )
    assert row["status"] == "PENDING" and (row["completed"], row["total"]) == (0, 0)


def test_second_call_returns_nothing(conn):
    insert_run(conn, "PROCESSING", idle="1 hour")
    assert len(recover(conn, "5 minutes")) == 1
    assert recover(conn, "5 minutes") == []


def test_default_threshold_is_five_minutes_and_configurable(conn):
    six = insert_run(conn, "PROCESSING", idle="6 minutes")
    twelve = insert_run(conn, "PROCESSING", idle="12 minutes")
    conn.execute("UPDATE stuck_runs_settings SET older_than = '10 minutes'")
    assert [r[0] for r in conn.execute("SELECT run_id FROM stuck_runs")] == [twelve]
    assert [r[0] for r in conn.execute("SELECT run_id FROM recover_stuck_runs()")] == [twelve]
    conn.execute("UPDATE stuck_runs_settings SET older_than = DEFAULT")
    assert conn.execute("SELECT _stuck_runs_threshold()").fetchone()[0].total_seconds() == 300
    assert [r[0] for r in conn.execute("SELECT run_id FROM recover_stuck_runs()")] == [six]


def test_threshold_setting_rejects_non_positive(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE stuck_runs_settings SET older_than = '0'")


@pytest.mark.parametrize("bad", [None, "0", "-5 minutes", "0 seconds", "1 day -25 hours"])
def test_invalid_older_than_is_rejected_and_changes_nothing(conn, bad):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="older_than"):
        conn.execute("SELECT * FROM recover_stuck_runs(%s::interval)", (bad,))
    assert status_of(conn, run_id) == "PROCESSING"
    assert conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0] == 0


def test_out_of_range_older_than_is_rejected(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="older_than"):
        conn.execute("SELECT * FROM recover_stuck_runs('10000 years')")


def test_very_large_older_than_recovers_nothing(conn):
    insert_run(conn, "PROCESSING", idle="1 hour")
    assert recover(conn, "1000 years") == []


@pytest.mark.parametrize("bad", [0, -1])
def test_limit_below_one_is_rejected(conn, bad):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_runs"):
        conn.execute("SELECT * FROM recover_stuck_runs('5 minutes', %s)", (bad,))


def test_limit_recovers_the_longest_idle_first(conn):
    ids = [insert_run(conn, "PROCESSING", idle=f"{m} minutes") for m in (10, 30, 20)]
    first = [r[0] for r in recover(conn, "5 minutes", 2)]
    assert first == [ids[1], ids[2]]
    assert [r[0] for r in recover(conn, "5 minutes", 2)] == [ids[0]]


def test_audit_row_per_recovered_run(conn):
    run_id = insert_run(conn, "PENDING", idle="1 hour", completed=2, total=9)
    insert_run(conn, "PROCESSING", idle="1 second")
    recover(conn, "5 minutes")
    audit = conn.execute(
        "SELECT run_id, previous_status, completed, total, older_than, recovered_at IS NOT NULL"
        " FROM run_recoveries"
    ).fetchall()
    assert [(a[0], a[1], a[2], a[3], a[4].total_seconds(), a[5]) for a in audit] == [
        (run_id, "PENDING", 2, 9, 300.0, True)
    ]


def test_rolled_back_call_leaves_neither_change_nor_audit(conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    conn.autocommit = False
    assert len(recover(conn, "5 minutes")) == 1
    conn.rollback()
    conn.autocommit = True
    assert status_of(conn, run_id) == "PROCESSING"
    assert conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0] == 0


def test_views_show_active_and_stuck_and_change_nothing(conn):
    stuck = insert_run(conn, "PROCESSING", idle="1 hour", completed=1, total=4)
    alive = insert_run(conn, "PENDING", idle="1 minute")
    insert_run(conn, "COMPLETED", idle="1 hour")
    active = conn.execute(
        "SELECT run_id, status, completed, total, age, idle FROM active_runs ORDER BY idle DESC"
    ).fetchall()
    assert [(r[0], r[1]) for r in active] == [(stuck, "PROCESSING"), (alive, "PENDING")]
    stuck_rows = conn.execute("SELECT run_id, status, completed, total FROM stuck_runs").fetchall()
    assert stuck_rows == [(stuck, "PROCESSING", 1, 4)]
    assert status_of(conn, stuck) == "PROCESSING"
    assert conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0] == 0


def test_psql_forms(db_url, conn):
    import subprocess

    from runner.connection import parse_database_url

    insert_run(conn, "PROCESSING", idle="1 hour", run_id="from-psql")
    dsn = parse_database_url(db_url).conninfo
    out = subprocess.run(
        ["psql", dsn, "-XAtc", "SELECT stuck_runs.recover_stuck_runs('5 minutes')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("(qualification_runs,from-psql,PROCESSING,FAILED,0,10,")
    out = subprocess.run(
        ["psql", dsn, "-XAtc", "SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == ""


def test_keep_alive_update_that_changes_nothing_is_a_sign_of_life(conn):
    run_id = insert_run(conn, "PROCESSING", idle="10 minutes")
    conn.execute("UPDATE qualification_runs SET status = 'PROCESSING' WHERE id = %s", (run_id,))
    assert recover(conn, "5 minutes") == []
