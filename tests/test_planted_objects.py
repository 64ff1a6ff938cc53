"""Code chosen by name or type: planted overloads never run (issue 25, threat model class 1).

A role that may create objects in a schema on the functions' path (public, in
the `--schema public` layout, once someone grants CREATE there after the
install; the application's schema, always) plants functions, aggregates and
operators that match stuck-runs' calls better than the ones it means. Which
ones to plant is derived from stuck-runs' own SQL: every function name and
operator its function bodies and views use, with the argument types that
PostgreSQL's own versions take, polymorphic and coercible ones replaced by
concrete types. Each planted object bumps a sequence, which a rollback
cannot undo, so even a call whose statement later fails is counted.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from .helpers import open_conn, run_cli, with_query

# What an argument of a built-in may be given instead of its declared type:
# polymorphic types by anything, and types our code reaches by implicit coercion.
CONCRETE = {
    "anyelement": ["text", "integer", "regclass", "interval", "timestamptz", "boolean", "jsonb"],
    "anynonarray": ["text", "integer", "regclass", "interval", "timestamptz", "boolean", "jsonb"],
    "anycompatible": ["text", "integer", "regclass", "interval"],
    "anycompatiblenonarray": ["text", "integer", "regclass", "interval"],
    '"any"': ["text", "integer", "regclass", "interval", "timestamptz", "regrole"],
    "anyarray": ["text[]", "integer[]", "regclass[]"],
    "anycompatiblearray": ["text[]", "integer[]"],
    "anyenum": ["text"],
    "oid": ["oid", "regclass", "regtype", "regrole", "regnamespace", "regprocedure"],
    "text": ["text", "name", "character varying", "regclass"],
    "name": ["name", "text"],
    "integer": ["integer", "smallint", "bigint"],
    "timestamp with time zone": ["timestamp with time zone", "timestamp without time zone"],
}
SKIP_TYPES = {
    "internal",
    "cstring",
    "trigger",
    "record",
    "void",
    "anyrange",
    "anymultirange",
    "anycompatiblerange",
    "anycompatiblemultirange",
    "event_trigger",
    "language_handler",
    "tsm_handler",
    "index_am_handler",
    "table_am_handler",
    "fdw_handler",
    "unknown",
}
OPERAND_TYPES = [
    "oid",
    "regclass",
    "regtype",
    "regrole",
    "regnamespace",
    "name",
    "text",
    "character varying",
    "interval",
    "timestamp with time zone",
    "timestamp without time zone",
    "integer",
    "smallint",
    "bigint",
    "boolean",
    "jsonb",
    "text[]",
    "tid",
    'app."RunStatus"',
]
CALL = re.compile(r"(?<![\w\"$%.])(?:pg_catalog\.)?([a-z_][a-z0-9_]*)\s*\(")
OPERATOR = re.compile(
    r"OPERATOR\(pg_catalog\.([^)\s]+)\)|\s(=|<>|!=|<=|>=|<|>|\|\||->>|->|-|\+|~~)\s"
)


def stuck_runs_sql(conn: psycopg.Connection, schema: str) -> str:
    """Every function body and view of the install: the SQL that runs, and the SQL it builds."""
    rows = conn.execute(
        "SELECT p.prosrc FROM pg_proc AS p WHERE p.pronamespace = %s::regnamespace"
        " UNION ALL SELECT pg_get_viewdef(c.oid) FROM pg_class AS c"
        " WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'v'",
        (schema, schema),
    ).fetchall()
    return "\n".join(r[0] for r in rows)


def planted_ddl(conn: psycopg.Connection, target: str, sql: str) -> list[str]:
    """CREATE statements for overloads in `target` of every built-in and operator `sql` uses."""
    names = set(CALL.findall(sql))
    builtins = conn.execute(
        "SELECT p.proname, p.prokind, p.proretset, format_type(p.prorettype, NULL),"
        " array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) AS t),"
        " p.provariadic <> 0"
        " FROM pg_proc AS p WHERE p.pronamespace = 'pg_catalog'::regnamespace"
        " AND p.proname = ANY(%s) AND p.prokind IN ('f', 'a') AND p.pronargs <= 3",
        (sorted(names),),
    ).fetchall()
    ddl: list[str] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for name, kind, retset, rettype, argtypes, variadic in builtins:
        shapes = [list(argtypes)]
        if variadic:
            base = list(argtypes[:-1])
            shapes = [
                base + list(extra)
                for n in range(0, 3)
                for extra in itertools.product(CONCRETE['"any"'][:4], repeat=n)
            ]
        for shape in shapes:
            if any(a in SKIP_TYPES for a in shape) or rettype in SKIP_TYPES - {"void"}:
                continue
            for args in itertools.islice(
                itertools.product(*[CONCRETE.get(a, [a]) for a in shape]), 40
            ):
                if (name, args) in seen:
                    continue
                seen.add((name, args))
                ret = "text" if rettype.startswith("any") or rettype == '"any"' else rettype
                params = ", ".join(args)
                if kind == "a":
                    if not args:
                        continue
                    sfunc = f"{target}.planted_sfunc_{len(ddl)}"
                    ddl.append(
                        f"CREATE FUNCTION {sfunc}(text, {params}) RETURNS text LANGUAGE plpgsql"
                        " AS $$ BEGIN PERFORM pg_catalog.nextval('public.planted_calls');"
                        " RETURN NULL; END $$"
                    )
                    ddl.append(
                        f"CREATE AGGREGATE {target}.{name}({params}) (SFUNC = {sfunc}, STYPE = text)"
                    )
                    continue
                returns = f"SETOF {ret}" if retset else ret
                body = "RETURN;" if retset else ("RETURN;" if ret == "void" else "RETURN NULL;")
                ddl.append(
                    f"CREATE FUNCTION {target}.{name}({params}) RETURNS {returns} LANGUAGE plpgsql"
                    f" AS $$ BEGIN PERFORM pg_catalog.nextval('public.planted_calls'); {body} END $$"
                )
    symbols = {a or b for a, b in OPERATOR.findall(sql)}
    exact = {
        (op, left, right)
        for op, left, right in conn.execute(
            "SELECT oprname, format_type(oprleft, NULL), format_type(oprright, NULL)"
            " FROM pg_operator WHERE oprnamespace = 'pg_catalog'::regnamespace"
        ).fetchall()
    }
    for i, (op, left, right) in enumerate(
        itertools.product(sorted(symbols), OPERAND_TYPES, OPERAND_TYPES)
    ):
        if (op, left.replace('app."RunStatus"', "x"), right) in exact:
            continue  # pg_catalog's exact one comes first on every path
        fn = f"{target}.planted_op_{i}"
        ddl.append(
            f"CREATE FUNCTION {fn}({left}, {right}) RETURNS boolean LANGUAGE plpgsql AS $$"
            " BEGIN PERFORM pg_catalog.nextval('public.planted_calls'); RETURN NULL; END $$"
        )
        ddl.append(
            f"CREATE OPERATOR {target}.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = {fn})"
        )
    return ddl


def plant(conn: psycopg.Connection, role: str, target: str, install_schema: str) -> int:
    conn.execute("SET search_path = pg_catalog")  # the test's own queries meet no plant
    ddl = planted_ddl(conn, target, stuck_runs_sql(conn, install_schema))
    conn.execute(f'SET ROLE "{role}"')
    conn.execute(
        "CREATE FUNCTION pg_temp.plant_all(statements text[]) RETURNS integer LANGUAGE plpgsql AS $$"
        " DECLARE s text; made integer := 0; BEGIN FOREACH s IN ARRAY statements LOOP"
        " BEGIN EXECUTE s; made := made + 1; EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP;"
        " RETURN made; END $$"
    )
    made = conn.execute("SELECT pg_temp.plant_all(%s)", (ddl,)).fetchone()[0]
    conn.execute("DROP FUNCTION pg_temp.plant_all(text[])")
    conn.execute("RESET ROLE")
    return made


def planted_calls(conn: psycopg.Connection) -> int:
    conn.execute("SET search_path = pg_catalog")
    last, called = conn.execute("SELECT last_value, is_called FROM public.planted_calls").fetchone()
    return last if called else 0


@pytest.fixture
def cotenant(empty_db_url: str) -> Iterator[str]:
    name = f"cotenant_{uuid.uuid4().hex[:8]}"
    with open_conn(empty_db_url) as conn:
        conn.execute(f'CREATE ROLE "{name}"')
        conn.execute("CREATE SEQUENCE public.planted_calls")
        conn.execute("GRANT USAGE, UPDATE, SELECT ON public.planted_calls TO PUBLIC")
    yield name
    with open_conn(empty_db_url) as conn:
        conn.execute("DROP SCHEMA IF EXISTS app CASCADE")
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')


@pytest.mark.parametrize("layout", ["stuck_runs", "public"])
def test_planted_overloads_never_run_in_either_layout(layout, empty_db_url, cotenant):
    url = with_query(empty_db_url, schema="app")
    schema_args = ("--schema", layout)
    with open_conn(empty_db_url) as conn:
        conn.execute(f'CREATE SCHEMA app AUTHORIZATION "{cotenant}"')
        conn.execute(f'SET ROLE "{cotenant}"')
        conn.execute(
            "CREATE TYPE app.\"RunStatus\" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')"
        )
        conn.execute(
            'CREATE TABLE app.runs (id text PRIMARY KEY, status app."RunStatus" NOT NULL,'
            " created_at timestamp NOT NULL DEFAULT now(), updated_at timestamp,"
            " completed_at timestamp, error text, completed bigint, total bigint,"
            " attempts integer NOT NULL DEFAULT 0)"
        )
        conn.execute("RESET ROLE")
    installed = run_cli("--database-url", url, *schema_args, "migrate", "--adopt", "runs")
    assert installed.returncode == 0, installed.stderr
    with open_conn(empty_db_url) as conn:
        # After the install: the pre-PostgreSQL 15 default, which pg_upgrade keeps.
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{cotenant}"')
        made = plant(conn, cotenant, "public", layout) + plant(conn, cotenant, "app", layout)
        assert made > 500, made
        # Overloads of stuck-runs' own entry point beside it, which an untyped call
        # site would pick or find ambiguous: the job's and the runner's calls are typed.
        conn.execute(f'SET ROLE "{cotenant}"')
        for args in ("older_than text", "", "max_runs integer, max_attempts integer"):
            conn.execute(
                f"CREATE FUNCTION public.recover_stuck_runs({args}) RETURNS SETOF text"
                " LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.nextval('public.planted_calls');"
                " END $$"
            )
        # And of the job's procedure: the exact match of a call that left `home` out.
        for args in ("interval, integer, interval, integer", "text", ""):
            conn.execute(
                f"CREATE PROCEDURE public.drain_stuck_runs({args})"
                " LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.nextval('public.planted_calls');"
                " END $$"
            )
        conn.execute("RESET ROLE")
        job = conn.execute(f"SELECT {layout}.stuck_runs_job_sql()").fetchone()[0]
    q = f"{layout}." if layout != "public" else ""
    with open_conn(url) as conn:
        # The caller's own path has the planted schemas first, as a careless psql session's would.
        conn.execute(f"SET search_path = app, public, {layout}")
        conn.execute(
            "INSERT INTO app.runs (id, status, updated_at, completed, total) VALUES"
            " ('co-stuck', 'PROCESSING', (now() - interval '1 hour') AT TIME ZONE 'UTC', NULL, 7)"
        )
        conn.execute(
            f"INSERT INTO {layout}.qualification_runs (id, status, updated_at, created_at)"
            " VALUES ('builtin-stuck', 'PROCESSING', now() - interval '1 hour', now() - interval '1 hour')"
        )
        before = planted_calls(conn)
        assert before == 0, "the test's own setup must not trip a planted object"
        # Calls as a user writes them, fully typed: how a call site itself resolves is the
        # caller's (README, Permissions); what runs inside is stuck-runs'.
        for call in (
            f"SELECT * FROM {layout}.active_runs",
            f"SELECT * FROM {layout}.stuck_runs",
            f"SELECT * FROM {layout}.stuck_runs_coverage_problems('app'::text)",
            f"SELECT * FROM {layout}.stuck_runs_grant_sql('nobody'::text)",
            f"SELECT {layout}.stuck_runs_sweep_sql(t) FROM {layout}.stuck_runs_tables AS t",
            f"SELECT {layout}.stuck_runs_job_sql('5 minutes'::text)",
            f"SELECT * FROM {layout}.propose_runs_table_mapping('app.runs'::regclass)",
            f"SELECT * FROM {layout}.stuck_runs_index_ddl('app.runs'::regclass)",
            f"SELECT * FROM {layout}.recover_stuck_runs('5 minutes'::interval, NULL::integer, 0)",
            f"SELECT * FROM {layout}.resume_run('builtin-stuck'::text, NULL::regclass)",
            f"SELECT * FROM {layout}.resume_run('co-stuck'::text, NULL::regclass)",
            f"SELECT * FROM {layout}.adopt_runs_table('app.runs'::regclass,"
            " completed_column => NULL::text, attempts_column => 'attempts'::text)",
            f"SELECT {layout}.unadopt_runs_table('app.runs'::regclass, false)",
            job,
        ):
            cur = conn.execute(call)
            if cur.description is not None:  # the job's CALL returns no rows
                cur.fetchall()
    del q
    for args in (
        ("migrate", "--adopt", "runs"),
        ("recover", "--older-than", "1 second"),
        ("recover", "--older-than", "1 second", "--batch-size", "5", "--max-attempts", "3"),
        ("list",),
        ("list", "--json"),
        ("resume", "co-stuck"),
    ):
        result = run_cli("--database-url", url, *schema_args, *args)
        assert "Traceback" not in result.stderr, (args, result.stderr)
    with open_conn(url) as conn:
        assert planted_calls(conn) == 0
        # And recovery did its work in spite of them.
        assert (
            conn.execute(
                f"SELECT count(*) FROM {layout}.run_recoveries WHERE run_id IN ('co-stuck', 'builtin-stuck')"
            ).fetchone()[0]
            >= 2
        )
