"""`stuck-runs export --prisma DIR`: stuck-runs' migrations as Prisma migrations.

A Node app whose migrations are Prisma's installs and upgrades stuck-runs with
`prisma migrate deploy`, and needs no Python at run time. This module only
writes files: one `<timestamp>_stuck_runs_<release>/migration.sql` per release
not yet exported, and with `--adopt TABLE` one migration that adopts the
application's table and builds its sweep index. No database is needed.

Each file gives the migrations what `stuck-runs migrate` gives them (see
runner/migrations.py): the stuck-runs schema made when missing, a search_path
of that schema only, the runner's advisory lock, yoyo's bookkeeping, which it
reads and writes as yoyo does, so that a migration `stuck-runs migrate`
applied is skipped here and one applied here is skipped by it. Prisma sends a
migration to the server whole, as one transaction: the settings are
transaction-local and put back at the end of the file, so the app's next
migration in the same deploy sees the session as it was. The migrations'
text is carried byte for byte inside each file, in a dollar-quoted string.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from .context import Settings
from .migrations import migrations_dir
from .registry import column_options
from .releases import __version__, by_release, migration_ids

# The first line of every file this writes names what it holds: how a later
# export knows what is there already.
MARKER = "-- stuck-runs-export: "
_STAMP = re.compile(r"^(\d{14})_")
_TIME = "%Y%m%d%H%M%S"
# yoyo's directive, in a migration's leading comments, to run it outside a transaction.
_TRANSACTIONAL_FALSE = re.compile(r"^\s*--\s*transactional\s*:\s*false\s*$", re.M | re.I)


@dataclass(frozen=True)
class Exported:
    """A migration directory an earlier export wrote."""

    name: str
    schema: str
    migrations: tuple[str, ...]
    adopt: str | None  # the header of an adoption's migration, else None


def _dollar(text: str, tag: str = "stuck_runs") -> str:
    """`text` as a dollar-quoted literal: carried as it is, never spliced into SQL.

    Dollar quotes mean the same under every standard_conforming_strings. Every
    tag these files use begins `$stuck_runs`, so a text without that can close
    none of them, the literal's own or the DO block's around it.
    """
    if "$stuck_runs" in text:
        raise click.UsageError(
            f"{text[:60]!r}... holds '$stuck_runs', which the export cannot quote"
        )
    return f"${tag}${text}${tag}$"


def exported(directory: Path) -> list[Exported]:
    """The stuck-runs migrations already in a Prisma migrations directory, in order."""
    found = []
    for script in sorted(directory.glob("*/migration.sql")):
        with script.open(encoding="utf-8") as handle:
            first = handle.readline().rstrip("\n")
        if not first.startswith(MARKER):
            continue
        try:
            fields = json.loads(first.removeprefix(MARKER))
        except ValueError:
            raise click.UsageError(f"{script}: its first line is not what export wrote") from None
        found.append(
            Exported(
                name=script.parent.name,
                schema=fields.get("schema", "stuck_runs"),
                migrations=tuple(fields.get("migrations", ())),
                adopt=first if "adopt" in fields else None,
            )
        )
    return found


def _next_stamps(directory: Path, count: int) -> list[str]:
    """`count` timestamps after every migration in the directory, and not before now.

    Prisma applies migrations in the order of their names: new ones go last, so
    that an upgrade never lands before migrations a database already has (and
    the adoption after the migration that creates the table).
    """
    start = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    for entry in directory.iterdir() if directory.is_dir() else ():
        match = _STAMP.match(entry.name)
        if match:
            start = max(start, datetime.strptime(match.group(1), _TIME) + timedelta(seconds=1))
    return [(start + timedelta(seconds=i)).strftime(_TIME) for i in range(count)]


# Before anything else: what the app's session holds, to be put back at the end.
_PROLOGUE = """\
-- What the session holds now, put back at the end of this file (the app's later
-- migrations in the same deploy see it unchanged), and the application's schema
-- (Prisma's ?schema=, first on its search_path).
SELECT pg_catalog.set_config('stuck_runs.export_saved', pg_catalog.json_build_object(
           'search_path', pg_catalog.current_setting('search_path'),
           'DateStyle', pg_catalog.current_setting('DateStyle'),
           'IntervalStyle', pg_catalog.current_setting('IntervalStyle'),
           'TimeZone', pg_catalog.current_setting('TimeZone'))::pg_catalog.text, true),
       pg_catalog.set_config('stuck_runs.export_app_schema',
           COALESCE(pg_catalog.current_schema()::pg_catalog.text, 'public'), true);
-- What `stuck-runs migrate` gives the migrations: stuck-runs' schema only on the path
-- (unqualified CREATEs land there), and the settings the runner pins. Transaction-local.
SELECT pg_catalog.set_config('search_path',
           pg_catalog.concat(pg_catalog.quote_ident({schema}), ', pg_temp'), true),
       pg_catalog.set_config('DateStyle', 'ISO, MDY', true),
       pg_catalog.set_config('IntervalStyle', 'postgres', true),
       pg_catalog.set_config('TimeZone', 'UTC', true);
"""

_EPILOGUE = """\
-- The session's settings as they were before this file.
SELECT pg_catalog.set_config(s.key, s.value, true)
FROM pg_catalog.json_each_text(
    pg_catalog.current_setting('stuck_runs.export_saved')::pg_catalog.json) AS s;
"""

# Refusals and bookkeeping, before any migration: see runner/migrations.py.
_PREPARE = """\
DO $stuck_runs_prepare$
DECLARE
    target  text := {schema};
    app     text := pg_catalog.current_setting('stuck_runs.export_app_schema');
    writers text;
BEGIN
    -- Settings that ended with their statement would leave the migrations in
    -- the app's schema: this file must run as one transaction, as Prisma runs it.
    IF pg_catalog.current_setting('stuck_runs.export_saved', true) IS NULL
       OR pg_catalog.current_setting('stuck_runs.export_saved', true) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'stuck-runs: this migration must run as one transaction (as prisma migrate deploy runs it)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Instances running `stuck-runs migrate` at the same time queue on this key.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(
        pg_catalog.concat('stuck-runs migrate ', target)));
    -- stuck-runs 0.1 installed itself in the app's schema: the runner moves it.
    IF app OPERATOR(pg_catalog.<>) target
       AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class AS c
            JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
            WHERE n.nspname OPERATOR(pg_catalog.=) app AND c.relkind IN ('r', 'p')
              AND c.relname IN ('_yoyo_migration', 'stuck_runs_settings')) OPERATOR(pg_catalog.=) 2
       AND pg_catalog.to_regclass(pg_catalog.format('%I._yoyo_migration', target)) IS NULL THEN
        RAISE EXCEPTION 'stuck-runs: stuck-runs 0.1 is installed in schema %, the application''s', app
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Move it once with: stuck-runs migrate --relocate --schema %s; then deploy again.', target);
    END IF;
    IF pg_catalog.to_regclass(pg_catalog.format('%I._yoyo_migration', target)) IS NULL THEN
        -- A new install: nobody else may create objects where stuck-runs' functions search.
        SELECT pg_catalog.string_agg(DISTINCT COALESCE(r.rolname::pg_catalog.text, 'PUBLIC'), ', ')
        INTO writers
        FROM pg_catalog.pg_namespace AS n
        CROSS JOIN LATERAL pg_catalog.aclexplode(
            COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) AS a
        LEFT JOIN pg_catalog.pg_roles AS r
          ON r.oid OPERATOR(pg_catalog.=) CASE
                 WHEN a.grantee OPERATOR(pg_catalog.=) 'pg_database_owner'::pg_catalog.regrole
                 THEN (SELECT d.datdba FROM pg_catalog.pg_database AS d
                       WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                 ELSE a.grantee END
        WHERE n.nspname OPERATOR(pg_catalog.=) target
          AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
          AND (a.grantee OPERATOR(pg_catalog.=) 0
               OR (r.oid OPERATOR(pg_catalog.<>) CURRENT_USER::pg_catalog.regrole AND NOT r.rolsuper));
        IF writers IS NOT NULL THEN
            RAISE EXCEPTION 'stuck-runs: roles other than the installing one may create objects in schema % (%), which stuck-runs'' functions search', target, writers
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Revoke their CREATE on it, or export into a schema of its own (the default, stuck_runs).';
        END IF;
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace AS n WHERE n.nspname OPERATOR(pg_catalog.=) target) THEN
            EXECUTE pg_catalog.format('CREATE SCHEMA %I', target);
        END IF;
        -- yoyo's tables, as yoyo 9 creates them (internal schema version 2).
        EXECUTE pg_catalog.format('CREATE TABLE %I._yoyo_migration (migration_hash varchar(64) NOT NULL PRIMARY KEY, migration_id varchar(255), applied_at_utc timestamp)', target);
        EXECUTE pg_catalog.format('CREATE TABLE IF NOT EXISTS %I._yoyo_log (id varchar(36) NOT NULL PRIMARY KEY, migration_hash varchar(64), migration_id varchar(255), operation varchar(10), username varchar(255), hostname varchar(255), comment varchar(255), created_at_utc timestamp)', target);
        EXECUTE pg_catalog.format('CREATE TABLE IF NOT EXISTS %I._yoyo_version (version integer NOT NULL PRIMARY KEY, installed_at_utc timestamp)', target);
        EXECUTE pg_catalog.format('INSERT INTO %I._yoyo_version VALUES (2, pg_catalog.timezone(''UTC'', pg_catalog.clock_timestamp())) ON CONFLICT DO NOTHING', target);
        EXECUTE pg_catalog.format('CREATE TABLE IF NOT EXISTS %I.yoyo_lock (locked integer NOT NULL DEFAULT 1 PRIMARY KEY, ctime timestamp, pid integer NOT NULL)', target);
    END IF;
END
$stuck_runs_prepare$;
"""

# One migration: skipped when yoyo's table has it (`stuck-runs migrate` applied
# it, or an earlier file), else run and recorded as yoyo records it.
_STEP = """\
-- {id} (migrations/{id}.sql, unchanged)
DO $stuck_runs_step$
BEGIN
    IF EXISTS (SELECT FROM _yoyo_migration AS m
               WHERE m.migration_hash OPERATOR(pg_catalog.=) {hash}) THEN
        RETURN;
    END IF;
    EXECUTE {body};
    INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc)
    VALUES ({hash}, {id_literal}, pg_catalog.timezone('UTC', pg_catalog.clock_timestamp()));
    INSERT INTO _yoyo_log (id, migration_hash, migration_id, operation, username, hostname,
                           comment, created_at_utc)
    VALUES (pg_catalog.gen_random_uuid()::pg_catalog.text, {hash}, {id_literal}, 'apply',
            CURRENT_USER, 'prisma migrate', {comment},
            pg_catalog.timezone('UTC', pg_catalog.clock_timestamp()));
END
$stuck_runs_step$;
"""

# What `stuck-runs migrate` does after the migrations at every run.
_TAIL = """\
-- What `stuck-runs migrate` does after applying migrations.
DO $stuck_runs_tail$
BEGIN
    IF pg_catalog.to_regprocedure('_stuck_runs_share_label()') IS NOT NULL THEN
        PERFORM _stuck_runs_share_label();
    END IF;
    IF pg_catalog.to_regprocedure('_stuck_runs_forget_superseded()') IS NOT NULL THEN
        PERFORM _stuck_runs_forget_superseded();
    END IF;
END
$stuck_runs_tail$;
"""

# `stuck-runs migrate --adopt TABLE` in SQL: the mapping it was told, else what
# the registry holds for the table, else the proposal; adoption only when that
# changes the entry; then the sweep index, without CONCURRENTLY.
_ADOPT = """\
DO $stuck_runs_adopt$
DECLARE
    wanted  text := {table};
    given   jsonb := {given}::pg_catalog.jsonb;
    app     text := pg_catalog.current_setting('stuck_runs.export_app_schema');
    target  regclass;
    entry   jsonb;
    current boolean := false;
    args    jsonb := '{{}}';
    r       record;
    ddl     text;
    missing text;
BEGIN
    IF pg_catalog.current_setting('stuck_runs.export_saved', true) IS NULL
       OR pg_catalog.current_setting('stuck_runs.export_saved', true) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'stuck-runs: this migration must run as one transaction (as prisma migrate deploy runs it)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.to_regprocedure('_stuck_runs_resolve_table(text, text)') IS NULL THEN
        RAISE EXCEPTION 'stuck-runs is not installed in schema %: the migrations `stuck-runs export --prisma` writes for its releases must come before this one', {schema}
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    target := _stuck_runs_resolve_table(wanted, app);
    IF target IS NULL THEN
        RAISE EXCEPTION 'stuck-runs: there is no table % in schema % to adopt', wanted, app
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The migration that creates it must come before this one.';
    END IF;
    SELECT k INTO missing FROM pg_catalog.jsonb_object_keys(given OPERATOR(pg_catalog.->) 'columns') AS k
    WHERE NOT EXISTS (SELECT FROM stuck_runs_roles AS x WHERE x.role OPERATOR(pg_catalog.=) k) LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'stuck-runs: unknown role % in --column: ROLE is one of %', missing,
            (SELECT pg_catalog.string_agg(x.role, ', ' ORDER BY x.position) FROM stuck_runs_roles AS x)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The table's entry, else the one a dropped table of its name left (prisma migrate reset).
    SELECT pg_catalog.to_jsonb(t),
           t.table_name OPERATOR(pg_catalog.=) target
           AND (t.schema_name, t.relation_name) IS NOT DISTINCT FROM (n.nspname::text, c.relname::text)
           AND EXISTS (SELECT FROM _stuck_runs_covered AS v WHERE v.table_name OPERATOR(pg_catalog.=) t.table_name)
    INTO entry, current
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    JOIN stuck_runs_tables AS t
      ON t.table_name OPERATOR(pg_catalog.=) c.oid
      OR (t.schema_name, t.relation_name) = (n.nspname::text, c.relname::text)
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_class AS o WHERE o.oid OPERATOR(pg_catalog.=) t.table_name)
    WHERE c.oid OPERATOR(pg_catalog.=) target
    ORDER BY t.table_name OPERATOR(pg_catalog.=) c.oid DESC
    LIMIT 1;
    FOR r IN
        SELECT x.role, x.parameter, x.required,
               (SELECT p.column_name FROM propose_runs_table_mapping(target) AS p
                WHERE p.role OPERATOR(pg_catalog.=) x.parameter) AS proposed
        FROM stuck_runs_roles AS x ORDER BY x.position
    LOOP
        IF (given OPERATOR(pg_catalog.->) 'columns') OPERATOR(pg_catalog.?) r.role THEN
            args := args OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(r.parameter,
                        given OPERATOR(pg_catalog.->) 'columns' OPERATOR(pg_catalog.->) r.role);
        ELSIF entry IS NOT NULL AND (entry OPERATOR(pg_catalog.->>) r.parameter IS NULL
              OR _stuck_runs_column_type(target, entry OPERATOR(pg_catalog.->>) r.parameter) IS NOT NULL) THEN
            args := args OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(r.parameter,
                        entry OPERATOR(pg_catalog.->) r.parameter);
        ELSE
            args := args OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(r.parameter, r.proposed);
        END IF;
        IF r.required AND args OPERATOR(pg_catalog.->>) r.parameter IS NULL THEN
            RAISE EXCEPTION 'stuck-runs: no column of % looks like its %', target, r.role
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = pg_catalog.format('Export the adoption again with --column %s=COLUMN.', r.role);
        END IF;
    END LOOP;
    -- adopt_runs_table()'s other parameters: what the entry holds, then what was given.
    IF entry IS NOT NULL THEN
        FOR r IN
            SELECT DISTINCT a.name FROM pg_catalog.pg_proc AS p,
                 LATERAL pg_catalog.unnest(p.proargnames) AS a(name)
            WHERE p.oid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT o.oid FROM pg_catalog.pg_proc AS o
                  WHERE o.proname OPERATOR(pg_catalog.=) 'adopt_runs_table'
                    AND o.pronamespace OPERATOR(pg_catalog.=) pg_catalog.current_schema()::pg_catalog.regnamespace))
              AND a.name OPERATOR(pg_catalog.<>) 'table_name'
        LOOP
            IF NOT args OPERATOR(pg_catalog.?) r.name AND entry OPERATOR(pg_catalog.?) r.name THEN
                args := args OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(r.name,
                            entry OPERATOR(pg_catalog.->) r.name);
            END IF;
        END LOOP;
    END IF;
    args := args OPERATOR(pg_catalog.||) (given OPERATOR(pg_catalog.-) 'columns');
    IF NOT (current AND NOT EXISTS (
            SELECT FROM pg_catalog.jsonb_each(args) AS a
            WHERE (entry OPERATOR(pg_catalog.->) a.key) IS DISTINCT FROM a.value)) THEN
        EXECUTE pg_catalog.format(
            'SELECT adopt_runs_table(table_name => $1, %s)'
            ' FROM pg_catalog.jsonb_populate_record(NULL::stuck_runs_tables, $2) AS e',
            (SELECT pg_catalog.string_agg(pg_catalog.format('%I => e.%I', a.key, a.key), ', ')
             FROM pg_catalog.jsonb_object_keys(args) AS a(key)))
        USING target, args;
    END IF;
    -- Its sweep index. Not CONCURRENTLY: Prisma runs this file as one transaction,
    -- where CONCURRENTLY is refused; the build holds off writes to the table until
    -- it ends (see docs: build it beforehand on a large table).
    FOR ddl IN SELECT d FROM stuck_runs_index_ddl(target) AS d LOOP
        EXECUTE pg_catalog.regexp_replace(ddl, '^(CREATE|DROP) INDEX CONCURRENTLY ', $stuck_runs_r$\\1 INDEX $stuck_runs_r$);
    END LOOP;
END
$stuck_runs_adopt$;
"""


def release_script(schema: str, release: str, ids: list[str], source: Path) -> str:
    """The migration.sql that applies these migrations of one release, as `migrate` would."""
    fields = {"release": release, "schema": schema, "migrations": ids}
    header = (
        f"{MARKER}{json.dumps(fields)}\n"
        f"-- stuck-runs {release}: {', '.join(ids)}, written by `stuck-runs export --prisma` "
        f"(stuck-runs {__version__}).\n"
        "-- Do not edit: `stuck-runs migrate` and later exports recognise what it applied by\n"
        "-- yoyo's _yoyo_migration table, which it writes; a migration found there is skipped.\n\n"
    )
    steps = []
    for migration_id in ids:
        body = (source / f"{migration_id}.sql").read_text(encoding="utf-8")
        if _TRANSACTIONAL_FALSE.search(body.split("\n\n", 1)[0]):
            # yoyo runs it outside a transaction; a Prisma migration is one.
            raise click.UsageError(
                f"migration {migration_id} must run outside a transaction "
                "(-- transactional: false), which a Prisma migration cannot"
            )
        steps.append(
            _STEP.format(
                id=migration_id,
                id_literal=f"'{migration_id}'",
                hash=f"'{hashlib.sha256(migration_id.encode()).hexdigest()}'",
                body=_dollar(body, "stuck_runs_migration"),
                comment=f"'stuck-runs export --prisma ({__version__})'",
            )
        )
    quoted = _dollar(schema)
    return (
        header
        + _PROLOGUE.format(schema=quoted)
        + "\n"
        + _PREPARE.format(schema=quoted)
        + "\n"
        + "\n".join(steps)
        + "\n"
        + _TAIL
        + "\n"
        + _EPILOGUE
    )


def adopt_script(schema: str, table: str, given: dict[str, object]) -> str:
    """The migration.sql that adopts `table` (in the app's schema) and builds its sweep index."""
    given_json = json.dumps(given, sort_keys=True, ensure_ascii=False)
    fields = {"adopt": table, "schema": schema, "given": given}
    header = (
        f"{MARKER}{json.dumps(fields, sort_keys=True)}\n"
        f"-- stuck-runs: adopt {table}, written by `stuck-runs export --prisma --adopt` "
        f"(stuck-runs {__version__}).\n"
        "-- As `stuck-runs migrate --adopt`: the columns given here, else what stuck-runs'\n"
        "-- registry holds for the table, else the proposal by name; then its sweep index.\n\n"
    )
    quoted = _dollar(schema)
    return (
        header
        + _PROLOGUE.format(schema=quoted)
        + "\n"
        + _ADOPT.format(table=_dollar(table), given=_dollar(given_json), schema=quoted)
        + "\n"
        + _EPILOGUE
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "table"


def export_prisma(
    directory: Path,
    schema: str,
    *,
    source: Path | None = None,
    adopt: str | None = None,
    given: dict[str, object] | None = None,
) -> list[str]:
    """Write what `directory` lacks; return the names of the migrations written.

    Idempotent: the migrations an earlier export wrote (read from their first
    line) are not written again, and an adoption with the same options neither.
    Migrations of a release exported in part (a development build) go into a
    migration of their own, named after the first of them.
    """
    source = source or migrations_dir()
    earlier = exported(directory)
    schemas = {item.schema for item in earlier}
    if schemas and schemas != {schema}:
        raise click.UsageError(
            f"{directory} holds stuck-runs migrations for schema {sorted(schemas)[0]!r}: "
            f"export with --schema {sorted(schemas)[0]}"
        )
    done = {migration for item in earlier for migration in item.migrations}
    names = {item.name.split("_", 1)[-1] for item in earlier}
    pending = by_release(m for m in migration_ids(source) if m not in done)
    scripts: list[tuple[str, str]] = []
    for release, ids in pending:
        name = "stuck_runs_" + _slug(release)
        if name in names:
            name += "_" + ids[0].split("_", 1)[0]
        scripts.append((name, release_script(schema, release, ids, source)))
    if adopt is not None:
        script = adopt_script(schema, adopt, given or {})
        if script.splitlines()[0] not in {item.adopt for item in earlier}:
            scripts.append(("stuck_runs_adopt_" + _slug(adopt), script))
    written = []
    for stamp, (name, script) in zip(_next_stamps(directory, len(scripts)), scripts, strict=True):
        path = directory / f"{stamp}_{name}" / "migration.sql"
        path.parent.mkdir(parents=True)
        path.write_text(script, encoding="utf-8")
        written.append(path.parent.name)
    return written


@click.command()
@click.option(
    "--prisma",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="The app's Prisma migrations directory (prisma/migrations).",
)
@click.option(
    "--adopt",
    "table",
    metavar="TABLE",
    help="Also write a migration that adopts the application's runs table TABLE and builds "
    "its sweep index (after the migration that creates it).",
)
@column_options
@click.option(
    "--active-statuses", metavar="A,B", help="Statuses of running work [PENDING,PROCESSING]."
)
@click.option("--failed-status", metavar="S", help="Status recovery writes [FAILED].")
@click.pass_obj
def export(
    settings: Settings,
    directory: Path,
    table: str | None,
    columns: dict[str, str | None],
    time_zone: str | None,
    active_statuses: str | None,
    failed_status: str | None,
) -> None:
    """Write stuck-runs' migrations as Prisma migrations, for `prisma migrate deploy`.

    One <timestamp>_stuck_runs_<release>/migration.sql per release not yet in DIR,
    named to sort after every migration DIR holds; running it again writes nothing
    new. Needs no database. `stuck-runs migrate` and `recover` recognise an install
    made this way, and these migrations skip what `stuck-runs migrate` applied.

    \b
    Example: stuck-runs export --prisma prisma/migrations --adopt qualification_runs
    """
    if (columns or time_zone or active_statuses or failed_status) and not table:
        raise click.UsageError("--column, --time-zone and the statuses need --adopt TABLE")
    given: dict[str, object] = {"columns": columns}
    if time_zone is not None:
        given["time_zone"] = time_zone
    if active_statuses is not None:
        given["active_statuses"] = [s.strip() for s in active_statuses.split(",")]
    if failed_status is not None:
        given["failed_status"] = failed_status
    if not directory.is_dir():
        directory.mkdir(parents=True)
    written = export_prisma(directory, settings.schema, adopt=table, given=given)
    for name in written:
        click.echo(f"wrote {directory / name / 'migration.sql'}")
    if not written:
        click.echo(f"nothing to write: {directory} has every migration of stuck-runs {__version__}")
