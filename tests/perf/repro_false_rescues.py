"""Reproductions of three false rescues found in review of 0006 before it landed; fixed since.

Each scenario now ends with 0 rescues (G3 d and G3 e of tests/perf/bench_owners.py run
the same). What follows describes the bugs as they were, and what each scenario provokes.

1 and 2: outages that pg_postmaster_start_time() does not see; 3: a write of the
owner's own that holds its life row longer than dead_after.

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
only to hear 'fenced'.

3. held write: stuck_runs_progress()/stuck_runs_claim() lock the life's row FOR
SHARE until the caller's transaction ends (`_stuck_runs_hold_life`). When that
transaction lasts longer than dead_after (progress written inside a transaction
that then does the long work), the owner's heartbeat UPDATE, from its other
connection, waits on that lock; its clock_timestamp() was taken before the wait,
so the row it finally writes is already stale, its own sweep (deaths due) ends
the life and recovers the owner's own run, and the heartbeat answers
('alive', 1). Meanwhile every sweep that wants to end the silent life waits on
the same row and fails with a lock timeout: no recovery of any other instance
either.

Run from the repository root (private clusters; about two minutes):

    python -m tests.perf.repro_false_rescues [failover|crash|held-write]

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
from pathlib import Path

import psycopg

from runner.connection import parse_database_url
from runner.migrations import apply_migrations
from tests.cluster import SYSTEM_BIN, Cluster

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


def failover(bin_dir: Path = SYSTEM_BIN) -> int:
    primary = Cluster(bin_dir, settings={"wal_level": "replica"})
    standby = Cluster(bin_dir)
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


def crash(bin_dir: Path = SYSTEM_BIN) -> int:
    cluster = Cluster(bin_dir)
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


def held_write(bin_dir: Path = SYSTEM_BIN, hold: float = 27.0) -> tuple[int, int]:
    """(own runs rescued, sweeps failed): progress inside a transaction of `hold` s."""
    cluster = Cluster(bin_dir)
    try:
        cluster.start()
        url = cluster.url()
        apply_migrations(
            parse_database_url(url), connect_timeout=10, statement_timeout=60, lock_timeout=60
        )
        time.sleep(21)  # the server has been up longer than dead_after
        life, run = str(uuid.uuid4()), "held-write-run"
        q(url, "SELECT count(*) FROM stuck_runs.stuck_runs_start('web', %s)", life)
        q(
            url,
            "INSERT INTO stuck_runs.qualification_runs (id, status) VALUES (%s, 'PROCESSING')",
            run,
        )
        q(
            url,
            "SELECT stuck_runs.stuck_runs_claim('stuck_runs.qualification_runs', %s, %s)",
            run,
            life,
        )
        tx = psycopg.connect(url)  # not autocommit: the app's transaction
        print("progress in the app's transaction:", tx.execute(
            "SELECT stuck_runs.stuck_runs_progress('stuck_runs.qualification_runs', %s, %s, 1)",
            (run, life)).fetchone())  # fmt: skip
        halt = threading.Event()
        failed = []

        def beats() -> None:  # the owner's heartbeat loop, on its own connection
            with psycopg.connect(url, autocommit=True) as conn:
                while not halt.wait(5):
                    began = time.time()
                    row = conn.execute(
                        "SELECT * FROM stuck_runs.stuck_runs_heartbeat(%s)", (life,)
                    ).fetchone()
                    print(f"heartbeat -> {row} after {time.time() - began:.1f} s", flush=True)

        def sweeps() -> None:  # pg_cron or another instance
            with psycopg.connect(url, autocommit=True) as conn:
                while not halt.wait(3):
                    try:
                        conn.execute("SELECT * FROM stuck_runs.recover_stuck_runs()").fetchall()
                    except psycopg.Error as exc:
                        failed.append(1)
                        print("sweep failed:", str(exc).splitlines()[0], flush=True)

        threading.Thread(target=beats, daemon=True).start()
        threading.Thread(target=sweeps, daemon=True).start()
        time.sleep(hold)
        tx.commit()
        print(f"the app's transaction committed after {hold:g} s")
        time.sleep(7)
        halt.set()
        tx.close()
        print("run:", q(url, "SELECT status FROM stuck_runs.qualification_runs WHERE id = %s", run))
        rescued = q(url, "SELECT run_id, reason FROM stuck_runs.run_recoveries")
        print("run_recoveries:", rescued)
        return len(rescued), len(failed)  # type: ignore[arg-type]
    finally:
        cluster.destroy()


def main() -> int:
    which = sys.argv[1:] or ["failover", "crash", "held-write"]
    rescued = 0
    for name in which:
        if name == "held-write":
            print("--- held write: progress inside a 27 s transaction, heartbeat every 5 s")
            own, _ = held_write()
            rescued += own
            continue
        print(f"--- {name}: an outage of {OUTAGE:g} s with 3 live owners (dead_after 20 s)")
        rescued += {"failover": failover, "crash": crash}[name]()
    print(f"live owners' runs rescued: {rescued}")
    return 1 if rescued else 0


if __name__ == "__main__":
    sys.exit(main())
