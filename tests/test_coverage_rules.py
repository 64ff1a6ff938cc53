"""One rule for "recovery covers this table", however it is asked.

The sweep reads the `_stuck_runs_covered` view, which spells out `_stuck_runs_fits()` inline
(it runs at every call); the warnings and `stuck_runs_coverage_problems()` use
`_stuck_runs_mapping_problem()`. If the two ever disagreed, a table would be left out of the
sweep with no warning (silent loss of coverage), or warned about while swept.
"""

from __future__ import annotations

from .test_upgrades import conn_to

TABLE = """
CREATE TABLE app.runs (
    id text PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(), completed_at timestamptz, error text,
    completed integer NOT NULL DEFAULT 0, total integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0
)
"""

# Each column, each type it may be changed to (USING NULL when no cast exists).
TYPES = {
    "status": ["varchar(20)", "app.st", "integer", "boolean", "char(10)", "app.citext_like"],
    "updated_at": ["timestamp", "date", "text", "bigint"],
    "created_at": ["timestamp", "date", "text"],
    "completed_at": ["timestamp", "date", "text"],
    "completed": ["bigint", "smallint", "numeric", "text"],
    "total": ["bigint", "numeric", "real"],
    "attempts": ["bigint", "numeric"],
    "error": ["varchar(300)", "integer", "app.st", "jsonb"],
    "id": ["uuid", "bigint", "varchar(40)"],
}


def cases() -> list[tuple[str, str]]:
    return [(column, type_) for column, types in TYPES.items() for type_ in types] + [
        (column, "DROP") for column in TYPES
    ]


def test_the_view_and_the_coverage_report_agree(db_url):
    disagreements = []
    with conn_to(db_url, "stuck_runs") as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TYPE app.st AS ENUM ('PENDING', 'PROCESSING', 'FAILED', 'DONE')")
        conn.execute("CREATE DOMAIN app.citext_like AS text")
        conn.execute(TABLE)
        for n, (column, type_) in enumerate(cases()):
            table = f"app.runs_{n}"
            conn.execute(f"CREATE TABLE {table} (LIKE app.runs INCLUDING ALL)")
            conn.execute(f"SELECT adopt_runs_table('{table}', attempts_column => 'attempts')")
            covered = (
                f"SELECT count(*) FROM _stuck_runs_covered WHERE table_name = '{table}'::regclass"
            )
            problem = (
                "SELECT _stuck_runs_mapping_problem(t) FROM stuck_runs_tables AS t"
                f" WHERE t.table_name = '{table}'::regclass"
            )
            assert conn.execute(covered).fetchone() == (1,)
            assert conn.execute(problem).fetchone() == (None,)
            if column == "id" or type_ == "DROP":
                conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS runs_{n}_pkey")
            if type_ == "DROP":
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
            else:
                for change in (
                    "DROP DEFAULT",
                    "DROP NOT NULL",
                    f"TYPE {type_} USING NULL::{type_}",
                ):
                    conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} {change}")
            swept = conn.execute(covered).fetchone()[0]
            (why,) = conn.execute(problem).fetchone()
            if (swept == 1) != (why is None):
                disagreements.append((column, type_, swept, why))
    assert disagreements == []
