"""Fixture plugin: the Redis a test runs on, and the engine on it.

Each test gets its own key prefix and cleans up after itself: `prefix`, `clock` (a
ManualClock), `sync_redis` and `real_redis` (clients of the machine's server), `backend`
(parametrized: the real server, fakeredis, a local Redis Cluster) and `engine` on it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio as aredis

from inventory_cache.engine import StockEngine
from tests.support.clock import ManualClock
from tests.support.services import REDIS_URL, make_settings, need_redis


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def _drop_prefix(client: Any, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)


@pytest.fixture
def sync_redis(prefix: str) -> Iterator[redis.Redis]:
    need_redis()
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(params=["redis", "fakeredis", pytest.param("cluster", marks=pytest.mark.cluster)])
async def backend(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Any]:
    """An asyncio client: the real server, fakeredis with Lua (the embedded default), then
    the cluster client of `connection.py` on a local 3-master Redis Cluster."""
    if request.param == "redis":
        need_redis()
        client: Any = aredis.Redis.from_url(REDIS_URL)
    elif request.param == "own-redis":  # asked for by name, for a test that flushes scripts
        client = aredis.Redis.from_url(request.getfixturevalue("private_redis")[0])
    elif request.param == "cluster":
        client = request.getfixturevalue("local_cluster").async_client()
    else:
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield client
    await _drop_prefix(client, prefix)
    await client.aclose()


@pytest.fixture
async def real_redis(prefix: str) -> AsyncIterator[Any]:
    need_redis()
    client = aredis.Redis.from_url(REDIS_URL)
    yield client
    await _drop_prefix(client, prefix)
    await client.aclose()


@pytest.fixture
async def engine(backend: Any, prefix: str, clock: ManualClock) -> StockEngine:
    eng = StockEngine(backend, make_settings(prefix), clock=clock)
    await eng.mark_ready()
    return eng
