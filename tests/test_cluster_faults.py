"""What only a private server can show: a standby, a wrong password, a hung or killed server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.sweep import DEFAULT_BATCH_SIZE

from .cluster import Cluster, system_postgres_available
from .conftest import migrate
from .helpers import open_conn, run_cli

pytestmark = pytest.mark.skipif(
    not system_postgres_available(),
    reason="needs PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin (apt postgresql-15)",
)

PASSWORD = "Pw-0f-The-Cluster"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster(password=PASSWORD)
    c.start()
    try:
        yield c
    finally:
        c.destroy()


def seed(url: str, n: int) -> None:
    with open_conn(url) as conn:
        conn.execute(
            "INSERT INTO qualification_runs (status, completed, total, updated_at)"
            " SELECT 'PROCESSING', 1, 2, now() - interval '1 hour' FROM generate_series(1, %s)",
            (n,),
        )


def test_recover_refuses_on_a_standby(cluster):
    url = cluster.url(password=PASSWORD)
    migrate(url)
    seed(url, 3)
    cluster.stop()
    cluster.start(standby=True)
    strict = run_cli("--database-url", url, "recover")
    assert strict.returncode == 1
    assert "standby" in strict.stderr and len(strict.stderr.strip().splitlines()) == 1
    relaxed = run_cli("--database-url", url, "recover", "--fail-open")
    assert relaxed.returncode == 0 and "standby" in relaxed.stderr


def test_wrong_password_is_reported_without_echoing_it(cluster):
    url = cluster.url(password="Wr0ng-Passw0rd!")
    result = run_cli("--database-url", url, "recover")
    assert result.returncode == 1
    assert "password authentication failed" in result.stderr
    assert "Wr0ng-Passw0rd!" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_hung_server_cannot_hang_fail_open(cluster):
    url = cluster.url(password=PASSWORD)
    migrate(url)
    children = subprocess.run(
        ["pgrep", "-P", str(cluster.pid)], capture_output=True, text=True
    ).stdout.split()
    processes = [cluster.pid, *map(int, children)]
    for pid in processes:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = run_cli(
            "--database-url",
            url,
            "recover",
            "--fail-open",
            "--connect-timeout",
            "2",
            "--statement-timeout",
            "2",
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        for pid in processes:
            os.kill(pid, signal.SIGCONT)
    assert result.returncode == 0
    assert "continuing without recovery" in result.stderr
    assert elapsed < 4 + 1.5, elapsed
    assert PASSWORD not in result.stderr


def test_lock_held_on_the_table_is_bounded_by_statement_timeout(cluster):
    url = cluster.url(password=PASSWORD)
    migrate(url)
    with open_conn(url, autocommit=False) as blocker:
        blocker.execute("LOCK TABLE qualification_runs IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = run_cli("--database-url", url, "recover", "--statement-timeout", "1", timeout=60)
        elapsed = time.monotonic() - started
        blocker.rollback()
    assert result.returncode == 1
    assert "statement timeout" in result.stderr and "--statement-timeout" in result.stderr
    assert elapsed < 5 + 1 + 1.5, elapsed


def test_killed_server_mid_recovery_keeps_change_and_audit_together(cluster):
    """SIGKILL the postmaster while a large recovery runs: after restart, for every
    run the status change and its audit row are both there or both absent."""
    url = cluster.url(password=PASSWORD)
    migrate(url)
    seed(url, 200_000)
    proc = subprocess.Popen(
        [
            "python",
            "-m",
            "runner",
            "--database-url",
            url,
            "recover",
            "--json",
            "--connect-timeout",
            "2",
            "--statement-timeout",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with open_conn(cluster.url(password=PASSWORD)) as watcher:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            active = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stuck-runs'"
                # A batch's rows stream from the call itself (libpq 17 chunks),
                # or through a named cursor's FETCH where that is missing.
                " AND state = 'active'"
                " AND (query LIKE 'FETCH%' OR query LIKE '%recover_stuck_runs%')"
            ).fetchone()[0]
            if active:
                break
            time.sleep(0.01)
    time.sleep(0.5)
    children = [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(cluster.pid)], capture_output=True, text=True
        ).stdout.split()
    ]
    cluster.signal(signal.SIGKILL)
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=70)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert elapsed < 62 + 2
    # Orphaned backends notice the postmaster's death and exit; kill the slow
    # ones (only this cluster's), then restart as after a crash.
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    (cluster.data / "postmaster.pid").unlink(missing_ok=True)
    cluster.start()
    with open_conn(url) as conn:
        mismatched = conn.execute(
            "SELECT count(*) FROM qualification_runs r"
            " FULL JOIN run_recoveries a ON a.run_id = r.id"
            " WHERE (r.status = 'FAILED') IS DISTINCT FROM (a.run_id IS NOT NULL)"
        ).fetchone()[0]
        failed, audited = conn.execute(
            "SELECT (SELECT count(*) FROM qualification_runs WHERE status = 'FAILED'),"
            "       (SELECT count(*) FROM run_recoveries)"
        ).fetchone()
    assert mismatched == 0, (failed, audited)
    # Batches of DEFAULT_BATCH_SIZE commit one by one: a batch is there whole or not at all.
    assert failed == audited and failed % DEFAULT_BATCH_SIZE == 0
