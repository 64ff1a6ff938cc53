"""Where recover_stuck_runs()'s time goes (issue 20): the no-op and the bulk, part by part.

The peers' benchmark (bench_peers.py) says how fast the whole call is; this script
says what each part of it costs, measured in the same run against the bare
statements it is compared with:

* the no-op, server-side (a DO block of many calls, so no round trip is counted):
  the whole call, the generated fast path alone (_stuck_runs_quiet), the bare index
  probe, and the cost of calling an empty PL/pgSQL function with the same SET clauses;
* the bulk, each from the same reset state and rolled back: a bare UPDATE ...
  RETURNING, our sweep statement without its audit, the same with its audit
  (_stuck_runs_sweep_direct_sql), the audit's INSERT alone, and the whole call.

Usage (from the repository root):

    python -m tests.perf.bench_parts                          # 1M rows, 100k stuck
    python -m tests.perf.bench_parts --size 100000 --database-url URL
    python -m tests.perf.bench_parts --quick                  # seconds: the smoke run

The table goes to stdout, progress to stderr; the database is dropped at the end.
No file name starts with test_: tests/test_bench_smoke.py runs the --quick form.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import psycopg

from tests.perf.bench.common import BenchError, log, median
from tests.perf.bench.databases import Databases, connect, database_server, load_runs, reset_bulk
from tests.perf.bench_recovery import machine_lines

CUTOFF = "now() - interval '5 minutes'"
BARE_UPDATE = f"""
UPDATE qualification_runs
SET status = 'FAILED', completed_at = now(), error = 'Recovered as stuck'
WHERE status IN ('PENDING', 'PROCESSING') AND updated_at < {CUTOFF}
RETURNING id, completed, total
"""
# The audit rows a sweep of n runs writes, without the sweep.
AUDIT_ONLY = """
INSERT INTO run_recoveries (table_name, run_id, previous_status, completed, total, age, idle,
                            older_than, action, recovered_by, recovered_at)
SELECT 'qualification_runs', 'stuck-' || g, 'PENDING', 1, 2, '1 hour', '1 hour', '5 minutes',
       'failed', current_user, now()
FROM generate_series(1, %s) AS g
"""
PROBE = f"""
SELECT EXISTS (SELECT FROM qualification_runs
               WHERE status IN ('PENDING', 'PROCESSING') AND updated_at < {CUTOFF})
"""
QUIET = (
    f"SELECT _stuck_runs_quiet({CUTOFF}, NULL::integer, NULL::integer, NULL::interval,"
    " NULL::text, NULL::boolean)"
)


def statement(conn: psycopg.Connection, builder: str) -> str:
    """Our sweep statement for the built-in table, as the general path builds it."""
    row = conn.execute(
        f"SELECT {builder}(t, false) FROM stuck_runs_tables AS t"
        " WHERE t.table_name = 'qualification_runs'::regclass"
    ).fetchone()
    if row is None:
        raise BenchError("qualification_runs is not registered")
    return row[0]


def server_side_us(conn: psycopg.Connection, sql: str, calls: int) -> float:
    """Microseconds per execution of sql, run `calls` times inside one DO block."""
    body = f"BEGIN FOR i IN 1..{calls} LOOP PERFORM * FROM ({sql}) AS s; END LOOP; END"
    started = time.perf_counter()
    conn.execute(f"DO $bench$ {body} $bench$")
    return (time.perf_counter() - started) * 1e6 / calls


def noop_parts(conn: psycopg.Connection, calls: int, rounds: int) -> list[tuple[str, float]]:
    conn.execute(
        "CREATE OR REPLACE FUNCTION pg_temp.empty_call(interval) RETURNS SETOF"
        " stuck_runs_recovered_run LANGUAGE plpgsql SET search_path = pg_catalog, stuck_runs, pg_temp"
        " SET lock_timeout = '2s' AS 'BEGIN RETURN; END'"
    )
    parts = {
        "whole call: SELECT * FROM recover_stuck_runs('5 minutes')": (
            "SELECT * FROM recover_stuck_runs('5 minutes')"
        ),
        "the generated fast path alone (_stuck_runs_quiet)": QUIET,
        "the bare index probe of the built-in table": PROBE,
        "an empty PL/pgSQL function with recover's SET clauses": (
            "SELECT * FROM pg_temp.empty_call('5 minutes')"
        ),
    }
    for sql in parts.values():  # plans, caches
        server_side_us(conn, sql, 50)
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, sql in parts.items():
            samples[name].append(server_side_us(conn, sql, calls))
    return [(name, median(values)) for name, values in samples.items()]


def bulk_parts(
    conn: psycopg.Connection, dbs: Databases, stuck: int, repeat: int
) -> list[tuple[str, float]]:
    sweep = statement(conn, "_stuck_runs_sweep_ctes") + "\n        SELECT count(*) FROM kept"
    direct = statement(conn, "_stuck_runs_sweep_direct_sql")
    # Parameters as the general path binds them, written in: $1 cutoff, $2 no
    # limit, $3 no requeue, $4 the threshold, $5 no owners' lives. (A named
    # prepared statement would not survive psycopg's DEALLOCATE ALL.)
    values = {
        "1": f"({CUTOFF})",
        "2": "NULL::integer",
        "3": "NULL::integer",
        "4": "'5 minutes'::interval",
        "5": "'{}'::text",
    }
    sweep, direct = (
        re.sub(r"\$([1-5])(?![0-9])", lambda m: values[m.group(1)], sql) for sql in (sweep, direct)
    )
    parts: dict[str, Callable[[], int]] = {
        "bare UPDATE ... RETURNING": lambda: len(conn.execute(BARE_UPDATE).fetchall()),
        "our sweep statement without the audit (lock, re-check, update)": lambda: conn.execute(
            sweep
        ).fetchone()[0],  # type: ignore[index]
        "the same with its audit rows (_stuck_runs_sweep_direct_sql)": lambda: (
            conn.execute(direct).fetchone()
            and conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0]  # type: ignore[index]
        ),
        "the audit rows alone (INSERT of as many rows)": lambda: (
            conn.execute(AUDIT_ONLY, (stuck,)).rowcount
        ),
        "whole call: recover_stuck_runs('5 minutes')": lambda: len(
            conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')").fetchall()
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(repeat):
        for name, work in parts.items():
            reset_bulk(conn, dbs, stuck)
            conn.execute("BEGIN")
            started = time.perf_counter()
            changed = work()
            samples[name].append((time.perf_counter() - started) * 1000)
            conn.execute("ROLLBACK")
            if changed != stuck:
                raise BenchError(f"{name}: {changed} rows, expected {stuck}")
    return [(name, median(values)) for name, values in samples.items()]


def fmt(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def report(
    args: argparse.Namespace,
    header: list[str],
    noop: list[tuple[str, float]],
    bulk: list[tuple[str, float]],
) -> str:
    lines = [
        *header,
        f"- Size: {args.size:,} rows, {args.size // 10:,} stuck for the bulk",
        "",
    ]
    probe = dict(noop)["the bare index probe of the built-in table"]
    lines += [
        "| no-op part (server-side, median per call) | time | vs the bare probe |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {fmt(us, 'µs')} | {us / probe:.2f}x |" for name, us in noop]
    bare = dict(bulk)["bare UPDATE ... RETURNING"]
    lines += [
        "",
        "| bulk part (one transaction, median) | time | vs the bare UPDATE |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {fmt(ms, 'ms')} | {ms / bare:.2f}x |" for name, ms in bulk]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="rows (10%% stuck in bulk)")
    parser.add_argument("--database-url", help="a server allowing CREATE DATABASE")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds: the smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.size = 10_000
    calls, rounds, repeat = (200, 3, 1) if args.quick else (2_000, 7, 3)
    stuck = args.size // 10
    started = datetime.now(UTC)
    with database_server(args.database_url) as (server_url, server):
        dbs = Databases(server_url)
        try:
            url = dbs.create("parts")
            with connect(url) as conn:
                log(f"loading {args.size:,} runs")
                load_runs(conn, total=args.size, stuck=stuck, live=max(1, args.size // 1000))
                reset_bulk(conn, dbs, stuck)
                log("no-op parts (nothing stuck for a 10-year threshold)")
                noop = noop_parts_at(conn, calls, rounds)
                log("bulk parts")
                bulk = bulk_parts(conn, dbs, stuck, repeat)
                header = machine_lines(conn, server)
        finally:
            dbs.drop_all()
    print(report(args, header, noop, bulk))
    log(f"finished in {(datetime.now(UTC) - started).total_seconds():.0f} s")
    return 0


def noop_parts_at(conn: psycopg.Connection, calls: int, rounds: int) -> list[tuple[str, float]]:
    """The no-op with the stuck runs made fresh: nothing is stuck, the probe finds nothing."""
    conn.execute(
        "UPDATE qualification_runs SET updated_at = now() + interval '1 day'"
        " WHERE status IN ('PENDING', 'PROCESSING')"
    )
    conn.execute("VACUUM ANALYZE qualification_runs")
    try:
        return noop_parts(conn, calls, rounds)
    finally:
        conn.execute(
            "UPDATE qualification_runs SET updated_at = now() - interval '1 hour'"
            " WHERE status IN ('PENDING', 'PROCESSING') AND id LIKE 'stuck-%'"
        )


if __name__ == "__main__":
    sys.exit(main())
