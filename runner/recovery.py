"""`stuck-runs recover`, `list` and `resume`: the commands an app runs, pooled or not.

Each transaction carries its own settings (runner/connection.py's `pinned`), so
these commands work through a transaction pooler and leave nothing behind.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import click
import psycopg
from psycopg.rows import dict_row

from . import output
from .connection import OperationalError, Target, connect, pinned
from .context import (
    Settings,
    fail,
    interval_option,
    locate,
    note,
    option_values,
    print_notices,
    run,
    timeout_options,
    warn,
)
from .registry import resolve

# Shown per active run before "... and N more": a start-up log is not a report.
ACTIVE_LINES_SHOWN = 20
# Under --fail-open, a batch is not started with less than this left of the bound.
_LEAST_BATCH_SECONDS = 0.2

_CHECKS = """
SELECT pg_catalog.pg_is_in_recovery() AS standby,
       %(older_than)s::interval AS older_than,
       pg_catalog.to_regproc('stuck_runs_coverage_problems') IS NOT NULL AS reports
"""


@dataclass
class Outcome:
    """What a recover call did, for its closing line and exit status."""

    count: int = 0
    requeued: int = 0
    backlog: bool = False
    table_faults: int = 0

    def fault(self, message: str) -> None:
        self.table_faults += " was not swept: " in message


def _open(target: Target, connect_timeout: float, statement_timeout: float) -> psycopg.Connection:
    conn = connect(target, connect_timeout=connect_timeout, statement_timeout=statement_timeout)
    conn.row_factory = dict_row  # type: ignore[assignment]
    return conn


def _report_coverage(conn: psycopg.Connection, target: Target) -> None:
    """One warning line per registered table that is gone or misfit, or uncovered runs table."""
    for row in conn.execute(
        "SELECT problem FROM stuck_runs_coverage_problems(%s)", (target.app_schema,)
    ):
        warn(row["problem"])


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


def _recover_call(older_than: str | None) -> str:
    """The statement is fixed text; option values only ever travel as parameters."""
    threshold = "" if older_than is None else "older_than => %(older_than)s::interval, "
    return (
        f"SELECT * FROM recover_stuck_runs({threshold}max_runs => %(max_runs)s::integer,"
        " max_attempts => %(max_attempts)s::integer)"
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
    envvar="STUCK_RUNS_BATCH_SIZE",
    metavar="N",
    help="Recover in transactions of at most N runs, so no lock is held for long "
    "(for huge backlogs next to busy workers). Default: one transaction. "
    "Env: STUCK_RUNS_BATCH_SIZE.",
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
    help="For start-up hooks: report database errors but exit 0, and end within "
    "--connect-timeout plus --statement-timeout even in batches. Env: STUCK_RUNS_FAIL_OPEN=1.",
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
    Ends within --connect-timeout plus --statement-timeout, whatever the database
    does; with --batch-size and without --fail-open, each batch gets
    --statement-timeout and the command runs until the backlog is done.

    \b
    Examples:
      stuck-runs recover --older-than '5 minutes'
      stuck-runs recover --dry-run
      stuck-runs recover --fail-open && exec node server.js
    """
    params = {"older_than": older_than, "max_runs": max_runs, "max_attempts": max_attempts}
    started = time.monotonic()
    budget = connect_timeout + statement_timeout
    # The start-up bound holds for the whole command unless batches may run on.
    bounded = fail_open or not batch_size or dry_run
    outcome = Outcome()

    def left() -> float:
        return budget - (time.monotonic() - started)

    def work(target: Target) -> None:
        with _open(target, connect_timeout, statement_timeout) as conn:
            print_notices(conn, on_warning=outcome.fault)
            with pinned(conn, target, statement_timeout):
                target = locate(conn, target, settings)
                with option_values("--older-than"):
                    checks = conn.execute(_CHECKS, params).fetchone()
                if checks and checks["standby"]:
                    raise OperationalError(
                        "the server is a read-only standby (pg_is_in_recovery() is true); "
                        "run recovery against the primary"
                    )
                if checks and checks["reports"]:
                    _report_coverage(conn, target)
                if not as_json:
                    _show_active(conn)
            while True:
                call = dict(params)
                timeout = statement_timeout
                if batch_size and not dry_run:
                    remaining = None if max_runs is None else max_runs - outcome.count
                    call["max_runs"] = (
                        batch_size if remaining is None else min(batch_size, remaining)
                    )
                    if fail_open and outcome.count:
                        timeout = min(statement_timeout, left())
                        if timeout < _LEAST_BATCH_SECONDS:
                            outcome.backlog = True
                            return
                try:
                    in_batch = _one_batch(
                        conn, target, call, older_than, timeout, dry_run, as_json, outcome
                    )
                except psycopg.errors.QueryCanceled:
                    if timeout >= statement_timeout:
                        raise
                    outcome.backlog = True  # the start-up bound ran out mid-batch
                    return
                if dry_run or not batch_size:
                    return
                if in_batch < call["max_runs"] or outcome.count == max_runs:
                    return

    run(settings, work, fail_open=fail_open, deadline=budget if bounded else None)
    split = (
        f" ({outcome.count - outcome.requeued} failed, {outcome.requeued} requeued)"
        if outcome.requeued
        else ""
    )
    if dry_run:
        note(f"dry run: {outcome.count} run(s) would be recovered{split}; nothing was changed")
    elif outcome.backlog:
        note(
            f"Recovered {outcome.count} stuck run(s){split} within the start-up bound of "
            f"{budget:g} s; a backlog remains for the next run"
        )
    elif outcome.count:
        note(f"Recovered {outcome.count} stuck run(s){split}")
    else:
        note("No stuck runs found")
    if outcome.table_faults:
        fail(
            f"{outcome.table_faults} table(s) could not be swept (see the warnings above); "
            "the others were recovered",
            fail_open=fail_open,
        )


def _one_batch(
    conn: psycopg.Connection,
    target: Target,
    call: dict,
    older_than: str | None,
    timeout: float,
    dry_run: bool,
    as_json: bool,
    outcome: Outcome,
) -> int:
    """One call of recover_stuck_runs in a transaction of its own; returns how many it took."""
    in_batch = 0
    with pinned(conn, target, timeout), option_values("--older-than/--limit"):
        with conn.cursor(name="stuck_runs_recovered") as cur:
            cur.execute(_recover_call(older_than), call)
            for row in cur:
                outcome.count += 1
                in_batch += 1
                outcome.requeued += row["action"] == "requeued"
                if as_json:
                    click.echo(output.json_line(row))
                    continue
                if outcome.count == 1:
                    note(f"{'Would recover' if dry_run else 'Recovering'} stuck run(s):")
                click.echo(output.recovered_line(row))
        if dry_run:
            raise psycopg.Rollback()
    return in_batch


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

    def work(target: Target) -> int:
        with _open(target, connect_timeout, statement_timeout) as conn:
            print_notices(conn)
            with pinned(conn, target, statement_timeout):
                target = locate(conn, target, settings)
                if conn.execute(
                    "SELECT pg_catalog.to_regproc('stuck_runs_coverage_problems') IS NOT NULL AS r"
                ).fetchone()["r"]:
                    _report_coverage(conn, target)
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

    def work(target: Target) -> tuple[list[str], Target]:
        refused: list[str] = []
        with _open(target, connect_timeout, statement_timeout) as conn:
            with pinned(conn, target, statement_timeout):
                target = locate(conn, target, settings)
                name = resolve(conn, target, table) if table else None
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
