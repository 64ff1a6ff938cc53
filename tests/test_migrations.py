"""migrations/ vs sql/: one truth, immutable history, safe to run from many instances."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from runner.connection import parse_database_url
from runner.migrations import migrations_dir, sql_dir

from .conftest import migrate
from .helpers import insert_run, open_conn
from .schema_snapshot import snapshot

# Landed migrations never change: yoyo records only a migration's id, so an
# edited file would silently leave databases that applied the old text behind.
# A new migration adds its line here; an existing line never changes.
LANDED = {
    "0001_core.sql": "2ab8736acb6be289527ab7882700477ce4660d779d63b4e56cb5c40cfc9c14da",
    "0001_core.rollback.sql": "88f26c29582f9ff1f72024cf05cc103c624e94bef7289f29cd1ff6c369658c73",
    "0002_retries.sql": "d5ce76f586de3e272cd568a06e8a79d492011ad311b3e5e407abd7ee6c9ed57b",
    "0002_retries.rollback.sql": "5c5a03db38b65ff6be9d66ce091337b3790838e6b571ae0205a664172d95e0ab",
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


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


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
    url = empty_db_url + "&schema=App%20Schema"
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


def test_existing_table_missing_columns_stops_migrate_untouched(empty_db_url):
    with open_conn(empty_db_url) as conn:
        conn.execute(
            "CREATE TABLE qualification_runs (id text PRIMARY KEY, status text,"
            ' "createdAt" timestamptz, "updatedAt" timestamptz, total int)'
        )
        conn.execute(
            "INSERT INTO qualification_runs VALUES ('keep-me', 'PROCESSING', now(), now(), 3)"
        )
    result = run_cli("--database-url", empty_db_url, "migrate")
    assert result.returncode == 1
    assert "completed, created_at, updated_at, completed_at, error" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with open_conn(empty_db_url) as conn:
        cols = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'qualification_runs'::regclass"
            " AND attnum > 0 ORDER BY attnum"
        ).fetchall()
        assert [c[0] for c in cols] == ["id", "status", "createdAt", "updatedAt", "total"]
        assert conn.execute("SELECT id FROM qualification_runs").fetchall() == [("keep-me",)]
        assert conn.execute("SELECT to_regproc('recover_stuck_runs')").fetchone()[0] is None


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
