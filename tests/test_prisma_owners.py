"""Owners in docs/prisma.md's app, with the real Prisma 7 client and real processes (issue 23).

Each app process runs the guide's `instrumentation.ts` register() as `next start` would, then
serves the README's route `app/api/qualify/route.ts` and the calls of `lib/owner.ts` on
command (OWNER_APP, a harness that is not part of the README), so that a test can start,
kill or fence processes of the same and of other instances:

- a restart (a new process, same STUCK_RUNS_INSTANCE) recovers the killed process's claimed
  run in its start-up call, with no threshold, while another live instance's silent run stays;
- register() twice in one process keeps its life and its runs;
- a process whose life ended (a zombie) hears `fenced` from its heartbeat, its claim and
  progress return false and its guarded finish changes 0 rows; a plain ORM update does not
  stop (what the README says);
- a life the database could not begin at start-up is begun by the heartbeat.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .helpers import open_conn, run_cli
from .prisma_app import OFFLINE, prisma_section, readme_prisma_text
from .test_prisma import app_url, migrations, project, seed  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm"
    ),
]

# The harness: register() first, as Next.js does, then one command per line of stdin, each
# answered by one `@@command <json>` line (`@@error <message>` when it threw).
OWNER_APP = """
import readline from "node:readline";

const { register } = await import("./instrumentation.ts");
const route = await import("./app/api/qualify/route.ts");
const { owner, claimRun, reportRunProgress, finishRun } = await import("@/lib/owner");
const { release } = await import("@/lib/qualify");
const { prisma } = await import("@/lib/prisma");

await register();
console.log(`@@ready ${JSON.stringify({ ...owner, timer: undefined })}`);
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [command, ...args] = line.trim().split(/\\s+/);
  try {
    let result: unknown;
    if (command === "register") {
      await register();
      result = owner.life;
    } else if (command === "run") {
      const response = await route.POST(
        new Request("http://app/api/qualify", { method: "POST", body: JSON.stringify({ prospects: args }) }),
      );
      result = { status: response.status, body: await response.json() };
    } else if (command === "claim") result = await claimRun(args[0]);
    else if (command === "progress") result = await reportRunProgress(args[0], Number(args[1]));
    else if (command === "finish") result = await finishRun(args[0], { status: "COMPLETED" });
    else if (command === "plain") {
      // What a zombie's ordinary Prisma update does: nothing stops it.
      const run = await prisma.qualificationRun.update({ where: { id: args[0] }, data: { status: "COMPLETED" } });
      result = run.status;
    } else if (command === "release") result = release();
    else if (command === "owner") result = { ...owner, timer: undefined };
    else throw new Error(`unknown command ${command}`);
    console.log(`@@${command} ${JSON.stringify(result)}`);
  } catch (error) {
    console.log(`@@error ${String(error).split("\\n").join(" ")}`);
  }
}
"""


def owner_prestart_line() -> list[str]:
    """The README's start-up line for a model with an owner field, as argv (without the
    `stuck-runs` itself)."""
    [line] = re.findall(
        r"`(stuck-runs start [^`]*--column owner=owner[^`]*)`", prisma_section(readme_prisma_text())
    )
    args = shlex.split(line)
    assert args[:2] == ["stuck-runs", "start"], line
    return args[1:]


@pytest.fixture
def owned_url(app_url: str, project: Path) -> str:  # noqa: F811
    """The app's database after the README's `prestart` with the owner column mapped."""
    result = run_cli("--database-url", app_url, *owner_prestart_line(), "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr, result.stderr
    (project / "owner-app.ts").write_text(OWNER_APP)
    return app_url


class App:
    """One process of the app: `next start` with the README's register(), then the harness."""

    def __init__(self, root: Path, url: str, instance: str) -> None:
        env = (
            os.environ
            | OFFLINE
            | {
                "DATABASE_URL": url,
                "STUCK_RUNS_INSTANCE": instance,
                "NEXT_RUNTIME": "nodejs",
                "NODE_ENV": "production",
            }
        )
        env = {k: v for k, v in env.items() if k != "STUCK_RUNS_OLDER_THAN"}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(root / "node_modules" / ".bin" / "tsx"), "owner-app.ts"],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # tsx runs node as a child: a kill ends both
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []  # what the app logged: [Recovery] lines and anything else
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()
        self.owner = json.loads(self.wait_for("@@ready ").removeprefix("@@ready "))
        self.registered = time.monotonic() - self.started

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float = 60) -> str:
        """The next line that starts with `prefix`; every line on the way goes to the log."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=min(1.0, max(0.01, left)))
            except queue.Empty:
                if left > 1 and self.proc.poll() is None:
                    continue
                raise AssertionError(f"no {prefix!r} within {timeout} s; log: {self.log}") from None
            if line.startswith("@@error "):
                raise AssertionError(f"{line}; log: {self.log}")
            if not line.startswith("@@"):
                self.log.append(line)
            if line.startswith(prefix):
                return line

    def logged(self, prefix: str, timeout: float = 60) -> str:
        """A log line that starts with `prefix`: already logged, or the next one to come."""
        for line in self.log:
            if line.startswith(prefix):
                return line
        return self.wait_for(prefix, timeout)

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        name = command.split()[0]
        return json.loads(self.wait_for(f"@@{name} ").removeprefix(f"@@{name} "))

    def start_run(self, *prospects: str) -> str:
        answer = self.ask("run " + " ".join(prospects))
        assert answer["status"] == 202, answer
        return answer["body"]["id"]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def apps() -> Any:
    started: list[App] = []
    yield started
    for app in started:
        app.kill()


def run_row(conn: psycopg.Connection, run_id: str) -> dict[str, Any]:
    row = conn.execute(
        'SELECT status::text, owner, "processedProspects", "errorMessage"'
        " FROM app.qualification_runs WHERE id = %s",
        (run_id,),
    ).fetchone()
    assert row is not None
    return dict(zip(("status", "owner", "processed", "error"), row, strict=True))


def recoveries(conn: psycopg.Connection, run_id: str) -> list[str | None]:
    rows = conn.execute(
        "SELECT reason FROM stuck_runs.run_recoveries WHERE run_id = %s", (run_id,)
    ).fetchall()
    return [reason for (reason,) in rows]


def wait_until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_restart_recovers_the_killed_processs_run_at_once(
    project: Path,  # noqa: F811
    owned_url: str,
    apps: list[App],
) -> None:
    """G1 with the README's app: the run a killed process claimed is FAILED by the new
    process's register(), reason 'instance web restarted', although it was idle for a second
    and the threshold is 5 minutes; another live instance's run, silent for 2 hours, stays."""
    apps.append(worker := App(project, owned_url, "worker"))
    silent = worker.start_run("hold")
    apps.append(web1 := App(project, owned_url, "web"))
    dying = web1.start_run("hold")
    with open_conn(owned_url) as conn:
        conn.execute(
            """UPDATE app.qualification_runs SET "updatedAt" = (now() - interval '2 hours')"""
            " AT TIME ZONE 'UTC' WHERE id = %s",
            (silent,),
        )
        assert run_row(conn, dying)["owner"] == web1.owner["life"]
        assert run_row(conn, silent)["owner"] == worker.owner["life"]
        web1.kill()

        apps.append(web2 := App(project, owned_url, "web"))
        # The README's Guarantees quote this (python -m pytest -s tests/test_prisma_owners.py).
        print(f"\n[owners] restart: process start to register() returned {web2.registered:.2f} s")
        assert web2.owner["life"] != web1.owner["life"]
        recovered = [line for line in web2.log if line.startswith("[Recovery] ")]
        assert recovered == [
            f"[Recovery] app.qualification_runs run {dying}: 0/1 completed"
            " (PROCESSING \u2192 FAILED): instance web restarted"
        ], web2.log
        row = run_row(conn, dying)
        assert row["status"] == "FAILED" and row["error"].startswith(
            "Recovered by stuck-runs: PROCESSING when its owner's life ended"
        ), row
        assert recoveries(conn, dying) == ["instance web restarted"]
        assert run_row(conn, silent)["status"] == "PROCESSING"
        assert recoveries(conn, silent) == []
        states = dict(
            conn.execute("SELECT life, state FROM stuck_runs.stuck_runs_instances").fetchall()
        )
        assert states == {
            web1.owner["life"]: "ended",
            web2.owner["life"]: "live",
            worker.owner["life"]: "live",
        }

        # The new life works as the route says: claimed, progress, finished by its owner.
        done = web2.start_run("a", "b", "c")
        wait_until(lambda: run_row(conn, done)["status"] == "COMPLETED")
        assert run_row(conn, done) | {"error": None} == {
            "status": "COMPLETED",
            "owner": web2.owner["life"],
            "processed": 3,
            "error": None,
        }
        # The worker's heartbeat keeps its life alive, by the database's clock.
        time.sleep(6)
        [(silent_for,)] = conn.execute(
            "SELECT extract(epoch FROM silent_for) FROM stuck_runs.stuck_runs_instances"
            " WHERE life = %s",
            (worker.owner["life"],),
        ).fetchall()
        assert silent_for < 5.5
        assert run_row(conn, silent)["status"] == "PROCESSING"
    assert all(not line.startswith("[Recovery] failed") for line in worker.log + web2.log)


def test_register_twice_in_one_process_keeps_its_life_and_runs(
    project: Path,  # noqa: F811
    owned_url: str,
    apps: list[App],
) -> None:
    """Next.js in development runs register() again on a reload: the same life, nothing ended,
    nothing recovered, and the run goes on to completion under the same owner."""
    apps.append(web := App(project, owned_url, "web"))
    run_id = web.start_run("hold", "b")
    assert web.ask("register") == web.owner["life"]
    assert [line for line in web.log if line.startswith("[Recovery] ")] == []
    with open_conn(owned_url) as conn:
        lives = conn.execute(
            "SELECT life, state FROM stuck_runs.stuck_runs_instances WHERE instance = 'web'"
        ).fetchall()
        assert lives == [(web.owner["life"], "live")]
        assert run_row(conn, run_id)["status"] == "PROCESSING"
        assert web.ask("release") == 1
        wait_until(lambda: run_row(conn, run_id)["status"] == "COMPLETED")
        assert run_row(conn, run_id)["processed"] == 2
        assert recoveries(conn, run_id) == []


def test_zombie_is_fenced_and_its_writes_through_stuck_runs_change_nothing(
    project: Path,  # noqa: F811
    owned_url: str,
    apps: list[App],
) -> None:
    """G4: web's first process lives on after a second one started under its name. Its run
    was recovered; its heartbeat says fenced (one line); claim and progress return false, the
    guarded finish changes 0 rows, its own worker stops at the next progress report, and a
    new run is refused. A plain Prisma update, the README warns, is not stopped."""
    apps.append(zombie := App(project, owned_url, "web"))
    run_id = zombie.start_run("hold", "b")
    apps.append(App(project, owned_url, "web"))
    with open_conn(owned_url) as conn:
        recovered = run_row(conn, run_id)
        assert recovered["status"] == "FAILED", recovered

        assert zombie.ask(f"progress {run_id} 1") is False
        assert zombie.ask(f"claim {run_id}") is False
        assert zombie.ask(f"finish {run_id}") is False
        assert run_row(conn, run_id) == recovered

        assert zombie.ask("release") == 1  # the route's worker reports progress: false, stops
        time.sleep(1)
        assert run_row(conn, run_id) == recovered

        refused = zombie.ask("run c")
        assert refused["status"] == 503, refused
        [(status, owner)] = conn.execute(
            "SELECT status::text, owner FROM app.qualification_runs WHERE id <> %s", (run_id,)
        ).fetchall()
        assert (status, owner) == ("FAILED", None)

        fenced = zombie.logged("[Recovery] fenced: ", timeout=12)
        assert zombie.owner["life"] in fenced and "web" in fenced
        assert zombie.ask("owner")["fenced"] is True
        time.sleep(6)  # the timer stopped: no second line
        assert sum(line.startswith("[Recovery] fenced") for line in zombie.log) == 1

        assert zombie.ask(f"plain {run_id}") == "COMPLETED"  # unguarded: the recovery undone
        assert run_row(conn, run_id)["status"] == "COMPLETED"


def test_a_life_the_database_could_not_begin_at_start_up_is_begun_by_the_heartbeat(
    project: Path,  # noqa: F811
    owned_url: str,
    apps: list[App],
) -> None:
    """register() meets a locked settings table (an upgrade in progress): one failed line,
    the app starts, and its runs are refused until the heartbeat begins the life."""
    with open_conn(owned_url) as conn:
        seed(conn, "run-old", "PROCESSING", "1 hour")
        blocker = open_conn(owned_url, autocommit=False)
        blocker.execute("LOCK TABLE stuck_runs.stuck_runs_settings IN ACCESS EXCLUSIVE MODE")
        try:
            apps.append(web := App(project, owned_url, "web"))
            assert web.registered < 10 + 8
            failed = web.logged("[Recovery] failed, starting anyway: ", timeout=5)
            assert failed.endswith("canceling statement due to statement timeout`"), web.log
            assert web.ask("owner")["started"] is False
            assert web.ask("run a")["status"] == 503
        finally:
            blocker.close()
        late = web.logged("[Recovery] life started late", timeout=12)
        assert late == "[Recovery] life started late; 1 run(s) recovered"
        assert run_row(conn, "run-old")["status"] == "FAILED"
        run_id = web.start_run("a")
        wait_until(lambda: run_row(conn, run_id)["status"] == "COMPLETED")
