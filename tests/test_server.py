"""Which server the suite ran against, so the version matrix cannot silently collapse."""

from __future__ import annotations

import os


def test_server_is_the_expected_major_version(conn):
    major = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()[0]
    print(f"suite ran against PostgreSQL {major}")
    expected = os.environ.get(
        "STUCK_RUNS_EXPECT_SERVER", "18" if not os.environ.get("TEST_DATABASE_URL") else ""
    )
    if expected:
        assert major == int(expected)
    assert major >= 15
