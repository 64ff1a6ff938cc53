"""What every command shares: settings, timeout options, and one way to run database work.

Command modules depend on this module and never on each other. `run()` is the
only place where errors become exit codes: one table maps SQLSTATEs to
messages, a value the server rejected becomes a usage error (exit 2), every
other failure one line on stderr (exit 1, or 0 under --fail-open).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeVar

import click
import psycopg
from psycopg.rows import tuple_row

from .connection import (
    INSTALL_MARKERS,
    Deadline,
    OperationalError,
    Target,
    first_line,
    parse_database_url,
    pin,
    run_with_deadline,
)

T = TypeVar("T")

# SQLSTATEs that mean "this option's value is wrong": usage errors (exit 2).
_BAD_VALUE_STATES = {"22007", "22008", "22015", "22023", "22P02"}
# What to add to the server's message, by SQLSTATE ({schema} is stuck-runs' schema).
_NOT_INSTALLED = (
    "stuck-runs is not installed in schema {schema} ({message}); "
    "run `stuck-runs migrate` first (or pass the --schema it was installed in)"
)
_HINTS = {
    "42883": _NOT_INSTALLED,  # undefined function
    "42P01": _NOT_INSTALLED,  # undefined table
    "3F000": _NOT_INSTALLED,  # invalid schema name
    "42501": "{message}; an owner of stuck-runs can print every GRANT this role needs: "
    "SELECT * FROM {schema}.stuck_runs_grant_sql('<role>')",
    "57014": "{message} (raise --statement-timeout if the database is just slow)",
    "25006": "the server is a read-only standby; run recovery against the primary",
}
_BARE_NUMBER = re.compile(r"\s*[-+]?\d+(\.\d*)?\s*")
# A unit word (minutes, P1D, 1e3 which PostgreSQL refuses itself) or hh:mm[:ss].
_UNIT = re.compile(r"[A-Za-z:]")


class BadOptionValue(Exception):
    """The server rejected an option's value: a usage error, not an outage."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass
class Settings:
    """The group's options: which database, which direct URL, which schema."""

    database_url: str | None
    direct_url: str | None
    schema: str
    schema_given: bool

    def target(self) -> Target:
        """The application's URL, pooled or not: for recover, list and resume."""
        if not self.database_url:
            raise click.UsageError("no database: pass --database-url URL or set DATABASE_URL")
        return parse_database_url(self.database_url, schema=self.schema)

    def session_target(self, command: str) -> Target:
        """A URL that gives a session of our own: the direct URL when there is one.

        The application's schema still comes from DATABASE_URL when DIRECT_URL names none.
        """
        if not self.direct_url:
            target = self.target()
            if target.pooled:
                raise OperationalError(
                    f"`{command}` needs a session of its own, and DATABASE_URL goes through a "
                    "transaction pooler (pgbouncer=true): set --direct-url / DIRECT_URL to the "
                    "unpooled URL"
                )
            return target
        direct = parse_database_url(self.direct_url, schema=self.schema)
        if not self.database_url:
            return direct
        app = parse_database_url(self.database_url)
        return replace(
            direct,
            app_schema=direct.app_schema if "schema=" in self.direct_url else app.app_schema,
            secrets=direct.secrets + app.secrets,
        )


def note(message: str) -> None:
    """Messages go to stderr; stdout carries only data."""
    click.echo(f"[stuck-runs] {message}", err=True)


# Warnings said in this command (cli.main starts each command with an empty set).
WARNED: set[str] = set()


def warn(message: str) -> None:
    """One line per distinct warning: the SQL and the runner may both report a lost table."""
    if message in WARNED:
        return
    WARNED.add(message)
    click.echo(f"stuck-runs: warning: {message}", err=True)


def one_line(message: str) -> str:
    """Lines joined, and bytes that are not UTF-8 shown as escapes instead of a traceback."""
    message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def fail(message: str, *, fail_open: bool) -> NoReturn:
    """Report an operational error in one line; exit 1, or 0 under --fail-open."""
    message = one_line(message)
    if fail_open:
        message += " (--fail-open: continuing without recovery)"
    click.echo(f"stuck-runs: error: {message}", err=True)
    sys.exit(0 if fail_open else 1)


def describe(exc: psycopg.Error, schema: str) -> str:
    """One line for an error the server raised, with what to do where we know it."""
    message = exc.diag.message_primary or first_line(exc)
    hint = _HINTS.get(exc.sqlstate or "")
    if hint:
        return hint.format(message=message, schema=schema)
    if exc.diag.message_hint:
        return f"{message} ({exc.diag.message_hint})"
    return message


def install_refused(exc: psycopg.Error, schema: str) -> str:
    """Permission denied while installing: what would allow it.

    Not stuck_runs_grant_sql(), which is what recover needs, and which does
    not exist before the first install.
    """
    return (
        f"{exc.diag.message_primary or first_line(exc)}; installing needs CREATE on the "
        f"database, or a schema {schema} that this role owns (as a superuser: CREATE "
        f"SCHEMA {schema} AUTHORIZATION <role>), or a role that may install"
    )


def run(
    settings: Settings,
    work: Callable[[Target], T],
    *,
    fail_open: bool = False,
    deadline: float | Deadline | None = None,
    session: str | None = None,
    progress: Callable[[], str | None] = lambda: None,
) -> T:
    """Run a command's database work within its time bounds; map every failure once.

    `session` names a command that needs a session of its own (the direct URL).
    The URL is parsed in here too, so a malformed one is one line, and nothing
    under --fail-open. `progress` says what was done (committed) before a
    failure, so that the one line never hides it.
    """
    target: Target | None = None

    def failed(message: str) -> NoReturn:
        message = target.redact(message) if target else message
        done = progress()
        fail(f"{message}; {done}" if done else message, fail_open=fail_open)

    try:
        target = settings.session_target(session) if session else settings.target()
        bound = target
        if deadline is None:
            return work(bound)
        return run_with_deadline(lambda: work(bound), deadline)
    except BadOptionValue as exc:
        if fail_open:
            failed(f"invalid value for {exc.option}: {exc}")
        redact = target.redact if target else str
        raise click.BadParameter(redact(str(exc)), param_hint=exc.option) from None
    except OperationalError as exc:
        failed(str(exc))
    except psycopg.Error as exc:
        schema = target.schema if target else settings.schema
        message = describe(exc, schema)
        if session == "migrate" and exc.sqlstate == "42501":
            message = install_refused(exc, schema)
        failed(message)
    except UnicodeError as exc:
        # Bytes that are not UTF-8 in an option, a variable or a run id.
        failed(f"a value is not valid UTF-8: {first_line(exc)}")


@contextmanager
def option_values(option: str | dict[str, str]) -> Iterator[None]:
    """The server's verdict on an option's value becomes a usage error; others pass.

    `option` may map the SQL parameter names a message can name to options,
    so that the error names the one option that was wrong.
    """
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate in _BAD_VALUE_STATES:
            message = exc.diag.message_primary or str(exc)
            if isinstance(option, dict):
                named = [opt for parameter, opt in option.items() if parameter in message]
                option = named[0] if named else next(iter(option.values()))
            raise BadOptionValue(option, message) from None
        raise


def interval_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """`--older-than 15` is not 15 seconds: an interval needs its unit.

    The suggestion is a value that is accepted: never '0 minutes' or '-5 minutes'.
    """
    if value is not None and _BARE_NUMBER.fullmatch(value):
        if float(value) > 0:
            raise click.BadParameter(f"{value!r} has no unit: write e.g. '{value.strip()} minutes'")
        raise click.BadParameter(
            f"{value!r} is not a positive interval with a unit: write e.g. '15 minutes'"
        )
    if value is not None and value.strip() and not _UNIT.search(value):
        # '@ 30', '+30 ': PostgreSQL reads a number without a unit as seconds.
        raise click.BadParameter(f"{value!r} has no unit: write e.g. '15 minutes'")
    return value


def instance_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--instance NAME, for the commands a deploy step runs before the app (recover, start).

    The app's own start-up (stuck_runs_start with a life of its own) ends its
    earlier lives too; this ends them one step sooner, before the app is up,
    so that the runs a killed process left are recovered by the deploy itself.
    """

    def checked(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        # stuck_runs_start() says the same, but only after the active runs were listed:
        # a usage error is refused before anything is read (one line under --fail-open).
        if value is not None and not 1 <= len(value) <= 200:
            raise click.BadParameter("instance must be a name of 1 to 200 characters")
        return value

    return click.option(
        "--instance",
        envvar="STUCK_RUNS_INSTANCE",
        metavar="NAME",
        callback=checked,
        help="The application instance this deploy restarts (a pod or host name, 'web'): "
        "every earlier life of NAME ends, and the runs it owned are recovered now, whatever "
        "their idle time. Env: STUCK_RUNS_INSTANCE.",
    )(func)


def index_timeout_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--index-timeout, for the commands that build sweep indexes (migrate, adopt)."""
    return click.option(
        "--index-timeout",
        type=click.FloatRange(min=0.1),
        default=300.0,
        show_default=True,
        envvar="STUCK_RUNS_INDEX_TIMEOUT",
        metavar="SECONDS",
        help="Longest a sweep index may take to build (CREATE INDEX CONCURRENTLY waits for "
        "older transactions); past it the build is left for the next run. "
        "Env: STUCK_RUNS_INDEX_TIMEOUT.",
    )(func)


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


def print_notices(
    conn: psycopg.Connection,
    on_warning: Callable[[str], None] | None = None,
    *,
    skip: tuple[str, ...] = (),
) -> None:
    """Show stuck-runs' own NOTICEs and WARNINGs (adoption, a table recovery skipped) on stderr.

    Only ours: what else the server says on the way (a shutdown notice) is
    not a line of the command's report; nor is a notice containing one of
    `skip` (advice to do what the command itself does next).
    """

    def show(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if not text.startswith("stuck-runs: ") or any(s in text for s in skip):
            return
        text = text.removeprefix("stuck-runs: ")
        if diag.severity_nonlocalized == "WARNING":
            warn(text)
            if on_warning:
                on_warning(text)
        else:
            note(text)

    conn.add_notice_handler(show)


# One round trip: which of the two candidate schemas hold stuck-runs (by its own
# bookkeeping, connection.INSTALL_MARKERS), and may we use them.
_LOCATE = """
SELECT n.nspname::text AS schema,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
          AND c.relname = ANY(%(markers)s::text[]))
         = pg_catalog.cardinality(%(markers)s::text[]) AS installed,
       pg_catalog.has_schema_privilege(n.oid, 'USAGE') AS usable,
       CURRENT_USER::text AS username
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname = ANY (%(candidates)s::text[])
"""


def locate(conn: psycopg.Connection, target: Target, settings: Settings) -> Target:
    """Where stuck-runs is: its own schema, or where 0.1 put it (the app's schema).

    Runs inside the command's first transaction and, when the answer is not
    the schema that transaction was pinned to, pins it again. An install made
    by 0.1 keeps working without --schema; each command says how to move it.
    An explicit --schema is taken as given. A role without USAGE on the schema
    would only hear "not installed": it is told what it lacks instead.
    """
    candidates = [target.schema]
    if not settings.schema_given and target.app_schema != target.schema:
        candidates.append(target.app_schema)
    with conn.cursor(row_factory=tuple_row) as cur:
        params = {"candidates": candidates, "markers": INSTALL_MARKERS}
        rows = {r[0]: r[1:] for r in cur.execute(_LOCATE, params)}
    legacy = rows.get(target.app_schema, (False,))[0] if len(candidates) > 1 else False
    if legacy and not rows.get(target.schema, (False,))[0]:
        note(
            f"stuck-runs is installed in the application's schema {target.app_schema!r} (by "
            f"stuck-runs 0.1); move it into schema {target.schema!r}, keeping its audit, "
            "settings and registry, with: stuck-runs migrate --relocate"
        )
        target = target.in_schema(target.app_schema)
        pin(conn, target)
    found = rows.get(target.schema)
    if found is not None and not found[1]:
        raise OperationalError(
            f"role {found[2]!r} may not use schema {target.schema!r}, where stuck-runs lives; an "
            "owner of stuck-runs can print every GRANT the role needs: "
            f"SELECT * FROM {target.schema}.stuck_runs_grant_sql({found[2]!r})"
        )
    return target
