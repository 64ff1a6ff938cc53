"""Recovery racing other callers and workers, on real concurrent connections."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg

from .helpers import insert_run, open_conn, status_of


def seed_stuck(conn: psycopg.Connection, n: int) -> set[str]:
    rows = conn.execute(
        "INSERT INTO qualification_runs (status, updated_at)"
        " SELECT 'PROCESSING', now() - interval '1 hour' FROM generate_series(1, %s)"
        " RETURNING id",
        (n,),
    ).fetchall()
    return {r[0] for r in rows}


def test_concurrent_callers_never_recover_the_same_run(db_url, conn):
    ids = seed_stuck(conn, 3000)
    callers = 8
    barrier = threading.Barrier(callers)

    def reaper(_: int) -> list[str]:
        got: list[str] = []
        with open_conn(db_url) as c:
            barrier.wait()
            while True:
                rows = c.execute(
                    "SELECT run_id FROM recover_stuck_runs('5 minutes', 100)"
                ).fetchall()
                if not rows:
                    return got
                got.extend(r[0] for r in rows)

    with ThreadPoolExecutor(callers) as pool:
        results = list(pool.map(reaper, range(callers)))
    recovered = Counter(r for result in results for r in result)
    assert set(recovered) == ids
    assert max(recovered.values()) == 1
    assert sum(1 for r in results if r) > 1, "the callers did not actually overlap"
    audit = conn.execute("SELECT run_id, count(*) FROM run_recoveries GROUP BY 1").fetchall()
    assert len(audit) == len(ids) and {n for _, n in audit} == {1}


def test_row_locked_by_a_worker_is_skipped_without_waiting(db_url, conn):
    busy = insert_run(conn, "PROCESSING", idle="1 hour")
    free = insert_run(conn, "PROCESSING", idle="1 hour")
    with open_conn(db_url, autocommit=False) as worker:
        worker.execute("SELECT 1 FROM qualification_runs WHERE id = %s FOR UPDATE", (busy,))
        conn.execute("SET lock_timeout = '5s'")
        started = time.monotonic()
        rows = conn.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')").fetchall()
        elapsed = time.monotonic() - started
        assert [r[0] for r in rows] == [free]
        assert elapsed < 1.0
        worker.execute(
            "UPDATE qualification_runs SET completed = completed + 1 WHERE id = %s", (busy,)
        )
        worker.commit()
    # The worker's progress was a sign of life: the run is alive, not stuck.
    assert conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')").fetchall() == []
    assert status_of(conn, busy) == "PROCESSING"


def test_worker_completing_inside_an_open_transaction_wins(db_url, conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour", completed=9, total=10)
    with open_conn(db_url, autocommit=False) as worker:
        worker.execute(
            "UPDATE qualification_runs SET status = 'COMPLETED', completed = 10,"
            " completed_at = now() WHERE id = %s",
            (run_id,),
        )
        assert conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')").fetchall() == []
        worker.commit()
    assert status_of(conn, run_id) == "COMPLETED"
    assert conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0] == 0


def test_worker_and_recovery_racing_exactly_one_wins(db_url, conn):
    """A well-behaved worker completes only a run still PROCESSING; recovery re-checks state.

    Released together a few hundred times, the two must never both believe they won
    (riverqueue/river#1302, rails/solid_queue#589).
    """
    rounds = 150
    ids = [insert_run(conn, "PROCESSING") for _ in range(rounds)]
    outcomes: list[tuple[bool, bool]] = []
    with open_conn(db_url) as worker, open_conn(db_url) as reaper:
        for run_id in ids:
            conn.execute(
                "UPDATE qualification_runs SET updated_at = now() - interval '1 hour' WHERE id = %s",
                (run_id,),
            )
            barrier = threading.Barrier(2)
            result: dict[str, bool] = {}

            def complete(
                run_id: str = run_id,
                barrier: threading.Barrier = barrier,
                result: dict[str, bool] = result,
            ) -> None:
                barrier.wait()
                cur = worker.execute(
                    "UPDATE qualification_runs SET status = 'COMPLETED', completed_at = now()"
                    " WHERE id = %s AND status = 'PROCESSING'",
                    (run_id,),
                )
                result["worker"] = cur.rowcount == 1

            thread = threading.Thread(target=complete)
            thread.start()
            barrier.wait()
            rows = reaper.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')").fetchall()
            thread.join()
            result["recovery"] = [r[0] for r in rows] == [run_id]
            outcomes.append((result["worker"], result["recovery"]))
    assert all(w != r for w, r in outcomes), outcomes
    print("race outcomes (worker won, recovery won):", Counter(outcomes))
    final = dict(conn.execute("SELECT id, status FROM qualification_runs").fetchall())
    audited = {r[0] for r in conn.execute("SELECT run_id FROM run_recoveries")}
    for run_id, (worker_won, _) in zip(ids, outcomes, strict=True):
        assert final[run_id] == ("COMPLETED" if worker_won else "FAILED")
        assert (run_id in audited) == (not worker_won)
