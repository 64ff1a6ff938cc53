"""migrations/ vs sql/: one truth, immutable history, safe to run from many instances."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from runner.connection import parse_database_url
from runner.migrations import migrations_dir, sql_dir

from .conftest import migrate
from .helpers import insert_run, open_conn, run_cli, with_query
from .schema_snapshot import snapshot

# Landed migrations never change: yoyo records only a migration's id, so an
# edited file would silently leave databases that applied the old text behind.
# A new migration adds its line here; an existing line never changes.
LANDED = {
    "0001_core.sql": "a8c70a62f75431d6ffa4d3d73bf23386eda308fa2e6b94d6c7656903359536bc",
    "0001_core.rollback.sql": "9adc942cc032a4827ccc4957bb9434e4117cb46a796a1ea4b5ce9eb692194b76",
    "0002_retries.sql": "4f9e5acdf68874329cf10d3b3439b6dcc0838ef20246dcb937a9b05a13e8d2db",
    "0002_retries.rollback.sql": "96f56d398f00b2121907dd7d62213c2ec00cdb0922b3c4626e0f35ce04af4288",
    # From 0003 on, no rollback files: stuck-runs' schema is the unit of removal (docs/sql.md).
    "0003_beside_the_app.sql": "5d8d84d0a30d9e1bf70c0607939ab7d4e47ba33e3d6c4d4c39eaba2aa8623c8d",
    "0004_owners_code.sql": "3abd74c4cd16d4bc4922648beb6be4427df923af748d4721f0700cdf9ff0313b",
    "0005_with_the_app.sql": "34b6002bc9c3edecb70ab41f7bee0986128e596fb29b43012e0f014c17d9bf93",
    "0006_owners.sql": "c94c9dc85bdfc0e8ce74d8b6508db5baef81e286019630bc688c5498d656e0da",
    "0007_fast_path.sql": "9bcbe239043d6fc619c2e3b551bffb6401a2e802d9e9510960db24c71241b55e",
}


def build_from_sql_dir(url: str) -> None:
    with open_conn(url) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS stuck_runs")
        conn.execute("SET search_path = stuck_runs")
        for path in sorted(sql_dir().glob("*.sql")):
            conn.execute(path.read_text())


def test_landed_migrations_are_unchanged():
    files = {p.name: p for p in migrations_dir().iterdir() if p.suffix == ".sql"}
    assert set(files) == set(LANDED), "every migration file needs a checksum line in LANDED"
    actual = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}
    assert actual == LANDED


def test_migrations_build_the_same_schema_as_sql_dir(db_url, empty_db_url):
    build_from_sql_dir(empty_db_url)
    with open_conn(db_url) as migrated, open_conn(empty_db_url) as from_sql:
        a, b = snapshot(migrated), snapshot(from_sql)
    assert a["functions"], "snapshot saw no functions: the comparison would prove nothing"
    for part in a:
        assert a[part] == b[part], f"migrations/ and sql/ differ in {part}"


def test_sql_dir_is_rerunnable(db_url):
    build_from_sql_dir(db_url)
    build_from_sql_dir(db_url)


def test_second_migrate_applies_nothing(db_url):
    assert migrate(db_url) == []


def test_concurrent_migrate_applies_once(empty_db_url):
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(
            pool.map(lambda _: run_cli("--database-url", empty_db_url, "migrate"), range(10))
        )
    assert [r.returncode for r in results] == [0] * 10, [r.stderr for r in results]
    applied_lines = [line for r in results for line in r.stdout.splitlines()]
    expected = sorted(p.stem for p in migrations_dir().glob("*.sql") if ".rollback" not in p.name)
    assert sorted(applied_lines) == [f"applied {m}" for m in expected]
    with open_conn(empty_db_url) as conn:
        rows = conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == expected


def test_migrate_into_a_schema_of_its_own_whatever_its_name(empty_db_url):
    """--schema picks where stuck-runs lives; Prisma's ?schema= only names the app's schema."""
    url = with_query(empty_db_url, schema="app")
    result = run_cli("--database-url", url, "--schema", 'App "Schema"', "migrate")
    assert result.returncode == 0, result.stderr
    with open_conn(empty_db_url) as conn:
        where = conn.execute(
            "SELECT DISTINCT relnamespace::regnamespace::text FROM pg_class"
            " WHERE relname IN ('qualification_runs', '_yoyo_migration', 'yoyo_lock',"
            " 'run_recoveries', 'stuck_runs_settings', 'stuck_runs_tables', 'active_runs')"
        ).fetchall()
        assert where == [('"App ""Schema"""',)]
        # The caller's search_path does not include the schema: the pinned path resolves it.
        conn.execute(
            'INSERT INTO "App ""Schema""".qualification_runs (status, updated_at)'
            " VALUES ('PROCESSING', now() - interval '1 hour')"
        )
        rows = conn.execute(
            'SELECT * FROM "App ""Schema""".recover_stuck_runs(\'5 minutes\')'
        ).fetchall()
        assert len(rows) == 1
        assert (
            conn.execute('SELECT count(*) FROM "App ""Schema""".run_recoveries').fetchone()[0] == 1
        )
        # Nothing anywhere else: not in public, and no app schema made up.
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            ).fetchone()[0]
            == 0
        )
        assert conn.execute("SELECT to_regnamespace('app')").fetchone()[0] is None
    listed = run_cli("--database-url", url, "--schema", 'App "Schema"', "list", "--json")
    assert listed.returncode == 0, listed.stderr


def test_schema_public_gives_the_unqualified_psql_form(empty_db_url):
    result = run_cli("--database-url", empty_db_url, "--schema", "public", "migrate")
    assert result.returncode == 0, result.stderr
    with psycopg.connect(parse_database_url(empty_db_url).conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO qualification_runs (id, status, updated_at)"
            " VALUES ('plain', 'PROCESSING', now() - interval '1 hour')"
        )
        rows = conn.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')").fetchall()
    assert rows == [("plain",)]


def test_existing_table_with_other_columns_is_left_untouched_and_adoption_proposed(empty_db_url):
    with open_conn(empty_db_url) as conn:
        conn.execute(
            "CREATE TABLE qualification_runs (id text PRIMARY KEY, status text,"
            ' "createdAt" timestamptz, "updatedAt" timestamptz, total int)'
        )
        conn.execute(
            "INSERT INTO qualification_runs VALUES ('keep-me', 'PROCESSING', now(), now(), 3)"
        )
    result = run_cli("--database-url", empty_db_url, "migrate")
    assert result.returncode == 0, result.stderr
    assert "(no completed, created_at, updated_at, completed_at, error)" in result.stderr
    command = next(
        line.strip() for line in result.stderr.splitlines() if "stuck-runs migrate --adopt" in line
    )
    assert command == (
        "stuck-runs migrate --adopt public.qualification_runs --column id=id --column status=status"
        " --column created_at=createdAt --column updated_at=updatedAt --column completed_at="
        " --column error= --column completed= --column total=total"
    )
    with open_conn(empty_db_url) as conn:
        cols = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'public.qualification_runs'::regclass"
            " AND attnum > 0 ORDER BY attnum"
        ).fetchall()
        assert [c[0] for c in cols] == ["id", "status", "createdAt", "updatedAt", "total"]
        assert conn.execute("SELECT id FROM qualification_runs").fetchall() == [("keep-me",)]
        # Everything else is installed: the functions answer, covering the built-in table only.
        assert conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')").fetchall() == []
        assert (
            conn.execute("SELECT count(*) FROM stuck_runs_tables WHERE NOT managed").fetchone()[0]
            == 0
        )
    # recover says, at every start, that the app's table is not covered.
    warned = run_cli("--database-url", empty_db_url, "recover")
    assert warned.returncode == 0, warned.stderr
    assert (
        "stuck-runs: warning: public.qualification_runs exists but recovery does not cover it"
        in warned.stderr
    )
    # The printed command, run as printed (minus the program name), adopts the table.
    adopt = run_cli("--database-url", empty_db_url, *shlex.split(command)[1:])
    assert adopt.returncode == 0, adopt.stderr
    with open_conn(empty_db_url) as conn:
        conn.execute("""UPDATE qualification_runs SET "updatedAt" = now() - interval '1 hour'""")
        rows = conn.execute(
            "SELECT table_name, run_id FROM recover_stuck_runs('5 minutes')"
        ).fetchall()
        assert rows == [("public.qualification_runs", "keep-me")]
    quiet = run_cli("--database-url", empty_db_url, "recover")
    assert "warning" not in quiet.stderr


def test_existing_table_with_all_columns_is_adopted_by_migrate_adopt(empty_db_url):
    with open_conn(empty_db_url) as conn:
        conn.execute(
            "CREATE TABLE qualification_runs (id text PRIMARY KEY, status text NOT NULL,"
            " total int NOT NULL DEFAULT 0, completed int NOT NULL DEFAULT 0,"
            " created_at timestamptz NOT NULL DEFAULT now(),"
            " updated_at timestamptz NOT NULL DEFAULT now(),"
            " completed_at timestamptz, error text, owner text)"
        )
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="theirs")
    result = run_cli("--database-url", empty_db_url, "migrate", "--adopt", "qualification_runs")
    assert result.returncode == 0, result.stderr
    assert "adopted public.qualification_runs" in result.stderr
    again = run_cli("--database-url", empty_db_url, "migrate", "--adopt", "qualification_runs")
    assert again.returncode == 0 and "adopted" not in again.stderr, again.stderr
    with open_conn(empty_db_url) as conn:
        assert [
            r[0] for r in conn.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')")
        ] == ["theirs"]


def test_uninstall_is_drop_schema_and_reinstall_works(empty_db_url):
    """No per-migration rollbacks from 0003 on: stuck-runs' schema is the unit of removal."""
    with open_conn(empty_db_url) as conn:
        conn.execute(
            "CREATE TABLE runs (id text PRIMARY KEY, status text, created_at timestamptz,"
            " updated_at timestamptz)"
        )
    adopted = run_cli(
        "--database-url",
        empty_db_url,
        "migrate",
        "--adopt",
        "runs",
        "--column",
        "completed_at=",
        "--column",
        "error=",
        "--column",
        "completed=",
        "--column",
        "total=",
    )
    assert adopted.returncode == 0, adopted.stderr
    removed = run_cli("--database-url", empty_db_url, "unadopt", "--table", "runs", "--drop-index")
    assert removed.returncode == 0, removed.stderr
    with open_conn(empty_db_url) as conn:
        conn.execute("DROP SCHEMA stuck_runs CASCADE")
        left = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " UNION ALL SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            " ORDER BY 1"
        ).fetchall()
    assert left == [("runs",), ("runs_pkey",)]
    assert migrate(empty_db_url)


@pytest.mark.parametrize("bad_lock", [0])
def test_lock_timeout_option_rejects_nonsense(bad_lock, empty_db_url):
    result = run_cli("--database-url", empty_db_url, "migrate", "--lock-timeout", str(bad_lock))
    assert result.returncode == 2


def test_installed_wheel_carries_migrations_and_sql(tmp_path):
    """`stuck-runs migrate` must find its SQL wherever the package is installed."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(root),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("stuck_runs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("migrations", "sql"):
        for path in (root / folder).glob("*.sql"):
            assert f"runner/data/{folder}/{path.name}" in names
