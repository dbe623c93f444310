"""The rows of a report (`inventory_cache.reports`), read in a session of their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

Rows = list[dict[str, Any]]


def report(db: Engine, build: Callable[..., Rows], /, **params: Any) -> Rows:
    """`build(session, **params)`: one of `inventory_cache.reports`' functions."""
    with Session(db) as s:
        return build(s, **params)
