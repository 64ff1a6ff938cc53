"""Section 2: bulk recovery, audit rows included, against the least work that does it.

Recovering a large backlog must cost no more than a small multiple of a bare
UPDATE ... RETURNING that marks the same rows FAILED; anything above that is the
price of the audit trail and the function call, and this section shows it.
"""

from __future__ import annotations

import psycopg

from tests.perf.bench.common import (
    BULK_MAX_RATIO,
    OLDER_THAN,
    RECOVER_SQL,
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

# The comparison for section 2: the least work that marks the same rows FAILED.
BARE_UPDATE_SQL = f"""
UPDATE qualification_runs
SET status = 'FAILED', completed_at = now(), error = 'Recovered as stuck'
WHERE status IN ('PENDING', 'PROCESSING') AND updated_at < now() - interval '{OLDER_THAN}'
RETURNING id, completed, total
"""


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
