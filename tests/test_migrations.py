"""migrations/ vs sql/: one truth, immutable history, safe to run from many instances."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

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
}


def build_from_sql_dir(url: str) -> None:
    with open_conn(url) as conn:
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


def test_migrate_into_a_prisma_schema(empty_db_url):
    url = with_query(empty_db_url, schema="App Schema")
    result = run_cli("--database-url", url, "migrate")
    assert result.returncode == 0, result.stderr
    with open_conn(empty_db_url) as conn:
        where = conn.execute(
            "SELECT relnamespace::regnamespace::text FROM pg_class WHERE relname = 'qualification_runs'"
        ).fetchall()
        assert where == [('"App Schema"',)]
        # The caller's search_path does not include the schema: the pinned path resolves it.
        conn.execute(
            'INSERT INTO "App Schema".qualification_runs (status, updated_at)'
            " VALUES ('PROCESSING', now() - interval '1 hour')"
        )
        rows = conn.execute(
            """SELECT * FROM "App Schema".recover_stuck_runs('5 minutes')"""
        ).fetchall()
        assert len(rows) == 1
        assert conn.execute('SELECT count(*) FROM "App Schema".run_recoveries').fetchone()[0] == 1
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            ).fetchone()[0]
            == 0
        )


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
        line.strip() for line in result.stderr.splitlines() if "stuck-runs adopt" in line
    )
    assert command == (
        "stuck-runs adopt --table qualification_runs --column id=id --column status=status"
        " --column created_at=createdAt --column updated_at=updatedAt --column completed_at="
        " --column error= --column completed= --column total=total --yes"
    )
    with open_conn(empty_db_url) as conn:
        cols = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'qualification_runs'::regclass"
            " AND attnum > 0 ORDER BY attnum"
        ).fetchall()
        assert [c[0] for c in cols] == ["id", "status", "createdAt", "updatedAt", "total"]
        assert conn.execute("SELECT id FROM qualification_runs").fetchall() == [("keep-me",)]
        # Everything else is installed: the functions answer, covering nothing yet.
        assert conn.execute("SELECT * FROM recover_stuck_runs('5 minutes')").fetchall() == []
        assert conn.execute("SELECT count(*) FROM stuck_runs_tables").fetchone()[0] == 0
    # The printed command, run as printed (minus the program name), adopts the table.
    adopt = run_cli("--database-url", empty_db_url, *shlex.split(command)[1:])
    assert adopt.returncode == 0, adopt.stderr
    with open_conn(empty_db_url) as conn:
        conn.execute("""UPDATE qualification_runs SET "updatedAt" = now() - interval '1 hour'""")
        rows = conn.execute(
            "SELECT table_name, run_id FROM recover_stuck_runs('5 minutes')"
        ).fetchall()
        assert rows == [("qualification_runs", "keep-me")]


def test_existing_table_with_all_columns_is_used_with_its_rows(empty_db_url):
    with open_conn(empty_db_url) as conn:
        conn.execute(
            "CREATE TABLE qualification_runs (id text PRIMARY KEY, status text NOT NULL,"
            " total int NOT NULL DEFAULT 0, completed int NOT NULL DEFAULT 0,"
            " created_at timestamptz NOT NULL DEFAULT now(),"
            " updated_at timestamptz NOT NULL DEFAULT now(),"
            " completed_at timestamptz, error text, owner text)"
        )
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="theirs")
    migrate(empty_db_url)
    with open_conn(empty_db_url) as conn:
        assert [
            r[0] for r in conn.execute("SELECT run_id FROM recover_stuck_runs('5 minutes')")
        ] == ["theirs"]


def test_rollback_removes_everything_and_reapply_works(empty_db_url):
    from runner.migrations import read_history, yoyo_backend

    migrate(empty_db_url)
    with yoyo_backend(parse_database_url(empty_db_url)) as backend:
        backend.rollback_migrations(backend.to_rollback(read_history()))
    with open_conn(empty_db_url) as conn:
        left = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relname !~ '^(_yoyo|yoyo_lock)'"
            " UNION ALL SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        ).fetchall()
    assert left == []
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
