"""`stuck-runs recover`, `list` and `resume`: the commands an app runs, pooled or not.

Each transaction carries its own settings (runner/connection.py's `pinned`), so
these commands work through a transaction pooler and leave nothing behind.
"""

from __future__ import annotations

import sys

import click
import psycopg

from . import output
from .connection import Deadline, Target, pin_transactions, pinned
from .context import (
    Settings,
    fail,
    instance_option,
    interval_option,
    locate,
    note,
    print_notices,
    run,
    timeout_options,
)
from .sweep import (
    DEFAULT_BATCH_SIZE,
    Outcome,
    Request,
    closing_line,
    lost_coverage,
    open_connection,
    recover_into,
    report_coverage,
)

# Which of the coverage reports this install has (older installs lack one or both).
_REPORTS = (
    "SELECT pg_catalog.to_regproc('stuck_runs_coverage_problems') IS NOT NULL AS reports,"
    " pg_catalog.to_regproc('_stuck_runs_lost') IS NOT NULL AS lost_known"
)


@click.command()
@click.option(
    "--older-than",
    envvar="STUCK_RUNS_OLDER_THAN",
    metavar="INTERVAL",
    callback=interval_option,
    help="No sign of life for longer than this means stuck, e.g. '15 minutes'. "
    "Default: the database's threshold (5 minutes unless changed). Env: STUCK_RUNS_OLDER_THAN.",
)
@click.option(
    "--limit",
    "max_runs",
    type=click.IntRange(min=1, max=2**31 - 1),
    envvar="STUCK_RUNS_LIMIT",
    metavar="N",
    help="Recover at most N runs in this call (batching a huge backlog). Env: STUCK_RUNS_LIMIT.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=2**31 - 1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    envvar="STUCK_RUNS_BATCH_SIZE",
    metavar="N",
    help="Recover in transactions of at most N runs, each committed before the next, so "
    "that a backlog of any size costs the memory and time of one batch per transaction "
    "and no lock is held for long. Env: STUCK_RUNS_BATCH_SIZE.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=0, max=2**31 - 1),
    envvar="STUCK_RUNS_MAX_ATTEMPTS",
    metavar="N",
    help="Requeue (back to PENDING) a stuck run that has had fewer than N retries; "
    "fail the others. Default: fail every stuck run. Env: STUCK_RUNS_MAX_ATTEMPTS.",
)
@instance_option
@click.option("--dry-run", is_flag=True, help="Show what would be recovered; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one object per run.")
@click.option(
    "--fail-open",
    is_flag=True,
    envvar="STUCK_RUNS_FAIL_OPEN",
    help="For start-up hooks: report database errors but exit 0, and end within "
    "--connect-timeout plus --statement-timeout even in batches. Env: STUCK_RUNS_FAIL_OPEN=1.",
)
@timeout_options
@click.pass_obj
def recover(
    settings: Settings,
    older_than: str | None,
    max_runs: int | None,
    batch_size: int,
    max_attempts: int | None,
    instance: str | None,
    dry_run: bool,
    as_json: bool,
    fail_open: bool,
    connect_timeout: float,
    statement_timeout: float,
) -> None:
    """Mark runs with no sign of life FAILED (partial progress kept) and print them.

    Runs with recent activity, and COMPLETED or FAILED runs, are never touched.
    Recovers in batches of --batch-size runs, each in a transaction of its own.
    With --fail-open it ends within --connect-timeout plus --statement-timeout,
    whatever the database does, saying how many runs it recovered and how many
    remain; without it each batch gets --statement-timeout and the command runs
    until the backlog is done, but no wait outlasts that bound after the last
    committed batch (a frozen backend). A run is printed only after its
    transaction committed.

    \b
    Examples:
      stuck-runs recover --older-than '5 minutes'
      stuck-runs recover --dry-run
      stuck-runs recover --fail-open && exec node server.js
      stuck-runs recover --instance web --fail-open && exec node server.js
    """
    request = Request(
        older_than=older_than,
        max_runs=max_runs,
        batch_size=batch_size,
        max_attempts=max_attempts,
        instance=instance,
        dry_run=dry_run,
        as_json=as_json,
        connect_timeout=connect_timeout,
        statement_timeout=statement_timeout,
    )
    budget = connect_timeout + statement_timeout
    # The start-up bound holds for the whole command unless batches may run on;
    # then the bound rolls: every wait still ends within it, since each batch
    # that commits starts it again, and a frozen backend never commits.
    deadline = Deadline(budget)
    rolling = bool(batch_size) and not fail_open and not dry_run
    outcome = Outcome()

    def work(target: Target) -> None:
        recover_into(
            target,
            settings,
            request,
            outcome,
            left=deadline.left if fail_open else None,
            on_commit=deadline.extend if rolling else lambda: None,
        )

    run(settings, work, fail_open=fail_open, deadline=deadline, progress=outcome.committed)
    closing_line(outcome, request, budget)
    failure = outcome.failure()
    if failure:
        fail(failure, fail_open=fail_open)


@click.command(name="list")
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

    lost: list[str] = []

    def work(target: Target) -> int:
        with open_connection(target, connect_timeout, statement_timeout) as conn:
            print_notices(conn)
            with pinned(conn, target, statement_timeout):
                target = locate(conn, target, settings)
                known = conn.execute(_REPORTS).fetchone()
                if known["reports"]:
                    lost[:] = report_coverage(conn, target, lost_known=known["lost_known"])
                count = 0
                with conn.cursor(name="stuck_runs_active") as cur:
                    cur.execute("SELECT * FROM active_runs ORDER BY idle DESC, table_name, run_id")
                    for row in cur:
                        count += 1
                        line = output.json_line(row) if as_json else output.active_line(row)
                        click.echo(line)
                raise psycopg.Rollback()  # read only: nothing to commit
        return count

    count = run(settings, work, deadline=connect_timeout + statement_timeout)
    note(f"{count} active run(s)")
    failure = lost_coverage(lost)
    if failure:
        fail(failure, fail_open=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one object per life.")
@timeout_options
@click.pass_obj
def instances(
    settings: Settings, as_json: bool, connect_timeout: float, statement_timeout: float
) -> None:
    """List application instances and their lives: state, last heartbeat, active runs.

    A life is live, silent (no heartbeat for stuck_runs_settings.dead_after: the
    next sweep ends it) or ended (a newer life of the same instance started, or
    it stopped heartbeating); the runs an ended life owned are recovered at once.
    Reads the stuck_runs_instances view, by the database's clock; changes nothing.

    \b
    Example: stuck-runs instances --json | jq 'select(.state != "live")'
    """

    def work(target: Target) -> int:
        with open_connection(target, connect_timeout, statement_timeout) as conn:
            print_notices(conn)
            with pinned(conn, target, statement_timeout):
                target = locate(conn, target, settings)
                rows = conn.execute(
                    "SELECT instance, life, state, started_at, heartbeat_at, silent_for,"
                    " ended_at, end_reason, active_runs FROM stuck_runs_instances"
                    " ORDER BY instance, started_at DESC"
                ).fetchall()
                if as_json:
                    for row in rows:
                        click.echo(output.json_line(row))
                elif rows:
                    cells = [output.instance_cells(row) for row in rows]
                    for line in output.table_lines(output.INSTANCE_HEADERS, cells):
                        click.echo(line)
                raise psycopg.Rollback()  # read only: nothing to commit
        return len(rows)

    count = run(settings, work, deadline=connect_timeout + statement_timeout)
    note(f"{count} instance life(s)")


@click.command()
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

    from .registry import resolve  # only --table needs it: recover never pays for it

    def work(target: Target) -> tuple[list[str], Target]:
        refused: list[str] = []
        with open_connection(target, connect_timeout, statement_timeout) as conn:
            with pinned(conn, target, statement_timeout):
                target = locate(conn, target, settings)
                name = resolve(conn, target, table) if table else None
            pin_transactions(conn, writes=True)
            for run_id in run_ids:
                try:
                    with pinned(conn, target, statement_timeout):
                        run_row = conn.execute(
                            "SELECT * FROM resume_run(%s, %s::regclass)", (run_id, name)
                        ).fetchone()
                except psycopg.Error as exc:
                    if exc.sqlstate not in ("22023", "P0002"):
                        raise
                    refused.append(exc.diag.message_primary or str(exc))
                    continue
                assert run_row is not None
                record = output.resumed_record(run_row)
                click.echo(output.json_line(record) if as_json else output.resumed_line(record))
        return refused, target

    refused, target = run(settings, work, deadline=connect_timeout + statement_timeout)
    for message in refused:
        click.echo(f"stuck-runs: error: {target.redact(message)}", err=True)
    note(f"resumed {len(run_ids) - len(refused)} of {len(run_ids)} run(s)")
    if refused:
        sys.exit(1)
