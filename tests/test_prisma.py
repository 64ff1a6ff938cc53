"""The Prisma guide (docs/prisma.md, linked from the README), run with the real Prisma 7 client.

Each test gives the app of tests/prisma_app.py (the guide's TypeScript exactly as printed, in a
small Prisma 7 project) a database whose schema `app` holds what Prisma makes for the model,
installs stuck-runs as the guide's `prestart` line does, and runs the guide's snippets against
the test server (issue 11).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from .conftest import create_database, drop_database
from .docs_text import block
from .helpers import open_conn, run_cli, with_dbname, with_query
from .prisma_app import (
    FENCE,
    OFFLINE,
    PRISMA_DIR,
    engine,
    node,
    node_url,
    prisma_section,
    readme_prisma_text,
    typescript_snippets,
)

ROUTE = "app/api/qualify/recovery/route.ts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm"
    ),
]


def readme_index_line(text: str) -> str:
    """The `@@index(..., where: raw(...))` line docs/prisma.md says to add to the model (the
    block named prisma-index-line, the one such line of the page)."""
    lines = [
        line.strip()
        for lang, code in FENCE.findall(prisma_section(text))
        if lang == "prisma"
        for line in code.splitlines()
        if line.strip().startswith("@@index(") and "where: raw(" in line
    ]
    assert lines == [block("prisma-index-line").strip()], lines
    return lines[0]


# The named blocks of docs/prisma.md this module runs, by the words they begin with.
NAMED = {
    ("prisma", "generator client {"): "prisma-generator",
    ("sql", "DO $$"): "prisma-index-migration",
}


def readme_block(text: str, lang: str, start: str) -> str:
    """The one block of docs/prisma.md in `lang` that begins with `start`: its named block."""
    blocks = [
        code
        for block_lang, code in FENCE.findall(prisma_section(text))
        if block_lang == lang and code.startswith(start)
    ]
    assert blocks == [block(NAMED[lang, start])], f"expected one {lang} block starting {start!r}"
    return blocks[0]


@pytest.fixture
def project(prisma_project: Path) -> Path:
    """The session's app (tests/conftest.py): one `prisma generate` for every module."""
    return prisma_project


@pytest.fixture
def migrations(tmp_path: Path, prisma_init_migration: str) -> Path:
    """The app's prisma/migrations: its first migration."""
    (tmp_path / "migrations" / "0_init").mkdir(parents=True)
    (tmp_path / "migrations" / "0_init" / "migration.sql").write_text(prisma_init_migration)
    return tmp_path / "migrations"


@pytest.fixture
def app_url(project: Path, empty_db_url: str, migrations: Path) -> str:
    """The app's DATABASE_URL (`?schema=app`) after `prisma migrate deploy` on a new database."""
    url = with_query(node_url(empty_db_url), schema="app")
    engine(project, "deploy", url, "schema.prisma", migrations)
    return url


def statements(sql: str) -> list[str]:
    """The SQL statements of a migration script (an empty one holds only a comment)."""
    return [line for line in sql.splitlines() if line.strip() and not line.startswith("--")]


def migrate_adopt(app_url: str) -> None:
    """The README's `stuck-runs start --adopt qualification_runs`, on the app's own URL.

    With --strict, so that a failure the start-up line would only report fails the test.
    """
    result = run_cli(
        "--database-url", app_url, "start", "--adopt", "qualification_runs", "--strict"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr, result.stderr


def sweep_index(app_url: str) -> str:
    """The name of the one index on the app's table that Prisma did not make."""
    with open_conn(app_url) as conn:
        [(index,)] = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE (schemaname, tablename) ="
            " ('app', 'qualification_runs') AND indexname <> 'qualification_runs_pkey'"
        ).fetchall()
    return index


def seed(conn: psycopg.Connection, run_id: str, status: str, idle: str, done: int = 3) -> None:
    """A run of 10 prospects, last updated `idle` ago; Prisma writes UTC into timestamp(3)."""
    conn.execute(
        'INSERT INTO app.qualification_runs (id, status, "totalProspects", "processedProspects",'
        ' "createdAt", "updatedAt")'
        " VALUES (%s, %s, 10, %s, (now() - interval '2 hours') AT TIME ZONE 'UTC',"
        "         (now() - %s::interval) AT TIME ZONE 'UTC')",
        (run_id, status, done, idle),
    )


def statuses(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT id, status::text FROM app.qualification_runs").fetchall()
    return dict(rows)


def run_snippet(project: Path, app_url: str, file: str, name: str) -> tuple[dict | None, str]:
    """Call a snippet's exported function as Next.js would; (its Response as JSON, its log)."""
    result = node(
        project,
        "tsx",
        "run-snippet.ts",
        file,
        name,
        env={"DATABASE_URL": app_url, "NEXT_RUNTIME": "nodejs", "NODE_ENV": "production"},
    )
    *lines, last = result.stdout.splitlines()
    assert last.startswith("@@result "), result.stdout
    log = [line for line in lines if not line.startswith("@@")]  # the harness's own lines
    return json.loads(last.removeprefix("@@result ")), "\n".join(log) + result.stderr


def test_readme_prisma_snippets_run_with_prisma_7(project: Path, app_url: str) -> None:
    """instrumentation.ts recovers at start-up; the route's GET lists without changing anything,
    its POST recovers; all through Prisma 7's client, intervals coming back as strings."""
    migrate_adopt(app_url)
    with open_conn(app_url) as conn:
        seed(conn, "run-stuck", "PROCESSING", "30 minutes")
        seed(conn, "run-healthy", "PROCESSING", "10 seconds", done=5)
        seed(conn, "run-done", "COMPLETED", "1 hour", done=10)
        before = statuses(conn)

        get, _ = run_snippet(project, app_url, ROUTE, "GET")
        assert get is not None and get["status"] == 200, get
        [stuck] = get["body"]["stuck"]
        assert (stuck["run_id"], stuck["status"], stuck["completed"], stuck["total"]) == (
            "run-stuck",
            "PROCESSING",
            3,
            10,
        )
        assert isinstance(stuck["age"], str) and isinstance(stuck["idle"], str), stuck
        assert statuses(conn) == before, "GET changed something"

        _, log = run_snippet(project, app_url, "instrumentation.ts", "register")
        assert "[Recovery] failed" not in log, log
        recovered = [line for line in log.splitlines() if line.startswith("[Recovery]")]
        assert len(recovered) == 1 and "run-stuck" in recovered[0], log
        assert statuses(conn) == before | {"run-stuck": "FAILED"}

        seed(conn, "run-stuck-pending", "PENDING", "1 hour", done=0)
        post, _ = run_snippet(project, app_url, ROUTE, "POST")
        assert post is not None and post["status"] == 200, post
        [run] = post["body"]["recovered"]
        assert (run["run_id"], run["previous_status"], run["action"]) == (
            "run-stuck-pending",
            "PENDING",
            "failed",
        )
        assert isinstance(run["age"], str) and isinstance(run["idle"], str), run
        assert statuses(conn)["run-stuck-pending"] == "FAILED"


CATALOG = """
SELECT format('%%s %%s rls=%%s acl=%%s comment=%%s', c.relkind, c.relname, c.relrowsecurity,
              c.relacl, obj_description(c.oid, 'pg_class'))
  FROM pg_class c WHERE c.relnamespace = %(ns)s::text::regnamespace
UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = %(ns)s::text
UNION ALL SELECT format('column %%s.%%s %%s notnull=%%s default=%%s', c.relname, a.attname,
                        format_type(a.atttypid, a.atttypmod), a.attnotnull,
                        pg_get_expr(d.adbin, d.adrelid))
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
  WHERE c.relnamespace = %(ns)s::text::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT format('constraint %%s %%s', conname, pg_get_constraintdef(oid))
  FROM pg_constraint WHERE connamespace = %(ns)s::text::regnamespace
UNION ALL SELECT format('type %%s %%s %%s', t.typname, t.typtype,
                        (SELECT array_agg(enumlabel ORDER BY enumsortorder)
                         FROM pg_enum WHERE enumtypid = t.oid))
  FROM pg_type t WHERE t.typnamespace = %(ns)s::text::regnamespace
UNION ALL SELECT 'function ' || oid::regprocedure FROM pg_proc
  WHERE pronamespace = %(ns)s::text::regnamespace
UNION ALL SELECT format('trigger %%s %%s', tgname, pg_get_triggerdef(t.oid)) FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = %(ns)s::text::regnamespace
UNION ALL SELECT 'policy ' || polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
  WHERE c.relnamespace = %(ns)s::text::regnamespace
"""


def catalog(conn: psycopg.Connection, schema: str) -> set[str]:
    """Everything a schema holds, one line per object, as pg_catalog describes it.

    Names print schema-qualified whatever the connection's search_path.
    """
    with conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog")
        return {row[0] for row in conn.execute(CATALOG, {"ns": schema}).fetchall()}


def test_migrate_adopt_adds_only_the_sweep_index_to_prismas_schema(app_url: str) -> None:
    """Prisma's schema holds what `prisma migrate deploy` made plus one partial index on the
    adopted table; everything else of stuck-runs lives in `stuck_runs`, nothing in `public`."""
    with open_conn(app_url) as conn:
        prisma_made = catalog(conn, "app")
        migrate_adopt(app_url)
        adopted = catalog(conn, "app")
        migrate_adopt(app_url)  # the prestart line, at the next start
        assert catalog(conn, "app") == adopted

        assert prisma_made <= adopted, prisma_made - adopted
        index = sweep_index(app_url)
        [(indexdef,)] = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'app' AND indexname = %s", (index,)
        ).fetchall()
        assert index.startswith("qualification_runs") and " WHERE " in indexdef, indexdef
        assert adopted - prisma_made == {line for line in adopted if index in line}

        schemas = conn.execute(
            "SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace"
            " WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
        ).fetchone()[0]
        assert schemas == ["app", "public", "stuck_runs"]
        assert catalog(conn, "public") == set()
        ours = catalog(conn, "stuck_runs")
        for expected in (
            "function stuck_runs.recover_stuck_runs(",
            "v stuck_runs",
            "v active_runs",
            "r _yoyo_migration",
        ):
            assert any(line.startswith(expected) for line in ours), expected


def schema_prisma(project: Path) -> str:
    return (project / "schema.prisma").read_text()


def with_partial_indexes(schema: str, index_line: str = "") -> str:
    """schema.prisma with the `partialIndexes` preview feature on (and a line in the model)."""
    mapped = '  @@map("qualification_runs")'
    changed = schema.replace(
        'provider = "prisma-client"',
        'provider        = "prisma-client"\n  previewFeatures = ["partialIndexes"]',
    ).replace(mapped, f"  {index_line}\n{mapped}" if index_line else mapped)
    assert changed.count("partialIndexes") == 1 and index_line in changed
    return changed


def test_prisma_sees_no_drift_after_migrate_adopt(
    project: Path, app_url: str, migrations: Path
) -> None:
    """`prisma migrate dev` would not ask to reset, and Prisma's diffs from the migrations and
    from schema.prisma to the live database are empty."""
    migrate_adopt(app_url)
    assert engine(project, "dev", app_url, "schema.prisma", migrations).stdout == (
        "createMigration\n"
    )
    assert statements(engine(project, "history", app_url, "schema.prisma", migrations).stdout) == []
    assert statements(engine(project, "drift", app_url, "schema.prisma").stdout) == []

    # With partialIndexes on, Prisma sees the sweep index, and would drop it without the line.
    (project / "partial.prisma").write_text(with_partial_indexes(schema_prisma(project)))
    assert statements(engine(project, "drift", app_url, "partial.prisma").stdout) == [
        f'DROP INDEX "{sweep_index(app_url)}";'
    ]


def test_db_pull_brings_the_sweep_index_in_as_the_readme_says(project: Path, app_url: str) -> None:
    """`prisma db pull` on the app's own schema.prisma (no preview feature) writes the README's
    generator block, with `partialIndexes` turned on, and the README's @@index line."""
    migrate_adopt(app_url)
    text = readme_prisma_text()
    pulled = engine(project, "pull", app_url, "schema.prisma").stdout
    assert readme_block(text, "prisma", "generator client {") in pulled, pulled
    assert readme_index_line(text) in [line.strip() for line in pulled.splitlines()], pulled


def test_readme_partial_indexes_recipe_keeps_the_sweep_index(
    project: Path, app_url: str, migrations: Path, server_url: str
) -> None:
    """With the partialIndexes preview: the README's @@index line is what `prisma db pull`
    writes for the index adoption made; with it, the README's initShadowDb (prisma.config.ts
    is the README's) and its wrapping of the migration, Prisma sees no drift either way, on
    the adopted database and on a new one where `prisma migrate deploy` runs first."""
    migrate_adopt(app_url)
    text = readme_prisma_text()
    line = readme_index_line(text)
    (project / "partial.prisma").write_text(with_partial_indexes(schema_prisma(project)))
    pulled = engine(project, "pull", app_url, "partial.prisma").stdout
    assert line in [pulled_line.strip() for pulled_line in pulled.splitlines()]

    (project / "indexed.prisma").write_text(with_partial_indexes(schema_prisma(project), line))
    assert statements(engine(project, "drift", app_url, "indexed.prisma").stdout) == []

    # `prisma migrate dev --create-only`, then the README's wrapping of its CREATE INDEX.
    assert "--create-only" in text
    created = engine(project, "next", app_url, "indexed.prisma", migrations).stdout
    [create_index] = statements(created)
    assert create_index.startswith(f'CREATE INDEX "{sweep_index(app_url)}" ON ')
    wrapped = readme_block(text, "sql", "DO $$")
    if_not_exists = create_index.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
    assert if_not_exists in [sql_line.strip() for sql_line in wrapped.splitlines()], wrapped
    (migrations / "1_stuck_runs_sweep_index").mkdir()
    (migrations / "1_stuck_runs_sweep_index" / "migration.sql").write_text(wrapped)
    applied = engine(project, "deploy", app_url, "indexed.prisma", migrations).stdout
    assert applied.split() == ["1_stuck_runs_sweep_index"]

    # A new database: Prisma's migrations first, stuck-runs not installed yet; then the start.
    fresh_name = create_database(server_url)
    try:
        fresh = with_query(node_url(with_dbname(server_url, fresh_name)), schema="app")
        applied = engine(project, "deploy", fresh, "indexed.prisma", migrations).stdout
        assert applied.split() == ["0_init", "1_stuck_runs_sweep_index"]
        for url in (app_url, fresh):
            migrate_adopt(url)  # the next start
            assert engine(project, "dev", url, "indexed.prisma", migrations).stdout == (
                "createMigration\n"
            )
            for command in ("next", "history"):
                result = engine(project, command, url, "indexed.prisma", migrations)
                assert statements(result.stdout) == [], command
            assert statements(engine(project, "drift", url, "indexed.prisma").stdout) == []
    finally:
        drop_database(server_url, fresh_name)


def test_readme_prestart_line_migrates_prisma_first() -> None:
    """Prisma creates or changes the table before `stuck-runs start` adopts it and recovers."""
    text = readme_prisma_text()
    [prestart] = re.findall(r'"prestart": "([^"]*)"', prisma_section(text))
    assert json.loads(block("prisma-prestart"))["scripts"]["prestart"] == prestart
    order = [
        prestart.find(step)
        for step in (
            "prisma migrate deploy",
            "stuck-runs start --adopt qualification_runs",
        )
    ]
    assert -1 not in order and order == sorted(order), prestart


def test_committed_lib_prisma_is_the_readmes() -> None:
    """tests/prisma runs by hand with the same lib/prisma.ts and prisma.config.ts as the
    README's."""
    snippets = typescript_snippets(readme_prisma_text())
    assert (PRISMA_DIR / "lib" / "prisma.ts").read_text() == snippets["lib/prisma.ts"]
    assert (PRISMA_DIR / "prisma.config.ts").read_text() == snippets["prisma.config.ts"]


def test_readme_instrumentation_never_blocks_start_up_on_a_hung_database(project: Path) -> None:
    """A port that accepts and never answers: register() returns within its 10 s race.

    Run as Next.js would call it; the harness's own $disconnect afterwards may
    wait on the dead socket, so the time taken is read from the `@@result` line.
    """
    secret = "Hung-Db-Pw-123"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"postgresql://app:{secret}@127.0.0.1:{listener.getsockname()[1]}/app?schema=app"
        env = os.environ | OFFLINE | {"DATABASE_URL": url, "NEXT_RUNTIME": "nodejs"}
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                str(project / "node_modules" / ".bin" / "tsx"),
                "run-snippet.ts",
                "instrumentation.ts",
                "register",
            ],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # tsx runs node as a child: end both
        )
        returned = None
        # A snippet that hangs (the README's before issue 18) must fail the test, not hang it.
        guard = threading.Timer(40, os.killpg, (proc.pid, signal.SIGKILL))
        guard.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("@@result"):
                    returned = time.monotonic() - started
                    break
        finally:
            guard.cancel()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate(timeout=30)
    assert returned is not None, stderr
    assert returned < 10 + 8, returned  # the race's 10 s, plus tsx and Prisma loading
    [failed] = [line for line in stderr.splitlines() if line.startswith("[Recovery] failed")]
    # Prisma's own wait to start a transaction (2 s) or the snippet's 10 s timer, whichever first.
    assert failed.removeprefix("[Recovery] failed, starting anyway: ") in (
        "Transaction API error: Unable to start a transaction in the given time.",
        "no answer within 10 s",
    ), stderr
    assert secret not in stderr


# Writes a worker could make to report progress on a run idle for an hour, through the README's
# lib/progress.ts and the client; what each does to updatedAt decides whether it stays alive.
PROGRESS_WRITES = """
import { prisma } from "@/lib/prisma";
import { reportProgress, reportProgressRaw } from "@/lib/progress";

await reportProgress("client-field", 4);
await prisma.qualificationRun.update({ where: { id: "client-same" }, data: { processedProspects: 3 } });
await prisma.qualificationRun.updateMany({ where: { id: "client-many" }, data: { processedProspects: 4 } });
await prisma.qualificationRun.upsert({
  where: { id: "client-upsert" },
  update: { processedProspects: 4 },
  create: {},
});
await prisma.qualificationRun.update({ where: { id: "client-empty" }, data: {} });
await reportProgressRaw("raw-readme", 4);
await prisma.$executeRaw`UPDATE app.qualification_runs SET "processedProspects" = ${4} WHERE id = ${"raw-bare"}`;

// An app server whose clock runs an hour behind the database's: Prisma takes @updatedAt from it.
const RealDate = Date;
const skew = -3_600_000;
globalThis.Date = class extends RealDate {
  constructor(...args: unknown[]) {
    if (args.length === 0) super(RealDate.now() + skew);
    else super(...(args as [string]));
  }
  static now() {
    return RealDate.now() + skew;
  }
} as DateConstructor;
await reportProgress("client-skewed", 4);
await prisma.$disconnect();
"""


def test_readme_progress_writes_are_signs_of_life_and_others_are_not(
    project: Path, app_url: str
) -> None:
    """What the README says bumps @updatedAt does, with the real client; what it says does not
    (update with empty data, $executeRaw without updatedAt, an app clock behind the
    database's) leaves a working run looking idle, and recovery takes it for stuck.

    The database's TimeZone is New York, so a raw `now()` into Prisma's UTC timestamp(3)
    would be hours off: the README's `now() AT TIME ZONE 'UTC'` is what keeps the run alive.
    """
    migrate_adopt(app_url)
    alive = {"client-field", "client-same", "client-many", "client-upsert", "raw-readme"}
    idle = {"client-empty", "raw-bare", "client-skewed"}
    with open_conn(app_url) as conn:
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f"ALTER DATABASE \"{database}\" SET TimeZone = 'America/New_York'")
        for run_id in alive | idle:
            seed(conn, run_id, "PROCESSING", "1 hour")
    (project / "progress-writes.ts").write_text(PROGRESS_WRITES)
    node(project, "tsx", "progress-writes.ts", env={"DATABASE_URL": app_url})

    recovered = run_cli("--database-url", app_url, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    with open_conn(app_url) as conn:
        progress = dict(
            conn.execute('SELECT id, "processedProspects" FROM app.qualification_runs').fetchall()
        )
        assert statuses(conn) == {run_id: "PROCESSING" for run_id in alive} | {
            run_id: "FAILED" for run_id in idle
        }
    # The progress itself was written everywhere but the empty update.
    assert progress == {run_id: 3 for run_id in ("client-same", "client-empty")} | {
        run_id: 4 for run_id in (alive | idle) - {"client-same", "client-empty"}
    }
