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

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from .cluster import Cluster, free_port, system_postgres_available
from .conftest import REQUIRE_ALL
from .helpers import PRISMA_DDL, open_conn, prisma_run

REPO = Path(__file__).resolve().parent.parent
SECRET = "Sup3r-S3cret-Pw"
APP_LINE = "APP STARTED"
DEFAULT_BOUND = 15.0
WRAPPED_BOUND = 5.0
# Interpreter start-up, npm's own start-up and the shell, on a busy 2-core machine.
SLACK = 4.0

README = (REPO / "README.md").read_text()


def readme_section(title: str) -> str:
    start = README.index(f"## {title}")
    return README[start : README.index("\n## ", start + 1)]


WIRING = readme_section("Wiring it into your app's start-up")
# The four forms exactly as the README prints them.
PRESTART = json.loads(re.search(r"```json\n(.*?)```", WIRING, re.S).group(1))["scripts"]["prestart"]
ENTRYPOINT = re.search(r"\*\*Docker entrypoint\*\*:\n\n```sh\n(.*?)```", WIRING, re.S).group(1)
K8S_COMMAND = json.loads(re.search(r"command: (\[.*?\])", WIRING).group(1))
EXEC_START_PRE = shlex.split(re.search(r"ExecStartPre=(.*)", WIRING).group(1))


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
    prisma = readme_section("With Prisma")
    for text in (WIRING, prisma):
        for block in re.findall(r"```.*?```", text, re.S):
            assert not re.search(r"\d+\s*(minute|hour|min\b)", block), block
