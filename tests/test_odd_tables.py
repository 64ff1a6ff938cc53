"""Odd values and tables (issue 19, points 2, 9 to 12; threat model classes 5 and 8)."""

from __future__ import annotations

import psycopg
import pytest

from .helpers import insert_run, status_of


@pytest.mark.parametrize("threshold", ["-1 year 361 days", "1 day -25 hours", "-1 month 31 days"])
def test_a_threshold_whose_cutoff_lies_ahead_is_refused_everywhere(threshold, conn):
    """Intervals compare as if a year were 360 days: '-1 year 361 days' > 0, yet now() - it is ahead."""
    fresh = insert_run(conn, "PROCESSING", idle="1 second")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="older_than"):
        conn.execute("SELECT * FROM recover_stuck_runs(%s::interval)", (threshold,))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="older_than"):
        conn.execute("SELECT stuck_runs_job_sql(%s)", (threshold,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE stuck_runs_settings SET older_than = %s::interval", (threshold,))
    assert status_of(conn, fresh) == "PROCESSING"
    # Ordinary thresholds with several parts still work.
    assert conn.execute("SELECT count(*) FROM recover_stuck_runs('1 day 2 hours')").fetchone() == (
        0,
    )


def test_lost_coverage_is_said_by_the_sql_itself(conn):
    """psql, pg_cron and an app's own query see it, not only the runner."""
    conn.execute(
        "CREATE TABLE jobs (id text PRIMARY KEY, status text NOT NULL, created_at timestamptz"
        " NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())"
    )
    conn.execute(
        "SELECT adopt_runs_table('jobs', completed_at_column => NULL, error_column => NULL,"
        " completed_column => NULL, total_column => NULL)"
    )
    conn.execute("DROP TABLE jobs")
    conn.execute(
        "CREATE TABLE jobs (id text PRIMARY KEY, status text NOT NULL, created_at timestamptz"
        " NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())"
    )
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(f"{d.severity}: {d.message_primary}"))
    conn.execute("SELECT * FROM recover_stuck_runs()").fetchall()
    conn.execute("SELECT * FROM active_runs").fetchall()
    conn.execute("SELECT * FROM stuck_runs").fetchall()
    lost = [n for n in notices if "jobs was dropped" in n]
    assert len(lost) == 3 and all(n.startswith("WARNING: stuck-runs:") for n in lost), notices


def test_runs_with_a_null_id_are_recovered(conn):
    conn.execute(
        "CREATE TABLE loose (id text UNIQUE, status text NOT NULL, created_at timestamptz NOT NULL,"
        " updated_at timestamptz NOT NULL)"
    )
    conn.execute(
        "SELECT adopt_runs_table('loose', completed_at_column => NULL, error_column => NULL,"
        " completed_column => NULL, total_column => NULL)"
    )
    conn.execute(
        "INSERT INTO loose VALUES (NULL, 'PROCESSING', now() - interval '2 hours', now() - interval"
        " '1 hour'), (NULL, 'PENDING', now() - interval '2 hours', now() - interval '1 hour'),"
        " ('x', 'PROCESSING', now(), now())"
    )
    for _ in range(3):
        conn.execute("SELECT * FROM recover_stuck_runs('5 minutes', max_runs => 1)").fetchall()
    assert conn.execute("SELECT status, count(*) FROM loose GROUP BY 1 ORDER BY 1").fetchall() == [
        ("FAILED", 2),
        ("PROCESSING", 1),
    ]


@pytest.mark.parametrize(
    "id_type", ["date", "interval", "bigint", "uuid", "app_id"], ids=lambda t: f"{t} id"
)
def test_an_odd_id_type_in_one_table_never_stops_resume_in_another(id_type, conn):
    conn.execute("CREATE DOMAIN app_id AS text CHECK (VALUE LIKE 'app-%')")
    value = {
        "date": "2026-01-01",
        "interval": "1 day",
        "bigint": "7",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "app_id": "app-1",
    }[id_type]
    conn.execute(
        f"CREATE TABLE odd (id {id_type} PRIMARY KEY, status text NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL)"
    )
    conn.execute(
        "SELECT adopt_runs_table('odd', completed_at_column => NULL, error_column => NULL,"
        " completed_column => NULL, total_column => NULL)"
    )
    conn.execute("INSERT INTO odd VALUES (%s, 'FAILED', now(), now())", (value,))
    failed = insert_run(conn, "FAILED", idle="1 hour", run_id="not-an-odd-id")
    assert conn.execute("SELECT status FROM resume_run(%s)", (failed,)).fetchone() == ("PENDING",)
    assert conn.execute("SELECT status FROM resume_run(%s)", (value,)).fetchone() == ("PENDING",)


def test_adoption_refuses_tables_it_could_never_recover(conn):
    conn.execute(
        "CREATE TABLE narrow (id text PRIMARY KEY, status varchar(5) NOT NULL,"
        " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
    )
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='status "FAILED" does not fit'):
        conn.execute(
            "SELECT adopt_runs_table('narrow', completed_at_column => NULL, error_column => NULL,"
            " completed_column => NULL, total_column => NULL, active_statuses => '{RUN}')"
        )
    conn.execute(
        "CREATE TABLE split (id text, status text NOT NULL, created_at timestamptz NOT NULL,"
        " updated_at timestamptz NOT NULL, PRIMARY KEY (id, status)) PARTITION BY LIST (status)"
    )
    conn.execute(
        "CREATE TABLE split_active PARTITION OF split FOR VALUES IN ('PENDING', 'PROCESSING')"
    )
    conn.execute("CREATE UNIQUE INDEX ON split_active (id)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="partition by its status"):
        conn.execute(
            "SELECT adopt_runs_table('split_active', completed_at_column => NULL,"
            " error_column => NULL, completed_column => NULL, total_column => NULL)"
        )
