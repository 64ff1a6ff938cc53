"""stuck-runs installs without a clone (issue 21): a wheel and an sdist, and the install lines.

`python -m build` makes both (the wheel from the sdist, so the sdist holds what building needs).
The wheel goes into a fresh virtual environment in a directory outside the source tree, run
from there with no PYTHONPATH: `--version`, `migrate` and `recover` against the test server.
Every block of docs/install.md runs here: the wheel-file and git-URL lines as written, and
the Dockerfiles' RUN lines in a clean directory without Docker (their /opt, /usr/local/bin and
/tmp moved under it; an `apt-get install` is checked against what this machine has installed).
The version agrees with the migrations: runner/releases.py says which release shipped which.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from runner.migrations import migrations_dir, sql_dir
from runner.releases import RELEASES, __version__, current_release, migration_ids, release_of

from .docs_text import blocks_in
from .prisma_app import FENCE

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "install.md"
WHEEL = f"stuck_runs-{__version__}-py3-none-any.whl"
SDIST = f"stuck_runs-{__version__}.tar.gz"
NEEDS_VENV = pytest.mark.skipif(
    subprocess.run([sys.executable, "-m", "venv", "--help"], capture_output=True).returncode,
    reason="needs python3-venv",
)


def clean_env(path: str) -> dict[str, str]:
    """The environment of a machine without the source tree: no PYTHONPATH, no active venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DATABASE_URL", "DIRECT_URL", "PATH")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PATH": path}


def sh(script: str, cwd: Path, path: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["sh", "-ec", script],
        cwd=cwd,
        env=clean_env(path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` of this tree: the sdist, then the wheel built from the sdist."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Successfully built {SDIST} and {WHEEL}" in result.stdout, result.stdout
    assert "Building wheel from sdist" in result.stderr, result.stderr
    return out


@pytest.fixture(scope="module")
def python_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH entry whose `python` and `python3` are this Python, as an image's would be."""
    directory = tmp_path_factory.mktemp("python-bin")
    base = getattr(sys, "_base_executable", sys.executable)
    for name in ("python", "python3"):
        (directory / name).symlink_to(base)
    return str(directory)


def docs_blocks() -> list[tuple[str, str, str]]:
    """Every fenced block of docs/install.md: (the section it is in, language, code)."""
    text = DOCS.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        [section, *_] = re.findall(r"^## (.+)$", text[: match.start()], re.M)[::-1]
        blocks.append((section, match.group(1), match.group(2)))
    return blocks


# docs/install.md's blocks by name (`<!-- block: NAME -->` before each), with the section
# each stands in: the tests below run every one.
INSTALL_BLOCKS = {
    "install-wheel": "From a wheel file",
    "install-git-url": "From a git URL",
    "install-docker-python": "In a Dockerfile: a Python image",
    "install-docker-node": "In a Dockerfile: a `node:` image",
    "install-export-prisma": "Without Python: Prisma migrations",
}


def block(name: str) -> tuple[str, str]:
    """The named block of docs/install.md: (language, code), as printed."""
    return blocks_in(DOCS.read_text())[name]


def moved(code: str, root: Path, clone: Path | None = None) -> str:
    """The block with the machine's directories moved under `root` (and the repository's URL
    pointing at a clone of this tree)."""
    code = re.sub(r"(?<![\w./-])(/opt/|/usr/local/bin|/tmp/)", lambda m: f"{root}{m[1]}", code)
    if clone is not None:
        code = code.replace("https://github.com/OWNER/stuck-runs", f"file://{clone}")
    return code


def a_root(tmp_path: Path) -> Path:
    for where in ("opt", "usr/local/bin", "tmp", "work"):
        (tmp_path / where).mkdir(parents=True, exist_ok=True)
    return tmp_path


def root_path(root: Path, python_dir: str) -> str:
    return f"{root}/usr/local/bin:{python_dir}:/usr/bin:/bin"


@pytest.fixture(scope="module")
def installed(dist: Path, python_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/install.md's "From a wheel file", run in a clean directory: the install's root."""
    root = a_root(tmp_path_factory.mktemp("from-wheel"))
    lang, code = block("install-wheel")
    assert lang == "sh" and f"./{WHEEL}" in code
    shutil.copy(dist / WHEEL, root / "work")
    out = sh(moved(code, root), root / "work", root_path(root, python_dir)).stdout
    assert out.splitlines()[-1].startswith(f"stuck-runs {__version__} "), out
    return root


def test_the_build_makes_a_wheel_with_the_sql_and_an_sdist_that_builds_again(dist: Path) -> None:
    """The wheel carries migrations/ and sql/ under runner/data and the console script; the
    sdist holds what building needs (the wheel above was built from it) and no test tree."""
    with zipfile.ZipFile(dist / WHEEL) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"stuck_runs-{__version__}.dist-info/entry_points.txt").decode()
    for directory, inside in ((migrations_dir(), "migrations"), (sql_dir(), "sql")):
        for path in directory.glob("*.sql"):
            assert f"runner/data/{inside}/{path.name}" in names, path.name
    assert "runner/export.py" in names and "runner/releases.py" in names
    assert "stuck-runs = runner.cli:entrypoint" in entry_points
    assert not [name for name in names if name.startswith("tests/")]
    with tarfile.open(dist / SDIST) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    # The README's reference is in docs/: every page of it travels with the README.
    pages = [f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")]
    for needed in ("pyproject.toml", "README.md", *pages, "runner/cli.py"):
        assert needed in members, needed
    assert {f"migrations/{p.name}" for p in migrations_dir().glob("*.sql")} <= members
    assert {f"sql/{p.name}" for p in sql_dir().glob("*.sql")} <= members
    assert not [m for m in members if m.startswith(("tests/", ".venv/")) or "node_modules" in m]


@NEEDS_VENV
def test_the_wheel_installs_and_runs_with_no_source_tree(
    installed: Path, empty_db_url: str, tmp_path: Path
) -> None:
    """From a directory elsewhere, with no PYTHONPATH: the installed runner is the wheel's, says
    its version and newest migration, installs every migration and recovers."""
    venv = installed / "opt" / "stuck-runs" / "bin"
    path = f"{venv}:/usr/bin:/bin"
    where = sh(f"{venv}/python -c 'import runner; print(runner.__file__)'", tmp_path, path).stdout
    assert where.startswith(str(installed)) and not where.startswith(str(REPO)), where
    newest = migration_ids(migrations_dir())[-1]
    assert sh("stuck-runs --version", tmp_path, path).stdout == (
        f"stuck-runs {__version__} (migrations of {current_release()} up to {newest})\n"
    )
    url = f"DATABASE_URL='{empty_db_url}'"
    migrated = sh(f"{url} stuck-runs migrate", tmp_path, path)
    assert migrated.stdout.split("\n")[:-1] == [
        f"applied {m}" for m in migration_ids(migrations_dir())
    ]
    recovered = sh(f"{url} stuck-runs recover", tmp_path, path)
    assert "No stuck runs found" in recovered.stderr, recovered.stderr
    assert "nothing to apply" in sh(f"{url} stuck-runs migrate", tmp_path, path).stderr


@NEEDS_VENV
def test_the_export_line_of_the_docs_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """docs/install.md's `export --prisma` line, by the installed command (its migrations come
    from the wheel's data)."""
    lang, code = block("install-export-prisma")
    assert lang == "sh"
    (tmp_path / "prisma" / "migrations").mkdir(parents=True)
    path = f"{installed / 'opt' / 'stuck-runs' / 'bin'}:/usr/bin:/bin"
    sh(code, tmp_path, path)
    written = sorted(p.name.split("_", 1)[1] for p in (tmp_path / "prisma/migrations").iterdir())
    assert written == [
        "stuck_runs_0_1",
        "stuck_runs_0_2",
        "stuck_runs_0_3",
        "stuck_runs_adopt_qualification_runs",
    ]


@NEEDS_VENV
def test_the_git_url_line_installs_from_a_clone(
    dist: Path, python_dir: str, tmp_path: Path
) -> None:
    """docs/install.md's "From a git URL", its URL pointing at a clone of this tree tagged
    v<version> (git+file://): pip builds and installs it."""
    clone = tmp_path / "clone"
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(clone)]
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["commit", "-qm", "tree"],
        ["tag", f"v{__version__}"],
    ):
        subprocess.run([*git, *args], check=True, capture_output=True)
    root = a_root(tmp_path / "root")
    lang, code = block("install-git-url")
    assert lang == "sh" and f"@v{__version__}'" in code
    out = sh(moved(code, root, clone), root / "work", root_path(root, python_dir), 240).stdout
    assert out.splitlines()[-1].startswith(f"stuck-runs {__version__} "), out


def run_dockerfile(code: str, dist: Path, root: Path, path: str) -> str:
    """A Dockerfile's steps without Docker: COPY from the build context (dist), RUN by sh, in
    `root`; an `apt-get install` RUN is checked against this machine's installed packages."""
    lines = re.sub(r"\\\n\s*", "", code).splitlines()
    out = ""
    for line in filter(None, (line.strip() for line in lines)):
        word, _, rest = line.partition(" ")
        if word == "FROM":
            assert rest.startswith(("python:", "node:")), line
        elif word == "COPY":
            source, target = rest.split()
            shutil.copy(dist / source, moved(target, root))
        elif word == "RUN" and "apt-get install" in rest:
            packages = re.search(r"apt-get install ([^&]*)", rest).group(1).split()
            for package in (p for p in packages if not p.startswith("-")):
                status = subprocess.run(
                    ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
                ).stdout
                assert status == "install ok installed", f"{package}: {status}"
        elif word == "RUN":
            out += sh(moved(rest, root), root / "work", path).stdout
        else:
            raise AssertionError(f"a Dockerfile step the test cannot run: {line}")
    return out


@NEEDS_VENV
@pytest.mark.parametrize("name", ["install-docker-python", "install-docker-node"])
def test_the_dockerfile_lines_install_the_command(
    name: str, dist: Path, python_dir: str, tmp_path: Path
) -> None:
    section = INSTALL_BLOCKS[name]
    lang, code = block(name)
    assert lang == "dockerfile"
    if "node:" in section:
        assert "python3-venv" in code and shutil.which("dpkg-query"), "a Debian machine"
    root = a_root(tmp_path)
    path = root_path(root, python_dir)
    if "node:" in section:
        # A node:*-bookworm image's python3 is Debian 12's: so is this machine's, with python3-venv.
        debian = subprocess.run(
            ["/usr/bin/python3", "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
        ).stdout
        assert debian == "True\n", "the Dockerfile counts on a Debian python3 of 3.11 or later"
        path = f"{root}/usr/local/bin:/usr/bin:/bin"
    out = run_dockerfile(code, dist, root, path)
    assert out.splitlines()[-1].startswith(f"stuck-runs {__version__} "), out
    assert (root / "usr/local/bin/stuck-runs").resolve().is_relative_to(root / "opt")


def test_every_block_of_the_install_docs_is_run() -> None:
    """The tests above take each block by its name: a new block needs a test of its own."""
    blocks = blocks_in(DOCS.read_text())
    assert sorted(blocks) == sorted(INSTALL_BLOCKS)
    for section, _, code in docs_blocks():
        [name] = [name for name, (_, named) in blocks.items() if named == code]
        assert INSTALL_BLOCKS[name] == section, name
    assert [(section, lang) for section, lang, _ in docs_blocks()] == [
        ("From a wheel file", "sh"),
        ("From a git URL", "sh"),
        ("In a Dockerfile: a Python image", "dockerfile"),
        ("In a Dockerfile: a `node:` image", "dockerfile"),
        ("Without Python: Prisma migrations", "sh"),
    ]
    text = DOCS.read_text()
    assert WHEEL in text and SDIST in text, "docs/install.md names another version's files"


def test_the_version_agrees_with_the_migrations() -> None:
    """The package's version is the newest release of runner/releases.py, which holds every
    migration (the newest release open-ended, so the next migration belongs to it), and each
    release's last migration is one of migrations/."""
    ids = migration_ids(migrations_dir())
    releases = [release for release, _ in RELEASES]
    assert releases == sorted(releases, key=lambda r: tuple(map(int, r.split("."))))
    assert releases[-1] == current_release() == "0.3"
    assert RELEASES[-1][1] is None, "the release being made holds every later migration"
    closed = [last for _, last in RELEASES[:-1]]
    assert closed == sorted(closed) and set(closed) <= set(ids)
    assert release_of(ids[-1]) == current_release()
    assert [release_of(m) for m in ids][:3] == ["0.1", "0.1", "0.2"]
    assert all(release_of(m) == "0.3" for m in ids[3:])
    assert release_of("9999_future") == current_release()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'path = "runner/releases.py"' in pyproject
