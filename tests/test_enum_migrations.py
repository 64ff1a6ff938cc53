"""The application's own migrations of an adopted table's status column (issue 19, point 1).

Prisma removes or renames an enum value by re-creating the type: CREATE TYPE "X_new", ALTER
COLUMN ... TYPE "X_new" USING, rename, DROP TYPE. ALTER COLUMN ... TYPE rebuilds every index
on the column from its printed definition, so a sweep index whose predicate named the enum
('PENDING'::"X") failed the migration, and Prisma then refused every later deploy. The sweep
index now compares statuses as text through stuck_runs_label(); these tests run the
application's statements exactly as its ORM writes them, on an adopted table.
"""

from __future__ import annotations

import psycopg
import pytest

from .helpers import explain_sweep, run_cli, with_query
from .test_upgrades import build_release, conn_to

TABLE = "app.jobs"

SCHEMA = """
CREATE SCHEMA app;
CREATE TYPE app."JobStatus" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'ARCHIVED');
CREATE TABLE app.jobs (
    id text PRIMARY KEY,
    status app."JobStatus" NOT NULL DEFAULT 'PENDING',
    "updatedAt" timestamptz NOT NULL DEFAULT now(),
    "createdAt" timestamptz NOT NULL DEFAULT now(),
    error text
);
"""

# adopt_runs_table()'s arguments for app.jobs, as `migrate --adopt jobs` proposes them.
JOBS_MAPPING = (
    "updated_at_column => 'updatedAt', created_at_column => 'createdAt',"
    " completed_at_column => NULL, completed_column => NULL, total_column => NULL"
)

# Prisma's migration for an enum that loses a value (here ARCHIVED), as `prisma migrate
# dev` writes it.
REMOVE_VALUE = """
BEGIN;
CREATE TYPE app."JobStatus_new" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');
ALTER TABLE app.jobs ALTER COLUMN "status" DROP DEFAULT;
ALTER TABLE app.jobs ALTER COLUMN "status" TYPE app."JobStatus_new"
    USING ("status"::text::app."JobStatus_new");
ALTER TYPE app."JobStatus" RENAME TO "JobStatus_old";
ALTER TYPE app."JobStatus_new" RENAME TO "JobStatus";
DROP TYPE app."JobStatus_old";
ALTER TABLE app.jobs ALTER COLUMN "status" SET DEFAULT 'PENDING';
COMMIT;
"""

# The same shape renames a value (COMPLETED becomes DONE; Prisma re-creates the type).
RENAME_VALUE = """
BEGIN;
CREATE TYPE app."JobStatus_new" AS ENUM ('PENDING', 'PROCESSING', 'DONE', 'FAILED');
ALTER TABLE app.jobs ALTER COLUMN "status" DROP DEFAULT;
ALTER TABLE app.jobs ALTER COLUMN "status" TYPE app."JobStatus_new"
    USING (CASE WHEN "status"::text = 'COMPLETED' THEN 'DONE' ELSE "status"::text END)::app."JobStatus_new";
ALTER TYPE app."JobStatus" RENAME TO "JobStatus_old";
ALTER TYPE app."JobStatus_new" RENAME TO "JobStatus";
DROP TYPE app."JobStatus_old";
ALTER TABLE app.jobs ALTER COLUMN "status" SET DEFAULT 'PENDING';
COMMIT;
"""

CHANGES = {
    "remove an enum value": [REMOVE_VALUE],
    "remove, then rename an enum value": [REMOVE_VALUE, RENAME_VALUE],
    "add an enum value": ["ALTER TYPE app.\"JobStatus\" ADD VALUE 'PAUSED'"],
    "enum to text and back": [
        'ALTER TABLE app.jobs ALTER COLUMN "status" DROP DEFAULT',
        'ALTER TABLE app.jobs ALTER COLUMN "status" TYPE text',
        'ALTER TABLE app.jobs ALTER COLUMN "status" TYPE app."JobStatus"'
        ' USING ("status"::app."JobStatus")',
    ],
    "enum to varchar and back": [
        'ALTER TABLE app.jobs ALTER COLUMN "status" DROP DEFAULT',
        'ALTER TABLE app.jobs ALTER COLUMN "status" TYPE varchar(32)',
        'ALTER TABLE app.jobs ALTER COLUMN "status" TYPE app."JobStatus"'
        ' USING ("status"::text::app."JobStatus")',
    ],
}


def adopted(url: str) -> str:
    """The app's schema and table, with stuck-runs installed and the table adopted as the
    README's start-up line does it."""
    with conn_to(url, "public") as conn:
        conn.execute(SCHEMA)
    app_url = with_query(url, schema="app")
    result = run_cli("--database-url", app_url, "migrate", "--adopt", "jobs")
    assert result.returncode == 0, result.stderr
    return app_url


def apply(url: str, statements: list[str]) -> None:
    with conn_to(url, "public") as conn:
        for statement in statements:
            conn.execute(statement)


def seed_and_recover(url: str) -> list[str]:
    """One run idle an hour, one active now: recovery takes the first and only it."""
    with conn_to(url, "stuck_runs") as conn:
        conn.execute("DELETE FROM app.jobs")
        conn.execute(
            'INSERT INTO app.jobs (id, status, "updatedAt") VALUES'
            " ('dead', 'PROCESSING', now() - interval '1 hour'),"
            " ('alive', 'PROCESSING', now())"
        )
        return [r[0] for r in conn.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')")]


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_apps_status_migrations_apply_on_an_adopted_table(change, empty_db_url):
    url = adopted(empty_db_url)
    apply(empty_db_url, CHANGES[change])
    # Recovery still covers the table, still through its index, which is still current.
    assert seed_and_recover(url) == ["dead"]
    with conn_to(url, "stuck_runs") as conn:
        assert conn.execute("SELECT status::text FROM app.jobs WHERE id = 'alive'").fetchone() == (
            "PROCESSING",
        )
        assert "jobs_stuck_runs_idx" in explain_sweep(conn, TABLE)
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl(%s)", (TABLE,)).fetchall() == []
    again = run_cli("--database-url", url, "start", "--adopt", "jobs")
    assert again.returncode == 0 and "warning" not in again.stderr.lower(), again.stderr


def old_release_with_its_index(url: str) -> None:
    """0.3's install, the table adopted by it and its sweep index built as 0.3 built it."""
    build_release(
        url, "stuck_runs", ("0001_core", "0002_retries", "0003_beside_the_app", "0004_owners_code")
    )
    with conn_to(url, "public") as conn:
        conn.execute(SCHEMA)
    with conn_to(url, "stuck_runs") as conn:
        conn.execute(f"SELECT adopt_runs_table('app.jobs', {JOBS_MAPPING})")
        for (ddl,) in conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall():
            conn.execute(ddl)


def test_a_sweep_index_built_before_0_4_is_replaced_by_migrate(empty_db_url):
    """0.3 built the index with the enum in its predicate: the next migrate rebuilds it."""
    old_release_with_its_index(empty_db_url)
    with conn_to(empty_db_url, "stuck_runs") as conn:
        old = conn.execute(
            "SELECT pg_get_indexdef('app.jobs_stuck_runs_idx'::regclass)"
        ).fetchone()[0]
    assert '"JobStatus"' in old
    # What the user met: the ORM's migration fails on the old index.
    with pytest.raises(psycopg.errors.UndefinedFunction):
        apply(empty_db_url, [REMOVE_VALUE])
    apply(empty_db_url, ["ROLLBACK"])

    url = with_query(empty_db_url, schema="app")
    upgraded = run_cli("--database-url", url, "migrate")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "creating the sweep index concurrently on app.jobs" in upgraded.stderr
    with conn_to(empty_db_url, "stuck_runs") as conn:
        new = conn.execute("SELECT pg_get_indexdef('app.jobs_stuck_runs_idx'::regclass)").fetchone()
        assert "stuck_runs_label(status)" in new[0] and "JobStatus" not in new[0]
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall() == []
    apply(empty_db_url, [REMOVE_VALUE])
    assert seed_and_recover(url) == ["dead"]


def test_readoption_with_other_statuses_rebuilds_the_index(empty_db_url):
    """An index for other statuses would never match the sweep: it is rebuilt, not kept."""
    url = adopted(empty_db_url)
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute(
            f"SELECT adopt_runs_table('app.jobs', {JOBS_MAPPING},"
            " active_statuses => '{PENDING,PROCESSING,ARCHIVED}')"
        )
        ddl = [r[0] for r in conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')")]
    # Built beside the index in use, which is replaced only once its successor is valid.
    assert [d.split(" ON ")[0].split(" WHERE ")[0] for d in ddl] == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_stuck_runs_new",
        "DROP INDEX CONCURRENTLY IF EXISTS app.jobs_stuck_runs_idx",
        "ALTER INDEX app.jobs_stuck_runs_new RENAME TO jobs_stuck_runs_idx",
    ]
    assert "'ARCHIVED'::pg_catalog.text" in ddl[0]
    rebuilt = run_cli("--database-url", url, "migrate")
    assert rebuilt.returncode == 0, rebuilt.stderr
    with conn_to(empty_db_url, "stuck_runs") as conn:
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall() == []
        assert "jobs_stuck_runs_idx" in explain_sweep(conn, TABLE)


def test_odd_column_names_and_statuses_keep_a_current_index(empty_db_url):
    """The printed predicate is compared as PostgreSQL prints it: no rebuild at every start."""
    with conn_to(empty_db_url, "public") as conn:
        conn.execute(
            """CREATE SCHEMA app;
            CREATE TYPE app.st AS ENUM ('it''s pending', 'läuft', 'a\\b', 'done', 'x y');
            CREATE TABLE app.jobs (id text PRIMARY KEY, "Sta""tus" app.st NOT NULL,
                                   "updated At" timestamptz NOT NULL DEFAULT now(),
                                   born timestamptz NOT NULL DEFAULT now());
            CREATE TABLE app.vjobs (id text PRIMARY KEY, state varchar(40) NOT NULL,
                                    touched timestamptz NOT NULL DEFAULT now(),
                                    born timestamptz NOT NULL DEFAULT now());"""
        )
    url = with_query(empty_db_url, schema="app")
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute(
            "SELECT adopt_runs_table('app.jobs', status_column => 'Sta\"tus',"
            " updated_at_column => 'updated At', created_at_column => 'born',"
            " completed_at_column => NULL, error_column => NULL, completed_column => NULL,"
            " total_column => NULL,"
            " active_statuses => ARRAY['it''s pending', 'läuft', 'a\\b', 'x y'],"
            " failed_status => 'done')"
        )
        conn.execute(
            "SELECT adopt_runs_table('app.vjobs', status_column => 'state',"
            " updated_at_column => 'touched', created_at_column => 'born',"
            " completed_at_column => NULL, error_column => NULL, completed_column => NULL,"
            " total_column => NULL)"
        )
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with conn_to(empty_db_url, "stuck_runs") as conn:
        for table in ("app.jobs", "app.vjobs"):
            assert conn.execute("SELECT * FROM stuck_runs_index_ddl(%s)", (table,)).fetchall() == []
            assert f"{table[4:]}_stuck_runs_idx" in explain_sweep(conn, table)


def test_an_outdated_index_serves_until_its_successor_is_valid(empty_db_url):
    """An old transaction holds the rebuild back: the index in use stays valid and in use,
    and the next run finishes the swap."""
    old_release_with_its_index(empty_db_url)
    url = with_query(empty_db_url, schema="app")
    old_oid = index_oid(empty_db_url, "app.jobs_stuck_runs_idx")
    blocker = psycopg.connect(conn_to(empty_db_url, "public").info.dsn)
    try:
        # A snapshot held open: CREATE INDEX CONCURRENTLY waits for it to end.
        blocker.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        blocker.execute("SELECT count(*) FROM app.jobs")
        held = run_cli("--database-url", url, "migrate", "--index-timeout", "1")
        assert held.returncode == 0, held.stderr
        assert "the sweep index of app.jobs was not built within" in held.stderr, held.stderr
        assert "dropping" not in held.stderr  # the swap stopped at its first step
        with conn_to(empty_db_url, "stuck_runs") as conn:
            assert conn.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = %s", (old_oid,)
            ).fetchone() == (True,)
            # The new sweep still uses 0.3's index: it compares the enum itself too.
            assert "jobs_stuck_runs_idx" in explain_sweep(conn, TABLE)
    finally:
        blocker.close()
    done = run_cli("--database-url", url, "migrate")
    assert done.returncode == 0, done.stderr
    assert "putting the rebuilt sweep index of app.jobs in place" in done.stderr
    with conn_to(empty_db_url, "stuck_runs") as conn:
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall() == []
        assert conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'jobs' AND indexname LIKE '%stuck%'"
        ).fetchone() == (1,)
        assert "jobs_stuck_runs_idx" in explain_sweep(conn, TABLE)
    assert index_oid(empty_db_url, "app.jobs_stuck_runs_idx") not in (None, old_oid)
    apply(empty_db_url, [REMOVE_VALUE])
    assert seed_and_recover(url) == ["dead"]


def index_oid(url: str, name: str) -> int | None:
    with conn_to(url, "public") as conn:
        return conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()[0]


def test_a_planted_overload_of_the_label_function_is_never_called(empty_db_url):
    """The legacy layout in public, opened to another role after the install: an exact-type
    stuck_runs_label() of its own would win over (anyenum). Nothing is built with it."""
    with conn_to(empty_db_url, "public") as conn:
        conn.execute(SCHEMA)
    url = with_query(empty_db_url, schema="app")
    installed = run_cli("--database-url", url, "--schema", "public", "migrate", "--adopt", "jobs")
    assert installed.returncode == 0, installed.stderr
    with conn_to(empty_db_url, "public") as conn:
        conn.execute("CREATE SEQUENCE public.planted_calls")
        conn.execute(
            'CREATE FUNCTION public.stuck_runs_label(app."JobStatus") RETURNS text'
            " LANGUAGE sql IMMUTABLE AS $$ SELECT nextval('public.planted_calls')::text $$"
        )
        conn.execute(
            'INSERT INTO app.jobs (id, status, "updatedAt")'
            " VALUES ('dead', 'PROCESSING', now() - interval '1 hour')"
        )
    recovered = run_cli("--database-url", url, "--schema", "public", "recover")
    assert recovered.returncode == 1
    assert "stuck_runs_label() that stuck-runs did not create" in recovered.stderr
    with conn_to(empty_db_url, "public") as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        assert conn.execute("SELECT * FROM public.stuck_runs").fetchall() == []
        assert any("did not create" in n for n in notices), notices
        # Nor does a rebuild bind the index to it.
        assert (
            conn.execute("SELECT * FROM public.stuck_runs_index_ddl('app.jobs')").fetchall() == []
        )
    again = run_cli("--database-url", url, "--schema", "public", "migrate", "--adopt", "jobs")
    assert again.returncode == 0, again.stderr
    with conn_to(empty_db_url, "public") as conn:
        assert conn.execute(
            "SELECT last_value, is_called FROM public.planted_calls"
        ).fetchone() == (1, False)


def test_grants_lost_in_a_restore_come_back_with_migrate(empty_db_url):
    """pg_restore --no-acl drops PUBLIC's USAGE and EXECUTE: a superuser's sweep of a table
    another role owns then fails, loudly, and `stuck-runs migrate` repairs it."""
    with conn_to(empty_db_url, "public") as conn:
        conn.execute("CREATE ROLE enum_app")
        conn.execute(SCHEMA)
        conn.execute("GRANT USAGE ON SCHEMA app TO enum_app")
        conn.execute("ALTER TABLE app.jobs OWNER TO enum_app")
        conn.execute('ALTER TYPE app."JobStatus" OWNER TO enum_app')
    try:
        url = with_query(empty_db_url, schema="app")
        assert run_cli("--database-url", url, "migrate").returncode == 0
        with conn_to(empty_db_url, "stuck_runs") as conn:
            conn.execute(f"SELECT adopt_runs_table('app.jobs', {JOBS_MAPPING})")
            conn.execute("REVOKE USAGE ON SCHEMA stuck_runs FROM PUBLIC")
            conn.execute("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA stuck_runs FROM PUBLIC")
            conn.execute(
                'INSERT INTO app.jobs (id, status, "updatedAt")'
                " VALUES ('dead', 'PROCESSING', now() - interval '1 hour')"
            )
        broken = run_cli("--database-url", url, "recover")
        assert broken.returncode == 1 and "app.jobs was not swept" in broken.stderr
        assert run_cli("--database-url", url, "migrate").returncode == 0
        repaired = run_cli("--database-url", url, "recover")
        assert repaired.returncode == 0, repaired.stderr
        assert "dead" in repaired.stdout
    finally:
        with conn_to(empty_db_url, "public") as conn:
            conn.execute("DROP OWNED BY enum_app")
            conn.execute("DROP ROLE enum_app")


def test_a_renamed_active_value_is_loud_and_listed_runs_are_active(empty_db_url):
    """ALTER TYPE ... RENAME VALUE makes the label of rows already in the index stale. The
    views compare the enum itself too, so they never list a run that is not active, and the
    sweep says the mapping no longer holds instead of recovering nothing in silence."""
    url = adopted(empty_db_url)
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute(
            'INSERT INTO app.jobs (id, status, "updatedAt")'
            " VALUES ('was-processing', 'PROCESSING', now() - interval '1 hour')"
        )
        conn.execute("ALTER TYPE app.\"JobStatus\" RENAME VALUE 'PROCESSING' TO 'RUNNING'")
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        assert conn.execute("SELECT run_id FROM stuck_runs").fetchall() == []
        assert conn.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')").fetchall() == []
        assert any("app.jobs was not swept" in n and "PROCESSING" in n for n in notices), notices
    assert run_cli("--database-url", url, "recover").returncode == 1


def test_standard_conforming_strings_off_keeps_the_index_current(empty_db_url):
    with conn_to(empty_db_url, "public") as conn:
        conn.execute(
            """CREATE SCHEMA app;
            CREATE TABLE app.jobs (id text PRIMARY KEY, status text NOT NULL,
                                   updated_at timestamptz NOT NULL DEFAULT now(),
                                   created_at timestamptz NOT NULL DEFAULT now())"""
        )
    url = with_query(empty_db_url, schema="app")
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute(
            "SELECT adopt_runs_table('app.jobs', completed_at_column => NULL, error_column => NULL,"
            " completed_column => NULL, total_column => NULL,"
            " active_statuses => ARRAY['run\\ning', 'PENDING'])"
        )
        dbname = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{dbname}" SET standard_conforming_strings = off')
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with conn_to(empty_db_url, "stuck_runs") as conn:
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("off",)
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall() == []


def test_no_index_statement_for_a_table_that_no_longer_fits(empty_db_url):
    adopted(empty_db_url)
    with conn_to(empty_db_url, "stuck_runs") as conn:
        conn.execute('ALTER TABLE app.jobs RENAME COLUMN "status" TO "state"')
        assert conn.execute("SELECT * FROM stuck_runs_index_ddl('app.jobs')").fetchall() == []
