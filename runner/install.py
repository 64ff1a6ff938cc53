"""`stuck-runs migrate`: install or upgrade, then make sure the app's runs table is covered.

Idempotent, safe from many instances at once, and it restores coverage after
the application dropped and re-created its table (prisma migrate reset). The
work itself lives in runner/installer.py, shared with `start`. The whole
command ends within --deadline, whatever the database does.
"""

from __future__ import annotations

import click

from .context import Settings, index_timeout_option, note, run, timeout_options
from .installer import Plan, install
from .registry import column_options


@click.command()
@timeout_options
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest to wait while another instance migrates.",
)
@index_timeout_option
@click.option(
    "--deadline",
    type=click.FloatRange(min=1),
    envvar="STUCK_RUNS_DEADLINE",
    metavar="SECONDS",
    help="The whole command ends within this, even against a frozen server. "
    "Default: the sum of its other bounds. Env: STUCK_RUNS_DEADLINE.",
)
@click.option(
    "--adopt",
    "table",
    metavar="TABLE",
    help="Then make sure the application's runs table TABLE is adopted (with the proposed "
    "mapping unless --column says otherwise); changes nothing when it already is.",
)
@column_options
@click.option(
    "--relocate",
    is_flag=True,
    help="Move an installation made by stuck-runs 0.1 in the application's schema into "
    "--schema first, keeping its audit, settings and registry.",
)
@click.pass_obj
def migrate(
    settings: Settings,
    connect_timeout: float,
    statement_timeout: float,
    lock_timeout: float,
    index_timeout: float,
    deadline: float | None,
    table: str | None,
    columns: dict[str, str | None],
    time_zone: str | None,
    relocate: bool,
) -> None:
    """Install or upgrade stuck-runs in its schema, and optionally adopt the app's runs table.

    Safe to run at every start and from many instances at once: they queue on
    a lock and a second run applies nothing. Needs a session of its own: give
    --direct-url when DATABASE_URL goes through a transaction pooler.

    \b
    Examples:
      stuck-runs migrate
      stuck-runs migrate --adopt qualification_runs
    """
    if columns and not table:
        raise click.UsageError("--column needs --adopt TABLE")
    plan = Plan(
        connect_timeout=connect_timeout,
        statement_timeout=statement_timeout,
        lock_timeout=lock_timeout,
        index_timeout=index_timeout,
        table=table,
        columns=columns,
        time_zone=time_zone,
        relocate=relocate,
    )
    if deadline is None:
        deadline = 4 * (connect_timeout + statement_timeout) + lock_timeout + index_timeout

    def on_apply(migration_id: str) -> None:
        click.echo(f"applied {migration_id}")

    applied, target = run(
        settings,
        lambda target: install(target, settings, plan, on_apply),
        session="migrate",
        deadline=deadline,
    )
    where = f" (schema {target.schema})"
    if applied:
        note(f"{len(applied)} migration(s) applied; the database is up to date{where}")
    else:
        note(f"nothing to apply; the database is up to date{where}")
