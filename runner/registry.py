"""The registry of runs tables, from the runner's side: roles, proposals, adoption, indexes.

Shared by `adopt` (runner/adoption.py) and `migrate --adopt` (runner/install.py),
which never import each other. The mapping is validated and stored by
adopt_runs_table() in SQL, the proposal comes from propose_runs_table_mapping(),
the roles from stuck_runs_roles; this module only calls them and runs the index
statements SQL hands back (CONCURRENTLY needs autocommit). Table names resolve
in the application's schema (Prisma's ?schema=).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from .connection import Target, first_line
from .context import (
    BadOptionValue,
    note,
    option_values,
    warn,
)


@dataclass(frozen=True)
class Role:
    """A row of stuck_runs_roles: the column roles live in SQL, not here."""

    name: str
    parameter: str  # adopt_runs_table()'s argument and the registry's column
    required: bool
    default_column: str | None


def roles(conn: psycopg.Connection) -> dict[str, Role]:
    rows = conn.execute(
        "SELECT role, parameter, required, default_column FROM stuck_runs_roles ORDER BY position"
    ).fetchall()
    return {row[0]: Role(*row) for row in rows}


def check_roles(given: dict[str, str | None], known: dict[str, Role]) -> None:
    unknown = [role for role in given if role not in known]
    if unknown:
        raise BadOptionValue(
            "--column", f"unknown role {unknown[0]!r}: ROLE is one of {', '.join(known)}"
        )


def column_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--column ROLE=COLUMN and --time-zone, shared by `adopt` and `migrate --adopt`."""
    func = click.option(
        "--time-zone",
        metavar="ZONE",
        help="The zone the application writes its timestamp-without-time-zone columns in "
        "[UTC, as Prisma does]. Ignored for timestamptz columns.",
    )(func)
    return click.option(
        "--column",
        "columns",
        multiple=True,
        metavar="ROLE=COLUMN",
        callback=_parse_columns,
        help="Which column plays ROLE (id, status, created_at, updated_at, completed_at, error, "
        "completed, total, attempts: the rows of stuck_runs_roles); ROLE= marks it absent. "
        "Unset roles are proposed by name.",
    )(func)


def _parse_columns(
    ctx: click.Context, param: click.Parameter, columns: tuple[str, ...]
) -> dict[str, str | None]:
    mapping: dict[str, str | None] = {}
    for item in columns:
        role, sep, column = item.partition("=")
        if not sep or not role:
            raise click.BadParameter(f"{item!r}: expected ROLE=COLUMN")
        mapping[role] = column or None
    return mapping


def resolve(conn: psycopg.Connection, target: Target, table: str) -> str:
    """The table as regclass prints it (from stuck-runs' schema), or a usage error."""
    with option_values("--table"), conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT _stuck_runs_resolve_table(%s, %s)::text", (table, target.app_schema)
        ).fetchone()
    if row is None or row[0] is None:
        raise BadOptionValue(
            "--table", f"there is no table {table!r} in schema {target.app_schema!r}"
        )
    return row[0]


def propose(conn: psycopg.Connection, table: str, known: dict[str, Role]) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT role, column_name FROM propose_runs_table_mapping(%s::regclass)", (table,)
    ).fetchall()
    by_param = {row[0]: row[1] for row in rows}
    return {name: by_param.get(role.parameter) for name, role in known.items()}


def adopt_command(
    table: str, mapping: dict[str, str | None], known: dict[str, Role], *, migrate: bool = False
) -> str:
    """The exact command line that adopts `table` with `mapping`, shell-quoted."""
    if migrate:
        parts = ["stuck-runs", "migrate", "--adopt", table]
    else:
        parts = ["stuck-runs", "adopt", "--table", table]
    for role, column in mapping.items():
        if column is not None:
            parts += ["--column", f"{role}={column}"]
        elif known[role].default_column is not None:  # absent must be said
            parts += ["--column", f"{role}="]
    return shlex.join(parts if migrate else [*parts, "--yes"])


# The registry's entry for a table: its own, else the stale one recorded under
# its schema and name (the application dropped and re-created it, e.g. prisma
# migrate reset), so that re-adopting it keeps what was set for it. `current`:
# the entry is the table's own, knows it by its name of today (a renamed table
# is adopted again, to record its new name) and is in force (an entry nobody
# vouches for, made before 0.3, is adopted again to record who vouches).
_ENTRY = """
SELECT t.*,
       t.table_name OPERATOR(pg_catalog.=) c.oid
       AND (t.schema_name, t.relation_name) IS NOT DISTINCT FROM (n.nspname::text, c.relname::text)
       AND EXISTS (SELECT FROM _stuck_runs_covered AS v
                   WHERE v.table_name OPERATOR(pg_catalog.=) t.table_name)
         AS current
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
JOIN stuck_runs_tables AS t
  ON t.table_name OPERATOR(pg_catalog.=) c.oid
  OR (t.schema_name, t.relation_name) = (n.nspname::text, c.relname::text)
     AND NOT EXISTS (SELECT FROM pg_catalog.pg_class AS o
                     WHERE o.oid OPERATOR(pg_catalog.=) t.table_name)
WHERE c.oid OPERATOR(pg_catalog.=) %s::regclass
ORDER BY t.table_name OPERATOR(pg_catalog.=) c.oid DESC
LIMIT 1
"""

# adopt_runs_table()'s named parameters, from the catalog: whatever a later
# migration adds is kept by re-adoption like the rest.
_PARAMETERS = """
SELECT DISTINCT a.name FROM pg_catalog.pg_proc AS p,
     LATERAL pg_catalog.unnest(p.proargnames) AS a(name)
WHERE p.proname = 'adopt_runs_table'
  AND p.pronamespace = (SELECT n.oid FROM pg_catalog.pg_namespace AS n
                        WHERE n.nspname = pg_catalog.current_schema())
"""

_COLUMNS = """
SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid OPERATOR(pg_catalog.=) %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
"""


@dataclass
class Plan:
    """What adoption will pass to adopt_runs_table(), and where each role's column came from."""

    arguments: dict[str, Any]  # adopt_runs_table()'s named arguments, table_name aside
    mapping: dict[str, str | None]  # role -> column
    origins: dict[str, str]  # role -> given, kept or proposed
    entry: dict[str, Any] | None  # the registry's entry it replaces, if any


def plan_adoption(
    conn: psycopg.Connection,
    table: str,
    known: dict[str, Role],
    columns: dict[str, str | None],
    options: dict[str, Any],
) -> Plan:
    """Adoption changes only what it is told.

    Each argument is what the command was told (`columns` by role, `options`
    by parameter: statuses, time zone), else what the registry already holds
    for the table (a column only while the table still has it), else, for
    columns, the proposal by name; parameters nobody set take adopt_runs_table()'s
    defaults. So the start-up line never undoes an earlier `adopt --time-zone`,
    custom statuses or an attempts column set through SQL.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        entry = cur.execute(_ENTRY, (table,)).fetchone()
    proposal = propose(conn, table, known)
    has = {row[0] for row in conn.execute(_COLUMNS, (table,)).fetchall()}
    arguments: dict[str, Any] = {}
    mapping: dict[str, str | None] = {}
    origins: dict[str, str] = {}
    for role, spec in known.items():
        kept = entry.get(spec.parameter) if entry else None
        if role in columns:
            mapping[role], origins[role] = columns[role], "given"
        elif entry is not None and (kept is None or kept in has):
            mapping[role], origins[role] = kept, "kept"
        else:
            mapping[role], origins[role] = proposal.get(role), "proposed"
        arguments[spec.parameter] = mapping[role]
    if entry is not None:
        parameters = {row[0] for row in conn.execute(_PARAMETERS).fetchall()}
        for name in sorted(parameters - set(arguments) - {"table_name"}):
            if name in entry:
                arguments[name] = entry[name]
    arguments.update({name: value for name, value in options.items() if value is not None})
    return Plan(arguments, mapping, origins, entry)


def ensure_adopted(conn: psycopg.Connection, table: str, plan: Plan) -> bool:
    """Adopt `table` as planned unless its entry already says so; True when something changed.

    Every argument travels as a parameter; the argument names are quoted identifiers.
    """
    entry = plan.entry
    if (
        entry is not None
        and entry["current"]
        and all(entry.get(key) == value for key, value in plan.arguments.items())
    ):
        return False
    arguments = sql.SQL(", ").join(
        [
            sql.SQL("table_name => {}::regclass").format(sql.Placeholder("table_name")),
            *(
                sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
                for name in plan.arguments
            ),
        ]
    )
    with option_values("--column"), conn.transaction():
        conn.execute(
            sql.SQL("SELECT adopt_runs_table({})").format(arguments),
            {"table_name": table, **plan.arguments},
        )
    return True


# adopt_runs_table()'s NOTICE that the table still lacks its sweep index and how
# to build it: `adopt` and `migrate --adopt` build it themselves, so they drop it.
INDEX_NOTICE = "has no index for sweeps yet"


def build_missing_indexes(
    conn: psycopg.Connection,
    echo: Callable[[str], None],
    table: str | None = None,
    *,
    timeout: float,
) -> int:
    """Run the index statements SQL says adopted tables still need; each within `timeout`.

    `conn` must be in autocommit mode: CREATE INDEX CONCURRENTLY refuses to run
    in a transaction. It waits for every older transaction that wrote to the
    table, so it gets a bound of its own: a build cut short warns and leaves
    an invalid index, which the next migrate drops and builds again. Sweeps
    work without the index, only slower; CONCURRENTLY keeps the application's
    writes flowing meanwhile.
    """
    rows = conn.execute(
        "SELECT t.table_name::text, d.ddl FROM _stuck_runs_covered AS t"
        " CROSS JOIN LATERAL stuck_runs_index_ddl(t.table_name) AS d(ddl)"
        " WHERE %s::regclass IS NULL OR t.table_name OPERATOR(pg_catalog.=) %s::regclass",
        (table, table),
    ).fetchall()
    previous = conn.execute("SELECT pg_catalog.current_setting('statement_timeout')").fetchone()
    failed: set[str] = set()
    for table_name, ddl in rows:
        if table_name in failed:
            # The statements of a table build on each other: after one fails,
            # the index in use stays, and the next migrate starts over.
            continue
        echo(f"{table_name}: {ddl}")
        try:
            conn.execute(
                "SELECT pg_catalog.set_config('statement_timeout', %s, false)",
                (f"{max(1, int(timeout * 1000))}ms",),
            )
            conn.execute(ddl)
        except psycopg.errors.QueryCanceled:
            failed.add(table_name)
            done = "built" if ddl.startswith("CREATE") else "replaced"
            warn(
                f"the sweep index of {table_name} was not {done}"
                f" within {timeout:g} s (an older open transaction on the table holds CONCURRENTLY "
                "back); sweeps work without it, only slower, and the next `stuck-runs migrate` or "
                "`start` takes it up again"
            )
        except psycopg.Error as exc:
            # One table's index never fails the whole migrate: sweeps still
            # work without it, only slower, and the next migrate tries again.
            failed.add(table_name)
            warn(f"could not build the sweep index of {table_name}: {first_line(exc)}")
    if rows and previous is not None:
        conn.execute("SELECT pg_catalog.set_config('statement_timeout', %s, false)", previous)
    return len(rows)


def unadopted_builtin(conn: psycopg.Connection, target: Target) -> tuple[str, list[str]] | None:
    """The app's qualification_runs when nothing covers it, with the columns it lacks."""
    row = conn.execute(
        "SELECT c.oid::regclass::text, _stuck_runs_builtin_missing_columns(c.oid)"
        " FROM pg_class AS c"
        " WHERE c.oid OPERATOR(pg_catalog.=)"
        "       _stuck_runs_resolve_table('qualification_runs'::text, %s::text)"
        "   AND NOT EXISTS (SELECT FROM stuck_runs_tables AS t"
        "                   WHERE t.table_name OPERATOR(pg_catalog.=) c.oid)",
        (target.app_schema,),
    ).fetchone()
    return (row[0], list(row[1])) if row else None


def creating(line: str) -> None:
    """Say what an index statement does to a table, before it runs ("table: statement")."""
    table, _, ddl = line.partition(": ")
    if ddl.startswith("CREATE"):
        note(f"creating the sweep index concurrently on {line}")
    elif ddl.startswith("DROP"):
        note(f"dropping an outdated or unfinished sweep index of {line}")
    else:
        note(f"putting the rebuilt sweep index of {table} in place: {ddl}")
