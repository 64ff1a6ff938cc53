"""Reproduction: outages that pg_postmaster_start_time() does not see rescue live owners' runs.

0006 counts no life as silent until the server has been up for dead_after
(`_stuck_runs_server_up_for()`, from pg_postmaster_start_time()), so that a
restart, after which every heartbeat is stale at once, is no mass death. Two
outages leave that time unchanged, and then every owner's heartbeat is already
older than dead_after when the database is back:

- failover: a standby that has run for a while is promoted after the primary
  died (detection plus promotion commonly takes 20-60 s); its postmaster start is
  the standby's, long before the outage;
- crash recovery: a backend that dies abnormally (OOM killer, segfault) makes the
  postmaster reset every connection and replay WAL without restarting itself; the
  replay takes as long as the WAL since the last checkpoint (here a SIGSTOPped
  postmaster stands for a long replay).

In both, the first owner that reconnects heartbeats ('alive'), its heartbeat
sweeps, and every other owner's runs are recovered ('instance web-N stopped
heartbeating') although those processes are alive and reconnect seconds later,
only to hear 'fenced'. Run from the repository root (PostgreSQL 15 binaries,
private clusters; about a minute):

    python -m tests.perf.repro_owner_outages [failover|crash]

Not collected by pytest (no test_ prefix): it prints what happens and exits 1
when a live owner's run was rescued.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
import uuid

import psycopg

from runner.connection import parse_database_url
from runner.migrations import apply_migrations
from tests.cluster import Cluster

OUTAGE = 25.0  # seconds; dead_after is the default 20 s


def q(url: str, sql: str, *params: object) -> object:
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else cur.statusmessage


def owners(url: str) -> dict[str, str]:
    """Three instances, each with a life and one claimed run."""
    apply_migrations(
        parse_database_url(url), connect_timeout=10, statement_timeout=60, lock_timeout=60
    )
    lives = {f"web-{i}": str(uuid.uuid4()) for i in range(3)}
    for instance, life in lives.items():
        q(url, "SELECT count(*) FROM stuck_runs.stuck_runs_start(%s, %s)", instance, life)
        q(
            url,
            "INSERT INTO stuck_runs.qualification_runs (id, status) VALUES (%s, 'PROCESSING')",
            f"{instance}-run",
        )
        q(
            url,
            "SELECT stuck_runs.stuck_runs_claim('stuck_runs.qualification_runs', %s, %s)",
            f"{instance}-run",
            life,
        )
    return lives


def heartbeat_loop(url: str, lives: dict[str, str], halt: threading.Event) -> None:
    """Every owner heartbeats every 2 s, as long as it can reach the database."""
    while not halt.wait(2):
        for life in lives.values():
            with contextlib.suppress(psycopg.Error):
                q(url, "SELECT * FROM stuck_runs.stuck_runs_heartbeat(%s)", life)


def after_outage(url: str, lives: dict[str, str]) -> int:
    """The first owner back heartbeats; then the others. Returns live owners' runs rescued."""
    first, *others = lives.values()
    print(
        "first owner's heartbeat:",
        q(url, "SELECT * FROM stuck_runs.stuck_runs_heartbeat(%s)", first),
    )
    print("runs:", q(url, "SELECT id, status FROM stuck_runs.qualification_runs ORDER BY id"))
    rescued = q(url, "SELECT run_id, reason FROM stuck_runs.run_recoveries ORDER BY run_id")
    print("run_recoveries:", rescued)
    for life in others:
        print(
            "other owner's heartbeat:",
            q(url, "SELECT * FROM stuck_runs.stuck_runs_heartbeat(%s)", life),
        )
    return len(rescued)  # type: ignore[arg-type]


def failover() -> int:
    primary = Cluster(settings={"wal_level": "replica"})
    standby = Cluster()
    try:
        primary.start()
        url = primary.url()
        lives = owners(url)
        halt = threading.Event()
        threading.Thread(target=heartbeat_loop, args=(url, lives, halt), daemon=True).start()
        shutil.rmtree(standby.data)
        standby._run(
            "pg_basebackup", "-D", str(standby.data), "-R",
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
        )  # fmt: skip
        with open(standby.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {standby.port}\nunix_socket_directories = '{standby.base}'\n")
        standby.start()
        time.sleep(5)
        halt.set()
        time.sleep(0.5)
        print("before:", q(url, "SELECT id, status FROM stuck_runs.qualification_runs ORDER BY id"))
        print("standby up since", q(standby.url(), "SELECT pg_postmaster_start_time()"))
        primary.stop()  # -m immediate: the primary dies
        died = time.time()
        time.sleep(OUTAGE)
        standby._run("pg_ctl", "-D", str(standby.data), "-w", "promote")
        print(f"standby promoted {time.time() - died:.0f} s after the primary died")
        return after_outage(standby.url(), lives)
    finally:
        standby.destroy()
        primary.destroy()


def crash() -> int:
    cluster = Cluster()
    try:
        cluster.start()
        url = cluster.url()
        lives = owners(url)
        halt = threading.Event()
        threading.Thread(target=heartbeat_loop, args=(url, lives, halt), daemon=True).start()
        time.sleep(25)  # the server has been up longer than dead_after
        halt.set()
        time.sleep(0.5)
        before = q(url, "SELECT pg_postmaster_start_time()")
        print("before:", q(url, "SELECT id, status FROM stuck_runs.qualification_runs ORDER BY id"))
        victim = psycopg.connect(url, autocommit=True)
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        cluster.signal(signal.SIGSTOP)  # the replay that follows takes OUTAGE seconds
        os.kill(pid, signal.SIGKILL)  # a backend dies abnormally: crash recovery
        time.sleep(OUTAGE)
        cluster.signal(signal.SIGCONT)
        for _ in range(60):
            try:
                after = q(url, "SELECT pg_postmaster_start_time()")
                break
            except psycopg.Error:
                time.sleep(0.5)
        print("crash recovery done; pg_postmaster_start_time before", before, "after", after)
        print("log:", [ln for ln in cluster.log().splitlines() if "reinitializing" in ln])
        return after_outage(url, lives)
    finally:
        cluster.destroy()


def main() -> int:
    which = sys.argv[1:] or ["failover", "crash"]
    rescued = 0
    for name in which:
        print(f"--- {name}: an outage of {OUTAGE:g} s with 3 live owners (dead_after 20 s)")
        rescued += {"failover": failover, "crash": crash}[name]()
    print(f"live owners' runs rescued: {rescued}")
    return 1 if rescued else 0


if __name__ == "__main__":
    sys.exit(main())
