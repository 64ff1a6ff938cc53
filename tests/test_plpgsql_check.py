"""Static checking of every PL/pgSQL function the migrations install (plpgsql_check).

PL/pgSQL is only compiled when a function runs, and a branch no test reaches
can hide a wrong column, a bad cast or a variable that is never read.
plpgsql_check reads every statement of every function. It runs on a private
PostgreSQL 15 cluster because the embedded server lacks the extension
(apt postgresql-15-plpgsql-check); `plpgsql_check_function_tb` needs no preload.

Checked: errors, the default warnings, extra warnings (unused or never-read
variables, ...) and performance warnings (implicit casts that defeat an index,
volatility). Not enforced: security warnings, which flag every EXECUTE of a
text variable even when it was built with format('%I'): they cannot tell a
quoted identifier from user input. Also ignored: findings whose detail says
plpgsql_check cannot see through dynamic SQL (OUT columns "maybe unmodified"
by RETURN QUERY EXECUTE, volatility of an EXECUTEd UPDATE); the dynamic SQL
itself is exercised by the behaviour tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from .cluster import Cluster, system_extension_available
from .conftest import migrate
from .helpers import open_conn

pytestmark = pytest.mark.skipif(
    not system_extension_available("plpgsql_check"),
    reason="needs PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin with plpgsql_check "
    "(apt postgresql-15 postgresql-15-plpgsql-check)",
)

# The extension lives in a schema of its own, so it never mixes with ours.
CHECK_SCHEMA = "plpgsql_check"


@dataclass(frozen=True)
class Target:
    function: str  # regprocedure text, e.g. recover_stuck_runs(interval,integer)
    relation: str | None  # the trigger's table, for trigger functions
    returns_trigger: bool


@pytest.fixture(scope="module")
def checked_db() -> Iterator[str]:
    """A freshly migrated database with plpgsql_check installed next to it."""
    cluster = Cluster()
    try:
        cluster.start()
        with open_conn(cluster.url()) as conn:
            conn.execute("CREATE DATABASE app")
        url = cluster.url("app")
        migrate(url)
        with open_conn(url) as conn:
            conn.execute(f"CREATE SCHEMA {CHECK_SCHEMA}")
            conn.execute(f"CREATE EXTENSION plpgsql_check SCHEMA {CHECK_SCHEMA}")
        yield url
    finally:
        cluster.destroy()


def plpgsql_targets(conn: psycopg.Connection, schema: str = "stuck_runs") -> list[Target]:
    """Every PL/pgSQL function of `schema` (not an extension's), once per trigger using it."""
    rows = conn.execute(
        """
        SELECT p.oid::regprocedure::text,
               t.tgrelid::regclass::text,
               p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype
        FROM pg_catalog.pg_proc AS p
        JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
        LEFT JOIN pg_catalog.pg_trigger AS t ON t.tgfoid = p.oid AND NOT t.tgisinternal
        WHERE l.lanname = 'plpgsql'
          AND p.pronamespace = pg_catalog.to_regnamespace(%s)
          AND NOT EXISTS (
              SELECT FROM pg_catalog.pg_depend AS d
              WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                AND d.objid = p.oid AND d.deptype = 'e')
        ORDER BY 1, 2
        """,
        (schema,),
    ).fetchall()
    return [Target(*row) for row in rows]


def check(conn: psycopg.Connection, target: Target) -> list[str]:
    """plpgsql_check's findings for one function, one readable line each."""
    rows = conn.execute(
        f"""
        SELECT c.level, c.lineno, c.statement, c.sqlstate, c.message, c.detail, c.hint, c.query,
               c.context
        FROM {CHECK_SCHEMA}.plpgsql_check_function_tb(
            %(fn)s::regprocedure,
            coalesce(%(rel)s::regclass, 0::oid::regclass),
            fatal_errors => false,
            other_warnings => true,
            extra_warnings => true,
            performance_warnings => true,
            security_warnings => false) AS c
        WHERE c.detail IS NULL OR c.detail NOT LIKE '%%dynamic SQL%%'
        """,
        {"fn": target.function, "rel": target.relation},
    ).fetchall()
    where = target.function + (f" on {target.relation}" if target.relation else "")
    return [
        f"{where}, line {lineno} ({statement}): {level} {sqlstate}: {message}"
        + (f"; {detail}" if detail else "")
        + (f"; hint: {hint}" if hint else "")
        + (f"; query: {' '.join(query.split())}" if query else "")
        + (f" ({context})" if context else "")
        for level, lineno, statement, sqlstate, message, detail, hint, query, context in rows
    ]


def test_every_plpgsql_function_passes_plpgsql_check(checked_db):
    with open_conn(checked_db) as conn:
        targets = plpgsql_targets(conn)
        names = {t.function.split("(")[0] for t in targets}
        # Not vacuous: the core functions are among those checked.
        assert {"recover_stuck_runs", "qualification_runs_touch"} <= names, names
        findings = [line for target in targets for line in check(conn, target)]
    # The generated fast path takes the sweep statement's positional parameters
    # ($1 the cutoff, $5 the lives), and so three it has no use for.
    findings = [
        line
        for line in findings
        if not (line.startswith("_stuck_runs_quiet(") and "unused parameter" in line)
    ]
    assert findings == [], "plpgsql_check found:\n" + "\n".join(findings)


def test_trigger_functions_are_checked_against_their_table(checked_db):
    """Without its relation plpgsql_check cannot resolve NEW/OLD: every trigger function has one."""
    with open_conn(checked_db) as conn:
        triggers = [t for t in plpgsql_targets(conn) if t.returns_trigger]
    assert triggers, "expected at least qualification_runs_touch()"
    assert all(t.relation for t in triggers), triggers


def test_the_check_catches_a_broken_function(checked_db):
    """The harness itself works: a wrong column in a branch no test would run is reported."""
    with open_conn(checked_db) as conn:
        conn.execute("CREATE SCHEMA scratch")
        try:
            conn.execute(
                """
                CREATE FUNCTION scratch.broken(flag boolean) RETURNS integer
                LANGUAGE plpgsql AS $$
                DECLARE
                    unused integer;
                BEGIN
                    IF flag THEN
                        RETURN (SELECT count(no_such_column) FROM public.qualification_runs);
                    END IF;
                    RETURN 0;
                END
                $$
                """
            )
            findings = [line for t in plpgsql_targets(conn, "scratch") for line in check(conn, t)]
        finally:
            conn.execute("DROP SCHEMA scratch CASCADE")
    assert any("no_such_column" in line and "error" in line for line in findings), findings
    assert any('unused variable "unused"' in line for line in findings), findings
