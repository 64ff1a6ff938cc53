"""Owners from the runner's side: `recover`/`start --instance NAME` and `stuck-runs instances`.

A deploy step that runs before the app (`stuck-runs recover --instance web`) ends every
earlier life of `web` in its first batch (stuck_runs_start(NAME, NULL, ...)), so the runs a
killed process owned are recovered at once, whatever their idle time, while another
instance's silent run stays where it is.
"""

from __future__ import annotations

import json
import time

import psycopg

from .helpers import cli, insert_run, run_cli, status_of

OLD_LIFE = "web-life-1-0000"
WORKER_LIFE = "worker-life-1-00"


def start_life(conn: psycopg.Connection, instance: str, life: str) -> None:
    conn.execute("SELECT count(*) FROM stuck_runs_start(%s, %s)", (instance, life))


def owned_run(conn: psycopg.Connection, life: str, run_id: str, idle: str = "1 second") -> str:
    """A PROCESSING run claimed by `life`, last sign of life `idle` ago."""
    insert_run(conn, "PROCESSING", idle=idle, completed=2, total=10, run_id=run_id)
    claimed = conn.execute(
        "SELECT stuck_runs_claim('qualification_runs', %s, %s)", (run_id, life)
    ).fetchone()[0]
    assert claimed is True
    conn.execute(
        "UPDATE qualification_runs SET updated_at = now() - %s::interval WHERE id = %s",
        (idle, run_id),
    )
    return run_id


def deployment(conn: psycopg.Connection) -> dict[str, str]:
    """web's first life with a fresh run, a live worker with a run silent for an hour, and an
    unowned run idle for an hour: the threshold's, as before owners."""
    start_life(conn, "web", OLD_LIFE)
    start_life(conn, "worker", WORKER_LIFE)
    return {
        "web": owned_run(conn, OLD_LIFE, "run-of-web"),
        "worker": owned_run(conn, WORKER_LIFE, "run-of-worker", idle="1 hour"),
        "unowned": insert_run(conn, "PROCESSING", idle="1 hour", run_id="run-unowned"),
    }


def life_states(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT life, state FROM stuck_runs_instances").fetchall())


def test_recover_instance_recovers_the_earlier_lives_runs_at_once(db_url, conn):
    runs = deployment(conn)
    result = cli("--database-url", db_url, "recover", "--instance", "web")
    assert result.exit_code == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert lines == [
        "  - Run run-of-web: 2/10 completed (status: PROCESSING \u2192 FAILED), idle: 1s"
        " (instance web restarted)",
        "  - Run run-unowned: 0/10 completed (status: PROCESSING \u2192 FAILED), idle: 1h",
    ], result.stdout
    assert "Recovered 2 stuck run(s)" in result.stderr
    assert status_of(conn, runs["web"]) == "FAILED"
    assert status_of(conn, runs["worker"]) == "PROCESSING"  # its owner is alive
    assert life_states(conn) == {OLD_LIFE: "ended", WORKER_LIFE: "live"}
    [(reason, error)] = conn.execute(
        "SELECT r.reason, q.error FROM run_recoveries AS r JOIN qualification_runs AS q"
        " ON q.id = r.run_id WHERE r.run_id = %s",
        (runs["web"],),
    ).fetchall()
    assert reason == "instance web restarted"
    assert error.startswith("Recovered by stuck-runs: PROCESSING when its owner's life ended")


def test_without_instance_an_owned_fresh_run_waits_for_its_owner(db_url, conn):
    runs = deployment(conn)
    result = cli("--database-url", db_url, "recover", "--json")
    assert result.exit_code == 0, result.stderr
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (row["run_id"], row["reason"]) == (runs["unowned"], None)
    assert status_of(conn, runs["web"]) == "PROCESSING"
    assert status_of(conn, runs["worker"]) == "PROCESSING"
    assert life_states(conn) == {OLD_LIFE: "live", WORKER_LIFE: "live"}


def test_instance_from_the_environment_and_the_command_line_first(db_url, conn):
    runs = deployment(conn)
    env = {"DATABASE_URL": db_url, "STUCK_RUNS_INSTANCE": "web"}
    # The command line names another instance: web's life goes on.
    other = cli("recover", "--instance", "api", "--json", env=env)
    assert other.exit_code == 0, other.stderr
    assert [json.loads(line)["run_id"] for line in other.stdout.splitlines()] == [runs["unowned"]]
    assert status_of(conn, runs["web"]) == "PROCESSING"
    # Only the environment: web restarts.
    from_env = cli("recover", "--json", env=env)
    assert from_env.exit_code == 0, from_env.stderr
    [row] = [json.loads(line) for line in from_env.stdout.splitlines()]
    assert (row["run_id"], row["reason"], row["status"]) == (
        runs["web"],
        "instance web restarted",
        "FAILED",
    )
    assert status_of(conn, runs["worker"]) == "PROCESSING"


def test_first_batch_restarts_the_instance_and_the_others_drain(db_url, conn):
    start_life(conn, "web", OLD_LIFE)
    owned = [owned_run(conn, OLD_LIFE, f"owned-{i}") for i in range(3)]
    stale = [insert_run(conn, "PENDING", idle="2 hours", run_id=f"stale-{i}") for i in range(2)]
    result = cli(
        "--database-url", db_url, "recover", "--instance", "web", "--batch-size", "2", "--json"
    )
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["run_id"] for r in rows) == sorted(owned + stale)
    assert {r["run_id"]: r["reason"] for r in rows} == dict.fromkeys(
        owned, "instance web restarted"
    ) | dict.fromkeys(stale, None)
    assert conn.execute("SELECT count(*) FROM active_runs").fetchone()[0] == 0


def test_dry_run_with_instance_ends_no_life(db_url, conn):
    runs = deployment(conn)
    result = cli("--database-url", db_url, "recover", "--instance", "web", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "(instance web restarted)" in result.stdout
    assert "dry run: 2 run(s) would be recovered" in result.stderr
    assert status_of(conn, runs["web"]) == "PROCESSING"
    assert life_states(conn) == {OLD_LIFE: "live", WORKER_LIFE: "live"}


def test_start_instance_restarts_it_too(db_url, conn):
    runs = deployment(conn)
    result = run_cli(
        "start", "--strict", env={"DATABASE_URL": db_url, "STUCK_RUNS_INSTANCE": "web"}
    )
    assert result.returncode == 0, result.stderr
    assert "(instance web restarted)" in result.stdout
    assert status_of(conn, runs["web"]) == "FAILED"
    assert status_of(conn, runs["worker"]) == "PROCESSING"


def test_bad_instance_names_are_usage_errors_naming_the_option(db_url, conn):
    for name in ("", "x" * 201):
        result = run_cli("--database-url", db_url, "recover", "--instance", name)
        assert result.returncode == 2, result.stderr
        assert "--instance" in result.stderr and "instance must be a name" in result.stderr
        assert "Traceback" not in result.stderr
    # Under --fail-open a bad name is one line and exit 0, as every other error.
    result = run_cli("--database-url", db_url, "recover", "--instance", "", "--fail-open")
    assert result.returncode == 0
    [line] = result.stderr.splitlines()
    assert line.startswith("stuck-runs: error: Invalid value for '--instance': instance must")


def test_instance_with_the_database_down_fails_open_in_one_line():
    url = "postgresql://app:S3cret-pw@127.0.0.1:1/app"
    result = run_cli("--database-url", url, "recover", "--instance", "web", "--fail-open")
    assert result.returncode == 0
    [line] = result.stderr.splitlines()
    assert line.startswith("stuck-runs: error: ") and "S3cret-pw" not in line
    strict = run_cli("--database-url", url, "recover", "--instance", "web")
    assert strict.returncode == 1 and len(strict.stderr.splitlines()) == 1


def test_instances_lists_lives_with_state_heartbeat_runs_and_end_reason(db_url, conn):
    deployment(conn)
    start_life(conn, "web", "web-life-2-0000")  # web restarts: its first life ends
    human = cli("--database-url", db_url, "instances")
    assert human.exit_code == 0, human.stderr
    header, *lines = human.stdout.splitlines()
    assert header.split() == [
        "INSTANCE",
        "LIFE",
        "STATE",
        "LAST",
        "HEARTBEAT",
        "ACTIVE",
        "RUNS",
        "END",
        "REASON",
    ]
    assert [line.split()[:3] for line in lines] == [
        ["web", "web-life-2-0000", "live"],
        ["web", OLD_LIFE, "ended"],
        ["worker", WORKER_LIFE, "live"],
    ]
    assert lines[1].endswith("  restarted")  # the view's end_reason: restarted
    assert "[stuck-runs] 3 instance life(s)" in human.stderr

    as_json = cli("--database-url", db_url, "instances", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    rows = {row["life"]: row for row in map(json.loads, as_json.stdout.splitlines())}
    assert {life: (r["state"], r["active_runs"], r["end_reason"]) for life, r in rows.items()} == {
        "web-life-2-0000": ("live", 0, None),
        OLD_LIFE: ("ended", 0, "restarted"),  # its run was recovered at the start
        WORKER_LIFE: ("live", 1, None),
    }
    assert all(0 <= r["silent_for_seconds"] < 60 for r in rows.values())


def test_instances_shows_a_silent_life_and_its_runs(db_url, conn):
    start_life(conn, "worker", WORKER_LIFE)
    owned_run(conn, WORKER_LIFE, "run-of-worker")
    # No heartbeat for the threshold, with no other life of the role to
    # witness it, is silent now (the view says what the next sweep would do).
    conn.execute("UPDATE stuck_runs_settings SET dead_after = '1 second', older_than = '1 second'")
    time.sleep(1.2)
    result = cli("--database-url", db_url, "instances", "--json")
    assert result.exit_code == 0, result.stderr
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (row["state"], row["active_runs"], row["end_reason"]) == ("silent", 1, None)
    assert row["silent_for_seconds"] >= 1


def test_instances_on_an_empty_database_says_so(db_url):
    result = cli("--database-url", db_url, "instances")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "[stuck-runs] 0 instance life(s)" in result.stderr


def test_instances_errors_are_one_line(empty_db_url):
    """No server: exit 1, one line, no password. No stuck-runs: it says to migrate."""
    down = run_cli("--database-url", "postgresql://app:S3cret-pw@127.0.0.1:1/app", "instances")
    assert down.returncode == 1 and "S3cret-pw" not in down.stderr
    [line] = down.stderr.splitlines()
    assert line.startswith("stuck-runs: error: ")
    bare = run_cli("--database-url", empty_db_url, "instances")
    assert bare.returncode == 1
    [line] = bare.stderr.splitlines()
    assert "run `stuck-runs migrate` first" in line
