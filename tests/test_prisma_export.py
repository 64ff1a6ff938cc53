"""`stuck-runs export --prisma`: stuck-runs installed and upgraded by `prisma migrate deploy` (issue 21).

A Node app whose migrations are Prisma's writes stuck-runs' migrations into prisma/migrations
once (`stuck-runs export --prisma`, where Python is at hand: a developer's machine), and from
then on its production image needs no Python: Prisma's own migrate engine (tests/prisma's
WebAssembly schema engine) applies them, and the README's instrumentation.ts recovers at
start-up through the real Prisma 7 client. Every node step here runs with a PATH that holds
node and nothing else, so no Python can be reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import click
import psycopg
import pytest

from runner.connection import parse_database_url
from runner.export import MARKER, export_prisma
from runner.migrations import migrations_dir
from runner.releases import migration_ids

from .conftest import create_database, drop_database
from .helpers import open_conn, run_cli, with_dbname, with_query
from .prisma_app import OFFLINE, node_url
from .schema_snapshot import snapshot
from .test_prisma import seed, statements, statuses

NEEDS_NODE = pytest.mark.skipif(
    not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm"
)
PRISMA = [pytest.mark.slow, NEEDS_NODE]
INIT = "20260101000000_init"  # the app's first migration, as `prisma migrate dev` names it
INSTRUMENTATION = "instrumentation.ts"


@pytest.fixture(scope="module")
def node_only(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH with node and nothing else: the app's production image, without Python."""
    directory = tmp_path_factory.mktemp("node-only-bin")
    node = shutil.which("node")
    assert node is not None
    (directory / "node").symlink_to(node)
    path = str(directory)
    for python in ("python", "python3", "python3.11", "stuck-runs", "sh"):
        assert shutil.which(python, path=path) is None
    return path


def on_node(
    project: Path, *args: str, path: str, url: str, check: bool = True, env: dict | None = None
):
    """A tool of the app's node_modules (tsx), run with `path` as the whole PATH."""
    base = {k: v for k, v in os.environ.items() if k not in ("PATH", "PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(project / "node_modules" / ".bin" / args[0]), *args[1:]],
        cwd=project,
        env=base | OFFLINE | {"PATH": path, "DATABASE_URL": url} | (env or {}),
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def deploy(project: Path, url: str, migrations: Path, path: str) -> list[str]:
    """`prisma migrate deploy`: the names of the migrations it applied."""
    out = on_node(
        project,
        "tsx",
        "schema-engine.ts",
        "deploy",
        "schema.prisma",
        str(migrations),
        path=path,
        url=url,
    ).stdout
    return out.split()


def engine_on(project: Path, command: str, url: str, migrations: Path, path: str) -> str:
    return on_node(
        project,
        "tsx",
        "schema-engine.ts",
        command,
        "schema.prisma",
        str(migrations),
        path=path,
        url=url,
    ).stdout


def register(project: Path, url: str, path: str) -> str:
    """Next.js's start-up hook, instrumentation.ts's register(), as `next start` calls it."""
    result = on_node(
        project,
        "tsx",
        "run-snippet.ts",
        INSTRUMENTATION,
        "register",
        path=path,
        url=url,
        env={"NEXT_RUNTIME": "nodejs", "NODE_ENV": "production"},
    )
    env_free = [line for line in result.stdout.splitlines() if not line.startswith("@@")]
    return "\n".join(env_free) + result.stderr


@pytest.fixture
def app_migrations(tmp_path: Path, prisma_init_migration: str) -> Path:
    """The app's prisma/migrations: its first migration, which creates qualification_runs."""
    (tmp_path / "migrations" / INIT).mkdir(parents=True)
    (tmp_path / "migrations" / INIT / "migration.sql").write_text(prisma_init_migration)
    return tmp_path / "migrations"


@pytest.fixture
def app_url(empty_db_url: str) -> str:
    return with_query(node_url(empty_db_url), schema="app")


def export(migrations: Path, *args: str) -> list[str]:
    """`stuck-runs export --prisma DIR ...` on the developer's machine: the names it wrote."""
    result = run_cli("export", "--prisma", str(migrations), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.split("/")[-2] for line in result.stdout.splitlines() if line.startswith("wrote ")]


def yoyo(url: str) -> list[tuple[str, str]]:
    """What yoyo's bookkeeping says was applied, and how (the log's operations)."""
    with open_conn(url) as conn:
        return conn.execute(
            "SELECT m.migration_id, l.operation FROM stuck_runs._yoyo_migration AS m"
            " JOIN stuck_runs._yoyo_log AS l USING (migration_hash) ORDER BY m.applied_at_utc"
        ).fetchall()


def sweep_index(url: str) -> tuple[int, bool] | None:
    with open_conn(url) as conn:
        return conn.execute(
            "SELECT i.indexrelid::bigint, i.indisvalid FROM pg_index AS i"
            " WHERE i.indexrelid = to_regclass('app.qualification_runs_stuck_runs_idx')"
        ).fetchone()


ALL = migration_ids(migrations_dir())
RELEASE_NAMES = ["stuck_runs_0_1", "stuck_runs_0_2", "stuck_runs_0_3"]


@pytest.mark.parametrize("data_first", [False, True], ids=["empty-database", "with-data"])
@pytest.mark.slow
@NEEDS_NODE
def test_deploy_installs_stuck_runs_and_the_app_recovers_without_python(
    prisma_project: Path, app_migrations: Path, app_url: str, node_only: str, data_first: bool
) -> None:
    """`prisma migrate deploy` installs stuck-runs and adopts the table, the app's next
    migration in the same deploy lands in the app's schema, and register() recovers the
    stuck run and leaves the live one; `stuck-runs migrate` then finds nothing to do."""
    project = prisma_project
    if data_first:  # an app in production for a while: its runs are there first
        assert deploy(project, app_url, app_migrations, node_only) == [INIT]
        with open_conn(app_url) as conn:
            seed(conn, "run-stuck", "PROCESSING", "2 hours")
            seed(conn, "run-live", "PROCESSING", "10 seconds", done=5)
            seed(conn, "run-done", "COMPLETED", "3 hours", done=10)
    written = export(app_migrations, "--adopt", "qualification_runs")
    assert [name.split("_", 1)[1] for name in written] == [
        *RELEASE_NAMES,
        "stuck_runs_adopt_qualification_runs",
    ]
    assert written == sorted(written) and written[0] > INIT
    later = app_migrations / "29990101000000_later" / "migration.sql"
    later.parent.mkdir()
    later.write_text('CREATE TABLE "LaterTable" (id integer PRIMARY KEY);\n')

    applied = deploy(project, app_url, app_migrations, node_only)
    assert applied == ([] if data_first else [INIT]) + written + [later.parent.name]
    assert yoyo(app_url) == [(migration, "apply") for migration in ALL]
    index = sweep_index(app_url)
    assert index is not None and index[1], "no valid sweep index"
    with open_conn(app_url) as conn:
        # The app's next migration ran with its own search_path, not stuck-runs'.
        assert conn.execute("SELECT to_regclass('app.\"LaterTable\"') IS NOT NULL").fetchone()[0]
        assert conn.execute("SELECT to_regclass('stuck_runs.\"LaterTable\"')").fetchone()[0] is None
        assert conn.execute(
            "SELECT schema_name, relation_name, adopted_by = current_user::regrole"
            " FROM stuck_runs.stuck_runs_tables WHERE NOT managed"
        ).fetchall() == [("app", "qualification_runs", True)]
        if not data_first:
            seed(conn, "run-stuck", "PROCESSING", "2 hours")
            seed(conn, "run-live", "PROCESSING", "10 seconds", done=5)
            seed(conn, "run-done", "COMPLETED", "3 hours", done=10)

    log = register(project, app_url, node_only)
    assert "[Recovery] failed" not in log, log
    assert "run run-stuck: 3/10 completed (PROCESSING → FAILED)" in log, log
    with open_conn(app_url) as conn:
        assert statuses(conn) == {
            "run-stuck": "FAILED",
            "run-live": "PROCESSING",
            "run-done": "COMPLETED",
        }

    # The runner, where there is one, recognises the install as its own.
    migrated = run_cli("--database-url", app_url, "migrate", "--adopt", "qualification_runs")
    assert migrated.returncode == 0, migrated.stderr
    assert "nothing to apply" in migrated.stderr and "adopted" not in migrated.stderr
    assert "warning" not in migrated.stderr, migrated.stderr
    assert sweep_index(app_url) == index
    recovered = run_cli("--database-url", app_url, "recover")
    assert recovered.returncode == 0 and "warning" not in recovered.stderr, recovered.stderr
    assert yoyo(app_url) == [(migration, "apply") for migration in ALL]


@pytest.mark.slow
@NEEDS_NODE
def test_prisma_sees_no_drift_through_its_shadow_database(
    prisma_project: Path, app_migrations: Path, app_url: str, node_only: str
) -> None:
    """After deploy, `prisma migrate dev` would create the next migration (no reset), the
    history replayed in a shadow database matches the live database, and schema.prisma wants
    nothing: stuck-runs' own migrations, replayed in the shadow database, leave no trace there
    that the live database lacks."""
    project = prisma_project
    export(app_migrations, "--adopt", "qualification_runs")
    deploy(project, app_url, app_migrations, node_only)
    assert engine_on(project, "dev", app_url, app_migrations, node_only) == "createMigration\n"
    assert statements(engine_on(project, "history", app_url, app_migrations, node_only)) == []
    assert statements(engine_on(project, "next", app_url, app_migrations, node_only)) == []
    assert statements(engine_on(project, "drift", app_url, app_migrations, node_only)) == []


@pytest.mark.slow
@NEEDS_NODE
def test_an_exported_release_upgrades_the_one_before(
    prisma_project: Path, app_migrations: Path, app_url: str, node_only: str, tmp_path: Path
) -> None:
    """Exported by a stuck-runs that had 0.1 and 0.2 only, deployed; then by one that had
    0.3's first migration, deployed; then by this one: each export writes only what is new,
    after what is there, and each deploy applies it, as `stuck-runs migrate` would have."""
    project = prisma_project
    deploy(project, app_url, app_migrations, node_only)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    steps = [ALL[:3], ALL[:4], ALL]
    assert ALL[2] == "0003_beside_the_app" and len(ALL) >= 5
    seen: list[str] = []
    for n, migrations in enumerate(steps):
        for migration in migrations:
            shutil.copy(migrations_dir() / f"{migration}.sql", shipped)
        adopt = {"adopt": "qualification_runs"} if n == len(steps) - 1 else {}
        written = export_prisma(app_migrations, "stuck_runs", source=shipped, **adopt)
        assert written and all(name > max([INIT, *seen]) for name in written), written
        if n == 0:
            assert [name.split("_", 1)[1] for name in written] == RELEASE_NAMES[:2]
        elif n == 1:
            assert [name.split("_", 1)[1] for name in written] == ["stuck_runs_0_3"]
        else:
            # 0.3's later migrations, exported after its first: a migration of their own.
            assert [name.split("_", 1)[1] for name in written] == [
                f"stuck_runs_0_3_{ALL[4].split('_')[0]}",
                "stuck_runs_adopt_qualification_runs",
            ]
        seen += written
        assert deploy(project, app_url, app_migrations, node_only) == written
        assert [m for m, _ in yoyo(app_url)] == migrations
        if n == 0:
            with open_conn(app_url) as conn:
                seed(conn, "run-stuck", "PROCESSING", "2 hours")
                seed(conn, "run-live", "PROCESSING", "10 seconds", done=5)
    assert export_prisma(app_migrations, "stuck_runs", adopt="qualification_runs") == []
    log = register(project, app_url, node_only)
    assert "run run-stuck: 3/10 completed (PROCESSING → FAILED)" in log, log
    assert engine_on(project, "dev", app_url, app_migrations, node_only) == "createMigration\n"
    assert statements(engine_on(project, "history", app_url, app_migrations, node_only)) == []


@pytest.mark.slow
@NEEDS_NODE
def test_a_runner_installed_stuck_runs_is_recognised_not_installed_twice(
    prisma_project: Path, app_migrations: Path, app_url: str, node_only: str
) -> None:
    """A database where `stuck-runs start --adopt` installed and adopted everything: the
    exported migrations are recorded by Prisma and change nothing (no migration applied
    again, the registry entry and the sweep index the same)."""
    project = prisma_project
    deploy(project, app_url, app_migrations, node_only)
    # An adoption told something the export is not: the migration keeps it.
    started = run_cli(
        "--database-url",
        app_url,
        "start",
        "--adopt",
        "qualification_runs",
        "--time-zone",
        "Europe/Berlin",
        "--strict",
    )
    assert started.returncode == 0, started.stderr
    before_yoyo, before_index = yoyo(app_url), sweep_index(app_url)
    entry = "SELECT to_jsonb(t) FROM stuck_runs.stuck_runs_tables AS t WHERE NOT t.managed"
    with open_conn(app_url) as conn:
        [(before_entry,)] = conn.execute(entry).fetchall()

    written = export(app_migrations, "--adopt", "qualification_runs")
    assert deploy(project, app_url, app_migrations, node_only) == written
    assert yoyo(app_url) == before_yoyo == [(migration, "apply") for migration in ALL]
    assert sweep_index(app_url) == before_index
    with open_conn(app_url) as conn:
        assert conn.execute(entry).fetchall() == [(before_entry,)]
        assert before_entry["time_zone"] == "Europe/Berlin"
        seed(conn, "run-stuck", "PROCESSING", "2 hours")
    log = register(project, app_url, node_only)
    assert "run run-stuck: 3/10 completed (PROCESSING → FAILED)" in log, log
    assert engine_on(project, "dev", app_url, app_migrations, node_only) == "createMigration\n"


@pytest.mark.slow
@NEEDS_NODE
def test_a_0_1_install_in_the_apps_schema_stops_the_deploy_with_the_command_that_moves_it(
    prisma_project: Path, app_migrations: Path, app_url: str, node_only: str
) -> None:
    """stuck-runs 0.1 lived in the app's schema: a second install beside it would sweep the
    same tables twice. The deploy stops (nothing of stuck-runs applied) and says what to run."""
    from .test_upgrades import build_release

    project = prisma_project
    deploy(project, app_url, app_migrations, node_only)
    build_release(app_url, "app", ("0001_core", "0002_retries"))
    export(app_migrations)
    failed = on_node(
        project,
        "tsx",
        "schema-engine.ts",
        "deploy",
        "schema.prisma",
        str(app_migrations),
        path=node_only,
        url=app_url,
        check=False,
    )
    assert failed.returncode != 0
    assert "stuck-runs 0.1 is installed in schema app" in failed.stderr + failed.stdout
    assert "stuck-runs migrate --relocate" in failed.stderr + failed.stdout
    with open_conn(app_url) as conn:
        assert conn.execute("SELECT to_regnamespace('stuck_runs')").fetchone()[0] is None


def test_export_writes_each_release_once_after_every_migration_there(tmp_path: Path) -> None:
    """Running it again writes nothing; new migrations sort after the newest one there, even
    one dated in the future; another schema than the one exported before is refused."""
    migrations = tmp_path / "migrations"
    (migrations / "29990101000000_future").mkdir(parents=True)
    written = export(migrations, "--adopt", "qualification_runs")
    assert len(written) == 4 and all(name > "29990101000000_future" for name in written)
    assert export(migrations, "--adopt", "qualification_runs") == []
    # Another mapping is another adoption; the same one again is nothing new.
    again = export(migrations, "--adopt", "qualification_runs", "--column", "updated_at=updatedAt")
    assert [name.split("_", 1)[1] for name in again] == ["stuck_runs_adopt_qualification_runs"]
    assert (
        export(migrations, "--adopt", "qualification_runs", "--column", "updated_at=updatedAt")
        == []
    )
    for name in written:
        assert (migrations / name / "migration.sql").read_text().startswith(MARKER)
    refused = run_cli("--schema", "other", "export", "--prisma", str(migrations))
    assert refused.returncode == 2 and "export with --schema stuck_runs" in refused.stderr


def test_export_carries_each_migration_byte_for_byte(tmp_path: Path) -> None:
    """Each migration's text is in its release's file unchanged, once, in order."""
    export(tmp_path)
    text = "".join(p.read_text() for p in sorted(tmp_path.glob("*/migration.sql")))
    positions = []
    for migration in ALL:
        body = (migrations_dir() / f"{migration}.sql").read_text()
        assert text.count(body) == 1, migration
        positions.append(text.index(body))
    assert positions == sorted(positions)


@pytest.mark.skipif(not shutil.which("psql"), reason="needs psql")
def test_an_exported_file_run_statement_by_statement_changes_nothing(
    empty_db_url: str, tmp_path: Path
) -> None:
    """An executor that ran a file's statements one by one, each its own transaction (psql -f
    does), would install into the app's schema: a release's file and an adoption's stop
    before they create or change anything."""
    written = export(tmp_path, "--adopt", "qualification_runs")
    target = parse_database_url(empty_db_url)
    for name in (written[0], written[-1]):
        script = str(tmp_path / name / "migration.sql")
        result = subprocess.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", script, target.conninfo],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "must run as one transaction" in result.stderr, result.stderr
    with open_conn(empty_db_url) as conn:
        objects = conn.execute(
            "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        ).fetchone()
        assert objects == (0,)
        assert conn.execute("SELECT to_regnamespace('stuck_runs')").fetchone()[0] is None


@pytest.mark.slow
@NEEDS_NODE
def test_prisma_migrate_reset_reinstates_coverage_of_the_new_table(
    prisma_project: Path, app_migrations: Path, app_url: str, node_only: str
) -> None:
    """`prisma migrate reset` drops the app's schema and applies every migration again: the
    stuck-runs ones find their install and skip, the adoption's covers the re-created table."""
    project = prisma_project
    written = export(app_migrations, "--adopt", "qualification_runs")
    deploy(project, app_url, app_migrations, node_only)
    before = sweep_index(app_url)
    reset = on_node(
        project,
        "tsx",
        "schema-engine.ts",
        "reset",
        "schema.prisma",
        str(app_migrations),
        path=node_only,
        url=app_url,
    ).stdout.split()
    assert reset == [INIT, *written]
    assert yoyo(app_url) == [(migration, "apply") for migration in ALL]
    after = sweep_index(app_url)
    assert after is not None and after[1] and after != before
    with open_conn(app_url) as conn:
        assert conn.execute(
            "SELECT table_name = 'app.qualification_runs'::regclass"
            " FROM stuck_runs.stuck_runs_tables WHERE NOT managed"
        ).fetchall() == [(True,)]
        seed(conn, "run-stuck", "PROCESSING", "2 hours")
    log = register(project, app_url, node_only)
    assert "run run-stuck: 3/10 completed (PROCESSING → FAILED)" in log, log
    recovered = run_cli("--database-url", app_url, "recover")
    assert recovered.returncode == 0 and "warning" not in recovered.stderr, recovered.stderr


APP_TABLE = """
CREATE SCHEMA app;
CREATE TYPE app."RunStatus" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');
CREATE TABLE app.qualification_runs (
    id text PRIMARY KEY, status app."RunStatus" NOT NULL DEFAULT 'PENDING',
    "totalProspects" integer NOT NULL DEFAULT 0, "processedProspects" integer NOT NULL DEFAULT 0,
    "createdAt" timestamp(3) NOT NULL DEFAULT now(), "updatedAt" timestamp(3) NOT NULL,
    "completedAt" timestamp(3), "errorMessage" text)
"""


def test_an_export_for_an_odd_schema_name_installs_there_as_migrate_would(
    empty_db_url: str, tmp_path: Path
) -> None:
    """--schema with a quote, a space and upper case: each file, sent whole as Prisma sends
    it (one simple query, with the app's search_path), installs there; the runner with the
    same --schema finds nothing to apply and recovers through it."""
    schema = 'Stuck "Runs" x'
    result = run_cli(
        "--schema", schema, "export", "--prisma", str(tmp_path), "--adopt", "qualification_runs"
    )
    assert result.returncode == 0, result.stderr
    again = run_cli(
        "--schema", schema, "export", "--prisma", str(tmp_path), "--adopt", "qualification_runs"
    )
    assert again.returncode == 0 and "nothing to write" in again.stdout, again.stdout
    target = parse_database_url(empty_db_url)
    with open_conn(empty_db_url) as conn:
        conn.execute(APP_TABLE)
    with psycopg.connect(target.conninfo, autocommit=True, options="-c search_path=app") as conn:
        for script in sorted(tmp_path.glob("*/migration.sql")):
            conn.execute(script.read_text())
            assert conn.execute("SHOW search_path").fetchone() == ("app",)
        conn.execute(
            'INSERT INTO app.qualification_runs (id, status, "updatedAt")'
            " VALUES ('run-stuck', 'PROCESSING', (now() - interval '2 hours') AT TIME ZONE 'UTC')"
        )
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'stuck_runs'"
        ).fetchone() == (0,)
    url = with_query(empty_db_url, schema="app")
    migrated = run_cli("--database-url", url, "--schema", schema, "migrate")
    assert migrated.returncode == 0 and "nothing to apply" in migrated.stderr, migrated.stderr
    recovered = run_cli("--database-url", url, "--schema", schema, "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert "run-stuck" in recovered.stdout + recovered.stderr


def test_an_exported_release_queues_behind_a_running_migrate(
    empty_db_url: str, tmp_path: Path
) -> None:
    """While `stuck-runs migrate` holds its lock (another instance installing), the file waits
    for it instead of installing beside it; once it is free, the file installs."""
    [first, *_] = export(tmp_path)
    script = (tmp_path / first / "migration.sql").read_text()
    target = parse_database_url(empty_db_url)
    with open_conn(empty_db_url) as conn:
        conn.execute(APP_TABLE)
    with psycopg.connect(target.conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('stuck-runs migrate stuck_runs'))")
        with psycopg.connect(
            target.conninfo, autocommit=True, options="-c search_path=app -c lock_timeout=500"
        ) as conn:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                conn.execute(script)
            assert conn.execute("SELECT to_regnamespace('stuck_runs')").fetchone() == (None,)
            holder.execute("SELECT pg_advisory_unlock(hashtext('stuck-runs migrate stuck_runs'))")
            conn.execute(script)
            assert conn.execute(
                "SELECT array_agg(migration_id ORDER BY migration_id) FROM stuck_runs._yoyo_migration"
            ).fetchone() == (ALL[:2],)


def test_a_migration_yoyo_runs_outside_a_transaction_is_refused(tmp_path: Path) -> None:
    """Prisma runs each migration as one transaction: a migration that yoyo is told to run
    outside one (`-- transactional: false`) cannot be exported, and nothing is written."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for migration in ALL:
        shutil.copy(migrations_dir() / f"{migration}.sql", shipped)
    (shipped / "9999_outside.sql").write_text(
        "-- transactional: false\n-- depends: " + ALL[-1] + "\n\nVACUUM stuck_runs_settings;\n"
    )
    with pytest.raises(click.UsageError, match="9999_outside must run outside a transaction"):
        export_prisma(tmp_path / "migrations", "stuck_runs", source=shipped)
    assert not (tmp_path / "migrations").exists()


YOYO_TABLES = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid),
       (SELECT pg_get_constraintdef(k.oid) FROM pg_constraint AS k
        WHERE k.conrelid = c.oid AND k.contype = 'p')
FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'stuck_runs'::regnamespace AND a.attnum > 0
  AND (c.relname LIKE '\\_yoyo%' OR c.relname = 'yoyo_lock')
ORDER BY 1, 2
"""
REGISTRY = """
SELECT to_jsonb(t) - 'adopted_at' - 'table_name',
       (SELECT indexdef FROM pg_indexes WHERE schemaname = 'app'
          AND indexname = 'qualification_runs_stuck_runs_idx')
FROM stuck_runs.stuck_runs_tables AS t ORDER BY t.managed, t.relation_name
"""


def test_an_exported_install_equals_the_runners(server_url: str, tmp_path: Path) -> None:
    """A database installed and adopted by the exported files, sent whole as Prisma sends them,
    holds what `stuck-runs migrate --adopt` makes: every object of stuck-runs' schema with its
    grants and comments, yoyo's tables, the settings, the registry and the sweep index."""
    names = [create_database(server_url) for _ in range(2)]
    try:
        exported_url, runner_url = (
            with_query(with_dbname(server_url, name), schema="app") for name in names
        )
        export(tmp_path, "--adopt", "qualification_runs")
        target = parse_database_url(exported_url)
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            conn.execute(APP_TABLE)
            conn.execute("SET search_path = app")
            for script in sorted(tmp_path.glob("*/migration.sql")):
                conn.execute(script.read_text())
        with open_conn(runner_url) as conn:
            conn.execute(APP_TABLE)
        migrated = run_cli("--database-url", runner_url, "migrate", "--adopt", "qualification_runs")
        assert migrated.returncode == 0, migrated.stderr
        states = []
        for url in (exported_url, runner_url):
            with open_conn(url) as conn:
                states.append(
                    (
                        snapshot(conn),
                        conn.execute(YOYO_TABLES).fetchall(),
                        conn.execute(REGISTRY).fetchall(),
                        conn.execute(
                            "SELECT migration_id FROM stuck_runs._yoyo_migration"
                            " ORDER BY applied_at_utc"
                        ).fetchall(),
                        conn.execute(
                            "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'stuck_runs'"
                        ).fetchall(),
                    )
                )
        assert states[0] == states[1]
        assert [row[0] for row in states[0][3]] == ALL
    finally:
        for name in names:
            drop_database(server_url, name)
