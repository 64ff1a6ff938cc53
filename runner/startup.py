"""`stuck-runs start`: the one start-up line. Install or upgrade, adopt, recover; never block.

A chain such as `stuck-runs migrate && stuck-runs recover --fail-open` stops
the app's start when `migrate` fails (`&&`, `set -e`), and each link has a
bound of its own. `start` is one process with one total bound (--timeout,
15 s by default) that holds whatever the database does: down, hung, frozen,
a wrong password, the migrate lock held by another instance, an old
transaction in front of the sweep index build. It exits 0 whatever went wrong
(unless --strict), after one line that says what, so `stuck-runs start &&
exec your-app` always reaches the app.

What goes wrong on the way is handled where it happens: no connection at all
ends the command (recovery could not connect either); install trouble (the
lock held, no right to install, a pooled URL without DIRECT_URL) is one
warning, and recovery goes on with what is installed; an index build that
does not fit in the bound is left for the next start or `stuck-runs migrate`.
"""

from __future__ import annotations

import click
import psycopg

from .connection import ConnectFailed, Deadline, OperationalError, Target
from .context import (
    BadOptionValue,
    Settings,
    describe,
    fail,
    install_refused,
    instance_option,
    interval_option,
    note,
    run,
    warn,
)
from .installer import Plan, install
from .registry import column_options
from .sweep import Outcome, Request, closing_line, recover_into

# Of the total bound, what install and adoption may use at most leaves this
# much (or a third of the bound, if less) for recovery.
_RECOVERY_RESERVE = 5.0
# Below this, recovery is not worth starting: say so instead.
_LEAST_RECOVERY = 0.5


@click.command()
@click.option(
    "--adopt",
    "table",
    metavar="TABLE",
    help="Make sure the application's runs table TABLE is adopted (the proposed mapping "
    "unless --column says otherwise); changes nothing when it already is.",
)
@column_options
@click.option(
    "--older-than",
    envvar="STUCK_RUNS_OLDER_THAN",
    metavar="INTERVAL",
    callback=interval_option,
    help="No sign of life for longer than this means stuck. Default: the database's "
    "threshold (stuck_runs_settings). Env: STUCK_RUNS_OLDER_THAN.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=2**31 - 1),
    default=1000,
    show_default=True,
    envvar="STUCK_RUNS_BATCH_SIZE",
    metavar="N",
    help="Recover in transactions of at most N runs, so that a backlog too big for the "
    "bound is recovered over several starts, each keeping what it committed. "
    "Env: STUCK_RUNS_BATCH_SIZE.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=0, max=2**31 - 1),
    envvar="STUCK_RUNS_MAX_ATTEMPTS",
    metavar="N",
    help="Requeue a stuck run that has had fewer than N retries; fail the others. "
    "Env: STUCK_RUNS_MAX_ATTEMPTS.",
)
@instance_option
@click.option(
    "--timeout",
    "total",
    type=click.FloatRange(min=2),
    default=15.0,
    show_default=True,
    envvar="STUCK_RUNS_START_TIMEOUT",
    metavar="SECONDS",
    help="The whole command ends within this, whatever the database does. "
    "Env: STUCK_RUNS_START_TIMEOUT.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=1),
    default=5.0,
    show_default=True,
    envvar="STUCK_RUNS_CONNECT_TIMEOUT",
    metavar="SECONDS",
    help="Longest to wait for a connection (within --timeout). Env: STUCK_RUNS_CONNECT_TIMEOUT.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 on a database error and 2 on a usage error, instead of 0 (for CI, not for "
    "an app's start).",
)
@click.pass_obj
def start(
    settings: Settings,
    table: str | None,
    columns: dict[str, str | None],
    time_zone: str | None,
    older_than: str | None,
    batch_size: int,
    max_attempts: int | None,
    instance: str | None,
    total: float,
    connect_timeout: float,
    strict: bool,
) -> None:
    """Install or upgrade, adopt TABLE, recover stuck runs: the app's start-up line.

    Ends within --timeout (15 s) whatever happens, and exits 0 even when the
    database is down, hung or misconfigured (one line on stderr says what),
    so the app always starts. Reads DATABASE_URL and DIRECT_URL from .env
    when the environment has none. The threshold is --older-than, else
    STUCK_RUNS_OLDER_THAN, else the database's setting.

    \b
    Examples:
      stuck-runs start && exec node server.js
      "prestart": "prisma migrate deploy && stuck-runs start --adopt qualification_runs"
    """
    if columns and not table:
        raise click.UsageError("--column needs --adopt TABLE")
    fail_open = not strict
    deadline = Deadline(total)
    connect_timeout = min(connect_timeout, max(1.0, total / 3))
    reserve = min(_RECOVERY_RESERVE, total / 3)
    plan = Plan(
        connect_timeout=connect_timeout,
        statement_timeout=total,
        # Another instance migrating usually finishes in a second or two; one
        # that holds the lock longer is not waited for (recovery goes on).
        lock_timeout=max(1.0, (total - reserve) / 2),
        index_timeout=total,
        table=table,
        columns=columns,
        time_zone=time_zone,
        command="start",
        deadline=deadline,
        reserve=reserve,
    )
    outcome = Outcome()
    request = Request(
        older_than=older_than,
        batch_size=batch_size,
        max_attempts=max_attempts,
        instance=instance,
        connect_timeout=connect_timeout,
    )

    def work(target: Target) -> None:
        _install_step(settings, plan)
        left = deadline.left()
        if left < _LEAST_RECOVERY:
            raise OperationalError(f"no time left for recovery within the {total:g} s bound")
        request.statement_timeout = max(0.1, left - 0.3)
        try:
            recover_into(target, settings, request, outcome, left=lambda: deadline.left() - 0.3)
        except psycopg.errors.QueryCanceled:
            raise OperationalError(
                f"recovery did not finish within the start-up bound of {total:g} s and was "
                "rolled back; a smaller --batch-size recovers a big backlog over several starts"
            ) from None

    run(settings, work, fail_open=fail_open, deadline=deadline, progress=outcome.committed)
    closing_line(outcome, request, total)
    failure = outcome.failure("start")
    if failure:
        fail(failure, fail_open=fail_open)


def _install_step(settings: Settings, plan: Plan) -> None:
    """Install, upgrade and adopt as far as the bound allows; only no connection is fatal."""
    target: Target | None = None
    try:
        target = settings.session_target("start")
        applied, _ = install(target, settings, plan)
        if applied:
            note(f"{len(applied)} migration(s) applied")
        return
    except ConnectFailed:
        if not settings.direct_url:
            raise  # DATABASE_URL itself: recovery could not connect either
        message = "could not connect with DIRECT_URL: install and upgrade skipped"
    except psycopg.errors.LockNotAvailable:
        message = (
            "another instance holds the migrate lock (it is installing or upgrading): "
            "this start recovers without waiting for it"
        )
    except psycopg.errors.QueryCanceled:
        message = (
            "install or upgrade did not finish within the start-up bound; it is left for the "
            "next start or `stuck-runs migrate`"
        )
    except psycopg.Error as exc:
        why = (
            install_refused(exc, settings.schema)
            if exc.sqlstate == "42501"
            else describe(exc, settings.schema)
        )
        message = f"install or upgrade skipped: {why}"
    except BadOptionValue as exc:  # --adopt names no table, --column an unknown role
        message = f"not adopted ({exc.option}): {exc}; recovery covers what was adopted before"
    except OperationalError as exc:
        message = str(exc) if "looks like its" in str(exc) else f"install skipped: {exc}"
    warn(target.redact(message) if target else message)
