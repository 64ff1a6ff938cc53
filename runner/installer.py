"""Install or upgrade, adopt, build sweep indexes: what `migrate` and `start` share.

Not a command: runner/install.py (migrate) and runner/startup.py (start) both
build on it. Every wait it makes is bounded by the caller's numbers: the
connection, each statement, the migrate lock, each index build.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import click
import psycopg

from .connection import Deadline, OperationalError, Target, connect, pinned
from .context import Settings, locate, note, print_notices, warn
from .registry import (
    INDEX_NOTICE,
    adopt_command,
    build_missing_indexes,
    check_roles,
    creating,
    ensure_adopted,
    propose,
    resolve,
    roles,
    unadopted_builtin,
)


@dataclass
class Plan:
    """What to install and adopt, and the bound of every wait on the way."""

    connect_timeout: float
    statement_timeout: float
    lock_timeout: float
    index_timeout: float
    table: str | None = None
    columns: dict[str, str | None] = field(default_factory=dict)
    time_zone: str | None = None
    relocate: bool = False
    command: str = "migrate"
    # `start`: the total bound, and how much of it to keep for recovery.
    deadline: Deadline | None = None
    reserve: float = 0.0

    def cap(self, seconds: float) -> float:
        """A wait of at most `seconds`, and never past the time kept for recovery."""
        if self.deadline is None:
            return seconds
        return max(0.1, min(seconds, self.deadline.left() - self.reserve))


# Who besides us may CREATE in stuck-runs' schema (pg_database_owner stands for
# the database's owner; superusers are trusted anyway).
_OTHER_WRITERS = """
SELECT pg_catalog.string_agg(DISTINCT coalesce(r.rolname::text, 'PUBLIC'), ', '),
       pg_catalog.to_regclass(pg_catalog.quote_ident(%(schema)s)
                              OPERATOR(pg_catalog.||) '._yoyo_migration') IS NOT NULL
FROM pg_catalog.pg_namespace AS n
CROSS JOIN LATERAL pg_catalog.aclexplode(
    coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) AS a
LEFT JOIN pg_catalog.pg_roles AS r
  ON r.oid = CASE WHEN a.grantee = 'pg_database_owner'::regrole
                  THEN (SELECT d.datdba FROM pg_catalog.pg_database AS d
                        WHERE d.datname = pg_catalog.current_database())
                  ELSE a.grantee END
WHERE n.nspname = %(schema)s AND a.privilege_type = 'CREATE'
  AND (a.grantee = 0 OR (r.oid <> CURRENT_USER::regrole AND NOT r.rolsuper))
"""


def check_writers(conn: psycopg.Connection, target: Target) -> None:
    """Refuse a new install where other roles may create objects; warn on an existing one.

    stuck-runs' functions search their own schema: an overload planted there
    would run as whoever calls them (a superuser's pg_cron job, the migrating role).
    """
    row = conn.execute(_OTHER_WRITERS, {"schema": target.schema}).fetchone()
    writers, installed = row if row else (None, False)
    if not writers:
        return
    message = (
        f"roles other than the installing one may create objects in schema {target.schema!r} "
        f"({writers}), which stuck-runs' functions search: such a role could get a more "
        "privileged caller to run its code"
    )
    if installed:
        warn(f"{message}; revoke their CREATE, or move stuck-runs with --relocate")
        return
    raise OperationalError(
        f"{message}; nothing was installed: revoke their CREATE on it, or install into a "
        "schema of its own (the default, stuck_runs)"
    )


def install(
    target: Target,
    settings: Settings,
    plan: Plan,
    on_apply: Callable[[str], None] = lambda _id: None,
) -> tuple[list[str], Target]:
    """Apply pending migrations, adopt plan.table, build missing sweep indexes.

    A role that may not create in stuck-runs' schema goes straight to
    adoption when stuck-runs is installed: it could apply nothing.
    """
    from .migrations import apply_migrations, not_ours_to_install

    with (
        connect(
            target,
            connect_timeout=plan.connect_timeout,
            statement_timeout=plan.cap(plan.statement_timeout),
        ) as conn,
    ):
        with pinned(conn, target, plan.cap(plan.statement_timeout)):
            if not plan.relocate:
                target = locate(conn, target, settings)
            check_writers(conn, target)
        skip = None if plan.relocate else not_ours_to_install(conn, target.schema)
    if skip:
        warn(skip)
    applied: list[str] = []
    if skip is None:
        applied = apply_migrations(
            target,
            connect_timeout=plan.connect_timeout,
            statement_timeout=plan.cap(plan.statement_timeout),
            lock_timeout=plan.cap(plan.lock_timeout),
            on_apply=on_apply,
            relocate_from=target.app_schema if plan.relocate else None,
        )
    with connect(
        target,
        connect_timeout=plan.connect_timeout,
        statement_timeout=plan.cap(plan.statement_timeout),
        session=True,
    ) as conn:
        print_notices(conn, skip=(INDEX_NOTICE,) if plan.table else ())
        if plan.table:
            adopt_table(conn, target, plan)
        build_missing_indexes(conn, creating, timeout=plan.cap(plan.index_timeout))
        if not plan.table:
            unadopted = unadopted_builtin(conn, target)
            if unadopted:
                name, missing = unadopted
                known = roles(conn)
                note(
                    f"{name} already exists with its own column names (no "
                    f"{', '.join(missing)}): recovery does not cover it yet. Adopt it with:"
                )
                click.echo(
                    f"  {adopt_command(name, propose(conn, name, known), known, migrate=True)}",
                    err=True,
                )
    return applied, target


def adopt_table(conn: psycopg.Connection, target: Target, plan: Plan) -> None:
    """Adopt with the proposed mapping plus --column, or say (in one line) which command would."""
    assert plan.table is not None
    name = resolve(conn, target, plan.table)
    known = roles(conn)
    check_roles(plan.columns, known)
    mapping = {**propose(conn, name, known), **plan.columns}
    missing = [role for role, row in known.items() if row.required and not mapping.get(role)]
    if missing:
        placeholders = {role: "COLUMN" for role in missing}
        line = adopt_command(plan.table, {**mapping, **placeholders}, known, migrate=True)
        if plan.command == "start":
            line = line.replace("stuck-runs migrate --adopt", "stuck-runs start --adopt", 1)
        raise OperationalError(
            f"no column of {name} looks like its {', '.join(missing)}; "
            f"say which with --column, e.g.: {line}"
        )
    columns_by_parameter = {known[role].parameter: column for role, column in mapping.items()}
    if ensure_adopted(conn, name, columns_by_parameter, None, None, plan.time_zone):
        note(f"adopted {name}: recovery covers it")
