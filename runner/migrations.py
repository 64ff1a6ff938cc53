"""Applying the SQL history in migrations/ with yoyo, safely from many app instances.

Imported only by `stuck-runs migrate` and `demo`: `recover` must start fast and
never pays for yoyo's import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .connection import Target, connect

_HERE = Path(__file__).resolve().parent


def _resource_dir(name: str) -> Path:
    """Find migrations/ or sql/: runner/data/ in an installed wheel, else the source tree."""
    for candidate in (_HERE / "data" / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"stuck-runs is installed without its {name}/ directory")


def migrations_dir() -> Path:
    return _resource_dir("migrations")


def sql_dir() -> Path:
    return _resource_dir("sql")


def _backend_class(open_connection: Callable[[], psycopg.Connection]) -> type:
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend

    class Backend(PostgresqlPsycopgBackend):
        """yoyo's psycopg 3 backend on our connection: timeouts, schema, no password in its URI."""

        def connect(self, dburi: object) -> psycopg.Connection:
            conn = open_connection()
            conn.autocommit = True
            return conn

        def init_connection(self, connection: psycopg.Connection) -> None:
            """The schema is a session setting of our connection already."""

    return Backend


@contextmanager
def yoyo_backend(
    target: Target, *, connect_timeout: float = 10, statement_timeout: float = 60
) -> Iterator[Any]:
    """A ready yoyo backend on our connections (also used by tests to roll back)."""
    from yoyo.connections import DatabaseURI

    def open_connection() -> psycopg.Connection:
        return connect(
            target,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            autocommit=True,
        )

    # No credentials in the URI: yoyo pickles and may print it.
    uri = DatabaseURI("postgresql+psycopg", None, None, None, None, "stuck-runs", {})
    backend = _backend_class(open_connection)(uri, "_yoyo_migration")
    try:
        backend.init_database()
        yield backend
    finally:
        backend.connection.close()


def read_history() -> Any:
    """Every migration in migrations/, as yoyo reads them."""
    from yoyo import read_migrations

    return read_migrations(str(migrations_dir()))


def apply_migrations(
    target: Target,
    *,
    connect_timeout: float,
    statement_timeout: float,
    lock_timeout: float,
    on_apply: Callable[[str], None] = lambda _id: None,
) -> list[str]:
    """Apply every pending migration and return their ids.

    Several instances starting at once queue on a session advisory lock: unlike
    yoyo's lock row, it is released by the server if a migrator dies.
    """
    with connect(
        target,
        connect_timeout=connect_timeout,
        statement_timeout=statement_timeout,
        autocommit=True,
    ) as lock_conn:
        schema = target.schema
        if schema:
            exists = lock_conn.execute(
                "SELECT true FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if not exists:
                lock_conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
        lock_conn.execute(
            "SELECT set_config('lock_timeout', %s, false)", (f"{int(lock_timeout * 1000)}ms",)
        )
        lock_conn.execute(
            "SELECT pg_advisory_lock(hashtext('stuck-runs migrate ' || current_schema()))"
        )
        lock_conn.execute("SELECT set_config('lock_timeout', '0', false)")

        with yoyo_backend(
            target, connect_timeout=connect_timeout, statement_timeout=statement_timeout
        ) as backend:
            applied = []
            for migration in backend.to_apply(read_history()):
                backend.apply_one(migration)
                applied.append(migration.id)
                on_apply(migration.id)
            return applied
