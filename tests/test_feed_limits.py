"""The live feed under load and abuse: caps on streams, bounded Redis connections and
memory for resumes from far back, and a revoked key's stream ending (real Redis, real
PostgreSQL, uvicorn in this process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from inventory_cache.api.livefeed import Feed
from inventory_cache.apikeys import create_key, revoke
from inventory_cache.engine import StockEngine
from inventory_cache.feed import FeedEvent, FeedHub, Filter, Position, follow, read_range
from tests.support.api import Database, start_api
from tests.support.feed import Server, SseClient, listening
from tests.support.ports import free_port


@pytest.fixture
async def served(
    real_redis: Any, prefix: str, api_database: Database
) -> AsyncIterator[tuple[Server, Feed]]:
    app, engine = await start_api(real_redis, prefix, api_database, api_key_cache_seconds=1)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(uv.serve())
    for _ in range(1000):
        if uv.started:
            break
        await asyncio.sleep(0.01)
    feed = app.state.services.feed = Feed(
        FeedHub(engine.client, engine.keys, block_ms=200),
        keepalive_seconds=30,
        max_clients=3,
        max_clients_per_key=2,
        key_check_seconds=0.2,
    )
    try:
        yield Server(f"http://127.0.0.1:{port}", engine, api_database.keys), feed
    finally:
        uv.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
def server(served: tuple[Server, Feed]) -> Server:
    return served[0]


async def test_streams_beyond_the_key_cap_or_the_process_cap_get_429_until_one_leaves(
    served: tuple[Server, Feed],
) -> None:
    server, feed = served
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as c:
        async with listening(c, server), listening(c, server):
            per_key = await c.get("/v1/events", headers=server.auth("read"))
            async with listening(c, server, headers=server.auth("admin")):
                full = await c.get("/v1/events", headers=server.auth("admin"))
        # The server counts a stream out once it sees its connection closed, which a new
        # request may beat by a moment.
        for _ in range(500):
            if not feed.clients:
                break
            await asyncio.sleep(0.01)
        async with listening(c, server), listening(c, server):
            pass  # both slots of the read key came back when its streams closed

    for refused in (per_key, full):
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert refused.headers["retry-after"] == "5"


async def test_a_stream_ends_once_its_key_is_revoked(
    server: Server, api_database: Database, sync_redis: Any
) -> None:
    token, stored = create_key(api_database.engine, name="screen", scopes=["read"])
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as c,
        c.stream("GET", "/v1/events", headers=headers) as r,
    ):
        assert r.status_code == 200
        sse = SseClient(r)
        await sse.message()
        revoke(api_database.engine, stored.id, redis=sync_redis, keys=server.engine.keys)
        started = asyncio.get_running_loop().time()
        msg = await sse.message()
        while msg.data is None or msg.data.get("reason") != "key_revoked":
            msg = await sse.message()
        ended = asyncio.get_running_loop().time() - started

    assert ended < 1 + 1  # the key cache time (1 s), plus a check interval and slack


async def fill(engine: StockEngine, n: int) -> None:
    for i in range(n):
        await engine.inbound(ref=f"r{i}", sku=f"sku-{i % 97}", location="north", qty=1)


async def test_a_thousand_readers_resuming_from_the_start_use_a_bounded_number_of_connections(
    engine_on_real_redis: StockEngine,
) -> None:
    engine = engine_on_real_redis
    await fill(engine, 50)
    hub = FeedHub(engine.client, engine.keys, block_ms=100, catchup_concurrency=4)
    pool = engine.client.connection_pool
    kept = len(pool._in_use_connections)  # the engine's batcher keeps its own
    peak = 0

    async def reader() -> int:
        nonlocal peak
        got = 0
        stream = follow(hub, Filter(), Position(0, 0, 0), keepalive_seconds=30)
        async with contextlib.aclosing(stream):  # the reader leaves
            async for item in stream:
                peak = max(peak, len(pool._in_use_connections))
                if isinstance(item, FeedEvent):
                    got += 1
                    if got == 50:
                        break
        return got

    counts = await asyncio.wait_for(asyncio.gather(*(reader() for _ in range(1000))), 120)

    assert counts == [50] * 1000
    # The gate's 4, the hub's blocking read and clock, and a connection on its way back
    # to the pool: bounded, whatever the number of readers (it was one per reader).
    assert peak - kept <= 8
    assert not hub.running  # the last reader to leave stopped the hub
    assert len(pool._in_use_connections) == kept  # every connection went back


def test_the_catchup_budget_gives_a_seconds_worth_then_makes_readers_wait_in_turn() -> None:
    from inventory_cache.feed import CatchupBudget

    now = [100.0]
    budget = CatchupBudget(1000, clock=lambda: now[0])

    assert budget.wait_for(600) == 0  # a second's worth is there at once
    assert budget.wait_for(400) == 0
    assert budget.wait_for(500) == pytest.approx(0.5)  # the next half second's
    assert budget.wait_for(500) == pytest.approx(1.0)  # and the one after it: in turn
    now[0] += 1.0
    assert budget.wait_for(0) == 0  # the debt is paid a second later
    now[0] += 60.0
    assert budget.wait_for(1000) == 0  # an idle minute saves no more than a second


async def test_resuming_readers_read_at_most_the_hubs_entries_per_second_between_them(
    engine_on_real_redis: StockEngine,
) -> None:
    """Readers that resume from far back take the event loop from every other request
    (`BENCHMARKS.md`, "Pressure"): the hub's budget bounds what they read together."""
    engine = engine_on_real_redis
    await fill(engine, 300)
    hub = FeedHub(engine.client, engine.keys, block_ms=100, catchup_per_second=500)

    async def reader() -> int:
        got = 0
        async for _ in read_range(
            engine.client,
            engine.keys,
            Position(0, 0, 0),
            Position.end_of(2**50),
            slice_events=50,
            pace=hub.catchup_budget,
        ):
            got += 1
        return got

    started = asyncio.get_running_loop().time()
    counts = list(await asyncio.gather(reader(), reader()))
    took = asyncio.get_running_loop().time() - started

    assert counts == [300, 300]
    # 600 entries at 500 a second, the first second's worth at once: about 0.2 s more.
    assert 0.15 <= took < 2.0


async def test_a_resume_holds_at_most_its_budget_of_entries_whatever_the_range(
    engine_on_real_redis: StockEngine,
) -> None:
    engine = engine_on_real_redis
    await fill(engine, 2000)
    asked: list[int] = []
    real_pipeline = engine.client.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        real_xrange = pipe.xrange

        def xrange(*a: Any, count: int | None = None, **kw: Any) -> Any:
            asked.append(count or 0)
            return real_xrange(*a, count=count, **kw)

        pipe.xrange = xrange
        return pipe

    engine.client.pipeline = counting_pipeline
    events = [
        ev
        async for ev in read_range(
            engine.client, engine.keys, Position(0, 0, 0), Position.end_of(2**50), budget=64
        )
    ]

    assert len(events) == 2000
    assert [e.position for e in events] == sorted(e.position for e in events)
    assert max(asked) <= 64 and sum(asked) < 2000 * 3


@pytest.fixture
async def engine_on_real_redis(real_redis: Any, prefix: str) -> StockEngine:
    from tests.support.services import make_settings

    eng = StockEngine(real_redis, make_settings(prefix))
    await eng.mark_ready()
    return eng
