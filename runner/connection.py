"""Turning a user's database URL into a bounded psycopg connection.

Application URLs are not libpq URLs: Prisma adds `?schema=` and pool options
that libpq rejects, Heroku-style hosts write `postgres://`. We accept what psql
accepts (URLs, `key=value` strings, libpq's PG* environment), read Prisma's
options, drop what libpq does not know, and never let the password reach any
output.

Nothing the runner does may outlive its transaction on the server: behind a
transaction pooler (PgBouncer, Supavisor) the next transaction may run on
another server connection, and ours serves other clients afterwards. So
`recover`, `list` and `resume` set search_path and statement_timeout with
`set_config(..., true)` inside each transaction and never prepare statements
on the server. `migrate`, `adopt` and `schedule` need a session of their own
(advisory locks, CREATE INDEX CONCURRENTLY, yoyo's several transactions): they
use the direct URL when there is one and refuse a URL that says it is pooled.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TypeVar
from urllib.parse import unquote

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

T = TypeVar("T")

DEFAULT_SCHEMA = "stuck_runs"
# The application's schema when its URL names none: where Prisma puts its tables.
DEFAULT_APP_SCHEMA = "public"
# yoyo's table of applied migrations, in stuck-runs' schema.
MIGRATION_TABLE = "_yoyo_migration"
# A schema holds an install when it holds these tables, side by side: the
# install's own bookkeeping, never a function name (an application may have a
# recover_stuck_runs of its own, and 0.1 put stuck-runs in the app's schema).
INSTALL_MARKERS = [MIGRATION_TABLE, "stuck_runs_settings"]
_LIBPQ_KEYWORDS = frozenset(c.keyword.decode() for c in pq.Conninfo.get_defaults())
# Patterns, not compiled ones: re compiles (and caches) them at first use, so a
# start-up that redacts nothing does not pay for compiling them.
# user:password@ up to the last `@` of the line: an unencoded `@` or space in
# the password must not leave its tail behind.
_URL_CREDENTIALS = r"(://[^:/@\s]*:).*@"
_URL_USERINFO = r"(?is)^[a-z]+://[^:/@\s]*:(.*)@"
_KV_PASSWORD = r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)"
_TRUE = {"true", "1", "yes", "on"}


class OperationalError(Exception):
    """An expected failure: reported as one line on stderr, exit status 1."""


class ConnectFailed(OperationalError):
    """No connection could be made: nothing else this process tries there will work either."""


class DeadlineExceeded(OperationalError):
    """The database did not answer within the command's time bounds."""


@dataclass(frozen=True)
class Target:
    """Where to connect, where stuck-runs lives, and where the application's tables are."""

    conninfo: str
    # The schema stuck-runs is installed in (--schema, default stuck_runs).
    schema: str = DEFAULT_SCHEMA
    # The application's schema: Prisma's ?schema=, else public. Table names resolve here.
    app_schema: str = DEFAULT_APP_SCHEMA
    # The URL says it goes through a transaction pooler (Prisma's ?pgbouncer=true).
    pooled: bool = False
    secrets: tuple[str, ...] = ()

    def redact(self, text: str) -> str:
        """Remove the password from `text`, whatever the error put it in."""
        return _hide(_redact(text), self.secrets)

    def in_schema(self, schema: str) -> Target:
        return replace(self, schema=schema)


def _redact(text: str) -> str:
    return re.sub(_KV_PASSWORD, r"\1***", re.sub(_URL_CREDENTIALS, r"\1***@", text))


def _hide(text: str, secrets: tuple[str, ...]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def url_secrets(url: str) -> tuple[str, ...]:
    """What may be a password in a URL, however malformed, so that no error can print it.

    A password written without percent-encoding may hold spaces or a raw `@`:
    libpq then misreads the URL and its error quotes a piece of it (the part
    after the first `@`). Everything between `user:` and the last `@` is
    taken as secret, and so is each piece of it between `@`s and spaces.
    """
    match = re.match(_URL_USERINFO, url.strip())
    if not match:
        return ()
    secret = match.group(1)
    parts = re.split(r"([@\s]+)", secret)
    # Every run of whole pieces: libpq quotes e.g. the tail after the first `@`.
    pieces = {secret, unquote(secret)} | {
        "".join(parts[i:j])
        for i in range(0, len(parts), 2)
        for j in range(i + 1, len(parts) + 1, 2)
    }
    return tuple(sorted((p for p in pieces if len(p) >= 3), key=len, reverse=True))


def parse_database_url(url: str, *, schema: str = DEFAULT_SCHEMA) -> Target:
    """Read a URL or key=value string with libpq's own rules, keeping Prisma's options apart.

    URL query parameters libpq does not know (schema, pgbouncer, connection_limit,
    pool_timeout, ...) are taken out before libpq sees the URL; the rest is
    passed on byte for byte, so `options=-c%20x%3Dy` stays what the user wrote.
    """
    url = url.strip()
    app_schema: str | None = None
    pooled = False
    if re.match(r"^postgres(ql)?://", url):
        base, _, query = url.partition("?")
        kept = []
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            name = unquote(key)
            if name in _LIBPQ_KEYWORDS:
                kept.append(pair)
            elif name == "schema" and value:
                app_schema = unquote(value)
            elif name == "pgbouncer":
                pooled = unquote(value).lower() in _TRUE
        if base.startswith("postgres://"):
            base = "postgresql://" + base[len("postgres://") :]
        conninfo = base + ("?" + "&".join(kept) if kept else "")
    elif "=" in url or not url:
        conninfo = url
    else:
        raise OperationalError(
            "database URL must be a postgresql:// or postgres:// URL or a key=value "
            f"connection string, got {_hide(_redact(url.split('?')[0]), url_secrets(url))!r}"
        )
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        message = _hide(_redact(first_line(exc)), url_secrets(url))
        raise OperationalError(f"invalid database URL: {message}") from None
    secrets = tuple(
        str(s) for s in (params.get("password"), os.environ.get("PGPASSWORD")) if s
    ) + url_secrets(url)
    return Target(
        conninfo=conninfo,
        schema=schema,
        app_schema=app_schema or DEFAULT_APP_SCHEMA,
        pooled=pooled,
        secrets=secrets,
    )


def connect(
    target: Target, *, connect_timeout: float, statement_timeout: float, session: bool = False
) -> psycopg.Connection:
    """Open an autocommit connection whose every wait is bounded.

    Without `session`, nothing is set on the server connection: run the work in
    `pinned()` transactions. With `session` (only on an unpooled connection),
    search_path and statement_timeout are session settings, for yoyo and the
    statements that cannot run inside a transaction.
    """
    try:
        conn = psycopg.connect(
            target.conninfo,
            connect_timeout=max(1, round(connect_timeout)),
            application_name=os.environ.get("PGAPPNAME", "stuck-runs"),
            autocommit=True,
            prepare_threshold=None,
        )
        pin_transactions(conn, writes=session)
    except psycopg.Error as exc:
        raise ConnectFailed(
            f"could not connect to the database: {target.redact(first_line(exc))}"
        ) from None
    if session:
        try:
            row = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
            if row is None or row[0] != conn.info.backend_pid:
                # A pooler hands out a key of its own at connect time: the backend
                # that answers is not the one we were told about.
                raise OperationalError(
                    "this command needs a session of its own, and the database URL goes "
                    "through a transaction pooler: set --direct-url / DIRECT_URL to the "
                    "unpooled URL"
                )
            conn.execute(_SETTINGS, _settings_params(target, statement_timeout, local=False))
        except psycopg.Error as exc:
            conn.close()
            raise OperationalError(target.redact(first_line(exc))) from None
        except OperationalError:
            conn.close()
            raise
    return conn


# Every setting whose value changes what the runner reads, prints or waits for,
# set by us in each transaction (or session): a database's or role's
# `ALTER ... SET`, PGOPTIONS or a neighbour on a pooled server connection may
# have left anything. IntervalStyle and DateStyle decide whether psycopg can
# parse intervals and dates at all; client_min_messages whether we hear the
# WARNINGs of a table that was not swept; lock_timeout 0 leaves waits to
# statement_timeout (and the SQL's own per-table bounds). lc_messages needs a
# superuser: nothing here reads the server's message text, only SQLSTATEs and
# severity_nonlocalized. Read-write and the isolation level are given on BEGIN
# (`pin_transactions`), where a SET would come too late.
#
# search_path: only stuck-runs' schema (pg_catalog is searched before it,
# implicitly; pg_temp last): the application's schema is never on the path, so
# nothing a co-tenant creates there is picked up, and unqualified CREATEs of
# the migrations land in ours.
_SETTINGS = (
    "SELECT pg_catalog.set_config(s.name, s.value, %(local)s) FROM (VALUES"
    " ('search_path', pg_catalog.quote_ident(%(schema)s) OPERATOR(pg_catalog.||) ', pg_temp'),"
    " ('statement_timeout', %(timeout)s), ('lock_timeout', '0'),"
    " ('IntervalStyle', 'postgres'), ('DateStyle', 'ISO, MDY'), ('TimeZone', 'UTC'),"
    " ('client_min_messages', 'notice'), ('extra_float_digits', '1'),"
    " ('default_transaction_read_only', 'off'),"
    " ('default_transaction_isolation', 'read committed')) AS s(name, value)"
)


def _settings_params(target: Target, statement_timeout: float, *, local: bool) -> dict:
    return {
        "schema": target.schema,
        "timeout": f"{max(1, int(statement_timeout * 1000))}ms",
        "local": local,
    }


def pin_transactions(conn: psycopg.Connection, *, writes: bool = False) -> None:
    """Every BEGIN on `conn` says READ COMMITTED itself, and READ WRITE when it `writes`.

    A `default_transaction_read_only` or `default_transaction_isolation` that
    the database, the role or a pooled neighbour set would otherwise apply
    before any SET of ours could. READ WRITE only once we know the server is
    no standby: there BEGIN READ WRITE itself fails, and recover has a clearer
    word for that.
    """
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    if writes:
        conn.read_only = False


@contextmanager
def pinned(
    conn: psycopg.Connection, target: Target, statement_timeout: float
) -> Iterator[psycopg.Connection]:
    """One transaction whose settings end with it: safe behind a transaction pooler."""
    with conn.transaction():
        conn.execute(_SETTINGS, _settings_params(target, statement_timeout, local=True))
        yield conn


def pin(conn: psycopg.Connection, target: Target) -> None:
    """Point the current transaction's search_path at target.schema (until it ends)."""
    conn.execute(
        "SELECT pg_catalog.set_config('search_path',"
        " pg_catalog.quote_ident(%s) OPERATOR(pg_catalog.||) ', pg_temp', true)",
        (target.schema,),
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else text


class Deadline:
    """A client-side bound: `seconds` from now, or from the last `extend()`.

    A rolling deadline bounds every wait of a command that may make progress
    for long (recover --batch-size without --fail-open): each committed batch
    extends it, a frozen backend never does.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until = time.monotonic() + seconds

    def left(self) -> float:
        return self.until - time.monotonic()

    def extend(self) -> None:
        self.until = time.monotonic() + self.seconds


def run_with_deadline(work: Callable[[], T], seconds: float | Deadline) -> T:
    """Run `work` in a thread and give up when the deadline passes.

    A server that accepts connections and then never answers (a SIGSTOPped
    postmaster, a black-holed proxy) cannot enforce statement_timeout itself, so
    the bound has to live on the client. The abandoned thread is a daemon: it
    dies with the process, and the server rolls back what it left open.
    """
    deadline = seconds if isinstance(seconds, Deadline) else Deadline(seconds)
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="stuck-runs-db", daemon=True)
    thread.start()
    while thread.is_alive() and deadline.left() > 0:
        thread.join(deadline.left())
    if thread.is_alive():
        raise DeadlineExceeded(f"the database did not answer within {deadline.seconds:g} s")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]
