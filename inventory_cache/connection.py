"""Redis client factory: one place decides single Redis, Redis Cluster or embedded fakeredis."""

from __future__ import annotations

from typing import Any

from inventory_cache.settings import Settings

_embedded_server: Any = None


def _fakeredis() -> Any:
    """fakeredis comes with the `demo` extra only: a service install has no use for it."""
    try:
        import fakeredis
    except ImportError:
        raise RuntimeError(
            "the embedded Redis needs the demo extra: pip install 'inventory-cache[demo]', "
            "or set INVENTORY_REDIS_URL"
        ) from None
    return fakeredis


def embedded_server() -> Any:
    """One in-process fakeredis server shared by every client of this process (demo)."""
    global _embedded_server
    if _embedded_server is None:
        _embedded_server = _fakeredis().FakeServer()
    return _embedded_server


def make_async_redis(settings: Settings) -> Any:
    """An asyncio client; bytes in and out (hiredis parses, orjson decodes)."""
    if settings.redis_url is None:
        return _fakeredis().FakeAsyncRedis(server=embedded_server())
    if settings.redis_cluster:
        from redis.asyncio.cluster import RedisCluster

        # On every 5th MOVED (the default reinitialize_steps) redis-py 5.2.1 closes every
        # connection of the client to reload the topology, failing the pipelines other
        # tasks have in flight on them (seen during a reshard). With 0, each MOVED only
        # repoints its slot, which is all a reshard or a failover needs.
        return RedisCluster.from_url(settings.redis_url, reinitialize_steps=0)
    from redis.asyncio import Redis

    return Redis.from_url(settings.redis_url, health_check_interval=30)


def make_sync_redis(settings: Settings) -> Any:
    """A blocking client for the worker, warmup and verify, which are not on the hot path."""
    if settings.redis_url is None:
        return _fakeredis().FakeRedis(server=embedded_server())
    if settings.redis_cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis_url)  # type: ignore[no-untyped-call]
    from redis import Redis

    return Redis.from_url(settings.redis_url, health_check_interval=30)
