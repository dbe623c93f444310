"""The expiry sweep: abandoned checkouts give their stock back, each exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from inventory_cache.engine import StockEngine
from inventory_cache.models import LineRequest
from inventory_cache.scheduler import sweep_expired
from tests.support.clock import ManualClock
from tests.support.redis_state import stream_events
from tests.support.services import make_settings

SKUS = [f"sku-{i}" for i in range(10)]


async def stock_in(engine: StockEngine, qty: int) -> None:
    for sku in SKUS:
        await engine.inbound(ref="in", sku=sku, location="north", qty=qty)


async def test_sweep_releases_1000_expired_reservations_each_exactly_once(
    real_redis: Any, prefix: str, clock: ManualClock
) -> None:
    # Two engines stand for two scheduler processes sweeping at the same moment.
    settings = make_settings(prefix)
    first = StockEngine(real_redis, settings, clock=clock)
    second = StockEngine(real_redis, settings, clock=clock)
    await first.mark_ready()
    await stock_in(first, 100)
    await asyncio.gather(
        *(
            first.reserve(order_id=f"o{i}", lines=[LineRequest(SKUS[i % 10], 1)], ttl_seconds=1)
            for i in range(1000)
        )
    )
    assert (await first.availability_many(SKUS))[0].available == 0

    assert await sweep_expired(first) == 0  # nothing is due before the TTL
    clock.advance(1)
    swept = await asyncio.gather(sweep_expired(first), sweep_expired(second))

    assert sum(swept) == 1000
    assert [a.available for a in await first.availability_many(SKUS)] == [100] * 10
    expired = Counter(e["ref"] for e in await stream_events(first) if e["t"] == "expire")
    assert len(expired) == 1000
    assert set(expired.values()) == {1}
    assert (await first.get_reservation("o999")).status == "expired"
    assert await sweep_expired(first) == 0


async def test_ship_racing_the_sweep_ends_in_exactly_one_outcome(
    backend: Any, prefix: str, clock: ManualClock
) -> None:
    # Order i is due at its own second. For each, the warehouse's clock reads just before
    # the deadline and the sweeper's just at it, so both believe they are entitled, and the
    # two race through separate engines; the ship sometimes starts late, so each side wins
    # some of the races.
    settings = make_settings(prefix)
    start = clock.ms
    sweeper_clock = ManualClock(start)
    shop = StockEngine(backend, settings, clock=clock)
    sweeper = StockEngine(backend, settings, clock=sweeper_clock)
    await shop.mark_ready()
    await stock_in(shop, 100)
    orders = [f"race-{i}" for i in range(100)]
    for i, order in enumerate(orders):
        await shop.reserve(order_id=order, lines=[LineRequest(SKUS[i % 10], 1)], ttl_seconds=i + 1)

    async def ship(order: str, delay: float) -> str:
        await asyncio.sleep(delay)
        try:
            return (await shop.ship(order)).status
        except Exception as exc:  # the sweep won: invalid_state with status expired
            return f"refused:{getattr(exc, 'extra', {}).get('reservation_status')}"

    ship_results = []
    for i, order in enumerate(orders):
        deadline = start + (i + 1) * 1000
        clock.ms, sweeper_clock.ms = deadline - 1, deadline
        result, _ = await asyncio.gather(ship(order, 0.02 * (i % 2)), sweep_expired(sweeper))
        ship_results.append(result)

    events = await stream_events(shop)
    outcome = {
        o: sorted(e["t"] for e in events if e["ref"] == o and e["t"] in ("ship", "expire"))
        for o in orders
    }
    assert all(v in (["ship"], ["expire"]) for v in outcome.values())
    statuses = {o: (await shop.get_reservation(o)).status for o in orders}
    for order, result in zip(orders, ship_results, strict=True):
        expected = "shipped" if outcome[order] == ["ship"] else "expired"
        assert statuses[order] == expected
        assert result == ("shipped" if expected == "shipped" else "refused:expired")
    shipped = sum(1 for s in statuses.values() if s == "shipped")
    assert 0 < shipped < 100  # the race really happened: each side won some
    levels = [(await shop.stock(s)).locations["north"] for s in SKUS]
    assert sum(lv.on_hand for lv in levels) == 1000 - shipped
    assert sum(lv.locked for lv in levels) == 0
