"""Connection strings as psql takes them; every failure one line, no password (issue 12, 13)."""

from __future__ import annotations

import os

import pytest

from runner.connection import parse_database_url

from .helpers import insert_run, run_cli, with_query

SECRET = "hunter2-Sup3rSecret"


def key_value(db_url: str, **extra: str) -> str:
    """The test database as a libpq key=value string."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(parse_database_url(db_url).conninfo)
    return make_conninfo(**{**params, **extra})


def test_key_value_strings_work_and_never_show_their_password(db_url, conn):
    stuck = insert_run(conn, "PROCESSING", idle="1 hour")
    ok = run_cli("--database-url", key_value(db_url, password=SECRET), "recover", "--json")
    assert ok.returncode == 0, ok.stderr
    assert stuck in ok.stdout
    broken = key_value(db_url) + f" password='{SECRET}"  # unterminated quote
    for fail_open, code in ((False, 1), (True, 0)):
        args = ["--database-url", broken, "recover", *(["--fail-open"] if fail_open else [])]
        result = run_cli(*args)
        assert result.returncode == code, result.stderr
        assert SECRET not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:{secret}@[::1:bad/app",
        "postgresql://app:{secret}@db.invalid:notaport/app",
        "mysql://app:{secret}@localhost/app",
        "postgresql://app:{secret}@localhost/app?sslmode=sometimes",
    ],
)
def test_a_malformed_url_is_one_line_without_password(url):
    for fail_open, code in ((False, 1), (True, 0)):
        result = run_cli(
            "--database-url",
            url.format(secret=SECRET),
            "recover",
            "--connect-timeout",
            "1",
            *(["--fail-open"] if fail_open else []),
        )
        assert result.returncode == code, result.stderr
        assert SECRET not in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_urls_that_leave_parts_to_libpq_environment(db_url, conn):
    stuck = insert_run(conn, "PROCESSING", idle="1 hour")
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(parse_database_url(db_url).conninfo)
    env = {
        "PGHOST": params.get("host", ""),
        "PGPORT": str(params.get("port", "")) or "5432",
        "PGUSER": params.get("user", "postgres"),
    }
    env = {k: v for k, v in env.items() if v}
    result = run_cli(
        "--database-url", f"postgresql:///{params['dbname']}", "list", "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    assert stuck in result.stdout
    env["PGDATABASE"] = params["dbname"]
    bare = run_cli("--database-url", "postgresql://", "list", "--json", env=env)
    assert bare.returncode == 0, bare.stderr
    # Only the environment: no URL at all is a usage error, but "" is libpq's defaults.
    assert run_cli("list", env=env).returncode == 2


def test_options_reach_the_server_as_written(db_url):
    """A percent-encoded space must reach libpq as a space, not re-encoded as `+`."""
    url = with_query(db_url, options="-c statement_timeout=1234")
    assert "-c%20statement_timeout%3D1234" in url
    result = run_cli("--database-url", url, "list")
    assert result.returncode == 0, result.stderr


def test_prisma_parameters_are_understood_not_sent(db_url, conn):
    stuck = insert_run(conn, "PROCESSING", idle="1 hour")
    url = with_query(
        db_url, pgbouncer="true", connection_limit="1", pool_timeout="0", schema="public"
    )
    recovered = run_cli("--database-url", url, "recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert stuck in recovered.stdout
    # A URL that says it is pooled cannot give migrate the session it needs...
    refused = run_cli("--database-url", url, "migrate")
    assert refused.returncode == 1
    assert "DIRECT_URL" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    # ...the direct URL can.
    direct = run_cli("--database-url", url, "migrate", env={"DIRECT_URL": db_url})
    assert direct.returncode == 0, direct.stderr


def test_an_interval_without_a_unit_is_a_usage_error(db_url):
    for value in ("15", " 15 ", "1.5"):
        result = run_cli("--database-url", db_url, "recover", "--older-than", value)
        assert result.returncode == 2, result.stderr
        assert "has no unit" in result.stderr


def test_no_password_from_the_environment_either(db_url):
    env = {"PGPASSWORD": SECRET}
    result = run_cli(
        "--database-url",
        "postgresql://nobody@127.0.0.1:1/none",
        "recover",
        "--connect-timeout",
        "1",
        env={**os.environ, **env},
    )
    assert result.returncode == 1
    assert SECRET not in result.stderr
