"""`stuck-runs adopt` / `unadopt`: cover an application's own runs table, or stop.

Built on runner/registry.py (shared with `migrate --adopt`) and the plumbing in
runner/context.py.
"""

from __future__ import annotations

import click
import psycopg

from .connection import OperationalError, Target, connect
from .context import (
    BadOptionValue,
    Settings,
    index_timeout_option,
    note,
    option_values,
    print_notices,
    run,
    timeout_options,
)
from .registry import (
    INDEX_NOTICE,
    build_missing_indexes,
    check_roles,
    column_options,
    creating,
    ensure_adopted,
    plan_adoption,
    resolve,
    roles,
)


def _open_session(target: Target, connect_timeout: float, statement_timeout: float):
    conn = connect(
        target, connect_timeout=connect_timeout, statement_timeout=statement_timeout, session=True
    )
    # adopt_runs_table's advice to build the index: this command builds it next.
    print_notices(conn, skip=(INDEX_NOTICE,))
    return conn


@click.command()
@click.option(
    "--table",
    required=True,
    metavar="NAME",
    help="The runs table, e.g. qualification_runs or '\"QualificationRun\"' "
    "(unqualified names are looked up in the URL's ?schema=, else public).",
)
@column_options
@click.option(
    "--active-statuses", metavar="A,B", help="Statuses of running work [PENDING,PROCESSING]."
)
@click.option("--failed-status", metavar="S", help="Status recovery writes [FAILED].")
@click.option("--yes", is_flag=True, help="Adopt without asking.")
@timeout_options
@index_timeout_option
@click.pass_obj
def adopt(
    settings: Settings,
    table: str,
    columns: dict[str, str | None],
    time_zone: str | None,
    active_statuses: str | None,
    failed_status: str | None,
    yes: bool,
    connect_timeout: float,
    statement_timeout: float,
    index_timeout: float,
) -> None:
    """Cover an existing runs table (your ORM's, your column names) with recovery.

    Proposes which column plays which role by name (createdAt ~ created_at),
    keeps what an earlier adoption of the table set and it is not told, shows
    it, asks, adopts, then builds the partial index sweeps need with
    CREATE INDEX CONCURRENTLY. The table itself is never altered. Adopting again
    with the same mapping changes nothing.

    \b
    Example: stuck-runs adopt --table '"QualificationRun"' --column updated_at=updatedAt
    """
    statuses = [s.strip() for s in active_statuses.split(",")] if active_statuses else None

    def work(target: Target) -> None:
        with _open_session(target, connect_timeout, statement_timeout) as conn:
            name = resolve(conn, target, table)
            known = roles(conn)
            check_roles(columns, known)
            plan = plan_adoption(
                conn,
                name,
                known,
                columns,
                {
                    "active_statuses": statuses,
                    "failed_status": failed_status,
                    "time_zone": time_zone,
                },
            )
            note(f"mapping for {name}:")
            for role, column in plan.mapping.items():
                origin = plan.origins[role]
                click.echo(f"  {role:<13} {column if column else '(absent)'}  [{origin}]", err=True)
            if not yes:
                click.confirm(f"Adopt {name} with this mapping?", abort=True, err=True)
            changed = ensure_adopted(conn, name, plan)
            click.echo(f"adopted {name}" if changed else f"{name} is already adopted as shown")
            if not build_missing_indexes(conn, creating, name, timeout=index_timeout):
                note("its sweep index already exists")

    # With --yes nothing waits for a person: the whole command is bounded.
    deadline = 3 * (connect_timeout + statement_timeout) + index_timeout if yes else None
    run(settings, work, session="adopt", deadline=deadline)


@click.command()
@click.option("--table", required=True, metavar="NAME", help="The adopted table.")
@click.option("--drop-index", is_flag=True, help="Also drop the sweep index adoption created.")
@timeout_options
@click.pass_obj
def unadopt(
    settings: Settings,
    table: str,
    drop_index: bool,
    connect_timeout: float,
    statement_timeout: float,
) -> None:
    """Stop covering a table; its rows are never touched.

    \b
    Example: stuck-runs unadopt --table '"QualificationRun"'
    """

    def work(target: Target) -> int:
        with _open_session(target, connect_timeout, statement_timeout) as conn:
            with option_values("--table"):
                row = conn.execute(_NAMED, {"name": table, "app": target.app_schema}).fetchone()
            if row is None:
                raise BadOptionValue("--table", f"{table!r} is not a table name")
            live, schema, relation = row
            removed = 0
            try:
                with option_values("--table"), conn.transaction():
                    if live is not None:
                        removed += conn.execute(
                            "SELECT unadopt_runs_table(%s::regclass, %s)::integer",
                            (live, drop_index),
                        ).fetchone()[0]
                    # The entry of a table that was dropped (for good, or
                    # re-created and not adopted again) is found by its name.
                    if conn.execute(
                        "SELECT pg_catalog.to_regproc('_stuck_runs_forget') IS NOT NULL"
                    ).fetchone()[0]:
                        removed += conn.execute(
                            "SELECT _stuck_runs_forget(%s, %s)", (schema, relation)
                        ).fetchone()[0]
            except psycopg.errors.InsufficientPrivilege as exc:
                # The registry's own refusal says who may: no GRANT would help.
                message = exc.diag.message_primary or str(exc)
                raise OperationalError(message.removeprefix("stuck-runs: ")) from None
            if live is None and not removed:
                others = conn.execute(
                    "SELECT count(*) FROM stuck_runs_tables AS t"
                    " WHERE t.schema_name OPERATOR(pg_catalog.=) %s"
                    "   AND t.relation_name OPERATOR(pg_catalog.=) %s",
                    (schema, relation),
                ).fetchone()
                if others and others[0]:
                    # _stuck_runs_forget() skips the entries this role may not remove.
                    raise OperationalError(
                        f"only the owner of {schema}.{relation} (once it is dropped: the role "
                        "that adopted it) may take it out of recovery"
                    )
                raise BadOptionValue(
                    "--table",
                    f"there is no table {table!r} in schema {schema!r}, and none was adopted "
                    "under that name",
                )
            return removed

    if run(settings, work, session="unadopt", deadline=2 * (connect_timeout + statement_timeout)):
        note(f"{table} is no longer covered by recovery")
    else:
        note(f"{table} was not adopted; nothing changed")


# The table a --table NAME names (NULL when there is none), and the schema and
# name it would have been adopted under: a dropped table's entry is found by those.
_NAMED = """
SELECT _stuck_runs_resolve_table(%(name)s::text, %(app)s::text)::text AS live,
       CASE pg_catalog.cardinality(p.parts) WHEN 1 THEN %(app)s::text ELSE p.parts[1] END,
       p.parts[pg_catalog.cardinality(p.parts)]
FROM (SELECT pg_catalog.parse_ident(%(name)s::text) AS parts) AS p
WHERE pg_catalog.cardinality(p.parts) IN (1, 2)
"""
