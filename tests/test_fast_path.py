"""The no-op sweep's fast path (issue 20): generated from the registry, never wrong.

recover_stuck_runs() first asks _stuck_runs_quiet(), a function generated from the
registry whose statements name the tables directly. These tests change what it was
built from in every way that matters to its answer (the registry behind its back, a
column's type without a rewrite, NOT NULL, a rename, the owner) and check that the
runs are still recovered and the warnings still raised; that concurrent rebuilds
are harmless; and that roles granted before the upgrade keep recovering.
"""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from runner.connection import parse_database_url
from runner.migrations import read_history, yoyo_backend

from .conftest import migrate
from .helpers import insert_run, open_conn, status_of

QUIET = (
    "SELECT stuck_runs._stuck_runs_quiet(now() - interval '5 minutes',"
    " NULL::integer, NULL::integer, NULL::interval, NULL::text, NULL::boolean)"
)
RECOVER = "SELECT table_name, run_id FROM recover_stuck_runs('5 minutes')"
# An application's table beside the built-in one: text status, timestamptz times.
JOBS = (
    "CREATE TABLE jobs (id text PRIMARY KEY, status text NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL,"
    " completed_at timestamptz, error text, completed integer, total integer)"
)


def quiet_state(conn: psycopg.Connection) -> int:
    return conn.execute(QUIET).fetchone()[0]


def adopt_jobs(conn: psycopg.Connection) -> None:
    conn.execute(JOBS)
    conn.execute("SELECT adopt_runs_table('jobs')")


def job(conn: psycopg.Connection, run_id: str, idle: str = "1 hour") -> None:
    conn.execute(
        "INSERT INTO jobs (id, status, created_at, updated_at, completed, total)"
        " VALUES (%s, 'PROCESSING', now() - %s::interval, now() - %s::interval, 1, 2)",
        (run_id, idle, idle),
    )


def test_the_fast_path_answers_a_no_op_and_steps_aside_for_work(conn):
    insert_run(conn, "PROCESSING", idle="1 second")
    assert quiet_state(conn) == 0
    assert conn.execute(RECOVER).fetchall() == []
    stuck = insert_run(conn, "PROCESSING", idle="1 hour")
    assert quiet_state(conn) == 1
    assert [r for _, r in conn.execute(RECOVER).fetchall()] == [stuck]
    assert quiet_state(conn) == 0


def test_adoption_rebuilds_the_fast_path_to_cover_the_new_table(conn):
    adopt_jobs(conn)
    assert quiet_state(conn) == 0
    job(conn, "job-stuck")
    assert quiet_state(conn) == 1
    assert conn.execute(RECOVER).fetchall() == [("public.jobs", "job-stuck")]
    conn.execute("SELECT unadopt_runs_table('jobs')")
    job(conn, "job-stuck-2")
    assert quiet_state(conn) == 0  # no longer covered, no longer asked


def test_a_registry_change_it_did_not_follow_never_hides_a_stuck_run(conn):
    # A role that may not rebuild it (not the owner of stuck-runs' functions)
    # changes the registry: the trigger leaves it as it was.
    conn.execute(
        "ALTER TABLE stuck_runs.stuck_runs_tables DISABLE TRIGGER _stuck_runs_registry_changed"
    )
    adopt_jobs(conn)
    conn.execute(
        "ALTER TABLE stuck_runs.stuck_runs_tables ENABLE TRIGGER _stuck_runs_registry_changed"
    )
    job(conn, "job-stuck")
    assert quiet_state(conn) == 3  # out of date, and says so
    assert conn.execute(RECOVER).fetchall() == [("public.jobs", "job-stuck")]
    # The sweep that found it out of date rebuilt it.
    assert quiet_state(conn) == 0


def test_a_column_retyped_without_a_rewrite_is_read_with_its_new_type(conn):
    adopt_jobs(conn)
    # Under UTC the change is binary: no rewrite, no new pg_class row.
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("ALTER TABLE jobs ALTER COLUMN updated_at TYPE timestamp")
    conn.execute(
        "INSERT INTO jobs (id, status, updated_at) VALUES"
        " ('job-stuck', 'PROCESSING', (now() AT TIME ZONE 'UTC') - interval '1 hour')"
    )
    # Read in a zone twelve hours behind, the old statement would put this run
    # eleven hours in the future.
    conn.execute("SET TimeZone = 'Etc/GMT+12'")
    assert quiet_state(conn) != 0
    assert conn.execute(RECOVER).fetchall() == [("public.jobs", "job-stuck")]


def test_updated_at_losing_not_null_sends_such_runs_to_the_general_path(conn):
    adopt_jobs(conn)
    conn.execute("ALTER TABLE jobs ALTER COLUMN updated_at DROP NOT NULL")
    conn.execute(
        "INSERT INTO jobs (id, status, created_at, updated_at)"
        " VALUES ('job-never-touched', 'PENDING', now() - interval '1 hour', NULL)"
    )
    assert quiet_state(conn) != 0
    assert conn.execute(RECOVER).fetchall() == [("public.jobs", "job-never-touched")]


def test_a_renamed_column_is_reported_by_the_no_op_call(conn):
    adopt_jobs(conn)
    conn.execute("ALTER TABLE jobs RENAME COLUMN status TO state")
    warnings: list[str] = []
    conn.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
    assert conn.execute(RECOVER).fetchall() == []
    assert any("jobs" in w for w in warnings), warnings
    # Put back, the table is covered, and swept, again.
    conn.execute("ALTER TABLE jobs RENAME COLUMN state TO status")
    job(conn, "job-stuck")
    assert conn.execute(RECOVER).fetchall() == [("public.jobs", "job-stuck")]
    assert quiet_state(conn) == 0


def test_a_new_owner_is_not_trusted_on_the_old_ones_word(conn):
    role = f"fast_{uuid.uuid4().hex[:8]}"
    adopt_jobs(conn)
    try:
        conn.execute(f'CREATE ROLE "{role}"')
        conn.execute(f'ALTER TABLE jobs OWNER TO "{role}"')
        job(conn, "job-stuck")
        # The superuser may not read it directly any more: only the general
        # path, as its owner, may.
        assert quiet_state(conn) in (2, 3)
        assert conn.execute(RECOVER).fetchall() == [("public.jobs", "job-stuck")]
        assert conn.execute(
            "SELECT recovered_by FROM run_recoveries WHERE run_id = 'job-stuck'"
        ).fetchone() == (conn.info.user,)
    finally:
        conn.execute("DROP TABLE IF EXISTS jobs")
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


def test_rebuilds_and_sweeps_at_once_leave_it_current(db_url):
    with open_conn(db_url) as conn:
        for name in ("jobs_a", "jobs_b"):
            conn.execute(JOBS.replace("jobs", name))
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def adopt(name: str) -> None:
        try:
            with open_conn(db_url) as c:
                start.wait()
                c.execute("SELECT adopt_runs_table(%s)", (name,))
        except BaseException as e:
            errors.append(e)

    def sweep() -> None:
        try:
            with open_conn(db_url) as c:
                start.wait()
                for _ in range(20):
                    c.execute(RECOVER).fetchall()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=adopt, args=(n,)) for n in ("jobs_a", "jobs_b")]
    threads += [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with open_conn(db_url) as conn:
        conn.execute(RECOVER).fetchall()  # rebuilds it if a race left it behind
        assert quiet_state(conn) == 0
        for name in ("jobs_a", "jobs_b"):
            conn.execute(
                f"INSERT INTO {name} (id, status, updated_at) VALUES"
                " (%s, 'PROCESSING', now() - interval '1 hour')",
                (f"{name}-stuck",),
            )
        assert quiet_state(conn) == 1
        assert sorted(conn.execute(RECOVER).fetchall()) == [
            ("public.jobs_a", "jobs_a-stuck"),
            ("public.jobs_b", "jobs_b-stuck"),
        ]


def test_roles_granted_before_the_upgrade_keep_recovering(empty_db_url):
    role = f"app_{uuid.uuid4().hex[:8]}"
    target = parse_database_url(empty_db_url)
    with open_conn(empty_db_url) as conn:
        conn.execute("CREATE SCHEMA stuck_runs")
    with yoyo_backend(target) as backend:
        upto_0006 = read_history().filter(lambda m: m.id <= "0006_owners")
        backend.apply_migrations(backend.to_apply(upto_0006))
    try:
        with open_conn(empty_db_url) as conn:
            conn.execute(f'CREATE ROLE "{role}"')
            for (grant,) in conn.execute(
                "SELECT * FROM stuck_runs.stuck_runs_grant_sql(%s)", (role,)
            ).fetchall():
                conn.execute(grant)
        migrate(empty_db_url)
        with open_conn(empty_db_url) as conn:
            stuck = insert_run(conn, "PROCESSING", idle="1 hour")
            conn.execute(f'SET ROLE "{role}"')
            warnings: list[str] = []
            conn.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
            assert quiet_state(conn) == 1
            assert [r for _, r in conn.execute(RECOVER).fetchall()] == [stuck]
            assert quiet_state(conn) == 0
            assert warnings == []
            conn.execute("RESET ROLE")
            assert status_of(conn, stuck) == "FAILED"
    finally:
        with open_conn(empty_db_url) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.parametrize("forged", [True, False])
def test_the_audit_stamp_holds_whether_or_not_the_writer_sets_it(conn, forged):
    columns = ", recovered_by, recovered_at" if forged else ""
    values = ", 'someone else', now() - interval '1 year'" if forged else ""
    with conn.transaction():  # now() is the transaction's
        conn.execute(
            "INSERT INTO run_recoveries (table_name, run_id, previous_status, older_than, action"
            f"{columns}) VALUES ('t', 'r', 'PENDING', '5 minutes', 'failed'{values})"
        )
        assert conn.execute(
            "SELECT recovered_by = current_user, recovered_at = now() FROM run_recoveries"
            " WHERE run_id = 'r'"
        ).fetchone() == (True, True)


@pytest.mark.parametrize("change", ["rename", "drop"])
def test_a_mapped_column_the_answer_does_not_read_is_still_reported(conn, change):
    """Not only the columns a probe reads: any mapped column gone is said by a no-op call."""
    adopt_jobs(conn)
    conn.execute(
        "ALTER TABLE jobs RENAME COLUMN completed_at TO finished_at"
        if change == "rename"
        else "ALTER TABLE jobs DROP COLUMN error"
    )
    warnings: list[str] = []
    conn.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
    assert conn.execute(RECOVER).fetchall() == []
    assert any("jobs" in w for w in warnings), warnings
    # A new session, whose first plans are made after the change, says it too.
    with open_conn(conn.info.dsn) as fresh:
        fresh.execute("SET search_path = public, stuck_runs")
        seen: list[str] = []
        fresh.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
        assert fresh.execute(RECOVER).fetchall() == []
        assert any("jobs" in w for w in seen), seen


def test_an_enum_value_renamed_and_added_back_is_seen_by_a_session_that_planned_before(conn):
    conn.execute("CREATE TYPE job_state AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')")
    conn.execute(JOBS.replace("status text", "status job_state"))
    conn.execute("SELECT adopt_runs_table('jobs')")
    # A pooled session that has made its plans: one generic plan, kept.
    conn.execute("SET plan_cache_mode = force_generic_plan")
    for _ in range(3):
        assert conn.execute(RECOVER).fetchall() == []
    conn.execute("ALTER TYPE job_state RENAME VALUE 'PROCESSING' TO 'PROCESSING_OLD'")
    conn.execute("ALTER TYPE job_state ADD VALUE 'PROCESSING'")
    job(conn, "job-stuck")
    assert quiet_state(conn) != 0
    assert conn.execute(RECOVER).fetchall() == [("public.jobs", "job-stuck")]


def test_no_name_in_a_table_can_end_the_generated_body(conn):
    """The body is one literal: a table named to close a dollar quote stays a name."""
    name = "j$quiet$;ALTER ROLE CURRENT_USER NOSUPERUSER;SELECT $quiet$"
    conn.execute(JOBS.replace("jobs", f'"{name}"'))
    conn.execute("SET check_function_bodies = off")
    conn.execute("SELECT adopt_runs_table(%s::regclass)", (f'"{name}"',))
    assert conn.execute("SELECT _stuck_runs_refresh_quiet()").fetchone() == (True,)
    assert conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone() == (True,)
    conn.execute(
        f'INSERT INTO "{name}" (id, status, updated_at)'
        " VALUES ('odd-stuck', 'PROCESSING', now() - interval '1 hour')"
    )
    assert quiet_state(conn) == 1
    assert [r for _, r in conn.execute(RECOVER).fetchall()] == ["odd-stuck"]
