"""Section 3: do workers still update their runs promptly while recovery runs?

Worker threads report progress at a steady rate before and during a real runner
recovery (batched, and in one transaction for comparison), and a 'zombie' worker
updates exactly the runs recovery holds: the only updates that can wait on its
row locks. The section compares update latencies before and during, and reports
the zombie's longest wait.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from tests.helpers import open_conn
from tests.perf.bench.commands import run_checked, runner_command
from tests.perf.bench.common import (
    CONTENTION_P99_MAX_RATIO,
    LOCK_WAIT_MAX_MS,
    OLDER_THAN,
    Plan,
    Report,
    Row,
    fmt_count,
    fmt_ms,
    fmt_ratio,
    log,
    median,
    percentile,
    timed_ms,
    verdict,
)
from tests.perf.bench.databases import Databases, reset_bulk

# A worker reporting progress, guarded the way a real worker guards it (it must
# not resurrect a run that was failed meanwhile). The trigger bumps updated_at.
PROGRESS_SQL = (
    "UPDATE qualification_runs SET completed = completed + 1 "
    "WHERE id = %s AND status IN ('PENDING', 'PROCESSING')"
)


@dataclass
class ContentionRun:
    before: list[float]
    during: list[float]
    probe_max: float
    probe_over: int  # probe updates that waited more than LOCK_WAIT_MAX_MS
    probes: int
    window_s: float
    runner_s: float
    recovered: int


def worker_loop(
    url: str,
    ids: Sequence[str],
    rate: float,
    seed: int,
    stop: threading.Event,
    out: list[tuple[float, float]],
    pick: Callable[[psycopg.Connection, random.Random], str | None] | None = None,
) -> None:
    """One worker connection updating progress at a steady, paced rate.

    Records (wall-clock start, latency in ms) of each update; the latency is the
    UPDATE's round trip only, so any wait on a row lock shows up in it.
    """
    rnd = random.Random(seed)
    period = 1.0 / rate
    with open_conn(url) as conn:
        conn.execute("SET statement_timeout = '120s'")
        next_at = time.perf_counter() + rnd.random() * period
        while not stop.is_set():
            delay = next_at - time.perf_counter()
            if delay > 0 and stop.wait(delay):
                break
            run_id = pick(conn, rnd) if pick else rnd.choice(ids)
            if run_id is not None:
                wall = time.time()
                start = time.perf_counter()
                conn.execute(PROGRESS_SQL, (run_id,))
                out.append((wall, (time.perf_counter() - start) * 1000))
            next_at = max(next_at + period, time.perf_counter())


def contention_run(
    url: str, conn: psycopg.Connection, dbs: Databases, plan: Plan, batch_size: int | None
) -> ContentionRun:
    """Workers alone for a while, then the runner recovering the backlog next to them.

    Besides the 8 workers on live runs, a 'zombie' worker (the process that was
    declared dead comes back and reports progress) updates exactly the runs that
    recovery is busy with: the next batch after the last committed audit row.
    Only such updates can wait on recovery's row locks, so its longest wait is
    the honest measure of 'no worker waits more than 50 ms on recovery'.
    """
    reset_bulk(conn, dbs, plan.bulk_stuck)
    live_ids = [f"live-{j:08d}" for j in range(1, plan.live_runs + 1)]
    window = batch_size or plan.bulk_stuck

    def next_in_line(probe: psycopg.Connection, rnd: random.Random) -> str | None:
        last = probe.execute("SELECT max(run_id) FROM run_recoveries").fetchone()
        done = int(last[0][6:]) if last and last[0] else 0
        if done >= plan.bulk_stuck:
            return None
        return f"stuck-{rnd.randint(done + 1, min(done + window, plan.bulk_stuck)):08d}"

    stop = threading.Event()
    probe_stop = threading.Event()
    samples: list[list[tuple[float, float]]] = [[] for _ in range(plan.workers)]
    probe_samples: list[tuple[float, float]] = []
    threads = [
        threading.Thread(
            target=worker_loop,
            args=(url, live_ids, plan.update_rate / plan.workers, i, stop, samples[i]),
            daemon=True,
        )
        for i in range(plan.workers)
    ]
    probe = threading.Thread(
        target=worker_loop,
        args=(url, [], plan.probe_rate, 99, probe_stop, probe_samples, next_in_line),
        daemon=True,
    )
    started = time.time()
    for thread in threads:
        thread.start()
    warmup = 0.5  # connections, prepared statements
    time.sleep(warmup + plan.before_seconds)
    cmd, _ = runner_command()
    cmd = [*cmd, "--database-url", url, "recover", "--older-than", OLDER_THAN]
    cmd += ["--statement-timeout", "600"]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    launched = time.time()
    probe.start()
    try:
        runner_s, _ = timed_ms(lambda: run_checked(cmd))
    finally:
        ended = time.time()
        probe_stop.set()
        probe.join(timeout=150)
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(timeout=150)
    first, recovered = conn.execute(
        "SELECT extract(epoch FROM min(recovered_at))::float8, count(*) FROM run_recoveries"
    ).fetchone()  # type: ignore[misc]
    # The runner's first transaction, as the server dated it: the Python start-up
    # before it holds no lock and would only dilute the "during" sample.
    window_start = first if first and launched - 1 <= first <= ended else launched
    flat = [s for worker in samples for s in worker]
    before = [ms for wall, ms in flat if started + warmup <= wall < launched]
    during = [ms for wall, ms in flat if window_start <= wall <= ended]
    probe_ms = [ms for _, ms in probe_samples]
    return ContentionRun(
        before=before,
        during=during,
        probe_max=max(probe_ms, default=0.0),
        probe_over=sum(ms > LOCK_WAIT_MAX_MS for ms in probe_ms),
        probes=len(probe_ms),
        window_s=ended - window_start,
        runner_s=runner_s / 1000,
        recovered=int(recovered),
    )


def measure_contention(
    url: str, conn: psycopg.Connection, dbs: Databases, plan: Plan, report: Report
) -> None:
    section = "3. Contention"
    variants: list[tuple[str, int | None, bool]] = [
        (f"runner `--batch-size {plan.batch_size}`", plan.batch_size, True),
        ("runner, one transaction (no `--batch-size`)", None, False),
    ]
    for label, batch_size, judged in variants:
        batches = math.ceil(plan.bulk_stuck / batch_size) if batch_size else 1
        runs: list[ContentionRun] = []
        for rep in range(plan.contention_repeat):
            run = contention_run(url, conn, dbs, plan, batch_size)
            log(
                f"section 3: {label} #{rep + 1}: p99 before {percentile(run.before, 99):.2f} ms,"
                f" during {percentile(run.during, 99):.2f} ms, probe max {run.probe_max:.0f} ms,"
                f" runner {run.runner_s:.1f} s, recovered {run.recovered}"
            )
            runs.append(run)
        p50_before = median([percentile(r.before, 50) for r in runs])
        p50_during = median([percentile(r.during, 50) for r in runs])
        p99_before = median([percentile(r.before, 99) for r in runs])
        p99_during = median([percentile(r.during, 99) for r in runs])
        max_before = max(max(r.before, default=math.nan) for r in runs)
        max_during = max(max(r.during, default=math.nan) for r in runs)
        probe_max = max(r.probe_max for r in runs)
        probe_over = sum(r.probe_over for r in runs)
        probes = sum(r.probes for r in runs)
        n_before = sum(len(r.before) for r in runs)
        n_during = sum(len(r.during) for r in runs)
        # The spread between runs says how much of the ratio is the machine's noise.
        per_run = ", ".join(
            f"{percentile(r.before, 99):.1f}/{percentile(r.during, 99):.1f} ms" for r in runs
        )
        suffix = "" if judged else " (comparison)"
        window = median([r.window_s for r in runs])
        who = (
            f"{label}: {plan.workers} workers, {plan.update_rate:g} updates/s on "
            f"{plan.live_runs:,} live runs, {fmt_count(plan.bulk_stuck)} stuck"
        )
        report.add(
            Row(
                section,
                f"{who}: worker update p50, during recovery vs before",
                fmt_ms(p50_during),
                f"before: {fmt_ms(p50_before)}",
                f"{fmt_ratio(p50_during / p50_before)} before's",
            )
        )
        ratio = p99_during / p99_before
        report.add(
            Row(
                section,
                f"{label}: worker update p99, during vs before "
                f"({n_during:,} vs {n_before:,} updates; per run before/during: {per_run})",
                fmt_ms(p99_during),
                f"before: {fmt_ms(p99_before)}",
                f"{fmt_ratio(ratio)} before's",
                f"<= {CONTENTION_P99_MAX_RATIO:g}x{suffix}",
                verdict(ratio <= CONTENTION_P99_MAX_RATIO),
            )
        )
        report.add(
            Row(
                section,
                f"{label}: slowest worker update on a live run, during vs before",
                fmt_ms(max_during),
                f"before: {fmt_ms(max_before)}",
                f"{fmt_ratio(max_during / max_before)} before's",
            )
        )
        report.add(
            Row(
                section,
                f"{label}: longest wait of a worker update on a run that recovery holds "
                f"(zombie probe, {plan.probe_rate:g}/s; {probe_over} of {probes} over "
                f"{LOCK_WAIT_MAX_MS:g} ms)",
                fmt_ms(probe_max),
                "",
                "",
                f"<= {LOCK_WAIT_MAX_MS:g} ms{suffix}",
                verdict(probe_max <= LOCK_WAIT_MAX_MS),
            )
        )
        report.add(
            Row(
                section,
                f"{label}: runner wall time (runs recovered; first transaction to exit)",
                f"{median([r.runner_s for r in runs]):.2f} s",
                f"{median([r.recovered for r in runs]):,.0f} recovered; window "
                f"{window:.2f} s, ≈ {fmt_ms(window * 1000 / batches)} per transaction",
            )
        )
