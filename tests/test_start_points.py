"""What a start-up line depends on: configuration, the threshold, session settings, honest output.

Issue 18's points 2 to 10, each as a test that failed on the runner before it:
--fail-open covering configuration (no URL, a threshold without unit,
undecodable bytes), `.env`, one threshold precedence, settings a database
carries, runs printed only once committed, a deadline on every command, an
install into a schema the DBA created for the app role, passwords in
malformed URLs, and the messages that used to mislead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from .helpers import PRISMA_DDL, cli, insert_run, open_conn, prisma_run, run_cli, status_of

REPO = Path(__file__).resolve().parent.parent


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def in_dir(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The runner started in `cwd` (where a .env may be), with only the variables given."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DIRECT_URL")}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def current_db(url: str) -> str:
    with open_conn(url) as conn:
        return conn.execute("SELECT current_database()").fetchone()[0]


# --- point 2: --fail-open covers configuration; .env as Prisma reads it ----------------------


def test_fail_open_without_any_url_is_one_line_and_exit_0(tmp_path):
    relaxed = in_dir(tmp_path, "recover", "--fail-open")
    assert relaxed.returncode == 0, relaxed.stderr
    assert len(lines(relaxed.stderr)) == 1 and "no database" in relaxed.stderr
    strict = in_dir(tmp_path, "recover")
    assert strict.returncode == 2 and "no database" in strict.stderr


def test_fail_open_covers_a_threshold_without_unit(db_url):
    env = {"DATABASE_URL": db_url, "STUCK_RUNS_OLDER_THAN": "30"}
    relaxed = run_cli("recover", "--fail-open", env=env)
    assert relaxed.returncode == 0, relaxed.stderr
    assert len(lines(relaxed.stderr)) == 1 and "has no unit" in relaxed.stderr
    assert run_cli("recover", env=env).returncode == 2
    assert run_cli("recover", env={**env, "STUCK_RUNS_FAIL_OPEN": "1"}).returncode == 0


@pytest.mark.parametrize("where", ["option", "environment", "run id"])
def test_undecodable_bytes_are_one_line_and_exit_0_under_fail_open(db_url, where):
    bad = "5 minutes\udcff"  # the byte 0xff, as Python hands it over from argv or environ
    if where == "option":
        args, env = ["recover", "--older-than", bad], {"DATABASE_URL": db_url}
    elif where == "environment":
        args, env = ["recover"], {"DATABASE_URL": db_url, "STUCK_RUNS_OLDER_THAN": bad}
    else:
        args, env = ["resume", "run\udcff"], {"DATABASE_URL": db_url}
    result = run_cli(*args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (1, 2) and len(lines(result.stderr)) <= 3, result.stderr
    assert "stuck-runs: error:" in result.stderr or "Error:" in result.stderr
    if where != "run id":
        relaxed = run_cli(*args, "--fail-open", env=env)
        assert relaxed.returncode == 0, relaxed.stderr
        assert "Traceback" not in relaxed.stderr and len(lines(relaxed.stderr)) == 1


@pytest.mark.parametrize(
    "variable",
    [
        {"STUCK_RUNS_OLDER_THAN": "30"},
        {"STUCK_RUNS_START_TIMEOUT": "banana"},
        {"STUCK_RUNS_BATCH_SIZE": "0"},
        {"STUCK_RUNS_OLDER_THAN": "5 minutes\udcff"},
    ],
)
def test_start_takes_a_bad_environment_value_as_one_line_and_exit_0(db_url, variable):
    result = run_cli("start", env={"DATABASE_URL": db_url, **variable})
    assert result.returncode == 0, result.stderr
    assert len(lines(result.stderr)) == 1 and "stuck-runs: error:" in result.stderr
    assert run_cli("start", "--strict", env={"DATABASE_URL": db_url, **variable}).returncode != 0


def test_database_url_only_in_dotenv_is_read(db_url, tmp_path):
    with open_conn(db_url) as conn:
        run_id = insert_run(conn, idle="1 hour")
    (tmp_path / ".env").write_text(f'# Prisma\nexport DATABASE_URL="{db_url}"\n')
    result = in_dir(tmp_path, "recover", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_id"] == run_id


def test_the_environment_wins_over_dotenv(db_url, tmp_path):
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://nobody@127.0.0.1:1/nothing\n")
    result = in_dir(tmp_path, "list", env={"DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr


# --- point 3: one threshold precedence: command line, environment, database ----------------


@pytest.mark.parametrize(
    ("command_line", "environment", "recovered"),
    [
        (None, None, {"two-hours"}),  # the database's 30 minutes
        (None, "5 minutes", {"two-hours", "ten-minutes"}),
        ("1 hour", "5 minutes", {"two-hours"}),
    ],
)
@pytest.mark.parametrize("command", ["recover", "start"])
def test_threshold_precedence(db_url, command, command_line, environment, recovered):
    with open_conn(db_url) as conn:
        conn.execute("UPDATE stuck_runs_settings SET older_than = '30 minutes'")
        insert_run(conn, idle="10 minutes", run_id="ten-minutes")
        insert_run(conn, idle="2 hours", run_id="two-hours")
    env = {"DATABASE_URL": db_url}
    if environment:
        env["STUCK_RUNS_OLDER_THAN"] = environment
    args = [command, *(["--older-than", command_line] if command_line else [])]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    with open_conn(db_url) as conn:
        failed = {
            r[0] for r in conn.execute("SELECT id FROM qualification_runs WHERE status = 'FAILED'")
        }
    assert failed == recovered


# --- point 5: settings the database, the role or a pooled neighbour carries -----------------


def test_interval_and_date_styles_of_the_database_change_nothing(db_url):
    with open_conn(db_url) as conn:
        run_id = insert_run(conn, idle="2 hours")
        db = current_db(db_url)
        conn.execute(f"ALTER DATABASE \"{db}\" SET IntervalStyle = 'iso_8601'")
        conn.execute(f"ALTER DATABASE \"{db}\" SET DateStyle = 'SQL, DMY'")
        conn.execute(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on')
    result = run_cli("--database-url", db_url, "recover", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["run_id"] == run_id and 7190 < row["idle_seconds"] < 7300
    listed = run_cli("--database-url", db_url, "list", "--json")
    assert listed.returncode == 0, listed.stderr


def test_client_min_messages_error_does_not_hide_a_table_that_was_not_swept(db_url):
    with open_conn(db_url) as conn:
        conn.execute(
            "CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'refused by the app'; END$$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON stuck_runs.qualification_runs"
            " FOR EACH ROW EXECUTE FUNCTION public.refuse()"
        )
        insert_run(conn, idle="2 hours")
        conn.execute(f'ALTER DATABASE "{current_db(db_url)}" SET client_min_messages = error')
    result = run_cli("--database-url", db_url, "recover")
    assert result.returncode == 1, result.stderr
    assert "was not swept" in result.stderr


def test_a_pooled_neighbours_interval_style_changes_nothing(db_url):
    """Through PgBouncer, IntervalStyle is not tracked: a neighbour's SET stays on the server
    connection the runner gets next, and a 2-hour idle run used to read as 2 seconds."""
    from .pgbouncer import running_pgbouncer

    with open_conn(db_url) as conn:
        run_id = insert_run(conn, idle="2 hours")
    with running_pgbouncer(db_url, pool_size=1) as bouncer:
        url = bouncer.url()
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as neighbour:
            neighbour.execute("SET IntervalStyle = 'iso_8601'")
            neighbour.execute("SET client_min_messages = error")
        listed = run_cli("--database-url", url, "list", "--json")
        result = run_cli("--database-url", url, "recover", "--json")
    assert listed.returncode == 0 and result.returncode == 0, result.stderr + listed.stderr
    for output in (listed.stdout, result.stdout):
        row = json.loads(output)
        assert row["run_id"] == run_id and 7190 < row["idle_seconds"] < 7300, row


@pytest.mark.parametrize("flagged", [True, False])
def test_start_through_a_pooler_without_direct_url_still_recovers(db_url, flagged):
    """Install needs a session of its own: through PgBouncer without DIRECT_URL it is
    skipped with one warning that says to set it, and recovery goes on through the pool."""
    from .pgbouncer import running_pgbouncer

    with open_conn(db_url) as conn:
        run_id = insert_run(conn, idle="2 hours")
    with running_pgbouncer(db_url, pool_size=1) as bouncer:
        url = bouncer.url(**({"pgbouncer": "true"} if flagged else {}))
        result = run_cli("--database-url", url, "start")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in lines(result.stderr) if "warning" in line]
    assert len(warnings) == 1 and "DIRECT_URL" in warnings[0], result.stderr
    with open_conn(db_url) as conn:
        assert status_of(conn, run_id) == "FAILED"


def test_start_adopting_a_table_that_is_not_there_still_recovers(db_url):
    with open_conn(db_url) as conn:
        run_id = insert_run(conn, idle="2 hours")
    result = run_cli("--database-url", db_url, "start", "--adopt", "no_such_runs")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in lines(result.stderr) if "warning" in line]
    assert len(warnings) == 1 and "no_such_runs" in warnings[0], result.stderr
    with open_conn(db_url) as conn:
        assert status_of(conn, run_id) == "FAILED"


# --- point 6: a run is printed as recovered only once its transaction committed -------------


def refuse_at_commit(conn: psycopg.Connection) -> None:
    """A deferred constraint trigger: recovery's UPDATE passes, its COMMIT fails."""
    conn.execute(
        "CREATE FUNCTION public.refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN IF NEW.id LIKE 'doomed%' THEN RAISE EXCEPTION 'refused at commit'; END IF;"
        " RETURN NULL; END$$"
    )
    conn.execute(
        "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER UPDATE ON stuck_runs.qualification_runs"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_at_commit()"
    )


@pytest.mark.parametrize("as_json", [True, False])
def test_nothing_is_printed_as_recovered_when_the_commit_fails(db_url, as_json):
    with open_conn(db_url) as conn:
        refuse_at_commit(conn)
        for i in range(3):
            insert_run(conn, idle="2 hours", run_id=f"doomed-{i}")
    args = ["--database-url", db_url, "recover", "--fail-open", *(["--json"] if as_json else [])]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", result.stdout
    assert "FAILED" not in result.stderr
    assert "0 run(s) recovered and committed" in result.stderr
    assert "3 more were returned but not committed" in result.stderr
    with open_conn(db_url) as conn:
        assert status_of(conn, "doomed-0") == "PROCESSING"


def test_batches_print_what_committed_and_say_how_many(db_url):
    with open_conn(db_url) as conn:
        refuse_at_commit(conn)
        for i in range(4):
            insert_run(conn, idle=f"{3 + i} hours", run_id=f"ok-{i}")  # the oldest go first
        insert_run(conn, idle="1 hour", run_id="doomed")
    result = run_cli("--database-url", db_url, "recover", "--json", "--batch-size", "2")
    assert result.returncode == 1, result.stderr
    printed = {json.loads(line)["run_id"] for line in lines(result.stdout)}
    with open_conn(db_url) as conn:
        committed = {
            r[0] for r in conn.execute("SELECT id FROM qualification_runs WHERE status = 'FAILED'")
        }
    assert printed == committed and "doomed" not in printed
    assert f"{len(committed)} run(s) recovered and committed" in result.stderr


# --- point 7: every command has a total deadline ----------------------------------------------


def backend_of(url: str, application_name: str, timeout: float = 20) -> int:
    with open_conn(url) as conn:
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active'",
                (application_name,),
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.02)
    raise AssertionError("the runner's backend never became active")


def test_recover_in_batches_without_fail_open_ends_on_a_frozen_backend(db_url):
    with open_conn(db_url) as conn:
        conn.execute(
            "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END$$"
        )
        conn.execute(
            "CREATE TRIGGER slow BEFORE UPDATE ON stuck_runs.qualification_runs"
            " FOR EACH ROW EXECUTE FUNCTION public.slow()"
        )
        conn.execute(
            "INSERT INTO qualification_runs (status, updated_at)"
            " SELECT 'PROCESSING', now() - interval '1 hour' FROM generate_series(1, 2000)"
        )
    name = "stuck-runs-frozen-test"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "--database-url",
            db_url,
            "recover",
            "--batch-size",
            "5",
            "--connect-timeout",
            "1",
            "--statement-timeout",
            "1",
        ],
        env={**env, "PGAPPNAME": name},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = backend_of(db_url, name)
    time.sleep(0.3)  # a few batches commit first
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        stdout, stderr = runner.communicate(timeout=15)
        waited = time.monotonic() - stopped
    finally:
        os.kill(pid, signal.SIGCONT)
        runner.kill()
        with open_conn(db_url) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert runner.returncode == 1, stderr
    assert waited < 2 + 2, waited  # connect + statement timeout after the last commit, + slack
    assert "did not answer within 2 s" in stderr and "recovered and committed" in stderr
    errors = [line for line in lines(stderr) if line.startswith("stuck-runs: error:")]
    assert len(errors) == 1, stderr
    committed = int(errors[0].split("; ")[1].split(" run(s)")[0])
    assert len(lines(stdout)) == committed > 0  # what committed, and only that, was printed


def test_start_cut_by_its_bound_says_so_and_prints_no_run(db_url):
    with open_conn(db_url) as conn:
        conn.execute(
            "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN PERFORM pg_sleep(1); RETURN NEW; END$$"
        )
        conn.execute(
            "CREATE TRIGGER slow BEFORE UPDATE ON stuck_runs.qualification_runs"
            " FOR EACH ROW EXECUTE FUNCTION public.slow()"
        )
        ids = [insert_run(conn, idle="2 hours") for _ in range(6)]
    started = time.monotonic()
    result = run_cli("--database-url", db_url, "start", "--timeout", "3")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 3 + 2, elapsed
    assert result.stdout == ""
    errors = [line for line in lines(result.stderr) if "error" in line]
    assert len(errors) == 1 and "within the start-up bound of 3 s" in errors[0], result.stderr
    with open_conn(db_url) as conn:
        assert {status_of(conn, run_id) for run_id in ids} == {"PROCESSING"}


def test_start_recovers_a_big_backlog_over_several_starts(db_url):
    """Batches of 1,000 by default: each start keeps what it committed within its bound."""
    with open_conn(db_url) as conn:
        conn.execute(
            "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN PERFORM pg_sleep(0.0015); RETURN NEW; END$$"
        )
        conn.execute(
            "CREATE TRIGGER slow BEFORE UPDATE ON stuck_runs.qualification_runs"
            " FOR EACH ROW EXECUTE FUNCTION public.slow()"
        )
        conn.execute(
            "INSERT INTO qualification_runs (status, updated_at)"
            " SELECT 'PROCESSING', now() - interval '1 hour' FROM generate_series(1, 4000)"
        )

    def failed() -> int:
        with open_conn(db_url) as conn:
            return conn.execute(
                "SELECT count(*) FROM qualification_runs WHERE status = 'FAILED'"
            ).fetchone()[0]

    started = time.monotonic()
    first = run_cli("--database-url", db_url, "start", "--timeout", "4")
    assert time.monotonic() - started < 4 + 2
    assert first.returncode == 0, first.stderr
    assert "a backlog remains" in first.stderr, first.stderr
    done = failed()
    assert 0 < done < 4000 and done % 1000 == 0
    assert f"Recovered {done} stuck run(s)" in first.stderr
    while failed() < 4000:
        again = run_cli("--database-url", db_url, "start", "--timeout", "4")
        assert again.returncode == 0 and failed() > done, again.stderr
        done = failed()


def adopted_table_behind_an_old_transaction(url: str) -> psycopg.Connection:
    with open_conn(url) as conn:
        conn.execute(PRISMA_DDL)
        prisma_run(conn, "prisma-stuck", "PROCESSING", "2 hours")
    blocker = open_conn(url, autocommit=False)
    blocker.execute("""UPDATE "QualificationRun" SET "totalProspects" = 11""")
    return blocker


def index_valid(url: str) -> bool | None:
    with open_conn(url) as conn:
        row = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = "
            "to_regclass('public.\"QualificationRun_stuck_runs_idx\"')"
        ).fetchone()
    return row[0] if row else None


@pytest.mark.parametrize("command", [["migrate", "--adopt"], ["adopt", "--yes", "--table"]])
def test_an_old_transaction_cannot_hold_the_index_build_forever(db_url, command):
    blocker = adopted_table_behind_an_old_transaction(db_url)
    try:
        started = time.monotonic()
        result = run_cli(
            "--database-url",
            db_url,
            *command,
            '"QualificationRun"',
            "--index-timeout",
            "1",
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        blocker.rollback()
        blocker.close()
    assert result.returncode == 0, result.stderr
    assert elapsed < 1 + 4, elapsed
    assert "was not built within 1 s" in result.stderr
    assert index_valid(db_url) is not True
    again = run_cli("--database-url", db_url, "migrate")
    assert again.returncode == 0, again.stderr
    assert index_valid(db_url) is True


# --- point 8: a schema the DBA created for the app role is enough to install ---------------


def as_role(url: str, role: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}user={role}"


def test_migrate_into_a_schema_created_for_the_role_needs_no_create_on_the_database(
    empty_db_url,
):
    role = f"app_{current_db(empty_db_url)[-8:]}"
    with open_conn(empty_db_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'REVOKE CREATE ON DATABASE "{current_db(empty_db_url)}" FROM PUBLIC')
        conn.execute(f'CREATE SCHEMA stuck_runs AUTHORIZATION "{role}"')
    try:
        url = as_role(empty_db_url, role)
        result = run_cli("--database-url", url, "migrate")
        assert result.returncode == 0, result.stderr
        assert "permission denied" not in result.stderr
        assert run_cli("--database-url", url, "recover").returncode == 0
    finally:
        with open_conn(empty_db_url) as conn:
            conn.execute("DROP SCHEMA stuck_runs CASCADE")
            conn.execute(f'DROP ROLE "{role}"')


def test_start_as_a_role_that_may_only_recover_says_nothing_about_installing(db_url):
    """A DBA installed stuck-runs and granted the app role what recover needs: `start` as
    that role has nothing to install, and must not warn at every start that it may not."""
    role = f"recoverer_{current_db(db_url)[-8:]}"
    with open_conn(db_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        for (grant,) in conn.execute(
            "SELECT * FROM stuck_runs.stuck_runs_grant_sql(%s)", (role,)
        ).fetchall():
            conn.execute(grant)
        run_id = insert_run(conn, idle="2 hours")
    try:
        result = run_cli("--database-url", as_role(db_url, role), "start", "--strict")
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr and "error" not in result.stderr, result.stderr
        with open_conn(db_url) as conn:
            assert status_of(conn, run_id) == "FAILED"
    finally:
        with open_conn(db_url) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


# --- point 9: passwords in URLs that are not percent-encoded ------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:My Secret Words@127.0.0.1:5432/app",
        "postgresql://app:Sup3r@S3cretTail@127.0.0.1:1/app",
        "postgresql://app:Pa ss@Wd-Tail@127.0.0.1:notaport/app",
        "postgres://app:Rot@ten Apple@127.0.0.1/app?schema=x",
    ],
)
@pytest.mark.parametrize("command", ["recover", "start", "migrate"])
def test_no_piece_of_a_password_in_a_malformed_url_is_printed(url, command):
    secret = url.split("://app:", 1)[1].rsplit("@", 1)[0]
    pieces = [p for p in secret.replace("@", " ").split() if len(p) >= 3]
    result = run_cli(command, "--connect-timeout", "1", env={"DATABASE_URL": url})
    output = result.stdout + result.stderr
    assert result.returncode in ((0,) if command == "start" else (1,)), output
    assert len(lines(result.stderr)) == 1, output
    for piece in [secret, *pieces]:
        assert piece not in output, (piece, output)


# --- point 10: messages that used to mislead ------------------------------------------------


def test_migrate_without_create_says_what_allows_installing(empty_db_url):
    role = f"norights_{current_db(empty_db_url)[-8:]}"
    with open_conn(empty_db_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'REVOKE CREATE ON DATABASE "{current_db(empty_db_url)}" FROM PUBLIC')
    try:
        result = run_cli("--database-url", as_role(empty_db_url, role), "migrate")
    finally:
        with open_conn(empty_db_url) as conn:
            conn.execute(f'DROP ROLE "{role}"')
    assert result.returncode == 1
    assert "stuck_runs_grant_sql" not in result.stderr
    assert "CREATE SCHEMA stuck_runs AUTHORIZATION" in result.stderr


def test_migrate_adopt_does_not_tell_the_user_to_do_what_it_does(db_url):
    with open_conn(db_url) as conn:
        conn.execute(PRISMA_DDL)
    result = run_cli("--database-url", db_url, "migrate", "--adopt", '"QualificationRun"')
    assert result.returncode == 0, result.stderr
    assert "run outside a transaction" not in result.stderr
    assert "creating the sweep index concurrently" in result.stderr
    assert index_valid(db_url) is True


@pytest.mark.parametrize("option", ["--database-url", "--schema"])
def test_global_options_are_accepted_after_the_command(db_url, option):
    value = db_url if option == "--database-url" else "stuck_runs"
    env = {} if option == "--database-url" else {"DATABASE_URL": db_url}
    result = cli("list", option, value, env=env)
    assert result.exit_code == 0, result.output


def test_a_zero_threshold_is_not_told_to_write_zero_minutes(db_url):
    result = cli("--database-url", db_url, "recover", "--older-than", "0")
    assert result.exit_code == 2
    assert "'0 minutes'" not in result.output and "positive" in result.output


def test_a_negative_threshold_is_refused_before_anything_is_reported(db_url):
    result = run_cli("--database-url", db_url, "recover", "--older-than", "-5 minutes")
    assert result.returncode == 2, result.stderr
    assert "Found" not in result.stderr
    assert "--older-than" in result.stderr and "--limit" not in result.stderr
