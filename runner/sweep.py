"""One recovery, as `recover` and `start` run it: checks, the active runs, the batches.

Not a command: runner/recovery.py and runner/startup.py both build on it, and
neither imports the other. What it prints about recovered runs it prints only
after their transaction committed: the rows of a batch are held in a spool
(memory, then a temporary file past a few MiB, so a million rows cost no
memory) and written out once COMMIT returned. A batch that the deadline, a
statement timeout or a failing COMMIT cut is never shown as recovered.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

import click
import psycopg
from psycopg.rows import dict_row

from . import output
from .connection import OperationalError, Target, connect, pin_transactions, pinned
from .context import (
    BadOptionValue,
    Settings,
    locate,
    note,
    option_values,
    print_notices,
    warn,
)

# Shown per active run before "... and N more": a start-up log is not a report.
ACTIVE_LINES_SHOWN = 20
# Listing the active runs before recovering gets at most this long (a third of
# the statement timeout, if less): a backlog of millions is recovered unlisted.
LIST_SECONDS = 5.0
# Under a start-up bound, a batch is not started with less than this left of it.
LEAST_BATCH_SECONDS = 0.2
# Rows fetched per round trip from a batch's cursor.
_FETCH_ROWS = 2000
# libpq 17 reads a result in chunks (psycopg 3.2's stream(size=)): a batch's
# rows then come over from the call itself, _FETCH_ROWS at a time, without a
# server-side cursor's DECLARE, describe, FETCH and CLOSE (three round trips of
# every start-up). Older libpq: a named cursor, fetched _FETCH_ROWS at a time.
CHUNKED = bool(getattr(psycopg, "capabilities", None)) and psycopg.capabilities.has_stream_chunked()
# Rows of one batch kept in memory before the spool moves to a temporary file.
_SPOOL_BYTES = 4 * 1024 * 1024
# `recover`'s transactions hold at most this many runs unless --batch-size says
# otherwise: each one's memory, locks and time are those of a batch, whatever
# the backlog (one transaction for 9M runs hit PostgreSQL's array limit).
DEFAULT_BATCH_SIZE = 5000
# What remains after a bound stopped recovery is counted up to this many runs
# per table ("at least N"): saying it must not cost as much as the backlog.
REMAINING_CAP = 100_000
# Counting what remains is only tried with at least this much of the bound left.
_LEAST_COUNT_SECONDS = 0.05

_CHECKS = """
SELECT pg_catalog.pg_is_in_recovery() AS standby,
       %(older_than)s::interval OPERATOR(pg_catalog.<=) '0'::interval AS not_positive,
       pg_catalog.now() OPERATOR(pg_catalog.-) %(older_than)s::interval AS cutoff,
       pg_catalog.to_regproc('stuck_runs_coverage_problems') IS NOT NULL AS reports,
       pg_catalog.to_regproc('_stuck_runs_lost') IS NOT NULL AS lost_known
"""
# Which option a value the server rejected came from, by the parameter its message names.
_PARAMETER_OPTIONS = {
    "older_than": "--older-than",
    "max_runs": "--limit/--batch-size",
    "max_attempts": "--max-attempts",
    "instance": "--instance",
}


@dataclass
class Request:
    """What to recover and how: the options `recover` and `start` share."""

    older_than: str | None = None
    max_runs: int | None = None
    batch_size: int | None = None
    max_attempts: int | None = None
    # The application instance this deploy step restarts: its first batch ends
    # that instance's earlier lives and recovers their runs at once.
    instance: str | None = None
    dry_run: bool = False
    as_json: bool = False
    connect_timeout: float = 5.0
    statement_timeout: float = 30.0


@dataclass
class Outcome:
    """What a recovery committed, for its closing line and exit status."""

    count: int = 0
    requeued: int = 0
    backlog: bool = False
    # How many stuck runs a bound left behind (None: not counted), and whether
    # that is only a lower bound (REMAINING_CAP reached).
    remaining: int | None = None
    remaining_capped: bool = False
    table_faults: int = 0
    # Registered tables that still exist but are no longer covered (report_coverage()).
    lost: list[str] = field(default_factory=list)
    # Rows the open transaction returned (not committed yet), and rows of
    # transactions that did not commit: never shown, never counted as recovered.
    pending: int = 0
    rolled_back: int = 0
    seen_header: bool = field(default=False, repr=False)

    def fault(self, message: str) -> None:
        self.table_faults += " was not swept: " in message

    def committed(self) -> str | None:
        """Said after a failure: what did commit, and that the rest did not."""
        lost = self.pending + self.rolled_back
        if not self.count and not lost:
            return None
        return f"{self.count} run(s) recovered and committed before that" + (
            f"; {lost} more were returned but not committed, so not recovered" if lost else ""
        )

    def failure(self, command: str = "migrate") -> str | None:
        """What makes the command fail after it recovered what it could, in one line."""
        parts = []
        if self.table_faults:
            parts.append(
                f"{self.table_faults} table(s) could not be swept (see the warnings above); "
                "the others were recovered"
            )
        lost = lost_coverage(self.lost, command)
        if lost:
            parts.append(lost)
        return "; ".join(parts) or None

    def left_behind(self) -> str:
        """What a bound left behind: counted when there was time to count it."""
        if self.remaining is None:
            return "a backlog remains"
        at_least = "at least " if self.remaining_capped else ""
        return f"a backlog remains: {at_least}{self.remaining} stuck run(s)"

    def split(self) -> str:
        if not self.requeued:
            return ""
        return f" ({self.count - self.requeued} failed, {self.requeued} requeued)"


def open_connection(
    target: Target, connect_timeout: float, statement_timeout: float
) -> psycopg.Connection:
    conn = connect(target, connect_timeout=connect_timeout, statement_timeout=statement_timeout)
    conn.row_factory = dict_row  # type: ignore[assignment]
    return conn


# Registered tables recovery no longer covers although a table is there, as SQL
# decides it (_stuck_runs_lost(), which drain_stuck_runs() fails on too). While
# one exists the command fails; an entry whose table is gone for good only warns
# (`unadopt --table NAME` removes it).
_PROBLEMS = "SELECT problem FROM stuck_runs_coverage_problems(%s)"
# Both reports in one round trip: the problems in the order the function
# returns them, then the lost tables that still exist, sorted, as text.
_PROBLEMS_AND_LOST = """
SELECT ARRAY(SELECT p.problem FROM stuck_runs_coverage_problems(%s) AS p) AS problems,
       ARRAY(SELECT l.table_name::text FROM _stuck_runs_lost() AS l
             WHERE l.table_name IS NOT NULL ORDER BY l.table_name) AS lost
"""


def report_coverage(
    conn: psycopg.Connection, target: Target, *, lost_known: bool | None = None
) -> list[str]:
    """One warning line per registered table that is gone or misfit, or uncovered runs table.

    Returns the registered tables that recovery no longer covers and that still
    exist, as regclass prints them: the caller fails on them (lost_coverage()).
    `lost_known` says whether the install has _stuck_runs_lost() (None: ask it),
    so that a caller that already asked spends one round trip here, not three.
    """
    if lost_known is None:
        known = "SELECT pg_catalog.to_regproc('_stuck_runs_lost') IS NOT NULL AS known"
        lost_known = bool(conn.execute(known).fetchone()["known"])
    if not lost_known:  # an install older than 0005: `stuck-runs migrate` brings it
        for row in conn.execute(_PROBLEMS, (target.app_schema,)):
            warn(row["problem"])
        return []
    both = conn.execute(_PROBLEMS_AND_LOST, (target.app_schema,)).fetchone()
    assert both is not None  # one row, always
    for problem in both["problems"]:
        warn(problem)
    return list(both["lost"])


def lost_coverage(tables: list[str], command: str = "migrate") -> str | None:
    """The one error line for registered tables that exist but are no longer covered.

    Why (see the warnings), and the line that adopts them again, keeping what an
    earlier adoption set (`start --adopt` in a start-up line, else `migrate --adopt`).
    """
    if not tables:
        return None
    import shlex  # only a failure needs it

    line = shlex.join(["stuck-runs", command, "--adopt", tables[0]])
    if len(tables) == 1:
        return (
            f"recovery no longer covers {tables[0]}, which still exists (see the warning "
            f"above); adopt it again, as its owner: {line}"
        )
    return (
        f"recovery no longer covers {len(tables)} tables that still exist: "
        f"{', '.join(tables)} (see the warnings above); adopt each again, as its owner, "
        f"e.g.: {line}"
    )


def _show_active(conn: psycopg.Connection, bound: float) -> None:
    """The active runs, as the original design's log shows them, if that takes under `bound`.

    Listing reads every active run (the view sorts them by idle time): with a
    backlog of millions it would use up the statement timeout before the first
    batch. So it has a bound of its own; past it the runner says so and
    recovers. It must be the last statement of its transaction, which only
    reads: a listing cut by its bound ends that transaction (a rollback, with
    nothing to undo) instead of costing a savepoint's two round trips on every
    start-up.
    """
    conn.execute(
        "SELECT pg_catalog.set_config('statement_timeout', %s, true)",
        (f"{max(1, int(bound * 1000))}ms",),
    )
    try:
        rows = conn.execute(
            "SELECT a.*, count(*) OVER () AS active FROM active_runs AS a "
            "ORDER BY a.idle DESC, a.table_name, a.run_id LIMIT %s",
            (ACTIVE_LINES_SHOWN,),
        ).fetchall()
    except psycopg.errors.QueryCanceled:
        note(
            f"Listing the active runs takes longer than {bound:g} s (a big backlog, or a "
            "locked table): recovering without the list"
        )
        raise psycopg.Rollback() from None  # the enclosing transaction, which only read
    active = rows[0]["active"] if rows else 0
    note(f"Found {active} active run(s) in database" + (":" if rows else ""))
    for row in rows:
        click.echo(output.active_line(row), err=True)
    if active > len(rows):
        click.echo(f"  ... and {active - len(rows)} more", err=True)


def _recover_call(older_than: str | None, *, start: bool = False) -> str:
    """The statement is fixed text; option values only ever travel as parameters.

    Every argument is given, typed: an exact match, which no overload planted
    beside the function (a schema others may create in) can beat or make ambiguous.
    With `start` (the first batch of `--instance NAME`) it is stuck_runs_start()
    with no life of its own: a deploy step that runs before the app ends every
    earlier life of NAME, so their runs are recovered in this very batch,
    whatever their idle time; the batches after it are plain recoveries.
    """
    threshold = "_stuck_runs_threshold()" if older_than is None else "%(older_than)s::interval"
    if start:
        return (
            "SELECT * FROM stuck_runs_start(%(instance)s::text, NULL::text, "
            f"{threshold}, %(max_runs)s::integer, %(max_attempts)s::integer)"
        )
    return (
        f"SELECT * FROM recover_stuck_runs({threshold}, %(max_runs)s::integer,"
        " %(max_attempts)s::integer)"
    )


def recover_into(
    target: Target,
    settings: Settings,
    request: Request,
    outcome: Outcome,
    *,
    left: Callable[[], float] | None = None,
    on_commit: Callable[[], None] = lambda: None,
) -> None:
    """Recover as `request` says, adding what committed to `outcome`.

    `left` is the start-up bound's remaining time: with it, a batch is not
    started without enough time, and one cut by the bound is a backlog, not an
    error. `on_commit` runs after every committed batch (a rolling deadline).
    """
    params = {
        "older_than": request.older_than,
        "max_runs": request.max_runs,
        "max_attempts": request.max_attempts,
        "instance": request.instance,
    }
    with open_connection(target, request.connect_timeout, request.statement_timeout) as conn:
        print_notices(conn, on_warning=outcome.fault)
        with pinned(conn, target, request.statement_timeout):
            target = locate(conn, target, settings)
            with option_values("--older-than"):
                checks = conn.execute(_CHECKS, params).fetchone()
            assert checks is not None
            if checks["not_positive"]:
                raise BadOptionValue(
                    "--older-than",
                    f"{request.older_than!r} is not a positive interval: write e.g. '15 minutes'",
                )
            if checks["standby"]:
                raise OperationalError(
                    "the server is a read-only standby (pg_is_in_recovery() is true); "
                    "run recovery against the primary"
                )
            if checks["reports"]:
                outcome.lost = report_coverage(conn, target, lost_known=checks["lost_known"])
            if not request.as_json:
                _show_active(conn, min(LIST_SECONDS, request.statement_timeout / 3))
        pin_transactions(conn, writes=True)  # no standby: every BEGIN from here on says so
        batches = bool(request.batch_size) and not request.dry_run
        start = request.instance is not None  # the first batch begins with the instance's restart
        while True:
            call = dict(params)
            timeout = request.statement_timeout
            if batches:
                assert request.batch_size is not None
                remaining = None if request.max_runs is None else request.max_runs - outcome.count
                call["max_runs"] = (
                    request.batch_size if remaining is None else min(request.batch_size, remaining)
                )
                if left is not None and outcome.count:
                    timeout = min(timeout, left())
                    if timeout < LEAST_BATCH_SECONDS:
                        outcome.backlog = True
                        _count_remaining(conn, target, request, outcome, timeout)
                        return
            try:
                taken = _one_batch(conn, target, call, request, timeout, outcome, start=start)
            except psycopg.errors.QueryCanceled:
                if timeout >= request.statement_timeout:
                    raise
                outcome.backlog = True  # the start-up bound ran out mid-batch
                return
            on_commit()
            start = False
            if not batches:
                return
            if taken < call["max_runs"]:
                return
            if outcome.count == request.max_runs:
                outcome.backlog = True  # --limit stopped it
                _count_remaining(
                    conn,
                    target,
                    request,
                    outcome,
                    request.statement_timeout if left is None else left(),
                )
                return


def _count_remaining(
    conn: psycopg.Connection,
    target: Target,
    request: Request,
    outcome: Outcome,
    timeout: float,
) -> None:
    """Say how many stuck runs a bound left, if that fits in what is left of it.

    Counted up to REMAINING_CAP per table. Any failure (no time, an install
    without the function, a timeout) leaves it uncounted: "a backlog remains".
    """
    if timeout < _LEAST_COUNT_SECONDS:
        return
    threshold = (
        "_stuck_runs_threshold()" if request.older_than is None else "%(older_than)s::interval"
    )
    try:
        with pinned(conn, target, timeout):
            row = conn.execute(
                "SELECT CASE WHEN pg_catalog.to_regproc('_stuck_runs_count_stuck') IS NOT NULL"
                f" THEN _stuck_runs_count_stuck({threshold}, %(cap)s::integer) END AS remaining",
                {"older_than": request.older_than, "cap": REMAINING_CAP},
            ).fetchone()
    except psycopg.Error:
        return
    if row is not None and row["remaining"] is not None:
        outcome.remaining = row["remaining"]
        outcome.remaining_capped = row["remaining"] >= REMAINING_CAP


def _one_batch(
    conn: psycopg.Connection,
    target: Target,
    call: dict,
    request: Request,
    timeout: float,
    outcome: Outcome,
    *,
    start: bool = False,
) -> int:
    """One call of recover_stuck_runs in a transaction of its own; returns how many it took.

    Its rows are printed after COMMIT returned (after the rollback, for a dry
    run, which says "would"): never a line for a run whose change did not last.
    """
    taken = requeued = 0
    with tempfile.SpooledTemporaryFile(_SPOOL_BYTES, mode="w+", encoding="utf-8") as spool:
        try:
            with (
                pinned(conn, target, timeout),
                option_values(_PARAMETER_OPTIONS),
                _batch_rows(conn, _recover_call(request.older_than, start=start), call) as rows,
            ):
                for row in rows:
                    taken += 1
                    requeued += row["action"] == "requeued"
                    line = output.json_line(row) if request.as_json else output.recovered_line(row)
                    spool.write(line + "\n")
                    outcome.pending += 1
                if request.dry_run:
                    raise psycopg.Rollback()
        except BaseException:
            outcome.rolled_back += outcome.pending
            raise
        finally:
            outcome.pending = 0
        if request.dry_run or taken:
            outcome.count += taken
            outcome.requeued += requeued
            if taken and not request.as_json and not outcome.seen_header:
                outcome.seen_header = True
                note(f"{'Would recover' if request.dry_run else 'Recovering'} stuck run(s):")
            _write_out(spool)
    return taken


@contextmanager
def _batch_rows(conn: psycopg.Connection, query: str, params: dict) -> Iterator[Iterator[dict]]:
    """A batch's rows, _FETCH_ROWS per round trip, never all of them in memory at once.

    A batch's rows come over in a few round trips, not one per row or per 100
    rows (psycopg's defaults): a backlog is many batches.
    """
    if not CHUNKED:
        with conn.cursor(name="stuck_runs_recovered") as cur:
            cur.itersize = _FETCH_ROWS
            cur.execute(query, params)
            yield cur  # type: ignore[misc]
        return
    with conn.cursor() as cur:
        rows = cur.stream(query, params, size=_FETCH_ROWS)
        try:
            yield rows  # type: ignore[misc]
        finally:
            rows.close()  # a batch cut short: the rest is discarded before the transaction ends


def _write_out(spool: IO[str]) -> None:
    spool.seek(0)
    shutil.copyfileobj(spool, sys.stdout)
    sys.stdout.flush()


def closing_line(outcome: Outcome, request: Request, budget: float) -> None:
    """The one line that says what happened: counted from what committed."""
    if request.dry_run:
        note(
            f"dry run: {outcome.count} run(s) would be recovered{outcome.split()}; "
            "nothing was changed"
        )
    elif outcome.backlog and request.max_runs is not None and outcome.count == request.max_runs:
        note(
            f"Recovered {outcome.count} stuck run(s){outcome.split()}, the --limit; "
            f"{outcome.left_behind()} for the next run"
        )
    elif outcome.backlog:
        note(
            f"Recovered {outcome.count} stuck run(s){outcome.split()} within the start-up bound "
            f"of {budget:g} s; {outcome.left_behind()} for the next run"
        )
    elif outcome.count:
        note(f"Recovered {outcome.count} stuck run(s){outcome.split()}")
    else:
        note("No stuck runs found")
