"""Every start-up form the README shows, against everything that goes wrong at start-up.

The README's start-up lines are `stuck-runs start` (or `start --adopt TABLE`)
in four wrappers: npm's `prestart` (run here by real npm), a Docker entrypoint
run by `sh` under `set -e`, a Kubernetes init container's `sh -c`, and a
systemd `ExecStartPre=` (the argv itself). Each form runs against a dead port,
a port that accepts and never answers, a wrong password, no URL at all, a URL
only in `.env`, a malformed URL with a password in it, a database without
stuck-runs, another instance holding the migrate lock, an old transaction in
front of the sweep index build, and a database whose settings (ALTER DATABASE
... SET) would mislead a client that trusts them. Each time: the app's own
command runs; within the bound (15 s, the default, for the systemd form; the
wrapper forms run with STUCK_RUNS_START_TIMEOUT=5 to keep the suite fast, the
bound being the runner's and not the wrapper's); a failure is one line on
stderr, no traceback, no password; and the threshold applied is the
database's (30 minutes here, not the 5-minute default).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from .cluster import Cluster, free_port, system_postgres_available
from .conftest import REQUIRE_ALL, create_database, drop_database
from .docs_text import block, read
from .helpers import PRISMA_DDL, open_conn, prisma_run, run_cli, with_dbname, with_query
from .prisma_app import OFFLINE, app_dir, node_url

REPO = Path(__file__).resolve().parent.parent
SECRET = "Sup3r-S3cret-Pw"
APP_LINE = "APP STARTED"
DEFAULT_BOUND = 15.0
WRAPPED_BOUND = 5.0
# Interpreter start-up, npm's own start-up and the shell, on a busy 2-core machine.
SLACK = 4.0

# The four forms exactly as the README prints them, each taken by its block's name.
FORM_BLOCKS = ("startup-npm", "startup-docker", "startup-kubernetes", "startup-systemd")
PRESTART = json.loads(block("startup-npm"))["scripts"]["prestart"]
ENTRYPOINT = block("startup-docker")
K8S_COMMAND = json.loads(re.search(r"command: (\[.*?\])", block("startup-kubernetes")).group(1))
EXEC_START_PRE = shlex.split(re.search(r"ExecStartPre=(.*)", block("startup-systemd")).group(1))


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `stuck-runs` on PATH that runs this checkout's runner, as the console script does."""
    path = tmp_path_factory.mktemp("bin")
    shim = path / "stuck-runs"
    shim.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -c '
        f"\"import sys; sys.path.insert(0, '{REPO}'); "
        f'from runner.cli import entrypoint; entrypoint()" "$@"\n'
    )
    shim.chmod(0o755)
    return path


@dataclass
class Case:
    """One start-up situation: the environment, and what must be true afterwards."""

    env: dict[str, str] = field(default_factory=dict)
    dotenv: str | None = None
    args: tuple[str, ...] = ()
    fails: str | None = None  # a piece of the one error line, when the database is out of reach
    warns: str | None = None  # a piece of a warning line, when recovery still happens
    db: str | None = None  # the database whose runs must have been recovered
    installs: str | None = None  # a database stuck-runs must have been installed into


FORMS = ["systemd", "docker-entrypoint", "kubernetes", "npm-prestart"]


def run_form(
    form: str, case: Case, bin_dir: Path, cwd: Path
) -> tuple[subprocess.CompletedProcess, float]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STUCK_RUNS_", "PG")) and k not in ("DATABASE_URL", "DIRECT_URL")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    if form != "systemd":
        env["STUCK_RUNS_START_TIMEOUT"] = str(WRAPPED_BOUND)
    env.update(case.env)
    if case.dotenv is not None:
        (cwd / ".env").write_text(case.dotenv)
    extra = (" " + shlex.join(case.args)) if case.args else ""

    def adopting(line: str) -> str:
        """The README's line with `--adopt TABLE` added, as the README says to."""
        return line.replace("stuck-runs start", "stuck-runs start" + extra)

    app = [sys.executable, "-c", f"print({APP_LINE!r})"]
    if form == "systemd":
        # ExecStartPre=: the argv itself, no shell; ExecStart= runs once it exited 0.
        binary, *rest = EXEC_START_PRE
        assert Path(binary).name == "stuck-runs"
        argv = [str(bin_dir / "stuck-runs"), *rest, *case.args]
    elif form == "docker-entrypoint":
        script = cwd / "entrypoint.sh"
        script.write_text(adopting(ENTRYPOINT))
        argv = ["sh", str(script), *app]
    elif form == "kubernetes":
        argv = [*K8S_COMMAND[:-1], adopting(K8S_COMMAND[-1])]
    else:
        package = {
            "name": "app",
            "private": True,
            "scripts": {"prestart": adopting(PRESTART), "start": shlex.join(app)},
        }
        (cwd / "package.json").write_text(json.dumps(package))
        argv = ["npm", "start", "--silent"]
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    if form == "systemd" and result.returncode == 0:
        # systemd starts ExecStart= only after ExecStartPre= exited 0.
        app_run = subprocess.run(app, capture_output=True, text=True, timeout=60)
        result = subprocess.CompletedProcess(
            argv, result.returncode, result.stdout + app_run.stdout, result.stderr
        )
    if form == "kubernetes" and result.returncode == 0:
        # The app containers start once every init container exited 0.
        app_run = subprocess.run(app, capture_output=True, text=True, timeout=60)
        result = subprocess.CompletedProcess(
            argv, result.returncode, result.stdout + app_run.stdout, result.stderr
        )
    return result, elapsed


def seed(url: str, threshold: str = "30 minutes") -> None:
    """A run idle 10 minutes (healthy under a 30-minute threshold) and one idle 2 hours."""
    with open_conn(url) as conn:
        conn.execute("UPDATE stuck_runs.stuck_runs_settings SET older_than = %s", (threshold,))
        conn.execute(
            "INSERT INTO stuck_runs.qualification_runs (id, status, updated_at) VALUES"
            " ('ten-minutes', 'PROCESSING', now() - interval '10 minutes'),"
            " ('two-hours', 'PROCESSING', now() - interval '2 hours')"
        )


def statuses(url: str) -> dict[str, str]:
    with open_conn(url) as conn:
        return dict(conn.execute("SELECT id, status FROM stuck_runs.qualification_runs").fetchall())


def check(result: subprocess.CompletedProcess, elapsed: float, case: Case, bound: float) -> None:
    report = f"exit {result.returncode} in {elapsed:.1f}s\nstdout:{result.stdout}\nstderr:{result.stderr}"
    assert result.returncode == 0, report
    assert APP_LINE in result.stdout, report
    assert elapsed < bound + SLACK, report
    assert "Traceback" not in result.stderr, report
    assert SECRET not in result.stdout + result.stderr, report
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    if case.fails:
        assert len(errors) == 1 and case.fails in errors[0], report
    else:
        assert not errors, report
    if case.warns:
        assert case.warns in result.stderr, report
    if case.db:
        # The configured threshold (30 minutes) applied: the 10-minute run is left alone.
        assert statuses(case.db) == {"ten-minutes": "PROCESSING", "two-hours": "FAILED"}, report


@pytest.fixture
def hung_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[Cluster | None]:
    if not system_postgres_available():
        if REQUIRE_ALL:
            pytest.fail("the wrong-password case needs PostgreSQL 15 server binaries")
        yield None
        return
    cluster = Cluster(password=SECRET)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def situation(request, db_url, empty_db_url, hung_port, password_cluster) -> Iterator[Case]:
    """Build the named situation; undo whatever it holds open afterwards."""
    name = request.param
    held: list[psycopg.Connection] = []
    dead = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/app"
    try:
        if name == "dead-port":
            yield Case(env={"DATABASE_URL": dead}, fails="could not connect")
        elif name == "hung-port":
            url = f"postgresql://app:{SECRET}@127.0.0.1:{hung_port}/app"
            yield Case(env={"DATABASE_URL": url}, fails="could not connect")
        elif name == "wrong-password":
            if password_cluster is None:
                pytest.skip("needs PostgreSQL 15 server binaries (apt postgresql-15)")
            url = password_cluster.url(password=SECRET + "x")
            yield Case(env={"DATABASE_URL": url}, fails="password authentication failed")
        elif name == "no-url":
            yield Case(fails="no database")
        elif name == "url-only-in-dotenv":
            seed(db_url)
            yield Case(dotenv=f'# the app\'s .env\nDATABASE_URL="{db_url}"\n', db=db_url)
        elif name == "malformed-url":
            url = f"postgresql://app:{SECRET} with space@also@127.0.0.1:5432/app"
            yield Case(env={"DATABASE_URL": url}, fails="invalid database URL")
        elif name == "not-installed":
            yield Case(env={"DATABASE_URL": empty_db_url}, installs=empty_db_url)
        elif name == "migrate-lock-held":
            seed(db_url)
            holder = open_conn(db_url)
            holder.execute("SELECT pg_advisory_lock(hashtext('stuck-runs migrate stuck_runs'))")
            held.append(holder)
            yield Case(env={"DATABASE_URL": db_url}, warns="holds the migrate lock", db=db_url)
        elif name == "old-transaction-blocks-index":
            seed(db_url)
            with open_conn(db_url) as conn:
                conn.execute(PRISMA_DDL)
                prisma_run(conn, "prisma-stuck", "PROCESSING", "2 hours")
            blocker = open_conn(db_url, autocommit=False)
            blocker.execute("""UPDATE "QualificationRun" SET "totalProspects" = 11""")
            held.append(blocker)
            yield Case(
                env={"DATABASE_URL": db_url},
                args=("--adopt", '"QualificationRun"'),
                warns="was not built within",
                db=db_url,
            )
        elif name == "odd-session-settings":
            seed(db_url)
            with open_conn(db_url) as conn:
                dbname = conn.execute("SELECT current_database()").fetchone()[0]
                for setting, value in ODD_SETTINGS.items():
                    conn.execute(f'ALTER DATABASE "{dbname}" SET {setting} = {value}')
            yield Case(env={"DATABASE_URL": db_url}, db=db_url)
        else:
            raise AssertionError(name)
    finally:
        for conn in held:
            conn.close()


ODD_SETTINGS = {
    "IntervalStyle": "'iso_8601'",
    "DateStyle": "'SQL, DMY'",
    "TimeZone": "'Pacific/Chatham'",
    "client_min_messages": "'error'",
    "extra_float_digits": "-15",
    "search_path": "'\"$user\"'",
    "default_transaction_read_only": "on",
    "default_transaction_isolation": "'serializable'",
    "lock_timeout": "'1ms'",
    "statement_timeout": "'40ms'",
}
SITUATIONS = [
    "dead-port",
    "hung-port",
    "wrong-password",
    "no-url",
    "url-only-in-dotenv",
    "malformed-url",
    "not-installed",
    "migrate-lock-held",
    "old-transaction-blocks-index",
    "odd-session-settings",
]


@pytest.mark.parametrize("situation", SITUATIONS, indirect=True)
@pytest.mark.parametrize("form", FORMS)
def test_the_app_starts(form, situation, bin_dir, tmp_path, request):
    if form == "npm-prestart" and not shutil.which("npm"):
        if REQUIRE_ALL:
            pytest.fail("npm is missing")
        pytest.skip("needs npm")
    result, elapsed = run_form(form, situation, bin_dir, tmp_path)
    bound = DEFAULT_BOUND if form == "systemd" else WRAPPED_BOUND
    # The README's Guarantees quote these figures (python -m pytest -s tests/test_start_matrix.py).
    print(
        f"\n[start-matrix] {form} / {request.node.callspec.id}: exit {result.returncode}, "
        f"{elapsed:.2f} s (bound {bound:g} s)"
    )
    check(result, elapsed, situation, bound)
    if situation.installs:
        with open_conn(situation.installs) as conn:
            assert conn.execute("SELECT to_regproc('stuck_runs.recover_stuck_runs')").fetchone()[0]


def test_the_forms_are_the_readmes_and_name_no_threshold():
    """What the matrix runs is what the README prints, and no start-up snippet fixes a threshold."""
    assert PRESTART == "stuck-runs start"
    assert "stuck-runs start" in ENTRYPOINT and "set -e" in ENTRYPOINT
    assert K8S_COMMAND == ["sh", "-c", "stuck-runs start"]
    assert EXEC_START_PRE[1:] == ["start"]
    for name in FORM_BLOCKS:
        assert not re.search(r"\d+\s*(minute|hour|min\b)", block(name)), block(name)
    for code in re.findall(r"```.*?```", read("docs/prisma.md"), re.S):
        assert not re.search(r"\d+\s*(minute|hour|min\b)", code), code


# The fifth form: the instrumentation.ts of docs/prisma.md, read from it
# at test time, in the app of tests/prisma_app.py with the real Prisma 7 client, called the way
# `next start` calls it: the app's .env files loaded first (Next.js loads them itself, with its
# own loader, @next/env, which tests/prisma/run-snippet.ts uses), NODE_ENV=production,
# NEXT_RUNTIME=nodejs, and start-up going on once register() returned (a register() that throws
# stops Next.js: "An error occurred while loading instrumentation hook"). It does not install or
# adopt (the README's Prisma `prestart` line does): its situations are the ones above that apply
# to a recovery call, with the lock on a table in place of the index build.

REGISTER_BOUND = 10.0  # the snippet's own timer; Prisma's waits and its statement_timeout are less
APP_TABLE = "app.qualification_runs"
BUILTIN_TABLE = "stuck_runs.qualification_runs"
# Idle times seeded into each reachable database; its threshold is 30 minutes.
IDLE = {"ten-minutes": "10 minutes", "forty-five-minutes": "45 minutes", "two-hours": "2 hours"}
BY_DATABASE = {"ten-minutes": "PROCESSING", "forty-five-minutes": "FAILED", "two-hours": "FAILED"}
# With STUCK_RUNS_OLDER_THAN="1 hour", which comes before the database's setting:
BY_ENVIRONMENT = {
    "ten-minutes": "PROCESSING",
    "forty-five-minutes": "PROCESSING",
    "two-hours": "FAILED",
}
UNTOUCHED = dict.fromkeys(IDLE, "PROCESSING")


@dataclass
class AppStart:
    """One `next start` of the app: its environment, and what must be true afterwards."""

    env: dict[str, str] = field(default_factory=dict)
    dotenv: str | None = None
    fails: tuple[str, ...] = ()  # the one log line ends with one of these
    db: str | None = None  # the database whose runs are checked afterwards
    expect: dict[str, dict[str, str]] = field(default_factory=dict)  # table: run id: status
    held: list[psycopg.Connection] = field(default_factory=list)  # released before the check


@dataclass
class Started:
    log: list[str]  # what the app logged, stdout then stderr, the harness's @@ lines left out
    returned: float | None  # seconds register() took; None: it never returned, or threw
    wall: float  # the whole process, tsx and loading Prisma included, until register() returned
    output: str


def start_app(app: Path, env: dict[str, str]) -> Started:
    """`tsx run-snippet.ts instrumentation.ts register` in the app, until register() returned.

    The process is ended then: what the app does after start-up (here: the harness's
    $disconnect, which may wait on a hung socket) is not start-up.
    """
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STUCK_RUNS_", "PG")) and k not in ("DATABASE_URL", "DIRECT_URL")
    }
    full_env |= OFFLINE | {"NEXT_RUNTIME": "nodejs", "NODE_ENV": "production"} | env
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            str(app / "node_modules" / ".bin" / "tsx"),
            "run-snippet.ts",
            "instrumentation.ts",
            "register",
        ],
        cwd=app,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # tsx runs node as a child: end both
    )
    # A register() that hangs must fail the test, not hang it.
    guard = threading.Timer(60, os.killpg, (proc.pid, signal.SIGKILL))
    guard.start()
    stdout: list[str] = []
    wall = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            stdout.append(line.rstrip("\n"))
            if line.startswith("@@result"):
                wall = time.monotonic() - started
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    finally:
        guard.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        rest, stderr = proc.communicate(timeout=30)
    stdout += rest.splitlines()
    returned = [int(line.split()[1]) / 1000 for line in stdout if line.startswith("@@returned-ms ")]
    log = [line for line in stdout if not line.startswith("@@")] + stderr.splitlines()
    return Started(
        log=log,
        returned=returned[0] if returned and wall is not None else None,
        wall=wall if wall is not None else time.monotonic() - started,
        output=f"stdout:\n{chr(10).join(stdout)}\nstderr:\n{stderr}",
    )


def seed_app(url: str, *tables: str) -> None:
    """The runs of IDLE in each table, last updated that long ago (Prisma's columns in UTC)."""
    with open_conn(url) as conn:
        for run_id, idle in IDLE.items():
            if APP_TABLE in tables:
                conn.execute(
                    f'INSERT INTO {APP_TABLE} (id, status, "totalProspects", "updatedAt")'
                    " VALUES (%s, 'PROCESSING', 10, (now() - %s::interval) AT TIME ZONE 'UTC')",
                    (run_id, idle),
                )
            if BUILTIN_TABLE in tables:
                conn.execute(
                    f"INSERT INTO {BUILTIN_TABLE} (id, status, updated_at)"
                    " VALUES (%s, 'PROCESSING', now() - %s::interval)",
                    (run_id, idle),
                )


def table_statuses(url: str, table: str) -> dict[str, str]:
    with open_conn(url) as conn:
        return dict(conn.execute(f"SELECT id, status::text FROM {table}").fetchall())


@pytest.fixture(scope="module")
def prisma_template(server_url: str, template_db: str, prisma_init_migration: str) -> Iterator[str]:
    """A database the README's Prisma `prestart` line ran on: Prisma's table in `app`,
    stuck-runs installed, the table adopted; the threshold set to 30 minutes."""
    name = create_database(server_url, template=template_db)
    url = with_query(with_dbname(server_url, name), schema="app")
    with open_conn(url) as conn:
        conn.execute(prisma_init_migration)  # open_conn's search_path puts it in `app`
        conn.execute("UPDATE stuck_runs.stuck_runs_settings SET older_than = '30 minutes'")
    result = run_cli("--database-url", url, "start", "--adopt", "qualification_runs", "--strict")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    yield name
    drop_database(server_url, name)


@pytest.fixture
def app_start(
    request, server_url, prisma_template, prisma_init_migration, hung_port, password_cluster
) -> Iterator[AppStart]:
    """Build the named situation for the app; undo whatever it holds open afterwards."""
    name = request.param
    made: list[str] = []

    def database(template: str | None = prisma_template) -> str:
        """A new database (by default as `prestart` left it), as the app's DATABASE_URL."""
        made.append(create_database(server_url, template=template))
        return node_url(with_query(with_dbname(server_url, made[-1]), schema="app"))

    dead = f"127.0.0.1:{free_port()}"
    unreachable = ("Can't reach database server at " + dead,)
    case = AppStart()
    try:
        if name == "dead-port":
            case = AppStart(env={"DATABASE_URL": f"postgresql://app:{SECRET}@{dead}/app"})
            case.fails = unreachable
        elif name == "hung-port":
            url = f"postgresql://app:{SECRET}@127.0.0.1:{hung_port}/app?schema=app"
            # Prisma's own 2 s wait to start a transaction, else the snippet's timer.
            case = AppStart(
                env={"DATABASE_URL": url},
                fails=("Unable to start a transaction in the given time.", "no answer within 10 s"),
            )
        elif name == "wrong-password":
            if password_cluster is None:
                pytest.skip("needs PostgreSQL 15 server binaries (apt postgresql-15)")
            url = password_cluster.url(password=SECRET + "x") + "?schema=app"
            case = AppStart(
                env={"DATABASE_URL": url},
                fails=("the provided database credentials for `postgres` are not valid",),
            )
        elif name == "no-url":
            case = AppStart(fails=("Invalid URL",))
        elif name == "url-only-in-dotenv":
            # Next.js loads .env itself; the threshold may come from there too.
            url = database()
            seed_app(url, APP_TABLE)
            dotenv = f'# the app\'s .env\nDATABASE_URL="{url}"\nSTUCK_RUNS_OLDER_THAN="1 hour"\n'
            case = AppStart(dotenv=dotenv, db=url, expect={APP_TABLE: BY_ENVIRONMENT})
        elif name == "malformed-url":
            # JavaScript's URL() takes the last '@' for the host and encodes the space.
            url = f"postgresql://app:{SECRET} with space@also@{dead}/app"
            case = AppStart(env={"DATABASE_URL": url}, fails=unreachable)
        elif name == "malformed-url-unparsable":
            # A raw '/' in the password: URL() refuses it, lib/prisma.ts throws when loaded.
            url = f"postgresql://app:{SECRET}/with/slash@{dead}/app"
            case = AppStart(env={"DATABASE_URL": url}, fails=("Invalid URL",))
        elif name == "not-installed":
            url = database(template=None)
            with open_conn(url) as conn:
                conn.execute(prisma_init_migration)
            case = AppStart(
                env={"DATABASE_URL": url},
                fails=('relation "stuck_runs.stuck_runs_settings" does not exist`',),
            )
        elif name == "migrate-lock-held":
            # Another instance's `stuck-runs start` holds it; the threshold from the environment.
            url = database()
            seed_app(url, APP_TABLE)
            holder = open_conn(url)
            holder.execute("SELECT pg_advisory_lock(hashtext('stuck-runs migrate stuck_runs'))")
            case = AppStart(
                env={"DATABASE_URL": url, "STUCK_RUNS_OLDER_THAN": "1 hour"},
                db=url,
                expect={APP_TABLE: BY_ENVIRONMENT},
                held=[holder],
            )
        elif name == "old-transaction-locks-runs-table":
            # A migration of the app's (another instance's `prisma migrate deploy`) holds the
            # table: given up after 2 s (Prisma drops the WARNING), the other table recovered.
            url = database()
            seed_app(url, APP_TABLE, BUILTIN_TABLE)
            blocker = open_conn(url, autocommit=False)
            blocker.execute(f"LOCK TABLE {APP_TABLE} IN ACCESS EXCLUSIVE MODE")
            case = AppStart(
                env={"DATABASE_URL": url},
                db=url,
                expect={APP_TABLE: UNTOUCHED, BUILTIN_TABLE: BY_DATABASE},
                held=[blocker],
            )
        elif name == "old-transaction-locks-stuck-runs":
            # An upgrade of stuck-runs in progress: the snippet's statement_timeout ends it.
            url = database()
            seed_app(url, APP_TABLE)
            blocker = open_conn(url, autocommit=False)
            blocker.execute("LOCK TABLE stuck_runs.stuck_runs_settings IN ACCESS EXCLUSIVE MODE")
            case = AppStart(
                env={"DATABASE_URL": url},
                fails=("canceling statement due to statement timeout`",),
                db=url,
                expect={APP_TABLE: UNTOUCHED},
                held=[blocker],
            )
        elif name == "odd-session-settings":
            url = database()
            seed_app(url, APP_TABLE)
            with open_conn(url) as conn:
                for setting, value in ODD_SETTINGS.items():
                    conn.execute(f'ALTER DATABASE "{made[-1]}" SET {setting} = {value}')
            case = AppStart(env={"DATABASE_URL": url}, db=url, expect={APP_TABLE: BY_DATABASE})
        elif name == "threshold-without-unit":
            # PostgreSQL reads '30' as 30 seconds; the runner refuses it, and so does the snippet.
            url = database()
            seed_app(url, APP_TABLE)
            case = AppStart(
                env={"DATABASE_URL": url, "STUCK_RUNS_OLDER_THAN": "30"},
                fails=("STUCK_RUNS_OLDER_THAN=30 has no unit: write e.g. '30 minutes'",),
                db=url,
                expect={APP_TABLE: UNTOUCHED},
            )
        else:
            raise AssertionError(name)
        yield case
    finally:
        for conn in case.held:
            conn.close()
        for dbname in made:
            drop_database(server_url, dbname)


APP_SITUATIONS = [
    "dead-port",
    "hung-port",
    "wrong-password",
    "no-url",
    "url-only-in-dotenv",
    "malformed-url",
    "malformed-url-unparsable",
    "not-installed",
    "migrate-lock-held",
    "old-transaction-locks-runs-table",
    "old-transaction-locks-stuck-runs",
    "odd-session-settings",
    "threshold-without-unit",
]


# Under CI a skip fails the run (tests/conftest.py).
@pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm")
@pytest.mark.parametrize("app_start", APP_SITUATIONS, indirect=True)
def test_instrumentation_lets_the_app_start(app_start: AppStart, prisma_project, tmp_path, request):
    """register() returns within its bound, one log line when it failed, no password, and the
    configured threshold (STUCK_RUNS_OLDER_THAN, else the database's) applied."""
    case = app_start
    started = start_app(app_dir(prisma_project, tmp_path / "app", case.dotenv), case.env)
    for conn in case.held:
        conn.close()
    report = f"register() {started.returned} s, process {started.wall:.1f} s\n{started.output}"
    # The README's Guarantees quote these figures (python -m pytest -s tests/test_start_matrix.py).
    print(
        f"\n[start-matrix] instrumentation.ts / {request.node.callspec.id}: register() returned "
        f"after {started.returned} s (process {started.wall:.2f} s, bound {REGISTER_BOUND:g} s)"
    )
    assert started.returned is not None, report  # Next.js would not have started
    assert started.returned < REGISTER_BOUND + SLACK, report
    assert SECRET not in started.output, report
    recovered = [line for line in started.log if line.startswith("[Recovery] ")]
    assert recovered == started.log, report  # nothing else: no stack, no Prisma noise
    if case.fails:
        assert len(started.log) == 1, report
        [line] = started.log
        prefix = "[Recovery] failed, starting anyway: "
        assert line.startswith(prefix) and line.endswith(case.fails), report
    else:
        assert not any(line.startswith("[Recovery] failed") for line in started.log), report
        wanted = sum(s == "FAILED" for runs in case.expect.values() for s in runs.values())
        assert len(recovered) == wanted, report
    for table, runs in case.expect.items():
        assert table_statuses(case.db, table) == runs, f"{table}\n{report}"
