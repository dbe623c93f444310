"""Alerts: one per crossing of a threshold, cleared on recovery, never one per change."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache.alerts import AlertMonitor, Observation, apply_observations
from inventory_cache.engine import StockEngine
from inventory_cache.models import LineRequest
from inventory_cache.webhooks import WebhookSender, verify
from persistence.db import make_engine, session_factory
from persistence.models import Alert, Policy
from tests.support.clock import ManualClock
from tests.support.doubles import Receiver
from tests.support.services import make_settings


@pytest.fixture
def sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    db = make_engine(pg_url)
    yield session_factory(db)
    db.dispose()


@pytest.fixture
async def engine(real_redis: Any, prefix: str, clock: ManualClock) -> StockEngine:
    eng = StockEngine(real_redis, make_settings(prefix), clock=clock)
    await eng.mark_ready()
    return eng


def set_policy(
    sessions: sessionmaker[Session], sku: str, location: str, reorder_point: int
) -> None:
    with sessions() as s:
        s.add(Policy(sku=sku, location=location, reorder_point=reorder_point))
        s.commit()


def alerts(sessions: sessionmaker[Session]) -> list[tuple[str, str, str, bool, bool]]:
    """(sku, location, kind, active, cleared) of every alert, oldest first."""
    with sessions() as s:
        return [
            (a.sku, a.location, a.kind, a.active, a.cleared_at is not None)
            for a in s.scalars(select(Alert).order_by(Alert.id))
        ]


async def adjust(engine: StockEngine, ref: str, delta: int) -> None:
    await engine.adjust(ref=ref, sku="A", location="north", reason="correction", delta=delta)


async def test_low_stock_fires_once_per_crossing_and_clears_on_recovery(
    engine: StockEngine, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    set_policy(sessions, "A", "north", reorder_point=5)
    monitor = AlertMonitor(engine, sessions)
    await engine.inbound(ref="in-1", sku="A", location="north", qty=10)
    assert await monitor.tick() == []  # available 10

    await adjust(engine, "down", -6)  # 4 <= 5: crosses down
    raised = await monitor.tick()
    await adjust(engine, "within", -1)  # 3: still low, no new alert
    within = await monitor.tick()
    await engine.inbound(ref="in-2", sku="A", location="north", qty=5)  # 8: recovers
    cleared = await monitor.tick()
    await adjust(engine, "again", -4)  # 4: crosses down again
    again = await monitor.tick()

    assert [(c.change, c.kind, c.details) for c in raised] == [
        ("raised", "low_stock", {"available": 4, "reorder_point": 5})
    ]
    assert within == []
    assert [(c.change, c.alert_id) for c in cleared] == [("cleared", raised[0].alert_id)]
    assert [c.change for c in again] == ["raised"]
    assert alerts(sessions) == [
        ("A", "north", "low_stock", False, True),
        ("A", "north", "low_stock", True, False),
    ]


async def test_crossings_between_two_ticks_are_each_recorded(
    engine: StockEngine, sessions: sessionmaker[Session]
) -> None:
    set_policy(sessions, "A", "north", reorder_point=5)
    monitor = AlertMonitor(engine, sessions)
    await monitor.tick()  # the monitor starts following before the changes
    await engine.inbound(ref="in-1", sku="A", location="north", qty=10)
    await adjust(engine, "down", -6)
    await adjust(engine, "within", -1)
    await engine.inbound(ref="in-2", sku="A", location="north", qty=5)
    await adjust(engine, "again", -4)

    changes = await monitor.tick()

    assert [c.change for c in changes] == ["raised", "cleared", "raised"]
    assert alerts(sessions) == [
        ("A", "north", "low_stock", False, True),
        ("A", "north", "low_stock", True, False),
    ]
    assert await monitor.tick() == []


async def test_without_a_policy_there_is_no_low_stock_alert(
    engine: StockEngine, sessions: sessionmaker[Session]
) -> None:
    monitor = AlertMonitor(engine, sessions)
    await engine.inbound(ref="in-1", sku="A", location="north", qty=1)
    await adjust(engine, "down", -1)

    assert await monitor.tick() == []
    assert alerts(sessions) == []


async def test_oversold_when_a_till_sale_takes_promised_units(
    engine: StockEngine, sessions: sessionmaker[Session]
) -> None:
    monitor = AlertMonitor(engine, sessions)
    await engine.inbound(ref="in-1", sku="A", location="north", qty=4)
    await engine.reserve(order_id="o1", lines=[LineRequest("A", 3, "north")])
    await engine.pos_event(event_id="till-1", type="sale", sku="A", location="north", qty=2)

    raised = await monitor.tick()
    await engine.cancel("o1")
    cleared = await monitor.tick()

    assert [(c.change, c.kind, c.details) for c in raised] == [
        ("raised", "oversold", {"on_hand": 2, "locked": 3, "shortfall": 1})
    ]
    assert [(c.change, c.kind) for c in cleared] == [("cleared", "oversold")]
    assert alerts(sessions) == [("A", "north", "oversold", False, True)]


async def test_a_stream_trimmed_past_the_cursor_is_caught_up_from_current_levels(
    engine: StockEngine, sessions: sessionmaker[Session]
) -> None:
    set_policy(sessions, "A", "north", reorder_point=5)
    monitor = AlertMonitor(engine, sessions)
    await engine.inbound(ref="in-1", sku="A", location="north", qty=10)
    await monitor.tick()
    await adjust(engine, "down", -8)
    await adjust(engine, "up", 1)
    stream = engine.keys.events(engine.keys.group_of("A"))
    (newest,) = await engine.client.xrevrange(stream, count=1)
    # The worker committed everything and trimmed the stream past the monitor's cursor.
    await engine.client.xtrim(stream, minid=newest[0], approximate=False)

    changes = await monitor.tick()

    assert [(c.change, c.details) for c in changes] == [
        ("raised", {"available": 3, "reorder_point": 5})
    ]


async def test_alert_webhooks_are_signed_and_sent_on_raise_and_clear(
    engine: StockEngine, sessions: sessionmaker[Session]
) -> None:
    receiver = Receiver()
    try:
        sender = WebhookSender(allowed_hosts=[receiver.url], secret="k", backoff_s=0.01)
        monitor = AlertMonitor(engine, sessions, sender=sender, webhook_url=receiver.url)
        set_policy(sessions, "A", "north", reorder_point=0)
        await engine.inbound(ref="in-1", sku="A", location="north", qty=1)
        await monitor.tick()
        receiver.statuses = [503]  # the first delivery is retried

        await adjust(engine, "out", -1)
        (raised,) = await monitor.tick()
        await engine.inbound(ref="in-2", sku="A", location="north", qty=1)
        await monitor.tick()

        bodies = receiver.bodies()
        assert [b["event"] for b in bodies] == ["alert.raised", "alert.raised", "alert.cleared"]
        assert bodies[0]["delivery_id"] == bodies[1]["delivery_id"]
        assert bodies[2]["alert"]["id"] == raised.alert_id
        assert bodies[2]["alert"]["sku"] == "A"
        for call in receiver.calls:
            assert verify("k", call["headers"]["X-Inventory-Signature"], call["body"])
    finally:
        receiver.close()


def test_an_alert_another_evaluator_raises_meanwhile_is_not_raised_twice(
    sessions: sessionmaker[Session],
    pg_url: str,
) -> None:
    """The scheduler and a policy change in the API may evaluate one (sku, location) at
    once: the second to insert the active alert waits on the first's unique entry, then
    must agree with it instead of failing (a 500 on `PUT /v1/policies`)."""
    set_policy(sessions, "A", "north", 5)
    low = Observation("A", "north", 2, 0, 0, 1_800_000_000_000)
    with sessions() as other, ThreadPoolExecutor(1) as pool:
        other.add(
            Alert(
                sku="A",
                location="north",
                kind="low_stock",
                active=True,
                raised_at=datetime.now(UTC),
                details={},
            )
        )
        other.flush()  # holds the active (A, north, low_stock) slot until it commits
        evaluation = pool.submit(lambda: apply_observations(sessions(), [low]))
        wait_until_blocked_on_a_lock(pg_url)
        other.commit()
        changes = evaluation.result(timeout=30)

    assert changes == []
    assert alerts(sessions) == [("A", "north", "low_stock", True, False)]


def wait_until_blocked_on_a_lock(pg_url: str) -> None:
    db = make_engine(pg_url)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            with db.connect() as conn:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            if waiting:
                return
            time.sleep(0.05)
        pytest.fail("the evaluation never waited on the other transaction")
    finally:
        db.dispose()


async def test_pre_orders_that_lose_their_cover_raise_one_alert_and_webhook_until_settled(
    engine: StockEngine, sessions: sessionmaker[Session]
) -> None:
    receiver = Receiver()
    try:
        sender = WebhookSender(allowed_hosts=[receiver.url], secret="k", backoff_s=0.01)
        monitor = AlertMonitor(engine, sessions, sender=sender, webhook_url=receiver.url)
        await engine.incoming.put(
            ref="po", sku="A", location="north", qty=6, expected_at=1_800_000_000_000
        )
        await engine.set_preorder_limit(sku="A", location="north", limit=6)
        for order_id in ("o1", "o2", "o3"):
            await engine.reserve(order_id=order_id, lines=[LineRequest("A", 2)])
        assert await monitor.tick() == []

        await engine.incoming.put(
            ref="po", sku="A", location="north", qty=3, expected_at=1_800_000_000_000
        )  # o2 and o3 lose their cover
        (raised,) = await monitor.tick()
        await engine.incoming.cancel("po")  # o1 too: the same condition, no new alert
        within = await monitor.tick()
        for order_id in ("o1", "o2"):
            await engine.cancel(order_id)
        still = await monitor.tick()
        await engine.cancel("o3")
        (cleared,) = await monitor.tick()

        assert (raised.change, raised.kind, raised.details) == (
            "raised",
            "uncovered",
            {"orders": ["o2", "o3"], "units": 4},
        )
        assert within == still == []
        assert (cleared.change, cleared.alert_id) == ("cleared", raised.alert_id)
        assert alerts(sessions) == [("A", "north", "uncovered", False, True)]
        assert [b["event"] for b in receiver.bodies()] == ["alert.raised", "alert.cleared"]
    finally:
        receiver.close()
