"""The owner of an adopted table is not trusted (issue 25, threat model class 2).

The app role owns its table, its enum and its schema. It may attach code to the
table: triggers, casts on its enum, CHECK functions, generated columns, index
expressions, rules, policies. A superuser's recovery (a pg_cron job, psql, the
runner, `migrate --adopt`) must never run that code as the superuser. Every
trojan below records, in sequences (a rollback cannot undo nextval), that it ran
and whether it ran with superuser rights, and tries the real attack: make its
role a superuser.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from .helpers import insert_run, open_conn, run_cli, with_query

# The trojan every vector calls: counts its calls, counts those made with
# superuser rights, and tries to make the owner a superuser.
TROJAN = """
CREATE FUNCTION app.trojan() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.nextval('app.trojan_calls');
    -- Not current_setting('is_superuser'): that follows SET ROLE, not SECURITY DEFINER.
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        PERFORM pg_catalog.nextval('app.ran_as_superuser');
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', pg_catalog.current_setting('app.owner'));
    END IF;
    RETURN true;
END $$;
"""


@dataclass
class Hostile:
    url: str  # the superuser's URL, ?schema=app
    owner: str

    def counters(self, conn: psycopg.Connection) -> tuple[int, int]:
        def count(seq: str) -> int:
            last, called = conn.execute(f"SELECT last_value, is_called FROM app.{seq}").fetchone()
            return last if called else 0

        return count("trojan_calls"), count("ran_as_superuser")

    def is_superuser(self, conn: psycopg.Connection) -> bool:
        return conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (self.owner,)
        ).fetchone()[0]


def make_hostile(empty_db_url: str, attach: str, *, before_adoption: bool = False) -> Hostile:
    """The app role's schema, enum and table (Prisma's shape), adopted by the superuser.

    `attach` is SQL the owner runs on its own table, before or after adoption.
    """
    owner = f"app_{uuid.uuid4().hex[:8]}"
    url = with_query(empty_db_url, schema="app")
    with open_conn(empty_db_url) as conn:
        conn.execute(f'CREATE ROLE "{owner}"')
        conn.execute(f'ALTER DATABASE "{conn.info.dbname}" SET app.owner = "{owner}"')
        conn.execute(f'CREATE SCHEMA app AUTHORIZATION "{owner}"')
        conn.execute(f'SET ROLE "{owner}"')
        conn.execute("CREATE SEQUENCE app.trojan_calls")
        conn.execute("CREATE SEQUENCE app.ran_as_superuser")
        conn.execute("GRANT USAGE ON SCHEMA app TO PUBLIC")
        conn.execute(
            "GRANT USAGE, UPDATE, SELECT ON app.trojan_calls, app.ran_as_superuser TO PUBLIC"
        )
        conn.execute(
            "CREATE TYPE app.\"RunStatus\" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')"
        )
        conn.execute(
            'CREATE TABLE app.runs (id text PRIMARY KEY, status app."RunStatus" NOT NULL,'
            " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL,"
            " completed_at timestamptz, error text, completed integer, total integer)"
        )
        conn.execute(TROJAN)
        conn.execute("GRANT EXECUTE ON FUNCTION app.trojan() TO PUBLIC")
        if before_adoption:
            conn.execute(attach)
        conn.execute("RESET ROLE")
    adopted = run_cli("--database-url", url, "migrate", "--adopt", "runs")
    assert adopted.returncode == 0, adopted.stderr
    with open_conn(empty_db_url) as conn:
        if not before_adoption:
            conn.execute(f'SET ROLE "{owner}"')
            conn.execute(attach)
            conn.execute("RESET ROLE")
        # The app writes its own runs (its code runs as itself, as it should).
        conn.execute(f'SET ROLE "{owner}"')
        conn.execute(
            "INSERT INTO app.runs (id, status, updated_at, completed, total) VALUES"
            " ('app-stuck', 'PROCESSING', now() - interval '1 hour', 3, 7),"
            " ('app-fresh', 'PROCESSING', now(), 1, 7)"
        )
        conn.execute("RESET ROLE")
        insert_run(conn, "PROCESSING", idle="1 hour", run_id="builtin-stuck")
    return Hostile(url, owner)


@pytest.fixture
def drop_roles(empty_db_url: str) -> Iterator[list[Hostile]]:
    made: list[Hostile] = []
    yield made
    with open_conn(empty_db_url) as conn:
        conn.execute("DROP SCHEMA IF EXISTS app CASCADE")
        for h in made:
            conn.execute(f'DROP OWNED BY "{h.owner}"')
            conn.execute(f'DROP ROLE "{h.owner}"')


# vector -> (the owner's SQL, whether recovery must reach that code (None: no
# matter), whether the run is recovered: a DO ALSO rule makes its own table
# unsweepable, which its owner may).
VECTORS = {
    "before update trigger": (
        """
        CREATE FUNCTION app.on_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM app.trojan(); RETURN NEW; END $$;
        CREATE TRIGGER on_update BEFORE UPDATE ON app.runs
            FOR EACH ROW EXECUTE FUNCTION app.on_update();
    """,
        True,
        True,
    ),
    "after update statement trigger": (
        """
        CREATE FUNCTION app.after_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM app.trojan(); RETURN NULL; END $$;
        CREATE TRIGGER after_update AFTER UPDATE ON app.runs
            FOR EACH STATEMENT EXECUTE FUNCTION app.after_update();
    """,
        True,
        True,
    ),
    "cast of its enum to text": (
        """
        CREATE FUNCTION app.status_text(s app."RunStatus") RETURNS text LANGUAGE plpgsql AS $$
        BEGIN PERFORM app.trojan(); RETURN pg_catalog.enum_out(s)::text; END $$;
        CREATE CAST (app."RunStatus" AS text) WITH FUNCTION app.status_text(app."RunStatus");
    """,
        False,
        True,
    ),
    "cast of text to its enum": (
        """
        CREATE FUNCTION app.text_status(s text) RETURNS app."RunStatus" LANGUAGE plpgsql AS $$
        BEGIN PERFORM app.trojan(); RETURN pg_catalog.enum_in(s::cstring, 'app."RunStatus"'::regtype); END $$;
        CREATE CAST (text AS app."RunStatus") WITH FUNCTION app.text_status(text);
    """,
        False,
        True,
    ),
    "generated column": (
        """
        CREATE FUNCTION app.gen(s app."RunStatus") RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN RETURN app.trojan(); END $$;
        ALTER TABLE app.runs ADD COLUMN g boolean GENERATED ALWAYS AS (app.gen(status)) STORED;
    """,
        True,
        True,
    ),
    "index expression": (
        """
        CREATE FUNCTION app.idx(s app."RunStatus", e text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN RETURN app.trojan(); END $$;
        CREATE INDEX runs_idx_trojan ON app.runs (app.idx(status, error));
    """,
        True,
        True,
    ),
    "rule": (
        """
        CREATE TABLE app.audit_rule (n boolean);
        CREATE RULE on_update AS ON UPDATE TO app.runs DO ALSO
            INSERT INTO app.audit_rule SELECT app.trojan();
    """,
        None,  # the test's own UPDATE (as the owner) fires it; recovery cannot
        False,
    ),
    "immutable function folded by the planner in an index expression": (
        """
        CREATE FUNCTION app.k() RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM app.trojan(); RETURN 'k'; END $$;
        CREATE INDEX runs_folded ON app.runs ((id || app.k()));
    """,
        None,  # planned as the owner, or not at all
        True,
    ),
    "immutable function folded by the planner in a partial index predicate": (
        """
        CREATE FUNCTION app.k() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN RETURN app.trojan(); END $$;
        CREATE INDEX runs_folded ON app.runs (id) WHERE app.k();
    """,
        None,
        True,
    ),
    "status retyped to a domain with an implicit cast": (
        """
        CREATE DOMAIN app.st AS app."RunStatus";
        DROP INDEX app.runs_stuck_runs_idx;
        ALTER TABLE app.runs ALTER COLUMN status TYPE app.st;
        CREATE FUNCTION app.st_text(s app."RunStatus") RETURNS text LANGUAGE plpgsql AS $$
        BEGIN PERFORM app.trojan(); RETURN pg_catalog.enum_out(s)::text; END $$;
        CREATE CAST (app."RunStatus" AS text) WITH FUNCTION app.st_text(app."RunStatus") AS IMPLICIT;
    """,
        None,
        False,  # no longer fits its mapping: not covered, and said so
    ),
    "check constraint": (
        """
        CREATE FUNCTION app.valid(s app."RunStatus") RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN RETURN app.trojan(); END $$;
        ALTER TABLE app.runs ADD CONSTRAINT runs_valid CHECK (app.valid(status));
    """,
        True,
        True,
    ),
    "forced row-level security policy": (
        """
        ALTER TABLE app.runs ENABLE ROW LEVEL SECURITY;
        ALTER TABLE app.runs FORCE ROW LEVEL SECURITY;
        CREATE POLICY everything ON app.runs USING (app.trojan()) WITH CHECK (app.trojan());
    """,
        True,
        True,
    ),
}


def superuser_uses(h: Hostile) -> None:
    """Everything a superuser does with stuck-runs: psql, the pg_cron statement, the runner."""
    with open_conn(h.url) as conn:
        for call in (
            "SELECT count(*) FROM stuck_runs.active_runs",
            "SELECT count(*) FROM stuck_runs.stuck_runs",
            "SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')",
        ):
            conn.execute(call).fetchall()
        # Not by reading app.runs here: even planning a read of it folds the owner's
        # immutable functions, as this very session.
        # Not FAILED, or not covered: a vector that makes its table unsweepable.
        with contextlib.suppress(psycopg.errors.InvalidParameterValue, psycopg.errors.NoDataFound):
            conn.execute("SELECT * FROM stuck_runs.resume_run('app-stuck')").fetchall()
        # As the owner: the test itself must not fire the owner's code as a superuser.
        conn.execute(f'SET ROLE "{h.owner}"')
        conn.execute(
            "UPDATE app.runs SET updated_at = now() - interval '1 hour' WHERE id = 'app-stuck'"
        )
        conn.execute("RESET ROLE")
    for args in (
        ("list",),
        ("recover", "--older-than", "5 minutes"),
        ("migrate", "--adopt", "runs"),
    ):
        result = run_cli("--database-url", h.url, *args)
        assert "Traceback" not in result.stderr, result.stderr
    # A vector may make its table unfit for adoption.
    with open_conn(h.url) as conn, contextlib.suppress(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM stuck_runs.adopt_runs_table('app.runs')")


@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_owner_code_never_runs_as_the_superuser(vector, empty_db_url, drop_roles):
    attach, reaches_code, recovered = VECTORS[vector]
    h = make_hostile(empty_db_url, attach, before_adoption=vector == "check constraint")
    drop_roles.append(h)
    superuser_uses(h)
    with open_conn(empty_db_url) as conn:
        calls, as_superuser = h.counters(conn)
        assert as_superuser == 0, (
            f"{vector}: the owner's code ran {as_superuser} time(s) as a superuser"
        )
        assert not h.is_superuser(conn)
        # Where recovery must meet the owner's code, it ran, as the owner, and
        # recovery still did its job there.
        if reaches_code is not None:
            assert (calls > 0) == reaches_code, (vector, calls)
        status, error = conn.execute(
            "SELECT format('%s', status), error FROM app.runs WHERE id = 'app-stuck'"
        ).fetchone()
        if recovered:
            assert status == "FAILED" and error.startswith("Recovered as stuck"), (status, error)
        else:
            assert status == "PROCESSING", (vector, status)
        assert conn.execute(
            "SELECT format('%s', status) FROM app.runs WHERE id = 'app-fresh'"
        ).fetchone() == ("PROCESSING",)
        assert conn.execute(
            "SELECT status FROM stuck_runs.qualification_runs WHERE id = 'builtin-stuck'"
        ).fetchone() == ("FAILED",)
        # The audit names the superuser, who recovered, for both tables.
        audited = conn.execute(
            "SELECT table_name, recovered_by FROM stuck_runs.run_recoveries"
            " WHERE run_id IN ('app-stuck', 'builtin-stuck') ORDER BY id"
        ).fetchall()
        assert any(t == "app.runs" for t, _ in audited) == recovered
        assert any(t.endswith("qualification_runs") for t, _ in audited)
        assert {who for _, who in audited} == {conn.info.user}


def test_owner_code_cannot_leave_anything_in_the_callers_session(empty_db_url, drop_roles):
    """A plain SET or a temporary table would outlive the step: the step is refused and undone."""
    h = make_hostile(
        empty_db_url,
        """
        CREATE FUNCTION app.linger() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM app.trojan();
            PERFORM pg_catalog.set_config('search_path', 'app, pg_catalog', false);
            CREATE TEMPORARY VIEW pg_stat_activity AS SELECT app.trojan() AS trojan;
            RETURN NEW;
        END $$;
        CREATE TRIGGER linger BEFORE UPDATE ON app.runs FOR EACH ROW EXECUTE FUNCTION app.linger();
        """,
    )
    drop_roles.append(h)
    with open_conn(h.url) as conn:
        conn.execute("SET search_path = public")
        with conn.cursor() as cur:
            notices: list[str] = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            rows = cur.execute(
                "SELECT table_name, run_id FROM stuck_runs.recover_stuck_runs('5 minutes')"
            ).fetchall()
        assert [(t.split(".")[-1], r) for t, r in rows] == [("qualification_runs", "builtin-stuck")]
        assert any("app.runs was not swept" in n and "changed this session" in n for n in notices)
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
        ).fetchone() == (0,)
        conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
        calls, as_superuser = h.counters(conn)
        assert calls == 1 and as_superuser == 0
        assert conn.execute(
            "SELECT format('%s', status) FROM app.runs WHERE id = 'app-stuck'"
        ).fetchone() == ("PROCESSING",)


def test_a_role_that_cannot_act_as_the_owner_is_warned_and_recovers_the_rest(
    empty_db_url, drop_roles
):
    """The role set up with stuck_runs_grant_sql() is not the owner: it may not run its code."""
    h = make_hostile(empty_db_url, VECTORS["before update trigger"][0])
    drop_roles.append(h)
    worker = f"worker_{uuid.uuid4().hex[:8]}"
    with open_conn(h.url) as conn:
        conn.execute(f'CREATE ROLE "{worker}"')
        for grant in conn.execute(
            "SELECT * FROM stuck_runs.stuck_runs_grant_sql(%s)", (worker,)
        ).fetchall():
            conn.execute(grant[0])
        conn.execute(f'SET ROLE "{worker}"')
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        rows = conn.execute(
            "SELECT table_name, run_id FROM stuck_runs.recover_stuck_runs('5 minutes')"
        ).fetchall()
        conn.execute("RESET ROLE")
        assert [(t.split(".")[-1], r) for t, r in rows] == [("qualification_runs", "builtin-stuck")]
        assert any(
            "app.runs was not swept" in n and "cannot act as that role" in n for n in notices
        ), notices
        calls, _ = h.counters(conn)
        assert calls == 0
        conn.execute(f'DROP OWNED BY "{worker}"')
        conn.execute(f'DROP ROLE "{worker}"')


def test_row_level_security_is_never_silent(empty_db_url, drop_roles):
    """Policies hide rows from a granted role and are the owner's code: it is told, not fooled."""
    h = make_hostile(
        empty_db_url,
        """
        ALTER TABLE app.runs ENABLE ROW LEVEL SECURITY;
        CREATE POLICY nothing ON app.runs USING (false);
        """,
    )
    drop_roles.append(h)
    worker = f"worker_{uuid.uuid4().hex[:8]}"
    with open_conn(h.url) as conn:
        conn.execute(f'CREATE ROLE "{worker}"')
        for grant in conn.execute(
            "SELECT * FROM stuck_runs.stuck_runs_grant_sql(%s)", (worker,)
        ).fetchall():
            conn.execute(grant[0])
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute(f'SET ROLE "{worker}"')
        conn.execute("SELECT * FROM stuck_runs.active_runs").fetchall()
        conn.execute("SELECT * FROM stuck_runs.recover_stuck_runs('5 minutes')").fetchall()
        conn.execute("RESET ROLE")
        # It may not act as the owner, whose policies they are: told so, for both.
        assert any("app.runs was not read" in n and "cannot act as" in n for n in notices)
        assert any("app.runs was not swept" in n and "cannot act as" in n for n in notices)
        # The superuser recovers it, as its owner (who is not subject to its policies).
        rows = conn.execute(
            "SELECT run_id FROM stuck_runs.recover_stuck_runs('5 minutes') WHERE table_name = 'app.runs'"
        ).fetchall()
        assert rows == [("app-stuck",)]
        conn.execute(f'DROP OWNED BY "{worker}"')
        conn.execute(f'DROP ROLE "{worker}"')


def test_the_audit_is_stamped_with_its_writer_and_time(db_url):
    forger = f"forger_{uuid.uuid4().hex[:8]}"
    with open_conn(db_url) as conn:
        conn.execute(f'CREATE ROLE "{forger}"')
        for grant in conn.execute("SELECT * FROM stuck_runs_grant_sql(%s)", (forger,)).fetchall():
            conn.execute(grant[0])
        conn.execute(f'SET ROLE "{forger}"')
        conn.execute(
            "INSERT INTO run_recoveries (table_name, run_id, previous_status, older_than,"
            " recovered_at, recovered_by) VALUES ('x', 'forged', 'PROCESSING', '5 minutes',"
            " now() - interval '3 days', 'postgres')"
        )
        conn.execute("RESET ROLE")
        by, age = conn.execute(
            "SELECT recovered_by, now() - recovered_at FROM run_recoveries WHERE run_id = 'forged'"
        ).fetchone()
        assert by == forger
        assert age.total_seconds() < 60
        conn.execute("DELETE FROM run_recoveries WHERE run_id = 'forged'")
        conn.execute(f'DROP OWNED BY "{forger}"')
        conn.execute(f'DROP ROLE "{forger}"')


def test_a_deferred_trigger_never_fires_outside_the_step(empty_db_url, drop_roles):
    """A deferred check fires at COMMIT, outside the table's step.

    Before PostgreSQL 17 it would fire as whoever commits; on every version a
    failure there would lose every table's recovery. The owner's code can queue
    one on any deferrable constraint it reaches and defer it again, so while a
    non-superuser owns one, tables of untrusted owners are refused.
    """
    h = make_hostile(
        empty_db_url,
        """
        CREATE FUNCTION app.later() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM app.trojan(); RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER later AFTER UPDATE ON app.runs
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app.later();
        """,
    )
    drop_roles.append(h)
    with open_conn(h.url) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        rows = conn.execute(
            "SELECT table_name, run_id FROM stuck_runs.recover_stuck_runs('5 minutes')"
        ).fetchall()
        calls, as_superuser = h.counters(conn)
        assert as_superuser == 0 and not h.is_superuser(conn)
        assert {r for _, r in rows} == {"builtin-stuck"} and calls == 0
        assert any("deferrable constraint or trigger" in n for n in notices), notices


def test_a_run_the_owners_code_keeps_active_is_not_reported_nor_blocks_others(
    empty_db_url, drop_roles
):
    """A trigger that undoes recovery's status must not fill every batch, for ever."""
    h = make_hostile(
        empty_db_url,
        """
        CREATE FUNCTION app.keep() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.status := OLD.status; NEW.updated_at := OLD.updated_at; RETURN NEW; END $$;
        CREATE TRIGGER keep BEFORE UPDATE ON app.runs FOR EACH ROW EXECUTE FUNCTION app.keep();
        """,
    )
    drop_roles.append(h)
    with open_conn(h.url) as conn:
        rows = conn.execute(
            "SELECT run_id FROM stuck_runs.recover_stuck_runs('5 minutes', max_runs => 1)"
        ).fetchall()
        assert rows == [("builtin-stuck",)]
        assert conn.execute(
            "SELECT count(*) FROM stuck_runs.run_recoveries WHERE table_name = 'app.runs'"
        ).fetchone() == (0,)


def test_no_value_in_a_table_can_forge_a_line_of_output(db_url):
    with open_conn(db_url) as conn:
        insert_run(conn, "PROCESSING", idle="2 hours", run_id="x\n  - Run forged: \x1b[2J")
    result = run_cli("--database-url", db_url, "recover")
    assert result.returncode == 0, result.stderr
    assert "forged" in result.stderr
    assert not any(line.startswith("  - Run forged") for line in result.stderr.splitlines())
    assert "\x1b" not in result.stderr


def test_a_locked_table_stalls_only_itself_and_briefly(empty_db_url, drop_roles):
    """The owner (or a long migration) holds its table: the others are recovered in seconds."""
    import time

    h = make_hostile(empty_db_url, "SELECT 1")
    drop_roles.append(h)
    with open_conn(h.url) as holder, open_conn(h.url) as conn:
        holder.execute("BEGIN")
        holder.execute(f'SET LOCAL ROLE "{h.owner}"')
        holder.execute("LOCK TABLE app.runs IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET lock_timeout = '1h'")  # as a database or role setting would
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        started = time.monotonic()
        rows = conn.execute(
            "SELECT table_name, run_id FROM stuck_runs.recover_stuck_runs('5 minutes')"
        ).fetchall()
        listed = conn.execute("SELECT run_id FROM stuck_runs.active_runs").fetchall()
        took = time.monotonic() - started
        holder.execute("ROLLBACK")
        assert [r for _, r in rows] == ["builtin-stuck"]
        assert listed == []
        assert any("app.runs was not swept" in n and "lock timeout" in n for n in notices), notices
        assert any("app.runs was not read" in n for n in notices), notices
        assert took < 6, took
        assert conn.execute("SHOW lock_timeout").fetchone() == ("1h",)


def test_what_cannot_be_rolled_back_is_undone_and_deferred_checks_stay_local(
    empty_db_url, drop_roles
):
    """Session locks and prepared statements outlive a rollback; a deferred FK fails at COMMIT."""
    h = make_hostile(
        empty_db_url,
        """
        CREATE FUNCTION app.linger() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_catalog.pg_advisory_lock(4242);
            PREPARE lingering AS SELECT 1;
            LISTEN lingering;
            CREATE TEXT SEARCH DICTIONARY pg_temp.lingering (TEMPLATE = pg_catalog.simple);
            RETURN NEW;
        END $$;
        CREATE TRIGGER linger BEFORE UPDATE ON app.runs FOR EACH ROW EXECUTE FUNCTION app.linger();
        """,
    )
    drop_roles.append(h)
    with open_conn(h.url) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        rows = conn.execute(
            "SELECT run_id FROM stuck_runs.recover_stuck_runs('5 minutes')"
        ).fetchall()
        assert rows == [("builtin-stuck",)]
        assert any("changed this session" in n for n in notices), notices
        assert conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)


def test_a_deferred_check_that_fails_at_commit_costs_only_its_table(empty_db_url, drop_roles):
    h = make_hostile(
        empty_db_url,
        """
        CREATE TABLE app.allowed (status app."RunStatus" PRIMARY KEY);
        INSERT INTO app.allowed VALUES ('PENDING'), ('PROCESSING');
        ALTER TABLE app.runs ADD FOREIGN KEY (status) REFERENCES app.allowed
            DEFERRABLE INITIALLY DEFERRED;
        """,
    )
    drop_roles.append(h)
    with open_conn(h.url) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        rows = conn.execute(
            "SELECT run_id FROM stuck_runs.recover_stuck_runs('5 minutes')"
        ).fetchall()
        assert rows == [("builtin-stuck",)]
        assert any(
            "app.runs was not swept" in n and "deferrable constraint" in n for n in notices
        ), notices
        assert conn.execute(
            "SELECT status FROM stuck_runs.qualification_runs WHERE id = 'builtin-stuck'"
        ).fetchone() == ("FAILED",)


def test_resume_is_not_stopped_by_another_owners_table(empty_db_url, drop_roles):
    h = make_hostile(
        empty_db_url,
        """
        CREATE FUNCTION app.refuse(v text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN RAISE EXCEPTION 'not one of mine'; END $$;
        CREATE DOMAIN app.rid AS text CHECK (app.refuse(VALUE));
        """,
    )
    drop_roles.append(h)
    with open_conn(h.url) as holder, open_conn(h.url) as conn:
        conn.execute("UPDATE stuck_runs.qualification_runs SET status = 'FAILED'")
        holder.execute("BEGIN")
        holder.execute(f'SET LOCAL ROLE "{h.owner}"')
        holder.execute("LOCK TABLE app.runs IN ACCESS EXCLUSIVE MODE")
        conn.execute("SET lock_timeout = '1h'")  # as a database or role setting would
        row = conn.execute(
            "SELECT table_name, status FROM stuck_runs.resume_run('builtin-stuck')"
        ).fetchone()
        holder.execute("ROLLBACK")
        assert row[1] == "PENDING"
        assert conn.execute("SHOW lock_timeout").fetchone() == ("1h",)
