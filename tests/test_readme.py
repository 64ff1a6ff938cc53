"""The README and docs/ must stay true: the demo command works and every command line parses."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from runner.cli import main

from .docs_text import all_text, block
from .helpers import insert_run, open_conn, with_query
from .prisma_app import PRISMA_DIR, install_node_modules

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = all_text()  # the README and every docs/*.md
COMMAND_NAMES = main.list_commands(click.Context(main))


def readme_command_lines() -> list[str]:
    """Every `stuck-runs COMMAND ...` invocation in the code of the README and docs/."""
    code = re.findall(r"```.*?```", DOCS, flags=re.S) + re.findall(r"`[^`\n]+`", DOCS)
    lines = set()
    for chunk in code:
        for match in re.finditer(r"stuck-runs (?:--database-url \S+ )?([a-z]+)[^\n]*", chunk):
            if match.group(1) not in COMMAND_NAMES:
                continue
            line = re.split(r"&&|\"\]|\",|\||`| #| >", match.group(0))[0].strip()
            if line.count('"') % 2:  # the closing quote of a JSON or YAML string
                line = line.rstrip('"')
            if "..." not in line:
                lines.add(line)
    return sorted(lines)


def test_readme_quick_start_demo_runs_as_written():
    assert "pip install -e '.[demo]' && stuck-runs demo" in README
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "runner", "demo"], capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "(status: PROCESSING \u2192 FAILED)" in result.stdout
    assert "run-healthy-long: PROCESSING, 880/2000" in result.stdout.split("After recovery")[1]
    assert elapsed < 30


def test_readme_names_the_test_command_ci_runs():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "python -m pytest" in README and "python3 -m pytest" in ci


@pytest.mark.parametrize("line", readme_command_lines())
def test_every_readme_command_line_parses(line):
    words = shlex.split(line)[1:]
    if words[0] == "--database-url":
        words = words[2:]
    name, rest = words[0], words[1:]
    command = main.get_command(click.Context(main), name)
    try:
        command.make_context(name, rest)
    except click.UsageError as exc:
        pytest.fail(f"{line!r}: {exc}")


def test_readme_command_lines_were_found():
    assert len(readme_command_lines()) >= 6


def test_readme_mentions_every_command():
    for name in COMMAND_NAMES:
        assert f"`{name}" in README or f"stuck-runs {name}" in README, name


# Blocks of nothing but command lines: each line is `stuck-runs ...` (click parses it as the
# installed command would) or `export NAME=...` of a variable the runner reads.
COMMAND_BLOCKS = (
    "install-migrate",
    "adopt-lines",
    "pg-cron-lines",
    "adoption-lines",
    "pg-cron-cli",
    "relocate-line",
    "install-export-prisma",
)


@pytest.mark.parametrize("name", COMMAND_BLOCKS)
def test_command_blocks_parse_line_by_line(name):
    lines = [line for line in block(name).splitlines() if line.strip()]
    assert lines, name
    for line in lines:
        words = shlex.split(line, comments=True)
        if words[0] == "export":
            variable = words[1].split("=", 1)[0]
            assert variable in ("DATABASE_URL", "DIRECT_URL") or variable.startswith(
                "STUCK_RUNS_"
            ), line
            continue
        assert words[0] == "stuck-runs", line
        command = main.get_command(click.Context(main), words[1])
        assert command is not None, line
        try:
            command.make_context(words[1], words[2:])
        except click.UsageError as exc:
            pytest.fail(f"{line!r}: {exc}")


def test_readme_python_listen_snippet_runs_with_a_prisma_url(db_url, tmp_path):
    """docs/sql.md's snippet as printed, with DATABASE_URL as Prisma has it (?schema=app&pgbouncer=...)."""
    script = tmp_path / "listen.py"
    script.write_text(block("listen-python"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DIRECT_URL")}
    env["DATABASE_URL"] = with_query(db_url, schema="app", connection_limit="5")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    listener = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        with open_conn(db_url) as conn:
            deadline = time.monotonic() + 20
            while not conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN stuck_runs_recovered'"
            ).fetchone()[0]:
                assert listener.poll() is None, listener.communicate()[1]
                assert time.monotonic() < deadline, "the snippet never listened"
                time.sleep(0.1)
            run_id = insert_run(conn, idle="1 hour")
            conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
        line = listener.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("1 run(s) recovered"), listener.stderr
        assert run_id in line
    finally:
        listener.kill()
        listener.communicate()


def wait_for_listener(db_url: str, listener: subprocess.Popen) -> None:
    """Until the snippet's session is listening (or it died)."""
    with open_conn(db_url) as conn:
        deadline = time.monotonic() + 30
        while not conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = 'LISTEN stuck_runs_recovered'"
        ).fetchone()[0]:
            assert listener.poll() is None, listener.communicate()
            assert time.monotonic() < deadline, "the snippet never listened"
            time.sleep(0.1)


@pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm")
def test_node_listen_snippet_runs_with_a_prisma_url(db_url, tmp_path):
    """docs/sql.md's node-postgres snippet as printed (an ES module, as a Next.js app's code
    is), with node-postgres from tests/prisma's lockfile and Prisma's DATABASE_URL."""
    install_node_modules()
    script = tmp_path / "listen.mjs"
    script.write_text(block("listen-node"))
    (tmp_path / "node_modules").symlink_to(PRISMA_DIR / "node_modules")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DIRECT_URL")}
    env["DATABASE_URL"] = with_query(db_url, schema="app")
    listener = subprocess.Popen(
        ["node", str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for_listener(db_url, listener)
        with open_conn(db_url) as conn:
            run_id = insert_run(conn, idle="1 hour")
            conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')")
        seen = ""
        deadline = time.monotonic() + 20
        while "'failed'" not in seen and time.monotonic() < deadline:
            seen += listener.stdout.readline()  # type: ignore[union-attr]
        assert seen.startswith("1 run(s) recovered"), seen
        assert run_id in seen and "'failed'" in seen, seen
    finally:
        listener.kill()
        listener.communicate()
