"""A Next.js-style Prisma 7 app made of docs/prisma.md's snippets, for the tests that run them.

tests/prisma is a small Prisma 7 project holding the original app's QualificationRun model.
`build_project` copies it, writes docs/prisma.md's TypeScript files into it exactly as printed
(read from the page at test time, each by its block's name; no copy here) and generates the client. tests/conftest.py builds it
once per session (`prisma_project`); tests/test_prisma.py and tests/test_start_matrix.py run it.

Offline: Prisma's native engines download from a host CI cannot reach, and nothing here needs
them. The client runs on @prisma/adapter-pg and the WebAssembly query compiler of the npm
package; `prisma generate` runs with PRISMA_SCHEMA_ENGINE_BINARY=/bin/true (generating never
calls the engine); the schema engine runs as WebAssembly (tests/prisma/schema-engine.ts).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import docs_text

PRISMA_DIR = Path(__file__).resolve().parent / "prisma"
PRISMA_DOC = PRISMA_DIR.parent.parent / "docs" / "prisma.md"
PROJECT_FILES = ("package.json", "prisma.config.ts", "schema.prisma", "tsconfig.json")
HARNESS_FILES = ("run-snippet.ts", "schema-engine.ts", "lib/qualify.ts")
SNIPPETS = (
    "prisma.config.ts",
    "lib/prisma.ts",
    "lib/progress.ts",
    "lib/owner.ts",
    "instrumentation.ts",
    "app/api/qualify/route.ts",
    "app/api/qualify/recovery/route.ts",
)
OFFLINE = {
    "PRISMA_SCHEMA_ENGINE_BINARY": "/bin/true",  # `prisma generate` would download it otherwise
    "CHECKPOINT_DISABLE": "1",  # no update check
    "PRISMA_HIDE_UPDATE_MESSAGE": "1",
}


def readme_prisma_text() -> str:
    """docs/prisma.md, the Prisma guide the README links to (its snippets used to be there)."""
    return PRISMA_DOC.read_text()


def prisma_section(text: str) -> str:
    """The Prisma guide's text: the whole page, up to a `## ` section it may grow."""
    return text.split("\n## ", 1)[0]


FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```[ \t]*$", re.M | re.S)
FILE_NAME = re.compile(r"`([\w@.\[\]/-]+\.tsx?)`")


def typescript_snippets(text: str) -> dict[str, str]:
    """Every TypeScript block of the text, by the file the prose just before it names.

    The name is the last `*.ts` in backticks between the previous block and this one, so a
    block cannot escape the test: one without a name, or a second one for a name, fails.
    """
    snippets: dict[str, str] = {}
    prose_start = 0
    for block in FENCE.finditer(text):
        prose, prose_start = text[prose_start : block.start()], block.end()
        if block.group(1) not in ("ts", "tsx", "typescript"):
            continue
        names = FILE_NAME.findall(prose)
        assert names, f"a TypeScript block names no file before it:\n{block.group(2)[:300]}"
        assert names[-1] not in snippets, f"two TypeScript blocks for {names[-1]}"
        snippets[names[-1]] = block.group(2)
    return snippets


def install_node_modules() -> None:
    """`npm ci` when node_modules is missing or older than the lockfile (CI runs it too)."""
    lock = PRISMA_DIR / "package-lock.json"
    installed = PRISMA_DIR / "node_modules" / ".package-lock.json"
    with lock.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # sessions sharing the checkout install once
        if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
            return
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=PRISMA_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def node(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A tool of the project's node_modules (tsx, prisma), run in the project, checked."""
    result = subprocess.run(
        [str(project / "node_modules" / ".bin" / args[0]), *args[1:]],
        cwd=project,
        env=os.environ | OFFLINE | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def build_project(root: Path) -> Path:
    """A private copy of tests/prisma: the README's snippets in an app's layout, a fresh client.

    A copy, so that test sessions sharing the checkout never generate into each other's files.
    """
    install_node_modules()
    for name in (*PROJECT_FILES, *HARNESS_FILES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PRISMA_DIR / name, root / name)
    (root / "node_modules").symlink_to(PRISMA_DIR / "node_modules")
    snippets = typescript_snippets(readme_prisma_text())
    assert sorted(snippets) == sorted(SNIPPETS), (
        f"docs/prisma.md's TypeScript files: {sorted(snippets)}"
    )
    for name in SNIPPETS:  # each block is marked `<!-- block: FILE -->` by the file it is
        code = docs_text.block(name)
        assert code == snippets[name], f"the block named {name} is not the one the prose names"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(code)
    node(root, "prisma", "generate", env={"DATABASE_URL": "postgresql://localhost/unused"})
    return root


def app_dir(project: Path, root: Path, dotenv: str | None = None) -> Path:
    """One deployment of the built app in `root`: the project's files, and a .env of its own.

    Linked, not copied: the client is generated once per session.
    """
    root.mkdir(parents=True, exist_ok=True)
    for entry in project.iterdir():
        if not (root / entry.name).exists():
            (root / entry.name).symlink_to(entry)
    if dotenv is not None:
        (root / ".env").write_text(dotenv)
    return root


def node_url(url: str) -> str:
    """The URL with a host name: JavaScript's URL() rejects `user@/db?host=/socket/dir`."""
    parts = urlsplit(url)
    if parts.hostname:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.netloc.rstrip('@')}@localhost"))


def engine(
    project: Path, command: str, url: str, schema: str, migrations: Path | None = None
) -> subprocess.CompletedProcess:
    """Prisma's schema engine on the app's database: see tests/prisma/schema-engine.ts."""
    args = [command, schema, *([str(migrations)] if migrations else [])]
    return node(project, "tsx", "schema-engine.ts", *args, env={"DATABASE_URL": url})
