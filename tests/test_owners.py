"""Owner-aware recovery: a restart recovers its own runs at once, a live owner's never.

G1 (restart), G3 (no false rescue), G4 (fencing) and the upgrade from 0.3's
0005, in SQL against the real server. The timed targets (G2, G5) are in
tests/perf/bench_owners.py.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid

import psycopg
import pytest

from .cluster import Cluster, system_postgres_available
from .conftest import migrate
from .helpers import insert_run, open_conn, status_of
from .test_upgrades import build_release


def life() -> str:
    return str(uuid.uuid4())


def start(
    conn: psycopg.Connection, instance: str, token: str | None, older_than: str = "30 minutes"
):
    return conn.execute(
        "SELECT run_id, status, reason FROM stuck_runs_start(%s, %s, %s::interval)",
        (instance, token, older_than),
    ).fetchall()


def claim(conn: psycopg.Connection, run_id: str, token: str) -> bool:
    return conn.execute(
        "SELECT stuck_runs_claim('qualification_runs', %s, %s)", (run_id, token)
    ).fetchone()[0]


def owned_run(conn: psycopg.Connection, token: str, idle: str = "1 minute") -> str:
    run_id = insert_run(conn, "PROCESSING", idle="0 seconds")
    assert claim(conn, run_id, token)
    conn.execute(
        "UPDATE qualification_runs SET updated_at = now() - %s::interval WHERE id = %s",
        (idle, run_id),
    )
    return run_id


def heartbeat(conn: psycopg.Connection, token: str) -> tuple[str, int | None]:
    return conn.execute(
        "SELECT state, recovered FROM stuck_runs_heartbeat(%s)", (token,)
    ).fetchone()


def beat_for(conn: psycopg.Connection, token: str, seconds: float) -> list[tuple[str, int | None]]:
    """Heartbeat every 0.2 s for `seconds`, as a live instance does (well inside dead_after)."""
    beats = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        beats.append(heartbeat(conn, token))
        time.sleep(0.2)
    return beats


def test_a_restart_recovers_its_own_runs_at_once_and_nothing_else(conn):
    web1, other = life(), life()
    start(conn, "web", web1)
    start(conn, "other", other)
    mine = owned_run(conn, web1, idle="1 minute")
    theirs = owned_run(conn, other, idle="1 minute")
    unowned = insert_run(conn, "PROCESSING", idle="1 minute")

    recovered = start(conn, "web", life())

    assert recovered == [(mine, "FAILED", "instance web restarted")]
    assert status_of(conn, theirs) == "PROCESSING"
    assert status_of(conn, unowned) == "PROCESSING"
    error, owner = conn.execute(
        "SELECT error, owner FROM qualification_runs WHERE id = %s", (mine,)
    ).fetchone()
    assert error.startswith("Recovered by stuck-runs: PROCESSING when its owner's life ended")
    assert owner == web1, "a failed run keeps the life that had it, for the record"
    assert conn.execute("SELECT run_id, action, reason FROM run_recoveries").fetchall() == [
        (mine, "failed", "instance web restarted")
    ]


def test_the_same_life_again_ends_nothing(conn):
    token = life()
    start(conn, "web", token)
    run_id = owned_run(conn, token)
    assert start(conn, "web", token) == []
    assert status_of(conn, run_id) == "PROCESSING"
    assert heartbeat(conn, token) == ("alive", 0)


def test_a_deploy_step_ends_the_earlier_lives_without_starting_one(conn):
    token = life()
    start(conn, "web", token)
    run_id = owned_run(conn, token)
    assert start(conn, "web", None) == [(run_id, "FAILED", "instance web restarted")]
    assert heartbeat(conn, token)[0] == "fenced"
    lives = conn.execute(
        "SELECT life, state FROM stuck_runs_instances WHERE instance = 'web'"
    ).fetchall()
    assert lives == [(token, "ended")]


def test_a_live_owners_silent_run_is_never_recovered(conn):
    token = life()
    start(conn, "worker", token)
    silent = owned_run(conn, token, idle="2 hours")
    unowned = insert_run(conn, "PROCESSING", idle="2 hours")
    for _ in range(5):
        assert heartbeat(conn, token) == ("alive", 0)
        conn.execute("SELECT * FROM recover_stuck_runs('1 second')")
    assert status_of(conn, silent) == "PROCESSING"
    assert status_of(conn, unowned) == "FAILED"
    assert conn.execute("SELECT run_id FROM stuck_runs").fetchall() == []
    assert conn.execute("SELECT run_id FROM active_runs").fetchall() == [(silent,)]


def test_a_run_of_an_unknown_owner_keeps_the_threshold(conn):
    # The built-in table's trigger makes any write to an active run a sign
    # of life, so the owner is set together with the time.
    run_id = insert_run(conn, "PROCESSING")
    young = insert_run(conn, "PROCESSING")
    conn.execute(
        "UPDATE qualification_runs SET owner = 'never-started-life',"
        " updated_at = now() - CASE WHEN id = %s THEN interval '2 hours' ELSE interval '1 minute' END",
        (run_id,),
    )
    rows = conn.execute("SELECT run_id, reason FROM recover_stuck_runs('30 minutes')").fetchall()
    assert rows == [(run_id, None)]
    assert status_of(conn, young) == "PROCESSING"


def test_a_silent_life_ends_after_dead_after_and_any_heartbeat_sweeps_it(conn):
    conn.execute("UPDATE stuck_runs_settings SET dead_after = '1 second'")
    gone, alive = life(), life()
    start(conn, "a", gone)
    start(conn, "b", alive)
    run_id = owned_run(conn, gone, idle="5 seconds")
    kept = owned_run(conn, alive, idle="5 seconds")
    beats = beat_for(conn, alive, 1.6)
    # One sweep, by the heartbeat that first found "a" silent.
    assert [b for b in beats if b != ("alive", 0)] == [("alive", 1)]
    assert status_of(conn, run_id) == "FAILED"
    assert status_of(conn, kept) == "PROCESSING"
    assert conn.execute("SELECT reason FROM run_recoveries").fetchall() == [
        ("instance a stopped heartbeating",)
    ]
    assert heartbeat(conn, gone)[0] == "fenced"


def test_a_lost_connection_is_no_mass_death(conn):
    """Every heartbeat of the application stale at once (a pooler restart, a network cut): no death."""
    conn.execute("UPDATE stuck_runs_settings SET dead_after = '1 second'")
    tokens = [life() for _ in range(3)]
    runs = []
    for i, token in enumerate(tokens):
        start(conn, f"web-{i}", token)
        runs.append(owned_run(conn, token))
    time.sleep(1.5)  # nobody reaches the database
    assert heartbeat(conn, tokens[0]) == ("alive", 0)
    assert conn.execute("SELECT * FROM recover_stuck_runs('1 hour')").fetchall() == []
    for token in tokens[1:]:
        assert heartbeat(conn, token)[0] == "alive"
    # Then web-2 does not come back while the others heartbeat on: it alone is dead.
    for _ in range(8):
        for token in tokens[:2]:
            heartbeat(conn, token)
        time.sleep(0.2)
    assert [status_of(conn, r) for r in runs] == ["PROCESSING", "PROCESSING", "FAILED"]


def test_the_stuck_runs_view_shows_what_a_sweep_of_ended_owners_would_take(conn):
    conn.execute("UPDATE stuck_runs_settings SET dead_after = '1 second'")
    gone, alive = life(), life()
    start(conn, "a", gone)
    start(conn, "b", alive)
    run_id = owned_run(conn, gone, idle="0 seconds")
    assert conn.execute("SELECT run_id FROM stuck_runs").fetchall() == []
    # Beats of "b" that only record (a sweep would end "a" at once).
    until = time.monotonic() + 1.4
    while time.monotonic() < until:
        conn.execute("SELECT _stuck_runs_beat(%s)", (alive,))
        time.sleep(0.2)
    assert conn.execute("SELECT run_id FROM stuck_runs").fetchall() == [(run_id,)]
    assert dict(conn.execute("SELECT instance, state FROM stuck_runs_instances").fetchall()) == {
        "a": "silent",
        "b": "live",
    }
    assert status_of(conn, run_id) == "PROCESSING", (
        "reading the view ends no life and changes no run"
    )


def test_no_life_counts_as_silent_before_the_server_has_been_up_for_dead_after(conn):
    token, other = life(), life()
    start(conn, "web", token)
    start(conn, "jobs", other)
    run_id = owned_run(conn, token)
    conn.execute(
        "UPDATE stuck_runs_lives SET alive_since = now() - interval '20 years',"
        " heartbeat_at = now() - interval '20 years' WHERE life = %s",
        (token,),
    )
    uptime = conn.execute("SELECT clock_timestamp() - pg_postmaster_start_time()").fetchone()[0]
    conn.execute("UPDATE stuck_runs_settings SET dead_after = %s", (uptime * 2 + _seconds(60),))
    assert conn.execute("SELECT * FROM recover_stuck_runs('1 second')").fetchall() == []
    assert status_of(conn, run_id) == "PROCESSING"
    conn.execute("UPDATE stuck_runs_settings SET dead_after = '1 second'")
    # The server (its timeline, first seen by the sweep above) up for
    # dead_after, and "jobs" heartbeating all along.
    beat_for(conn, other, 1.4)
    assert status_of(conn, run_id) == "FAILED"
    assert conn.execute("SELECT reason FROM run_recoveries").fetchall() == [
        ("instance web stopped heartbeating",)
    ]


def _seconds(n: int) -> datetime.timedelta:
    return datetime.timedelta(seconds=n)


def test_a_fenced_owner_hears_it_and_its_writes_through_stuck_runs_change_nothing(conn):
    zombie = life()
    start(conn, "web", zombie)
    run_id = owned_run(conn, zombie)
    start(conn, "web", life())
    before = conn.execute("SELECT * FROM qualification_runs WHERE id = %s", (run_id,)).fetchone()

    assert heartbeat(conn, zombie)[0] == "fenced"
    assert conn.execute(
        "SELECT stuck_runs_progress('qualification_runs', %s, %s, 9, 10)", (run_id, zombie)
    ).fetchone() == (False,)
    assert not claim(conn, run_id, zombie)
    fresh = insert_run(conn, "PENDING")
    assert not claim(conn, fresh, zombie), "a fenced life claims nothing new either"
    # The documented guard for an ORM's own final write.
    changed = conn.execute(
        "UPDATE qualification_runs SET status = 'COMPLETED' WHERE id = %s AND owner = %s"
        " AND status IN ('PENDING', 'PROCESSING')",
        (run_id, zombie),
    ).rowcount
    assert changed == 0
    assert (
        conn.execute("SELECT * FROM qualification_runs WHERE id = %s", (run_id,)).fetchone()
        == before
    )
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="already ended"):
        start(conn, "web", zombie)


def test_progress_and_claim_from_the_live_owner(conn):
    token, other = life(), life()
    start(conn, "web", token)
    start(conn, "jobs", other)
    run_id = insert_run(conn, "PENDING", idle="10 minutes")
    assert claim(conn, run_id, token)
    assert claim(conn, run_id, token), "claiming again is a no-op that succeeds"
    assert not claim(conn, run_id, other), "another life's run is not taken"
    assert conn.execute(
        "SELECT stuck_runs_progress('qualification_runs', %s, %s, 4, 8)", (run_id, token)
    ).fetchone() == (True,)
    row = conn.execute(
        "SELECT completed, total, owner, now() - updated_at < interval '5 seconds'"
        " FROM qualification_runs WHERE id = %s",
        (run_id,),
    ).fetchone()
    assert row == (4, 8, token, True)
    assert conn.execute(
        "SELECT stuck_runs_progress('qualification_runs', %s, %s, 5)", (run_id, other)
    ).fetchone() == (False,)


@pytest.mark.parametrize(
    "call",
    [
        "SELECT stuck_runs_claim('qualification_runs', 'x', NULL)",
        "SELECT stuck_runs_progress('qualification_runs', NULL, 'life-0000-0000')",
        "SELECT * FROM stuck_runs_start('', 'life-0000-0000')",
        "SELECT * FROM stuck_runs_start(NULL, 'life-0000-0000')",
        "SELECT * FROM stuck_runs_start('web', 'short')",
        "SELECT stuck_runs_claim('pg_class', 'x', 'life-0000-0000')",
        "SELECT * FROM stuck_runs_heartbeat(NULL)",
        "SELECT * FROM stuck_runs_heartbeat('')",
        "SELECT stuck_runs_progress('qualification_runs', 'x', 'life-0000-0000', -5)",
    ],
)
def test_bad_input_is_22023(conn, call):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute(call)


def test_a_requeued_run_loses_its_dead_owner_and_is_not_taken_again(conn):
    token = life()
    start(conn, "web", token)
    run_id = owned_run(conn, token)
    rows = conn.execute(
        "SELECT run_id, action FROM stuck_runs_start('web', %s, '30 minutes', NULL, 3)", (life(),)
    ).fetchall()
    assert rows == [(run_id, "requeued")]
    assert conn.execute(
        "SELECT status, owner, attempts FROM qualification_runs WHERE id = %s", (run_id,)
    ).fetchone() == ("PENDING", None, 1)
    assert conn.execute("SELECT * FROM recover_stuck_runs('30 minutes', NULL, 3)").fetchall() == []


def test_a_run_a_worker_holds_locked_keeps_its_dead_life_pending(db_url):
    with open_conn(db_url) as conn, open_conn(db_url) as worker:
        token = life()
        start(conn, "web", token)
        run_id = owned_run(conn, token)
        worker.execute("BEGIN")
        worker.execute("SELECT FROM qualification_runs WHERE id = %s FOR UPDATE", (run_id,))
        assert start(conn, "web", life()) == []
        worker.execute("ROLLBACK")
        rows = conn.execute(
            "SELECT run_id, reason FROM recover_stuck_runs('30 minutes')"
        ).fetchall()
        assert rows == [(run_id, "instance web restarted")]


def test_a_claim_in_flight_blocks_neither_heartbeats_nor_a_restart(db_url):
    """The claim holds its life FOR KEY SHARE: heartbeats go on, a restart leaves that life alone."""
    with open_conn(db_url) as conn, open_conn(db_url) as app:
        conn.execute("SET statement_timeout = '3s'")
        token = life()
        start(conn, "web", token)
        run_id = insert_run(conn, "PENDING")
        app.execute("BEGIN")
        assert claim(app, run_id, token)
        began = time.monotonic()
        assert heartbeat(conn, token) == ("alive", 0)
        assert start(conn, "web", life()) == [], "a life claiming a run is not dead"
        assert time.monotonic() - began < 1
        app.execute("COMMIT")
        assert heartbeat(conn, token)[0] == "alive"
        assert start(conn, "web", life()) == [(run_id, "FAILED", "instance web restarted")]


def test_lives_starting_at_once_under_one_name_all_start(db_url):
    """Two processes under one name at once is a mistake the next start mends: none fails, none waits."""
    tokens = [life() for _ in range(6)]
    barrier = threading.Barrier(len(tokens))
    errors: list[BaseException] = []

    def begin(token: str) -> None:
        try:
            with open_conn(db_url) as c:
                barrier.wait()
                start(c, "web", token)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=begin, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    with open_conn(db_url) as conn:
        live = conn.execute(
            "SELECT count(*) FROM stuck_runs_instances WHERE instance = 'web' AND state = 'live'"
        ).fetchone()[0]
        assert 1 <= live <= len(tokens)
        start(conn, "web", life())
        assert conn.execute(
            "SELECT count(*) FROM stuck_runs_instances WHERE instance = 'web' AND state = 'live'"
        ).fetchone() == (1,)


@pytest.fixture
def app_role(db_url):
    """A login role that uses stuck-runs with exactly the GRANTs stuck_runs_grant_sql() prints."""
    role = f"owners_app_{uuid.uuid4().hex[:8]}"
    with open_conn(db_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        for (stmt,) in conn.execute("SELECT * FROM stuck_runs_grant_sql(%s)", (role,)).fetchall():
            conn.execute(stmt)
    yield role
    with open_conn(db_url) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


def as_role(db_url: str, role: str) -> psycopg.Connection:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(db_url)
    netloc = parts.netloc.split("@", 1)[-1]
    return open_conn(urlunsplit((parts.scheme, f"{role}@{netloc}", parts.path, parts.query, "")))


def test_another_role_cannot_end_revive_or_forge_a_life_it_did_not_start(db_url, app_role):
    with open_conn(db_url) as conn, as_role(db_url, app_role) as other:
        token = life()
        start(conn, "web", token)
        run_id = owned_run(conn, token)
        assert start(other, "web", life()) == []
        assert status_of(conn, run_id) == "PROCESSING"
        assert heartbeat(other, token)[0] == "unknown"
        # Every life is readable; a live one is not the other role's to keep
        # alive or end, however it writes the table.
        assert other.execute("SELECT count(*) FROM stuck_runs_lives").fetchone()[0] == 2
        for change in (
            "heartbeat_at = now()",
            "ended_at = now(), end_reason = 'stopped heartbeating'",
        ):
            assert (
                other.execute(
                    f"UPDATE stuck_runs_lives SET {change} WHERE life = %s", (token,)
                ).rowcount
                == 0
            )
        # Nor lock it (row locks run no trigger), nor lock the table, nor delete.
        other.execute("BEGIN")
        assert (
            other.execute(
                "SELECT FROM stuck_runs_lives WHERE life = %s FOR UPDATE", (token,)
            ).fetchall()
            == []
        )
        other.execute("ROLLBACK")
        for statement in (
            "LOCK TABLE stuck_runs_lives IN ACCESS EXCLUSIVE MODE",
            "DELETE FROM stuck_runs_lives",
            "UPDATE stuck_runs_lives SET started_by = 0",
        ):
            other.execute("BEGIN")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute(statement)
            other.execute("ROLLBACK")
        with pytest.raises(psycopg.errors.UniqueViolation):
            other.execute(
                "INSERT INTO stuck_runs_lives (life, instance, started_by) VALUES (%s, 'x', 0)",
                (token,),
            )
        # A life it starts by hand is its own and starts fresh, whatever it says.
        other.execute(
            "INSERT INTO stuck_runs_lives (life, instance, started_by, heartbeat_at, ended_at, end_reason)"
            " VALUES ('forged-life-1', 'web', 10, 'infinity', now(), 'restarted')"
        )
        forged = conn.execute(
            "SELECT pg_get_userbyid(started_by), ended_at, isfinite(heartbeat_at)"
            " FROM stuck_runs_lives WHERE life = 'forged-life-1'"
        ).fetchone()
        assert forged == (app_role, None, True)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="another role"):
            start(other, "web", token)
        # An ended life never changes again, even for its own role.
        assert start(conn, "web", None) == [(run_id, "FAILED", "instance web restarted")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="has ended"):
            conn.execute(
                "UPDATE stuck_runs_lives SET ended_at = NULL, end_reason = NULL WHERE life = %s",
                (token,),
            )


def test_a_table_owners_code_during_a_superusers_sweep_speaks_only_for_its_own_lives(
    db_url, app_role
):
    """The owner's trigger runs as the owner: it cannot end lives the superuser's session may end."""
    with open_conn(db_url) as conn:
        token = life()
        start(conn, "web", token)
        run_id = owned_run(conn, token)
        conn.execute(
            "CREATE TABLE public.h_jobs (id text PRIMARY KEY, status text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(f'ALTER TABLE public.h_jobs OWNER TO "{app_role}"')
        conn.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{app_role}"')
        with as_role(db_url, app_role) as h:
            h.execute(
                "CREATE FUNCTION public.h_end_others() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN BEGIN UPDATE stuck_runs.stuck_runs_lives SET ended_at = now(), end_reason = 'restarted'"
                " WHERE instance = 'web'; EXCEPTION WHEN OTHERS THEN NULL; END; RETURN NEW; END $$"
            )
            h.execute(
                "CREATE TRIGGER h BEFORE UPDATE ON public.h_jobs"
                " FOR EACH ROW EXECUTE FUNCTION public.h_end_others()"
            )
            h.execute(
                "INSERT INTO public.h_jobs (id, status, updated_at)"
                " VALUES ('x', 'PROCESSING', now() - interval '1 day')"
            )
        conn.execute(
            "SELECT adopt_runs_table('public.h_jobs', completed_at_column => NULL, error_column => NULL,"
            " completed_column => NULL, total_column => NULL)"
        )
        rows = conn.execute(
            "SELECT table_name, run_id FROM recover_stuck_runs('1 hour')"
        ).fetchall()
        assert rows == [("public.h_jobs", "x")], "the owner's trigger ran, as the owner"
        assert heartbeat(conn, token) == ("alive", 0)
        assert status_of(conn, run_id) == "PROCESSING"


def test_the_app_role_runs_its_own_lives_with_the_printed_grants(db_url, app_role):
    with open_conn(db_url) as conn, as_role(db_url, app_role) as app:
        token = life()
        start(app, "web", token)
        run_id = insert_run(conn, "PENDING")
        assert claim(app, run_id, token)
        assert heartbeat(app, token) == ("alive", 0)
        assert app.execute("SELECT instance, state FROM stuck_runs_instances").fetchall() == [
            ("web", "live")
        ]
        assert start(app, "web", life()) == [(run_id, "FAILED", "instance web restarted")]


def test_an_adopted_table_with_a_uuid_owner_column(conn):
    conn.execute(
        "CREATE TABLE public.jobs (id bigint PRIMARY KEY, state text NOT NULL, created timestamptz NOT NULL DEFAULT now(),"
        " touched timestamptz NOT NULL DEFAULT now(), worker uuid)"
    )
    conn.execute(
        "SELECT adopt_runs_table('public.jobs', status_column => 'state', created_at_column => 'created',"
        " updated_at_column => 'touched', completed_at_column => NULL, error_column => NULL,"
        " completed_column => NULL, total_column => NULL, owner_column => 'worker')"
    )
    token = life()
    start(conn, "web", token)
    conn.execute("INSERT INTO public.jobs (id, state) VALUES (1, 'PROCESSING'), (2, 'PROCESSING')")
    assert conn.execute("SELECT stuck_runs_claim('public.jobs', '1', %s)", (token,)).fetchone() == (
        True,
    )
    assert start(conn, "web", life()) == [("1", "FAILED", "instance web restarted")]
    assert conn.execute("SELECT id, state FROM public.jobs ORDER BY id").fetchall() == [
        (1, "FAILED"),
        (2, "PROCESSING"),
    ]


def test_a_uuid_owner_column_refuses_a_token_it_would_not_give_back(conn):
    conn.execute(
        "CREATE TABLE public.jobs (id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),"
        " updated_at timestamptz NOT NULL DEFAULT now(), owner uuid)"
    )
    conn.execute(
        "SELECT adopt_runs_table('public.jobs', completed_at_column => NULL, error_column => NULL,"
        " completed_column => NULL, total_column => NULL, owner_column => 'owner')"
    )
    token = life().upper()
    start(conn, "web", token)
    conn.execute("INSERT INTO public.jobs (id, status) VALUES (1, 'PROCESSING')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="as the column prints it"):
        conn.execute("SELECT stuck_runs_claim('public.jobs', '1', %s)", (token,))
    assert conn.execute("SELECT owner FROM public.jobs").fetchone() == (None,)


def test_a_not_null_owner_column_is_refused(conn):
    conn.execute(
        "CREATE TABLE public.jobs (id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL,"
        " updated_at timestamptz NOT NULL, owner text NOT NULL DEFAULT 'x')"
    )
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="NOT NULL"):
        conn.execute(
            "SELECT adopt_runs_table('public.jobs', completed_at_column => NULL, error_column => NULL,"
            " completed_column => NULL, total_column => NULL, owner_column => 'owner')"
        )


def test_upgrade_from_0005_keeps_unowned_runs_and_grants_exactly(empty_db_url):
    """A 0.3 install (0005) with runs and an app role: after 0006, the same calls give the same results."""
    build_release(
        empty_db_url,
        "stuck_runs",
        (
            "0001_core",
            "0002_retries",
            "0003_beside_the_app",
            "0004_owners_code",
            "0005_with_the_app",
        ),
    )
    role = f"owners_up_{uuid.uuid4().hex[:8]}"
    with open_conn(empty_db_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        for (stmt,) in conn.execute("SELECT * FROM stuck_runs_grant_sql(%s)", (role,)).fetchall():
            conn.execute(stmt)
        stuck = insert_run(conn, "PROCESSING", idle="2 hours", run_id="stuck")
        insert_run(conn, "PROCESSING", idle="1 minute", run_id="young")
    try:
        assert migrate(empty_db_url) == ["0006_owners", "0007_fast_path"]
        with as_role(empty_db_url, role) as app:
            rows = app.execute(
                "SELECT run_id, status, action, reason FROM recover_stuck_runs('30 minutes')"
            ).fetchall()
            assert rows == [(stuck, "FAILED", "failed", None)]
            assert status_of(app, "young") == "PROCESSING"
            token = life()
            assert start(app, "web", token) == []
            assert claim(app, "young", token)
            assert app.execute("SELECT count(*) FROM stuck_runs_instances").fetchone() == (1,)
            assert start(app, "web", life()) == [("young", "FAILED", "instance web restarted")]
    finally:
        with open_conn(empty_db_url) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.skipif(
    not system_postgres_available(),
    reason="needs the system PostgreSQL 15 binaries (apt postgresql-15)",
)
def test_a_database_restart_is_no_mass_death():
    """Every heartbeat is stale when the server comes back: none of them counts until it has been up for dead_after."""
    cluster = Cluster()
    try:
        cluster.start()
        url = cluster.url()
        migrate(url)
        with open_conn(url) as conn:
            conn.execute("UPDATE stuck_runs_settings SET dead_after = '3 seconds'")
            tokens = [life() for _ in range(10)]
            runs = []
            for i, token in enumerate(tokens):
                start(conn, f"i{i}", token)
                runs.append(owned_run(conn, token))
        cluster.stop()
        time.sleep(4)  # longer than dead_after: every heartbeat is stale
        cluster.start()
        with open_conn(url) as conn:
            assert conn.execute("SELECT * FROM recover_stuck_runs('1 second')").fetchall() == []
            for token in tokens:
                assert heartbeat(conn, token) == ("alive", 0)
            # Nine come back and heartbeat every second; one does not.
            for _ in range(4):
                time.sleep(1)
                for token in tokens[1:]:
                    assert heartbeat(conn, token)[0] == "alive"
            # One instance did not come back: it, and only it, is dead.
            # (The others' heartbeats swept it.)
            conn.execute("SELECT * FROM recover_stuck_runs('1 hour')")
            audit = conn.execute("SELECT run_id, reason FROM run_recoveries").fetchall()
            assert audit == [(runs[0], "instance i0 stopped heartbeating")]
            assert [status_of(conn, r) for r in runs[1:]] == ["PROCESSING"] * 9
    finally:
        cluster.destroy()


def test_a_resumed_run_waits_for_a_new_owner(conn):
    token = life()
    start(conn, "web", token)
    run_id = owned_run(conn, token)
    start(conn, "web", life())
    assert conn.execute("SELECT status FROM resume_run(%s)", (run_id,)).fetchone() == ("PENDING",)
    assert conn.execute(
        "SELECT status, owner FROM qualification_runs WHERE id = %s", (run_id,)
    ).fetchone() == ("PENDING", None)
    assert conn.execute("SELECT * FROM recover_stuck_runs('30 minutes')").fetchall() == []


def test_a_role_that_cannot_read_the_lives_leaves_owned_runs_alone(db_url):
    """Recovery by a role without grants on the lives (EXECUTE alone): a WARNING, and no owned run taken on a guess."""
    role = f"owners_exec_{uuid.uuid4().hex[:8]}"
    with open_conn(db_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE ON SCHEMA stuck_runs TO "{role}"')
        conn.execute(f'GRANT EXECUTE ON ALL ROUTINES IN SCHEMA stuck_runs TO "{role}"')
        conn.execute(
            f'GRANT SELECT ON stuck_runs_tables, stuck_runs_settings, stuck_runs_roles, _stuck_runs_covered TO "{role}"'
        )
        conn.execute(f'GRANT SELECT, UPDATE ON qualification_runs TO "{role}"')
        conn.execute(f'GRANT SELECT, INSERT ON run_recoveries TO "{role}"')
        conn.execute(f'GRANT "{role}" TO postgres')
        conn.execute(f'ALTER TABLE qualification_runs OWNER TO "{role}"')
        token = life()
        start(conn, "web", token)
        silent = owned_run(conn, token, idle="2 hours")
        unowned = insert_run(conn, "PROCESSING", idle="2 hours")
    try:
        with as_role(db_url, role) as limited:
            warnings: list[str] = []
            limited.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
            rows = limited.execute("SELECT run_id FROM recover_stuck_runs('30 minutes')").fetchall()
            assert rows == [(unowned,)]
            assert status_of(limited, silent) == "PROCESSING"
            assert any("may not read the owners" in w for w in warnings), warnings
    finally:
        with open_conn(db_url) as conn:
            conn.execute("ALTER TABLE qualification_runs OWNER TO postgres")
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.skipif(
    not system_postgres_available(),
    reason="needs the system PostgreSQL 15 binaries (apt postgresql-15)",
)
def test_a_failover_is_no_mass_death():
    """A promoted standby's postmaster started long ago: its new timeline is what dates it."""
    cluster = Cluster()
    try:
        cluster.start()
        url = cluster.url()
        migrate(url)
        with open_conn(url) as conn:
            conn.execute("UPDATE stuck_runs_settings SET dead_after = '2 seconds'")
            tokens = [life() for _ in range(3)]
            runs = []
            for i, token in enumerate(tokens):
                start(conn, f"i{i}", token)
                runs.append(owned_run(conn, token))
        # The same data directory comes back as a standby, up for longer than
        # dead_after before it is promoted; every heartbeat is stale by then.
        cluster.stop()
        cluster.start(standby=True)
        time.sleep(3)
        cluster._run("pg_ctl", "-D", str(cluster.data), "-w", "promote")
        with open_conn(url) as conn:
            for _ in range(50):
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    break
                time.sleep(0.1)
            assert conn.execute("SELECT _stuck_runs_timeline()").fetchone() == ("00000002",)
            assert conn.execute("SELECT * FROM recover_stuck_runs('1 second')").fetchall() == []
            assert [heartbeat(conn, t)[0] for t in tokens] == ["alive"] * 3
            assert [status_of(conn, r) for r in runs] == ["PROCESSING"] * 3
    finally:
        cluster.destroy()


def test_active_runs_says_stuck_as_a_sweep_would(conn):
    token = life()
    start(conn, "web", token)
    silent = owned_run(conn, token, idle="2 hours")
    unowned = insert_run(conn, "PROCESSING", idle="2 hours")
    rows = dict(conn.execute("SELECT run_id, stuck FROM active_runs").fetchall())
    assert rows == {silent: False, unowned: True}


def test_a_lone_instance_that_never_comes_back_keeps_the_threshold(conn):
    """No witness of its silence: after the threshold (older_than), as a run without an owner."""
    conn.execute("UPDATE stuck_runs_settings SET dead_after = '1 second', older_than = '2 seconds'")
    token = life()
    start(conn, "web", token)
    run_id = owned_run(conn, token, idle="0 seconds")
    time.sleep(1.3)
    assert conn.execute("SELECT * FROM recover_stuck_runs()").fetchall() == []
    time.sleep(1.0)
    rows = conn.execute("SELECT run_id, reason FROM recover_stuck_runs()").fetchall()
    assert rows == [(run_id, "instance web stopped heartbeating")]


def test_a_timeline_cannot_be_dated_by_hand(db_url, app_role):
    with open_conn(db_url) as conn, as_role(db_url, app_role) as other:
        conn.execute("DELETE FROM stuck_runs_timelines")
        other.execute(
            "INSERT INTO stuck_runs_timelines (timeline, seen_at)"
            " VALUES ('00000009', '-infinity') ON CONFLICT DO NOTHING"
        )
        rows = conn.execute(
            "SELECT timeline = _stuck_runs_timeline(), clock_timestamp() - seen_at < interval '5 seconds'"
            " FROM stuck_runs_timelines"
        ).fetchall()
        assert rows == [(True, True)]


def test_the_instance_grants_run_an_instance_and_reach_no_other_apps_table(db_url):
    """stuck_runs_instance_grant_sql(): its own table's lives and runs, nothing of another application."""
    role = f"owners_inst_{uuid.uuid4().hex[:8]}"
    with open_conn(db_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        for (stmt,) in conn.execute(
            "SELECT * FROM stuck_runs_instance_grant_sql(%s)", (role,)
        ).fetchall():
            conn.execute(stmt)
        conn.execute(
            "CREATE TABLE public.mine (id text PRIMARY KEY, status text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(), owner text)"
        )
        conn.execute(f'ALTER TABLE public.mine OWNER TO "{role}"')
        conn.execute(
            "SELECT adopt_runs_table('public.mine', completed_at_column => NULL, error_column => NULL,"
            " completed_column => NULL, total_column => NULL, owner_column => 'owner')"
        )
        conn.execute("INSERT INTO public.mine (id, status) VALUES ('m1', 'PROCESSING')")
        other_run = insert_run(conn, "PROCESSING", idle="2 hours")
    try:
        with as_role(db_url, role) as app:
            token = life()
            start(app, "web", token)
            assert app.execute(
                "SELECT stuck_runs_claim('public.mine', 'm1', %s)", (token,)
            ).fetchone() == (True,)
            assert heartbeat(app, token) == ("alive", 0)
            assert start(app, "web", life()) == [("m1", "FAILED", "instance web restarted")]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("UPDATE qualification_runs SET status = 'FAILED'")
        with open_conn(db_url) as conn:
            assert status_of(conn, other_run) == "PROCESSING", (
                "another application's table is out of reach"
            )
    finally:
        with open_conn(db_url) as conn:
            conn.execute("DROP TABLE public.mine")
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
