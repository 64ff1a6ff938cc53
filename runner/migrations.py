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

from .connection import OperationalError, Target, connect

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
            return open_connection()

        def init_connection(self, connection: psycopg.Connection) -> None:
            """The schema is a session setting of our connection already."""

    return Backend


@contextmanager
def yoyo_backend(
    target: Target, *, connect_timeout: float = 10, statement_timeout: float = 60
) -> Iterator[Any]:
    """A ready yoyo backend on our connections (also used by tests to roll back).

    Its bookkeeping tables (_yoyo_migration, yoyo_lock, ...) land in stuck-runs'
    schema like everything else: the session's search_path is that schema only.
    """
    from yoyo.connections import DatabaseURI

    def open_connection() -> psycopg.Connection:
        return connect(
            target,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            session=True,
        )

    with open_connection() as conn:
        ensure_schema(conn, target.schema)
    # No credentials in the URI: yoyo pickles and may print it.
    uri = DatabaseURI("postgresql+psycopg", None, None, None, None, "stuck-runs", {})
    backend = _backend_class(open_connection)(uri, "_yoyo_migration")
    try:
        backend.init_database()
        yield backend
    finally:
        backend.connection.close()


def ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    """Create stuck-runs' schema unless it exists (which needs no CREATE on the database).

    A DBA may create it for the app role (`CREATE SCHEMA stuck_runs AUTHORIZATION
    app`) and grant nothing on the database: then CREATE SCHEMA IF NOT EXISTS
    would still be refused, so it must not be sent. (`SELECT FROM` returns a
    zero-column row, which is falsy: test for None.)
    """
    if (
        conn.execute(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
        is None
    ):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def read_history() -> Any:
    """Every migration in migrations/, as yoyo reads them."""
    from yoyo import read_migrations

    return read_migrations(str(migrations_dir()))


def not_ours_to_install(conn: psycopg.Connection, schema: str) -> str | None:
    """Why this role skips installing into an existing install: None when it should try.

    A role that may not create in stuck-runs' schema (the app role of a
    database a DBA installed) could apply no migration: yoyo would start with
    CREATE TABLE IF NOT EXISTS and be refused at every start. It skips, saying
    nothing when it can see that nothing is pending (or cannot read the
    history, which its grants do not cover), and a warning when something is.
    """
    try:
        with conn.transaction():
            found = conn.execute(
                "SELECT pg_catalog.has_schema_privilege(n.oid, 'CREATE'),"
                " EXISTS (SELECT FROM pg_catalog.pg_proc AS p WHERE p.pronamespace = n.oid"
                "         AND p.proname = 'recover_stuck_runs')"
                " FROM pg_catalog.pg_namespace AS n WHERE n.nspname = %s",
                (schema,),
            ).fetchone()
            if found is None or found[0] or not found[1]:
                return None
            rows = conn.execute(
                sql.SQL("SELECT migration_id FROM {}._yoyo_migration").format(
                    sql.Identifier(schema)
                )
            ).fetchall()
    except psycopg.Error:
        return ""
    pending = sorted({m.id for m in read_history()} - {row[0] for row in rows})
    if not pending:
        return ""
    return (
        f"{len(pending)} migration(s) pending ({', '.join(pending)}), and this role may not "
        f"create in schema {schema}: run `stuck-runs migrate` as its owner"
    )


def apply_migrations(
    target: Target,
    *,
    connect_timeout: float,
    statement_timeout: float,
    lock_timeout: float,
    on_apply: Callable[[str], None] = lambda _id: None,
    relocate_from: str | None = None,
) -> list[str]:
    """Apply every pending migration to target.schema and return their ids.

    Several instances starting at once queue on a session advisory lock: unlike
    yoyo's lock row, it is released by the server if a migrator dies. It is
    released explicitly too, so that nothing stays behind on a server
    connection that outlives ours. `relocate_from` first moves an install made
    by stuck-runs 0.1 in the application's schema into target.schema.
    """
    with connect(
        target, connect_timeout=connect_timeout, statement_timeout=statement_timeout, session=True
    ) as conn:
        conn.execute(
            "SELECT pg_catalog.set_config('lock_timeout', %s, false)",
            (f"{int(lock_timeout * 1000)}ms",),
        )
        key = "stuck-runs migrate " + target.schema
        row = conn.execute(
            "SELECT pg_catalog.pg_backend_pid() FROM pg_catalog.pg_advisory_lock("
            "pg_catalog.hashtext(%s))",
            (key,),
        ).fetchone()
        try:
            conn.execute("SELECT pg_catalog.set_config('lock_timeout', '0', false)")
            if row is None or conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone() != row:
                raise OperationalError(
                    "`migrate` needs a session of its own, and this connection goes through a "
                    "transaction pooler: set --direct-url / DIRECT_URL to the unpooled URL"
                )
            # Under the lock: two first installs at once must not race to create it.
            ensure_schema(conn, target.schema)
            if relocate_from is not None:
                relocate(conn, relocate_from, target.schema)
            with yoyo_backend(
                target, connect_timeout=connect_timeout, statement_timeout=statement_timeout
            ) as backend:
                applied = []
                for migration in backend.to_apply(read_history()):
                    backend.apply_one(migration)
                    applied.append(migration.id)
                    on_apply(migration.id)
                return applied
        finally:
            if not conn.closed and not conn.broken:
                conn.execute(
                    "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext(%s))", (key,)
                )


# Everything stuck-runs 0.1 created in the application's schema, except the
# built-in qualification_runs table: the application writes to that one by
# name, so it stays where it is (and stays covered: the registry holds its oid).
_RELOCATE = r"""
DO $relocate$
DECLARE
    src  text := pg_catalog.current_setting('stuck_runs.relocate_from');
    dst  text := pg_catalog.current_setting('stuck_runs.relocate_to');
    obj  record;
BEGIN
    IF pg_catalog.to_regproc(pg_catalog.format('%I.recover_stuck_runs', src)) IS NULL THEN
        RAISE EXCEPTION 'there is no stuck-runs installation in schema % to move', src
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.to_regclass(pg_catalog.format('%I._yoyo_migration', dst)) IS NOT NULL THEN
        RAISE EXCEPTION 'schema % already holds a stuck-runs installation; nothing was moved', dst
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR obj IN
        SELECT pg_catalog.format('ALTER %s %I.%I SET SCHEMA %I',
                   CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, src, c.relname, dst) AS ddl
        FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(src))
          AND c.relname IN ('stuck_runs_settings', 'stuck_runs_tables', 'run_recoveries',
                            '_yoyo_log', '_yoyo_migration', '_yoyo_version', 'yoyo_lock',
                            'active_runs', 'stuck_runs')
        UNION ALL
        SELECT pg_catalog.format('ALTER FUNCTION %s SET SCHEMA %I', p.oid::regprocedure, dst)
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(src))
          AND (p.proname LIKE 'stuck\_runs\_%' OR p.proname IN (
               'recover_stuck_runs', 'adopt_runs_table', 'unadopt_runs_table',
               'propose_runs_table_mapping', 'resume_run', 'qualification_runs_touch'))
    LOOP
        EXECUTE obj.ddl;
    END LOOP;
    -- Their bodies name their helpers unqualified: point them at the new schema.
    FOR obj IN
        SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(dst))
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                                  obj.fn, dst);
    END LOOP;
END
$relocate$
"""


def relocate(conn: psycopg.Connection, source: str, schema: str) -> None:
    """Move a 0.1 installation (audit, settings, registry, history) into its own schema.

    One transaction: it moves entirely or not at all, functions re-pinned to
    their new schema; the migrations that follow harden them again.
    """
    with conn.transaction():
        conn.execute(
            "SELECT pg_catalog.set_config('stuck_runs.relocate_from', %s, true),"
            " pg_catalog.set_config('stuck_runs.relocate_to', %s, true),"
            " pg_catalog.set_config('search_path', pg_catalog.quote_ident(%s), true)",
            (source, schema, schema),
        )
        conn.execute(_RELOCATE)
