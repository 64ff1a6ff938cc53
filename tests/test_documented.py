"""Every knob the runner reads is named where a user looks: its --help and the docs.

The list comes from click's own parameter objects, walking every command, so
an option or environment variable added later is covered without editing
this file. Environment names spelled anywhere in runner/ must be click
envvars too: a variable read behind click's back would escape the walk.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from runner.cli import main

from .docs_text import all_text

ROOT = Path(__file__).resolve().parent.parent
# The README and docs/ (the options are listed in docs/runner.md).
README = all_text()


def commands() -> list[tuple[str, click.Command]]:
    """The group itself and every command it offers, as `stuck-runs --help` lists them."""
    ctx = click.Context(main, info_name="stuck-runs")
    found: list[tuple[str, click.Command]] = [("", main)]
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None, name
        found.append((name, command))
    return found


def knobs() -> list[tuple[str, str, str]]:
    """(command, option or environment variable, kind) for every parameter the runner reads."""
    found = []
    for name, command in commands():
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            long_names = [o for o in param.opts if o.startswith("--")]
            found.extend((name, option, "option") for option in long_names)
            envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
            found.extend((name, env, "env") for env in envvars if env)
    return found


def help_text(name: str, command: click.Command) -> str:
    parent = click.Context(main, info_name="stuck-runs")
    ctx = command.make_context(
        name or "stuck-runs", [], parent=parent if name else None, resilient_parsing=True
    )
    return command.get_help(ctx)


def test_the_walk_finds_what_the_issue_named():
    found = {(c, k) for c, k, _ in knobs()}
    for expected in [
        ("", "DATABASE_URL"),
        ("recover", "STUCK_RUNS_LIMIT"),
        ("recover", "STUCK_RUNS_BATCH_SIZE"),
        ("schedule", "STUCK_RUNS_CRON_DATABASE"),
        ("migrate", "--lock-timeout"),
        ("demo", "--keep"),
    ]:
        assert expected in found


@pytest.mark.parametrize(("command", "knob", "kind"), knobs(), ids=lambda v: v or "group")
def test_every_option_and_variable_is_in_help_and_readme(command, knob, kind):
    shown = dict(commands())[command]
    assert knob in help_text(command, shown), f"`stuck-runs {command} --help` does not name {knob}"
    assert re.search(rf"(?<![\w-]){re.escape(knob)}(?![\w-])", README), (
        f"neither the README nor docs/ names {knob} ({kind} of `stuck-runs {command}`)"
    )


def test_no_environment_variable_is_read_behind_clicks_back():
    """DATABASE_URL-like names in the runner's source are all declared click envvars."""
    declared = {k for _, k, kind in knobs() if kind == "env"}
    spelled = set()
    for path in (ROOT / "runner").rglob("*.py"):
        spelled |= set(
            re.findall(
                r"[\"']((?:STUCK_RUNS_[A-Z_]+)|DATABASE_URL|DIRECT_URL)[\"']", path.read_text()
            )
        )
    assert spelled - declared == set()
