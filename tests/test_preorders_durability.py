"""The engine's own pre-order events (its Lua scripts, not hand-built entries) reach
PostgreSQL, come back with `warmup` after Redis lost them exactly as they were, `verify`
agrees, and the archive answers a finished order as the engine did; afterwards a receipt
converts the restored pre-orders and their orders ship, as if nothing had happened."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aredis

from inventory_cache.archive import OrderArchive
from inventory_cache.engine import StockEngine
from inventory_cache.errors import InvalidState
from inventory_cache.models import LineRequest
from inventory_cache.verify import verify
from inventory_cache.warmup import warmup
from persistence.db import make_engine
from persistence.events import Entry, parse_checked, parse_fast
from tests.support.clock import ManualClock
from tests.support.postgres import drain_into_ledger
from tests.support.redis_state import flush_prefix, skus_in_distinct_groups, snapshot_prefix
from tests.support.services import REDIS_URL, make_settings

DAY = 86_400_000
T1 = 1_800_000_000_000 + 5 * DAY
# What warmup restores as it was: stock hashes, books, closed records, ref index, parts.
RESTORED = re.compile(rb":\{\d+\}:(s|pq|nc|ni|r):")


@pytest.mark.parametrize("one_script", [True, False], ids=["one script", "script per group"])
async def test_preorders_come_back_after_a_flush_as_they_were(
    pg: tuple[str, Any], prefix: str, clock: ManualClock, one_script: bool
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
    assert [parse_fast(e) for e in entries] == [parse_checked(e) for e in entries]
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


DUE = 1_800_000_000_000


async def feature_keys(
    eng: StockEngine, skus: list[str], orders: list[str], refs: list[str]
) -> Any:
    """Every key the feature writes, as Redis holds it (parts and indexes: the fields it
    adds and the ones it reads)."""
    c, k = eng.client, eng.keys
    out: dict[str, Any] = {}
    for sku in skus:
        out[f"stock {sku}"] = await c.hgetall(k.stock(sku))
        out[f"book {sku}"] = await c.hgetall(k.preorders(sku))
        out[f"closed {sku}"] = await c.hgetall(k.incoming_closed(sku))
    for ref in refs:
        out[f"index {ref}"] = await c.get(k.incoming_index(ref))
    for order_id in orders:
        index = await c.hmget(k.order_index(order_id), "st", "pre", "body")
        out[f"order {order_id}"] = index
        for g in sorted({k.group_of(sku) for sku in skus}):
            out[f"part {order_id} {g}"] = await c.hmget(k.part(g, order_id), "st", "lines", "pre")
    return out


async def test_restored_pre_orders_convert_on_receipt_and_their_orders_ship(
    pg: tuple[str, Any], real_redis: Any, prefix: str, clock: ManualClock
) -> None:
    url, client = pg
    settings = make_settings(prefix)
    eng = StockEngine(real_redis, settings, clock=clock)
    await eng.mark_ready()
    a, b = skus_in_distinct_groups(eng, 2)
    await eng.inbound(ref="start", sku=a, location="north", qty=1)
    for sku, qty in ((a, 4), (b, 3)):
        await eng.incoming.put(ref=f"po-{sku}", sku=sku, location="north", qty=qty, expected_at=DUE)
        await eng.set_preorder_limit(sku=sku, location="north", limit=qty)
    await eng.incoming.put(ref="late", sku=a, location="north", qty=2, expected_at=DUE + 86_400_000)
    await eng.incoming.put(ref="gone", sku=b, location="south", qty=5, expected_at=DUE)
    await eng.incoming.cancel("gone")
    # o1: a lock and a pre-order of a, a pre-order of b; o2: pre-orders that lose their
    # cover when b's inbound is shortened; o3: cancelled; o4: converted by a receipt.
    await eng.reserve(order_id="o1", lines=[LineRequest(a, 2), LineRequest(b, 1)], ttl_seconds=7200)
    await eng.reserve(order_id="o2", lines=[LineRequest(b, 2)], ttl_seconds=7200)
    await eng.reserve(order_id="o3", lines=[LineRequest(a, 1)])
    await eng.cancel("o3")
    await eng.incoming.put(ref=f"po-{b}", sku=b, location="north", qty=1, expected_at=DUE)
    await eng.incoming.put(ref="more", sku=a, location="north", qty=1, expected_at=DUE)
    await eng.reserve(order_id="o4", lines=[LineRequest(a, 2)], ttl_seconds=7200)
    skus, orders = [a, b], ["o1", "o2", "o3", "o4"]
    refs = [f"po-{a}", f"po-{b}", "late", "gone", "more"]
    before = await feature_keys(eng, skus, orders, refs)
    drain_into_ledger(settings, url)
    engine = make_engine(url)
    assert verify(client, engine, settings, wait_s=5) == []

    flush_prefix(client, prefix)
    report = warmup(client, engine, settings, now_ms=clock())
    after = await feature_keys(eng, skus, orders, refs)

    assert report.groups > 0
    assert after == before
    assert verify(client, engine, settings, wait_s=5) == []
    # The restored state works: o1 cannot ship yet; a's receipt converts o1's line, then
    # o4's in turn; b's shortened inbound is received and o1 ships.
    with pytest.raises(InvalidState):
        await eng.ship("o1")
    received = await eng.incoming.receive(f"po-{a}")
    assert [(c.order_id, c.state) for c in received.preorders] == [
        ("o1", "locked"),
        ("o4", "locked"),
    ]
    await eng.incoming.receive(f"po-{b}")
    assert (await eng.ship("o1")).status == "shipped"
    assert [ln.preorder_status for ln in (await eng.get_reservation("o2")).lines] == ["uncovered"]
    drain_into_ledger(settings, url)
    assert verify(client, engine, settings, wait_s=5) == []
    engine.dispose()
