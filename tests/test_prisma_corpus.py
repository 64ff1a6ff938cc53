"""A few days of ordinary Prisma development on an adopted table (issue 19).

One schema change after another goes through Prisma's own migrate engine (tests/prisma's
WebAssembly schema engine) twice: on a database whose runs table the README's start-up line
adopted, and on a control database without stuck-runs. Each change must apply there exactly as
in the control (same success, same schema apart from the sweep index), and after each the
README's start-up line must restore coverage (a run idle beyond the threshold is recovered) or
exit 0 with one line that says why not and what to run.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import create_database, drop_database
from .helpers import open_conn, run_cli, with_dbname, with_query
from .prisma_app import engine, node_url, prisma_section, readme_prisma_text
from .test_prisma import catalog, statements

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm"
    ),
]


def start_up_args() -> list[str]:
    """The stuck-runs part of the README's Prisma `prestart` line, as argv."""
    [prestart] = re.findall(r'"prestart": "([^"]*)"', prisma_section(readme_prisma_text()))
    [line] = [part for part in prestart.split("&&") if "stuck-runs" in part]
    args = shlex.split(line)
    assert args[:2] == ["stuck-runs", "start"], prestart
    return args[1:]


@dataclass
class Db:
    """One of the two databases the history is applied to."""

    url: str  # the app's DATABASE_URL: ?schema=app

    def catalog(self) -> set[str]:
        with open_conn(self.url) as conn:
            return catalog(conn, "app")

    def migrations(self) -> list[tuple[str, bool, str | None]]:
        """Prisma's record of the migrations: name, finished, logs of a failure."""
        with open_conn(self.url) as conn:
            if conn.execute("SELECT to_regclass('app._prisma_migrations')").fetchone()[0] is None:
                return []
            return conn.execute(
                "SELECT migration_name, finished_at IS NOT NULL AND rolled_back_at IS NULL, logs"
                " FROM app._prisma_migrations ORDER BY migration_name"
            ).fetchall()


@pytest.fixture
def databases(server_url: str) -> Iterator[tuple[Db, Db]]:
    """(adopted, control): two new databases on the test server, for the app's schema."""
    names = [create_database(server_url) for _ in range(2)]
    try:
        yield tuple(  # type: ignore[misc]
            Db(with_query(node_url(with_dbname(server_url, name)), schema="app")) for name in names
        )
    finally:
        for name in names:
            drop_database(server_url, name)


def seed(db: Db, table: str, run_id: str, status: str, idle: str) -> None:
    """A run last updated `idle` ago, as Prisma writes it: UTC wall-clock time into
    timestamp(3), or the instant itself into timestamptz(3)."""
    with open_conn(db.url) as conn:
        [(kind,)] = conn.execute(
            "SELECT format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = 'updatedAt'",
            (f"app.{table}",),
        ).fetchall()
        stamp = "now() - %s::interval"
        if kind == "timestamp without time zone":
            stamp = f"({stamp}) AT TIME ZONE 'UTC'"
        conn.execute(
            f'INSERT INTO app.{table} (id, status, "totalProspects", "processedProspects",'
            f' "createdAt", "updatedAt") VALUES (%s, %s, 10, 3,'
            f" (now() - interval '1 day') AT TIME ZONE 'UTC', {stamp})",
            (run_id, status, idle),
        )


def status_of(db: Db, table: str, run_id: str) -> str:
    with open_conn(db.url) as conn:
        return conn.execute(
            f"SELECT status::text FROM app.{table} WHERE id = %s", (run_id,)
        ).fetchone()[0]


def error_of(db: Db, table: str, run_id: str) -> str | None:
    """The run's error message, in whichever field the model has for it today."""
    with open_conn(db.url) as conn:
        [(column,)] = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND NOT attisdropped"
            " AND attname IN ('errorMessage', 'failureReason')",
            (f"app.{table}",),
        ).fetchall()
        return conn.execute(
            f'SELECT "{column}" FROM app.{table} WHERE id = %s', (run_id,)
        ).fetchone()[0]


def sweep_lines(lines: set[str]) -> set[str]:
    """What a catalog says about sweep indexes (named <table>_stuck_runs_idx by adoption)."""
    return {line for line in lines if "_stuck_runs_idx" in line}


# schema.prisma's lines as tests/prisma has them, and what each day changes them to.
ENUM_END = "  FAILED\n}"
BEFORE_CREATED = "  createdAt          DateTime  @default(now())\n"
ERROR = "  errorMessage       String?\n"
UPDATED = "  updatedAt          DateTime  @updatedAt\n"
TOTAL = "  totalProspects     Int       @default(0)\n"
MAPPED = '  @@map("qualification_runs")'


def change(old: str, new: str) -> Callable[[str], str]:
    def edit(schema: str) -> str:
        assert schema.count(old) == 1, (old, schema)
        return schema.replace(old, new)

    return edit


# (migration name, the edit of schema.prisma, the table's name after it). Every edit is one
# `prisma migrate dev` of an ordinary day; the last two entries are whole-database commands.
HISTORY: list[tuple[str, Callable[[str], str] | None, str]] = [
    (
        "add_field",
        change(BEFORE_CREATED, "  priority           Int       @default(0)\n" + BEFORE_CREATED),
        "qualification_runs",
    ),
    # Prisma cannot tell a rename from a drop: it drops the column and adds the new one.
    ("rename_field", change(ERROR, "  failureReason      String?\n"), "qualification_runs"),
    ("add_enum_value", change(ENUM_END, "  FAILED\n  CANCELLED\n}"), "qualification_runs"),
    # Removing or renaming a value: CREATE TYPE "RunStatus_new", ALTER COLUMN TYPE ... USING,
    # rename the old type away and drop it.
    ("rename_enum_value", change("  CANCELLED\n", "  CANCELED\n"), "qualification_runs"),
    ("remove_enum_value", change("  CANCELED\n", ""), "qualification_runs"),
    (
        "updated_at_timestamptz",
        change(UPDATED, "  updatedAt          DateTime  @updatedAt @db.Timestamptz(3)\n"),
        "qualification_runs",
    ),
    (
        "add_index",
        change(MAPPED, "  @@index([status, createdAt])\n" + MAPPED),
        "qualification_runs",
    ),
    (
        "optional_column",
        change(TOTAL, "  totalProspects     Int?      @default(0)\n"),
        "qualification_runs",
    ),
    ("remap_table", change(MAPPED, '  @@map("qualification_jobs")'), "qualification_jobs"),
    ("migrate_reset", None, "qualification_jobs"),
    ("db_push_force_reset", None, "qualification_jobs"),
]


# The days whose `prisma migrate dev` first checks for drift: the day after an enum's
# re-creation (rename_enum_value) and after a column type change (updated_at_timestamptz)
# rebuilt the sweep index, and the last day before @@map.
DEV_CHECKED = {"remove_enum_value", "add_index", "remap_table"}


def test_a_few_days_of_prisma_migrations_on_an_adopted_table(
    prisma_project: Path, prisma_init_migration: str, databases: tuple[Db, Db], tmp_path: Path
) -> None:
    """Each day: `prisma migrate dev` writes the migration (from the history, in a shadow
    database), `prisma migrate deploy` applies it to both databases, then the app starts with
    the README's line and a run idle for an hour is recovered while a live one is not."""
    adopted, control = databases
    project = prisma_project  # the session's app (tests/conftest.py)
    migrations = tmp_path / "migrations"
    (migrations / "00_init").mkdir(parents=True)
    (migrations / "00_init" / "migration.sql").write_text(prisma_init_migration)
    for db in databases:
        assert engine(project, "deploy", db.url, "schema.prisma", migrations).stdout.split() == [
            "00_init"
        ]
    args = start_up_args()
    table = "qualification_runs"
    schema = (project / "schema.prisma").read_text()

    def start_up(line: list[str]) -> str:
        """The start-up line as the app runs it: exit 0 always; its stderr."""
        result = run_cli("--database-url", adopted.url, *line)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stderr

    stderr = start_up(args)
    assert "warning" not in stderr, stderr

    for day, (name, edit, new_table) in enumerate(HISTORY, start=1):
        for db in databases:  # the same runs in both: data can decide whether a migration applies
            seed(db, table, f"{name}-old", "PROCESSING", "2 hours")

        schema_file = f"day{day:02}.prisma"
        if edit is not None:
            schema = edit(schema)
            (project / schema_file).write_text(schema)
            # `prisma migrate dev` on the developer's adopted database: no drift that would make
            # it ask for a reset (checked after the days that rebuilt the sweep index, to keep
            # the runtime down); then it writes the migration from the history (in a shadow
            # database, where the sweep index never is).
            if name in DEV_CHECKED:
                dev = engine(project, "dev", adopted.url, schema_file, migrations).stdout
                assert dev == "createMigration\n", (name, dev)
            created = engine(project, "next", control.url, schema_file, migrations).stdout
            assert statements(created), f"{name}: Prisma saw no change"
            (migrations / f"{day:02}_{name}").mkdir()
            (migrations / f"{day:02}_{name}" / "migration.sql").write_text(created)
            for db in databases:
                applied = engine(project, "deploy", db.url, schema_file, migrations).stdout
                assert applied.split() == [f"{day:02}_{name}"], (name, applied)
        else:
            (project / schema_file).write_text(schema)
            command = "reset" if name == "migrate_reset" else "push"
            for db in databases:
                engine(project, command, db.url, schema_file, migrations)

        assert adopted.migrations() == control.migrations(), name
        assert all(finished for _, finished, _ in adopted.migrations()), adopted.migrations()
        here, there = adopted.catalog(), control.catalog()
        assert here - sweep_lines(here) == there, (name, here ^ there)

        if new_table != table:
            # The start-up line still names the old table: it must not stop the app, and must
            # say in one line what to write there instead; the test then does as it says.
            stderr = start_up(args)
            old_table, table = table, new_table
            args = [new_table if arg == old_table else arg for arg in args]
            [said] = [line for line in stderr.splitlines() if new_table in line]
            assert said.endswith(shlex.join(["stuck-runs", *args])), said
            # The old name's entry stays until removed, as its warning says.
            [gone] = [line for line in stderr.splitlines() if line.endswith("unadopt --table)")]
            assert f"app.{old_table} was dropped" in gone, gone
            forgot = run_cli("--database-url", adopted.url, "unadopt", "--table", old_table)
            assert forgot.returncode == 0, forgot.stdout + forgot.stderr
        stderr = start_up(args)
        assert "warning" not in stderr, (name, stderr)
        assert sweep_lines(adopted.catalog()), f"{name}: no sweep index after the start-up line"

        # Coverage: a run idle beyond the threshold is recovered, a live one is not.
        seed(adopted, table, f"{name}-stuck", "PROCESSING", "1 hour")
        seed(adopted, table, f"{name}-live", "PROCESSING", "5 seconds")
        recovered = run_cli("--database-url", adopted.url, "recover")
        assert recovered.returncode == 0, (name, recovered.stdout + recovered.stderr)
        assert status_of(adopted, table, f"{name}-stuck") == "FAILED", (name, recovered.stdout)
        assert status_of(adopted, table, f"{name}-live") == "PROCESSING", name
        # The error lands in the field that holds it now (failureReason after the rename).
        assert error_of(adopted, table, f"{name}-stuck"), name
