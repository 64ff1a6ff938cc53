"""Turning a user's database URL into a bounded psycopg connection.

Application URLs are not libpq URLs: Prisma adds `?schema=` (and pool options
libpq rejects), Heroku-style hosts write `postgres://`. We accept what an app's
DATABASE_URL holds, use `schema` as the search path, drop what libpq does not
know, and never let the password reach any output.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import pq

T = TypeVar("T")

_LIBPQ_KEYWORDS = frozenset(c.keyword.decode() for c in pq.Conninfo.get_defaults())
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


class OperationalError(Exception):
    """An expected failure: reported as one line on stderr, exit status 1."""


class DeadlineExceeded(OperationalError):
    """The database did not answer within the command's time bounds."""


@dataclass(frozen=True)
class Target:
    """Where to connect: a libpq URL plus the schema the app's URL asked for."""

    conninfo: str
    schema: str | None
    password: str | None

    def redact(self, text: str) -> str:
        """Remove the password from `text`, whatever the error put it in."""
        text = _URL_CREDENTIALS.sub(r"\1***@", text)
        if self.password:
            text = text.replace(self.password, "***")
        return text


def parse_database_url(url: str) -> Target:
    """Accept postgres:// and postgresql:// URLs, including Prisma's query options."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise OperationalError(
            "database URL must start with postgresql:// or postgres://, got "
            f"{_redact_url(url.split('?')[0])!r}"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema" and v), None)
    kept = [(k, v) for k, v in query if k in _LIBPQ_KEYWORDS]
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), ""))
    password = None
    try:
        password = psycopg.conninfo.conninfo_to_dict(conninfo).get("password")
    except psycopg.Error as exc:
        raise OperationalError(f"invalid database URL: {_redact_url(str(exc))}") from None
    return Target(conninfo=conninfo, schema=schema, password=str(password) if password else None)


def _redact_url(text: str) -> str:
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def connect(
    target: Target,
    *,
    connect_timeout: float,
    statement_timeout: float,
    autocommit: bool = False,
) -> psycopg.Connection:
    """Open a connection whose every wait is bounded.

    The schema and the statement timeout are session settings here (yoyo's
    migrations need them across transactions); `recover` and `list` run in a
    single transaction, so a transaction-pooling PgBouncer sees them too.
    """
    try:
        conn = psycopg.connect(
            target.conninfo,
            connect_timeout=max(1, round(connect_timeout)),
            application_name="stuck-runs",
            autocommit=True,
        )
    except psycopg.Error as exc:
        raise OperationalError(
            f"could not connect to the database: {target.redact(_first_line(exc))}"
        ) from None
    try:
        if target.schema:
            conn.execute(
                "SELECT set_config('search_path', quote_ident(%s), false)", (target.schema,)
            )
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)",
            (f"{int(statement_timeout * 1000)}ms",),
        )
    except psycopg.Error as exc:
        conn.close()
        raise OperationalError(target.redact(_first_line(exc))) from None
    conn.autocommit = autocommit
    return conn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else text


def describe_error(exc: psycopg.Error, target: Target) -> str:
    """One line for an error the server raised, with a hint where we know one."""
    state = exc.sqlstate or ""
    diag = exc.diag
    message = diag.message_primary or _first_line(exc)
    if state in ("42883", "42P01"):
        where = f"schema {target.schema!r}" if target.schema else "this database"
        message = (
            f"stuck-runs is not installed in {where} ({message}); run `stuck-runs migrate` first"
        )
    elif state == "42501":
        message = (
            f"{message}; the role needs EXECUTE on the stuck-runs functions "
            "(GRANT EXECUTE ON FUNCTION recover_stuck_runs TO <role>) and rights on its tables"
        )
    elif state == "57014":
        message = f"{message} (raise --statement-timeout if the database is just slow)"
    elif state == "25006":
        message = "the server is a read-only standby; run recovery against the primary"
    elif diag.message_hint:
        message = f"{message} ({diag.message_hint})"
    return target.redact(message)


def run_with_deadline(work: Callable[[], T], seconds: float) -> T:
    """Run `work` in a thread and give up after `seconds`.

    A server that accepts connections and then never answers (a SIGSTOPped
    postmaster, a black-holed proxy) cannot enforce statement_timeout itself, so
    the bound has to live on the client. The abandoned thread is a daemon: it
    dies with the process.
    """
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="stuck-runs-db", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise DeadlineExceeded(f"the database did not answer within {seconds:g} s")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]
