"""Checkout on Redis Cluster: a flash sale, and an order whose lines live on three masters.

No oversell and all-or-nothing when one order's slot groups sit on different servers: the
engine pipelines one `reserve` per group, the cluster client splits that pipeline by node,
and if one node refuses, what the others locked is released before the caller hears.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from local_cluster import LocalCluster, Node
from redis.crc import key_slot

from inventory_cache.engine import StockEngine
from inventory_cache.errors import InsufficientStock, NotFound, RedisFull
from inventory_cache.models import LineRequest, ReservedLine

pytestmark = [pytest.mark.cluster, pytest.mark.parametrize("backend", ["cluster"], indirect=True)]


def master_of(engine: StockEngine, cluster: LocalCluster, ident: str) -> Node:
    return cluster.owner(key_slot(engine.keys.tag(engine.keys.group_of(ident)).encode()))


def one_per_master(engine: StockEngine, cluster: LocalCluster, stem: str) -> list[str]:
    """An id whose slot group lives on each master, in the order of `cluster.primaries()`."""
    found: dict[str, str] = {}
    i = 0
    while len(found) < len(cluster.primaries()):
        ident = f"{stem}-{i}"
        found.setdefault(master_of(engine, cluster, ident).id, ident)
        i += 1
    return [found[n.id] for n in cluster.primaries()]


@contextmanager
def refusing_writes(cluster: LocalCluster, node: Node) -> Iterator[None]:
    """The node answers every write with OOM (maxmemory 1 byte, no eviction); reads still work."""
    with cluster.admin(node.port) as c:
        c.config_set("maxmemory-policy", "noeviction")
        c.config_set("maxmemory", "1")
    try:
        yield
    finally:
        with cluster.admin(node.port) as c:
            c.config_set("maxmemory", "0")


async def parts_left(engine: StockEngine, order_id: str, skus: list[str]) -> list[int]:
    parts = [engine.keys.part(engine.keys.group_of(s), order_id) for s in skus]
    return list(await engine.batcher.many([(None, ("EXISTS", p)) for p in parts]))


async def test_flash_sale_from_six_clients_sells_exactly_the_stock_and_all_or_nothing(
    engine: StockEngine, local_cluster: LocalCluster
) -> None:
    hot = "console"
    hot_master = master_of(engine, local_cluster, hot)
    extra = next(
        s
        for s in one_per_master(engine, local_cluster, "pad")
        if master_of(engine, local_cluster, s).id != hot_master.id
    )
    await engine.inbound(ref="po", sku=hot, location="north", qty=50)
    await engine.inbound(ref="po", sku=extra, location="north", qty=1000)
    # Every buyer wants one console; every other one also a controller kept on another master.
    orders = {
        f"buyer-{i}": [LineRequest(hot, 1)] + [LineRequest(extra, 1)] * (i % 2) for i in range(400)
    }
    clients = [local_cluster.async_client() for _ in range(5)]
    engines = [engine, *(StockEngine(c, engine.settings) for c in clients)]

    async def buy(i: int, order_id: str, lines: list[LineRequest]) -> tuple[str, str]:
        try:
            await engines[i % len(engines)].reserve(order_id=order_id, lines=lines)
        except InsufficientStock:
            return order_id, "short"
        return order_id, "ok"

    try:
        outcomes = dict(
            await asyncio.gather(*(buy(i, o, ls) for i, (o, ls) in enumerate(orders.items())))
        )
    finally:
        for c in clients:
            await c.aclose()

    assert Counter(outcomes.values()) == {"ok": 50, "short": 350}
    with_extra = sum(1 for o, ls in orders.items() if outcomes[o] == "ok" and len(ls) == 2)
    assert (await engine.stock(hot)).locations["north"].locked == 50
    assert (await engine.stock(extra)).locations["north"].locked == with_extra
    for order_id, lines in orders.items():
        if outcomes[order_id] == "short":
            assert await parts_left(engine, order_id, [ln.sku for ln in lines]) == [0] * len(lines)
            with pytest.raises(NotFound):
                await engine.get_reservation(order_id)


async def test_order_over_three_masters_with_one_failing_midway_keeps_no_lock(
    engine: StockEngine, backend: Any, local_cluster: LocalCluster
) -> None:
    skus = one_per_master(engine, local_cluster, "sku")
    failing = local_cluster.primaries()[1]
    order_id = next(
        o
        for o in one_per_master(engine, local_cluster, "order")
        if master_of(engine, local_cluster, o).id != failing.id
    )
    for sku in skus:
        await engine.inbound(ref="po", sku=sku, location="north", qty=10)
    lines = [LineRequest(s, 2) for s in skus]

    with refusing_writes(local_cluster, failing), pytest.raises(RedisFull):
        await engine.reserve(order_id=order_id, lines=lines)

    for sku in skus:
        assert (await engine.stock(sku)).locations["north"].locked == 0, sku
    assert await parts_left(engine, order_id, skus) == [0, 0, 0]
    with pytest.raises(NotFound):
        await engine.get_reservation(order_id)
    # Midway: the two healthy masters did lock, and released again; the third ran nothing.
    for sku in skus:
        events = await backend.xrange(engine.keys.events(engine.keys.group_of(sku)))
        kinds = [f[b"t"] for _, f in events if f.get(b"order") == order_id.encode()]
        healthy = master_of(engine, local_cluster, sku).id != failing.id
        assert kinds == ([b"reserve", b"release"] if healthy else []), sku

    again = await engine.reserve(order_id=order_id, lines=lines)

    assert sorted(again.lines, key=lambda ln: ln.sku) == sorted(
        (ReservedLine(s, 2, "north") for s in skus), key=lambda ln: ln.sku
    )
    for sku in skus:
        assert (await engine.stock(sku)).locations["north"].locked == 2, sku
