"""The README and docs/ as the tests read them, and the blocks they name.

A block the tests run is marked in the page by an HTML comment just before its fence,
`<!-- block: NAME -->`, and a test takes it with `block("NAME")`: so what runs is what is
printed, and tests/test_docs_blocks.py can tell every block apart from an illustration.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# A fence, with the lines before it (for a marker), its info string and its body.
FENCE = re.compile(r"^( *)```(\S*)[^\n]*\n(.*?)^ *```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"<!-- block: ([\w./-]+) -->")


def pages() -> list[Path]:
    """README.md and every docs/*.md, in a fixed order."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def read(name: str = "README.md") -> str:
    """One page by its path from the repository root (`README.md`, `docs/sql.md`)."""
    return (ROOT / name).read_text()


def all_text() -> str:
    """Every page, one after the other: where a knob or a command must be named somewhere."""
    return "\n\n".join(page.read_text() for page in pages())


def fences(text: str) -> list[tuple[str, str, str]]:
    """Every fenced block of a page: (the non-blank line before it, language, code)."""
    return [
        (text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1].strip(), *fence.group(2, 3))
        for fence in FENCE.finditer(text)
    ]


def blocks_in(text: str) -> dict[str, tuple[str, str]]:
    """The marked blocks of one page's text: NAME -> (language, code). A name is unique."""
    found: dict[str, tuple[str, str]] = {}
    for before, language, code in fences(text):
        marker = MARKER.fullmatch(before)
        if marker:
            assert marker.group(1) not in found, f"two blocks named {marker.group(1)!r}"
            found[marker.group(1)] = (language, code)
    return found


def named_blocks() -> dict[str, tuple[Path, str, str]]:
    """Every marked block of every page: NAME -> (page, language, code). A name is unique."""
    found: dict[str, tuple[Path, str, str]] = {}
    for page in pages():
        for name, (language, code) in blocks_in(page.read_text()).items():
            assert name not in found, f"two blocks named {name!r}"
            found[name] = (page, language, code)
    return found


def block(name: str) -> str:
    """The code of the block marked `<!-- block: NAME -->`, exactly as printed."""
    blocks = named_blocks()
    assert name in blocks, f"no block named {name!r} in README.md or docs/"
    return blocks[name][2]


def section(page: str, title: str) -> str:
    """The `## title` section of a page, up to the next `## ` heading."""
    text = read(page)
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


# The end of a statement in a documented SQL block: `;` closing a line, maybe before a comment.
STATEMENT_END = re.compile(r";[ \t]*(?:--[^\n]*)?$", re.M)


def sql_statements(code: str) -> list[str]:
    """A documented SQL block as the statements psql would send, one by one (so that a `CALL`
    that commits runs outside a transaction block, as psql runs it); comment-only parts go."""
    statements = []
    for part in STATEMENT_END.split(code):
        body = "\n".join(line for line in part.splitlines() if not line.lstrip().startswith("--"))
        if body.strip():
            statements.append(body.strip())
    return statements
