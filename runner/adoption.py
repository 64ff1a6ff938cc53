"""`stuck-runs adopt`/`unadopt`, and what `migrate` says about tables it did not create.

The mapping is validated and stored by adopt_runs_table() in SQL; the proposal
comes from propose_runs_table_mapping(). This module only shows, asks, calls,
and runs the index statements SQL hands back (CONCURRENTLY needs autocommit).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

import psycopg
from psycopg.rows import dict_row

# adopt_runs_table()'s column arguments, by the ROLE names the CLI accepts.
ROLES = {
    "id": "id_column",
    "status": "status_column",
    "created_at": "created_at_column",
    "updated_at": "updated_at_column",
    "completed_at": "completed_at_column",
    "error": "error_column",
    "completed": "completed_column",
    "total": "total_column",
    "attempts": "attempts_column",
}
# Roles adopt_runs_table() defaults to a column name; the others default to absent.
_DEFAULTED = {
    "id",
    "status",
    "created_at",
    "updated_at",
    "completed_at",
    "error",
    "completed",
    "total",
}


def propose(conn: psycopg.Connection, table: str) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT role, column_name FROM propose_runs_table_mapping(%s::regclass)", (table,)
    ).fetchall()
    by_param = {row[0]: row[1] for row in rows}
    return {role: by_param.get(param) for role, param in ROLES.items()}


def adopt_command(table: str, mapping: dict[str, str | None]) -> str:
    """The exact `stuck-runs adopt` command line for a mapping, shell-quoted."""
    parts = ["stuck-runs", "adopt", "--table", table]
    for role, column in mapping.items():
        if column is not None:
            parts += ["--column", f"{role}={column}"]
        elif role in _DEFAULTED:
            parts += ["--column", f"{role}="]
    return " ".join(shlex.quote(p) for p in [*parts, "--yes"])


def adopt(
    conn: psycopg.Connection,
    table: str,
    mapping: dict[str, str | None],
    active_statuses: list[str] | None,
    failed_status: str | None,
) -> dict:
    """Call adopt_runs_table() with named arguments; values travel as parameters only."""
    args = ["table_name => %(table)s::regclass"]
    params: dict[str, object] = {"table": table}
    for role, column in mapping.items():
        param = ROLES[role]
        args.append(f"{param} => %({param})s")  # names come from ROLES, never from input
        params[param] = column
    if active_statuses is not None:
        args.append("active_statuses => %(active_statuses)s::text[]")
        params["active_statuses"] = active_statuses
    if failed_status is not None:
        args.append("failed_status => %(failed_status)s")
        params["failed_status"] = failed_status
    query = f"SELECT * FROM adopt_runs_table({', '.join(args)})"
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        row = cur.fetchone()
    assert row is not None
    return row


def build_missing_indexes(
    conn: psycopg.Connection, echo: Callable[[str], None], table: str | None = None
) -> int:
    """Run the index statements SQL says adopted tables still need.

    `conn` must be in autocommit mode: CREATE INDEX CONCURRENTLY refuses to run
    in a transaction. Index builds on big tables take long, so they run without
    a statement timeout; CONCURRENTLY keeps the application's writes flowing.
    """
    rows = conn.execute(
        "SELECT t.table_name::text, d.ddl FROM stuck_runs_tables AS t"
        " CROSS JOIN LATERAL stuck_runs_index_ddl(t.table_name) AS d(ddl)"
        " WHERE EXISTS (SELECT FROM pg_class AS c WHERE c.oid = t.table_name)"
        "   AND (%s::regclass IS NULL OR t.table_name = %s::regclass)",
        (table, table),
    ).fetchall()
    if rows:
        conn.execute("SET statement_timeout = 0")
    for table_name, ddl in rows:
        echo(f"{table_name}: {ddl}")
        conn.execute(ddl)
    return len(rows)


def unadopted_builtin(conn: psycopg.Connection) -> tuple[str, list[str]] | None:
    """qualification_runs when it exists but was not adopted, with the columns it lacks."""
    row = conn.execute(
        "SELECT c.oid::regclass::text, stuck_runs_builtin_missing_columns(c.oid)"
        " FROM pg_class AS c"
        " WHERE c.oid = to_regclass(format('%I.qualification_runs', current_schema()))"
        "   AND NOT EXISTS (SELECT FROM stuck_runs_tables AS t WHERE t.table_name = c.oid)"
    ).fetchone()
    return (row[0], list(row[1])) if row else None
