"""Backlog drain benchmark (issue 24): does a backlog of any size drain at a steady rate,
with bounded backend memory and short transactions, from every entry point?

For one backlog size (every run stuck), three ways to recover it, each from a freshly
loaded table:

1. the pg_cron job's statement (`stuck_runs_job_sql()`), run by hand in a loop as
   pg_cron would run it every minute, until a run finds nothing left;
2. the runner, `stuck-runs recover --json > /dev/null`, with its default batch size;
3. for reference, what each did before, in one transaction: one unbatched
   `SELECT count(*) FROM recover_stuck_runs()` call (the old job) and the runner
   with one batch (its old default); skipped above --one-call-max (they fail there).

For each: wall time and throughput (runs recovered per second), the peak private
memory of the server backend doing the work (RssAnon of /proc/<pid>/status, sampled
every 20 ms: VmHWM would count the shared buffers the backend touched), and the
longest transaction (sampled from pg_stat_activity.xact_start every 20 ms). The
targets of issue 24: backend memory under 100 MB and no transaction over 5 s at any
size; throughput at least 80% of the same entry point's one-transaction rate at 1M
(pass --reference-rate and --runner-reference-rate with those figures when measuring
another size).

Usage (from the repository root):

    python -m tests.perf.bench_drain                          # 20,000 runs, embedded PostgreSQL 18
    python -m tests.perf.bench_drain --size 1000000           # the issue's 1M case
    python -m tests.perf.bench_drain --size 10000000 --reference-rate 18585
    python -m tests.perf.bench_drain --database-url URL       # any server allowing CREATE DATABASE

The server must run on this machine (its backends' /proc entries are read). The table
goes to stdout, progress to stderr; the database it creates is dropped at the end.
No file name starts with test_: tests/test_drain.py runs a tiny size of it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from tests.perf.bench.common import BenchError, Report, Row, fmt_count, log, verdict
from tests.perf.bench.databases import Databases, connect, database_server

ROOT = Path(__file__).resolve().parents[2]
MEMORY_TARGET_MB = 100.0
TRANSACTION_TARGET_S = 5.0
RATE_TARGET = 0.8
SAMPLE_SECONDS = 0.02


@dataclass
class Drain:
    """What one way of draining the backlog cost."""

    label: str
    recovered: int
    seconds: float
    peak_mb: float
    longest_xact_s: float
    calls: int
    failed: str | None = None

    @property
    def rate(self) -> float:
        return self.recovered / self.seconds if self.seconds else 0.0


def load_backlog(conn: psycopg.Connection, size: int) -> None:
    """Every run stuck, as after an outage of a busy system: one INSERT ... SELECT."""
    conn.execute("TRUNCATE qualification_runs, run_recoveries")
    conn.execute(
        "INSERT INTO qualification_runs (id, status, total, completed, created_at, updated_at)"
        " SELECT 'stuck-' || lpad(g::text, 9, '0'),"
        "        CASE WHEN g %% 2 = 0 THEN 'PENDING' ELSE 'PROCESSING' END, 100, g %% 100,"
        "        now() - interval '2 hours', now() - interval '1 hour' - g * interval '1 ms'"
        " FROM generate_series(1, %s) AS g",
        (size,),
    )
    conn.execute("VACUUM ANALYZE qualification_runs")
    with contextlib.suppress(psycopg.Error):
        conn.execute("CHECKPOINT")


def private_kib(pid: int) -> int:
    """RssAnon: the backend's own memory, not the shared buffers it mapped."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


class Watch:
    """Samples one backend's private memory and its open transaction's age."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pid: int | None = None
        self.peak_kib = 0
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with connect(self.url) as conn:
            while not self._stop.is_set():
                if self.pid is not None:
                    self.peak_kib = max(self.peak_kib, private_kib(self.pid))
                    row = conn.execute(
                        "SELECT extract(epoch FROM clock_timestamp() - xact_start)"
                        " FROM pg_stat_activity WHERE pid = %s AND xact_start IS NOT NULL",
                        (self.pid,),
                    ).fetchone()
                    if row and row[0] is not None:
                        self.longest = max(self.longest, float(row[0]))
                time.sleep(SAMPLE_SECONDS)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def recovered_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0]  # type: ignore[index]


def drain_job(url: str, conn: psycopg.Connection) -> Drain:
    """The pg_cron statement, again and again, as pg_cron would run it every minute."""
    statement = conn.execute("SELECT stuck_runs_job_sql()").fetchone()[0]  # type: ignore[index]
    calls = 0
    with connect(url) as worker, Watch(url) as watch:
        watch.pid = worker.info.backend_pid
        remains: list[str] = []
        worker.add_notice_handler(lambda d: remains.append(d.message_primary or ""))
        began = time.perf_counter()
        done = 0
        while True:
            worker.execute(statement)
            calls += 1
            if remains and remains[-1].endswith("; 0 remain"):
                break
            # A statement that says nothing (an older job) stops when it gains nothing.
            before, done = done, recovered_count(conn)
            if done == before:
                break
        seconds = time.perf_counter() - began
    return Drain(
        "pg_cron statement, run in a loop",
        recovered_count(conn),
        seconds,
        watch.peak_kib / 1024,
        watch.longest,
        calls,
    )


def drain_runner(url: str, conn: psycopg.Connection, *extra: str) -> Drain:
    """`stuck-runs recover --json > /dev/null`: its default batches, its backend watched."""
    env = {**os.environ, "DATABASE_URL": url, "PGAPPNAME": "stuck-runs-bench-drain"}
    env.pop("STUCK_RUNS_BATCH_SIZE", None)
    with Watch(url) as watch:
        began = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runner",
                "recover",
                "--json",
                "--statement-timeout",
                "600",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        while watch.pid is None and proc.poll() is None:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                " AND pid <> pg_backend_pid() LIMIT 1",
                ("stuck-runs-bench-drain",),
            ).fetchone()
            watch.pid = row[0] if row else None
            time.sleep(0.005)
        _, stderr = proc.communicate()
        seconds = time.perf_counter() - began
    failed = None if proc.returncode == 0 else stderr.strip().splitlines()[-1]
    if watch.pid is None:
        failed = (failed or "") + " (its backend was never seen: no memory figure)"
    return Drain(
        "runner `recover` (default batch size)" if not extra else "runner, one transaction (old)",
        recovered_count(conn),
        seconds,
        watch.peak_kib / 1024,
        watch.longest,
        1,
        failed,
    )


def runner_one_transaction(url: str, conn: psycopg.Connection) -> Drain:
    """What `recover` did by default before: the whole backlog in one transaction."""
    return drain_runner(url, conn, "--batch-size", str(2**31 - 1))


def one_call(url: str, conn: psycopg.Connection) -> Drain:
    """What the job used to run: the whole backlog in one call and one transaction."""
    failed = None
    with connect(url) as worker, Watch(url) as watch:
        watch.pid = worker.info.backend_pid
        warnings: list[str] = []
        worker.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        began = time.perf_counter()
        worker.execute("SELECT count(*) FROM recover_stuck_runs()")
        seconds = time.perf_counter() - began
        if warnings:
            failed = warnings[-1]
    return Drain(
        "one unbatched `recover_stuck_runs()` call (the old job)",
        recovered_count(conn),
        seconds,
        watch.peak_kib / 1024,
        watch.longest,
        1,
        failed,
    )


def run(args: argparse.Namespace) -> str:
    began = time.perf_counter()
    report = Report()
    size = args.size
    with database_server(args.database_url) as (server_url, server_kind):
        dbs = Databases(server_url)
        try:
            url = dbs.create("drain")
            with connect(url) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
                ways: list[Callable[[str, psycopg.Connection], Drain]] = [drain_job, drain_runner]
                if size <= args.one_call_max:
                    ways += [one_call, runner_one_transaction]
                drains = []
                for way in ways:
                    log(f"loading {size:,} stuck runs")
                    load_backlog(conn, size)
                    log(f"draining: {way.__name__}")
                    drains.append(way(url, conn))
        finally:
            dbs.drop_all()
    # Each entry point is judged against what it did before, in one transaction:
    # the job against the one call, the runner against its old default.
    references = {"pg_cron": args.reference_rate, "runner": args.runner_reference_rate}
    if size >= 1_000_000:
        for d in drains:
            if d.label.startswith("one ") and references["pg_cron"] is None:
                references["pg_cron"] = d.rate
            if d.label.endswith("(old)") and references["runner"] is None:
                references["runner"] = d.rate
    for d in drains:
        old_way = d.label.startswith("one ") or d.label.endswith("(old)")
        reference = None if old_way else references[d.label.split()[0].strip("`,")]
        compared = "one call" if d.label.startswith("pg_cron") else "runner in one transaction"
        where = f"{fmt_count(size)} stuck of {fmt_count(size)} rows"
        outcome = f"{d.recovered:,} recovered in {d.calls:,} call(s)"
        if d.failed:
            outcome += f"; said: {d.failed[:160]}"
        complete = d.recovered == size
        report.add(
            Row(
                "Drain",
                f"{d.label}: runs recovered, {where}",
                f"{d.recovered:,}",
                outcome,
                "",
                "all of them",
                verdict(complete),
            )
        )
        rate_ok = None if reference is None else d.rate >= RATE_TARGET * reference
        report.add(
            Row(
                "Drain",
                f"{d.label}: throughput ({d.seconds:.1f} s)",
                f"{d.rate:,.0f} runs/s",
                "" if reference is None else f"{compared} at 1M: {reference:,.0f} runs/s",
                "" if reference is None else f"{d.rate / reference:.2f}x",
                "(info)" if rate_ok is None else f">= 0.8x the {compared} at 1M",
                "" if rate_ok is None else verdict(rate_ok),
            )
        )
        # The old ways are measured for comparison: their misses are not ours.
        judged = " (comparison)" if old_way else ""
        report.add(
            Row(
                "Drain",
                f"{d.label}: peak backend memory (RssAnon)",
                f"{d.peak_mb:.1f} MB",
                target=f"< {MEMORY_TARGET_MB:g} MB{judged}",
                result=verdict(d.peak_mb < MEMORY_TARGET_MB),
            )
        )
        report.add(
            Row(
                "Drain",
                f"{d.label}: longest transaction",
                f"{d.longest_xact_s:.2f} s",
                target=f"<= {TRANSACTION_TARGET_S:g} s{judged}",
                result=verdict(d.longest_xact_s <= TRANSACTION_TARGET_S),
            )
        )
    elapsed = time.perf_counter() - began
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"### stuck-runs backlog drain benchmark ({fmt_count(size)} stuck runs)",
        "",
        f"- Machine: {nproc} CPU cores (nproc); {platform.system()} {platform.release()}; "
        f"load average at end {os.getloadavg()[0]:.2f}",
        f"- PostgreSQL {version}, {server_kind}",
        f"- Command: `python -m tests.perf.bench_drain --size {size}`; finished in "
        f"{elapsed:.0f} s on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        report.table(),
        "",
        "How it was measured: each way starts from a freshly loaded, vacuumed table; "
        "memory is the peak RssAnon of the backend doing the work and the transaction age "
        f"that of its open transaction, both sampled every {SAMPLE_SECONDS * 1000:g} ms.",
        "",
        "Targets missed: " + ("; ".join(report.misses) if report.misses else "none"),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_drain",
        description="Measure draining a backlog of stuck runs; print a markdown table.",
    )
    parser.add_argument("--database-url", help="a server on this machine (default: embedded)")
    parser.add_argument(
        "--size", type=int, default=20_000, help="stuck runs, all of the table (default 20000)"
    )
    parser.add_argument(
        "--one-call-max",
        type=int,
        default=2_000_000,
        help="measure the unbatched one call only up to this size (default 2000000)",
    )
    parser.add_argument(
        "--reference-rate",
        type=float,
        help="runs/s of the one call at 1M, to judge the job's throughput at another size",
    )
    parser.add_argument(
        "--runner-reference-rate",
        type=float,
        help="runs/s of the runner in one transaction at 1M, to judge it at another size",
    )
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be at least 1")
    return args


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    yield


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with _sigterm_exits():
        try:
            text = run(args)
        except BenchError as exc:
            print(f"bench_drain: error: {exc}", file=sys.stderr)
            return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
