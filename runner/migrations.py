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

from .connection import (
    INSTALL_MARKERS,
    MIGRATION_TABLE,
    OperationalError,
    Target,
    connect,
    first_line,
)

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
    backend = _backend_class(open_connection)(uri, MIGRATION_TABLE)
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
    on_note: Callable[[str], None] = lambda _message: None,
) -> list[str]:
    """Apply every pending migration to target.schema and return their ids.

    Several instances starting at once queue on a session advisory lock: unlike
    yoyo's lock row, it is released by the server if a migrator dies. It is
    released explicitly too, so that nothing stays behind on a server
    connection that outlives ours. `relocate_from` names the schema of an
    install made by stuck-runs 0.1 (the application's): it is first upgraded
    where it is, then moved into target.schema (see relocate()), so that
    `migrate --relocate` and `migrate` then `migrate --relocate` end alike. A
    migration that fails in the old schema (0003 cannot comment on a column
    that an application's own qualification_runs lacks) is applied after the
    move instead, where the old schema's tables are not in its way.
    Parts of the install that an earlier relocation left in the application's
    schema are moved too, with or without `relocate_from` (see left_behind()).
    """
    with connect(
        target, connect_timeout=connect_timeout, statement_timeout=statement_timeout, session=True
    ) as conn:
        conn.execute(
            "SELECT pg_catalog.set_config('lock_timeout', %s, false)",
            (f"{int(lock_timeout * 1000)}ms",),
        )
        # An in-place `migrate` of the old install queues on its schema's key.
        keys = ["stuck-runs migrate " + target.schema]
        if relocate_from is not None and relocate_from != target.schema:
            keys.append("stuck-runs migrate " + relocate_from)
        held: list[str] = []
        try:
            for key in keys:
                row = conn.execute(
                    "SELECT pg_catalog.pg_backend_pid() FROM pg_catalog.pg_advisory_lock("
                    "pg_catalog.hashtext(%s))",
                    (key,),
                ).fetchone()
                held.append(key)
                if (
                    row is None
                    or conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone() != row
                ):
                    raise OperationalError(
                        "`migrate` needs a session of its own, and this connection goes through a "
                        "transaction pooler: set --direct-url / DIRECT_URL to the unpooled URL"
                    )
            conn.execute("SELECT pg_catalog.set_config('lock_timeout', '0', false)")
            # Under the lock: two first installs at once must not race to create it.
            ensure_schema(conn, target.schema)
            applied: list[str] = []
            if relocate_from is not None and is_install(conn, relocate_from):
                if is_install(conn, target.schema):
                    # Before upgrading the old install: refused means untouched.
                    raise OperationalError(_ALREADY.format(schema=target.schema))
                try:
                    _apply(
                        target.in_schema(relocate_from),
                        connect_timeout,
                        statement_timeout,
                        on_apply,
                        applied,
                    )
                except psycopg.Error as exc:
                    on_note(
                        f"could not upgrade stuck-runs in schema {relocate_from!r} "
                        f"({exc.diag.message_primary or first_line(exc)}): the rest is "
                        "applied after the move"
                    )
            where = relocate_from
            if where is None and left_behind(conn, target.app_schema, target.schema):
                where = target.app_schema
            elif (
                where is not None
                and not is_install(conn, where)
                and is_install(conn, target.schema)
                and not left_behind(conn, where, target.schema)
            ):
                # Moved already (by another instance, or an earlier start):
                # `migrate --relocate` stays safe to run at every start.
                on_note(f"stuck-runs already lives in schema {target.schema!r}: nothing to move")
                where = None
            if where is not None:
                moved = relocate(conn, where, target.schema)
                on_note(
                    f"moved {len(moved)} object(s) of stuck-runs from schema {where!r} "
                    f"into {target.schema!r}"
                )
            _apply(target, connect_timeout, statement_timeout, on_apply, applied)
            return applied
        finally:
            if not conn.closed and not conn.broken:
                for key in reversed(held):
                    conn.execute(
                        "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext(%s))", (key,)
                    )


def _apply(
    target: Target,
    connect_timeout: float,
    statement_timeout: float,
    on_apply: Callable[[str], None],
    applied: list[str],
) -> None:
    """Apply the pending migrations in target.schema, under the caller's lock.

    Each applied id is appended to `applied` at once: what went through before
    a failure is still reported.
    """
    with yoyo_backend(
        target, connect_timeout=connect_timeout, statement_timeout=statement_timeout
    ) as backend:
        for migration in backend.to_apply(read_history()):
            backend.apply_one(migration)
            applied.append(migration.id)
            on_apply(migration.id)


# One row per object of a schema that ALTER ... SET SCHEMA moves by itself:
# relations (their indexes, constraints, triggers, row types and owned
# sequences go with them), routines and standalone types. `detail` tells
# overloads apart by their argument types, which format_type() prints as the
# session's search_path shows them: read with the path set to the schema being
# read, a helper taking the registry's row type looks the same wherever it was
# created. Objects of kinds relocation cannot move are listed as 'other', so
# that a migration creating one makes relocation refuse instead of leaving it.
_CONTENTS = """
WITH ns AS (SELECT n.oid FROM pg_catalog.pg_namespace AS n WHERE n.nspname = %(schema)s)
SELECT 'relation' AS kind, c.relname::text AS name, c.relkind::text AS detail, c.oid::bigint
FROM pg_catalog.pg_class AS c, ns
WHERE c.relnamespace = ns.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                  WHERE d.classid OPERATOR(pg_catalog.=)
                        'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                    AND d.refclassid OPERATOR(pg_catalog.=)
                        'pg_catalog.pg_class'::pg_catalog.regclass)
UNION ALL
SELECT 'routine', p.proname::text, pg_catalog.pg_get_function_identity_arguments(p.oid),
       p.oid::bigint
FROM pg_catalog.pg_proc AS p, ns WHERE p.pronamespace = ns.oid
UNION ALL
SELECT 'type', t.typname::text, t.typtype::text, t.oid::bigint
FROM pg_catalog.pg_type AS t, ns WHERE t.typnamespace = ns.oid AND t.typtype IN ('d', 'e', 'r')
UNION ALL
SELECT 'other', o.kind, o.name, 0
FROM ns, LATERAL (
    SELECT 'operator', x.oprname::text FROM pg_catalog.pg_operator AS x
    WHERE x.oprnamespace = ns.oid
    UNION ALL SELECT 'collation', x.collname::text FROM pg_catalog.pg_collation AS x
    WHERE x.collnamespace = ns.oid
    UNION ALL SELECT 'conversion', x.conname::text FROM pg_catalog.pg_conversion AS x
    WHERE x.connamespace = ns.oid
    UNION ALL SELECT 'statistics', x.stxname::text FROM pg_catalog.pg_statistic_ext AS x
    WHERE x.stxnamespace = ns.oid
    UNION ALL SELECT 'operator class', x.opcname::text FROM pg_catalog.pg_opclass AS x
    WHERE x.opcnamespace = ns.oid
    UNION ALL SELECT 'operator family', x.opfname::text FROM pg_catalog.pg_opfamily AS x
    WHERE x.opfnamespace = ns.oid
    UNION ALL SELECT 'text search configuration', x.cfgname::text FROM pg_catalog.pg_ts_config AS x
    WHERE x.cfgnamespace = ns.oid
    UNION ALL SELECT 'text search dictionary', x.dictname::text FROM pg_catalog.pg_ts_dict AS x
    WHERE x.dictnamespace = ns.oid
) AS o(kind, name)
"""

# The statement that moves each kind of object; the first {} is the object as
# the server prints it with an empty search_path (regclass, regprocedure,
# regtype: quoted and schema-qualified), the second the new schema.
_MOVE = {
    ("relation", "r"): "ALTER TABLE {} SET SCHEMA {}",
    ("relation", "p"): "ALTER TABLE {} SET SCHEMA {}",
    ("relation", "v"): "ALTER VIEW {} SET SCHEMA {}",
    ("relation", "m"): "ALTER MATERIALIZED VIEW {} SET SCHEMA {}",
    ("relation", "f"): "ALTER FOREIGN TABLE {} SET SCHEMA {}",
    ("relation", "S"): "ALTER SEQUENCE {} SET SCHEMA {}",
    ("relation", "c"): "ALTER TYPE {} SET SCHEMA {}",
    ("routine", None): "ALTER ROUTINE {} SET SCHEMA {}",
    ("type", "d"): "ALTER DOMAIN {} SET SCHEMA {}",
    ("type", "e"): "ALTER TYPE {} SET SCHEMA {}",
    ("type", "r"): "ALTER TYPE {} SET SCHEMA {}",
}
_PRINTED = {"relation": "regclass", "routine": "regprocedure", "type": "regtype"}

_IS_INSTALL = """
SELECT pg_catalog.count(*) = pg_catalog.cardinality(%(markers)s::text[])
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%(markers)s::text[])
"""


def is_install(conn: psycopg.Connection, schema: str) -> bool:
    """Whether `schema` holds a stuck-runs install (connection.INSTALL_MARKERS)."""
    row = conn.execute(_IS_INSTALL, {"schema": schema, "markers": INSTALL_MARKERS}).fetchone()
    return bool(row and row[0])


Identity = tuple[str, str, str]


def _contents(
    conn: psycopg.Connection, schema: str, also: str | None = None
) -> dict[Identity, int]:
    """Every object of `schema`, by identity (kind, name, detail), with its oid.

    `also` joins the path: a helper left behind in `schema` whose argument is
    a row type that moved to `also` reads as it did before the move.
    """
    conn.execute(
        "SELECT pg_catalog.set_config('search_path', pg_catalog.concat_ws(', ',"
        " pg_catalog.quote_ident(%s), pg_catalog.quote_ident(%s)), true)",
        (schema, also),
    )
    rows = conn.execute(_CONTENTS, {"schema": schema}).fetchall()
    return {(kind, name, detail): oid for kind, name, detail, oid in rows}


def _applied(conn: psycopg.Connection, schema: str) -> list[Any]:
    """The migrations recorded as applied in `schema`, in the history's order."""
    table = sql.Identifier(schema, MIGRATION_TABLE)
    ids = {
        row[0]
        for row in conn.execute(sql.SQL("SELECT migration_id FROM {}").format(table)).fetchall()
    }
    history = [migration for migration in read_history() if migration.id in ids]
    unknown = ids - {migration.id for migration in history}
    if unknown:
        raise OperationalError(
            f"schema {schema!r} holds migrations this stuck-runs does not know "
            f"({', '.join(sorted(unknown))}): upgrade stuck-runs before moving it; "
            "nothing was moved"
        )
    return history


def _owned(
    conn: psycopg.Connection, schema: str, history: list[Any], *, scratch: bool = False
) -> set[Identity]:
    """What these migrations create: replayed into the empty `schema`, then rolled back.

    The install's history, not a list of names, says what belongs to it: every
    object a migration ever created and a later one did not drop, whatever a
    future migration adds or renames. `scratch`: `schema` is created for the
    replay (and goes with its rollback).
    """
    before = {} if scratch else _contents(conn, schema)
    with conn.transaction() as replay:
        if scratch:
            try:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            except psycopg.errors.InsufficientPrivilege:
                raise OperationalError(
                    "finishing the move needs a scratch schema for a moment: grant this role "
                    "CREATE on the database, or run `stuck-runs migrate --relocate` as its owner"
                ) from None
        conn.execute(
            "SELECT pg_catalog.set_config('search_path', pg_catalog.quote_ident(%s), true)",
            (schema,),
        )
        for migration in history:
            conn.execute(Path(migration.path).read_text(encoding="utf-8"))
        after = _contents(conn, schema)
        raise psycopg.Rollback(replay)
    return set(after) - set(before)


def _bookkeeping() -> set[Identity]:
    """yoyo's own tables, under the names yoyo gives them."""
    from yoyo.backends.base import DatabaseBackend

    names = {MIGRATION_TABLE, DatabaseBackend.version_table, DatabaseBackend.log_table}
    return {("relation", name, "r") for name in names | {DatabaseBackend.lock_table}}


def _repinned(path: str, source: str, schema: str) -> str | None:
    """A function's search_path with `source` replaced by `schema` (quoted as the server
    quotes it); None when the path does not name `source`."""
    items, item, quoted = [], "", False
    for char in path:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append(item.strip())
            item = ""
        else:
            item += char
    items.append(item.strip())

    def name(text: str) -> str:
        return text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()

    if source not in [name(entry) for entry in items]:
        return None
    return ", ".join(schema if name(entry) == source else entry for entry in items)


# Whether objects of stuck-runs' schema depend on objects of the application's
# (a view on a helper, a trigger on its function), tables recovery covers
# aside: the sign that an earlier relocation (stuck-runs 0.2 and 0.3 moved a
# list of names) left part of the install behind.
_SPLIT = """
WITH src AS (SELECT n.oid FROM pg_catalog.pg_namespace AS n WHERE n.nspname = %(source)s),
     dst AS (SELECT n.oid FROM pg_catalog.pg_namespace AS n WHERE n.nspname = %(schema)s)
SELECT EXISTS (
    SELECT FROM pg_catalog.pg_depend AS d
    WHERE d.deptype = 'n'
      AND (d.refobjid IN (SELECT p.oid FROM pg_catalog.pg_proc AS p, src
                          WHERE p.pronamespace = src.oid)
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
        OR d.refobjid IN (SELECT c.oid FROM pg_catalog.pg_class AS c, src
                          WHERE c.relnamespace = src.oid
                            AND c.oid OPERATOR(pg_catalog.<>) ALL (
                                SELECT t.table_name::pg_catalog.oid FROM {registry} AS t))
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass)
      AND (d.objid IN (SELECT r.oid FROM pg_catalog.pg_rewrite AS r
                       JOIN pg_catalog.pg_class AS c ON c.oid = r.ev_class, dst
                       WHERE c.relnamespace = dst.oid)
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
        OR d.objid IN (SELECT g.oid FROM pg_catalog.pg_trigger AS g
                       JOIN pg_catalog.pg_class AS c ON c.oid = g.tgrelid, dst
                       WHERE c.relnamespace = dst.oid)
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass))
"""


# Objects whose owner owns none of the install's bookkeeping and is no superuser.
_FOREIGN = """
WITH install AS (
    SELECT c.relowner FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = ANY(%(markers)s::text[])
)
SELECT o.oid::bigint FROM (
    SELECT c.oid, c.relowner AS owner FROM pg_catalog.pg_class AS c
    WHERE c.oid = ANY(%(relation)s::oid[])
    UNION ALL SELECT p.oid, p.proowner FROM pg_catalog.pg_proc AS p
    WHERE p.oid = ANY(%(routine)s::oid[])
    UNION ALL SELECT t.oid, t.typowner FROM pg_catalog.pg_type AS t
    WHERE t.oid = ANY(%(type)s::oid[])
) AS o
WHERE o.owner NOT IN (SELECT i.relowner FROM install AS i)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.oid = o.owner AND r.rolsuper)
"""


def _foreign(conn: psycopg.Connection, objects: dict[Identity, int], install: str) -> set[int]:
    """The objects another role owns than the install in schema `install`: they never move.

    A role that may create objects in the application's schema could otherwise
    plant one under a name the install's history uses and have it moved where
    stuck-runs' functions, run by more privileged roles, search.
    """
    params: dict[str, Any] = {"schema": install, "markers": INSTALL_MARKERS}
    params |= {kind: [] for kind in ("relation", "routine", "type")}
    for (kind, _, _), oid in objects.items():
        params[kind].append(oid)
    return {row[0] for row in conn.execute(_FOREIGN, params).fetchall()}


_ALREADY = "schema {schema!r} already holds a stuck-runs installation; nothing was moved"


def left_behind(conn: psycopg.Connection, source: str, schema: str) -> bool:
    """Whether the install in `schema` still has parts in `source` (see _SPLIT)."""
    if source == schema or not is_install(conn, schema) or is_install(conn, source):
        return False
    query = sql.SQL(_SPLIT).format(registry=sql.Identifier(schema, "stuck_runs_tables"))
    row = conn.execute(query, {"source": source, "schema": schema}).fetchone()
    return bool(row and row[0])


def relocate(conn: psycopg.Connection, source: str, schema: str) -> list[str]:
    """Move an install made by stuck-runs 0.1 in the application's schema into its own.

    One transaction: it moves entirely or not at all. What moves is what the
    install's own migrations created (replayed, see _owned) and yoyo's history,
    with its data: audit, settings, registry. The tables the registry covers
    stay: the application writes to them by name (0.1's built-in
    qualification_runs). Functions that searched `source` search `schema`
    instead, and every role that had a privilege on a moved object gets USAGE
    on `schema`, so that it can still reach them. Returns what it moved.

    When `schema` already holds the install and `source` does not, it finishes
    a move that an earlier stuck-runs left half done: what the install's
    history creates, found in `source` and missing from `schema`, moves.
    """
    with conn.transaction():
        if is_install(conn, source):
            if is_install(conn, schema):
                raise OperationalError(_ALREADY.format(schema=schema))
            owned = _owned(conn, schema, _applied(conn, source)) | _bookkeeping()
            present: set[Identity] = set()
            registry = sql.Identifier(source, "stuck_runs_tables")
            install = source
        elif is_install(conn, schema):
            pid = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
            scratch = f"stuck_runs_replay_{pid[0] if pid else 0}"
            owned = _owned(conn, scratch, _applied(conn, schema), scratch=True)
            present = set(_contents(conn, schema))
            registry = sql.Identifier(schema, "stuck_runs_tables")
            install = schema
        else:
            raise OperationalError(
                f"there is no stuck-runs installation in schema {source!r} to move"
            )
        unmovable = sorted(f"{name} ({detail})" for kind, name, detail in owned if kind == "other")
        if unmovable:
            raise OperationalError(
                f"stuck-runs cannot move these objects yet: {', '.join(unmovable)}; "
                "nothing was moved"
            )
        # Runs tables stay where the application writes to them: those the
        # registry covers, and any qualification_runs (0001 creates one only
        # where the application had none, so one there may be the app's own).
        staying = {
            row[0]
            for row in conn.execute(
                sql.SQL(
                    "SELECT t.table_name::oid::bigint FROM {} AS t UNION"
                    " SELECT c.oid::bigint FROM pg_catalog.pg_class AS c"
                    " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relname = 'qualification_runs'"
                ).format(registry),
                (source,),
            ).fetchall()
        }
        candidates = {
            identity: oid
            for identity, oid in _contents(conn, source, also=schema).items()
            if identity in owned and identity not in present and oid not in staying
        }
        foreign = _foreign(conn, candidates, install)
        moving = {identity: oid for identity, oid in candidates.items() if oid not in foreign}
        if not moving:
            raise OperationalError(
                f"there is no stuck-runs installation in schema {source!r} to move"
            )
        # Printed with an empty path: fully qualified, whatever runs them.
        conn.execute("SELECT pg_catalog.set_config('search_path', '', true)")
        functions = [oid for (kind, _, _), oid in moving.items() if kind == "routine"]
        configs = conn.execute(
            "SELECT p.oid::bigint, c.setting FROM pg_catalog.pg_proc AS p,"
            " LATERAL pg_catalog.unnest(p.proconfig) AS c(setting)"
            " WHERE p.oid = ANY(%s::oid[]) AND c.setting LIKE 'search\\_path=%%'",
            (functions,),
        ).fetchall()
        grantees = conn.execute(
            "SELECT DISTINCT a.grantee::regrole::text FROM ("
            " SELECT c.relacl AS acl, c.relowner AS owner FROM pg_catalog.pg_class AS c"
            "  WHERE c.oid = ANY(%(oids)s::oid[])"
            " UNION ALL SELECT p.proacl, p.proowner FROM pg_catalog.pg_proc AS p"
            "  WHERE p.oid = ANY(%(oids)s::oid[])"
            " UNION ALL SELECT t.typacl, t.typowner FROM pg_catalog.pg_type AS t"
            "  WHERE t.oid = ANY(%(oids)s::oid[])) AS o,"
            " LATERAL pg_catalog.aclexplode(o.acl) AS a"
            " WHERE a.grantee <> 0 AND a.grantee <> o.owner",
            {"oids": list(moving.values())},
        ).fetchall()
        moved = []
        for (kind, _, detail), oid in sorted(moving.items()):
            printed = conn.execute(
                sql.SQL("SELECT %s::oid::{}::text").format(sql.SQL(_PRINTED[kind])), (oid,)
            ).fetchone()
            statement = _MOVE[(kind, None if kind == "routine" else detail)]
            conn.execute(sql.SQL(statement).format(sql.SQL(printed[0]), sql.Identifier(schema)))
            moved.append(printed[0])
        quoted = conn.execute("SELECT pg_catalog.quote_ident(%s)", (schema,)).fetchone()
        for oid, setting in configs:
            path = _repinned(setting.removeprefix("search_path="), source, quoted[0])
            if path is None:
                continue
            conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (path,))
            name = conn.execute("SELECT %s::oid::regprocedure::text", (oid,)).fetchone()
            conn.execute(
                sql.SQL("ALTER ROUTINE {} SET search_path FROM CURRENT").format(sql.SQL(name[0]))
            )
        for (role,) in grantees:
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema), sql.SQL(role)
                )
            )
        return moved
