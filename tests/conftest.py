"""Shared fixtures: real Redis and PostgreSQL from the machine, fakeredis as a second backend.

Each test gets its own key prefix (and its own database for PostgreSQL) and cleans up.
With INVENTORY_REQUIRE_SERVICES=1 (CI), an unreachable server fails the run instead of
skipping the tests that need it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from inventory_cache.engine import StockEngine
from inventory_cache.settings import Settings

# Fixtures of the support modules, available to every test without an import:
# `local_cluster` (a real 3-master Redis Cluster, started only when a test asks for the
# cluster backend), `pg_url` (a fresh migrated database), `api_database` and `api` (the
# HTTP API on real Redis and PostgreSQL), `receiver` (a webhook receiver).
pytest_plugins = ["tests.cluster", "tests.pg", "tests.api_support", "tests.doubles"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a `slow` test first, the rest in their usual order: scripts/test.sh
    hands modules to parallel workers in this order, so the longest start at once instead
    of keeping one worker busy after the others have finished."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


REDIS_URL = os.environ.get("INVENTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("INVENTORY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("INVENTORY_REQUIRE_SERVICES") == "1"


def _redis_up() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except redis.RedisError:
        return False


REDIS_UP = _redis_up()


def need_redis() -> None:
    if not REDIS_UP:
        if REQUIRE:
            pytest.fail(f"Redis at {REDIS_URL} is required (INVENTORY_REQUIRE_SERVICES=1)")
        pytest.skip(f"no Redis at {REDIS_URL}")


class ManualClock:
    """Tests move time by hand; scripts take "now" as an argument, never read it."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_settings(prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
        "slot_groups": 16,
        "location_priority": "north,south",
    }
    values.update(overrides)
    return Settings(**values)


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
        import fakeredis

        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield client
    await _drop_prefix(client, prefix)
    await client.aclose()


@pytest.fixture
def private_redis() -> Iterator[tuple[str, redis.Redis]]:
    """A redis-server of this test alone (tests/cluster.py): its URL and an admin client.

    For what would reach every other client of the shared server: CONFIG SET, SCRIPT FLUSH
    (another test, in this run or a parallel worker, would reload or lose its scripts).
    """
    from tests.cluster import LocalServers, need_redis_server

    need_redis_server()
    servers = LocalServers(1)
    servers.start()
    admin = servers.admin(servers.ports[0])
    try:
        yield servers.url, admin
    finally:
        admin.close()
        servers.stop()


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


def skus_in_distinct_groups(engine: StockEngine, n: int) -> list[str]:
    """n SKUs whose stock lives in n different slot groups, by ascending group."""
    seen: dict[int, str] = {}
    i = 0
    while len(seen) < n:
        sku = f"sku-{i}"
        seen.setdefault(engine.keys.group_of(sku), sku)
        i += 1
    return [seen[g] for g in sorted(seen)]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per session as a user's install would get it.

    hatchling, the build backend, is among the dev tools; the venv has no pip (uv installs).
    """
    out = tmp_path_factory.mktemp("wheel")
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("inventory_cache-*.whl")
    return built
