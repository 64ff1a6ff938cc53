"""`stuck-runs schedule` against a real pg_cron, on a private PostgreSQL 15 cluster.

pg_cron must be preloaded, so the shared embedded server cannot host it: the
module starts its own cluster with shared_preload_libraries = 'pg_cron' and
background workers (no TCP password needed for the jobs). The one slow test
waits for a real minute boundary, because pg_cron 1.4 (Debian bookworm) has
minute granularity; every other test only inspects cron.job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
import pytest

from runner.connection import parse_database_url
from runner.migrations import apply_migrations

from .cluster import PG_CRON_SETTINGS, Cluster, system_extension_available
from .conftest import migrate
from .docs_text import block, sql_statements
from .helpers import PRISMA_DDL, TABLE, cli, insert_run, open_conn, prisma_run, run_cli, status_of
from .test_drain import POISON

needs_pg15 = pytest.mark.skipif(
    not system_extension_available("pg_cron"),
    reason="needs PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin with pg_cron "
    "(apt postgresql-15 postgresql-15-cron)",
)

# pg_cron 1.4 fires at minute boundaries: at most ~60 s after scheduling, plus slack.
WAIT_FOR_CRON = 90
# A schema name that needs quoting everywhere: the job's SQL must not break on it.
TENANT = 'Tenant\'s "Runs"'


@dataclass
class CronServer:
    cluster: Cluster
    app_url: str  # runs in database `app`, pg_cron in `postgres`
    tenant_url: str  # runs in the cron database itself; stuck-runs in the schema TENANT

    def cron_conn(self) -> psycopg.Connection:
        """A superuser connection to pg_cron's database (sees every role's jobs)."""
        return open_conn(self.cluster.url("postgres"))

    def jobs(self) -> list[tuple]:
        with self.cron_conn() as conn:
            return conn.execute(
                "SELECT jobname, schedule, command, database, username FROM cron.job ORDER BY jobid"
            ).fetchall()


@pytest.fixture(scope="module")
def cron_server() -> Iterator[CronServer]:
    if not system_extension_available("pg_cron"):
        pytest.skip("needs PostgreSQL 15 with pg_cron (apt postgresql-15 postgresql-15-cron)")
    cluster = Cluster(settings=PG_CRON_SETTINGS)
    try:
        cluster.start()
        with open_conn(cluster.url("postgres")) as conn:
            conn.execute("CREATE EXTENSION pg_cron")
            conn.execute("CREATE DATABASE app")
        server = CronServer(
            cluster=cluster,
            app_url=cluster.url("app"),
            tenant_url=cluster.url("postgres") + "?schema=" + quote(TENANT, safe=""),
        )
        migrate(server.app_url)
        apply_migrations(
            parse_database_url(server.tenant_url, schema=TENANT),
            connect_timeout=10,
            statement_timeout=60,
            lock_timeout=60,
        )
        yield server
    except Exception:
        print(cluster.log())
        raise
    finally:
        cluster.destroy()


@pytest.fixture
def cron(cron_server: CronServer) -> Iterator[CronServer]:
    """The shared pg_cron server, with no job left over from the previous test."""
    yield cron_server
    with cron_server.cron_conn() as conn:
        conn.execute("SELECT cron.unschedule(jobid) FROM cron.job")


def backdated_run(url: str, idle: str, **kwargs: object) -> str:
    """A run whose worker died `idle` ago: inserted fresh, then its last sign of life moved back."""
    with open_conn(url) as conn:
        run_id = insert_run(conn, **kwargs)  # type: ignore[arg-type]
        conn.execute(
            "UPDATE qualification_runs SET updated_at = now() - %s::interval WHERE id = %s",
            (idle, run_id),
        )
    return run_id


def run_details(cron: CronServer, jobname: str) -> list[tuple[str, str]]:
    with cron.cron_conn() as conn:
        return conn.execute(
            "SELECT d.status, coalesce(d.return_message, '') FROM cron.job_run_details AS d"
            " JOIN cron.job AS j USING (jobid) WHERE j.jobname = %s ORDER BY d.runid",
            (jobname,),
        ).fetchall()


@needs_pg15
def test_pg_cron_recovers_stuck_runs_in_the_app_database_and_in_its_own(cron):
    """Both set-ups in one wait for the minute boundary.

    `app`: pg_cron lives in `postgres`, the job is installed there with
    schedule_in_database (--cron-database) and an explicit threshold.
    Tenant: the runs live in the cron database itself, under a schema that
    needs quoting, with the database's default threshold.
    """
    started = time.monotonic()
    stuck = backdated_run(cron.app_url, "1 hour", completed=3, total=7)
    recent = backdated_run(cron.app_url, "10 minutes")  # under the job's 30 minutes
    with open_conn(cron.app_url) as conn:
        done = insert_run(conn, "COMPLETED", idle="2 hours")
    tenant_stuck = backdated_run(cron.tenant_url, "1 hour", status="PENDING")
    # The app also has its own Prisma-shaped table, adopted with the proposed mapping.
    with open_conn(cron.app_url) as conn:
        conn.execute(PRISMA_DDL)
    adopted = run_cli("--database-url", cron.app_url, "adopt", "--table", TABLE, "--yes")
    assert adopted.returncode == 0, adopted.stderr
    with open_conn(cron.app_url) as conn:
        prisma_run(conn, "ckcron00001", "PROCESSING", "1 hour", done=2)
        prisma_run(conn, "ckcron00002", "PROCESSING", "1 minute")

    # A third database whose built-in table refuses recovery (a trigger): the job
    # must commit the adopted table's run and still be recorded as failed.
    poisoned_url = cron.cluster.url("poisoned")
    with cron.cron_conn() as conn:
        conn.execute("DROP DATABASE IF EXISTS poisoned")
        conn.execute("CREATE DATABASE poisoned")
    migrate(poisoned_url)
    with open_conn(poisoned_url) as conn:
        conn.execute(POISON)
        conn.execute(PRISMA_DDL)
    adopted = run_cli("--database-url", poisoned_url, "adopt", "--table", TABLE, "--yes")
    assert adopted.returncode == 0, adopted.stderr
    with open_conn(poisoned_url) as conn:
        prisma_run(conn, "ckpoison01", "PROCESSING", "1 hour")
    poisoned = backdated_run(poisoned_url, "1 hour", run_id="poison-cron")
    result = cli(
        "--database-url",
        poisoned_url,
        "schedule",
        "--cron-database",
        "postgres",
        "--name",
        "poisoned-recovery",
    )
    assert result.exit_code == 0, result.stderr

    # The real console-script path (python -m runner), for the cross-database job.
    result = run_cli(
        "--database-url",
        cron.app_url,
        "schedule",
        "--cron-database",
        "postgres",
        "--older-than",
        "30 minutes",
    )
    assert result.returncode == 0, result.stderr
    assert "installed pg_cron job 'stuck-runs-recovery'" in result.stderr
    result = cli(
        "--database-url",
        cron.tenant_url,
        "--schema",
        TENANT,
        "schedule",
        "--name",
        "tenant-recovery",
    )
    assert result.exit_code == 0, result.stderr

    assert [j for j in cron.jobs() if j[0] != "poisoned-recovery"] == [
        (
            "stuck-runs-recovery",
            "* * * * *",
            "CALL stuck_runs.drain_stuck_runs('30 minutes'::interval, 10000::integer,"
            " '45 seconds'::interval, NULL::integer, 'stuck_runs'::text)",
            "app",
            "postgres",
        ),
        (
            "tenant-recovery",
            "* * * * *",
            'CALL "Tenant\'s ""Runs""".drain_stuck_runs("Tenant\'s ""Runs"""'
            "._stuck_runs_threshold(), 10000::integer, '45 seconds'::interval, NULL::integer,"
            ' \'"Tenant\'\'s ""Runs"""\'::text)',
            "postgres",
            "postgres",
        ),
    ]

    deadline = time.monotonic() + WAIT_FOR_CRON
    while True:
        details = {
            name: run_details(cron, name) for name in ("stuck-runs-recovery", "tenant-recovery")
        }
        failed = [(name, d) for name, runs in details.items() for d in runs if d[0] == "failed"]
        assert not failed, f"pg_cron ran the job and it failed: {failed}"
        with open_conn(cron.app_url) as app, open_conn(cron.tenant_url) as tenant:
            prisma = dict(app.execute('SELECT id, status::text FROM "QualificationRun"').fetchall())
            recovered = (
                status_of(app, stuck) == "FAILED"
                and status_of(tenant, tenant_stuck) == "FAILED"
                and prisma == {"ckcron00001": "FAILED", "ckcron00002": "PROCESSING"}
            )
        succeeded = all(any(s == "succeeded" for s, _ in runs) for runs in details.values())
        poisoned_runs = run_details(cron, "poisoned-recovery")
        if recovered and succeeded and any(s == "failed" for s, _ in poisoned_runs):
            break
        assert time.monotonic() < deadline, (
            f"pg_cron did not recover within {WAIT_FOR_CRON} s: {details}\n{cron.cluster.log()[-3000:]}"
        )
        time.sleep(0.5)

    # The first runs succeeded; the poisoned one is a failed run in cron.job_run_details,
    # after it committed what it could: the adopted table's run.
    assert details["stuck-runs-recovery"][0][0] == "succeeded"
    assert details["tenant-recovery"][0][0] == "succeeded"
    status, message = poisoned_runs[0]
    assert status == "failed" and "could not be swept" in message, poisoned_runs
    assert "qualification_runs (poisoned run poison-cron)" in message
    with open_conn(poisoned_url) as conn:
        assert conn.execute('SELECT status::text FROM "QualificationRun"').fetchone() == ("FAILED",)
        assert status_of(conn, poisoned) == "PROCESSING"
    with open_conn(cron.app_url) as app:
        assert status_of(app, recent) == "PROCESSING"
        assert status_of(app, done) == "COMPLETED"
        row = app.execute(
            "SELECT completed, total, error FROM qualification_runs WHERE id = %s", (stuck,)
        ).fetchone()
        assert row[:2] == (3, 7) and "Recovered as stuck" in row[2]
        audit = app.execute(
            "SELECT recovered_by, older_than FROM run_recoveries WHERE run_id = %s", (stuck,)
        ).fetchall()
        assert [(who, str(t)) for who, t in audit] == [("postgres", "0:30:00")]

    shown = cli("--database-url", cron.app_url, "schedule", "--show", "--cron-database", "postgres")
    assert shown.exit_code == 0, shown.stderr
    assert "pg_cron job 'stuck-runs-recovery'" in shown.stdout and "is installed" in shown.stdout
    assert "succeeded" in shown.stdout and "drain_stuck_runs(" in shown.stdout
    print(f"pg_cron recovered both databases after {time.monotonic() - started:.1f} s")


@needs_pg15
def test_same_name_replaces_and_unschedule_removes(cron):
    first = cli("--database-url", cron.app_url, "schedule", "--cron-database", "postgres")
    assert first.exit_code == 0, first.stderr
    assert "installed" in first.stderr
    again = cli(
        "--database-url",
        cron.app_url,
        "schedule",
        "--cron-database",
        "postgres",
        "--every",
        "*/5 * * * *",
        "--older-than",
        "15 minutes",
    )
    assert again.exit_code == 0, again.stderr
    assert "replaced" in again.stderr
    assert cron.jobs() == [
        (
            "stuck-runs-recovery",
            "*/5 * * * *",
            "CALL stuck_runs.drain_stuck_runs('15 minutes'::interval, 10000::integer,"
            " '45 seconds'::interval, NULL::integer, 'stuck_runs'::text)",
            "app",
            "postgres",
        )
    ]

    shown = cli("--database-url", cron.app_url, "schedule", "--show", "--cron-database", "postgres")
    assert shown.exit_code == 0 and "'*/5 * * * *'" in shown.stdout
    assert "no runs recorded yet" in shown.stdout

    gone = cli("--database-url", cron.app_url, "unschedule", "--cron-database", "postgres")
    assert gone.exit_code == 0, gone.stderr
    assert "removed pg_cron job 'stuck-runs-recovery'" in gone.stderr
    assert cron.jobs() == []
    twice = cli("--database-url", cron.app_url, "unschedule", "--cron-database", "postgres")
    assert twice.exit_code == 0 and "nothing to remove" in twice.stderr

    shown = cli("--database-url", cron.app_url, "schedule", "--show", "--cron-database", "postgres")
    assert shown.exit_code == 0 and "is not installed" in shown.stdout


@needs_pg15
def test_a_job_an_earlier_release_installed_is_flagged_and_updated(cron):
    """Before: one unbatched `SELECT * FROM recover_stuck_runs(...)`, whose failure only warned."""
    old = (
        "SELECT * FROM stuck_runs.recover_stuck_runs(stuck_runs._stuck_runs_threshold(),"
        " NULL::integer, NULL::integer)"
    )
    with cron.cron_conn() as conn:
        conn.execute(
            "SELECT cron.schedule_in_database('stuck-runs-recovery', '* * * * *', %s, 'app')",
            (old,),
        )
    shown = cli("--database-url", cron.app_url, "schedule", "--show", "--cron-database", "postgres")
    assert shown.exit_code == 0, shown.stderr
    assert "earlier release's statement" in shown.stdout and "stuck-runs schedule" in shown.stdout
    again = cli("--database-url", cron.app_url, "schedule", "--cron-database", "postgres")
    assert again.exit_code == 0, again.stderr
    assert "replaced" in again.stderr
    assert [j[:3] for j in cron.jobs()] == [
        (
            "stuck-runs-recovery",
            "* * * * *",
            "CALL stuck_runs.drain_stuck_runs(stuck_runs._stuck_runs_threshold(), 10000::integer,"
            " '45 seconds'::interval, NULL::integer, 'stuck_runs'::text)",
        )
    ]
    shown = cli("--database-url", cron.app_url, "schedule", "--show", "--cron-database", "postgres")
    assert "earlier release" not in shown.stdout


@needs_pg15
def test_another_apps_job_of_the_same_name_is_left_alone(cron):
    """One cron database, two apps: the default name must not move app's job to the tenant."""
    assert (
        cli("--database-url", cron.app_url, "schedule", "--cron-database", "postgres").exit_code
        == 0
    )
    before = cron.jobs()
    for command in ("schedule", "unschedule"):
        result = cli("--database-url", cron.tenant_url, "--schema", TENANT, command)
        assert result.exit_code == 1, result.stderr
        assert "belongs to another app" in result.stderr and "--name" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert cron.jobs() == before


@needs_pg15
@pytest.mark.parametrize(
    ("every", "who_rejects"),
    [
        ("banana", "not a cron expression"),
        ("* * * *", "not a cron expression"),
        # pg_cron 1.4 itself would keep everything after the fifth field.
        ("* * * * *'); DROP TABLE x; --", "not a cron expression"),
        ("* * * * * *", "not a cron expression"),
        ("61 * * * *", "invalid schedule: 61 * * * *"),
        ("@never", "invalid schedule: @never"),
    ],
)
def test_invalid_cron_expression_installs_nothing(cron, every, who_rejects):
    result = cli(
        "--database-url", cron.app_url, "schedule", "--cron-database", "postgres", "--every", every
    )
    assert result.exit_code == 2, result.stderr
    assert "Usage: stuck-runs schedule" in result.stderr and "--every" in result.stderr
    assert who_rejects in result.stderr and "5-field cron expression" in result.stderr
    assert cron.jobs() == []


@needs_pg15
def test_invalid_cron_expression_keeps_the_installed_job(cron):
    assert (
        cli("--database-url", cron.app_url, "schedule", "--cron-database", "postgres").exit_code
        == 0
    )
    before = cron.jobs()
    result = cli(
        "--database-url",
        cron.app_url,
        "schedule",
        "--cron-database",
        "postgres",
        "--every",
        "61 * * * *",
    )
    assert result.exit_code == 2
    assert cron.jobs() == before


@needs_pg15
@pytest.mark.parametrize(
    "older_than", ["banana", "-5 minutes", "0", "5 minutes'::interval); DROP TABLE x; --"]
)
def test_invalid_interval_is_a_usage_error(cron, older_than):
    result = cli(
        "--database-url",
        cron.app_url,
        "schedule",
        "--cron-database",
        "postgres",
        "--older-than",
        older_than,
    )
    assert result.exit_code == 2, result.stderr
    assert "Usage: stuck-runs schedule" in result.stderr and "--older-than" in result.stderr
    assert cron.jobs() == []


@needs_pg15
def test_app_database_without_pg_cron_says_which_database_has_it(cron):
    for args in (
        ["schedule"],
        ["unschedule"],
        ["schedule", "--show"],
        ["schedule", "--cron-database", "app"],
    ):
        result = cli("--database-url", cron.app_url, *args)
        assert result.exit_code == 1, (args, result.stderr)
        assert "pg_cron lives in database 'postgres'" in result.stderr
        assert "--cron-database postgres" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert cron.jobs() == []


@needs_pg15
def test_unmigrated_app_database_says_to_migrate(cron):
    with cron.cron_conn() as conn:
        conn.execute("DROP DATABASE IF EXISTS bare")
        conn.execute("CREATE DATABASE bare")
    result = cli(
        "--database-url", cron.cluster.url("bare"), "schedule", "--cron-database", "postgres"
    )
    assert result.exit_code == 1
    assert "stuck-runs migrate" in result.stderr
    assert cron.jobs() == []


@needs_pg15
def test_role_without_grants_is_told_what_to_grant(cron):
    """On managed services the app role is no superuser: each missing grant is named."""
    with cron.cron_conn() as conn:
        conn.execute("DROP ROLE IF EXISTS worker")
        conn.execute("CREATE ROLE worker LOGIN")
    url = cron.app_url.replace("postgres@", "worker@")

    def attempt() -> str:
        result = cli("--database-url", url, "schedule", "--cron-database", "postgres")
        assert result.exit_code == 1, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        return result.stderr

    assert "stuck_runs.stuck_runs_grant_sql('worker')" in attempt()
    with open_conn(cron.app_url) as conn:
        conn.execute("GRANT USAGE ON SCHEMA stuck_runs TO worker")
    assert "SELECT * FROM stuck_runs.stuck_runs_grant_sql('worker')" in attempt()
    with open_conn(cron.app_url) as conn:
        for (grant,) in conn.execute("SELECT * FROM stuck_runs_grant_sql('worker')").fetchall():
            conn.execute(grant)
    assert "GRANT USAGE ON SCHEMA cron TO worker" in attempt()
    with cron.cron_conn() as conn:
        conn.execute("GRANT USAGE ON SCHEMA cron TO worker")
    assert (
        "GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text,text,text,text,text,boolean) TO worker"
        in attempt()
    )
    with cron.cron_conn() as conn:
        conn.execute(
            "GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text,text,text,text,text,boolean) TO worker"
        )
    result = cli("--database-url", url, "schedule", "--cron-database", "postgres")
    assert result.exit_code == 0, result.stderr
    assert [(j[0], j[3], j[4]) for j in cron.jobs()] == [("stuck-runs-recovery", "app", "worker")]
    assert cli("--database-url", url, "unschedule", "--cron-database", "postgres").exit_code == 0
    assert cron.jobs() == []


@needs_pg15
def test_pg_cron_installed_but_not_preloaded():
    cluster = Cluster()
    try:
        cluster.start()
        migrate(cluster.url())
        result = cli("--database-url", cluster.url(), "schedule")
        assert result.exit_code == 1
        message = result.stderr
        assert "pg_cron is installed but not loaded" in message
        assert "shared_preload_libraries = 'pg_cron'" in message
        assert "cron.database_name = 'postgres'" in message
        assert "CREATE EXTENSION pg_cron" in message
        assert len(message.strip().splitlines()) == 1
    finally:
        cluster.destroy()


@pytest.mark.parametrize("args", [["schedule"], ["unschedule"], ["schedule", "--show"]])
def test_server_without_pg_cron_says_what_to_add(db_url, args):
    """The suite's server does not preload pg_cron (the embedded one does not even have it)."""
    result = run_cli("--database-url", db_url, *args)
    assert result.returncode == 1, result.stderr
    message = result.stderr
    assert message.startswith(
        ("stuck-runs: error: pg_cron is not", "stuck-runs: error: pg_cron is installed but not")
    )
    assert "shared_preload_libraries = 'pg_cron'" in message
    assert "cron.database_name" in message and "CREATE EXTENSION pg_cron" in message
    assert len(message.strip().splitlines()) == 1 and "Traceback" not in message


def test_show_takes_no_schedule_options(db_url):
    result = cli("--database-url", db_url, "schedule", "--show", "--every", "@hourly")
    assert result.exit_code == 2 and "--show changes nothing" in result.stderr


@pytest.mark.parametrize("name", ["", "   ", "x" * 64])
def test_job_name_must_fit_pg_cron(db_url, name):
    result = cli("--database-url", db_url, "schedule", "--name", name)
    assert result.exit_code == 2 and "--name" in result.stderr


def readme_how_it_went_query() -> str:
    """docs/pg_cron.md's pure-SQL "how it went" statement, exactly as printed."""
    after = block("pg-cron-sql").split("-- how it went", 1)[1].split("\n", 1)[1]
    return after.split(";", 1)[0]


@needs_pg15
def test_readme_how_it_went_query_reads_your_job_when_another_role_has_one_of_that_name(cron):
    """pg_cron's job names are unique per role: two roles, one name, and each sees its own runs."""
    query = readme_how_it_went_query()
    with cron.cron_conn() as conn:
        conn.execute("DROP ROLE IF EXISTS other_app")
        conn.execute("CREATE ROLE other_app")
        conn.execute("GRANT USAGE ON SCHEMA cron TO other_app")
        jobs = {}
        for role, message in (("postgres", "SELECT 2"), ("other_app", "SELECT 7")):
            # Inactive and yearly: pg_cron keeps the rows but never runs them during the test.
            jobs[role] = conn.execute(
                "INSERT INTO cron.job (schedule, command, nodename, nodeport, database,"
                " username, jobname, active)"
                " VALUES ('0 0 1 1 *', 'SELECT 1', 'localhost', 5432, 'postgres', %s,"
                " 'stuck-runs-recovery', false) RETURNING jobid",
                (role,),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO cron.job_run_details (jobid, runid, database, username, command,"
                " status, return_message, start_time, end_time)"
                " VALUES (%s, nextval('cron.runid_seq'), 'postgres', %s, 'SELECT 1',"
                " 'succeeded', %s, now(), now())",
                (jobs[role], role, message),
            )
        try:
            # A superuser sees both jobs: the old subquery returned two rows and failed.
            assert [r[:2] for r in conn.execute(query).fetchall()] == [("succeeded", "SELECT 2")]
            # A role sees only its own (pg_cron's row security), and its own runs.
            conn.execute("SET ROLE other_app")
            assert [r[:2] for r in conn.execute(query).fetchall()] == [("succeeded", "SELECT 7")]
        finally:
            conn.execute("RESET ROLE")
            ids = list(jobs.values())
            conn.execute("DELETE FROM cron.job_run_details WHERE jobid = ANY (%s)", (ids,))
            conn.execute("DELETE FROM cron.job WHERE jobid = ANY (%s)", (ids,))
            conn.execute("REVOKE USAGE ON SCHEMA cron FROM other_app")
            conn.execute("DROP ROLE other_app")


def spaced(sql: str) -> str:
    """A statement with its line breaks as the page wraps it: the same SQL for the server."""
    return re.sub(r"\s+", " ", sql).replace("( ", "(")


@needs_pg15
def test_the_pure_sql_block_runs_as_printed(cron):
    """docs/pg_cron.md's pure-SQL block, statement by statement in pg_cron's database as the
    page says: each of its three alternatives (each run on its own: pg_cron keeps a re-scheduled
    name's database) schedules the statement `schedule` installs (the one stuck_runs_job_sql()
    prints) in the database it names, and `cron.unschedule` removes it."""
    statements = sql_statements(block("pg-cron-sql"))
    assert len(statements) == 5, statements
    with open_conn(cron.app_url) as conn:
        installed = conn.execute("SELECT stuck_runs.stuck_runs_job_sql()").fetchone()[0]
        fixed = conn.execute("SELECT stuck_runs.stuck_runs_job_sql('15 minutes'::text)").fetchone()[
            0
        ]
    expected = [("postgres", installed), ("app", installed), ("postgres", fixed)]
    with cron.cron_conn() as conn:
        for statement, (database, command) in zip(statements[:3], expected, strict=True):
            conn.execute(statement)
            [(job_database, job_command)] = conn.execute(
                "SELECT database, command FROM cron.job WHERE jobname = 'stuck-runs-recovery'"
            ).fetchall()
            assert (job_database, spaced(job_command)) == (database, spaced(command)), statement
            conn.execute(statements[3])  # the next alternative starts afresh
        conn.execute(statements[0])
        conn.execute(statements[3])
        assert not conn.execute("SELECT 1 FROM cron.job").fetchall()
        assert conn.execute(statements[4]).fetchall() == []
