"""Which migrations each release of stuck-runs shipped: the version and the SQL agree.

`stuck-runs --version` prints the package version, and `export --prisma` names
each Prisma migration it writes after the release whose migrations it holds:
both read this table, and tests/test_packaging.py holds it to migrations/ and
to the package version. From git history: 0001 and 0002 landed in 0.1 (the
install in the application's schema), 0003 in 0.2 (stuck-runs beside the app),
0004 onward in 0.3 (the user's deployment).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__version__ = "0.3.0"

# Each release, oldest first, with the last migration it shipped. The newest
# release is the one being made: None, because it holds every migration after
# the release before it (0006 and any later one belong to it without an edit
# here). When the version moves on, write the newest migration of the release
# that was made instead of None and add the new release below it with None.
RELEASES: tuple[tuple[str, str | None], ...] = (
    ("0.1", "0002_retries"),
    ("0.2", "0003_beside_the_app"),
    ("0.3", None),
)


def current_release() -> str:
    """The release this package is: its version's major.minor."""
    return ".".join(__version__.split(".")[:2])


def release_of(migration_id: str) -> str:
    """The release that shipped a migration (ids sort in the order they were written)."""
    for release, last in RELEASES:
        if last is None or migration_id <= last:
            return release
    raise LookupError(f"migration {migration_id} is newer than every release in runner/releases.py")


def by_release(migration_ids: Iterable[str]) -> list[tuple[str, list[str]]]:
    """The migrations grouped by release, both in order; releases without one left out."""
    groups: dict[str, list[str]] = {}
    for migration_id in sorted(migration_ids):
        groups.setdefault(release_of(migration_id), []).append(migration_id)
    return [(release, groups[release]) for release, _ in RELEASES if release in groups]


def migration_ids(directory: Path) -> list[str]:
    """The ids of the migrations in a migrations/ directory (rollback files aside)."""
    return sorted(
        path.stem
        for path in directory.glob("*.sql")
        if not path.name.endswith(".rollback.sql") and not path.name.startswith("post-apply")
    )
