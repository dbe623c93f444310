"""The fixture plugins every test can use without an import (tests/support/), and the
order modules run in.

Real Redis and PostgreSQL from the machine, fakeredis as a second backend: each test gets
its own key prefix (and its own database for PostgreSQL) and cleans up.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.support.backends",
    "tests.support.redis_servers",
    "tests.support.postgres",
    "tests.support.api",
    "tests.support.doubles",
    "tests.support.wheel",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a `slow` test first, the rest in their usual order: scripts/test.sh
    hands modules to parallel workers in this order, so the longest start at once instead
    of keeping one worker busy after the others have finished."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)
