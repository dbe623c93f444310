"""The ledger's processes on Redis Cluster (the same code on a single Redis and on
a cluster): the worker reads every group's stream across the masters, warmup rebuilds a
flushed cluster, verify compares it, each through the service's own cluster clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from local_cluster import LocalCluster

from inventory_cache.connection import make_sync_redis
from inventory_cache.engine import StockEngine
from inventory_cache.errors import NotReady
from inventory_cache.models import LineRequest
from inventory_cache.verify import verify
from inventory_cache.warmup import warmup
from inventory_cache.worker import Worker, WorkerConfig
from persistence.db import make_engine
from persistence.sink import make_sink
from tests.support.clock import ManualClock
from tests.support.postgres import fresh_database
from tests.support.services import make_settings

pytestmark = pytest.mark.cluster


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def flush(client: Any, prefix: str) -> None:
    """Delete the prefix's keys on every master: a flushed cluster, as the service sees it."""
    for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
        client.delete(key)


async def test_worker_warmup_and_verify_on_a_cluster(
    local_cluster: LocalCluster, pg_url: str, prefix: str, clock: ManualClock
) -> None:
    settings = make_settings(prefix, redis_url=local_cluster.url, redis_cluster=True)
    client = make_sync_redis(settings)
    aclient = local_cluster.async_client()
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    skus = [f"K{i}" for i in range(12)]  # spread over the groups, so over the masters
    for sku in skus:
        await eng.inbound(ref=f"in-{sku}", sku=sku, location="north", qty=10)
    order = await eng.reserve(order_id="o1", lines=[LineRequest(s, 1) for s in skus[:6]])
    await eng.request_transfer(
        transfer_id="t1", sku="K7", from_location="north", to_location="south", qty=2
    )
    before = {sku: await eng.stock(sku) for sku in skus}
    sink, db = make_sink(pg_url), make_engine(pg_url)
    try:
        worker = Worker(client, sink, settings, WorkerConfig("wc"))
        worker.run_until_idle(30)
        assert worker.applied == 12 + len({eng.keys.group_of(s) for s in skus[:6]}) + 1
        assert verify(client, db, settings, wait_s=5) == []

        flush(client, prefix)
        with pytest.raises(NotReady):
            await eng.availability("K1")
        warmup(client, db, settings, now_ms=clock())
        assert {sku: await eng.stock(sku) for sku in skus} == before
        assert await eng.get_reservation("o1") == order
        assert (await eng.ship_transfer("t1")).status == "in_transit"

        Worker(client, sink, settings, WorkerConfig("wc2")).run_until_idle(30)
        assert verify(client, db, settings, wait_s=5) == []
    finally:
        flush(client, prefix)
        sink.close()
        db.dispose()
        client.close()
        await aclient.aclose()
