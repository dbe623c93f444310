"""Slots moving between masters under a live checkout load: no caller notices (issue 9).

Redis Cluster moves a slot key by key. Meanwhile a script on that slot whose keys are
partly moved, or partly not created yet (a new order's part), is refused with ASK or
TRYAGAIN, and once the slot has moved, with MOVED, all without running. The client must
follow and re-send until the slot has settled, and since nothing ran, a re-sent call
cannot lock twice. Oversell is checked against the stock the orders hold afterwards, and
the ledger the write-behind worker builds from the streams must agree (`verify`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from local_cluster import LocalCluster, Node
from redis.crc import key_slot
from redis.exceptions import ClusterError, TryAgainError

from inventory_cache import batcher
from inventory_cache.connection import make_sync_redis
from inventory_cache.engine import StockEngine
from inventory_cache.errors import InsufficientStock, NotFound
from inventory_cache.models import LineRequest, ReservedLine
from inventory_cache.settings import Settings
from inventory_cache.verify import verify
from inventory_cache.worker import Worker
from persistence.db import make_engine
from persistence.sink import make_sink
from tests.support.postgres import fresh_database
from tests.support.services import make_settings

pytestmark = [pytest.mark.cluster, pytest.mark.parametrize("backend", ["cluster"], indirect=True)]


def slot_of(engine: StockEngine, group: int) -> int:
    return key_slot(engine.keys.ready(group).encode())


def ids_in_group(engine: StockEngine, group: int, n: int, stem: str = "sku") -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        ident = f"{stem}-{i}"
        if engine.keys.group_of(ident) == group:
            out.append(ident)
        i += 1
    return out


def id_outside(engine: StockEngine, group: int, stem: str) -> str:
    i = 0
    while engine.keys.group_of(f"{stem}-{i}") == group:
        i += 1
    return f"{stem}-{i}"


@contextmanager
def slot_in_migration(cluster: LocalCluster, slot: int) -> Iterator[tuple[Node, Node]]:
    """A slot left half-moved from its master to another, closed again however the test ends."""
    source = cluster.owner(slot)
    target = next(n for n in cluster.primaries() if n.id != source.id)
    cluster.begin_migration(slot, source, target)
    try:
        yield source, target
    finally:
        if cluster.owner(slot).id == source.id:
            cluster.abort_migration(slot, source, target)


async def test_live_reshard_during_reservation_load_reaches_no_caller_and_oversells_nothing(
    backend: Any, prefix: str, local_cluster: LocalCluster
) -> None:
    settings = make_settings(
        prefix, redis_url=local_cluster.url, redis_cluster=True, slot_groups=256
    )
    engine = StockEngine(backend, settings)
    await engine.mark_ready()
    # `redis-cli --cluster reshard` moves the lowest slots of its source: take as many as
    # it needs to move the first 8 slot groups that live on that master.
    source, target = local_cluster.primaries()[:2]
    owned = sorted(s for r in source.slots for s in r)
    on_source = sorted(
        (owned.index(slot_of(engine, g)), g) for g in range(256) if source.owns(slot_of(engine, g))
    )
    moving = [g for _, g in on_source[:8]]
    slots_to_move = on_source[7][0] + 1
    staying = next(g for g in range(256) if not source.owns(slot_of(engine, g)))
    skus = [s for g in [*moving, staying] for s in ids_in_group(engine, g, 2)]
    for sku in skus:
        await engine.inbound(ref="po", sku=sku, location="north", qty=40)

    clients = [local_cluster.async_client() for _ in range(3)]
    engines = [engine, *(StockEngine(c, engine.settings) for c in clients)]
    active: dict[str, Counter[str]] = {}
    cancelled: set[str] = set()
    refused = 0
    successes_at: list[float] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def buyer(worker: int) -> None:
        nonlocal refused
        eng = engines[worker % len(engines)]
        rng = random.Random(worker)
        n = 0
        while not stop.is_set():
            n += 1
            order_id = f"w{worker}-{n}"
            lines = Counter({s: rng.randint(1, 2) for s in rng.sample(skus, rng.randint(1, 3))})
            try:
                await eng.reserve(
                    order_id=order_id, lines=[LineRequest(s, q) for s, q in lines.items()]
                )
            except InsufficientStock:
                refused += 1
                continue
            except Exception as exc:  # anything else reaching a caller fails the test
                errors.append(exc)
                continue
            successes_at.append(time.monotonic())
            active[order_id] = lines
            if rng.random() < 0.5:
                try:
                    await eng.cancel(order_id)
                except Exception as exc:
                    errors.append(exc)
                    continue
                del active[order_id]
                cancelled.add(order_id)

    try:
        buyers = [asyncio.create_task(buyer(w)) for w in range(24)]
        await asyncio.sleep(0.3)
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "redis-cli",
            *local_cluster.reshard_args(source, target, slots_to_move),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        ended = time.monotonic()
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*buyers)
    finally:
        stop.set()
        for c in clients:
            await c.aclose()

    assert proc.returncode == 0, out.decode()[-2000:]
    assert errors == []
    assert all(local_cluster.owner(slot_of(engine, g)).id == target.id for g in moving)
    assert any(began < t < ended for t in successes_at), "no reservation ran during the move"
    assert len(active) > 20 and len(cancelled) > 20 and refused > 0
    held: Counter[str] = Counter()
    for lines in active.values():
        held.update(lines)
    for sku in skus:
        level = (await engine.stock(sku)).locations["north"]
        assert (level.on_hand, level.locked) == (40, held[sku]), sku
    for order_id, lines in active.items():
        res = await engine.get_reservation(order_id)
        got: Counter[str] = Counter()
        for ln in res.lines:
            got[ln.sku] += ln.qty
        assert (res.status, got) == ("active", lines), order_id
    for order_id in cancelled:
        assert (await engine.get_reservation(order_id)).status == "cancelled"
    # The ledger agrees: the worker drains every group's stream, wherever its slot now is.
    await asyncio.to_thread(assert_ledger_agrees, settings, skus, held)


def assert_ledger_agrees(settings: Settings, skus: list[str], held: Counter[str]) -> None:
    with fresh_database() as url:
        redis = make_sync_redis(settings)
        sink = make_sink(url)
        db = make_engine(url)
        try:
            Worker(redis, sink, settings).run_until_idle(timeout_s=60)
            assert verify(redis, db, settings, wait_s=5) == []
            with db.connect() as conn:
                sums = conn.execute(
                    sa.text(
                        "SELECT sku, sum(delta_on_hand), sum(delta_locked) FROM movements"
                        " GROUP BY sku"
                    )
                ).all()
            assert {sku: (on_hand, locked) for sku, on_hand, locked in sums} == {
                sku: (40, held[sku]) for sku in skus
            }
        finally:
            db.dispose()
            sink.close()
            redis.close()


async def test_call_refused_while_its_slot_migrates_waits_for_the_move_and_locks_once(
    engine: StockEngine, backend: Any, local_cluster: LocalCluster
) -> None:
    sku = "phoneA"
    g = engine.keys.group_of(sku)
    await engine.inbound(ref="po", sku=sku, location="north", qty=5)
    order_id = id_outside(engine, g, "order")

    with slot_in_migration(local_cluster, slot_of(engine, g)) as (source, target):
        started = time.monotonic()
        task = asyncio.create_task(engine.reserve(order_id=order_id, lines=[LineRequest(sku, 2)]))
        # Past the ~0.4 s redis-py spends on TRYAGAIN by itself: the batcher still waits.
        await asyncio.sleep(1.0)
        assert not task.done()
        await asyncio.to_thread(local_cluster.finish_migration, slot_of(engine, g), source, target)
        res = await asyncio.wait_for(task, 10)

    assert time.monotonic() - started > 1.0
    assert res.lines == [ReservedLine(sku, 2, "north")]
    assert local_cluster.owner(slot_of(engine, g)).id == target.id
    assert (await engine.stock(sku)).locations["north"].locked == 2
    events = await backend.xrange(engine.keys.events(g))
    assert [f[b"t"] for _, f in events if f.get(b"order") == order_id.encode()] == [b"reserve"]


async def test_slot_that_never_settles_is_reported_after_the_patience_and_changes_nothing(
    engine: StockEngine, local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    sku = "phoneA"
    g = engine.keys.group_of(sku)
    await engine.inbound(ref="po", sku=sku, location="north", qty=5)
    order_id = id_outside(engine, g, "order")
    monkeypatch.setattr(batcher, "CLUSTER_PATIENCE_S", 0.5)

    with (
        slot_in_migration(local_cluster, slot_of(engine, g)),
        pytest.raises((TryAgainError, ClusterError)),
    ):
        await asyncio.wait_for(engine.reserve(order_id=order_id, lines=[LineRequest(sku, 2)]), 10)

    assert (await engine.stock(sku)).locations["north"].locked == 0
    with pytest.raises(NotFound):
        await engine.get_reservation(order_id)
