"""Install or upgrade, adopt, build sweep indexes: what `migrate` and `start` share.

Not a command: runner/install.py (migrate) and runner/startup.py (start) both
build on it. Every wait it makes is bounded by the caller's numbers: the
connection, each statement, the migrate lock, each index build.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

import click
import psycopg

from .connection import Deadline, OperationalError, Target, connect, pinned
from .context import BadOptionValue, Settings, describe, locate, note, print_notices, warn
from .registry import (
    INDEX_NOTICE,
    adopt_command,
    build_missing_indexes,
    check_roles,
    creating,
    ensure_adopted,
    plan_adoption,
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
  ON r.oid OPERATOR(pg_catalog.=) CASE
         WHEN a.grantee OPERATOR(pg_catalog.=) 'pg_database_owner'::pg_catalog.regrole
         THEN (SELECT d.datdba FROM pg_catalog.pg_database AS d
               WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
         ELSE a.grantee END
WHERE n.nspname OPERATOR(pg_catalog.=) %(schema)s
  AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
  AND (a.grantee OPERATOR(pg_catalog.=) 0
       OR (r.oid OPERATOR(pg_catalog.<>) CURRENT_USER::pg_catalog.regrole AND NOT r.rolsuper))
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
        try:
            applied = apply_migrations(
                target,
                connect_timeout=plan.connect_timeout,
                statement_timeout=plan.cap(plan.statement_timeout),
                lock_timeout=plan.cap(plan.lock_timeout),
                on_apply=on_apply,
                relocate_from=target.app_schema if plan.relocate else None,
                on_note=note,
            )
        except psycopg.Error as exc:
            if plan.relocate or target.schema == settings.schema:
                raise
            # 0.1's install in the app's schema: 0003 cannot be applied there
            # when the app's own qualification_runs lacks a column it comments on.
            raise OperationalError(
                f"could not upgrade stuck-runs in schema {target.schema!r}, where 0.1 installed "
                f"it ({describe(exc, target.schema)}); `stuck-runs migrate --relocate` moves it "
                f"into schema {settings.schema!r} and upgrades it there"
            ) from None
    with connect(
        target,
        connect_timeout=plan.connect_timeout,
        statement_timeout=plan.cap(plan.statement_timeout),
        session=True,
    ) as conn:
        # A restore with --no-acl drops the grants that let other owners' sweeps
        # and writes call stuck_runs_label(); migrate is where they come back.
        conn.execute("SELECT _stuck_runs_share_label()")
        # The no-op sweep's fast path follows the tables' current shape (a
        # restore, an ORM migration since): rebuilt here when it no longer does.
        conn.execute("SELECT _stuck_runs_refresh_quiet()")
        superseded = conn.execute("SELECT _stuck_runs_forget_superseded()").fetchone()
        if superseded and superseded[0]:
            note(
                f"removed {superseded[0]} registry entry(ies) of dropped tables whose name a "
                "registered table bears now"
            )
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
    """Adopt with --column and --time-zone over what the table's entry holds (else the
    proposal), or say in one line which command would. What it is not told, it keeps."""
    assert plan.table is not None
    try:
        name = resolve(conn, target, plan.table)
    except BadOptionValue:
        moved = _moved(conn, target, plan.table, plan.command)
        if moved is None:
            raise
        # The application re-mapped its table (Prisma's @@map): the start-up
        # line names the old name, and must not keep the app from starting.
        warn(moved)
        return
    known = roles(conn)
    check_roles(plan.columns, known)
    adoption = plan_adoption(conn, name, known, plan.columns, {"time_zone": plan.time_zone})
    mapping = adoption.mapping
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
    if ensure_adopted(conn, name, adoption):
        note(f"adopted {name}: recovery covers it")


# What became of a table the registry knew under this name: renamed (its entry's
# oid lives on under another name), or dropped, with the one unadopted table of
# its schema that has every required column the entry mapped (Prisma's @@map
# change drops the table and creates it under the new name).
_MOVED = """
WITH wanted AS (
    SELECT CASE pg_catalog.cardinality(p.parts) WHEN 1 THEN %(app)s ELSE p.parts[1] END AS nsp,
           p.parts[pg_catalog.cardinality(p.parts)] AS rel
    FROM (SELECT pg_catalog.parse_ident(%(name)s) AS parts) AS p
    WHERE pg_catalog.cardinality(p.parts) IN (1, 2)
)
SELECT t.schema_name,
       (SELECT CASE WHEN c.relnamespace::regnamespace::text
                         OPERATOR(pg_catalog.=) pg_catalog.quote_ident(t.schema_name)
                    THEN pg_catalog.quote_ident(c.relname) ELSE c.oid::regclass::text END
        FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) t.table_name) AS renamed,
       (SELECT pg_catalog.array_agg(pg_catalog.quote_ident(c.relname) ORDER BY c.relname)
        FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE n.nspname OPERATOR(pg_catalog.=) t.schema_name AND c.relkind IN ('r', 'p')
          AND NOT EXISTS (SELECT FROM stuck_runs_tables AS u
                          WHERE u.table_name OPERATOR(pg_catalog.=) c.oid)
          AND NOT EXISTS (
              SELECT FROM stuck_runs_roles AS r
              WHERE r.required AND NOT EXISTS (
                  SELECT FROM pg_catalog.pg_attribute AS a
                  WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum > 0
                    AND NOT a.attisdropped
                    AND a.attname OPERATOR(pg_catalog.=)
                        (pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>) r.parameter))))
         AS candidates
FROM stuck_runs_tables AS t
JOIN wanted AS w ON (t.schema_name, t.relation_name) = (w.nsp, w.rel)
"""


def _moved(
    conn: psycopg.Connection, target: Target, table: str, command: str = "migrate"
) -> str | None:
    """One line on a table `--adopt` names that is gone but was adopted; else None.

    None (no evidence it was ever adopted: a typo) keeps the usage error. The line it
    proposes is the command that ran (`start` or `migrate`), so it can replace the
    start-up line word for word.
    """
    try:
        row = conn.execute(_MOVED, {"app": target.app_schema, "name": table}).fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    schema, renamed, candidates = row
    if renamed is not None:
        return (
            f"{table} was renamed to {renamed} and recovery still covers it; put the new name "
            f"in the start-up line: {shlex.join(['stuck-runs', command, '--adopt', renamed])}"
        )
    start = f"there is no table {table!r} in schema {schema!r} any more, and it was adopted"
    if candidates and len(candidates) == 1:
        line = shlex.join(["stuck-runs", command, "--adopt", candidates[0]])
        return (
            f"{start}: if the application renamed it (e.g. Prisma's @@map) to "
            f"{candidates[0]}, which recovery does not cover yet, put its new name in the "
            f"start-up line: {line}"
        )
    return (
        f"{start}; recovery no longer covers it: if the application renamed it (e.g. "
        "Prisma's @@map), put its new name in the start-up line: "
        f"stuck-runs {command} --adopt NEW_NAME"
    )
