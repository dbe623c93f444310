"""A reservation racing a ship or cancel of the same order id never ends in an impossible state.

The reservation's attempt opens the order index first, then locks its parts group by
group. A ship or cancel that reads the index while the parts are still being placed must
not decide the order: it answers 409 `invalid_state` with `reservation_status: pending`
(retry shortly), or, once every part is in place, decides the whole order. Afterwards the
client's answers, the order index, every part, the stock and the PostgreSQL ledger agree.

Each trial fires one reservation of a many-line order from one engine (one API process)
and four ships or cancels 0-3 ms later from another, on real Redis.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
import sqlalchemy as sa

from inventory_cache.engine import StockEngine
from inventory_cache.errors import InvalidState, NotFound
from inventory_cache.models import LineRequest, Reservation
from inventory_cache.verify import compare
from tests.support.postgres import drain_into_ledger
from tests.support.services import REDIS_URL, make_settings, need_redis

pytestmark = pytest.mark.slow

TRIALS = 300
STOCK = 10 * TRIALS
SETTLED = {"ship": "shipped", "cancel": "cancelled"}


@pytest.fixture
async def engines(prefix: str) -> AsyncIterator[tuple[StockEngine, StockEngine]]:
    """Two engines on their own connections: the checkout process and the warehouse one."""
    need_redis()
    settings = make_settings(prefix, slot_groups=32)
    clients = [aredis.Redis.from_url(REDIS_URL) for _ in range(2)]
    first, second = (StockEngine(c, settings) for c in clients)
    await first.mark_ready()
    yield first, second
    async for key in clients[0].scan_iter(match=f"{prefix}:*", count=1000):
        await clients[0].delete(key)
    for c in clients:
        await c.aclose()


async def race(
    checkout: StockEngine,
    warehouse: StockEngine,
    order_id: str,
    lines: list[LineRequest],
    action: str,
) -> tuple[Reservation | BaseException, list[Reservation | BaseException]]:
    async def settle(delay: float) -> Reservation:
        await asyncio.sleep(delay)
        settled: Reservation = await getattr(warehouse, action)(order_id)
        return settled

    results = await asyncio.gather(
        checkout.reserve(order_id=order_id, lines=lines),
        *(settle(random.uniform(0, 0.003)) for _ in range(4)),
        return_exceptions=True,
    )
    return results[0], list(results[1:])


async def part_statuses(engine: StockEngine, order_id: str, skus: list[str]) -> set[str | None]:
    groups = {engine.keys.group_of(s) for s in skus}
    pipe = engine.client.pipeline(transaction=False)
    for g in groups:
        pipe.hget(engine.keys.part(g, order_id), "st")
    return {st.decode() if st else None for st in await pipe.execute()}


async def run_races(
    engines: tuple[StockEngine, StockEngine], n_lines: int, action: str
) -> dict[str, int]:
    """Run the trials; assert each one's consistency; return how many orders ended each way."""
    checkout, warehouse = engines
    skus = [f"sku-{i}" for i in range(n_lines)]
    for sku in skus:
        await checkout.inbound(ref="po", sku=sku, location="north", qty=STOCK)
    want = sorted((s, 1, "north") for s in skus)
    ended: dict[str, int] = {"active": 0, SETTLED[action]: 0}
    for trial in range(TRIALS):
        order_id = f"o{trial}"
        lines = [LineRequest(s, 1) for s in random.sample(skus, n_lines)]
        reserved, settled = await race(checkout, warehouse, order_id, lines, action)

        assert isinstance(reserved, Reservation), reserved
        assert reserved.status == "active"
        assert sorted((ln.sku, ln.qty, ln.location) for ln in reserved.lines) == want
        decided = False
        for r in settled:
            if isinstance(r, Reservation):
                assert r.status == SETTLED[action]
                assert sorted((ln.sku, ln.qty, ln.location) for ln in r.lines) == want
                decided = True
            elif isinstance(r, InvalidState):
                assert r.extra.get("reservation_status") == "pending", r.extra
            else:
                assert isinstance(r, NotFound), r
        final = "shipped" if decided and action == "ship" else "active"
        if decided and action == "cancel":
            final = "cancelled"
        got = await checkout.get_reservation(order_id)
        assert got.status == final, (trial, got.status, [type(r).__name__ for r in settled])
        assert sorted((ln.sku, ln.qty, ln.location) for ln in got.lines) == want
        assert await part_statuses(checkout, order_id, skus) == {final}
        ended[final] += 1

    shipped = ended.get("shipped", 0)
    for sku in skus:
        level = (await checkout.stock(sku)).locations["north"]
        assert (level.on_hand, level.locked) == (STOCK - shipped, ended["active"])
    return ended


def assert_ledger_agrees(settings: Any, database_url: str) -> None:
    drain_into_ledger(settings, database_url)
    client = redis.Redis.from_url(REDIS_URL)
    db = sa.create_engine(database_url)
    try:
        assert compare(client, db, settings) == []
    finally:
        db.dispose()
        client.close()


@pytest.mark.parametrize("action", ["ship", "cancel"])
@pytest.mark.parametrize("n_lines", [100, 20])
async def test_settling_an_order_while_it_is_being_reserved_never_splits_it(
    engines: tuple[StockEngine, StockEngine],
    pg_url: str,
    n_lines: int,
    action: str,
) -> None:
    ended = await run_races(engines, n_lines, action)

    assert sum(ended.values()) == TRIALS
    assert_ledger_agrees(engines[0].settings, pg_url)
