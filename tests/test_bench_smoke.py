"""The recovery benchmark (tests/perf/bench_recovery.py) in its --quick form.

The full benchmark takes minutes and is run by hand; this smoke run (seconds)
keeps it from rotting: every section must still run end to end against the
suite's server and print the table. Its figures are not judged here: at these
sizes they mean nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs_and_prints_the_table(server_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.perf.bench_recovery",
            "--quick",
            "--database-url",
            server_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert "| Section | Measurement | Ours | Compared with | Ratio | Target | Result |" in out
    for section in ("1. No-op sweep", "2. Bulk recovery", "3. Contention", "4. Runner"):
        assert f"| {section} |" in out, section
    assert "- Machine:" in out and "- PostgreSQL" in out
    assert "Targets missed:" in out
    # The URL (a unix-socket URL for the embedded server) is never echoed.
    assert server_url not in out
