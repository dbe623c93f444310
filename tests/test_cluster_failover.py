"""A replica promoted to master serves the engine at once (issue 9).

Redis 7 does not replicate SCRIPT LOAD, so a promoted replica starts with an empty script
cache: the first EVALSHA it gets answers NOSCRIPT. The client, still holding the old
topology, is first told MOVED by the old master; it must follow, load the scripts where
they are missing and re-send, and the stock must be as the old master left it.
"""

from __future__ import annotations

import asyncio

import pytest
from local_cluster import LocalCluster
from redis.crc import key_slot

from inventory_cache.engine import StockEngine
from inventory_cache.models import LineRequest

pytestmark = [pytest.mark.cluster, pytest.mark.parametrize("backend", ["cluster"], indirect=True)]


async def test_promoted_replica_without_scripts_takes_the_next_reservations(
    engine: StockEngine, local_cluster: LocalCluster
) -> None:
    sku = "phoneA"
    await engine.inbound(ref="po", sku=sku, location="north", qty=10)
    await engine.reserve(order_id="o-1", lines=[LineRequest(sku, 1)])
    slot = key_slot(engine.keys.stock(sku).encode())
    old_master = local_cluster.owner(slot)
    replica = local_cluster.replica_of(old_master)

    await asyncio.to_thread(local_cluster.failover, replica)

    assert local_cluster.owner(slot).id == replica.id
    with local_cluster.admin(replica.port) as node:
        assert node.script_exists(engine.scripts["reserve"].sha) == [False]
    second = await engine.reserve(order_id="o-2", lines=[LineRequest(sku, 2)])
    assert second.status == "active"
    level = (await engine.stock(sku)).locations["north"]
    assert (level.on_hand, level.locked) == (10, 3)
    assert (await engine.cancel("o-1")).status == "cancelled"
    assert (await engine.stock(sku)).locations["north"].locked == 2
    assert await engine.check_ready() is True
