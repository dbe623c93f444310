"""The near-cache: never staler than configured, one Redis read per SKU however many ask at
once, errors not kept, checkout never deciding on it; with Redis's invalidations, entries
live until their SKU changes, and only while the invalidations are confirmed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from inventory_cache.api.main import create_app
from inventory_cache.api.nearcache import NearCache, Tracker
from inventory_cache.engine import StockEngine
from inventory_cache.errors import NotReady
from inventory_cache.keys import Keys
from inventory_cache.models import Availability, Component
from tests.support.api import Database
from tests.support.services import REDIS_URL, make_settings


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class CountingEngine:
    """The engine's read methods, counted: how many reads reached Redis."""

    def __init__(self, engine: StockEngine) -> None:
        self.engine = engine
        self.reads = 0
        self.reading = asyncio.Event()

    async def availability(self, sku: str) -> Availability:
        self.reads += 1
        self.reading.set()
        await asyncio.sleep(0.01)  # a round trip: callers pile up meanwhile
        return await self.engine.availability(sku)

    async def availability_many(self, skus: list[str]) -> list[Availability]:
        self.reads += 1
        return await self.engine.availability_many(skus)


def available(body: bytes) -> int:
    value: int = orjson.loads(body)["available"]
    return value


@pytest.fixture
async def engine(real_redis: Any, prefix: str) -> StockEngine:
    """Real Redis only: what is under test is this process's cache, not the backend."""
    eng = StockEngine(real_redis, make_settings(prefix))
    await eng.mark_ready()
    return eng


@pytest.fixture
def counting(engine: StockEngine) -> CountingEngine:
    return CountingEngine(engine)


def cache(counting: CountingEngine, clock: Clock, ms: int = 250, **kw: Any) -> NearCache:
    return NearCache(counting, max_staleness_ms=ms, clock=clock, **kw)  # type: ignore[arg-type]


async def test_an_answer_is_served_until_it_is_as_old_as_the_staleness(
    engine: StockEngine, counting: CountingEngine
) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=5)
    clock = Clock()
    near = cache(counting, clock)

    assert available(await near.one("X")) == 5
    await engine.inbound(ref="b", sku="X", location="north", qty=1)
    clock.t += 0.249
    assert available(await near.one("X")) == 5
    clock.t += 0.001
    assert available(await near.one("X")) == 6
    assert counting.reads == 2 and (near.hits, near.misses) == (1, 2)


async def test_concurrent_misses_of_one_sku_share_one_read(
    engine: StockEngine, counting: CountingEngine
) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=5)
    near = cache(counting, Clock())

    bodies = await asyncio.gather(*(near.one("X") for _ in range(50)))

    assert {available(b) for b in bodies} == {5}
    assert counting.reads == 1


async def test_a_reader_that_goes_away_does_not_cancel_the_others(
    engine: StockEngine, counting: CountingEngine
) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=5)
    near = cache(counting, Clock())
    first = asyncio.create_task(near.one("X"))
    second = asyncio.create_task(near.one("X"))
    await asyncio.sleep(0)
    first.cancel()

    assert available(await second) == 5
    assert counting.reads == 1


async def test_errors_are_not_cached(engine: StockEngine, counting: CountingEngine) -> None:
    await engine.client.delete(engine.keys.ready(engine.keys.group_of("X")))
    near = cache(counting, Clock())

    with pytest.raises(NotReady):
        await near.one("X")
    await engine.mark_ready()

    assert available(await near.one("X")) == 0
    assert counting.reads == 2


async def test_zero_staleness_reads_every_time(
    engine: StockEngine, counting: CountingEngine
) -> None:
    near = cache(counting, Clock(), ms=0)
    await near.one("X")
    await near.one("X")
    assert counting.reads == 2


async def test_batches_read_only_what_is_missing_and_keep_request_order(
    engine: StockEngine, counting: CountingEngine
) -> None:
    await engine.inbound(ref="a", sku="A", location="north", qty=1)
    await engine.inbound(ref="b", sku="B", location="north", qty=2)
    near = cache(counting, Clock())
    await near.one("A")

    body = orjson.loads(await near.many(["B", "A", "C", "B"]))
    again = orjson.loads(await near.many(["C", "B"]))

    assert [(i["sku"], i["available"]) for i in body["items"]] == [
        ("B", 2),
        ("A", 1),
        ("C", 0),
        ("B", 2),
    ]
    assert [i["sku"] for i in again["items"]] == ["C", "B"]
    assert counting.reads == 2  # A alone, then B and C together; the repeat is all hits


async def test_the_cache_holds_at_most_max_entries(
    engine: StockEngine, counting: CountingEngine
) -> None:
    near = cache(counting, Clock(), max_entries=2)
    for sku in ("A", "B", "C"):
        await near.one(sku)
    await near.one("C")
    await near.one("A")
    assert counting.reads == 4  # A was evicted first


async def test_checkout_decides_on_live_stock_while_the_page_may_show_cached_stock(
    real_redis: Any, prefix: str, api_database: Database
) -> None:
    settings = make_settings(prefix, near_cache_ms=10_000, near_cache_tracking=False)
    engine = StockEngine(real_redis, settings)
    await engine.mark_ready()
    await engine.inbound(ref="po", sku="A", location="north", qty=5)
    app = create_app(settings, engine=engine, database=api_database.engine)
    keys = api_database.keys
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            read = {"Authorization": f"Bearer {keys['read']}"}
            shown = await c.get("/v1/availability/A", headers=read)
            await engine.adjust(
                ref="count", sku="A", location="north", reason="count", set_on_hand=0
            )
            still_shown = await c.get("/v1/availability/A", headers=read)
            checkout = await c.post(
                "/v1/reservations",
                json={"order_id": "o", "lines": [{"sku": "A", "qty": 1}]},
                headers={"Authorization": f"Bearer {keys['checkout']}"},
            )

    assert shown.json()["available"] == still_shown.json()["available"] == 5
    assert checkout.status_code == 409
    assert checkout.json()["lines"] == [{"sku": "A", "requested": 1, "available": 0}]


# ---------------------------------------------------------------------------- invalidations
async def eventually(condition: Callable[[], Awaitable[bool]], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def is_on(near: NearCache) -> bool:
    return near.tracking


@asynccontextmanager
async def tracking(near: NearCache, engine: StockEngine) -> AsyncIterator[Tracker]:
    tracker = Tracker(near, REDIS_URL, engine.keys)
    task = asyncio.create_task(tracker.run())
    try:
        await eventually(lambda: is_on(near))
        yield tracker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_with_invalidations_an_unchanged_sku_outlives_the_time_bound(
    engine: StockEngine, counting: CountingEngine
) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=5)
    near = NearCache(counting, max_staleness_ms=1000)  # type: ignore[arg-type]
    async with tracking(near, engine):
        await near.one("X")
        await asyncio.sleep(1.5)
        assert available(await near.one("X")) == 5
        assert counting.reads == 1


async def test_a_change_reaches_the_cache_long_before_the_time_bound(
    engine: StockEngine, counting: CountingEngine
) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=5)
    near = NearCache(counting, max_staleness_ms=10_000)  # type: ignore[arg-type]
    async with tracking(near, engine):
        await near.one("Y")
        await near.one("X")
        await engine.inbound(ref="b", sku="X", location="north", qty=1)

        async def shows_the_change() -> bool:
            return available(await near.one("X")) == 6

        await eventually(shows_the_change)
        await near.one("Y")
    assert counting.reads == 3  # Y once, X before and after its change


async def test_a_readiness_change_drops_every_entry(
    engine: StockEngine, counting: CountingEngine
) -> None:
    near = NearCache(counting, max_staleness_ms=10_000)  # type: ignore[arg-type]
    async with tracking(near, engine):
        await near.one("X")
        await engine.client.delete(engine.keys.ready(engine.keys.group_of("Z")))

        async def dropped() -> bool:
            await engine.mark_ready()
            await near.one("X")
            return counting.reads > 1

        await eventually(dropped)


def test_the_tracker_asks_redis_for_one_prefix_whatever_the_number_of_groups(
    engine: StockEngine, counting: CountingEngine
) -> None:
    """Redis compares every key any client writes with every broadcast prefix: two
    prefixes per group (256 groups) made each write inside a script cost about 20 µs
    instead of 0.3, for every reservation, ship and event."""
    keys = Keys(engine.keys.prefix, groups=256)
    tracker = Tracker(NearCache(counting, max_staleness_ms=250), REDIS_URL, keys)  # type: ignore[arg-type]
    assert tracker.prefixes() == [f"{engine.keys.prefix}:{{"]


async def test_writes_to_other_keys_of_a_group_leave_its_entries_alone(
    engine: StockEngine, counting: CountingEngine
) -> None:
    await engine.inbound(ref="a", sku="X", location="north", qty=5)
    tag = engine.keys.tag(engine.keys.group_of("X"))
    other = "Y"
    near = NearCache(counting, max_staleness_ms=10_000)  # type: ignore[arg-type]
    async with tracking(near, engine):
        await near.one("X")
        await near.one(other)
        await engine.client.hset(f"{tag}:x:unrelated", "f", 1)
        await engine.client.xadd(f"{tag}:x:stream", {"f": 1})
        await engine.client.set(f"{tag}:x:string", 1)
        await engine.inbound(ref="b", sku=other, location="north", qty=1)

        async def other_shows_its_change() -> bool:
            return available(await near.one(other)) == 1

        await eventually(other_shows_its_change)  # so the writes before it were seen too
        assert available(await near.one("X")) == 5
    assert counting.reads == 3  # X once; the other SKU before and after its change
    await engine.client.delete(f"{tag}:x:unrelated", f"{tag}:x:stream", f"{tag}:x:string")


async def test_tracked_entries_are_refused_once_confirmations_stop(
    engine: StockEngine, counting: CountingEngine
) -> None:
    clock = Clock()
    near = cache(counting, clock)  # 250 ms
    near.tracking_started(clock.t)
    await near.one("X")

    clock.t += 0.2
    await near.one("X")
    assert counting.reads == 1
    clock.t += 0.1  # the last confirmation is now older than the bound
    await near.one("X")
    assert counting.reads == 2
    near.confirmed(clock.t)
    clock.t += 5
    near.confirmed(clock.t)
    await near.one("X")
    assert counting.reads == 2
    near.tracking_lost()
    await near.one("X")
    assert counting.reads == 3


async def test_a_read_overtaken_by_its_invalidation_keeps_only_the_time_bound(
    engine: StockEngine, counting: CountingEngine
) -> None:
    clock = Clock()
    near = cache(counting, clock)
    near.tracking_started(clock.t)
    read = asyncio.create_task(near.one("X"))
    await counting.reading.wait()  # the read is in flight
    near.invalidate("X")
    await read
    await near.one("Y")

    clock.t += 1
    near.confirmed(clock.t)
    await near.one("X")
    await near.one("Y")
    assert counting.reads == 3  # X again; Y, read untouched, still tracked


async def test_a_lost_invalidation_connection_drops_the_cache_and_reconnects(
    engine: StockEngine, counting: CountingEngine
) -> None:
    near = NearCache(counting, max_staleness_ms=10_000)  # type: ignore[arg-type]
    async with tracking(near, engine) as tracker:
        await near.one("X")
        first = tracker.client_id
        await engine.client.execute_command("CLIENT", "KILL", "ID", first)

        async def reconnected() -> bool:
            return near.tracking and tracker.client_id != first

        await eventually(reconnected)
        await near.one("X")
        assert counting.reads == 2  # what was cached before the loss was dropped


async def test_a_bundle_keeps_the_time_bound_and_its_definition_change_drops_it(
    engine: StockEngine, counting: CountingEngine
) -> None:
    """Its components' changes name the components, not the bundle: a bundle's answer lives
    no longer than the staleness; a new definition of it reaches the cache at once."""
    await engine.inbound(ref="a", sku="X", location="north", qty=5)
    await engine.put_bundle("kit", [Component("X", 2)])
    near = NearCache(counting, max_staleness_ms=300)  # type: ignore[arg-type]
    async with tracking(near, engine):
        assert available(await near.one("kit")) == 2
        await asyncio.sleep(0.5)
        assert available(await near.one("kit")) == 2
        assert counting.reads == 2  # past the time bound: read again

    slow = NearCache(counting, max_staleness_ms=10_000)  # type: ignore[arg-type]
    async with tracking(slow, engine):
        await slow.one("X")
        assert available(await slow.one("kit")) == 2
        await engine.put_bundle("kit", [Component("X", 1)])

        async def shows_the_new_definition() -> bool:
            return available(await slow.one("kit")) == 5

        await eventually(shows_the_new_definition)
