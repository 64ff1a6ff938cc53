"""Installs upgraded from 0.1 are as safe as fresh ones (issue 25, threat model class 7).

0.1 installed into the URL's schema (public) and pinned its functions to
`pg_catalog, public, pg_temp`; before PostgreSQL 15 every role could create in
public, and pg_upgrade keeps that grant. 0.1 also let any role that could write
the registry point recovery at any table. After `stuck-runs migrate` (in place,
or moved with --relocate), none of that may reach a superuser's recovery.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from runner.connection import parse_database_url
from runner.migrations import read_history, yoyo_backend

from .helpers import insert_run, run_cli
from .test_planted_objects import plant, planted_calls

RELEASES = {
    "0.1 (0001)": ("0001_core",),
    "0.1 (0001, 0002)": ("0001_core", "0002_retries"),
}


def build(url: str, migrations: tuple[str, ...]) -> None:
    target = parse_database_url(url).in_schema("public")
    with yoyo_backend(target) as backend:
        old = read_history().filter(lambda m: m.id in migrations)
        backend.apply_migrations(backend.to_apply(old))


@pytest.mark.parametrize("relocate", [False, True], ids=["in place", "relocated"])
@pytest.mark.parametrize("release", sorted(RELEASES))
def test_an_upgraded_install_runs_no_planted_code_and_drops_unproven_entries(
    release, relocate, empty_db_url
):
    build(empty_db_url, RELEASES[release])
    cotenant = f"cotenant_{uuid.uuid4().hex[:8]}"
    conninfo = parse_database_url(empty_db_url).conninfo
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET search_path = public")
        conn.execute(f'CREATE ROLE "{cotenant}"')
        # The pre-15 default, which pg_upgrade keeps.
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{cotenant}"')
        conn.execute("CREATE SEQUENCE public.planted_calls")
        conn.execute("GRANT USAGE, UPDATE, SELECT ON public.planted_calls TO PUBLIC")
        # A table the co-tenant does not own, which 0.1 let it register.
        conn.execute(
            "CREATE TABLE public.accounts (id text PRIMARY KEY, role text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL)"
        )
        conn.execute(
            "INSERT INTO public.accounts VALUES ('alice', 'admin', now() - interval '1 day',"
            " now() - interval '1 day')"
        )
        conn.execute(f'GRANT INSERT ON public.stuck_runs_tables TO "{cotenant}"')
        conn.execute(f'SET ROLE "{cotenant}"')
        conn.execute(
            "INSERT INTO public.stuck_runs_tables (table_name, id_column, status_column,"
            " created_at_column, updated_at_column, active_statuses, failed_status, adopted_at)"
            " VALUES ('public.accounts', 'id', 'role', 'created_at', 'updated_at', '{admin}',"
            " 'user', now() - interval '1 year')"
        )
        conn.execute("RESET ROLE")
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="before-upgrade")

    args = ("migrate", "--relocate") if relocate else ("migrate",)
    upgraded = run_cli("--database-url", empty_db_url, *args)
    assert upgraded.returncode == 0, upgraded.stderr
    schema = "stuck_runs" if relocate else "public"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert plant(conn, cotenant, "public", schema) > 500
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute(f"SET search_path = public, {schema}")
        recovered = conn.execute(
            f"SELECT run_id FROM {schema}.recover_stuck_runs('5 minutes'::interval,"
            " NULL::integer, NULL::integer)"
        ).fetchall()
        conn.execute(f"SELECT * FROM {schema}.active_runs").fetchall()
        assert recovered == [("before-upgrade",)]
        assert planted_calls(conn) == 0
        # The entry nobody can vouch for is not swept: alice is still an admin.
        assert conn.execute("SELECT role FROM public.accounts").fetchone() == ("admin",)
        problems = conn.execute(
            f"SELECT problem FROM {schema}.stuck_runs_coverage_problems('public'::text)"
        ).fetchall()
        assert any("registered before stuck-runs 0.3" in p for (p,) in problems), problems
        # The built-in table was created by the installer: it stays covered.
        config = conn.execute(
            "SELECT DISTINCT (SELECT array_agg(c) FROM unnest(proconfig) AS c"
            " WHERE c LIKE 'search_path=%%')::text FROM pg_proc WHERE pronamespace = %s::regnamespace"
            # drain_stuck_runs, a procedure, cannot pin it (test_drain.py plants against it);
            # sweep indexes call stuck_runs_label at every write: nothing pinned; nor the
            # generated fast path, which runs under recover_stuck_runs()'s pinned path.
            " AND proname LIKE '%%stuck_runs%%' AND prokind <> 'p'"
            " AND proname NOT IN ('stuck_runs_label', '_stuck_runs_quiet')",
            (schema,),
        ).fetchall()
        assert config == [(f'{{"search_path=pg_catalog, {schema}, pg_temp"}}',)]
        assert conn.execute(
            "SELECT DISTINCT proconfig FROM pg_proc WHERE pronamespace = %s::regnamespace"
            " AND proname = 'stuck_runs_label'",
            (schema,),
        ).fetchall() == [(None,)]
        # Moved or not, the procedure finds its install through its `home` default.
        # It ends in an ERROR naming the entry it may not sweep (pg_cron records it).
        with pytest.raises(
            psycopg.errors.ObjectNotInPrerequisiteState, match=r"before stuck-runs 0\.3"
        ):
            conn.execute(f"CALL {schema}.drain_stuck_runs()")
        assert planted_calls(conn) == 0
    listed = run_cli("--database-url", empty_db_url, "recover", "--older-than", "1 second")
    assert "registered before stuck-runs 0.3" in listed.stderr
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert planted_calls(conn) == 0
        conn.execute("DROP SEQUENCE public.planted_calls")
        conn.execute("DROP TABLE public.accounts")
        conn.execute(f'DROP OWNED BY "{cotenant}"')
        conn.execute(f'DROP ROLE "{cotenant}"')
