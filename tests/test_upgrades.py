"""Every layout stuck-runs ever shipped, upgraded and moved in every order a user may run it.

Issue 19: relocating a 0.1 install moved a fixed list of names and left 0003's
helpers, the roles table and the covered view behind, which broke recovery for
good; and an application's own function named recover_stuck_runs was taken for
an install. Released layouts: migrations 0001, or 0001 and 0002, in the
application's schema (public, or Prisma's ?schema=), as 0.1 installed them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from runner.connection import parse_database_url
from runner.migrations import read_history, yoyo_backend

from .helpers import run_cli, with_query

ROOT = Path(__file__).resolve().parent.parent
RELEASES = {"0.1 (0001)": ("0001_core",), "0.1 (0001+0002)": ("0001_core", "0002_retries")}
# The application's table, as its ORM made it, beside 0.1's install.
JOBS_DDL = (
    "CREATE TABLE {schema}.jobs (id text PRIMARY KEY, state text NOT NULL,"
    ' "createdAt" timestamp(3) NOT NULL, "updatedAt" timestamp(3) NOT NULL,'
    ' "finishedAt" timestamp(3), "lastError" text, tries integer NOT NULL DEFAULT 0)'
)
# The application's own objects in its schema, some named like ours: none may move.
APP_OBJECTS = (
    "CREATE FUNCTION {schema}.stuck_runs_app_report() RETURNS integer LANGUAGE sql AS 'SELECT 1';"
    "CREATE FUNCTION {schema}.recover_stuck_runs(job text) RETURNS text LANGUAGE sql"
    " AS 'SELECT job';"
    "CREATE TYPE {schema}.job_kind AS ENUM ('a', 'b');"
    "CREATE VIEW {schema}.stuck_runs_app_view AS SELECT 1 AS one;"
)


def conn_to(url: str, search_path: str) -> psycopg.Connection:
    conn = psycopg.connect(parse_database_url(url).conninfo, autocommit=True)
    conn.execute("SELECT set_config('search_path', %s, false)", (search_path,))
    return conn


def build_release(url: str, schema: str, migration_ids: tuple[str, ...]) -> None:
    """A database as 0.1's runner left it: these migrations, applied in the app's schema."""
    with conn_to(url, "public") as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    target = parse_database_url(url).in_schema(schema)
    with yoyo_backend(target) as backend:
        old = read_history().filter(lambda m: m.id in migration_ids)
        backend.apply_migrations(backend.to_apply(old))


def fill(url: str, schema: str) -> dict:
    """Data in the audit, settings and registry, and the app's own objects, as 0.1 saw them."""
    with conn_to(url, schema) as conn:
        conn.execute("UPDATE stuck_runs_settings SET older_than = '10 minutes'")
        conn.execute(JOBS_DDL.format(schema=schema))
        ours = functions_in(conn, schema)
        conn.execute(APP_OBJECTS.format(schema=schema))
        app_functions = functions_in(conn, schema) - ours
        assert len(app_functions) == 2
        conn.execute(
            "SELECT adopt_runs_table('jobs', status_column => 'state',"
            " created_at_column => 'createdAt', updated_at_column => 'updatedAt',"
            " completed_at_column => 'finishedAt', error_column => 'lastError',"
            " completed_column => NULL, total_column => NULL, attempts_column => 'tries',"
            " active_statuses => '{QUEUED,RUNNING}', failed_status => 'DEAD')"
        )
        conn.execute(
            "INSERT INTO qualification_runs (id, status, created_at, updated_at) VALUES"
            " ('before-upgrade', 'PROCESSING', now() - interval '1 hour', now() - interval '1 hour')"
        )
        conn.execute("SELECT * FROM recover_stuck_runs()")
        conn.execute(
            "INSERT INTO qualification_runs (id, status, created_at, updated_at) VALUES"
            " ('builtin-stuck', 'PROCESSING', now() - interval '1 hour', now() - interval '1 hour'),"
            " ('builtin-alive', 'PROCESSING', now() - interval '1 hour', now())"
        )
        conn.execute(
            'INSERT INTO jobs (id, state, "createdAt", "updatedAt") VALUES'
            " ('job-stuck', 'RUNNING', (now() - interval '1 hour') AT TIME ZONE 'UTC',"
            "  (now() - interval '1 hour') AT TIME ZONE 'UTC'),"
            " ('job-alive', 'QUEUED', (now() - interval '1 hour') AT TIME ZONE 'UTC',"
            "  now() AT TIME ZONE 'UTC')"
        )
        return {
            "audit": conn.execute(
                "SELECT run_id, previous_status, recovered_at FROM run_recoveries ORDER BY id"
            ).fetchall(),
            "app_functions": app_functions,
        }


def functions_in(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'"
        " FROM pg_proc AS p"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = %s",
        (schema,),
    ).fetchall()
    return {row[0] for row in rows}


def relations_in(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname::text FROM pg_class AS c JOIN pg_namespace AS n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'c', 'S')",
        (schema,),
    ).fetchall()
    return {row[0] for row in rows}


def signatures(url: str, schema: str) -> dict[str, str | None]:
    """Functions of a schema, as a session whose path is that schema prints them, with
    their settings (search_path) in a schema-neutral form."""
    with conn_to(url, "public") as conn:
        conn.execute("SELECT set_config('search_path', quote_ident(%s), false)", (schema,))
        rows = conn.execute(
            "SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',"
            " (SELECT string_agg(replace(c, quote_ident(n.nspname), '<schema>'), ' | ')"
            "  FROM unnest(p.proconfig) AS c)"
            " FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("order", ["migrate, then migrate --relocate", "migrate --relocate"])
@pytest.mark.parametrize("app_schema", ["public", "app"])
@pytest.mark.parametrize("release", sorted(RELEASES))
def test_an_old_install_moves_whole_with_its_data(release, app_schema, order, empty_db_url, db_url):
    ids = RELEASES[release]
    url = empty_db_url if app_schema == "public" else with_query(empty_db_url, schema=app_schema)
    build_release(url, app_schema, ids)
    before = fill(url, app_schema)

    if order == "migrate, then migrate --relocate":
        upgraded = run_cli("--database-url", url, "migrate")
        assert upgraded.returncode == 0, upgraded.stderr
        assert "stuck-runs migrate --relocate" in upgraded.stderr
    moved = run_cli("--database-url", url, "migrate", "--relocate")
    assert moved.returncode == 0, moved.stderr
    assert_moved_whole(url, app_schema, before, fresh=db_url)


def assert_moved_whole(url: str, app_schema: str, before: dict, *, fresh: str) -> None:
    """Everything of stuck-runs in its schema, its data kept, and every path working."""
    with conn_to(url, "public") as conn:
        # Nothing of stuck-runs is left in the app's schema but the table the
        # app writes to by name; every object of the app's own stayed.
        assert functions_in(conn, app_schema) == before["app_functions"]
        assert relations_in(conn, app_schema) == {
            "qualification_runs",
            "jobs",
            "stuck_runs_app_view",
        }
        assert conn.execute(f"SELECT to_regtype('{app_schema}.job_kind')").fetchone()[0]
        # The same functions as a fresh install, each pinned as there to its new schema.
        assert signatures(url, "stuck_runs") == signatures(fresh, "stuck_runs")
        with conn_to(fresh, "public") as other:
            expected = relations_in(other, "stuck_runs") - {"qualification_runs"}
        assert relations_in(conn, "stuck_runs") == expected
        assert not [
            config
            for config in signatures(url, "stuck_runs").values()
            if config and app_schema in config
        ]
        # Audit, settings, registry and history: all there.
        assert (
            conn.execute(
                "SELECT run_id, previous_status, recovered_at FROM stuck_runs.run_recoveries"
                " ORDER BY id"
            ).fetchall()
            == before["audit"]
        )
        assert before["audit"][0][0] == "before-upgrade"
        threshold = conn.execute("SELECT older_than FROM stuck_runs.stuck_runs_settings")
        assert threshold.fetchall() == [(timedelta(minutes=10),)]
        registry = conn.execute(
            "SELECT table_name::text, status_column, attempts_column, active_statuses,"
            " failed_status, managed FROM stuck_runs.stuck_runs_tables ORDER BY 1"
        ).fetchall()
        prefix = "" if app_schema == "public" else f"{app_schema}."
        assert registry == [
            (f"{prefix}jobs", "state", "tries", ["QUEUED", "RUNNING"], "DEAD", False),
            (
                f"{prefix}qualification_runs",
                "status",
                "attempts",  # 0002 upgraded it in place, in either order
                ["PENDING", "PROCESSING"],
                "FAILED",
                True,
            ),
        ]
        history = conn.execute("SELECT migration_id FROM stuck_runs._yoyo_migration ORDER BY 1")
        assert [row[0] for row in history] == [m.id for m in read_history()]

    # 0.1 let any role register any table, so nobody can vouch for its entries:
    # recovery skips them, loudly, until the start-up line adopts them again
    # (keeping what they were adopted with).
    warned = run_cli("--database-url", url, "list")
    assert "registered before stuck-runs 0.3" in warned.stderr
    assert "stuck-runs migrate --adopt" in warned.stderr
    readopted = run_cli("--database-url", url, "migrate", "--adopt", "jobs")
    assert readopted.returncode == 0, readopted.stderr

    # Recovery works from the runner, and from SQL.
    recovered = run_cli("--database-url", url, "recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert "warning" not in recovered.stderr and "relocate" not in recovered.stderr
    rows = sorted(
        (row["run_id"], row["status"]) for row in map(json.loads, recovered.stdout.splitlines())
    )
    assert rows == [("builtin-stuck", "FAILED"), ("job-stuck", "DEAD")]
    with conn_to(url, "public") as conn:
        conn.execute(
            f"UPDATE {app_schema}.qualification_runs SET updated_at = now() - interval '1 hour'"
            " WHERE id = 'builtin-alive'"
        )
        again = conn.execute("SELECT run_id FROM stuck_runs.recover_stuck_runs()").fetchall()
        assert again == [("builtin-alive",)]
    # And migrate keeps working: nothing to apply, nothing to move.
    remigrated = run_cli("--database-url", url, "migrate")
    assert remigrated.returncode == 0, remigrated.stderr
    assert "nothing to apply" in remigrated.stderr and "relocate" not in remigrated.stderr
    twice = run_cli("--database-url", url, "migrate", "--relocate")
    assert twice.returncode == 0, twice.stderr
    assert "already lives in schema 'stuck_runs': nothing to move" in twice.stderr


# What `migrate --relocate` did before issue 19 (stuck-runs 0.2): it moved a
# list of names and left 0003's helpers, stuck_runs_roles and the covered view
# in the app's schema. Databases it moved are a layout we shipped.
OLD_RELOCATE = r"""
DO $relocate$
DECLARE
    src  text := pg_catalog.current_setting('stuck_runs.relocate_from');
    dst  text := pg_catalog.current_setting('stuck_runs.relocate_to');
    obj  record;
BEGIN
    IF pg_catalog.to_regproc(pg_catalog.format('%I.recover_stuck_runs', src)) IS NULL THEN
        RAISE EXCEPTION 'there is no stuck-runs installation in schema % to move', src
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.to_regclass(pg_catalog.format('%I._yoyo_migration', dst)) IS NOT NULL THEN
        RAISE EXCEPTION 'schema % already holds a stuck-runs installation; nothing was moved', dst
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR obj IN
        SELECT pg_catalog.format('ALTER %s %I.%I SET SCHEMA %I',
                   CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, src, c.relname, dst) AS ddl
        FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(src))
          AND c.relname IN ('stuck_runs_settings', 'stuck_runs_tables', 'run_recoveries',
                            '_yoyo_log', '_yoyo_migration', '_yoyo_version', 'yoyo_lock',
                            'active_runs', 'stuck_runs')
        UNION ALL
        SELECT pg_catalog.format('ALTER FUNCTION %s SET SCHEMA %I', p.oid::regprocedure, dst)
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(src))
          AND (p.proname LIKE 'stuck\_runs\_%' OR p.proname IN (
               'recover_stuck_runs', 'adopt_runs_table', 'unadopt_runs_table',
               'propose_runs_table_mapping', 'resume_run', 'qualification_runs_touch'))
    LOOP
        EXECUTE obj.ddl;
    END LOOP;
    -- Their bodies name their helpers unqualified: point them at the new schema.
    FOR obj IN
        SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(dst))
          -- (0.2 never met 0.4's stuck_runs_label(): today's migrate upgraded the
          -- install in place before this old code moved it.)
          AND p.proname <> 'stuck_runs_label'
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                                  obj.fn, dst);
    END LOOP;
END
$relocate$
"""


@pytest.mark.parametrize("app_schema", ["public", "app"])
def test_migrate_finishes_a_move_an_earlier_relocate_left_half_done(
    app_schema, empty_db_url, db_url
):
    url = empty_db_url if app_schema == "public" else with_query(empty_db_url, schema=app_schema)
    build_release(url, app_schema, RELEASES["0.1 (0001+0002)"])
    before = fill(url, app_schema)
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with conn_to(url, "public") as conn:
        # The old relocation took these for ours, or refused to start with them.
        conn.execute(f"DROP FUNCTION {app_schema}.stuck_runs_app_report()")
        conn.execute(f"DROP FUNCTION {app_schema}.recover_stuck_runs(text)")
        before["app_functions"] = set()
        conn.execute("CREATE SCHEMA stuck_runs")
        with conn.transaction():
            conn.execute(
                "SELECT set_config('stuck_runs.relocate_from', %s, true),"
                " set_config('stuck_runs.relocate_to', 'stuck_runs', true),"
                " set_config('search_path', 'stuck_runs', true)",
                (app_schema,),
            )
            conn.execute(OLD_RELOCATE)
        left = functions_in(conn, app_schema) - before["app_functions"]
        assert any(name.startswith("_stuck_runs_list(") for name in left), left
    broken = run_cli("--database-url", url, "recover")
    assert broken.returncode == 1, broken.stderr

    repaired = run_cli("--database-url", url, "migrate")
    assert repaired.returncode == 0, repaired.stderr
    assert f"object(s) of stuck-runs from schema {app_schema!r} into 'stuck_runs'" in (
        repaired.stderr
    )
    assert_moved_whole(url, app_schema, before, fresh=db_url)


def test_an_apps_own_recover_stuck_runs_is_not_an_install(empty_db_url):
    with conn_to(empty_db_url, "public") as conn:
        conn.execute(
            "CREATE FUNCTION public.recover_stuck_runs() RETURNS text LANGUAGE sql"
            " AS 'SELECT ''the app''''s own'''"
        )
    # Before any install, recover says so: it never calls the app's function.
    before = run_cli("--database-url", empty_db_url, "recover")
    assert before.returncode == 1
    assert "stuck-runs is not installed in schema stuck_runs" in before.stderr
    assert "relocate" not in before.stderr
    installed = run_cli("--database-url", empty_db_url, "migrate")
    assert installed.returncode == 0, installed.stderr
    assert "relocate" not in installed.stderr
    assert "(schema stuck_runs)" in installed.stderr
    with conn_to(empty_db_url, "public") as conn:
        # Nothing of ours landed beside it, and the app's own calls still resolve.
        assert functions_in(conn, "public") == {"recover_stuck_runs()"}
        assert relations_in(conn, "public") == set()
        assert conn.execute("SELECT recover_stuck_runs()").fetchone() == ("the app's own",)
        assert conn.execute("SELECT to_regclass('stuck_runs.stuck_runs_settings')").fetchone()[0]
    listed = run_cli("--database-url", empty_db_url, "recover", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "relocate" not in listed.stderr
    # Nothing to move, and saying so: --relocate is safe at every start.
    again = run_cli("--database-url", empty_db_url, "migrate", "--relocate")
    assert again.returncode == 0, again.stderr
    assert "stuck-runs already lives in schema 'stuck_runs': nothing to move" in again.stderr
    with conn_to(empty_db_url, "public") as conn:
        assert functions_in(conn, "public") == {"recover_stuck_runs()"}


def test_relocation_into_a_quoted_schema_keeps_the_roles_that_used_it(empty_db_url, db_url):
    fresh = db_url
    schema = 'Stuck "Runs"'
    build_release(empty_db_url, "public", RELEASES["0.1 (0001+0002)"])
    role = f"worker_{uuid.uuid4().hex[:8]}"
    with conn_to(empty_db_url, "public") as conn:
        conn.execute(f"CREATE ROLE {role}")
        conn.execute(f"GRANT SELECT ON public.run_recoveries TO {role}")
    try:
        moved = run_cli("--database-url", empty_db_url, "--schema", schema, "migrate", "--relocate")
        assert moved.returncode == 0, moved.stderr
        with conn_to(empty_db_url, "public") as conn:
            target = conn.execute("SELECT quote_ident(%s)", (schema,)).fetchone()[0]
            # Pinned as a fresh install pins them, to the quoted name.
            assert signatures(empty_db_url, schema) == signatures(fresh, "stuck_runs")
            assert (
                json.dumps(target)[1:-1]
                in conn.execute(
                    "SELECT DISTINCT p.proconfig::text FROM pg_proc AS p JOIN pg_namespace AS n"
                    " ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = 'resume_run'",
                    (schema,),
                ).fetchone()[0]
            )
            # The role reads the audit where it now is.
            assert conn.execute(
                "SELECT has_schema_privilege(%s, %s, 'USAGE'),"
                " has_table_privilege(%s, format('%%I.run_recoveries', %s::text), 'SELECT')",
                (role, schema, role, schema),
            ).fetchone() == (True, True)
            conn.execute(
                "INSERT INTO public.qualification_runs (id, status, updated_at)"
                " VALUES ('stuck', 'PROCESSING', now() - interval '1 hour')"
            )
        recovered = run_cli("--database-url", empty_db_url, "--schema", schema, "recover", "--json")
        assert recovered.returncode == 0, recovered.stderr
        assert json.loads(recovered.stdout)["run_id"] == "stuck"
    finally:
        with conn_to(empty_db_url, "public") as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_relocate_refused_onto_another_install_leaves_the_old_one_untouched(empty_db_url):
    build_release(empty_db_url, "public", RELEASES["0.1 (0001+0002)"])
    fresh = run_cli("--database-url", empty_db_url, "--schema", "stuck_runs", "migrate")
    assert fresh.returncode == 0, fresh.stderr
    refused = run_cli("--database-url", empty_db_url, "migrate", "--relocate")
    assert refused.returncode == 1
    assert "schema 'stuck_runs' already holds a stuck-runs installation; nothing was moved" in (
        refused.stderr
    )
    with conn_to(empty_db_url, "public") as conn:
        history = conn.execute("SELECT migration_id FROM public._yoyo_migration ORDER BY 1")
        assert [row[0] for row in history] == ["0001_core", "0002_retries"]


def test_the_apps_own_qualification_runs_stays_where_it_is(empty_db_url, db_url):
    # The app had its table first, with its own names: 0001 left it alone and
    # did not cover it, but a replay of 0001 into an empty schema creates one.
    with conn_to(empty_db_url, "public") as conn:
        conn.execute("CREATE TABLE qualification_runs (id text PRIMARY KEY, state text)")
        conn.execute("INSERT INTO qualification_runs VALUES ('the-apps', 'busy')")
    build_release(empty_db_url, "public", RELEASES["0.1 (0001+0002)"])
    # In place, 0003 fails on it (it comments on a column the app's table
    # lacks; landed migrations are immutable): migrate says what works.
    in_place = run_cli("--database-url", empty_db_url, "migrate")
    assert in_place.returncode == 1
    assert "could not upgrade stuck-runs in schema 'public', where 0.1 installed it" in (
        in_place.stderr
    )
    assert "`stuck-runs migrate --relocate` moves it into schema 'stuck_runs'" in in_place.stderr
    moved = run_cli("--database-url", empty_db_url, "migrate", "--relocate")
    assert moved.returncode == 0, moved.stderr
    assert "applied 0003_beside_the_app" in moved.stdout
    with conn_to(empty_db_url, "public") as conn:
        assert conn.execute("SELECT * FROM public.qualification_runs").fetchall() == [
            ("the-apps", "busy")
        ]
        assert conn.execute("SELECT to_regclass('stuck_runs.qualification_runs')").fetchone() == (
            None,
        )
        assert functions_in(conn, "public") == set()
    assert signatures(empty_db_url, "stuck_runs") == signatures(db_url, "stuck_runs")


def test_a_move_never_takes_another_roles_object_into_stuck_runs(empty_db_url):
    build_release(empty_db_url, "public", RELEASES["0.1 (0001+0002)"])
    assert run_cli("--database-url", empty_db_url, "migrate").returncode == 0
    role = f"mallory_{uuid.uuid4().hex[:8]}"
    with conn_to(empty_db_url, "public") as conn:
        conn.execute("CREATE SCHEMA stuck_runs")
        with conn.transaction():
            conn.execute(
                "SELECT set_config('stuck_runs.relocate_from', 'public', true),"
                " set_config('stuck_runs.relocate_to', 'stuck_runs', true),"
                " set_config('search_path', 'stuck_runs', true)"
            )
            conn.execute(OLD_RELOCATE)
        # A helper the old move left behind is gone, and a role that may
        # create in the app's schema puts its own under that name.
        conn.execute("DROP FUNCTION public._stuck_runs_qualified_name(regclass)")
        conn.execute(f"CREATE ROLE {role}")
        conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        conn.execute(f"SET ROLE {role}")
        conn.execute(
            "CREATE FUNCTION public._stuck_runs_qualified_name(t regclass) RETURNS text"
            " LANGUAGE sql AS 'SELECT ''mallory'''"
        )
        conn.execute("RESET ROLE")
    try:
        repaired = run_cli("--database-url", empty_db_url, "migrate")
        assert "object(s) of stuck-runs from schema 'public'" in repaired.stderr, repaired.stderr
        with conn_to(empty_db_url, "public") as conn:
            owners = conn.execute(
                "SELECT n.nspname, pg_get_userbyid(p.proowner) FROM pg_proc AS p"
                " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
                " WHERE p.proname = '_stuck_runs_qualified_name'"
            ).fetchall()
            assert owners == [("public", role)]
            assert any(
                name.startswith("_stuck_runs_list(")
                for name in signatures(empty_db_url, "stuck_runs")
            )
    finally:
        with conn_to(empty_db_url, "public") as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_many_instances_relocating_at_once_move_it_once(empty_db_url):
    build_release(empty_db_url, "public", RELEASES["0.1 (0001+0002)"])
    with conn_to(empty_db_url, "public") as conn:
        conn.execute("UPDATE stuck_runs_settings SET older_than = '10 minutes'")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda _: run_cli("--database-url", empty_db_url, "migrate", "--relocate"),
                range(4),
            )
        )
    assert [result.returncode for result in results] == [0, 0, 0, 0], [
        result.stderr for result in results
    ]
    moves = [result for result in results if "object(s) of stuck-runs" in result.stderr]
    assert len(moves) == 1
    assert sum("applied 0003_beside_the_app" in result.stdout for result in results) == 1
    with conn_to(empty_db_url, "public") as conn:
        assert functions_in(conn, "public") == set()
        assert conn.execute("SELECT older_than FROM stuck_runs.stuck_runs_settings").fetchall() == [
            (timedelta(minutes=10),)
        ]


# A migration stuck-runs has not written yet: new names, a new kind of object,
# an overload of an existing function, a helper that takes the registry's row.
FUTURE = """-- depends: 0003_beside_the_app
CREATE TYPE future_mood AS ENUM ('calm', 'busy');
CREATE TABLE future_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, mood future_mood);
INSERT INTO future_notes (mood) VALUES ('calm');
CREATE FUNCTION zz_future_helper(t stuck_runs_tables) RETURNS text LANGUAGE sql
    AS 'SELECT t.table_name::text';
CREATE FUNCTION resume_run(run_ids text[]) RETURNS integer LANGUAGE sql AS 'SELECT 0';
DO $harden$ BEGIN PERFORM stuck_runs_harden(); END $harden$;
"""


def test_relocation_moves_what_a_later_migration_adds(empty_db_url, tmp_path):
    for part in ("runner", "migrations", "sql"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "migrations" / "0099_future.sql").write_text(FUTURE)

    def future_cli(*args: str):
        return subprocess.run(
            [sys.executable, "-m", "runner", "--database-url", empty_db_url, *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        )

    build_release(empty_db_url, "public", RELEASES["0.1 (0001)"])
    upgraded = future_cli("migrate")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied 0099_future" in upgraded.stdout
    moved = future_cli("migrate", "--relocate")
    assert moved.returncode == 0, moved.stderr
    with conn_to(empty_db_url, "public") as conn:
        assert functions_in(conn, "public") == set()
        assert relations_in(conn, "public") == {"qualification_runs"}
        assert conn.execute("SELECT to_regtype('public.future_mood')").fetchone() == (None,)
        assert conn.execute("SELECT mood::text FROM stuck_runs.future_notes").fetchall() == [
            ("calm",)
        ]
        assert conn.execute(
            "SELECT stuck_runs.zz_future_helper(t) FROM stuck_runs.stuck_runs_tables AS t"
        ).fetchall() == [("qualification_runs",)]
    assert {"resume_run(run_ids text[])", "resume_run(run_id text, in_table regclass)"} <= set(
        signatures(empty_db_url, "stuck_runs")
    )
    recovered = future_cli("recover")
    assert recovered.returncode == 0, recovered.stderr
