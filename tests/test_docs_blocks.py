"""Every code block of README.md and docs/*.md is run by a test, or says it is not.

A block a test runs has `<!-- block: NAME -->` on the line before its fence, and some test
takes it by that NAME (tests/docs_text.py's `block("NAME")`, or a list of names it runs). Any
other block follows the visible line ILLUSTRATION. So a block added without either, or a
name no test uses any more, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .docs_text import FENCE, MARKER, ROOT, fences, named_blocks, pages, read

ILLUSTRATION = "Illustration (not run by the tests):"
TESTS = Path(__file__).resolve().parent
# The files that only read or walk the blocks: using a name there proves nothing.
READERS = {"docs_text.py", "test_docs_blocks.py"}
# The README's sections, in the order a new user needs them.
README_ORDER = [
    "Quick start",
    "Install into your database",
    "Start-up: one line that never blocks",
    "Your own table, and Prisma",
    "pg_cron",
    "Concepts",
    "Troubleshooting",
]
README_MAX_LINES = 350


def page_ids() -> list[str]:
    return [str(page.relative_to(ROOT)) for page in pages()]


@pytest.mark.parametrize("page", page_ids())
def test_every_block_is_run_or_marked_as_an_illustration(page: str) -> None:
    text = read(page)
    fence_lines = len(re.findall(r"^ *```", text, re.M))
    assert fence_lines == 2 * len(FENCE.findall(text)), f"{page}: a fence without its pair"
    unmarked = [
        code[:80]
        for before, _, code in fences(text)
        if before != ILLUSTRATION and not MARKER.fullmatch(before)
    ]
    assert not unmarked, f"{page}: blocks neither named for a test nor illustrations: {unmarked}"


def test_every_named_block_is_taken_by_a_test() -> None:
    sources = "\n".join(
        path.read_text() for path in TESTS.rglob("*.py") if path.name not in READERS
    )
    unused = [name for name in named_blocks() if f'"{name}"' not in sources]
    assert not unused, f"named blocks no test takes: {unused}"


def test_the_walker_sees_both_kinds() -> None:
    """The checks above have something to check: named blocks and illustrations on the pages."""
    assert len(named_blocks()) >= 30
    assert sum(read(page).count(ILLUSTRATION) for page in page_ids()) >= 5


def test_the_readme_follows_the_users_path() -> None:
    readme = read("README.md")
    assert len(readme.splitlines()) <= README_MAX_LINES
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert [h for h in headings if h in README_ORDER] == README_ORDER, headings
    assert headings[: len(README_ORDER)] == README_ORDER, headings


WORDED_PAGES = page_ids()


@pytest.mark.parametrize("page", WORDED_PAGES)
def test_no_internal_words(page: str) -> None:
    """Our own words for our history mean nothing to a user."""
    found = re.findall(r"design card|original design|\bissue \d+", read(page), re.I)
    assert not found, f"{page}: {found}"


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", page_ids())
def test_every_relative_link_reaches_its_page_and_heading(page: str) -> None:
    """The README's summaries point into docs/ and the pages into each other: no link may
    break as text moves between them."""
    here = ROOT / page
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", read(page)):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        linked = (here.parent / path).resolve() if path else here
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{page}: {broken}"
