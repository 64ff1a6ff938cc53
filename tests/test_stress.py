"""Stress: reaper processes and worker threads racing on real connections, with crashes.

Several reaper *processes* (each with its own connection) call
``recover_stuck_runs(older_than => '2 seconds')`` in a tight loop while many worker
threads (one connection each) create runs and behave like real workers:

- they report progress every ~0.2 s, either by bumping ``completed`` (the trigger
  moves ``updated_at``) or by setting ``updated_at = now()`` themselves, always with
  ``UPDATE ... WHERE id = $1 AND status IN ('PENDING', 'PROCESSING')``; 0 rows
  updated means their run was recovered, and they record that and give it up;
- then they complete the run, or fail it themselves, or "crash": stop reporting
  and never touch the run again (some before their first report, still PENDING);
- stragglers go silent for 0.7-1.3 x the threshold, then try to report and
  complete: the race between a worker waking up and recovery, both outcomes valid;
- lock holders go silent for 0.8-0.9 x the threshold, then finish inside a
  transaction that holds the run's row lock (``SELECT ... FOR UPDATE``) for another
  0.5-0.7 x the threshold: the run turns stale while locked, so recovery must skip
  it (SKIP LOCKED) and the worker's completion must stand.

Clocks. Every time compared is the database's, never a client's:
a worker's last sign of life is the ``updated_at`` its last successful statement
RETURNED (the worker's transaction start, the very value recovery reads), and a
recovery's time is ``run_recoveries.recovered_at``, the reaper's transaction start,
which is also the ``now()`` that recovery's cutoff is computed from. So the rule
"recovered only if ``updated_at < now() - older_than``" becomes the exact check
``last_report + threshold < recovered_at``, with no tolerance needed, and it does
not depend on client scheduling, sleeps overshooting or network latency. A worker
attempt that found its run recovered may well have *started* before the
reaper's transaction (it then waited for the reaper's row lock), so attempt times
are deliberately not compared with ``recovered_at``; only successful reports are.

Invariants checked for every run at the end (``check``):

- a run its worker completed is COMPLETED with no audit row; one its worker failed
  is FAILED with the worker's error and no audit row;
- every crashed run, and every run whose worker saw 0 rows, is FAILED with exactly
  one audit row, after a final pass once the threshold has passed; no run is left
  active; the rows the reapers' calls returned match the audit rows one to one;
- no recovery within the threshold of the worker's last successful report; the
  audit row and the run keep the worker's last status and progress, and recovery
  leaves ``updated_at`` (the last sign of life) as it was;
- every report moved ``updated_at`` forward (progress is a sign of life);
- no exception anywhere: deadlocks, serialization failures, timeouts, and, since
  reapers run with ``lock_timeout = 100ms``, any wait on a worker's row lock.

Why a broken recovery fails this test (``test_stress_checks_catch_a_broken_recovery``
proves the first two by installing them in the test database and running a short
version of the same load through the same checks):

- matching by id only, without locking: two reapers that read the same stale run
  both fail it (two audit rows); a reaper that read a lock holder's run as stale
  waits for the lock and then overwrites the worker's COMPLETED with FAILED;
- ignoring SKIP LOCKED (waiting for the lock, re-check kept): the outcome is right,
  but recovery blocks on the lock holders' rows and hits ``lock_timeout``;
- dropping only the re-check from the UPDATE while keeping ``FOR UPDATE SKIP
  LOCKED`` would still be correct: under READ COMMITTED, FOR UPDATE re-evaluates
  its WHERE clause on the newest version of the row it locks, so the lock is the
  re-check. The UPDATE's own re-check is a second line of defence.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import psycopg
import pytest

from .helpers import open_conn

pytestmark = pytest.mark.slow

ACTIVE = "status IN ('PENDING', 'PROCESSING')"
PROGRESS = (
    "UPDATE qualification_runs SET completed = completed + 1, status = 'PROCESSING'"
    f" WHERE id = %s AND {ACTIVE} RETURNING updated_at, status, completed"
)
HEARTBEAT = (
    "UPDATE qualification_runs SET updated_at = now(), status = 'PROCESSING'"
    f" WHERE id = %s AND {ACTIVE} RETURNING updated_at, status, completed"
)
COMPLETE = (
    "UPDATE qualification_runs SET status = 'COMPLETED', completed = total, completed_at = now()"
    f" WHERE id = %s AND {ACTIVE} RETURNING clock_timestamp()"
)
WORKER_ERROR = "worker: the prospect source answered 500"
FAIL = (
    "UPDATE qualification_runs SET status = 'FAILED', error = %s, completed_at = now()"
    f" WHERE id = %s AND {ACTIVE} RETURNING clock_timestamp()"
)
RECOVER = "SELECT run_id FROM recover_stuck_runs(older_than => %s, max_runs => %s::integer)"
FATES = ("complete", "fail", "crash", "straggle", "hold_lock")


@dataclass(frozen=True)
class Load:
    threshold: float = 2.0  # seconds: older_than of every reaper call
    report_every: float = 0.2  # mean gap between a worker's reports (0.5x-1.5x)
    workers: int = 16
    reapers: int = 4
    duration: float = 7.0  # workers start new runs for this long
    max_steps: int = 16  # reports per run: 1..max_steps
    weights: tuple[int, ...] = (40, 10, 25, 15, 10)  # per FATES
    reaper_pause: float = 0.02  # random pause between a reaper's calls: 0..this
    lock_timeout_ms: int = 100  # 0 lets reapers wait for row locks


@dataclass
class Run:
    id: str
    fate: str
    worker: int
    created: datetime
    last_report: datetime  # DB clock: updated_at returned by the last successful statement
    last_status: str = "PENDING"
    last_completed: int = 0
    updates: int = 0  # successful UPDATEs by the worker
    outcome: str = "running"  # completed | failed | crashed | recovered
    finished: datetime | None = None  # DB clock_timestamp() of the worker's final UPDATE
    anomalies: list[str] = field(default_factory=list)


@dataclass
class Result:
    runs: list[Run]
    errors: list[str]
    reapers: list[dict]
    final_pass: list[str]
    seconds: float


def describe(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}[{state}]: {first}" if state else f"{type(exc).__name__}: {first}"


def connect(db_url: str, lock_timeout_ms: int = 0) -> psycopg.Connection:
    conn = open_conn(db_url)
    conn.execute("SET statement_timeout = '15s'")
    conn.execute(f"SET lock_timeout = '{int(lock_timeout_ms)}ms'")
    return conn


# --- reapers: separate processes ---------------------------------------------------


def reaper_main(db_url: str, no: int, load: Load, stop, out) -> None:
    """One reaper process: call recover_stuck_runs in a loop until told to stop."""
    rng = random.Random(no)
    older_than = timedelta(seconds=load.threshold)
    max_runs = None if no % 2 == 0 else 3  # half of them batch, to cover LIMIT
    calls, recovered, errors, longest = 0, [], [], 0.0
    conn = None
    try:
        conn = connect(db_url, load.lock_timeout_ms)
        out.put(("ready", no, None))
        while not stop.is_set():
            started = time.monotonic()
            try:
                with conn.transaction():
                    rows = conn.execute(RECOVER, (older_than, max_runs)).fetchall()
                    # Only the recovery's own waits count: at commit, NOTIFY queues
                    # behind other notifying commits, which is no wait on a worker.
                    conn.execute("SET LOCAL lock_timeout = 0")
                recovered.extend(r[0] for r in rows)
            except psycopg.Error as exc:
                errors.append(f"reaper {no}: {describe(exc)}")
                if conn.broken or conn.closed:
                    conn = connect(db_url, load.lock_timeout_ms)
            calls += 1
            longest = max(longest, time.monotonic() - started)
            time.sleep(rng.uniform(0, load.reaper_pause))
    except Exception as exc:
        errors.append(f"reaper {no}: {describe(exc)}")
    finally:
        if conn is not None:
            conn.close()
        report = {"no": no, "calls": calls, "recovered": recovered, "errors": errors}
        out.put(("done", no, report | {"longest": longest}))


# --- workers: threads of the test process ------------------------------------------


def report_progress(conn: psycopg.Connection, run: Run, rng: random.Random) -> bool:
    """One sign of life; False (and the run given up) when the run was recovered."""
    row = conn.execute(PROGRESS if rng.random() < 0.6 else HEARTBEAT, (run.id,)).fetchone()
    if row is None:
        run.outcome = "recovered"
        return False
    if not row[0] > run.last_report:
        run.anomalies.append(f"a report did not move updated_at ({row[0]} after {run.last_report})")
    run.last_report, run.last_status, run.last_completed = row
    run.updates += 1
    return True


def finish(conn: psycopg.Connection, run: Run, fate: str) -> None:
    if fate == "fail":
        row = conn.execute(FAIL, (WORKER_ERROR, run.id)).fetchone()
    else:
        row = conn.execute(COMPLETE, (run.id,)).fetchone()
    if row is None:
        run.outcome = "recovered"
        return
    run.outcome, run.finished = ("failed" if fate == "fail" else "completed"), row[0]
    run.updates += 1


def finish_holding_the_lock(conn: psycopg.Connection, run: Run, rng: random.Random, load: Load):
    """Lock the run, stay silent past the threshold, complete: recovery must skip it."""
    with conn.transaction():
        locked = conn.execute(
            f"SELECT 1 FROM qualification_runs WHERE id = %s AND {ACTIVE} FOR UPDATE", (run.id,)
        ).fetchone()
        if locked is None:
            run.outcome = "recovered"
            return
        time.sleep(load.threshold * rng.uniform(0.5, 0.7))
        row = conn.execute(COMPLETE, (run.id,)).fetchone()
    if row is None:
        run.anomalies.append("the run changed while its worker held its row lock")
        run.outcome = "recovered"
        return
    run.outcome, run.finished = "completed", row[0]
    run.updates += 1


def one_run(conn: psycopg.Connection, rng: random.Random, load: Load, no: int, first: bool) -> Run:
    # Each worker's first run cycles through the fates, so every fate occurs.
    fate = FATES[no % len(FATES)] if first else rng.choices(FATES, load.weights)[0]
    run_id, created = conn.execute(
        "INSERT INTO qualification_runs (total) VALUES (%s) RETURNING id, updated_at",
        (load.max_steps + 10,),
    ).fetchone()
    return Run(run_id, fate, no, created, last_report=created)


def live(conn: psycopg.Connection, run: Run, rng: random.Random, load: Load, deadline: float):
    steps = rng.randint(1, load.max_steps)
    crash_at = rng.randint(0, steps) if run.fate == "crash" else -1
    for step in range(steps):
        if step == crash_at or time.monotonic() > deadline:
            break
        time.sleep(load.report_every * rng.uniform(0.5, 1.5))
        if not report_progress(conn, run, rng):
            return
    if run.fate == "crash":
        run.outcome = "crashed"  # never touched again
        return
    if run.fate == "straggle":
        time.sleep(load.threshold * rng.uniform(0.7, 1.3))
        if rng.random() < 0.5 and not report_progress(conn, run, rng):
            return
    if run.fate == "hold_lock":
        time.sleep(load.threshold * rng.uniform(0.8, 0.9))
        finish_holding_the_lock(conn, run, rng, load)
        return
    finish(conn, run, "fail" if run.fate == "fail" else "complete")


def worker_main(db_url, load, no, seed, deadline, runs, errors) -> None:
    rng = random.Random(f"{seed}-{no}")
    try:
        with connect(db_url) as conn:
            first = True
            while time.monotonic() < deadline:
                run = one_run(conn, rng, load, no, first)
                runs.append(run)
                first = False
                live(conn, run, rng, load, deadline)
    except Exception as exc:
        errors.append(f"worker {no}: {describe(exc)}")


# --- the load ----------------------------------------------------------------------


def run_stress(db_url: str, conn: psycopg.Connection, load: Load, seed: int) -> Result:
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=reaper_main, args=(db_url, i, load, stop, out), daemon=True)
        for i in range(load.reapers)
    ]
    runs: list[Run] = []
    errors: list[str] = []
    reports: dict[int, dict] = {}
    for p in procs:
        p.start()
    try:
        ready = 0
        while ready < load.reapers:
            kind, no, report = out.get(timeout=60)
            if kind == "done":
                reports[no] = report
                raise AssertionError(f"reaper {no} did not start: {report['errors']}")
            ready += 1
        started = time.monotonic()
        deadline = started + load.duration
        threads = [
            threading.Thread(
                target=worker_main,
                args=(db_url, load, i, seed, deadline, runs, errors),
                daemon=True,
            )
            for i in range(load.workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, deadline + 6 * load.threshold + 30 - time.monotonic()))
            if t.is_alive():
                errors.append(f"{t.name} still running long after the deadline")
        # Give the reapers (not the final pass) the chance to find the last crashes:
        # wait, on the database's clock, until the newest active run has been silent
        # for longer than the threshold, plus a little.
        bound = time.monotonic() + 4 * load.threshold + 10
        while time.monotonic() < bound:
            (fresh,) = conn.execute(
                f"SELECT count(*) FROM qualification_runs WHERE {ACTIVE} AND updated_at >= now() - %s",
                (timedelta(seconds=load.threshold + 0.25),),
            ).fetchone()
            if fresh == 0:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        try:
            while len(reports) < load.reapers:
                kind, no, report = out.get(timeout=30)
                if kind == "done":
                    reports[no] = report
        except queue.Empty:
            errors.append(f"reapers {set(range(load.reapers)) - set(reports)} did not report")
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                errors.append(f"reaper process {p.pid} did not stop")
    seconds = time.monotonic() - started
    # The final pass, with the threshold passed for every run: nothing may stay stuck.
    final = [
        r[0]
        for r in conn.execute(
            "SELECT run_id FROM recover_stuck_runs(older_than => %s)",
            (timedelta(seconds=load.threshold),),
        )
    ]
    for report in reports.values():
        errors.extend(report["errors"])
    return Result(runs, errors, [reports[n] for n in sorted(reports)], final, seconds)


# --- the invariants ----------------------------------------------------------------


def check(conn: psycopg.Connection, result: Result, load: Load) -> list[tuple[str, str]]:
    """Every broken promise as (kind, message); empty when recovery behaved."""
    threshold = timedelta(seconds=load.threshold)
    table = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT id, status, completed, updated_at, error FROM qualification_runs"
        )
    }
    audits: dict[str, list[tuple]] = defaultdict(list)
    for run_id, *rest in conn.execute(
        "SELECT run_id, previous_status, completed, recovered_at FROM run_recoveries ORDER BY id"
    ):
        audits[run_id].append(tuple(rest))
    returned = Counter(r for rep in result.reapers for r in rep["recovered"])
    returned.update(result.final_pass)
    problems = [("error", e) for e in result.errors]
    runs = {run.id: run for run in result.runs}
    problems += [("stray", f"{rid}: a run no worker created") for rid in table.keys() - runs]
    problems += [("stray", f"{rid}: audited, not a run") for rid in audits.keys() - table.keys()]
    for run in result.runs:
        rid, (status, completed, updated_at, error) = run.id, table[run.id]
        mine = audits.get(rid, [])
        problems += [("anomaly", f"{rid}: {a}") for a in run.anomalies]
        if run.outcome == "completed" and (status != "COMPLETED" or mine):
            problems.append(
                (
                    "completed-run-failed",
                    f"{rid}: completed by its worker, now {status}, {len(mine)} audit row(s)",
                )
            )
        elif run.outcome == "failed" and (status != "FAILED" or error != WORKER_ERROR or mine):
            problems.append(
                (
                    "worker-failure-overwritten",
                    f"{rid}: failed by its worker, now {status}/{error!r}, {len(mine)} audit row(s)",
                )
            )
        elif run.outcome in ("crashed", "recovered") and (status != "FAILED" or len(mine) != 1):
            problems.append(
                (
                    "not-recovered-once",
                    f"{rid} ({run.fate}, {run.outcome}): {status}, {len(mine)} audit row(s)",
                )
            )
        elif run.outcome == "running":
            problems.append(("unfinished", f"{rid}: its worker never finished with it"))
        if returned[rid] != len(mine):
            problems.append(
                (
                    "returned-vs-audit",
                    f"{rid}: returned by {returned[rid]} call(s), {len(mine)} audit row(s)",
                )
            )
        for previous, audited_completed, recovered_at in mine:
            if not run.last_report + threshold < recovered_at:
                problems.append(
                    (
                        "recovered-while-alive",
                        f"{rid} ({run.fate}): recovered at {recovered_at}, {recovered_at - run.last_report} after its last report",
                    )
                )
            if (previous, audited_completed) != (run.last_status, run.last_completed):
                problems.append(
                    (
                        "audit-mismatch",
                        f"{rid}: audit says {previous} {audited_completed}, worker left {run.last_status} {run.last_completed}",
                    )
                )
        if mine and "stuck" not in (error or ""):
            problems.append(("run-changed", f"{rid}: recovered with error {error!r}"))
        if mine and (updated_at, completed) != (run.last_report, run.last_completed):
            problems.append(
                (
                    "run-changed",
                    f"{rid}: recovery left updated_at {updated_at}, completed {completed}; worker left {run.last_report}, {run.last_completed}",
                )
            )
    return problems


def summary(result: Result, load: Load, conn: psycopg.Connection) -> dict[str, object]:
    outcomes = Counter((run.fate, run.outcome) for run in result.runs)
    recovered_at = dict(
        conn.execute("SELECT run_id, min(recovered_at) FROM run_recoveries GROUP BY 1").fetchall()
    )
    lag = [
        (recovered_at[run.id] - run.last_report).total_seconds()
        for run in result.runs
        if run.outcome == "crashed" and run.id in recovered_at
    ]
    lifetimes = [
        (run.finished - run.created).total_seconds()
        for run in result.runs
        if run.outcome in ("completed", "failed") and run.finished
    ]
    threshold = timedelta(seconds=load.threshold)
    return {
        "runs": len(result.runs),
        "reapers": load.reapers,
        "workers": load.workers,
        "duration_s": round(result.seconds, 1),
        "threshold_s": load.threshold,
        "worker_updates": sum(run.updates for run in result.runs),
        "reaper_calls": sum(rep["calls"] for rep in result.reapers),
        "recoveries": sum(len(rep["recovered"]) for rep in result.reapers),
        "recoveries_per_reaper": [len(rep["recovered"]) for rep in result.reapers],
        "final_pass_recoveries": len(result.final_pass),
        "longest_reaper_call_ms": round(
            1000 * max((r["longest"] for r in result.reapers), default=0), 1
        ),
        "outcomes": {f"{f}/{o}": n for (f, o), n in sorted(outcomes.items())},
        "recovered_from": dict(
            conn.execute("SELECT previous_status, count(*) FROM run_recoveries GROUP BY 1")
        ),
        "crash_detected_after_s": (
            [round(min(lag), 2), round(statistics.median(lag), 2), round(max(lag), 2)]
            if lag
            else []
        ),
        "healthy_runs_longer_than_threshold": sum(t > load.threshold for t in lifetimes),
        "longest_healthy_run_s": round(max(lifetimes, default=0), 1),
        "completed_while_stale_and_locked": sum(
            1
            for run in result.runs
            if run.fate == "hold_lock"
            and run.outcome == "completed"
            and run.finished > run.last_report + threshold
        ),
        "errors": len(result.errors),
    }


def print_summary(title: str, figures: dict[str, object]) -> None:
    print(f"\n{title}")
    for key, value in figures.items():
        print(f"  {key}: {value}")


def seed_for_this_run() -> int:
    return int(os.environ.get("STRESS_SEED") or time.time_ns() % 1_000_000)


def test_recovery_under_load_never_kills_a_live_run_and_never_loses_a_dead_one(db_url, conn):
    """The promise under load: see the module docstring for the load and the invariants."""
    load, seed = Load(), seed_for_this_run()
    result = run_stress(db_url, conn, load, seed)
    problems = check(conn, result, load)
    figures = summary(result, load, conn)
    print_summary(f"stress (STRESS_SEED={seed})", figures)
    assert not problems, "\n".join(f"{kind}: {msg}" for kind, msg in problems[:50])
    assert (
        conn.execute(f"SELECT count(*) FROM qualification_runs WHERE {ACTIVE}").fetchone()[0] == 0
    )
    # The load really exercised what it claims to.
    outcomes = Counter(run.outcome for run in result.runs)
    assert outcomes["crashed"] >= 5 and outcomes["completed"] >= 20, outcomes
    assert sum(1 for rep in result.reapers if rep["recovered"]) >= 2, "reapers never competed"
    assert figures["healthy_runs_longer_than_threshold"] > 0
    assert figures["completed_while_stale_and_locked"] > 0, "SKIP LOCKED never exercised"


# --- proof that the checks bite --------------------------------------------------------

SIGNATURE = """
CREATE FUNCTION recover_stuck_runs(older_than interval, max_runs integer DEFAULT NULL)
RETURNS TABLE (run_id text, previous_status text, completed integer, total integer,
               age interval, idle interval)
LANGUAGE sql AS $fn$
"""
AUDIT_AND_RETURN = """
), audit AS (
    INSERT INTO run_recoveries (run_id, previous_status, completed, total, age, idle, older_than{extra_columns})
    SELECT f.id, f.status, f.completed, f.total, f.age, f.idle, $1{extra_values} FROM failed AS f
)
SELECT * FROM failed
$fn$
"""
# Values for audit columns that later schema versions made mandatory.
AUDIT_EXTRAS = {"table_name": "'qualification_runs'"}
BROKEN = {
    # No lock, then an UPDATE that matches the candidates by id only.
    "matches-by-id-without-lock": SIGNATURE
    + """
WITH candidates AS (
    SELECT r.id, r.status FROM qualification_runs AS r
    WHERE r.status IN ('PENDING', 'PROCESSING') AND r.updated_at < now() - $1
    ORDER BY r.updated_at LIMIT $2
), failed AS (
    UPDATE qualification_runs AS r
    SET status = 'FAILED', completed_at = now(), error = 'Recovered as stuck (broken variant)'
    FROM candidates AS c
    WHERE r.id = c.id
    RETURNING r.id, c.status, r.completed, r.total, now() - r.created_at AS age,
              now() - r.updated_at AS idle
"""
    + AUDIT_AND_RETURN,
    # Right outcome, but FOR UPDATE without SKIP LOCKED: waits for workers' locks.
    "waits-for-locked-rows": SIGNATURE
    + """
WITH candidates AS (
    SELECT r.id, r.status FROM qualification_runs AS r
    WHERE r.status IN ('PENDING', 'PROCESSING') AND r.updated_at < now() - $1
    ORDER BY r.updated_at LIMIT $2
    FOR UPDATE
), failed AS (
    UPDATE qualification_runs AS r
    SET status = 'FAILED', completed_at = now(), error = 'Recovered as stuck (broken variant)'
    FROM candidates AS c
    WHERE r.id = c.id AND r.status IN ('PENDING', 'PROCESSING') AND r.updated_at < now() - $1
    RETURNING r.id, c.status, r.completed, r.total, now() - r.created_at AS age,
              now() - r.updated_at AS idle
"""
    + AUDIT_AND_RETURN,
}
# A short load heavy in crashes, stragglers and lock holders.
PROOF_LOAD = Load(
    threshold=0.6,
    report_every=0.06,
    workers=8,
    reapers=3,
    duration=2.0,
    max_steps=8,
    weights=(20, 5, 30, 20, 25),
)


@pytest.mark.parametrize(
    ("variant", "lock_timeout_ms", "expected"),
    [
        # Reapers may wait here, so that the data checks (not a timeout) must catch it.
        (
            "matches-by-id-without-lock",
            0,
            {"completed-run-failed", "not-recovered-once", "recovered-while-alive"},
        ),
        ("waits-for-locked-rows", 50, {"error"}),
    ],
)
def test_stress_checks_catch_a_broken_recovery(db_url, conn, variant, lock_timeout_ms, expected):
    required = [
        name
        for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'run_recoveries'::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attnotnull AND NOT atthasdef"
            " AND attidentity = '' AND attname NOT IN ('run_id', 'previous_status', 'older_than')"
        )
    ]
    unknown = set(required) - AUDIT_EXTRAS.keys()
    assert not unknown, f"teach the broken variants the new audit column(s) {unknown}"
    for (signature,) in conn.execute(
        "SELECT oid::regprocedure::text FROM pg_proc WHERE proname = 'recover_stuck_runs'"
        " AND pronamespace = 'stuck_runs'::regnamespace"
    ).fetchall():
        conn.execute(f"DROP FUNCTION {signature}")
    conn.execute(
        BROKEN[variant].format(
            extra_columns="".join(f", {name}" for name in required),
            extra_values="".join(f", {AUDIT_EXTRAS[name]}" for name in required),
        )
    )
    load, seed = replace(PROOF_LOAD, lock_timeout_ms=lock_timeout_ms), seed_for_this_run()
    result = run_stress(db_url, conn, load, seed)
    problems = check(conn, result, load)
    kinds = Counter(kind for kind, _ in problems)
    print_summary(
        f"broken variant {variant} (STRESS_SEED={seed})",
        summary(result, load, conn) | {"caught": dict(kinds)},
    )
    for kind, msg in problems[:5]:
        print(f"  e.g. {kind}: {msg}")
    assert kinds.keys() & expected, f"{variant} went unnoticed: {dict(kinds)}"
    if variant == "waits-for-locked-rows":
        assert any("LockNotAvailable" in msg for _, msg in problems), problems
