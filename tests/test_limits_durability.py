"""Per-customer limits and what customers hold against them reach PostgreSQL through the
event stream, come back with `warmup` after Redis lost everything, and `verify` agrees;
a restored order still gives its units back when cancelled."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aredis
import sqlalchemy as sa

from inventory_cache import behind
from inventory_cache.engine import StockEngine
from inventory_cache.errors import LimitExceeded, NotReady
from inventory_cache.models import CustomerLimit, LineRequest
from inventory_cache.verify import Difference, verify
from inventory_cache.warmup import warmup
from persistence.db import make_engine
from persistence.models import CustomerCount
from persistence.models import CustomerLimit as LimitRow
from tests.support.clock import ManualClock
from tests.support.postgres import drain_into_ledger
from tests.support.redis_state import flush_prefix, skus_in_distinct_groups
from tests.support.services import REDIS_URL, make_settings


async def test_warmup_after_losing_redis_restores_limits_and_what_customers_hold(
    pg: tuple[str, redis.Redis], prefix: str, clock: ManualClock
) -> None:
    url, client = pg
    settings = make_settings(prefix)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    await eng.inbound(ref="po-a", sku="A", location="north", qty=100)
    await eng.inbound(ref="po-b", sku="B", location="north", qty=100)
    await eng.set_limit(sku="A", per_customer=3)
    await eng.set_limit(sku="B", per_customer=2, window_seconds=3600)
    await eng.set_limit(sku="C", per_customer=5)
    await eng.delete_limit("C")
    await eng.reserve(
        order_id="o1",
        lines=[LineRequest("A", 2), LineRequest("B", 1)],
        customer_id="c1",
        ttl_seconds=7200,
    )
    await eng.reserve(order_id="o2", lines=[LineRequest("A", 1)], customer_id="c1")
    await eng.ship("o2")
    await eng.reserve(order_id="o3", lines=[LineRequest("A", 1)], customer_id="c2")
    await eng.cancel("o3")
    clock.advance(1800)
    await eng.reserve(order_id="o4", lines=[LineRequest("B", 1)], customer_id="c2")
    holds = {(sku, cu): await eng.customer_holds(sku, cu) for sku in "AB" for cu in ("c1", "c2")}
    assert holds == {("A", "c1"): 3, ("A", "c2"): 0, ("B", "c1"): 1, ("B", "c2"): 1}
    drain_into_ledger(settings, url)
    engine = make_engine(url)
    with engine.connect() as conn:
        limits = conn.execute(
            sa.select(LimitRow.sku, LimitRow.per_customer, LimitRow.window_seconds).order_by(
                LimitRow.sku
            )
        ).all()
        counts = conn.execute(
            sa.select(CustomerCount.order_id, CustomerCount.sku, CustomerCount.status).order_by(
                CustomerCount.order_id, CustomerCount.sku
            )
        ).all()
    assert [tuple(r) for r in limits] == [("A", 3, 0), ("B", 2, 3600), ("C", 0, 0)]
    assert [tuple(r) for r in counts] == [
        ("o1", "A", "held"),
        ("o1", "B", "held"),
        ("o2", "A", "held"),
        ("o3", "A", "returned"),
        ("o4", "B", "held"),
    ]
    assert verify(client, engine, settings, wait_s=5) == []

    flush_prefix(client, prefix)
    with pytest.raises(NotReady):
        await eng.get_limit("A")
    report = warmup(client, engine, settings, now_ms=clock())

    assert (report.limits, report.customer_counts) == (3, 3)
    assert await eng.get_limit("A") == CustomerLimit("A", 3, None)
    assert await eng.get_limit("B") == CustomerLimit("B", 2, 3600)
    assert {
        (sku, cu): await eng.customer_holds(sku, cu) for sku in "AB" for cu in ("c1", "c2")
    } == holds
    with pytest.raises(LimitExceeded):
        await eng.reserve(order_id="o5", lines=[LineRequest("A", 1)], customer_id="c1")
    await eng.cancel("o1")  # a restored part gives its counted units back
    assert await eng.customer_holds("A", "c1") == 1
    assert await eng.customer_holds("B", "c1") == 0
    await eng.set_limit(sku="C", per_customer=1)  # the version sequence continues
    drain_into_ledger(settings, url)
    assert verify(client, engine, settings, wait_s=5) == []
    engine.dispose()
    await aclient.aclose()


async def test_verify_names_a_count_redis_lost(
    pg: tuple[str, redis.Redis], prefix: str, clock: ManualClock
) -> None:
    url, client = pg
    settings = make_settings(prefix)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    await eng.inbound(ref="po-a", sku="A", location="north", qty=10)
    await eng.set_limit(sku="A", per_customer=3)
    await eng.reserve(order_id="o1", lines=[LineRequest("A", 2)], customer_id="c1")
    drain_into_ledger(settings, url)
    engine = make_engine(url)

    client.delete(eng.keys.customer_count("A", "c1"))

    assert verify(client, engine, settings, wait_s=5) == [
        Difference("customer_count", "A customer c1", None, 2)
    ]
    engine.dispose()
    await aclient.aclose()


async def test_healing_a_group_behind_the_ledger_clears_its_limits_and_counts(
    sync_redis: redis.Redis, prefix: str, clock: ManualClock
) -> None:
    """Warmup rebuilds a behind group's state whole from PostgreSQL, so a stale limit or
    count must not survive the clearing."""
    client = sync_redis
    settings = make_settings(prefix)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    a, b = skus_in_distinct_groups(eng, 2)
    for sku in (a, b):
        await eng.inbound(ref="po", sku=sku, location="north", qty=10)
        await eng.set_limit(sku=sku, per_customer=2)
        await eng.reserve(order_id=f"o-{sku}", lines=[LineRequest(sku, 1)], customer_id="c1")

    behind.clear_state(client, eng.keys, [eng.keys.group_of(a)])

    assert client.exists(eng.keys.limit(a), eng.keys.customer_count(a, "c1")) == 0
    assert client.exists(eng.keys.limit(b), eng.keys.customer_count(b, "c1")) == 2
    await aclient.aclose()
