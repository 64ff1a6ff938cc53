"""The README must stay true: its demo command works and its command lines parse."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from runner.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
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
