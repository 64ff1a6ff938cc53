"""`stuck-runs migrate`: install or upgrade, then make sure the app's runs table is covered.

Meant for every start (`migrate --adopt TABLE && recover`): idempotent, safe
from many instances at once, and it restores coverage after the application
dropped and re-created its table (prisma migrate reset).
"""

from __future__ import annotations

import shlex
import sys

import click
import psycopg

from .connection import OperationalError, Target, connect, pinned
from .context import (
    BadOptionValue,
    Settings,
    describe,
    locate,
    note,
    print_notices,
    run,
    timeout_options,
    warn,
)
from .registry import (
    adopt_command,
    build_missing_indexes,
    check_roles,
    column_options,
    creating,
    ensure_adopted,
    plan_adoption,
    propose,
    resolve,
    roles,
    unadopted_builtin,
)

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


@click.command()
@timeout_options
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest to wait while another instance migrates.",
)
@click.option(
    "--adopt",
    "table",
    metavar="TABLE",
    help="Then make sure the application's runs table TABLE is adopted (with the proposed "
    "mapping unless --column says otherwise); changes nothing when it already is.",
)
@column_options
@click.option(
    "--relocate",
    is_flag=True,
    help="Move an installation made by stuck-runs 0.1 in the application's schema into "
    "--schema first, keeping its audit, settings and registry.",
)
@click.pass_obj
def migrate(
    settings: Settings,
    connect_timeout: float,
    statement_timeout: float,
    lock_timeout: float,
    table: str | None,
    columns: dict[str, str | None],
    time_zone: str | None,
    relocate: bool,
) -> None:
    """Install or upgrade stuck-runs in its schema, and optionally adopt the app's runs table.

    Safe to run at every start and from many instances at once: they queue on
    a lock and a second run applies nothing. Needs a session of its own: give
    --direct-url when DATABASE_URL goes through a transaction pooler.

    \b
    Examples:
      stuck-runs migrate
      stuck-runs migrate --adopt qualification_runs
    """
    if columns and not table:
        raise click.UsageError("--column needs --adopt TABLE")
    from .migrations import apply_migrations

    def work(target: Target) -> tuple[list[str], Target]:
        with (
            connect(
                target, connect_timeout=connect_timeout, statement_timeout=statement_timeout
            ) as conn,
            pinned(conn, target, statement_timeout),
        ):
            if not relocate:
                target = locate(conn, target, settings)
            _check_writers(conn, target)
        try:
            applied = apply_migrations(
                target,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
                lock_timeout=lock_timeout,
                on_apply=lambda migration_id: click.echo(f"applied {migration_id}"),
                relocate_from=target.app_schema if relocate else None,
                on_note=note,
            )
        except psycopg.Error as exc:
            if relocate or target.schema == settings.schema:
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
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            session=True,
        ) as conn:
            print_notices(conn)
            if table:
                _adopt(conn, target, table, columns, time_zone)
            build_missing_indexes(conn, creating)
            if not table:
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

    applied, target = run(settings, work, session="migrate")
    where = f" (schema {target.schema})"
    if applied:
        note(f"{len(applied)} migration(s) applied; the database is up to date{where}")
    else:
        note(f"nothing to apply; the database is up to date{where}")


def _check_writers(conn, target: Target) -> None:
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


def _adopt(conn, target: Target, table: str, columns: dict, time_zone: str | None) -> None:
    """Adopt with --column and --time-zone over what the table's entry holds (else the
    proposal), or say which command would. What it is not told, it keeps."""
    try:
        name = resolve(conn, target, table)
    except BadOptionValue:
        moved = _moved(conn, target, table)
        if moved is None:
            raise
        # The application re-mapped its table (Prisma's @@map): the start-up
        # line names the old name, and must not keep the app from starting.
        warn(moved)
        return
    known = roles(conn)
    check_roles(columns, known)
    plan = plan_adoption(conn, name, known, columns, {"time_zone": time_zone})
    mapping = plan.mapping
    missing = [role for role, row in known.items() if row.required and not mapping.get(role)]
    if missing:
        click.echo(
            f"stuck-runs: error: no column of {name} looks like its {', '.join(missing)}; "
            "say which with --column, e.g.:",
            err=True,
        )
        placeholders = {role: "COLUMN" for role in missing}
        line = adopt_command(table, {**mapping, **placeholders}, known, migrate=True)
        click.echo(f"  {line}", err=True)
        sys.exit(1)
    if ensure_adopted(conn, name, plan):
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
                        pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>) r.parameter)))
         AS candidates
FROM stuck_runs_tables AS t
JOIN wanted AS w ON (t.schema_name, t.relation_name) = (w.nsp, w.rel)
"""


def _moved(conn, target: Target, table: str) -> str | None:
    """One line on a table `migrate --adopt` names that is gone but was adopted; else None.

    None (no evidence it was ever adopted: a typo) keeps the usage error.
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
            f"in the start-up line: {shlex.join(['stuck-runs', 'migrate', '--adopt', renamed])}"
        )
    start = f"there is no table {table!r} in schema {schema!r} any more, and it was adopted"
    if candidates and len(candidates) == 1:
        line = shlex.join(["stuck-runs", "migrate", "--adopt", candidates[0]])
        return (
            f"{start}: if the application renamed it (e.g. Prisma's @@map) to "
            f"{candidates[0]}, which recovery does not cover yet, put its new name in the "
            f"start-up line: {line}"
        )
    return (
        f"{start}; recovery no longer covers it: if the application renamed it (e.g. "
        "Prisma's @@map), put its new name in the start-up line: "
        "stuck-runs migrate --adopt NEW_NAME"
    )
