"""The README must stay true: its demo command works and its command lines parse."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from runner.cli import main

from .helpers import insert_run, open_conn, with_query

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMMAND_NAMES = main.list_commands(click.Context(main))


def readme_command_lines() -> list[str]:
    """Every `stuck-runs COMMAND ...` invocation in the README's code, wherever it stands."""
    code = re.findall(r"```.*?```", README, flags=re.S) + re.findall(r"`[^`\n]+`", README)
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


def readme_block_after(marker: str, language: str) -> str:
    """The first ```language block after `marker` in the README, as printed."""
    block = re.search(rf"```{language}\n(.*?)```", README.split(marker, 1)[1], re.S)
    assert block, f"no {language} block after {marker!r}"
    return block.group(1)


def test_readme_python_listen_snippet_runs_with_a_prisma_url(db_url, tmp_path):
    """The snippet as printed, with DATABASE_URL as Prisma has it (?schema=app&pgbouncer=...)."""
    script = tmp_path / "listen.py"
    script.write_text(readme_block_after("Listen from\nPython", "python"))
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
