"""A backlog drains in batches that commit: drain_stuck_runs() and the pg_cron job (issue 24).

The job used to be one `SELECT * FROM recover_stuck_runs()`: one transaction
for the whole backlog, whose failure (an array limit at 9M runs, a row a
trigger refuses) left every run stuck and ended in a WARNING, which pg_cron
counts as a success. Small sizes and no timing here: what is proved is which
batches stay recovered when a later one fails, and that a sweep that fails
ends in an ERROR (what cron.job_run_details records as failed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from runner.sweep import DEFAULT_BATCH_SIZE

from .helpers import PRISMA_DDL, TABLE, cli, insert_run, open_conn, prisma_run

# Refuses recovery of one run: the batch that reaches it fails as a whole.
POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id LIKE 'poison%' AND NEW.status = 'FAILED' THEN
        RAISE EXCEPTION 'poisoned run %', NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE UPDATE ON stuck_runs.qualification_runs
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def stuck_runs(conn: psycopg.Connection, n: int, idle: str = "2 hours") -> list[str]:
    return [insert_run(conn, "PROCESSING", idle=idle) for _ in range(n)]


def job_statement(conn: psycopg.Connection, older_than: str | None = None) -> str:
    return conn.execute("SELECT stuck_runs_job_sql(%s::text)", (older_than,)).fetchone()[0]


def count(conn: psycopg.Connection, status: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM qualification_runs WHERE status = %s", (status,)
    ).fetchone()[0]


def notices_of(conn: psycopg.Connection) -> list[str]:
    seen: list[str] = []
    conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    return seen


def test_the_job_drains_in_batches_and_says_what_it_did(db_url):
    with open_conn(db_url) as conn:
        stuck_runs(conn, 25)
        recent = insert_run(conn, "PROCESSING", idle="1 minute")
        notices = notices_of(conn)
        conn.execute("CALL drain_stuck_runs('5 minutes', 10)")
        assert count(conn, "FAILED") == 25
        assert conn.execute(
            "SELECT status FROM qualification_runs WHERE id = %s", (recent,)
        ).fetchone() == ("PROCESSING",)
        assert conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0] == 25
        assert (
            "recovered 25 run(s) (0 requeued) in 3 batch(es) of at most 10; 0 remain"
            in (notices[-1])
        )


def test_every_batch_commits_before_the_next(db_url):
    """Three batches, three transactions: each has its own xid, and one NOTIFY each."""
    with open_conn(db_url) as conn, open_conn(db_url) as listener:
        stuck_runs(conn, 25)
        listener.execute("LISTEN stuck_runs_recovered")
        conn.execute("CALL drain_stuck_runs('5 minutes', 10)")
        xids = conn.execute(
            "SELECT count(DISTINCT xmin::text) FROM qualification_runs WHERE status = 'FAILED'"
        ).fetchone()[0]
        assert xids == 3
        counts = [
            json.loads(n.payload)["count"] for n in listener.notifies(timeout=1, stop_after=3)
        ]
        assert counts == [10, 10, 5]


def test_a_failed_batch_leaves_the_committed_ones_recovered_and_is_an_error(db_url):
    """The poisoned run is the least idle: two full batches commit, the third fails."""
    with open_conn(db_url) as conn:
        conn.execute(POISON)
        early = stuck_runs(conn, 25, idle="3 hours")
        insert_run(conn, "PROCESSING", idle="2 hours", run_id="poison-1")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as raised:
            conn.execute("CALL drain_stuck_runs('5 minutes', 10)")
        message = raised.value.diag.message_primary or ""
        assert "1 table(s) could not be swept" in message
        assert "qualification_runs (poisoned run poison-1)" in message
        assert "20 run(s) recovered and committed, 6 remain" in message
        failed = {
            r[0] for r in conn.execute("SELECT id FROM qualification_runs WHERE status = 'FAILED'")
        }
        # The oldest 20, in two committed batches; the batch with the poison rolled back.
        assert len(failed) == 20 and failed <= set(early)
        assert conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0] == 20


def test_the_job_statement_is_an_error_when_a_table_cannot_be_swept(db_url):
    """What pg_cron runs: the other table is recovered and committed, and the statement fails.

    Before: `SELECT * FROM recover_stuck_runs(...)` returned the other table's
    run with a WARNING, and pg_cron recorded the job as succeeded.
    """
    with open_conn(db_url) as conn:
        conn.execute(POISON)
        conn.execute(PRISMA_DDL)
        conn.execute(
            "SELECT adopt_runs_table(%s::regclass, created_at_column => 'createdAt',"
            " updated_at_column => 'updatedAt', completed_at_column => 'completedAt',"
            " error_column => 'errorMessage', completed_column => 'processedProspects',"
            " total_column => 'totalProspects')",
            (TABLE,),
        )
        prisma_run(conn, "ckgood", "PROCESSING", "1 hour")
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="poison-2")
        statement = job_statement(conn)
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(statement)
        assert "could not be swept" in str(raised.value)
        assert conn.execute('SELECT status::text FROM "QualificationRun"').fetchone() == ("FAILED",)
        assert count(conn, "PROCESSING") == 1


def test_the_time_budget_stops_between_batches_and_says_what_remains(db_url):
    with open_conn(db_url) as conn:
        stuck_runs(conn, 12)
        notices = notices_of(conn)
        conn.execute("CALL drain_stuck_runs('5 minutes', 5, '1 microsecond')")
        assert count(conn, "FAILED") == 5
        assert (
            "recovered 5 run(s) (0 requeued) in 1 batch(es) of at most 5; 7 remain" in (notices[-1])
        )
        assert "stopped at the time budget" in notices[-1]
        conn.execute("CALL drain_stuck_runs('5 minutes', 5, NULL)")  # no budget: until done
        assert count(conn, "FAILED") == 12


def test_requeues_are_counted(db_url):
    with open_conn(db_url) as conn:
        stuck_runs(conn, 3)
        notices = notices_of(conn)
        conn.execute("CALL drain_stuck_runs('5 minutes', 2, max_attempts => 1)")
        assert count(conn, "PENDING") == 3
        assert "recovered 3 run(s) (3 requeued) in 2 batch(es)" in notices[-1]


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ("'-5 minutes'::interval", "older_than"),
        ("NULL::interval", "older_than"),
        ("'5 minutes', 0", "batch_size"),
        ("'5 minutes', NULL::integer", "batch_size"),
        ("'5 minutes', 10, '0 seconds'", "time_budget"),
        ("'5 minutes', 10, '45 seconds', -1", "max_attempts"),
        ("'5 minutes', 10, '45 seconds', NULL, 'no_such_schema'", "home"),
    ],
)
def test_invalid_parameters_are_22023_and_change_nothing(db_url, arguments, named):
    with open_conn(db_url) as conn:
        stuck_runs(conn, 2)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=named):
            conn.execute(f"CALL drain_stuck_runs({arguments})")
        assert count(conn, "FAILED") == 0


def test_inside_a_transaction_block_it_refuses_and_commits_nothing(db_url):
    with open_conn(db_url) as conn:
        stuck_runs(conn, 3)
        with pytest.raises(psycopg.errors.InvalidTransactionTermination), conn.transaction():
            conn.execute("CALL drain_stuck_runs('5 minutes', 2)")
        assert count(conn, "FAILED") == 0


def test_planted_objects_on_the_callers_path_are_never_called(db_url):
    """No SET clause (it would forbid COMMIT): the body must name everything itself."""
    with open_conn(db_url) as conn:
        stuck_runs(conn, 3)
        conn.execute("CREATE SEQUENCE public.trojan_calls")
        for signature in (
            "recover_stuck_runs(interval, integer, integer)",
            "_stuck_runs_count_stuck(interval, integer)",
            "_stuck_runs_threshold()",
            "_stuck_runs_schema()",
        ):
            returns = {
                "recover_stuck_runs": "SETOF stuck_runs.stuck_runs_recovered_run",
                "_stuck_runs_count_stuck": "bigint",
                "_stuck_runs_threshold": "interval",
                "_stuck_runs_schema": "text",
            }[signature.split("(")[0]]
            conn.execute(
                f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM nextval('public.trojan_calls'); RETURN; END $$"
                if returns.startswith("SETOF")
                else f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM nextval('public.trojan_calls'); RETURN NULL; END $$"
            )
        # Types found by name, not by the grammar: a caller whose path puts
        # public before pg_catalog would get these for text, jsonb, timestamptz.
        for name in ("text", "jsonb", "timestamptz"):
            conn.execute(f"CREATE TYPE public.{name} AS (planted integer)")
        statement = job_statement(conn)
        conn.execute("SET search_path = public")
        conn.execute(statement)
        conn.execute("SET search_path = public, pg_catalog")
        conn.execute("CALL stuck_runs.drain_stuck_runs()")
        conn.execute("SET search_path = public, stuck_runs")
        assert count(conn, "FAILED") == 3
        called = conn.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.trojan_calls"
        ).fetchone()[0]
        assert called == 0


def test_the_procedure_is_not_public_and_the_grants_cover_it(conn):
    procedure = "stuck_runs.drain_stuck_runs(interval, integer, interval, integer, text)"
    assert conn.execute(
        "SELECT has_function_privilege('public', %s, 'EXECUTE')", (procedure,)
    ).fetchone() == (False,)
    conn.execute("CREATE ROLE drainer")
    try:
        for (grant,) in conn.execute("SELECT * FROM stuck_runs_grant_sql('drainer')").fetchall():
            conn.execute(grant)
        assert conn.execute(
            "SELECT has_function_privilege('drainer', %s, 'EXECUTE')", (procedure,)
        ).fetchone() == (True,)
    finally:
        conn.execute("DROP OWNED BY drainer")
        conn.execute("DROP ROLE drainer")


# The runner: `recover` batches by default, prints only what committed, and says
# how many remain when a bound stops it.


def test_recover_batches_by_default(db_url):
    """One more run than a default batch: two transactions (before: one, for any backlog)."""
    with open_conn(db_url) as conn:
        conn.execute(
            "INSERT INTO qualification_runs (id, status, created_at, updated_at)"
            " SELECT 'bulk-' || i, 'PROCESSING', now() - interval '2 hours',"
            "        now() - interval '2 hours'"
            " FROM generate_series(1, %s) AS i",
            (DEFAULT_BATCH_SIZE + 1,),
        )
        result = cli("--database-url", db_url, "recover", "--json")
        assert result.exit_code == 0, result.stderr
        assert len(result.stdout.splitlines()) == DEFAULT_BATCH_SIZE + 1
        assert conn.execute(
            "SELECT count(DISTINCT xmin::text) FROM qualification_runs WHERE status = 'FAILED'"
        ).fetchone() == (2,)


def test_recover_prints_only_committed_batches_and_fails_on_the_poisoned_one(db_url):
    with open_conn(db_url) as conn:
        conn.execute(POISON)
        early = stuck_runs(conn, 25, idle="3 hours")
        insert_run(conn, "PROCESSING", idle="2 hours", run_id="poison-3")
        result = cli("--database-url", db_url, "recover", "--batch-size", "10", "--json")
        assert result.exit_code == 1, result.stderr
        printed = [json.loads(line)["run_id"] for line in result.stdout.splitlines()]
        failed = {
            r[0] for r in conn.execute("SELECT id FROM qualification_runs WHERE status = 'FAILED'")
        }
        assert len(printed) == 20 and set(printed) == failed and failed <= set(early)
        assert "Recovered 20 stuck run(s)" in result.stderr
        assert "poisoned run poison-3" in result.stderr
        assert "1 table(s) could not be swept" in result.stderr


def test_recover_says_how_many_remain_when_the_limit_stops_it(db_url):
    with open_conn(db_url) as conn:
        stuck_runs(conn, 5)
        result = cli(
            "--database-url", db_url, "recover", "--batch-size", "2", "--limit", "3", "--json"
        )
        assert result.exit_code == 0, result.stderr
        assert len(result.stdout.splitlines()) == 3
        assert (
            "Recovered 3 stuck run(s), the --limit; a backlog remains: 2 stuck run(s)"
            in result.stderr
        )
        assert count(conn, "FAILED") == 3


def test_the_drain_benchmark_runs(server_url: str) -> None:
    """tests/perf/bench_drain.py at a tiny size: it must keep running, not judge figures."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.perf.bench_drain",
            "--size",
            "300",
            "--database-url",
            server_url,
        ],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| Drain | pg_cron statement, run in a loop: runs recovered, 300 stuck" in done.stdout
    assert "runner `recover` (default batch size): runs recovered" in done.stdout
    assert server_url not in done.stdout


def test_recover_does_not_spend_its_statement_timeout_listing(db_url):
    """Listing reads every active run: with millions it would use up the timeout first.

    Made slow here by a lock (held 1.6 s, released by a timer) rather than by
    millions of rows: the list gets a third of the 3 s statement timeout, gives
    up, and the batch that follows waits for the lock and recovers the run.
    Before: the list waited for the lock and no line said why.
    """
    with open_conn(db_url) as conn, open_conn(db_url) as holder:
        run_id = insert_run(conn, "PROCESSING", idle="1 hour")
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE stuck_runs.qualification_runs IN ACCESS EXCLUSIVE MODE")
        release = threading.Timer(1.6, lambda: holder.execute("ROLLBACK"))
        release.start()
        try:
            result = cli("--database-url", db_url, "recover", "--statement-timeout", "3")
        finally:
            release.join()
        assert result.exit_code == 0, result.stderr
        assert "Listing the active runs takes longer than 1 s" in result.stderr
        assert run_id in result.stdout and "Recovered 1 stuck run(s)" in result.stderr


@pytest.fixture
def app_owner(db_url):
    """A non-superuser that owns an adopted table of its own (app.jobs), as an app role does."""
    role = "drain_app_owner"
    with open_conn(db_url) as conn:
        conn.execute(f"CREATE ROLE {role}")
        conn.execute(f"CREATE SCHEMA app AUTHORIZATION {role}")
        conn.execute(
            "CREATE TABLE app.jobs (id text PRIMARY KEY, status text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now(),"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(f"ALTER TABLE app.jobs OWNER TO {role}")
        conn.execute(
            "SELECT adopt_runs_table('app.jobs', completed_at_column => NULL, error_column => NULL,"
            " completed_column => NULL, total_column => NULL)"
        )
    yield role
    with open_conn(db_url) as conn:
        conn.execute("DELETE FROM stuck_runs_tables WHERE schema_name = 'app'")
        conn.execute("DROP SCHEMA app CASCADE")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def owner_trigger(conn: psycopg.Connection, role: str, body: str, when: str) -> None:
    conn.execute(f"SET ROLE {role}")
    conn.execute(
        "CREATE FUNCTION app.meddle() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN {body}; RETURN NULL; END $$"
    )
    conn.execute(f"CREATE TRIGGER meddle {when} ON app.jobs EXECUTE FUNCTION app.meddle()")
    conn.execute("RESET ROLE")


@pytest.mark.parametrize(
    "value", ["''", "'not json'", '\'{"stuck_runs.qualification_runs": "forged"}\'']
)
def test_an_owner_cannot_hide_or_forge_the_failures_the_job_reports(db_url, app_owner, value):
    """The tables a batch could not sweep travel in a setting: an owner's trigger that writes it
    has its own table's step rolled back, and every other table is still recovered."""
    with open_conn(db_url) as conn:
        conn.execute(POISON)
        insert_run(conn, "PROCESSING", idle="2 hours", run_id="poison-1")
        healthy = stuck_runs(conn, 3)
        conn.execute(
            "INSERT INTO app.jobs (id, status, updated_at) VALUES"
            " ('app-1', 'PROCESSING', now() - interval '2 hours')"
        )
        owner_trigger(
            conn,
            app_owner,
            f"PERFORM set_config('stuck_runs.unswept', {value}, true)",
            "AFTER UPDATE",
        )
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as failed:
            conn.execute(job_statement(conn, "5 minutes"))
        assert "qualification_runs (poisoned run" in str(failed.value)
        assert "forged" not in str(failed.value)
        assert "app.jobs" in str(failed.value)  # its step was refused: it changed our setting
        conn.execute("DROP TRIGGER refuse_poison ON stuck_runs.qualification_runs")
        # Its trigger still meddles (it fails its own table when that changes anything);
        # the others are recovered and not reported.
        try:
            conn.execute(job_statement(conn, "5 minutes"))
        except psycopg.errors.ObjectNotInPrerequisiteState as again:
            assert "qualification_runs" not in str(again)
        for run_id in healthy:
            assert conn.execute(
                "SELECT status FROM qualification_runs WHERE id = %s", (run_id,)
            ).fetchone() == ("FAILED",)


def test_a_setting_left_in_the_session_changes_nothing(db_url):
    with open_conn(db_url) as conn:
        stuck_runs(conn, 3)
        conn.execute(POISON)
        insert_run(conn, "PROCESSING", idle="2 hours", run_id="poison-1")
        conn.execute("SET stuck_runs.unswept = 'not json'")
        # The poisoned table warns; nothing else fails.
        assert conn.execute("SELECT count(*) FROM recover_stuck_runs('5 minutes')").fetchone() == (
            0,
        )


def test_a_table_that_refills_every_batch_does_not_starve_the_others(db_url, app_owner):
    """Its owner's trigger sets every recovered run back to stuck: each batch is full, yet
    every table gets its share of it."""
    with open_conn(db_url) as conn:
        conn.execute(
            "INSERT INTO app.jobs (id, status, updated_at)"
            " SELECT 'app-' || g, 'PROCESSING', now() - interval '2 hours'"
            " FROM generate_series(1, 20) AS g"
        )
        conn.execute(f"SET ROLE {app_owner}")
        conn.execute(
            "CREATE FUNCTION app.refill() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.status = 'FAILED' THEN UPDATE app.jobs SET status = 'PROCESSING',"
            " updated_at = now() - interval '2 hours' WHERE id = NEW.id; END IF; RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refill AFTER UPDATE ON app.jobs FOR EACH ROW"
            " WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION app.refill()"
        )
        conn.execute("RESET ROLE")
        builtin = stuck_runs(conn, 30)
        conn.execute("CALL drain_stuck_runs('5 minutes', 10, '3 seconds')")
        assert conn.execute(
            "SELECT count(*) FROM qualification_runs WHERE id = ANY(%s) AND status = 'FAILED'",
            (builtin,),
        ).fetchone() == (30,)


def test_the_job_fails_while_a_table_it_no_longer_covers_exists(db_url, app_owner):
    with open_conn(db_url) as conn:
        stuck_runs(conn, 3)
        # An ORM's field rename: the mapped column is gone.
        conn.execute("ALTER TABLE app.jobs DROP COLUMN status")
        conn.execute("ALTER TABLE app.jobs ADD COLUMN state text")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match=r"app\.jobs"):
            conn.execute(job_statement(conn, "5 minutes"))
        assert count(conn, "FAILED") == 3
