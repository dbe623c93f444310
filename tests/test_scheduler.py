"""Two schedulers running: each expiry and each reconciliation happens once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from wms_simulator import WmsSimulator

from inventory_cache.engine import StockEngine
from inventory_cache.lease import Lease
from inventory_cache.models import LineRequest
from inventory_cache.reconcile import load_run
from inventory_cache.scheduler import Scheduler, due_slot
from persistence.db import make_engine, session_factory
from persistence.models import ReconcileRun
from tests.support.clock import ManualClock
from tests.support.doubles import SimSource
from tests.support.redis_state import stream_events
from tests.support.services import make_settings


@pytest.fixture
def sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    db = make_engine(pg_url)
    yield session_factory(db)
    db.dispose()


def two_schedulers(
    client: Any,
    prefix: str,
    clock: Any,
    sessions: sessionmaker[Session] | None = None,
    wms: Any = None,
    **settings: Any,
) -> list[Scheduler]:
    cfg = make_settings(prefix, reconcile_mode="correct", **settings)
    return [
        Scheduler(
            StockEngine(client, cfg, **({"clock": clock} if clock else {})),
            cfg,
            lease=Lease(
                client,
                prefix=prefix,
                name="scheduler",
                ttl_ms=int(cfg.lease_seconds * 1000),
                owner=name,
            ),
            sessions=sessions,
            wms=wms,
        )
        for name in ("host-a", "host-b")
    ]


async def test_two_schedulers_expire_each_reservation_and_run_each_slot_once(
    real_redis: Any, prefix: str, clock: ManualClock, sessions: sessionmaker[Session]
) -> None:
    sim = WmsSimulator(clock)
    a, b = two_schedulers(real_redis, prefix, clock, sessions, SimSource(sim))
    eng = a.engine
    await eng.mark_ready()
    for sku in ("X", "Y"):
        await eng.inbound(ref="in", sku=sku, location="north", qty=100)
        sim.seed(sku, "north", 100)
    sim.drift("Y", "north", -3)
    for i in range(200):
        await eng.reserve(order_id=f"o{i}", lines=[LineRequest("XY"[i % 2], 1)], ttl_seconds=1)
    clock.advance(1)
    at_3am = datetime(2030, 1, 1, 3, 0, 5, tzinfo=UTC)

    held = await asyncio.gather(a.heartbeat(), b.heartbeat())
    swept = list(await asyncio.gather(a.sweep(), b.sweep()))
    runs = await asyncio.gather(a.reconcile_if_due(at_3am), b.reconcile_if_due(at_3am))

    assert sorted(held) == [False, True]
    leader, standby = (a, b) if held[0] else (b, a)
    assert swept == ([200, 0] if leader is a else [0, 200])
    expired = Counter(e["ref"] for e in await stream_events(eng) if e["t"] == "expire")
    assert len(expired) == 200 and set(expired.values()) == {1}
    assert [r is not None for r in runs] == [leader is a, leader is b]
    with sessions() as s:
        run = load_run(s, "cron-20300101T0300")
        assert run is not None and run["status"] == "done"
        assert run["diffs"] == [
            {
                "sku": "Y",
                "location": "north",
                "ours": 100,
                "wms": 97,
                "diff": 3,
                "kind": "oversell_risk",
            }
        ]
        assert run["summary"]["corrected"] == 1

    # The leader goes away; the standby takes over, does not redo the 03:00 run, and
    # runs the next day's.
    await leader.lease.release()
    assert await standby.heartbeat() is True
    assert await standby.reconcile_if_due(at_3am) is None
    next_day = await standby.reconcile_if_due(datetime(2030, 1, 2, 3, 0, 1, tzinfo=UTC))
    assert await leader.heartbeat() is False
    assert await leader.reconcile_if_due(datetime(2030, 1, 2, 3, 0, 2, tzinfo=UTC)) is None

    assert next_day is not None and next_day.diffs == []
    with sessions() as s:
        assert list(s.scalars(select(ReconcileRun.run_id).order_by(ReconcileRun.run_id))) == [
            "cron-20300101T0300",
            "cron-20300102T0300",
        ]


async def test_running_schedulers_release_expired_reservations_in_real_time(
    real_redis: Any, prefix: str
) -> None:
    """APScheduler itself, on the wall clock: the leader sweeps; when it stops, the
    standby takes over and sweeps what expires after."""
    a, b = two_schedulers(real_redis, prefix, None, lease_seconds=0.6, expiry_sweep_seconds=0.1)
    eng = a.engine
    await eng.mark_ready()
    await eng.inbound(ref="in", sku="X", location="north", qty=100)
    for i in range(50):
        await eng.reserve(order_id=f"early{i}", lines=[LineRequest("X", 1)], ttl_seconds=1)
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(s.run(stop)) for s, stop in zip((a, b), stops, strict=True)]

    async def wait_available(n: int) -> None:
        for _ in range(60):
            if (await eng.availability("X")).available == n:
                return
            await asyncio.sleep(0.1)

    await wait_available(100)
    first = a if a.lease.held else b
    for i in range(30):
        await eng.reserve(order_id=f"late{i}", lines=[LineRequest("X", 1)], ttl_seconds=1)
    stops[0 if first is a else 1].set()  # the leader shuts down and hands the lease on
    await wait_available(100)
    for stop in stops:
        stop.set()
    await asyncio.gather(*tasks)

    other = b if first is a else a
    assert other.lease.held is False  # released at shutdown
    expired = Counter(e["ref"] for e in await stream_events(eng) if e["t"] == "expire")
    assert len(expired) == 80 and set(expired.values()) == {1}
    assert (await eng.availability("X")).available == 100


@pytest.mark.parametrize(
    ("cron", "now", "slot"),
    [
        ("0 3 * * *", datetime(2030, 1, 1, 3, 0, 0, tzinfo=UTC), datetime(2030, 1, 1, 3, 0)),
        ("0 3 * * *", datetime(2030, 1, 1, 3, 59, 59, tzinfo=UTC), datetime(2030, 1, 1, 3, 0)),
        ("0 3 * * *", datetime(2030, 1, 1, 4, 0, 1, tzinfo=UTC), None),  # past the grace
        ("0 3 * * *", datetime(2030, 1, 1, 2, 59, 59, tzinfo=UTC), None),
        ("*/5 * * * *", datetime(2030, 1, 1, 3, 12, tzinfo=UTC), datetime(2030, 1, 1, 3, 10)),
    ],
)
def test_the_due_slot_is_the_latest_fire_time_within_the_grace(
    cron: str, now: datetime, slot: datetime | None
) -> None:
    expected = slot.replace(tzinfo=UTC) if slot else None
    assert due_slot(CronTrigger.from_crontab(cron, timezone=UTC), now) == expected
