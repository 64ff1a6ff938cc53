"""A small Python application instance for the owners benchmark (tests/perf/bench_owners.py).

It does what the README asks of an app that uses owners, and nothing else, so that
the benchmark kills, stops and restarts a real process with a real connection:

1. at start, `stuck_runs_start(instance, life)` with a fresh life (one per process);
2. creates RUNS runs in the built-in table and claims them (`stuck_runs_claim`);
3. heartbeats every HEARTBEAT seconds (`stuck_runs_heartbeat`), on a timer that
   keeps its rhythm whatever a call costs, and reconnects after a lost connection
   (a database restart) at the next tick;
4. reports progress (`stuck_runs_progress`) only every PROGRESS seconds, so its
   runs are "silent" for the threshold;
5. when the heartbeat says `fenced`, tries progress and claim once more on each
   of its runs (the benchmark checks that they change nothing), reports and exits.

Everything it does is one JSON line on stdout, with the wall clock: the benchmark
reads them. Names are schema-qualified (stuck_runs.), never a search_path, so the
same worker runs through a transaction pooler; prepared statements are off for it.

    python tests/perf/workers/worker.py URL INSTANCE [--runs N] [--heartbeat S] ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

BOOT = time.time()

import psycopg  # noqa: E402  (BOOT is taken before the import: the process's start)

TABLE = "stuck_runs.qualification_runs"


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"ev": event, "t": time.time(), **fields}), flush=True)


def connect(url: str) -> psycopg.Connection:
    """Autocommit, no prepared statements (a transaction pooler may not keep them)."""
    return psycopg.connect(url, autocommit=True, prepare_threshold=None, connect_timeout=3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("instance")
    parser.add_argument("--life", default=None)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--run-prefix", default=None)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--progress", type=float, default=3600.0)
    args = parser.parse_args()
    life = args.life or str(uuid.uuid4())
    prefix = args.run_prefix or f"{args.instance}-{life[:8]}"
    emit("boot", boot=BOOT, pid=_pid(), life=life)

    conn = connect(args.url)
    began = time.time()
    recovered = conn.execute(
        "SELECT run_id, reason FROM stuck_runs.stuck_runs_start(%s, %s)", (args.instance, life)
    ).fetchall()
    returned = time.time()
    emit(
        "started",
        life=life,
        call_ms=(returned - began) * 1000,
        returned=returned,
        boot=BOOT,
        recovered=[[r, why] for r, why in recovered],
    )

    runs = [f"{prefix}-{i}" for i in range(args.runs)]
    for run in runs:
        conn.execute(
            f"INSERT INTO {TABLE} (id, status, total, completed) VALUES (%s, 'PROCESSING', 100, 0)",
            (run,),
        )
        (ok,) = conn.execute(
            "SELECT stuck_runs.stuck_runs_claim(%s::regclass, %s, %s)", (TABLE, run, life)
        ).fetchone()  # type: ignore[misc]
        if not ok:
            emit("error", msg=f"claim of {run} returned false")
    emit("claimed", runs=runs)

    tick = time.monotonic()
    last_progress = time.monotonic()
    completed = 0
    while True:
        tick += args.heartbeat
        time.sleep(max(0.0, tick - time.monotonic()))
        sent = time.time()
        try:
            if conn.closed:
                conn = connect(args.url)
                emit("reconnected")
            row = conn.execute(
                "SELECT state, recovered FROM stuck_runs.stuck_runs_heartbeat(%s)", (life,)
            ).fetchone()
        except psycopg.Error as exc:
            emit("beat_failed", msg=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            conn.close()
            continue
        assert row is not None
        state, swept = row
        emit("beat", state=state, recovered=swept, sent=sent)
        if state == "fenced":
            progress = [
                conn.execute(
                    "SELECT stuck_runs.stuck_runs_progress(%s::regclass, %s, %s, %s)",
                    (TABLE, run, life, completed + 1),
                ).fetchone()[0]  # type: ignore[index]
                for run in runs
            ]
            claim = [
                conn.execute(
                    "SELECT stuck_runs.stuck_runs_claim(%s::regclass, %s, %s)", (TABLE, run, life)
                ).fetchone()[0]  # type: ignore[index]
                for run in runs
            ]
            emit("fenced", progress=progress, claim=claim)
            return 0
        if time.monotonic() - last_progress >= args.progress:
            completed += 1
            for run in runs:
                conn.execute(
                    "SELECT stuck_runs.stuck_runs_progress(%s::regclass, %s, %s, %s)",
                    (TABLE, run, life, completed),
                )
            last_progress = time.monotonic()
            emit("progress", completed=completed)


def _pid() -> int:
    import os

    return os.getpid()


if __name__ == "__main__":
    sys.exit(main())
