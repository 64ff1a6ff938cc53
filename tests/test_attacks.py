"""A hostile co-tenant: planted overloads, adoption of tables it does not own (issue 12).

The co-tenant is a role that can create objects in `public` and in the app's
schema. It must not get a superuser's recovery (a pg_cron job, the migrating
role) to run its code, nor to write to a table the co-tenant does not own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from .helpers import insert_run, open_conn, run_cli, with_dbname, with_query

# Exact-type overloads of built-ins stuck-runs' SQL calls: each beats pg_catalog's
# polymorphic or differently typed one wherever it sits on a search path.
PLANTED_FUNCTIONS = [
    ("cardinality", "a text[]", "integer", "pg_catalog.cardinality(a)"),
    ("array_position", "a text[], b text", "integer", "pg_catalog.array_position(a, b)"),
    ("unnest", "a text[]", "SETOF text", "pg_catalog.unnest(a)"),
    ("format", "f text, a text", "text", "pg_catalog.format(f, a)"),
    ("format", "f text, a text, b text", "text", "pg_catalog.format(f, a, b)"),
    ("quote_literal", "a text", "text", "pg_catalog.quote_literal(a)"),
    ("left", "a text, n integer", "text", "pg_catalog.left(a, n)"),
    ("now", "", "timestamptz", "pg_catalog.now()"),
    ("clock_timestamp", "", "timestamptz", "pg_catalog.clock_timestamp()"),
    ("date_trunc", "f text, i interval", "interval", "pg_catalog.date_trunc(f, i)"),
    ("lower", "a text", "text", "pg_catalog.lower(a)"),
    ("pg_notify", "c text, p text", "void", "pg_catalog.pg_notify(c, p)"),
]
# (operator, left type, right type, the built-in it stands in for)
PLANTED_OPERATORS = [
    ("=", "oid", "regclass", "pg_catalog.oideq($1, $2::oid)"),
    ("=", "text", "name", "pg_catalog.texteq($1, $2::text)"),
    ("||", "text", "interval", "pg_catalog.textcat($1, $2::text)"),
    ("<", "timestamptz", "timestamptz", "pg_catalog.timestamptz_lt($1, $2)"),
    ("-", "timestamptz", "interval", "pg_catalog.timestamptz_mi_interval($1, $2)"),
]


def plant(conn: psycopg.Connection, schema: str) -> None:
    """Every planted object records that it ran, then does what the built-in does."""
    for name, args, returns, call in PLANTED_FUNCTIONS:
        record = f"INSERT INTO public.planted_ran VALUES ('{schema}.{name}');"
        if returns.startswith("SETOF"):
            body = f"BEGIN {record} RETURN QUERY SELECT {call}; END"
        elif returns == "void":
            body = f"BEGIN {record} PERFORM {call}; END"
        else:
            body = f"BEGIN {record} RETURN {call}; END"
        conn.execute(
            f"CREATE FUNCTION {schema}.{name}({args}) RETURNS {returns}"
            f" LANGUAGE plpgsql AS $$ {body} $$"
        )
    for i, (op, left, right, call) in enumerate(PLANTED_OPERATORS):
        fn = f"{schema}.planted_op_{i}"
        returns = {"=": "boolean", "<": "boolean", "||": "text", "-": "timestamptz"}[op]
        conn.execute(
            f"CREATE FUNCTION {fn}({left}, {right}) RETURNS {returns} LANGUAGE plpgsql AS $$"
            f" BEGIN INSERT INTO public.planted_ran VALUES ('{schema}.{op}'); RETURN {call}; END $$"
        )
        conn.execute(
            f"CREATE OPERATOR {schema}.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = {fn})"
        )


@pytest.fixture
def cotenant(empty_db_url: str) -> Iterator[tuple[str, str]]:
    """A database where a role that owns the app's schema, and may create in public, planted code.

    Yields (superuser URL with ?schema=app, the co-tenant's name).
    """
    name = f"cotenant_{uuid.uuid4().hex[:8]}"
    url = with_query(empty_db_url, schema="app")
    with open_conn(empty_db_url) as conn:
        conn.execute(f'CREATE ROLE "{name}"')
        conn.execute(f'CREATE SCHEMA app AUTHORIZATION "{name}"')
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{name}"')
        conn.execute("CREATE TABLE public.planted_ran (what text)")
        conn.execute(f'GRANT INSERT ON public.planted_ran TO "{name}"')
        conn.execute(f'SET ROLE "{name}"')
        conn.execute(
            "CREATE TABLE app.runs (id text PRIMARY KEY, status text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz,"
            " completed_at timestamptz, error text, completed bigint, total bigint)"
        )
        conn.execute("RESET ROLE")
    assert run_cli("--database-url", url, "migrate", "--adopt", "runs").returncode == 0
    with open_conn(empty_db_url) as conn:
        conn.execute(f'SET ROLE "{name}"')
        plant(conn, "app")
        plant(conn, "public")
        conn.execute("RESET ROLE")
    yield url, name
    with open_conn(empty_db_url) as conn:
        conn.execute("DROP SCHEMA app CASCADE")
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')


def test_planted_overloads_never_run_as_the_superuser(cotenant):
    url, _ = cotenant
    with open_conn(url) as conn:
        # The caller's own path has both planted schemas first, as a careless psql session would.
        conn.execute("SET search_path = app, public, stuck_runs")
        conn.execute(
            "INSERT INTO app.runs (id, status, updated_at, completed, total) VALUES"
            " ('co-stuck', 'PROCESSING', now() - interval '1 hour', NULL, 7)"
        )
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="builtin-stuck")
        assert conn.execute("SELECT count(*) FROM public.planted_ran").fetchone()[0] == 0, (
            "the test's own setup must not trip a planted object"
        )
        calls = [
            "SELECT * FROM stuck_runs.active_runs",
            "SELECT * FROM stuck_runs.stuck_runs",
            "SELECT * FROM stuck_runs.stuck_runs_coverage_problems('app')",
            "SELECT * FROM stuck_runs.stuck_runs_grant_sql('nobody')",
            "SELECT stuck_runs.stuck_runs_sweep_sql(t) FROM stuck_runs.stuck_runs_tables AS t",
            "SELECT stuck_runs.stuck_runs_job_sql('5 minutes')",
            "SELECT * FROM stuck_runs.propose_runs_table_mapping('app.runs')",
            "SELECT * FROM stuck_runs.stuck_runs_index_ddl('app.runs')",
            "SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes', max_attempts => 0)",
            "SELECT * FROM stuck_runs.resume_run('builtin-stuck')",
            "SELECT * FROM stuck_runs.adopt_runs_table('app.runs', completed_column => NULL)",
            "SELECT stuck_runs.unadopt_runs_table('app.runs')",
        ]
        for call in calls:
            conn.execute(call).fetchall()
        errors = conn.execute("SELECT error FROM app.runs").fetchall()
        assert errors[0][0].startswith("Recovered as stuck by stuck-runs")
    for args in (
        ("recover", "--older-than", "1 second"),
        ("list",),
        ("migrate", "--adopt", "runs"),
    ):
        result = run_cli("--database-url", url, *args)
        assert result.returncode == 0, (args, result.stderr)
    with open_conn(url) as conn:
        ran = conn.execute("SELECT DISTINCT what FROM public.planted_ran ORDER BY 1").fetchall()
    assert ran == []


def test_adoption_needs_ownership_by_name_or_oid(db_url):
    intruder = f"intruder_{uuid.uuid4().hex[:8]}"
    with open_conn(db_url) as conn:
        conn.execute(
            "CREATE TABLE accounts (id text PRIMARY KEY, role text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL"
            " DEFAULT now(), api_key text)"
        )
        oid = conn.execute("SELECT 'accounts'::regclass::oid").fetchone()[0]
        conn.execute(f'CREATE ROLE "{intruder}"')
        conn.execute(f'GRANT USAGE ON SCHEMA stuck_runs TO "{intruder}"')
        conn.execute(f'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA stuck_runs TO "{intruder}"')
        conn.execute(f'GRANT INSERT, UPDATE ON stuck_runs.stuck_runs_tables TO "{intruder}"')
        conn.execute(f'SET ROLE "{intruder}"')
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be the owner"):
                conn.execute(
                    "SELECT stuck_runs.adopt_runs_table(%s::oid::regclass, status_column => 'role',"
                    " error_column => 'api_key', completed_at_column => NULL,"
                    " completed_column => NULL, total_column => NULL,"
                    " active_statuses => '{user}', failed_status => 'admin')",
                    (oid,),
                )
            # Writing the registry directly does not get around it.
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only the owner"):
                conn.execute(
                    "INSERT INTO stuck_runs.stuck_runs_tables (table_name, id_column,"
                    " status_column, created_at_column, updated_at_column, active_statuses,"
                    " failed_status) VALUES (%s::oid::regclass, 'id', 'role', 'created_at',"
                    " 'updated_at', '{user}', 'admin')",
                    (oid,),
                )
        finally:
            conn.execute("RESET ROLE")
            conn.execute(f'DROP OWNED BY "{intruder}"')
            conn.execute(f'DROP ROLE "{intruder}"')
        assert (
            conn.execute(
                "SELECT count(*) FROM stuck_runs.stuck_runs_tables WHERE NOT managed"
            ).fetchone()[0]
            == 0
        )


def test_migrate_refuses_a_schema_others_may_create_in(empty_db_url):
    """With --schema public, a role with CREATE there could plant overloads our functions find."""
    name = f"cotenant_{uuid.uuid4().hex[:8]}"
    with open_conn(empty_db_url) as conn:
        conn.execute(f'CREATE ROLE "{name}"')
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{name}"')
    try:
        refused = run_cli("--database-url", empty_db_url, "--schema", "public", "migrate")
        assert refused.returncode == 1, refused.stderr
        assert f"may create objects in schema 'public' ({name})" in refused.stderr
        assert "nothing was installed" in refused.stderr
        with open_conn(empty_db_url) as conn:
            assert (
                conn.execute("SELECT to_regclass('public._yoyo_migration')").fetchone()[0] is None
            )
            conn.execute(f'REVOKE CREATE ON SCHEMA public FROM "{name}"')
        installed = run_cli("--database-url", empty_db_url, "--schema", "public", "migrate")
        assert installed.returncode == 0 and "may create" not in installed.stderr
        with open_conn(empty_db_url) as conn:
            conn.execute(f'GRANT CREATE ON SCHEMA public TO "{name}"')
        warned = run_cli("--database-url", empty_db_url, "--schema", "public", "migrate")
        assert warned.returncode == 0, warned.stderr
        assert "stuck-runs: warning: roles other than the installing one" in warned.stderr
    finally:
        with open_conn(empty_db_url) as conn:
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, ""))


@pytest.fixture
def owned_db(server_url: str) -> Iterator[tuple[str, str]]:
    """A database owned by a plain LOGIN role, as an app role owns its database: (URL, role)."""
    role = f"app_owner_{uuid.uuid4().hex[:8]}"
    dbname = f"stuck_runs_owned_{uuid.uuid4().hex[:8]}"
    with open_conn(server_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'CREATE DATABASE "{dbname}" OWNER "{role}"')
    try:
        yield with_dbname(server_url, dbname), role
    finally:
        with open_conn(server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'DROP ROLE "{role}"')


def test_schema_public_installs_as_the_database_owner_and_is_refused_to_another_role(owned_db):
    """What the README's Permissions section says, case by case.

    Since PostgreSQL 15 `public` belongs to pg_database_owner: the database's owner
    may create in it. Installed by that owner, nobody else can plant code there,
    so `--schema public` works. Installed by another role (here a superuser), the
    owner could plant an overload that the installer's functions (and its pg_cron
    job) would run: refused, nothing installed.
    """
    url, owner = owned_db
    refused = run_cli("--database-url", url, "--schema", "public", "migrate")
    assert refused.returncode == 1, refused.stderr
    assert f"may create objects in schema 'public' ({owner})" in refused.stderr
    assert "nothing was installed" in refused.stderr
    with open_conn(url) as conn:
        assert conn.execute("SELECT to_regclass('public._yoyo_migration')").fetchone()[0] is None

    installed = run_cli("--database-url", as_user(url, owner), "--schema", "public", "migrate")
    assert installed.returncode == 0, installed.stderr
    assert "may create" not in installed.stderr
    with open_conn(as_user(url, owner)) as conn:
        assert conn.execute("SELECT count(*) FROM recover_stuck_runs('5 minutes')").fetchone() == (
            0,
        )
    # The default schema is stuck-runs' own: any role may install there.
    elsewhere = run_cli("--database-url", url, "migrate")
    assert elsewhere.returncode == 0, elsewhere.stderr
