"""The engine's own pre-order events (its Lua scripts, not hand-built entries) reach
PostgreSQL, come back with `warmup` after Redis lost them exactly as they were, `verify`
agrees, and the archive answers a finished order as the engine did.

Skipped until the engine has incoming stock and pre-orders (they are built on another
branch): this is the test of the two halves together."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from inventory_cache.archive import OrderArchive
from inventory_cache.engine import StockEngine
from inventory_cache.models import LineRequest
from inventory_cache.verify import verify
from inventory_cache.warmup import warmup
from persistence.db import make_engine
from persistence.ledger import Entry, _parse_checked, _parse_fast
from tests.conftest import REDIS_URL, ManualClock, make_settings
from tests.pg import drain_into_ledger
from tests.redis_state import flush_prefix, snapshot_prefix

pytestmark = pytest.mark.skipif(
    not hasattr(StockEngine, "set_preorder_limit"), reason="the engine has no pre-orders yet"
)
DAY = 86_400_000
T1 = 1_800_000_000_000 + 5 * DAY
# What warmup restores as it was: stock hashes, books, closed records, ref index, parts.
RESTORED = re.compile(rb":\{\d+\}:(s|pq|nc|ni|r):")


@pytest.mark.parametrize("one_script", [True, False], ids=["one script", "script per group"])
async def test_preorders_come_back_after_a_flush_as_they_were(
    pg: tuple[str, redis.Redis], prefix: str, clock: ManualClock, one_script: bool
) -> None:
    url, client = pg
    settings = make_settings(prefix)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng: Any = StockEngine(aclient, settings, clock=clock, one_script=one_script)
    await eng.mark_ready()
    await eng.inbound(ref="s", sku="A", location="north", qty=2)
    await eng.inbound(ref="s", sku="B", location="north", qty=10)
    await eng.incoming.put(ref="po1", sku="A", location="north", qty=5, expected_at=T1)
    await eng.incoming.put(ref="po2", sku="A", location="north", qty=3, expected_at=T1 + DAY)
    await eng.set_preorder_limit(sku="A", location="north", limit=8)
    await eng.reserve(order_id="o1", lines=[LineRequest("A", 3), LineRequest("B", 1)])
    await eng.reserve(order_id="o2", lines=[LineRequest("A", 4)])
    await eng.reserve(order_id="o3", lines=[LineRequest("A", 1)])
    await eng.reserve(order_id="o4", lines=[LineRequest("A", 2)])
    await eng.cancel("o3")
    await eng.incoming.receive("po1", 4)  # short: converts o1's line, uncovers the latest
    await eng.incoming.put(ref="po2", sku="A", location="north", qty=1, expected_at=T1 + DAY)
    await eng.incoming.put(ref="po3", sku="A", location="north", qty=2, expected_at=T1 + DAY)
    await eng.incoming.put(ref="po4", sku="A", location="north", qty=2, expected_at=T1)
    await eng.incoming.cancel("po4")
    orders = {o: await eng.get_reservation(o) for o in ("o1", "o2", "o3", "o4")}
    assert any(ln.preorder for r in orders.values() for ln in r.lines)
    entries = [
        Entry(g, i.decode(), f)
        for g in eng.keys.all_groups()
        for i, f in client.xrange(eng.keys.events(g))
    ]
    assert [_parse_fast(e) for e in entries] == [_parse_checked(e) for e in entries]
    before = await snapshot_prefix(aclient, prefix)
    drain_into_ledger(settings, url)
    engine = make_engine(url)
    try:
        assert verify(client, engine, settings, wait_s=5) == []
        flush_prefix(client, prefix)
        warmup(client, engine, settings, now_ms=clock())
        after = await snapshot_prefix(aclient, prefix)
        assert {k: v for k, v in after.items() if RESTORED.search(k)} == {
            k: v for k, v in before.items() if RESTORED.search(k)
        }
        assert verify(client, engine, settings, wait_s=5) == []
        assert {o: await eng.get_reservation(o) for o in orders} == orders

        await eng.ship("o1")
        shipped = await eng.get_reservation("o1")
        drain_into_ledger(settings, url)
        archive = OrderArchive(engine, eng.keys)
        try:
            for order, answer in (("o1", shipped), ("o3", orders["o3"])):
                found = archive._order(order)
                assert found is not None
                assert replace(found.reservation, replayed=False) == answer
        finally:
            await archive.aclose()
        assert verify(client, engine, settings, wait_s=5) == []
    finally:
        engine.dispose()
        await aclient.aclose()
