"""The runner and psql as child processes, started the way an operator starts them.

Sections 3 and 4 time (or run next to workers) the real command, start-up
included, so they need the same executable a user would run and a failure that
stops the benchmark instead of producing figures for a run that did nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runner.connection import parse_database_url
from tests.perf.bench.common import BenchError


def runner_command() -> tuple[list[str], str]:
    """The installed console script next to this interpreter (a pyenv shim would add
    its own start-up time), else the module form."""
    script = Path(sys.executable).parent / "stuck-runs"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], "stuck-runs"
    return [sys.executable, "-m", "runner"], "python -m runner"


def run_checked(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> None:
    done = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=timeout
    )
    if done.returncode != 0:
        raise BenchError(
            f"{Path(cmd[0]).name} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )


def psql_env(url: str) -> tuple[str, dict[str, str]]:
    """psql gets the libpq part of the URL; a Prisma ?schema= becomes PGOPTIONS."""
    target = parse_database_url(url)
    env = dict(os.environ)
    if target.schema:
        env["PGOPTIONS"] = f"-c search_path={target.schema}"
    return target.conninfo, env
