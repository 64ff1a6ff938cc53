"""Section 1: the no-op sweep, run at every application start and, with pg_cron, every minute.

Its cost must follow the number of active runs, not the table size, so it is
measured at several sizes against the original design (an ORM table with only a
primary key, every active row pulled into the client), and once more over an
adopted Prisma-style table. The original design's table and sweep live here
because nothing else compares against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from tests.perf.bench.common import (
    FLAT_MAX_RATIO,
    NOOP_MAX_MS,
    NOOP_MIN_SPEEDUP,
    OLDER_THAN,
    RECOVER_SQL,
    BenchError,
    Plan,
    Report,
    Row,
    faster,
    fmt_count,
    fmt_ms,
    fmt_ratio,
    log,
    median,
    timed_ms,
    verdict,
)
from tests.perf.bench.databases import Databases, connect, load_runs, vacuum

VIEW_SQL = "SELECT * FROM stuck_runs"


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
