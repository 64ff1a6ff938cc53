"""The recovery benchmark (tests/perf/bench_recovery.py) in its --quick form.

The full benchmark takes minutes and is run by hand; this smoke run (seconds)
keeps it from rotting: every section must still run end to end against the
suite's server and print the table. Its figures are not judged here: at these
sizes they mean nothing.
"""

from __future__ import annotations

import json
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


def test_peers_benchmark_quick_prints_a_row_for_ours_and_every_peer(server_url: str) -> None:
    """tests/perf/bench_peers.py --quick: every peer's vendored schema loads, its own rescue
    runs (each pass is checked inside the benchmark to rescue exactly the stuck rows, each
    no-op nothing), and the table has a row for ours, the bare baselines and every peer.
    No timing is judged: at these sizes the figures mean nothing."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.perf.bench_peers",
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
    header = "| system | no-op 2k | no-op 10k | bulk 200 of 2k | bulk 1k of 10k |"
    assert header in out
    systems = [
        "stuck-runs (this tree)",
        "bare index probe / bare `UPDATE ... RETURNING`",
        "stuck-runs / bare",
        "River",
        "Oban",
        "graphile-worker",
        "procrastinate",
        "pg-boss",
    ]
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    for system in systems:
        matching = [r for r in rows if r.startswith(f"| {system} |")]
        assert len(matching) == 1, system
        cells = [c.strip() for c in matching[0].strip("|").split("|")][1:]
        assert len(cells) == 4 and "n/a" not in cells, matching[0]
    assert "| target | size | measured | result |" in out
    assert "- Machine:" in out and "- PostgreSQL" in out
    assert "Targets missed:" in out
    assert server_url not in out


def test_parts_benchmark_quick_prints_every_part(server_url: str) -> None:
    """tests/perf/bench_parts.py --quick: each part of a no-op and of a bulk runs (each bulk
    part is checked inside the benchmark to change exactly the stuck rows) and is printed
    against its bare statement. No timing is judged."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.perf.bench_parts", "--quick", "--database-url", server_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    for part in (
        "whole call: SELECT * FROM recover_stuck_runs('5 minutes')",
        "the generated fast path alone (_stuck_runs_quiet)",
        "the bare index probe of the built-in table",
        "bare UPDATE ... RETURNING",
        "our sweep statement without the audit",
        "the audit rows alone",
        "whole call: recover_stuck_runs('5 minutes')",
    ):
        assert sum(line.startswith(f"| {part}") for line in out.splitlines()) == 1, part
    assert "- Machine:" in out and server_url not in out


def test_owners_benchmark_tiny_kills_are_recovered_and_nothing_live_is(
    server_url: str, tmp_path: Path
) -> None:
    """tests/perf/bench_owners.py at --size tiny: real Python and Prisma workers, dead_after 2 s.

    No timing is judged (the machine is shared, the sizes are tiny); the behaviour is:
    a restarted instance's runs come back from its start call, killed instances' runs
    are recovered, a live owner's 2-hour-silent run is never rescued (directly or
    through PgBouncer, nor after a SIGSTOP of half of dead_after), and a fenced owner's
    writes through stuck-runs return false and change no row.
    """
    figures_file = tmp_path / "owners.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.perf.bench_owners",
            "--size",
            "tiny",
            "--database-url",
            server_url,
            "--json",
            str(figures_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| Goal | Target | Measured | Result |" in done.stdout
    assert server_url not in done.stdout
    figures = json.loads(figures_file.read_text())
    # G1: every restart's dead runs were returned by its start call.
    assert len(figures["g1"]["after_start_s"]) == 2 and figures["g1"]["failures"] == []
    # G2: every kill recovered, for the reason 'instance ... stopped heartbeating'.
    g2 = figures["g2"]
    assert len(g2["delays_s"]) == 2 and g2["missing"] == []
    assert all(r.endswith("stopped heartbeating") for r in g2["reasons"])
    # G3: no false rescue; the controls prove the sweeps did run and bite.
    g3 = figures["g3"]
    assert g3["silent_runs"] >= 8 and g3["sweeps"] >= 3 and g3["sweep_errors"] == 0
    assert g3["rescued_direct"] == 0 and g3["rescued_pooled"] == 0
    assert g3["pooled_alive_beats"] > 0 and g3["controls_recovered"] == 2
    assert g3["stops"] >= 1 and g3["rescued_stop"] == 0
    # G4: the fenced owners heard it and wrote nothing.
    g4 = figures["g4"]
    assert g4["recovered"] == g4["runs"] == 4 and g4["unchanged"] is True
    assert {r["kind"] for r in g4["results"]} == {"py", "node"}
    for result in g4["results"]:
        assert result["heartbeat"] == "fenced"
        assert result["progress"] == [False, False] and result["claim"] == [False, False]
    # G5: one HOT update per heartbeat.
    hb = figures["g5_heartbeat"]
    assert hb["updates"] == [1.0] and hb["hot_updates"] == [1.0]
    for goal in ("G1", "G2", "G3 a", "G3 b", "G4", "G5 a"):
        verdicts = [v for k, v in figures["verdicts"].items() if k.startswith(goal)]
        assert verdicts == ["PASS"], (goal, figures["verdicts"])
