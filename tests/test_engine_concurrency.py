"""Invariants 1 and 3 under concurrency, and attempts that die halfway.

Hundreds of reservations race from several OS processes (each with its own event loop,
Redis connections and StockEngine, as API workers run in production) and, in one
process, from many tasks on both backends. Afterwards the stock must agree with the
reservations that exist: every locked unit belongs to exactly one successful order,
an order holds all its lines or none, and a refused order left nothing behind.

An attempt that crashes after locking one slot group (the process died between
pipelined scripts, or a cluster node answered and the next did not) must not keep its
locks past the reservation's TTL, and a retry must neither lock twice nor steal the
order from an attempt that may still be running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import queue
import random
import traceback
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aredis

from inventory_cache.engine import StockEngine
from inventory_cache.errors import InsufficientStock, InvalidState, NotFound
from inventory_cache.models import LineRequest, Reservation, ReservedLine
from inventory_cache.script_calls import Call
from tests.support.clock import ManualClock
from tests.support.redis_state import skus_in_distinct_groups, snapshot_prefix
from tests.support.services import REDIS_URL, make_settings

pytestmark = pytest.mark.slow

Order = tuple[str, list[tuple[str, int]]]  # order id, [(sku, qty)]
Outcomes = dict[str, str]  # order id -> "ok" | "short"


async def place(engine: StockEngine, orders: Sequence[Order]) -> Outcomes:
    """Send every order at once; a refusal other than InsufficientStock fails the test."""

    async def one(order_id: str, lines: list[tuple[str, int]]) -> tuple[str, str]:
        try:
            await engine.reserve(order_id=order_id, lines=[LineRequest(s, q) for s, q in lines])
        except InsufficientStock:
            return order_id, "short"
        return order_id, "ok"

    return dict(await asyncio.gather(*(one(o, ls) for o, ls in orders)))


def deal(orders: Sequence[Order], hands: int) -> list[list[Order]]:
    """Deal orders round-robin, so every hand races for the same stock from the start."""
    return [list(orders[i::hands]) for i in range(hands)]


def mixed_orders(skus: Sequence[str], n: int, seed: int) -> list[Order]:
    """Orders of 2-3 distinct SKUs (different slot groups), 1-2 units each."""
    rng = random.Random(seed)
    return [
        (f"m{i}", [(s, rng.randint(1, 2)) for s in rng.sample(list(skus), rng.randint(2, 3))])
        for i in range(n)
    ]


# ---------------------------------------------------------------------- other processes
async def _work(
    prefix: str, hands: list[list[Order]], barrier: Any
) -> tuple[int, list[int], Outcomes]:
    clients = [aredis.Redis.from_url(REDIS_URL) for _ in hands]
    try:
        engines = [StockEngine(c, make_settings(prefix)) for c in clients]
        ids = [int(await c.client_id()) for c in clients]
        # Start together with the other processes, so their calls really interleave.
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait, 30)
        outcomes: Outcomes = {}
        for part in await asyncio.gather(
            *(place(e, h) for e, h in zip(engines, hands, strict=True))
        ):
            outcomes.update(part)
        return os.getpid(), ids, outcomes
    finally:
        for c in clients:
            await c.aclose()


def _worker(prefix: str, hands: list[list[Order]], barrier: Any, results: Any) -> None:
    """Entry point of a spawned process: its own event loop, clients and engines."""
    try:
        results.put(("ok", asyncio.run(_work(prefix, hands, barrier))))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def run_in_processes(
    prefix: str, orders: Sequence[Order], processes: int, engines_per_process: int
) -> tuple[set[int], set[int], Outcomes]:
    """Place the orders from `processes` spawned processes; (pids, Redis client ids, outcomes)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    hands = deal(orders, processes * engines_per_process)
    procs = [
        ctx.Process(
            target=_worker,
            args=(prefix, hands[p::processes], barrier, results),
            daemon=True,
        )
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    pids: set[int] = set()
    client_ids: set[int] = set()
    outcomes: Outcomes = {}
    try:
        for _ in procs:
            try:
                status, payload = results.get(timeout=60)
            except queue.Empty:
                pytest.fail("a worker process did not report within 60 s")
            if status != "ok":
                pytest.fail(f"a worker process failed:\n{payload}")
            pid, ids, part = payload
            pids.add(pid)
            client_ids.update(ids)
            outcomes.update(part)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return pids, client_ids, outcomes


# ---------------------------------------------------------------------- the checks
async def assert_locks_match_orders(
    engine: StockEngine, orders: Sequence[Order], outcomes: Outcomes, on_hand: dict[str, int]
) -> None:
    """Every successful order holds all its lines; nothing else is locked; no oversell."""
    assert set(outcomes) == {o for o, _ in orders}

    async def check(order_id: str, lines: list[tuple[str, int]]) -> None:
        if outcomes[order_id] == "ok":
            res = await engine.get_reservation(order_id)
            held: Counter[str] = Counter()
            for ln in res.lines:
                held[ln.sku] += ln.qty
            assert (res.status, held) == ("active", Counter(dict(lines))), order_id
            return
        with pytest.raises(NotFound):
            await engine.get_reservation(order_id)
        # No part of a refused order survives in any slot group.
        parts = [engine.keys.part(engine.keys.group_of(sku), order_id) for sku, _ in lines]
        assert await engine.batcher.many([(None, ("EXISTS", p)) for p in parts]) == [0] * len(
            parts
        ), order_id

    await asyncio.gather(*(check(o, ls) for o, ls in orders))
    expected_locked: Counter[str] = Counter()
    for order_id, lines in orders:
        if outcomes[order_id] == "ok":
            expected_locked.update(dict(lines))
    for sku, units in on_hand.items():
        level = (await engine.stock(sku)).locations["north"]
        assert (level.on_hand, level.locked) == (units, expected_locked[sku]), sku
        assert level.locked <= level.on_hand


# ---------------------------------------------------------------------- races
@pytest.fixture
async def real_engine(real_redis: Any, prefix: str) -> StockEngine:
    eng = StockEngine(real_redis, make_settings(prefix))
    await eng.mark_ready()
    return eng


async def test_500_one_unit_orders_from_4_processes_lock_exactly_the_100_available(
    real_engine: StockEngine, prefix: str
) -> None:
    """The classic last-units race, across processes: 100 win, 400 are told why not."""
    await real_engine.inbound(ref="po", sku="hot", location="north", qty=100)
    orders: list[Order] = [(f"o{i}", [("hot", 1)]) for i in range(500)]

    pids, client_ids, outcomes = await asyncio.to_thread(run_in_processes, prefix, orders, 4, 2)

    assert len(pids) == 4 and os.getpid() not in pids
    assert len(client_ids) == 8  # two engines per process, each on its own connection
    assert Counter(outcomes.values()) == {"ok": 100, "short": 400}
    await assert_locks_match_orders(real_engine, orders, outcomes, {"hot": 100})
    assert (await real_engine.availability("hot")).available == 0


async def test_multi_line_orders_from_2_processes_are_all_or_nothing(
    real_engine: StockEngine, prefix: str
) -> None:
    """Orders spanning slot groups race for scarce stock; none keeps a partial set of lines."""
    skus = skus_in_distinct_groups(real_engine, 3)
    on_hand = dict(zip(skus, (60, 45, 30), strict=True))
    for sku, units in on_hand.items():
        await real_engine.inbound(ref="po", sku=sku, location="north", qty=units)
    orders = mixed_orders(skus, 300, seed=7)

    pids, _, outcomes = await asyncio.to_thread(run_in_processes, prefix, orders, 2, 2)

    assert len(pids) == 2
    counts = Counter(outcomes.values())
    assert counts["ok"] > 0 and counts["short"] > 0  # the stock really ran short
    await assert_locks_match_orders(real_engine, orders, outcomes, on_hand)


async def test_500_one_unit_orders_from_many_tasks_lock_exactly_the_100_available(
    engine: StockEngine,
) -> None:
    """The same race inside one event loop, from two engines, on both backends."""
    other = StockEngine(engine.client, engine.settings, clock=engine.now)
    await engine.inbound(ref="po", sku="hot", location="north", qty=100)
    orders: list[Order] = [(f"o{i}", [("hot", 1)]) for i in range(500)]
    first, second = deal(orders, 2)

    a, b = await asyncio.gather(place(engine, first), place(other, second))

    outcomes = a | b
    assert Counter(outcomes.values()) == {"ok": 100, "short": 400}
    await assert_locks_match_orders(engine, orders, outcomes, {"hot": 100})


async def test_multi_line_orders_from_many_tasks_are_all_or_nothing(engine: StockEngine) -> None:
    """Cross-group orders racing in one loop: compensation leaves no partial order behind."""
    other = StockEngine(engine.client, engine.settings, clock=engine.now)
    skus = skus_in_distinct_groups(engine, 3)
    on_hand = dict(zip(skus, (40, 30, 20), strict=True))
    for sku, units in on_hand.items():
        await engine.inbound(ref="po", sku=sku, location="north", qty=units)
    orders = mixed_orders(skus, 200, seed=11)
    first, second = deal(orders, 2)

    a, b = await asyncio.gather(place(engine, first), place(other, second))

    outcomes = a | b
    counts = Counter(outcomes.values())
    assert counts["ok"] > 0 and counts["short"] > 0
    await assert_locks_match_orders(engine, orders, outcomes, on_hand)


async def test_same_order_sent_many_times_at_once_locks_once(engine: StockEngine) -> None:
    """A double-clicked checkout: one attempt locks; the rest replay it or are told to retry."""
    a, b = skus_in_distinct_groups(engine, 2)
    for sku in (a, b):
        await engine.inbound(ref="po", sku=sku, location="north", qty=10)
    lines = [LineRequest(a, 2), LineRequest(b, 1)]

    results = await asyncio.gather(
        *(engine.reserve(order_id="dup", lines=lines) for _ in range(20)), return_exceptions=True
    )

    fresh = [r for r in results if isinstance(r, Reservation) and not r.replayed]
    assert len(fresh) == 1
    replay = dataclasses.replace(fresh[0], replayed=True)
    assert all(r is fresh[0] or r == replay or isinstance(r, InvalidState) for r in results)
    assert (await engine.stock(a)).locations["north"].locked == 2
    assert (await engine.stock(b)).locations["north"].locked == 1


# ---------------------------------------------------------------------- crashed attempts
class Crash(BaseException):
    """The process running the attempt died here (not an error anyone could catch)."""


def crashing_after_first_part(engine: StockEngine) -> StockEngine:
    """An engine whose reservations stop dead once the first slot group's script ran.

    Only the multi-script path has a "between" to crash in (an order spanning groups on a
    cluster, a takeover), so this engine takes it on every backend."""
    crashing = StockEngine(engine.client, engine.settings, clock=engine.now, one_script=False)
    real_run_many = crashing.run_many

    async def run_first_then_crash(calls: Sequence[Call]) -> list[Any]:
        if calls and calls[0].script == "reserve":
            await real_run_many(calls[:1])
            raise Crash
        return await real_run_many(calls)

    crashing.run_many = run_first_then_crash  # type: ignore[method-assign]
    return crashing


async def crash_midway(engine: StockEngine, order_id: str, lines: list[LineRequest]) -> None:
    with pytest.raises(Crash):
        await crashing_after_first_part(engine).reserve(
            order_id=order_id, lines=lines, ttl_seconds=60
        )


async def locked(engine: StockEngine, sku: str) -> int:
    return (await engine.stock(sku)).locations["north"].locked


@pytest.fixture
async def two_groups(engine: StockEngine) -> list[str]:
    """Two SKUs in different groups with 5 units each; the first is reserved first."""
    skus = skus_in_distinct_groups(engine, 2)
    for sku in skus:
        await engine.inbound(ref="po", sku=sku, location="north", qty=5)
    return skus


async def test_crashed_attempt_keeps_its_partial_locks_only_until_the_ttl(
    engine: StockEngine, clock: ManualClock, two_groups: list[str]
) -> None:
    a, b = two_groups
    await crash_midway(engine, "o", [LineRequest(a, 1), LineRequest(b, 1)])
    assert (await locked(engine, a), await locked(engine, b)) == (1, 0)

    clock.advance(59)
    assert await engine.expire_due() == 0
    assert await locked(engine, a) == 1

    clock.advance(1)
    assert await engine.expire_due() == 1

    assert (await locked(engine, a), await locked(engine, b)) == (0, 0)
    assert (await engine.get_reservation("o")).status == "expired"
    assert await engine.expire_due() == 0


async def test_retry_within_the_lease_is_told_to_wait_and_changes_nothing(
    engine: StockEngine, clock: ManualClock, two_groups: list[str]
) -> None:
    """The first attempt may still be running: a retry must not race it for the order."""
    a, b = two_groups
    lines = [LineRequest(a, 1), LineRequest(b, 1)]
    await crash_midway(engine, "o", lines)
    before = await snapshot_prefix(engine.client, engine.keys.prefix)

    clock.advance(engine.settings.attempt_lease_seconds - 1)
    with pytest.raises(InvalidState):
        await engine.reserve(order_id="o", lines=lines, ttl_seconds=60)

    assert await snapshot_prefix(engine.client, engine.keys.prefix) == before


async def test_retry_after_the_lease_takes_over_and_locks_each_line_once(
    engine: StockEngine, clock: ManualClock, two_groups: list[str]
) -> None:
    a, b = two_groups
    lines = [LineRequest(a, 1), LineRequest(b, 1)]
    started = clock()
    await crash_midway(engine, "o", lines)

    clock.advance(engine.settings.attempt_lease_seconds + 1)
    res = await engine.reserve(order_id="o", lines=lines, ttl_seconds=60)

    assert res.status == "active"
    assert res.expires_at == started + 60_000  # the order's TTL runs from its first attempt
    assert sorted(res.lines, key=lambda ln: ln.sku) == [
        ReservedLine(a, 1, "north"),
        ReservedLine(b, 1, "north"),
    ]
    assert (await locked(engine, a), await locked(engine, b)) == (1, 1)
    clock.advance(60)
    assert await engine.expire_due() == 2
    assert (await locked(engine, a), await locked(engine, b)) == (0, 0)


async def test_refused_takeover_releases_what_the_crashed_attempt_locked(
    engine: StockEngine, clock: ManualClock, two_groups: list[str]
) -> None:
    """The release path for a part another attempt created: nothing stays locked."""
    a, b = two_groups
    lines = [LineRequest(a, 1), LineRequest(b, 1)]
    await crash_midway(engine, "o", lines)
    await engine.reserve(order_id="rival", lines=[LineRequest(b, 5)])

    clock.advance(engine.settings.attempt_lease_seconds + 1)
    with pytest.raises(InsufficientStock) as exc:
        await engine.reserve(order_id="o", lines=lines, ttl_seconds=60)

    assert exc.value.lines == [{"sku": b, "requested": 1, "available": 0}]
    assert (await locked(engine, a), await locked(engine, b)) == (0, 5)
    with pytest.raises(NotFound):
        await engine.get_reservation("o")
    assert await engine.expire_due() == 0
