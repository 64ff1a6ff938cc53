"""One bad table or row stays local; adoption refuses what it can know up front (issue 12).

Each fault used to roll back the whole call: the built-in table's stuck runs
stayed PROCESSING, the views failed, and --fail-open hid it.
"""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from .helpers import insert_run, run_cli

APP_TABLE = (
    "CREATE TABLE {name} (id text PRIMARY KEY, status text NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz,"
    " completed_at timestamptz, error {error_type}, completed {count_type}, total {count_type})"
)


def adopt(conn: psycopg.Connection, name: str, **columns: str | None) -> None:
    args = ", ".join(f"{role} => %({role})s" for role in columns)
    conn.execute(
        f"SELECT adopt_runs_table(%(t)s::regclass{', ' if args else ''}{args})",
        {"t": name, **columns},
    )


def make_table(conn, name, *, error_type="text", count_type="integer") -> None:
    conn.execute(APP_TABLE.format(name=name, error_type=error_type, count_type=count_type))


def stuck(conn, table: str, run_id: str, **values: object) -> None:
    columns = {"status": "PROCESSING", "updated_at": None, **values}
    names = ", ".join(["id", *columns])
    marks = ", ".join(["%s"] * (len(columns) + 1))
    conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", (run_id, *columns.values()))
    if "updated_at" not in values:
        conn.execute(
            f"UPDATE {table} SET updated_at = now() - interval '1 hour' WHERE id = %s", (run_id,)
        )


FAULTS = {
    "bigint above 2^31": (
        {"count_type": "bigint"},
        {"completed": 2**40, "total": 2**41},
        "integer out of range",
    ),
    "CHECK forbids the failed status": (
        {},
        {},
        "violates check constraint",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failing_table_never_stops_the_others(db_url, conn, fault):
    table_args, row, cause = FAULTS[fault]
    make_table(conn, "bad_runs", **table_args)
    adopt(conn, "bad_runs")
    if fault.startswith("CHECK"):  # added after adoption, which would have refused it
        conn.execute("ALTER TABLE bad_runs ADD CONSTRAINT no_failed CHECK (status <> 'FAILED')")
    stuck(conn, "bad_runs", "bad-1", **row)
    good = insert_run(conn, "PROCESSING", idle="1 hour")

    # The views list what they can and say which table they could not read.
    with conn.cursor() as cur:
        seen = [r[0] for r in cur.execute("SELECT run_id FROM stuck_runs.active_runs")]
    assert good in seen

    result = run_cli("--database-url", db_url, "recover", "--json")
    assert result.returncode == 1, result.stderr
    assert [json.loads(line)["run_id"] for line in result.stdout.splitlines()] == [good]
    assert "public.bad_runs was not swept" in result.stderr and cause in result.stderr
    assert "Traceback" not in result.stderr
    assert conn.execute("SELECT status FROM bad_runs").fetchone()[0] == "PROCESSING"
    assert (
        conn.execute(
            "SELECT status FROM stuck_runs.qualification_runs WHERE id = %s", (good,)
        ).fetchone()[0]
        == "FAILED"
    )

    insert_run(conn, "PROCESSING", idle="1 hour", run_id="second-start")
    open_ = run_cli("--database-url", db_url, "recover", "--fail-open", "--json")
    assert open_.returncode == 0, open_.stderr
    assert json.loads(open_.stdout)["run_id"] == "second-start"
    assert "was not swept" in open_.stderr


def test_infinite_timestamps_are_recovered_without_an_age(conn):
    """-infinity: stuck forever. PostgreSQL 15 cannot subtract it; recovery must not try."""
    make_table(conn, "infinite_runs")
    adopt(conn, "infinite_runs")
    stuck(conn, "infinite_runs", "minus-infinity", updated_at="-infinity")
    conn.execute(
        "INSERT INTO infinite_runs (id, status, created_at, updated_at)"
        " VALUES ('born-never', 'PROCESSING', '-infinity', now() - interval '1 hour')"
    )
    listed = dict(
        conn.execute("SELECT run_id, idle FROM stuck_runs.stuck_runs ORDER BY run_id").fetchall()
    )
    assert listed["minus-infinity"] is None and listed["born-never"].total_seconds() > 3000
    rows = conn.execute(
        "SELECT run_id, age, idle FROM stuck_runs.recover_stuck_runs('5 minutes') ORDER BY run_id"
    ).fetchall()
    assert [r[0] for r in rows] == ["born-never", "minus-infinity"]
    assert rows[0][1] is None and rows[1][2] is None
    errors = dict(conn.execute("SELECT id, error FROM infinite_runs").fetchall())
    assert "no sign of life for an unknown time" in errors["minus-infinity"]


def test_nulls_in_progress_and_liveness_columns(conn):
    make_table(conn, "nullable_runs")
    adopt(conn, "nullable_runs")
    # No progress at all: the message must still be there.
    stuck(conn, "nullable_runs", "no-progress", completed=None, total=None)
    # Never touched since created long ago: idle counts from created_at.
    conn.execute(
        "INSERT INTO nullable_runs (id, status, created_at, updated_at)"
        " VALUES ('never-touched', 'PENDING', now() - interval '2 hours', NULL)"
    )
    conn.execute(
        "INSERT INTO nullable_runs (id, status, created_at, updated_at)"
        " VALUES ('just-created', 'PENDING', now(), NULL)"
    )
    flags = dict(conn.execute("SELECT run_id, stuck FROM stuck_runs.active_runs").fetchall())
    assert flags == {"no-progress": True, "never-touched": True, "just-created": False}
    rows = conn.execute(
        "SELECT run_id, idle FROM stuck_runs.recover_stuck_runs('5 minutes') ORDER BY run_id"
    ).fetchall()
    assert [r[0] for r in rows] == ["never-touched", "no-progress"]
    assert rows[0][1].total_seconds() > 7000
    errors = dict(conn.execute("SELECT id, error FROM nullable_runs").fetchall())
    assert errors["no-progress"].startswith("Recovered as stuck by stuck-runs: PROCESSING")
    assert "Partial progress (?/?) was kept." in errors["no-progress"]
    assert errors["just-created"] is None


@pytest.mark.parametrize(
    ("table_args", "columns", "message"),
    [
        ({}, {"updated_at_column": "created_at"}, 'column "created_at" is given for two roles'),
        (
            {"error_type": "varchar(100)"},
            {},
            'column "error" (given as error_column) holds at most 100 characters',
        ),
        ({}, {"time_zone": "Mars/Olympus_Mons"}, 'time_zone "Mars/Olympus_Mons"'),
    ],
)
def test_adoption_refuses_what_it_can_know_up_front(conn, table_args, columns, message):
    make_table(conn, "refused_runs", **table_args)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=re.escape(message)):
        adopt(conn, "refused_runs", **columns)


def test_a_long_error_column_gets_a_message_that_fits(conn):
    make_table(conn, "narrow_runs", error_type="varchar(255)")
    adopt(conn, "narrow_runs")
    stuck(conn, "narrow_runs", "n" * 40, completed=2**31 - 1, total=2**31 - 1)
    conn.execute("UPDATE narrow_runs SET status = repeat('P', 200)")
    conn.execute(
        "UPDATE stuck_runs.stuck_runs_tables SET active_statuses = ARRAY[repeat('P', 200)]"
        " WHERE table_name = 'narrow_runs'::regclass"
    )
    assert (
        len(conn.execute("SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')").fetchall())
        == 1
    )
    assert len(conn.execute("SELECT error FROM narrow_runs").fetchone()[0]) == 255


def test_sweep_index_names_are_unique_per_table_and_fit(db_url, conn):
    long_a = "runs_" + "x" * 50 + "_alpha"
    long_b = "runs_" + "x" * 50 + "_beta"
    cjk = "実行" * 10 + "表"
    for name in (long_a, long_b, cjk):
        make_table(conn, f'"{name}"')
        result = run_cli(
            "--database-url",
            db_url,
            "adopt",
            "--table",
            f'"{name}"',
            "--yes",
            "--column",
            "completed_at=completed_at",
        )
        assert result.returncode == 0, result.stderr
    indexes = conn.execute(
        "SELECT c.relname, i.indexrelid::regclass::text FROM pg_index AS i"
        " JOIN pg_class AS c ON c.oid = i.indrelid"
        " WHERE i.indexrelid::regclass::text LIKE '%stuck_runs_idx%'"
        "   AND c.relnamespace = 'public'::regnamespace"
    ).fetchall()
    assert sorted(t for t, _ in indexes) == sorted([long_a, long_b, cjk])
    assert len({i for _, i in indexes}) == 3
    assert all(len(i.strip('"').encode()) <= 63 for _, i in indexes)
    again = run_cli("--database-url", db_url, "migrate")
    assert "creating" not in again.stderr, again.stderr
    dropped = run_cli("--database-url", db_url, "unadopt", "--table", f'"{long_b}"', "--drop-index")
    assert dropped.returncode == 0, dropped.stderr
    left = {
        t
        for t, _ in conn.execute(
            "SELECT c.relname, 1 FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid"
            " WHERE i.indexrelid::regclass::text LIKE '%stuck_runs_idx%'"
            "   AND c.relnamespace = 'public'::regnamespace"
        )
    }
    assert left == {long_a, cjk}


def test_a_mistyped_table_is_named_as_such(db_url):
    for command in (("adopt", "--yes"), ("unadopt",), ("resume", "some-id")):
        result = run_cli("--database-url", db_url, *command, "--table", "no_such_table")
        assert result.returncode == 2, (command, result.stderr)
        assert "there is no table 'no_such_table' in schema 'public'" in result.stderr
        assert "not installed" not in result.stderr


def test_a_partitioned_table_is_refused_up_front_and_migrate_stays_green(db_url, conn):
    conn.execute(
        "CREATE TABLE parted_runs (id text, status text NOT NULL,"
        " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,"
        " PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)"
    )
    result = run_cli(
        "--database-url",
        db_url,
        "adopt",
        "--table",
        "parted_runs",
        "--yes",
        "--column",
        "completed_at=",
        "--column",
        "error=",
        "--column",
        "completed=",
        "--column",
        "total=",
    )
    assert result.returncode == 2 and "partitioned table" in result.stderr, result.stderr
    assert (
        conn.execute(
            "SELECT count(*) FROM stuck_runs.stuck_runs_tables WHERE NOT managed"
        ).fetchone()[0]
        == 0
    )
    assert run_cli("--database-url", db_url, "migrate").returncode == 0


def test_statuses_the_table_cannot_hold_or_never_holds(conn):
    make_table(conn, "lower_runs")
    conn.execute(
        "ALTER TABLE lower_runs ADD CONSTRAINT known_status"
        " CHECK (status IN ('pending', 'processing', 'done', 'failed'))"
    )
    with pytest.raises(
        psycopg.errors.InvalidParameterValue,
        match='status "PENDING" is not allowed by the CHECK constraint known_status',
    ):
        adopt(conn, "lower_runs")
    conn.execute("ALTER TABLE lower_runs DROP CONSTRAINT known_status")
    conn.execute(
        "INSERT INTO lower_runs (id, status, updated_at) VALUES"
        " ('a', 'processing', now() - interval '2 hours'), ('b', 'done', now())"
    )
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    adopt(conn, "lower_runs")
    assert notices[0] == (
        "stuck-runs: no row of public.lower_runs has status PENDING, PROCESSING, FAILED;"
        " its rows have: done, processing"
    )
    adopt(conn, "lower_runs", active_statuses=["processing"], failed_status="failed")
    assert len([n for n in notices if "no row of" in n]) == 1
    assert conn.execute(
        "SELECT run_id FROM stuck_runs.recover_stuck_runs('5 minutes')"
    ).fetchall() == [("a",)]


def test_dropping_an_adopted_table_while_recovery_runs(db_url, conn):
    """The app re-creates its table (prisma migrate reset) while reapers sweep: never an error."""
    import threading

    from .helpers import open_conn

    make_table(conn, "churn_runs")
    adopt(conn, "churn_runs")
    errors: list[str] = []
    stop = threading.Event()

    def reap() -> None:
        with open_conn(db_url) as reaper:
            reaper.add_notice_handler(lambda d: None)
            while not stop.is_set():
                insert_run(reaper, "PROCESSING", idle="1 hour")
                try:
                    reaper.execute("SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')")
                    reaper.execute("SELECT * FROM stuck_runs.active_runs").fetchall()
                except psycopg.Error as exc:
                    errors.append(str(exc))

    threads = [threading.Thread(target=reap) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(40):
            conn.execute("DROP TABLE churn_runs")
            make_table(conn, "churn_runs")
            adopt(conn, "churn_runs")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert (
        conn.execute(
            "SELECT count(*) FROM stuck_runs.qualification_runs WHERE status = 'PROCESSING'"
            " AND updated_at < now() - interval '5 minutes'"
        ).fetchone()[0]
        <= 2
    )


def test_migrate_by_a_role_without_create_says_so(empty_db_url):
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    from .helpers import open_conn

    name = f"nocreate_{uuid.uuid4().hex[:8]}"
    with open_conn(empty_db_url) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN')
        dbname = admin.info.dbname
        admin.execute(f'REVOKE CREATE ON DATABASE "{dbname}" FROM PUBLIC')
    parts = urlsplit(empty_db_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    url = urlunsplit((parts.scheme, f"{name}@{host}", parts.path, parts.query, ""))
    try:
        result = run_cli("--database-url", url, "migrate")
        assert result.returncode == 1
        assert "permission denied for database" in result.stderr, result.stderr
        assert "not installed" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        with open_conn(empty_db_url) as admin:
            admin.execute(f'DROP OWNED BY "{name}"')
            admin.execute(f'DROP ROLE "{name}"')
