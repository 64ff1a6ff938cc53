"""A comparable description of everything stuck-runs installs in its schema, stuck_runs.

Used to prove that a database built from migrations/ equals one built from
sql/ (the approach of procrastinate's and pgmq's migration tests).
"""

from __future__ import annotations

import psycopg

_QUERIES = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'stuck_runs'::regnamespace AND c.relkind IN ('r', 'v', 'c')
          AND a.attnum > 0 AND NOT a.attisdropped AND c.relname NOT LIKE '\\_yoyo%'
          AND c.relname <> 'yoyo_lock'
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'stuck_runs'::regnamespace
          AND conrelid::regclass::text NOT LIKE '\\_yoyo%' AND conrelid::regclass::text <> 'yoyo_lock'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'stuck_runs' AND tablename NOT LIKE '\\_yoyo%'
          AND tablename <> 'yoyo_lock'
        ORDER BY 1""",
    "functions": """
        SELECT p.oid::regprocedure::text,
               -- The fast path is generated from the registry: its OIDs and row
               -- versions differ between two databases, its text must not.
               CASE WHEN p.proname = '_stuck_runs_quiet'
                    THEN regexp_replace(pg_get_functiondef(p.oid), '[0-9]+', 'N', 'g')
                    ELSE pg_get_functiondef(p.oid) END,
               p.proacl::text,
               p.proconfig::text, obj_description(p.oid, 'pg_proc')
        FROM pg_proc p WHERE p.pronamespace = 'stuck_runs'::regnamespace
        ORDER BY 1""",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid), c.relacl::text, obj_description(c.oid, 'pg_class')
        FROM pg_class c WHERE c.relnamespace = 'stuck_runs'::regnamespace AND c.relkind = 'v'
        ORDER BY 1""",
    "tables": """
        SELECT c.relname, c.relacl::text, obj_description(c.oid, 'pg_class')
        FROM pg_class c WHERE c.relnamespace = 'stuck_runs'::regnamespace
          AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE '\\_yoyo%' AND c.relname <> 'yoyo_lock'
        ORDER BY 1""",
    "column_comments": """
        SELECT c.relname, a.attname, col_description(c.oid, a.attnum)
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relnamespace = 'stuck_runs'::regnamespace AND a.attnum > 0
          AND col_description(c.oid, a.attnum) IS NOT NULL
        ORDER BY 1, 2""",
    "triggers": """
        SELECT tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'stuck_runs'::regnamespace AND NOT t.tgisinternal
        ORDER BY 1""",
    "settings": "SELECT * FROM stuck_runs.stuck_runs_settings",
}


def snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {name: conn.execute(query).fetchall() for name, query in _QUERIES.items()}
