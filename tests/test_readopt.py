"""The start-up line over an adopted table's life: it keeps what it is not told, and a
re-mapped table never keeps the app from starting.

Issue 19, points 3 and 4: `migrate --adopt jobs` re-adopted a table adopted with
`--time-zone America/New_York` (or custom statuses through SQL) with UTC and
{PENDING,PROCESSING}/FAILED, so fresh runs were failed and dead ones no longer
covered; and after Prisma's @@map change the same line exited 2.

Issue 19, point 2: after `prisma migrate reset` or a field renamed (Prisma drops
and adds the column) recovery covered nothing, and the runner said so in a
warning but exited 0; a table dropped for good could not be unadopted.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from runner.connection import parse_database_url

from .helpers import open_conn, run_cli, with_query

JOBS_DDL = (
    "CREATE TABLE app.{name} (id text PRIMARY KEY, status text NOT NULL,"
    ' "createdAt" timestamp(3) NOT NULL, "updatedAt" timestamp(3) NOT NULL,'
    ' "completedAt" timestamp(3), "errorMessage" text, tries integer NOT NULL DEFAULT 0)'
)
# Everything adoption set, but the oid and when: what re-adoption must keep.
ENTRY = (
    "SELECT to_jsonb(t) - 'table_name' - 'adopted_at' FROM stuck_runs.stuck_runs_tables AS t"
    " WHERE NOT managed"
)


def entry(url: str) -> dict:
    with open_conn(url) as conn:
        rows = conn.execute(ENTRY).fetchall()
    assert len(rows) == 1
    return rows[0][0]


def new_york_run(conn, run_id: str, status: str, idle: str) -> None:
    """The app writes New York wall-clock time into its timestamp columns."""
    conn.execute(
        'INSERT INTO app.jobs (id, status, "createdAt", "updatedAt") VALUES'
        " (%s, %s, (now() - interval '1 day') AT TIME ZONE 'America/New_York',"
        "  (now() - %s::interval) AT TIME ZONE 'America/New_York')",
        (run_id, status, idle),
    )


def test_the_start_up_line_keeps_what_an_earlier_adoption_set(empty_db_url):
    url = with_query(empty_db_url, schema="app")
    with open_conn(url) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(JOBS_DDL.format(name="jobs"))
    line = ("--database-url", url, "migrate", "--adopt", "jobs")
    assert run_cli(*line).returncode == 0
    zoned = run_cli(
        "--database-url",
        url,
        "adopt",
        "--table",
        "jobs",
        "--time-zone",
        "America/New_York",
        "--yes",
    )
    assert zoned.returncode == 0, zoned.stderr
    with open_conn(url) as conn:
        # Custom statuses and an attempts column, through SQL.
        conn.execute(
            "SELECT stuck_runs.adopt_runs_table('app.jobs', created_at_column => 'createdAt',"
            " updated_at_column => 'updatedAt', completed_at_column => 'completedAt',"
            " error_column => 'errorMessage', completed_column => NULL, total_column => NULL,"
            " attempts_column => 'tries', active_statuses => '{QUEUED,RUNNING}',"
            " failed_status => 'DEAD', time_zone => 'America/New_York')"
        )
    adopted = entry(url)
    assert adopted["time_zone"] == "America/New_York" and adopted["failed_status"] == "DEAD"

    # The start-up line, at every start: nothing changes.
    for _ in range(2):
        again = run_cli(*line)
        assert again.returncode == 0, again.stderr
        assert "adopted" not in again.stderr
        assert entry(url) == adopted
    same = run_cli("--database-url", url, "adopt", "--table", "jobs", "--yes")
    assert same.returncode == 0 and "already adopted as shown" in same.stdout, same.stderr
    assert "tries  [kept]" in same.stderr
    assert entry(url) == adopted

    # A run written a second ago in New York time is alive; a QUEUED one idle
    # for an hour is dead and covered.
    with open_conn(url) as conn:
        new_york_run(conn, "fresh", "RUNNING", "1 second")
        new_york_run(conn, "dead", "QUEUED", "1 hour")
    recovered = run_cli("--database-url", url, "recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert [
        (row["run_id"], row["previous_status"], row["status"])
        for row in map(json.loads, recovered.stdout.splitlines())
    ] == [("dead", "QUEUED", "DEAD")]

    # Told one thing, it changes that one thing.
    paris = run_cli(*line, "--time-zone", "Europe/Paris")
    assert paris.returncode == 0 and "adopted app.jobs" in paris.stderr, paris.stderr
    assert entry(url) == {**adopted, "time_zone": "Europe/Paris"}
    unzoned = run_cli(*line, "--column", "error=")
    assert unzoned.returncode == 0, unzoned.stderr
    assert entry(url) == {**adopted, "time_zone": "Europe/Paris", "error_column": None}

    # After the app drops and re-creates its table, the same line restores
    # coverage with what was set before.
    with open_conn(url) as conn:
        conn.execute("DROP TABLE app.jobs")
        conn.execute(JOBS_DDL.format(name="jobs"))
    restored = run_cli(*line)
    assert restored.returncode == 0 and "adopted app.jobs" in restored.stderr, restored.stderr
    assert entry(url) == {**adopted, "time_zone": "Europe/Paris", "error_column": None}


def test_a_renamed_table_keeps_the_start_up_line_green_and_says_the_new_line(empty_db_url):
    url = with_query(empty_db_url, schema="app")
    with open_conn(url) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(JOBS_DDL.format(name="qualification_runs"))
    line = ("--database-url", url, "migrate", "--adopt", "qualification_runs")
    assert run_cli(*line).returncode == 0

    # @@map("runs") with a migration that renames the table: still covered.
    with open_conn(url) as conn:
        conn.execute("ALTER TABLE app.qualification_runs RENAME TO runs")
    renamed = run_cli(*line)
    assert renamed.returncode == 0, renamed.stderr
    warnings = [text for text in renamed.stderr.splitlines() if "warning" in text]
    assert warnings == [
        "stuck-runs: warning: qualification_runs was renamed to runs and recovery still covers "
        "it; put the new name in the start-up line: stuck-runs migrate --adopt runs"
    ]
    with open_conn(url) as conn:
        conn.execute(
            'INSERT INTO app.runs (id, status, "createdAt", "updatedAt") VALUES'
            " ('stuck', 'PROCESSING', now() - interval '1 day', now() - interval '1 hour')"
        )
    recovered = run_cli("--database-url", url, "recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout)["table_name"] == "app.runs"
    # The line it printed records the new name, and keeps what was set.
    before = entry(url)
    followed = run_cli("--database-url", url, "migrate", "--adopt", "runs")
    assert followed.returncode == 0 and "adopted app.runs" in followed.stderr, followed.stderr
    assert entry(url) == {**before, "relation_name": "runs"}
    again = run_cli("--database-url", url, "migrate", "--adopt", "runs")
    assert again.returncode == 0 and "adopted" not in again.stderr, again.stderr


def test_a_remapped_table_keeps_the_start_up_line_green_and_names_the_new_table(empty_db_url):
    url = with_query(empty_db_url, schema="app")
    with open_conn(url) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(JOBS_DDL.format(name="qualification_runs"))
        conn.execute("CREATE TABLE app.users (id text PRIMARY KEY, status text)")
    line = ("--database-url", url, "migrate", "--adopt", "qualification_runs")
    assert run_cli(*line).returncode == 0

    # What Prisma's own migration does for @@map("runs"): drop, create anew.
    with open_conn(url) as conn:
        conn.execute("DROP TABLE app.qualification_runs")
        conn.execute(JOBS_DDL.format(name="runs"))
    remapped = run_cli(*line)
    assert remapped.returncode == 0, remapped.stderr
    warnings = [text for text in remapped.stderr.splitlines() if "warning" in text]
    assert len(warnings) == 1
    assert "there is no table 'qualification_runs' in schema 'app' any more" in warnings[0]
    assert warnings[0].endswith(
        "put its new name in the start-up line: stuck-runs migrate --adopt runs"
    )

    # The line it printed covers the table.
    followed = run_cli("--database-url", url, "migrate", "--adopt", "runs")
    assert followed.returncode == 0 and "adopted app.runs" in followed.stderr, followed.stderr

    # A name that never was adopted stays a usage error: a typo, said as such.
    typo = run_cli("--database-url", url, "migrate", "--adopt", "qualifcation_runs")
    assert typo.returncode == 2
    assert "there is no table 'qualifcation_runs' in schema 'app'" in typo.stderr


# What the application's own migrations do to an adopted table that loses it its
# coverage while a table is still there.
LOSES_COVERAGE = {
    # prisma migrate reset: the table is dropped and created anew (a new oid).
    "migrate reset": "DROP TABLE app.jobs; " + JOBS_DDL.format(name="jobs"),
    # A field renamed in schema.prisma: Prisma drops the column and adds the new one.
    "field renamed": 'ALTER TABLE app.jobs DROP COLUMN "errorMessage";'
    ' ALTER TABLE app.jobs ADD COLUMN "lastError" text',
}


def adopted_jobs(empty_db_url: str) -> str:
    """app.jobs adopted by the start-up line, with a run that is stuck; the app's URL."""
    url = with_query(empty_db_url, schema="app")
    with open_conn(url) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute(JOBS_DDL.format(name="jobs"))
    adopted = run_cli("--database-url", url, "migrate", "--adopt", "jobs")
    assert adopted.returncode == 0, adopted.stderr
    return url


def stuck_job(url: str) -> None:
    with open_conn(url) as conn:
        conn.execute(
            'INSERT INTO app.jobs (id, status, "createdAt", "updatedAt") VALUES'
            " ('stuck', 'PROCESSING', (now() - interval '1 day') AT TIME ZONE 'UTC',"
            " (now() - interval '1 hour') AT TIME ZONE 'UTC')"
        )


def lines(stderr: str, kind: str) -> list[str]:
    return [text for text in stderr.splitlines() if text.startswith(f"stuck-runs: {kind}:")]


@pytest.mark.parametrize("change", LOSES_COVERAGE)
def test_lost_coverage_is_said_in_psql(change, empty_db_url):
    """The SQL function and both views say it where psql (and pg_cron's log) show it."""
    url = adopted_jobs(empty_db_url)
    with open_conn(url) as conn:
        conn.execute(LOSES_COVERAGE[change])
    stuck_job(url)
    psql = subprocess.run(
        [
            "psql",
            parse_database_url(empty_db_url).conninfo,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SELECT * FROM stuck_runs.recover_stuck_runs()",
            "-c",
            "SELECT * FROM stuck_runs.stuck_runs",
            "-c",
            "SELECT * FROM stuck_runs.active_runs",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    warnings = [text for text in psql.stderr.splitlines() if text.startswith("WARNING:")]
    assert len(warnings) == 3, psql.stderr
    assert all(text.startswith("WARNING:  stuck-runs: app.jobs ") for text in warnings), warnings
    expected = {
        "migrate reset": "was dropped and re-created",
        "field renamed": 'no longer fits its mapping: column "errorMessage" (error) is gone',
    }[change]
    assert all(expected in text for text in warnings), warnings


@pytest.mark.parametrize("change", LOSES_COVERAGE)
def test_lost_coverage_of_a_table_that_still_exists_fails_the_runner(change, empty_db_url):
    url = adopted_jobs(empty_db_url)
    with open_conn(url) as conn:
        conn.execute(LOSES_COVERAGE[change])
    stuck_job(url)
    for args, status in [
        (("recover",), 1),
        (("recover", "--fail-open"), 0),
        (("recover", "--dry-run", "--json"), 1),
        (("list",), 1),
        (("start", "--strict"), 1),
        (("start",), 0),
    ]:
        result = run_cli("--database-url", url, *args)
        assert result.returncode == status, (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)
        warnings = lines(result.stderr, "warning")
        assert len(warnings) == 1 and "app.jobs" in warnings[0], (args, result.stderr)
        command = "start" if args[0] == "start" else "migrate"
        assert lines(result.stderr, "error") == [
            "stuck-runs: error: recovery no longer covers app.jobs, which still exists (see the"
            f" warning above); adopt it again, as its owner: stuck-runs {command} --adopt app.jobs"
            + (" (--fail-open: continuing without recovery)" if status == 0 else "")
        ], (args, result.stderr)

    # The start-up line re-adopts the table: covered again, nothing to say, exit 0.
    restored = run_cli("--database-url", url, "start", "--adopt", "jobs", "--strict")
    assert restored.returncode == 0, restored.stderr
    assert "warning" not in restored.stderr and "error" not in restored.stderr, restored.stderr
    assert "Recovered 1 stuck run(s)" in restored.stderr
    for args in (("recover",), ("list",), ("start", "--adopt", "jobs", "--strict")):
        again = run_cli("--database-url", url, *args)
        assert again.returncode == 0, (args, again.stderr)
        assert "warning" not in again.stderr and "error" not in again.stderr, again.stderr


def test_a_table_dropped_for_good_warns_and_unadopt_forgets_it(empty_db_url):
    url = adopted_jobs(empty_db_url)
    with open_conn(url) as conn:
        conn.execute("DROP TABLE app.jobs")
    for args in (("recover",), ("list",), ("start", "--strict")):
        result = run_cli("--database-url", url, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert lines(result.stderr, "error") == [], result.stderr
        assert lines(result.stderr, "warning") == [
            "stuck-runs: warning: app.jobs was dropped: recovery no longer covers it; adopt it"
            " again if it comes back, or remove its entry (stuck-runs unadopt --table)"
        ], (args, result.stderr)

    # Its entry goes by the name it was adopted under, and the warning with it.
    forgotten = run_cli("--database-url", url, "unadopt", "--table", "jobs")
    assert forgotten.returncode == 0, forgotten.stderr
    assert "jobs is no longer covered by recovery" in forgotten.stderr
    with open_conn(url) as conn:
        assert conn.execute(ENTRY).fetchall() == []
    quiet = run_cli("--database-url", url, "recover")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr
    # Nothing of that name left, adopted or not: a typo, said as a usage error.
    again = run_cli("--database-url", url, "unadopt", "--table", "jobs")
    assert again.returncode == 2, again.stderr
    assert "there is no table 'jobs' in schema 'app'" in again.stderr


def test_unadopt_forgets_a_dropped_table_whose_name_came_back_unadopted(empty_db_url):
    url = adopted_jobs(empty_db_url)
    with open_conn(url) as conn:
        conn.execute(LOSES_COVERAGE["migrate reset"])
    assert run_cli("--database-url", url, "recover").returncode == 1
    forgotten = run_cli("--database-url", url, "unadopt", "--table", "app.jobs")
    assert forgotten.returncode == 0, forgotten.stderr
    assert "no longer covered" in forgotten.stderr, forgotten.stderr
    with open_conn(url) as conn:
        assert conn.execute(ENTRY).fetchall() == []
    quiet = run_cli("--database-url", url, "recover")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr
