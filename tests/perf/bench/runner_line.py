"""Section 4: the runner on the command line: wall time and peak memory.

Most runs of `stuck-runs recover` find nothing to do, so start-up is most of
their cost: a no-op run's wall time is set against the floor (a bare interpreter
importing psycopg and making the same call) and against psql. Its peak RSS is
measured while it recovers a backlog, in one transaction and in batches.
"""

from __future__ import annotations

import compileall
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

import runner as runner_package
from tests.perf.bench.commands import psql_env, run_checked, runner_command
from tests.perf.bench.common import (
    OLDER_THAN,
    RECOVER_SQL,
    RUNNER_MAX_MS,
    RUNNER_MAX_RSS_MIB,
    BenchError,
    Plan,
    Report,
    Row,
    fmt_count,
    fmt_ms,
    fmt_ratio,
    log,
    median,
    timed_ms,
    verdict,
)
from tests.perf.bench.databases import Databases, reset_bulk

# Peak RSS of one command, measured in a fresh interpreter so that no earlier
# child (RUSAGE_CHILDREN keeps the maximum over all of them) can leak into it.
MAX_RSS_WRAPPER = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.write(done.stderr.decode(errors="replace"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)
"""


def measure_runner(
    url: str, conn: psycopg.Connection, dbs: Databases, plan: Plan, report: Report
) -> None:
    section = "4. Runner"
    stuck = conn.execute("SELECT count(*) FROM stuck_runs").fetchone()[0]  # type: ignore[index]
    active = conn.execute("SELECT count(*) FROM active_runs").fetchone()[0]  # type: ignore[index]
    if stuck:
        raise BenchError(f"{stuck} runs are stuck before the no-op runner measurement")
    base, runner_name = runner_command()
    runner = [*base, "--database-url", url, "recover", "--older-than", OLDER_THAN]
    conninfo, env = psql_env(url)
    psql = shutil.which("psql")
    psql_cmd = [psql, conninfo, "-c", RECOVER_SQL] if psql else None
    # The floor: a bare interpreter that imports psycopg and makes the same call,
    # connected as the runner connects (autocommit, its connect_timeout and
    # application_name), so that neither side pays for what the other skips.
    floor_cmd = [
        sys.executable,
        "-c",
        "import sys, psycopg; c = psycopg.connect(sys.argv[1], autocommit=True,"
        " connect_timeout=5, application_name='stuck-runs', prepare_threshold=None);"
        f' c.execute("SELECT * FROM stuck_runs.{RECOVER_SQL.removeprefix("SELECT * FROM ")}")'
        ".fetchall()",
        conninfo,
    ]
    # psycopg comes byte-compiled (pip compiles what it installs); a source tree
    # under PYTHONDONTWRITEBYTECODE=1 would compile the runner on every start.
    compileall.compile_dir(Path(runner_package.__file__).parent, quiet=1)
    runner_ms: list[float] = []
    psql_ms: list[float] = []
    floor_ms: list[float] = []
    run_checked(runner)  # warm the file system cache
    run_checked(floor_cmd)
    if psql_cmd:
        run_checked(psql_cmd, env=env)  # type: ignore[arg-type]
    for _ in range(plan.cli_runs):
        runner_ms.append(timed_ms(lambda: run_checked(runner))[0])
        floor_ms.append(timed_ms(lambda: run_checked(floor_cmd))[0])
        if psql_cmd:
            psql_ms.append(timed_ms(lambda: run_checked(psql_cmd, env=env))[0])  # type: ignore[arg-type]
    log(
        f"section 4: runner {median(runner_ms):.0f} ms, bare Python {median(floor_ms):.0f} ms,"
        f" psql {median(psql_ms):.0f} ms"
    )
    report.add(
        Row(
            section,
            f"no-op `{runner_name} recover` against the bare-Python floor, median of "
            f"{plan.cli_runs}",
            fmt_ms(median(runner_ms)),
            f"`python -c` importing psycopg, same call: {fmt_ms(median(floor_ms))}",
            f"{fmt_ratio(median(runner_ms) / median(floor_ms))} the floor's time",
            "<= 1.1x",
            verdict(median(runner_ms) <= 1.1 * median(floor_ms)),
        )
    )
    report.add(
        Row(
            section,
            f"no-op `{runner_name} recover --older-than '{OLDER_THAN}'` wall time, "
            f"{fmt_count(plan.bulk_total)} rows ({active:,} active, 0 stuck), "
            f"median of {plan.cli_runs}",
            fmt_ms(median(runner_ms)),
            f'`psql "$URL" -c "{RECOVER_SQL}"`: '
            + (fmt_ms(median(psql_ms)) if psql_cmd else "psql not found"),
            f"{fmt_ratio(median(runner_ms) / median(psql_ms))} psql's time" if psql_ms else "",
            f"< {RUNNER_MAX_MS:g} ms",
            verdict(median(runner_ms) < RUNNER_MAX_MS),
        )
    )
    memory: dict[str, list[float]] = {}
    for label, extra in (
        ("one transaction", []),
        (f"`--batch-size {plan.batch_size}`", ["--batch-size", str(plan.batch_size)]),
    ):
        for _ in range(plan.memory_runs):
            reset_bulk(conn, dbs, plan.bulk_stuck)
            cmd = [*runner, "--json", "--statement-timeout", "600", *extra]
            done = subprocess.run(
                [sys.executable, "-c", MAX_RSS_WRAPPER, *cmd],
                capture_output=True,
                text=True,
                timeout=900,
            )
            fields = done.stdout.split()
            if len(fields) != 2 or fields[1] != "0":
                raise BenchError(f"runner failed under the RSS wrapper: {done.stderr.strip()}")
            recovered = conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0]  # type: ignore[index]
            if recovered != plan.bulk_stuck:
                raise BenchError(f"the runner recovered {recovered}, not {plan.bulk_stuck}")
            memory.setdefault(label, []).append(int(fields[0]) / 1024)  # KiB on Linux
    (single_label, single), (batch_label, batched) = memory.items()
    peak = max(median(single), median(batched))
    report.add(
        Row(
            section,
            f"peak RSS of `{runner_name} recover --json > /dev/null` recovering "
            f"{fmt_count(plan.bulk_stuck)} runs, {single_label}",
            f"{median(single):.0f} MiB",
            f"{batch_label}: {median(batched):.0f} MiB",
            "",
            f"< {RUNNER_MAX_RSS_MIB:g} MiB",
            verdict(peak < RUNNER_MAX_RSS_MIB),
        )
    )
