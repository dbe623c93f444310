"""The forecast job on a real PostgreSQL ledger: what it stores, its run row as a mutex,
and the scheduler's nightly slot under the lease, through a PostgreSQL outage."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache import forecast_job
from inventory_cache.engine import StockEngine
from inventory_cache.forecast import INTERMITTENT_MODELS
from inventory_cache.forecast_job import STALE_AFTER, run_forecast, start_run
from inventory_cache.lease import Lease
from inventory_cache.scheduler import Scheduler
from persistence.db import make_engine, session_factory
from persistence.models import Forecast, ForecastRun, Movement
from tests.support.api import CLI
from tests.support.postgres import admin_execute, fresh_database
from tests.support.services import make_settings

NOW = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)  # half an hour after the default 02:30 slot
DAYS = 140


def ledger_rows(sku: str, daily: np.ndarray) -> list[dict[str, Any]]:
    start = NOW.replace(hour=0) - timedelta(days=DAYS)
    on_hand = 100_000
    rows = [_row(sku, "inbound", on_hand, on_hand, start - timedelta(days=1), 0)]
    for d, qty in enumerate(daily):
        if qty:
            on_hand -= int(qty)
            rows.append(
                _row(
                    sku, "pos_sale", -int(qty), on_hand, start + timedelta(days=d, hours=11), d + 1
                )
            )
    return rows


def _row(sku: str, type: str, delta: int, after: int, at: datetime, n: int) -> dict[str, Any]:
    return {
        "op_id": f"{type}:{sku}:{n}",
        "sku": sku,
        "location": "north",
        "type": type,
        "reason": type,
        "ref": f"r{n}",
        "delta_on_hand": delta,
        "delta_locked": 0,
        "on_hand_after": after,
        "locked_after": 0,
        "safety_stock_after": 0,
        "version": n,
        "created_at": at,
        "stream_id": f"{n}-0",
    }


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        engine = make_engine(url)
        rng = np.random.default_rng(7)
        week = np.tile([1.0, 1.0, 1.0, 1.2, 1.5, 2.0, 0.3], DAYS // 7)
        with engine.begin() as conn:
            conn.execute(insert(Movement), ledger_rows("steady", rng.poisson(8 * week)))
            rare = (rng.random(DAYS) < 0.1) * rng.poisson(2.0, DAYS)
            conn.execute(insert(Movement), ledger_rows("rare", rare))
        engine.dispose()
        yield url


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def test_a_run_stores_each_series_forecast_with_its_model_and_backtest_error(
    sessions: sessionmaker[Session],
) -> None:
    seen: list[tuple[int, int]] = []
    with sessions() as s:  # a series that stopped selling, forecast by an earlier run
        s.add(
            Forecast(
                sku="gone",
                location="north",
                run_id="r0",
                start_date=NOW.date(),
                model="tsb",
                demand_class="lumpy",
                daily=[0.1] * 56,
                mean_daily=0.1,
                history_days=DAYS,
                stockout_days=0,
                created_at=datetime.now(UTC) - timedelta(days=30),
            )
        )
        s.commit()

    summary = run_forecast(
        sessions,
        run_id="r1",
        owner="t",
        now=NOW,
        history_days=DAYS,
        progress=lambda d, t: seen.append((d, t)),
    )

    assert summary is not None and summary["series"] == 2
    assert seen == [(0, 2), (2, 2)]
    with sessions() as s:
        rows = {f.sku: f for f in s.scalars(select(Forecast))}
        run = s.get(ForecastRun, "r1")
    assert run is not None and run.status == "ok" and run.series == 2
    assert sorted(rows) == ["rare", "steady"]  # "gone" went with its run
    steady, rare = rows["steady"], rows["rare"]
    assert steady.model.split(":")[0] in ("ses_weekly", "holt_weekly")
    assert steady.demand_class == "smooth"
    assert rare.model in INTERMITTENT_MODELS and rare.demand_class in ("intermittent", "lumpy")
    assert len(steady.daily) == 56 and steady.start_date == NOW.date()
    assert steady.mean_daily == pytest.approx(8 * 8 / 7, rel=0.15)
    assert steady.rmse is not None and steady.rmse > 0 and steady.mase is not None
    assert (steady.history_days, steady.stockout_days) == (DAYS, 0)
    # done: the same run is not taken again
    assert run_forecast(sessions, run_id="r1", owner="t", now=NOW, history_days=DAYS) is None


def test_the_run_row_is_a_mutex_that_a_failed_or_stale_run_gives_up(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        assert start_run(s, run_id="n1", owner="a", now=NOW) is True
        assert start_run(s, run_id="n1", owner="b", now=NOW + timedelta(minutes=1)) is False
        assert start_run(s, run_id="n1", owner="b", now=NOW + STALE_AFTER * 2) is True
        s.execute(update(ForecastRun).values(status="failed"))
        s.commit()
        assert start_run(s, run_id="n1", owner="c", now=NOW + STALE_AFTER * 2) is True
        assert s.scalar(select(ForecastRun.owner)) == "c"


async def scheduler(
    client: Any, prefix: str, sessions: sessionmaker[Session], owner: str
) -> Scheduler:
    cfg = make_settings(prefix)
    lease = Lease(client, prefix=prefix, name="scheduler", ttl_ms=30_000, owner=owner)
    return Scheduler(StockEngine(client, cfg), cfg, lease=lease, sessions=sessions)


async def test_only_the_lease_holder_runs_the_nightly_slot_and_only_once(
    real_redis: Any, prefix: str, sessions: sessionmaker[Session]
) -> None:
    a = await scheduler(real_redis, prefix, sessions, "a")
    b = await scheduler(real_redis, prefix, sessions, "b")
    await a.heartbeat(), await b.heartbeat()
    assert a.lease.held and not b.lease.held

    assert await b.forecast_if_due(NOW) is None
    first = await a.forecast_if_due(NOW)
    again = await a.forecast_if_due(NOW + timedelta(minutes=1))
    too_early = await a.forecast_if_due(NOW.replace(hour=2))

    assert first is not None and first["series"] == 2
    assert again is None and too_early is None
    with sessions() as s:
        assert s.scalars(select(ForecastRun.run_id)).all() == ["nightly-20270301T0230"]


async def test_a_postgresql_outage_fails_the_tick_and_the_next_tick_runs_the_slot(
    real_redis: Any, prefix: str, db_url: str, sessions: sessionmaker[Session]
) -> None:
    sched = await scheduler(real_redis, prefix, sessions, "a")
    await sched.heartbeat()
    name = db_url.rsplit("/", 1)[1]
    admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin_execute(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    try:
        with pytest.raises(OperationalError):
            await sched.forecast_if_due(NOW)
    finally:
        admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    summary = await sched.forecast_if_due(NOW + timedelta(minutes=1))

    assert summary is not None and summary["series"] == 2
    with sessions() as s:
        assert s.scalar(select(ForecastRun.status)) == "ok"


async def test_a_run_stops_between_chunks_when_the_lease_is_lost(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(forecast_job.RunAborted):
        run_forecast(
            sessions, run_id="r2", owner="t", now=NOW, history_days=DAYS, keep_going=lambda: False
        )

    with sessions() as s:
        assert s.scalar(select(ForecastRun.status)) == "failed"
        assert s.scalars(select(Forecast)).all() == []


def test_the_forecast_command_prints_the_run_summary_and_draws_progress(db_url: str) -> None:
    env = {**os.environ, "INVENTORY_DATABASE_URL": db_url, "INVENTORY_FORECAST_HISTORY_DAYS": "365"}

    done = subprocess.run([CLI, "forecast"], env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["run_id"].startswith("manual-") and summary["series"] == 2
    assert "series forecast" in done.stderr
