"""`stuck-runs schedule` / `unschedule`: recovery as a pg_cron job inside PostgreSQL.

For apps whose start-up cannot run `stuck-runs recover` (or that run many
instances), pg_cron calls `drain_stuck_runs()` every minute in the database
itself: batches that each commit, within a budget shorter than the minute.
A job scheduled by an earlier release (`SELECT * FROM recover_stuck_runs()`,
one transaction for the whole backlog) is still recognised as this app's, and
`schedule` replaces it with the current statement. pg_cron lives in one
database per server (`cron.database_name`, often
`postgres` on managed services) while the runs live in the app's database, so
the job may be installed from a connection to another database with
`cron.schedule_in_database` (pg_cron 1.4+).

The job's SQL is built on the server with `format('%I')`/`format('%L')` from
values the server has already validated; nothing a user typed is pasted into
SQL text by Python.

It stays light: `recover` pays for importing it (the group registers every
command), so no yoyo and nothing slow at import time.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from .connection import OperationalError, Target, connect
from .context import (
    BadOptionValue,
    Settings,
    interval_option,
    locate,
    note,
    option_values,
    run,
    timeout_options,
)

DEFAULT_NAME = "stuck-runs-recovery"
DEFAULT_EVERY = "* * * * *"
# How many of the job's latest runs `schedule --show` prints.
SHOWN_RUNS = 5
# cron.job.jobname is of type `name`: PostgreSQL would silently cut a longer one.
_NAME_MAX_BYTES = 63
_EVERY_HELP = (
    "expected a 5-field cron expression in UTC (minute hour day-of-month month day-of-week) "
    "such as '*/5 * * * *', or @hourly, @daily, @weekly, @monthly, @yearly"
)
# Five fields (names such as `mon`/`jan` and pg_cron's `$` included), an @keyword,
# or pg_cron 1.5's seconds.
_EVERY_SHAPE = re.compile(r"[A-Za-z0-9*,/$-]+( [A-Za-z0-9*,/$-]+){4}|@[a-z]+|[0-9]+ seconds?")
_IN_DATABASE_FN = "cron.schedule_in_database(text,text,text,text,text,boolean)"


@dataclass(frozen=True)
class AppDatabase:
    """What the job needs to know about the database whose runs it recovers."""

    database: str
    username: str
    installed: bool
    can_execute: bool
    # How every job this app owns starts: `CALL <schema>.drain_stuck_runs(`, or
    # `SELECT * FROM <schema>.recover_stuck_runs(` for a job an earlier release scheduled.
    prefixes: tuple[str, ...]
    # The statement pg_cron will run (from stuck_runs_job_sql), when we may call it.
    command: str | None
    # What prints the GRANTs the role lacks to run the job.
    grant: str


# What the job needs to know about the app's database, in one round trip. The
# job's statement itself comes from stuck_runs_job_sql(), once we know we may call it.
_APP_QUERY = """
SELECT pg_catalog.current_database() AS database,
       CURRENT_USER AS username,
       p.oid IS NOT NULL AS installed,
       p.oid IS NOT NULL AND NOT EXISTS (
           SELECT FROM pg_catalog.pg_proc AS f
           WHERE f.pronamespace = p.pronamespace
             AND NOT pg_catalog.has_function_privilege(f.oid, 'EXECUTE')) AS can_execute,
       pg_catalog.format('CALL %%I.drain_stuck_runs(', %(schema)s::text) AS prefix,
       pg_catalog.format('SELECT * FROM %%I.recover_stuck_runs(', %(schema)s::text) AS old_prefix,
       pg_catalog.format('SELECT * FROM %%I.stuck_runs_grant_sql(%%L)',
                         %(schema)s::text, CURRENT_USER) AS grant
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_proc AS p
  ON p.proname = 'recover_stuck_runs'
 AND p.pronamespace = (SELECT n.oid FROM pg_catalog.pg_namespace AS n
                       WHERE n.nspname = %(schema)s::text)
"""

# What a non-superuser can see too: cron.* settings are superuser-only, but the
# scheduler's connection (and the database it sits in) shows in pg_stat_activity.
_PG_CRON_QUERY = """
WITH in_database AS (
    SELECT p.oid FROM pg_catalog.pg_proc AS p
    JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname = 'cron' AND p.proname = 'schedule_in_database'
    LIMIT 1
)
SELECT pg_catalog.current_database() AS database,
       CURRENT_USER AS username,
       pg_catalog.quote_ident(CURRENT_USER) AS role,
       coalesce(
           (SELECT s.setting FROM pg_catalog.pg_settings AS s
            WHERE s.name = 'cron.database_name'),
           (SELECT a.datname FROM pg_catalog.pg_stat_activity AS a
            WHERE a.backend_type = 'pg_cron launcher' OR a.application_name = 'pg_cron scheduler'
            ORDER BY a.backend_start LIMIT 1)
       ) AS cron_database,
       EXISTS (SELECT FROM pg_catalog.pg_available_extensions AS x
               WHERE x.name = 'pg_cron') AS available,
       (SELECT e.extversion FROM pg_catalog.pg_extension AS e
        WHERE e.extname = 'pg_cron') AS version,
       (SELECT pg_catalog.has_schema_privilege(n.oid, 'USAGE')
        FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'cron') AS cron_usage,
       EXISTS (SELECT FROM in_database) AS has_in_database,
       (SELECT pg_catalog.has_function_privilege(f.oid, 'EXECUTE')
        FROM in_database AS f) AS can_in_database
"""

_JOB_QUERY = """
SELECT j.jobid, j.jobname, j.schedule, j.command, j.database, j.username, j.active
FROM cron.job AS j
WHERE j.jobname = %s AND j.username = CURRENT_USER
"""


def _name_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """pg_cron stores the name as `name`: reject what PostgreSQL would truncate."""
    if not value.strip():
        raise click.BadParameter("must not be empty")
    if len(value.encode()) > _NAME_MAX_BYTES:
        raise click.BadParameter(f"at most {_NAME_MAX_BYTES} bytes (pg_cron keeps it as a `name`)")
    return value


def _every_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Check the expression's shape; pg_cron checks its values when it schedules.

    pg_cron 1.4 stops parsing after the fifth field, so it would keep whatever
    follows (`* * * * * rm -rf`) in cron.job as if it meant something.
    """
    every = " ".join(value.split())
    if not _EVERY_SHAPE.fullmatch(every):
        raise click.BadParameter(f"{value!r} is not a cron expression: {_EVERY_HELP}")
    return every


def _job_options(func: Any) -> Any:
    func = click.option(
        "--cron-database",
        envvar="STUCK_RUNS_CRON_DATABASE",
        metavar="NAME",
        help="The database pg_cron lives in (cron.database_name, often `postgres`), "
        "when it is not the app's: same URL, other database. Env: STUCK_RUNS_CRON_DATABASE.",
    )(func)
    return click.option(
        "--name",
        default=DEFAULT_NAME,
        show_default=True,
        callback=_name_option,
        help="The pg_cron job's name; scheduling the same name again replaces the job.",
    )(func)


def cron_target(target: Target, cron_database: str | None) -> Target:
    """The app's URL pointed at another database: pg_cron's home."""
    if not cron_database:
        return target
    return dataclasses.replace(
        target, conninfo=make_conninfo(target.conninfo, dbname=cron_database)
    )


def _describe_app(conn: psycopg.Connection, target: Target, older_than: str | None) -> AppDatabase:
    row = conn.execute(_APP_QUERY, {"schema": target.schema}).fetchone()
    assert row is not None  # the query always returns one row
    command = None
    if row["installed"] and row["can_execute"]:
        with option_values("--older-than"):
            command = conn.execute(
                "SELECT stuck_runs_job_sql(%s) AS command", (older_than,)
            ).fetchone()["command"]
    return AppDatabase(
        **{k: row[k] for k in ("database", "username", "installed", "can_execute")},
        prefixes=(row["prefix"], row["old_prefix"]),
        command=command,
        grant=row["grant"],
    )


def _require_recovery(app: AppDatabase) -> None:
    """A job that fails every minute helps no one: check what pg_cron will need."""
    if not app.installed:
        raise OperationalError(
            f"stuck-runs is not installed in database {app.database!r} "
            "(no recover_stuck_runs on the search path); run `stuck-runs migrate` first"
        )
    if not app.can_execute:
        raise OperationalError(
            f"role {app.username!r} may not run stuck-runs' functions, and pg_cron would run "
            f"the job as {app.username!r}: an owner of stuck-runs prints every GRANT it needs "
            f"with {app.grant}"
        )


def _check_pg_cron(conn: psycopg.Connection, *, in_database: bool) -> None:
    """Say in one line what the server lacks for pg_cron, or return."""
    row = conn.execute(_PG_CRON_QUERY).fetchone()
    assert row is not None
    here, cron_db = row["database"], row["cron_database"]
    user = row["username"]
    role = row["role"]
    major = conn.info.server_version // 10000
    setup = (
        f"add shared_preload_libraries = 'pg_cron' and cron.database_name = '{here}' to "
        f"postgresql.conf, restart PostgreSQL, then run CREATE EXTENSION pg_cron in "
        f"database {here!r}"
    )
    if row["version"] is None:
        if cron_db is None and not row["available"]:
            raise OperationalError(
                "pg_cron is not installed on this server: install it (Debian/Ubuntu: apt install "
                f"postgresql-{major}-cron; managed services: enable the pg_cron extension), {setup}"
            )
        if cron_db is None:
            raise OperationalError(f"pg_cron is installed but not loaded: {setup}")
        if cron_db != here:
            raise OperationalError(
                f"pg_cron lives in database {cron_db!r} (cron.database_name), not {here!r}: "
                f"pass --cron-database {shlex.quote(cron_db)}"
            )
        raise OperationalError(
            f"pg_cron is loaded but its extension is not created: run CREATE EXTENSION pg_cron "
            f"in database {here!r} (as a superuser)"
        )
    if cron_db is None:
        raise OperationalError(
            f"the pg_cron extension exists in {here!r} but its scheduler is not running, so jobs "
            f"would never run: add shared_preload_libraries = 'pg_cron' and cron.database_name = "
            f"'{here}' to postgresql.conf and restart PostgreSQL"
        )
    if not row["cron_usage"]:
        raise OperationalError(
            f"role {user!r} may not use pg_cron: a superuser must run "
            f"GRANT USAGE ON SCHEMA cron TO {role} in database {here!r}"
        )
    if in_database and not row["has_in_database"]:
        raise OperationalError(
            f"pg_cron {row['version']} cannot schedule jobs in another database "
            "(cron.schedule_in_database came in 1.4): upgrade pg_cron and run "
            "ALTER EXTENSION pg_cron UPDATE"
        )
    if in_database and not row["can_in_database"]:
        raise OperationalError(
            f"role {user!r} may not schedule jobs in other databases: a superuser must run "
            f"GRANT EXECUTE ON FUNCTION {_IN_DATABASE_FN} TO {role}"
        )


def _owned_job(
    conn: psycopg.Connection, name: str, app: AppDatabase, *, verb: str
) -> dict[str, Any] | None:
    """The role's job of this name, refusing one that recovers another database or schema.

    Names are unique per role across the whole server: with one cron database
    shared by several apps, a default name must not silently move another app's job.
    """
    job = conn.execute(_JOB_QUERY, (name,)).fetchone()
    if job and (job["database"] != app.database or not job["command"].startswith(app.prefixes)):
        raise OperationalError(
            f"pg_cron job {name!r} of role {app.username!r} belongs to another app "
            f"(database {job['database']!r}: {job['command']}); nothing was {verb}: "
            f"choose another --name, or remove it with SELECT cron.unschedule({_literal(name)})"
        )
    return job


def _literal(text: str) -> str:
    """An SQL string literal, for SQL that messages suggest (never executed here)."""
    return "'" + text.replace("'", "''") + "'"


def _open(target: Target, connect_timeout: float, statement_timeout: float) -> psycopg.Connection:
    """A session of our own (pg_cron's functions are called across statements)."""
    conn = connect(
        target, connect_timeout=connect_timeout, statement_timeout=statement_timeout, session=True
    )
    conn.autocommit = False
    conn.row_factory = dict_row  # type: ignore[assignment]
    return conn


def _app_target(
    target: Target, settings: Settings, connect_timeout: float, statement_timeout: float
) -> Target:
    """Where stuck-runs lives in the app's database (its schema, or 0.1's)."""
    with _open(target, connect_timeout, statement_timeout) as conn:
        found = locate(conn, target, settings)
        conn.rollback()
    return found


@click.command()
@click.option(
    "--every",
    default=DEFAULT_EVERY,
    show_default=True,
    callback=_every_option,
    metavar="CRON",
    help="When to run, as a cron expression in UTC (pg_cron 1.4: minute granularity).",
)
@click.option(
    "--older-than",
    envvar="STUCK_RUNS_OLDER_THAN",
    metavar="INTERVAL",
    callback=interval_option,
    help="Threshold the job passes to drain_stuck_runs, e.g. '15 minutes'. "
    "Default: none, so the job follows the database's threshold. Env: STUCK_RUNS_OLDER_THAN.",
)
@_job_options
@click.option(
    "--show",
    is_flag=True,
    help="Change nothing: say whether the job is installed and how its last runs went.",
)
@timeout_options
@click.pass_context
def schedule(
    ctx: click.Context,
    every: str,
    older_than: str | None,
    name: str,
    cron_database: str | None,
    show: bool,
    connect_timeout: float,
    statement_timeout: float,
) -> None:
    """Install or replace the pg_cron job that recovers stuck runs inside PostgreSQL.

    The job runs `CALL <schema>.drain_stuck_runs(...)` as the connecting role:
    batches that each commit, for at most 45 s, ending in an error (a failed
    run in cron.job_run_details) when a table could not be swept. A job that an
    earlier release installed is updated to this statement. Scheduling the same
    --name again replaces the job; it never duplicates.
    When pg_cron lives in another database than the runs (cron.database_name,
    e.g. `postgres`), pass --cron-database: the job is installed there with
    cron.schedule_in_database and runs in the app's database.

    \b
    Examples:
      stuck-runs schedule
      stuck-runs schedule --every '*/5 * * * *' --older-than '15 minutes'
      stuck-runs schedule --cron-database postgres
      stuck-runs schedule --show
    """
    settings: Settings = ctx.obj
    if show:
        given = [
            f"--{p.replace('_', '-')}"
            for p in ("every", "older_than")
            if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(f"--show changes nothing: drop {' and '.join(given)}")
        _show(settings, name, cron_database, connect_timeout, statement_timeout)
        return

    def work(target: Target) -> tuple[str, dict[str, Any], AppDatabase, bool]:
        target = _app_target(target, settings, connect_timeout, statement_timeout)
        with _open(target, connect_timeout, statement_timeout) as app_conn:
            app = _describe_app(app_conn, target, older_than)
            _require_recovery(app)
            if not cron_database or cron_database == app.database:
                return _install(app_conn, name, every, app, in_database=False)
            with _open(cron_target(target, cron_database), connect_timeout, statement_timeout) as c:
                return _install(c, name, every, app, in_database=True)

    cron_db, job, app, replaced = run(
        settings, work, session="schedule", deadline=3 * (connect_timeout + statement_timeout)
    )
    note(
        f"{'replaced' if replaced else 'installed'} pg_cron job {name!r} (jobid {job['jobid']}) "
        f"in database {cron_db!r}: {job['schedule']!r} (UTC) in database {app.database!r} "
        f"as {app.username!r}: {job['command']}"
    )
    show_cmd = ["stuck-runs", "schedule", "--show"]
    show_cmd += ["--name", name] if name != DEFAULT_NAME else []
    show_cmd += ["--cron-database", cron_db] if cron_db != app.database else []
    note(f"pg_cron runs it at the next matching minute; see how it went: {shlex.join(show_cmd)}")


def _install(
    conn: psycopg.Connection, name: str, every: str, app: AppDatabase, *, in_database: bool
) -> tuple[str, dict[str, Any], AppDatabase, bool]:
    """Schedule in one transaction, then read the job back: rolled back unless it is as asked.

    pg_cron 1.4's same-name replacement updates the schedule and command but
    keeps the job's old database, hence the ownership check before and the
    read-back after.
    """
    _check_pg_cron(conn, in_database=in_database)
    existing = _owned_job(conn, name, app, verb="scheduled")
    try:
        if in_database:
            conn.execute(
                "SELECT cron.schedule_in_database(job_name => %s::text, schedule => %s::text,"
                " command => %s::text, database => %s::text)",
                (name, every, app.command, app.database),
            )
        else:
            conn.execute(
                "SELECT cron.schedule(job_name => %s::text, schedule => %s::text,"
                " command => %s::text)",
                (name, every, app.command),
            )
    except psycopg.Error as exc:
        if exc.sqlstate == "22023":
            message = exc.diag.message_primary or str(exc)
            raise BadOptionValue("--every", f"{message}; {_EVERY_HELP}") from None
        raise
    jobs = conn.execute(_JOB_QUERY, (name,)).fetchall()
    if [(j["database"], j["command"], j["schedule"]) for j in jobs] != [
        (app.database, app.command, every)
    ]:
        raise OperationalError(
            f"pg_cron did not record job {name!r} as asked (found {len(jobs)} job(s)); "
            "nothing was changed"
        )
    conn.commit()
    return conn.info.dbname, jobs[0], app, existing is not None


def _show(
    settings: Settings,
    name: str,
    cron_database: str | None,
    connect_timeout: float,
    statement_timeout: float,
) -> None:
    """Print the job and its latest runs from cron.job_run_details; change nothing."""

    def work(target: Target) -> list[str]:
        with _open(cron_target(target, cron_database), connect_timeout, statement_timeout) as conn:
            _check_pg_cron(conn, in_database=False)
            job = conn.execute(_JOB_QUERY, (name,)).fetchone()
            if job is None:
                lines = [
                    f"pg_cron job {name!r} is not installed "
                    f"(role {conn.info.user!r}, cron database {conn.info.dbname!r})"
                ]
                others = conn.execute(
                    "SELECT j.jobname, j.database FROM cron.job AS j"
                    " WHERE j.username = CURRENT_USER"
                    " AND (j.command LIKE %s OR j.command LIKE %s) ORDER BY j.jobid",
                    ("%drain_stuck_runs(%", "%recover_stuck_runs(%"),
                ).fetchall()
                lines += [
                    f"another recovery job of this role: {o['jobname']!r} "
                    f"(database {o['database']!r})"
                    for o in others
                ]
                conn.rollback()
                return lines
            runs = conn.execute(
                "SELECT d.status, d.return_message, d.start_time, d.end_time"
                " FROM cron.job_run_details AS d WHERE d.jobid = %s"
                " ORDER BY d.runid DESC LIMIT %s",
                (job["jobid"], SHOWN_RUNS),
            ).fetchall()
            conn.rollback()
        lines = [
            f"pg_cron job {job['jobname']!r} (jobid {job['jobid']}) is installed"
            f"{'' if job['active'] else ' but INACTIVE'}: {job['schedule']!r} (UTC) "
            f"in database {job['database']!r} as {job['username']!r}",
            f"  command: {job['command']}",
        ]
        if "drain_stuck_runs(" not in job["command"]:
            lines.append(
                "  this is an earlier release's statement: one transaction for the whole "
                "backlog, whose failure only warns; run `stuck-runs schedule` again to update it"
            )
        if not runs:
            lines.append(
                "  no runs recorded yet (the first comes at the next matching minute; "
                "none are recorded while cron.log_run is off)"
            )
        else:
            lines.append(f"  last {len(runs)} run(s), newest first:")
            lines += [_run_line(r) for r in runs]
        return lines

    for line in run(
        settings, work, session="schedule", deadline=connect_timeout + statement_timeout
    ):
        click.echo(line)


def _run_line(run: dict[str, Any]) -> str:
    start: datetime | None = run["start_time"]
    end: datetime | None = run["end_time"]
    when = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if start else "not started"
    took = f"{(end - start).total_seconds():.3f}s" if start and end else "-"
    message = (run["return_message"] or "").strip().splitlines()
    return f"  - {when}  {run['status']}  {took}  {message[0] if message else ''}".rstrip()


@click.command()
@_job_options
@timeout_options
@click.pass_obj
def unschedule(
    settings: Settings,
    name: str,
    cron_database: str | None,
    connect_timeout: float,
    statement_timeout: float,
) -> None:
    """Remove the pg_cron job installed by `stuck-runs schedule`.

    Removing a job that is not there is not an error (exit 0). A job of the same
    name that recovers another database or schema is left alone (exit 1).

    \b
    Examples:
      stuck-runs unschedule
      stuck-runs unschedule --cron-database postgres
    """

    def work(target: Target) -> tuple[str, AppDatabase, dict[str, Any] | None]:
        target = _app_target(target, settings, connect_timeout, statement_timeout)
        with _open(target, connect_timeout, statement_timeout) as app_conn:
            app = _describe_app(app_conn, target, None)
            if not cron_database or cron_database == app.database:
                return _remove(app_conn, name, app)
            with _open(cron_target(target, cron_database), connect_timeout, statement_timeout) as c:
                return _remove(c, name, app)

    cron_db, app, job = run(
        settings, work, session="unschedule", deadline=3 * (connect_timeout + statement_timeout)
    )
    if job is None:
        note(
            f"no pg_cron job {name!r} of role {app.username!r} in database {cron_db!r}; "
            "nothing to remove"
        )
    else:
        note(f"removed pg_cron job {name!r} (jobid {job['jobid']}): {job['command']}")


def _remove(
    conn: psycopg.Connection, name: str, app: AppDatabase
) -> tuple[str, AppDatabase, dict[str, Any] | None]:
    _check_pg_cron(conn, in_database=False)
    job = _owned_job(conn, name, app, verb="removed")
    if job is not None:
        conn.execute("SELECT cron.unschedule(job_id => %s::bigint)", (job["jobid"],))
    conn.commit()
    return conn.info.dbname, app, job
