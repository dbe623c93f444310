"""Recorded reconciliation runs as `/v1/reconcile` answers them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from inventory_cache.api.schemas.common import iso_datetime
from inventory_cache.reconcile import list_runs, load_run


def _dates(run: dict[str, Any]) -> dict[str, Any]:
    run["started_at"] = iso_datetime(run["started_at"])
    if run["finished_at"] is None:
        del run["finished_at"]
    else:
        run["finished_at"] = iso_datetime(run["finished_at"])
    if run["summary"] is None:
        del run["summary"]
    return run


def runs(db: Engine, limit: int) -> list[dict[str, Any]]:
    with Session(db) as s:
        return [_dates(run) for run in list_runs(s, limit=limit)]


def run(db: Engine, run_id: str) -> dict[str, Any] | None:
    with Session(db) as s:
        found = load_run(s, run_id)
    return None if found is None else _dates(found)
