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


def current_mapping(conn: psycopg.Connection, table: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM stuck_runs_tables WHERE table_name = %s::regclass", (table,)
        ).fetchone()


def ensure_adopted(
    conn: psycopg.Connection,
    table: str,
    columns: dict[str, str | None],
    active_statuses: list[str] | None,
    failed_status: str | None,
    time_zone: str | None,
) -> bool:
    """Adopt `table` with these arguments unless it already is; True when something changed.

    `columns` maps adopt_runs_table()'s column parameters (stuck_runs_roles.parameter)
    to column names. Every argument travels as a parameter; the argument names are
    quoted identifiers.
    """
    given: dict[str, object] = {
        **columns,
        **({"active_statuses": active_statuses} if active_statuses is not None else {}),
        **({"failed_status": failed_status} if failed_status is not None else {}),
        **({"time_zone": time_zone} if time_zone is not None else {}),
    }
    entry = current_mapping(conn, table)
    if entry is not None and all(
        entry.get(key) == value for key, value in {"time_zone": "UTC", **given}.items()
    ):
        return False
    arguments = sql.SQL(", ").join(
        [
            sql.SQL("table_name => {}::regclass").format(sql.Placeholder("table_name")),
            *(
                sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
                for name in given
            ),
        ]
    )
    with option_values("--column"), conn.transaction():
        conn.execute(
            sql.SQL("SELECT adopt_runs_table({})").format(arguments),
            {"table_name": table, **given},
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
        " WHERE %s::regclass IS NULL OR t.table_name = %s::regclass",
        (table, table),
    ).fetchall()
    previous = conn.execute("SELECT pg_catalog.current_setting('statement_timeout')").fetchone()
    for table_name, ddl in rows:
        echo(f"{table_name}: {ddl}")
        try:
            conn.execute(
                "SELECT pg_catalog.set_config('statement_timeout', %s, false)",
                (f"{max(1, int(timeout * 1000))}ms",),
            )
            conn.execute(ddl)
        except psycopg.errors.QueryCanceled:
            warn(
                f"the sweep index of {table_name} was not built within {timeout:g} s (an older "
                "open transaction on the table holds CREATE INDEX CONCURRENTLY back); sweeps "
                "work without it, only slower, and the next `stuck-runs migrate` or `start` "
                "builds it"
            )
        except psycopg.Error as exc:
            # One table's index never fails the whole migrate: sweeps still
            # work without it, only slower, and the next migrate tries again.
            warn(f"could not build the sweep index of {table_name}: {first_line(exc)}")
    if rows and previous is not None:
        conn.execute("SELECT pg_catalog.set_config('statement_timeout', %s, false)", previous)
    return len(rows)


def unadopted_builtin(conn: psycopg.Connection, target: Target) -> tuple[str, list[str]] | None:
    """The app's qualification_runs when nothing covers it, with the columns it lacks."""
    row = conn.execute(
        "SELECT c.oid::regclass::text, _stuck_runs_builtin_missing_columns(c.oid)"
        " FROM pg_class AS c"
        " WHERE c.oid = _stuck_runs_resolve_table('qualification_runs', %s)"
        "   AND NOT EXISTS (SELECT FROM stuck_runs_tables AS t WHERE t.table_name = c.oid)",
        (target.app_schema,),
    ).fetchone()
    return (row[0], list(row[1])) if row else None


def creating(line: str) -> None:
    note(f"creating the sweep index concurrently on {line}")
