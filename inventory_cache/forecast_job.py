"""The forecast job: ledger -> daily demand -> models -> `forecasts`, in bounded chunks.

Run nightly by the scheduler (`INVENTORY_FORECAST_CRON`, under its lease) and on demand
by `inventory-cache forecast`. Every (sku, location) with a sale in the last
`INVENTORY_FORECAST_HISTORY_DAYS` is forecast `HORIZON_DAYS` ahead from today (UTC);
series are read and fitted `CHUNK` at a time, so memory stays bounded by the chunk
(2,000 series x 364 days is ~6 MB per array), not by the catalogue.

A run is recorded in `forecast_runs`; inserting (or taking over) its row in one
statement is the run's mutex, on top of the scheduler's lease: two schedulers on either
side of a lease handover cannot both run `nightly-<slot>`. A run that fails (PostgreSQL
away, say) is marked `failed` when it can be, and may be taken over at once; one that
died without a word (`running`, heartbeat older than `STALE_AFTER`) after that delay.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache.demand import load_panel, series_keys
from inventory_cache.forecast import fit
from persistence.models import Forecast, ForecastRun

log = logging.getLogger(__name__)

CHUNK = 2000
STALE_AFTER = timedelta(minutes=10)
Progress = Callable[[int, int], None]


class RunAborted(RuntimeError):
    """The caller withdrew (the scheduler lost its lease); the run is marked failed."""


def _insert(session: Session, model: Any) -> Any:
    return (sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert)(model)


def start_run(session: Session, *, run_id: str, owner: str, now: datetime) -> bool:
    """Take the run's row: True when this caller may run it now."""
    stmt = _insert(session, ForecastRun).values(
        run_id=run_id, status="running", owner=owner, started_at=now, heartbeat_at=now
    )
    t = ForecastRun.__table__.c
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.run_id],
        set_={"status": "running", "owner": owner, "started_at": now, "heartbeat_at": now},
        where=(t.status == "failed")
        | ((t.status == "running") & (t.heartbeat_at < now - STALE_AFTER)),
    ).returning(t.run_id)
    taken = session.execute(stmt).first() is not None
    session.commit()
    return taken


def run_status(session: Session, run_id: str) -> str | None:
    return session.scalar(select(ForecastRun.status).where(ForecastRun.run_id == run_id))


def _rows(
    keys: list[tuple[str, str]], fitted: Any, panel: Any, run_id: str, start: date
) -> list[dict[str, Any]]:
    out = []
    written = datetime.now(UTC)
    stockouts = panel.stockout.sum(axis=1)
    for i, (sku, loc) in enumerate(keys):
        daily = [round(float(v), 3) for v in fitted.forecast[i]]
        out.append(
            {
                "sku": sku,
                "location": loc,
                "run_id": run_id,
                "start_date": start,
                "model": fitted.model[i],
                "demand_class": fitted.demand_class[i],
                "daily": daily,
                "mean_daily": round(float(np.mean(fitted.forecast[i])), 4),
                "mae": _num(fitted.mae[i]),
                "rmse": _num(fitted.rmse[i]),
                "mase": _num(fitted.mase[i]),
                "history_days": panel.days,
                "stockout_days": int(stockouts[i]),
                "created_at": written,
            }
        )
    return out


def _num(v: float) -> float | None:
    return round(float(v), 4) if math.isfinite(v) else None


def _store(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = _insert(session, Forecast)
    cols = [c for c in rows[0] if c not in ("sku", "location")]
    stmt = stmt.on_conflict_do_update(
        index_elements=["sku", "location"],
        set_={c: stmt.excluded[c] for c in cols},
    )
    session.execute(stmt, rows)


def run_forecast(
    sessions: sessionmaker[Session],
    *,
    run_id: str,
    owner: str,
    now: datetime | None = None,
    history_days: int = 364,
    chunk: int = CHUNK,
    progress: Progress | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """Forecast every series with sales in the history window; None when the run's row
    is not this caller's to take (already done, or running elsewhere).

    Returns:
        The run's summary (also stored on its row): series, seconds, models chosen,
        mean backtest MASE per demand class.
    """
    now = now or datetime.now(UTC)
    with sessions() as s:
        if not start_run(s, run_id=run_id, owner=owner, now=now):
            return None
    began = time.perf_counter()
    began_at = datetime.now(UTC)
    end = now.astimezone(UTC).date()
    start = end - timedelta(days=history_days)
    try:
        with sessions() as s:
            keys = series_keys(s, start=start, end=end)
        models: Counter[str] = Counter()
        mase: dict[str, list[float]] = {}
        if progress is not None:
            progress(0, len(keys))
        for i in range(0, len(keys), chunk):
            if keep_going is not None and not keep_going():
                raise RunAborted(f"forecast run {run_id} withdrawn")
            part = keys[i : i + chunk]
            with sessions() as s:
                panel = load_panel(s, keys=part, start=start, end=end)
            fitted = fit(panel.demand, panel.observed)
            models.update(fitted.model)
            for cls, m in zip(fitted.demand_class, fitted.mase, strict=True):
                if math.isfinite(m):
                    mase.setdefault(cls, []).append(float(m))
            with sessions() as s:
                _store(s, _rows(part, fitted, panel, run_id, end))
                s.execute(
                    update(ForecastRun)
                    .where(ForecastRun.run_id == run_id)
                    .values(heartbeat_at=datetime.now(UTC), series=i + len(part))
                )
                s.commit()
            if progress is not None:
                progress(i + len(part), len(keys))
        summary = {
            "series": len(keys),
            "start_date": end.isoformat(),
            "history_days": history_days,
            "seconds": round(time.perf_counter() - began, 2),
            "models": dict(sorted(models.items())),
            "mase_by_class": {c: round(float(np.mean(v)), 4) for c, v in sorted(mase.items())},
        }
        with sessions() as s:
            # Series that no longer sell; rows another run wrote since this one began stay.
            s.execute(
                delete(Forecast).where(Forecast.run_id != run_id, Forecast.created_at < began_at)
            )
            s.execute(
                update(ForecastRun)
                .where(ForecastRun.run_id == run_id)
                .values(
                    status="ok", finished_at=datetime.now(UTC), series=len(keys), summary=summary
                )
            )
            s.commit()
        log.info("forecast run %s: %s", run_id, summary)
        return summary
    except Exception as exc:
        _mark_failed(sessions, run_id, exc)
        raise


def _mark_failed(sessions: sessionmaker[Session], run_id: str, exc: Exception) -> None:
    try:
        with sessions() as s:
            s.execute(
                update(ForecastRun)
                .where(ForecastRun.run_id == run_id)
                .values(status="failed", finished_at=datetime.now(UTC), error=repr(exc)[:2000])
            )
            s.commit()
    except Exception:
        log.warning("forecast run %s: could not record its failure", run_id, exc_info=True)


def run_command(*, history_days: int | None = None) -> int:
    """`inventory-cache forecast`: one run now, a progress bar on standard error, the
    summary as JSON on standard output; exit 0, or 1 when another run holds the row."""
    import json
    import os
    import socket
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from inventory_cache.settings import get_settings
    from persistence.db import database_url, make_engine, session_factory

    cfg = get_settings()
    db = make_engine(database_url(cfg.database_url))
    now = datetime.now(UTC)
    run_id = f"manual-{now:%Y%m%dT%H%M%S}"
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("series forecast", total=None)
            summary = run_forecast(
                session_factory(db),
                run_id=run_id,
                owner=f"{socket.gethostname()}-{os.getpid()}",
                now=now,
                history_days=history_days or cfg.forecast_history_days,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        db.dispose()
    if summary is None:
        print(f"forecast run {run_id} is already taken", file=sys.stderr)
        return 1
    print(json.dumps({"run_id": run_id, **summary}))
    return 0
