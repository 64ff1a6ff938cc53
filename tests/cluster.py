"""A private PostgreSQL cluster a test starts itself (initdb + pg_ctl in a temp dir).

For what the shared server cannot do: preload pg_cron, run as a standby, be
SIGKILLed or SIGSTOPped. Uses the system's PostgreSQL 15 binaries by default;
as root the server runs as the `postgres` OS user.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

SYSTEM_BIN = Path(os.environ.get("STUCK_RUNS_PG15_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def system_postgres_available() -> bool:
    return (SYSTEM_BIN / "initdb").exists() and (os.geteuid() != 0 or shutil.which("runuser"))


def system_extension_available(library: str) -> bool:
    """Whether the system server has an extension's library (e.g. apt postgresql-15-cron)."""
    return system_postgres_available() and (SYSTEM_BIN.parent / "lib" / f"{library}.so").exists()


class Cluster:
    def __init__(
        self,
        bin_dir: Path = SYSTEM_BIN,
        settings: dict[str, str] | None = None,
        password: str | None = None,
    ):
        """`password` switches TCP connections to scram-sha-256 (the socket stays trusted)."""
        self.bin_dir = bin_dir
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="stuck-runs-cluster-"))
        self.data = self.base / "data"
        self.settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "fsync": "off",
            "max_connections": "100",
            **(settings or {}),
        }
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        auth = ["--auth=trust"]
        if password:
            pwfile = self.base / "pw"
            pwfile.write_text(password)
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self._run("initdb", "-D", str(self.data), *auth, "-U", "postgres", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            for key, value in self.settings.items():
                conf.write(f"{key} = {value}\n")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def start(self, *, standby: bool = False) -> None:
        if standby:
            (self.data / "standby.signal").touch()
            if os.geteuid() == 0:
                shutil.chown(self.data / "standby.signal", "postgres", "postgres")
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def url(self, dbname: str = "postgres", password: str | None = None) -> str:
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        path = self.base / "log"
        return path.read_text() if path.exists() else ""

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


# What a cluster needs to run pg_cron jobs (tests/test_pgcron.py, tests/test_pooler.py).
PG_CRON_SETTINGS = {
    "shared_preload_libraries": "'pg_cron'",
    "cron.database_name": "'postgres'",
    # Jobs run in background workers: no TCP connection, no password.
    "cron.use_background_workers": "on",
    "max_worker_processes": "32",
}
