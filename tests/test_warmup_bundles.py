"""Bundles survive the loss of Redis: the worker records each definition (deleted ones
too, for their version) and each part's bundle lines; warmup restores both; verify
compares the definitions and exits clean."""

from __future__ import annotations

import redis
import redis.asyncio as aredis

from inventory_cache.engine import StockEngine
from inventory_cache.models import Bundle, Component, LineRequest
from inventory_cache.verify import Difference, verify
from inventory_cache.warmup import warmup
from persistence.db import make_engine
from tests.support.clock import ManualClock
from tests.support.postgres import drain_into_ledger
from tests.support.redis_state import flush_prefix, skus_in_distinct_groups
from tests.support.services import REDIS_URL, make_settings


async def test_warmup_after_losing_redis_restores_bundles_and_verify_agrees(
    pg_url: str, prefix: str, clock: ManualClock
) -> None:
    url = pg_url
    client = redis.Redis.from_url(REDIS_URL)
    settings = make_settings(prefix)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    a, c = skus_in_distinct_groups(eng, 2)
    await eng.inbound(ref="1", sku=a, location="north", qty=10)
    await eng.inbound(ref="2", sku=c, location="north", qty=10)
    await eng.put_bundle("kit", [Component(a, 1), Component(c, 2)])
    order = await eng.reserve(order_id="o1", lines=[LineRequest("kit", 2)])
    await eng.put_bundle("kit", [Component(a, 1)])  # version 2: the order keeps its lines
    await eng.put_bundle("gone", [Component(a, 1)])
    await eng.delete_bundle("gone")
    kit_before = await eng.availability("kit")
    drain_into_ledger(settings, url)

    flush_prefix(client, prefix)
    db = make_engine(url)
    report = warmup(client, db, settings, now_ms=clock())

    assert report.bundles == 2
    assert await eng.get_bundle("kit") == Bundle("kit", [Component(a, 1)], 2)
    assert await eng.availability("kit") == kit_before
    assert await eng.get_reservation("o1") == order
    assert verify(client, db, settings, wait_s=5) == []  # the open order's bundle lines too
    # The deleted one counts on from its version: a new definition is version 3.
    assert await eng.put_bundle("gone", [Component(c, 1)]) == Bundle("gone", [Component(c, 1)], 3)
    cancelled = await eng.cancel("o1")
    assert cancelled.bundles == order.bundles
    drain_into_ledger(settings, url)
    assert verify(client, db, settings, wait_s=5) == []

    client.hset(eng.keys.bundle("kit"), "c", f'[["{c}",1]]')
    assert verify(client, db, settings, wait_s=5) == [
        Difference("bundle", "kit", ([[c, 1]], 2), ([[a, 1]], 2))
    ]
    client.hset(eng.keys.bundle("kit"), "c", f'[["{a}",1]]')
    client.hdel(eng.keys.stock("kit"), "bdef")  # the copy reads and reservations use
    assert verify(client, db, settings, wait_s=5) == [
        Difference("bundle_copy", "kit", None, [[a, 1]])
    ]
    db.dispose()
    await aclient.aclose()
    flush_prefix(client, prefix)
    client.close()
