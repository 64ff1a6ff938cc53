"""The README's Quick start lines work verbatim for a newcomer on a stock system Python.

Each test clones the repository (committed files only, as a newcomer gets them), takes a
Quick start line from the clone's README.md and runs it exactly as printed with `bash -c`,
under `env -i` with only PATH=/usr/bin:/bin and a fresh HOME. `python3` is then the
system's /usr/bin/python3, which on Debian and Ubuntu refuses `pip install` outside a
virtual environment (PEP 668). pip downloads from PyPI; the fresh HOME shares only pip's
cache with the calling user, so that runs after the first one do not download it all again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .docs_text import blocks_in

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
RECOVERED = {"run-crashed-mid-way": "PROCESSING", "run-never-started": "PENDING"}
INSTALL_TIMEOUT = 600  # seconds; pip downloads from PyPI on a cold cache


def system_python_has_venv() -> bool:
    """Debian and Ubuntu ship `venv` without `ensurepip` until python3-venv is installed."""
    probe = [SYSTEM_PYTHON, "-c", "import ensurepip, venv"]
    return (
        os.path.exists(SYSTEM_PYTHON)
        and subprocess.run(probe, capture_output=True, check=False).returncode == 0
    )


pytestmark = [
    pytest.mark.slow,
    # Under CI the test runs anyway and fails with venv's own message (.ci/run installs python3-venv).
    pytest.mark.skipif(
        not os.environ.get("CI") and not system_python_has_venv(),
        reason=f"{SYSTEM_PYTHON} cannot make a virtual environment (apt-get install python3-venv)",
    ),
]


def quick_start_lines(readme: str) -> tuple[str, str]:
    """The Quick start's two command lines, each the one line of its marked block: the demo's,
    then the tests'. The Quick start holds those two blocks and no other."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert sorted(blocks_in(section)) == ["quick-start-demo", "quick-start-tests"], section
    assert len(re.findall(r"^```", section, re.M)) == 4, "the Quick start has two blocks only"
    blocks = blocks_in(readme)
    demo, tests = (blocks[name][1].strip() for name in ("quick-start-demo", "quick-start-tests"))
    assert "\n" not in demo and demo.endswith("stuck-runs demo"), demo
    assert "\n" not in tests and tests.endswith("python -m pytest"), tests
    return demo, tests


def clone(tmp_path: Path) -> Path:
    """A fresh clone of this repository, and the fresh HOME its commands run with."""
    repo = tmp_path / "stuck-runs"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
    pip_cache = Path(
        os.environ.get("PIP_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"
    )
    pip_cache.mkdir(parents=True, exist_ok=True)
    (tmp_path / "home" / ".cache").mkdir(parents=True)
    (tmp_path / "home" / ".cache" / "pip").symlink_to(pip_cache)
    return repo


def run_clean(command: str, repo: Path) -> tuple[int, str, float]:
    """Run `bash -c command` in repo under `env -i`: exit code, stdout and stderr interleaved,
    and the seconds from pip's last line ("Successfully installed ...") to the end."""
    home = repo.parent / "home"
    proc = subprocess.Popen(
        ["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", "bash", "-c", command],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a timeout kills pip or the demo too, not only bash
    )
    watchdog = threading.Timer(INSTALL_TIMEOUT, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.start()
    lines, installed_at = [], None
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("Successfully installed "):
                installed_at = time.monotonic()
    finally:
        watchdog.cancel()
    code = proc.wait()
    assert installed_at is not None, "".join(lines)
    return code, "".join(lines), time.monotonic() - installed_at


def assert_clean(output: str) -> None:
    """Nothing but the command's own story: no warning of any kind, no traceback."""
    assert not re.search(r"warning|traceback", output, re.I), output


def test_readme_demo_line_runs_verbatim_from_a_fresh_clone(tmp_path):
    started = time.monotonic()
    repo = clone(tmp_path)
    demo_line, _ = quick_start_lines((repo / "README.md").read_text())
    code, output, demo_seconds = run_clean(demo_line, repo)
    total_seconds = time.monotonic() - started
    print(f"fresh clone to the demo's last line: {total_seconds:.1f} s (demo {demo_seconds:.1f} s)")
    assert code == 0, output
    for run_id, status in RECOVERED.items():
        assert re.search(rf"{run_id}\b.*{status} \u2192 FAILED", output), output
    assert_clean(output)
    assert demo_seconds < 30, output


def test_readme_test_line_installs_and_collects_the_suite(tmp_path):
    repo = clone(tmp_path)
    _, test_line = quick_start_lines((repo / "README.md").read_text())
    # The line verbatim, with pytest only collecting: running the suite here would recurse.
    code, output, _ = run_clean(f"{test_line} --collect-only -q", repo)
    assert code == 0, output
    collected = re.search(r"^(\d+) tests collected", output, re.M)
    assert collected and int(collected.group(1)) > 100, output
    assert_clean(output)
