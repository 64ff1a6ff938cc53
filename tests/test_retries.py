"""resume_run(), bounded retries (max_attempts) and NOTIFY stuck_runs_recovered."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from runner.cli import main

from .conftest import migrate
from .helpers import insert_run, open_conn, status_of


def backdate(conn: psycopg.Connection, run_id: str, idle: str = "1 hour") -> None:
    conn.execute(
        "UPDATE qualification_runs SET updated_at = now() - %s::interval WHERE id = %s",
        (idle, run_id),
    )


def run(conn: psycopg.Connection, run_id: str) -> dict:
    cur = conn.execute("SELECT * FROM qualification_runs WHERE id = %s", (run_id,))
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def test_resume_after_recover_round_trips_progress(conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour", completed=4, total=9)
    conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
    resumed = conn.execute(
        "SELECT id, status, completed, total, attempts FROM resume_run(%s)", (run_id,)
    ).fetchone()
    assert resumed == (run_id, "PENDING", 4, 9, 1)
    row = run(conn, run_id)
    assert row["completed_at"] is None and row["error"] is None
    # A fresh idle clock: recovery does not take the run straight back.
    assert conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')").fetchall() == []


@pytest.mark.parametrize("status", ["COMPLETED", "PENDING", "PROCESSING"])
def test_resume_refuses_runs_that_are_not_failed(conn, status):
    run_id = insert_run(conn, status)
    before = run(conn, run_id)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=status):
        conn.execute("SELECT * FROM resume_run(%s)", (run_id,))
    assert run(conn, run_id) == before


def test_resume_unknown_id_is_no_data_found(conn):
    with pytest.raises(psycopg.errors.NoDataFound, match="nope"):
        conn.execute("SELECT * FROM resume_run('nope')")


def test_max_attempts_requeues_then_fails(conn):
    run_id = insert_run(conn, "PENDING", idle="1 hour", completed=2, total=5)
    history = []
    for _ in range(3):
        rows = conn.execute(
            "SELECT run_id, previous_status, action, attempts"
            " FROM recover_stuck_runs('5 minutes', max_attempts => 2)"
        ).fetchall()
        history.append((rows, status_of(conn, run_id)))
        backdate(conn, run_id)
    assert history == [
        ([(run_id, "PENDING", "requeued", 1)], "PENDING"),
        ([(run_id, "PENDING", "requeued", 2)], "PENDING"),
        ([(run_id, "PENDING", "failed", 2)], "FAILED"),
    ]
    audit = conn.execute("SELECT action FROM run_recoveries ORDER BY id").fetchall()
    assert [a[0] for a in audit] == ["requeued", "requeued", "failed"]
    assert (run(conn, run_id)["completed"], run(conn, run_id)["total"]) == (2, 5)


def test_requeued_run_gets_a_fresh_idle_clock_and_keeps_no_completed_at(conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    conn.execute("SELECT * FROM recover_stuck_runs('5 minutes', max_attempts => 1)")
    row = run(conn, run_id)
    assert row["status"] == "PENDING" and row["completed_at"] is None
    idle = conn.execute(
        "SELECT now() - updated_at FROM qualification_runs WHERE id = %s", (run_id,)
    ).fetchone()[0]
    assert idle.total_seconds() < 1


def test_without_max_attempts_every_stuck_run_fails(conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    rows = conn.execute("SELECT action, attempts FROM recover_stuck_runs('5 minutes')").fetchall()
    assert rows == [("failed", 0)]
    assert status_of(conn, run_id) == "FAILED"


def test_negative_max_attempts_rejected(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="max_attempts"):
        conn.execute("SELECT * FROM recover_stuck_runs('5 minutes', max_attempts => -1)")


@pytest.fixture
def listener(db_url):
    with open_conn(db_url) as c:
        c.execute("LISTEN stuck_runs_recovered")
        yield c


def drain(listener: psycopg.Connection, wait: float = 0.5) -> list[dict]:
    return [json.loads(n.payload) for n in listener.notifies(timeout=wait)]


def test_one_notification_per_recovering_call(conn, listener):
    ids = {insert_run(conn, "PROCESSING", idle="1 hour") for _ in range(3)}
    conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
    conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")  # recovers nothing
    (payload,) = drain(listener)
    assert payload["count"] == 3 and payload["failed"] == 3 and payload["requeued"] == 0
    assert {r["run_id"] for r in payload["runs"]} == ids and payload["runs_omitted"] is False


def test_no_notification_for_a_rolled_back_call(conn, listener):
    insert_run(conn, "PROCESSING", idle="1 hour")
    with pytest.raises(psycopg.errors.QueryCanceled), conn.transaction():
        conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
        conn.execute("SET LOCAL statement_timeout = '10ms'")
        conn.execute("SELECT pg_sleep(1)")
    assert drain(listener) == []
    assert conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0] == 0


def test_payload_stays_valid_json_under_the_limit_with_10000_runs(conn, listener):
    conn.execute(
        "INSERT INTO qualification_runs (status, updated_at)"
        " SELECT 'PROCESSING', now() - interval '1 hour' FROM generate_series(1, 10000)"
    )
    assert len(conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')").fetchall()) == 10000
    notes = list(listener.notifies(timeout=0.5))
    assert len(notes) == 1 and len(notes[0].payload.encode()) < 8000
    payload = json.loads(notes[0].payload)
    assert payload == {"count": 10000, "failed": 10000, "requeued": 0, "runs_omitted": True}


def test_long_ids_that_would_overflow_are_left_out(conn, listener):
    for i in range(150):
        insert_run(conn, "PROCESSING", idle="1 hour", run_id=f"{i:03d}-" + "x" * 60)
    conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
    (payload,) = drain(listener)
    assert payload["count"] == 150 and payload["runs_omitted"] is True and "runs" not in payload


def test_upgrade_from_0001_keeps_data(empty_db_url):
    from runner.connection import parse_database_url
    from runner.migrations import read_history, yoyo_backend

    with yoyo_backend(parse_database_url(empty_db_url)) as backend:
        first = read_history().filter(lambda m: m.id == "0001_core")
        backend.apply_migrations(backend.to_apply(first))
    with open_conn(empty_db_url) as c:
        insert_run(c, "PROCESSING", idle="1 hour", completed=3, total=8, run_id="old-stuck")
        insert_run(c, "COMPLETED", idle="2 days", completed=8, total=8, run_id="old-done")
        c.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
        insert_run(c, "PROCESSING", idle="1 hour", run_id="still-stuck")
        before = c.execute(
            "SELECT id, status, completed, total, created_at, updated_at,"
            " completed_at, error FROM qualification_runs ORDER BY id"
        ).fetchall()
    assert migrate(empty_db_url) == [
        "0002_retries",
        "0003_beside_the_app",
        "0004_owners_code",
        "0005_with_the_app",
        "0006_owners",
        "0007_fast_path",
    ]
    with open_conn(empty_db_url) as c:
        after = c.execute(
            "SELECT id, status, completed, total, created_at, updated_at,"
            " completed_at, error FROM qualification_runs ORDER BY id"
        ).fetchall()
        assert after == before
        assert c.execute("SELECT DISTINCT attempts FROM qualification_runs").fetchall() == [(0,)]
        assert c.execute("SELECT run_id, action FROM run_recoveries").fetchall() == [
            ("old-stuck", "failed")
        ]
        rows = c.execute("SELECT run_id, action FROM recover_stuck_runs('5 minutes')").fetchall()
        assert rows == [("still-stuck", "failed")]


def test_cli_resume_and_max_attempts(db_url, conn):
    failed = insert_run(conn, "PROCESSING", idle="1 hour", completed=1, total=2, run_id="f1")
    conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
    done = insert_run(conn, "COMPLETED", run_id="c1")
    result = CliRunner().invoke(main, ["--database-url", db_url, "resume", failed, done, "ghost"])
    assert result.exit_code == 1
    assert "Run f1: resumed \u2192 PENDING, 1/2 kept, attempts: 1" in result.stdout
    assert "c1 is COMPLETED" in result.stderr and "no run with id ghost" in result.stderr
    backdate(conn, failed)
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "recover", "--max-attempts", "3", "--json"]
    )
    assert result.exit_code == 0
    assert {"run_id": "f1", "action": "requeued", "attempts": 2}.items() <= json.loads(
        result.stdout
    ).items()
    assert "1 failed" not in result.stderr and "0 failed, 1 requeued" in result.stderr


def test_resume_json_names_the_run_run_id_like_recover_and_list(db_url, conn):
    """One name for one thing: a log pipeline reads `run_id` from every command's JSON."""
    insert_run(conn, "PROCESSING", idle="1 hour", completed=2, total=5, run_id="r1")
    insert_run(conn, "PENDING", idle="1 minute", run_id="l1")
    recovered = CliRunner().invoke(main, ["--database-url", db_url, "recover", "--json"])
    assert recovered.exit_code == 0, recovered.stderr
    listed = CliRunner().invoke(main, ["--database-url", db_url, "list", "--json"])
    assert listed.exit_code == 0, listed.stderr
    resumed = CliRunner().invoke(main, ["--database-url", db_url, "resume", "--json", "r1"])
    assert resumed.exit_code == 0, resumed.stderr
    rows = [json.loads(r.stdout) for r in (recovered, listed, resumed)]
    assert [row["run_id"] for row in rows] == ["r1", "l1", "r1"]
    assert all("id" not in row for row in rows)
    assert {"table_name", "completed", "total", "status"} <= rows[2].keys()
    assert (rows[2]["status"], rows[2]["completed"], rows[2]["total"]) == ("PENDING", 2, 5)
