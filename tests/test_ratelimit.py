"""`rate_limit-1.lua` (GCRA) through `StockEngine.rate_limit`, with "now" moved by hand,
and `RateLimiter`'s fail-open on an unreachable Redis."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aredis

from inventory_cache.api.problems import RateLimited
from inventory_cache.api.ratelimit import RateLimiter
from inventory_cache.engine import StockEngine
from tests.support.clock import ManualClock
from tests.support.ports import free_port
from tests.support.services import make_settings

# 5 requests per second, bursts of 5.
T, TOLERANCE = 200.0, 800.0


async def hit(engine: StockEngine, key: str = "key_a") -> int:
    return await engine.rate_limit(key, interval_ms=T, tolerance_ms=TOLERANCE)


async def test_a_burst_is_allowed_at_one_instant_then_the_next_waits_one_interval(
    engine: StockEngine, clock: ManualClock, backend: Any
) -> None:
    assert [await hit(engine) for _ in range(5)] == [0] * 5
    stored = await backend.get(engine.keys.rate_limit("key_a"))

    assert await hit(engine) == 200
    assert await hit(engine) == 200  # a refusal counts nothing...
    assert await backend.get(engine.keys.rate_limit("key_a")) == stored  # ...nor writes
    clock.advance(0.199)
    assert await hit(engine) == 1
    clock.advance(0.001)
    assert await hit(engine) == 0
    assert await hit(engine) == 200


async def test_keys_are_limited_apart(engine: StockEngine) -> None:
    for _ in range(5):
        assert await hit(engine, "key_a") == 0
    assert await hit(engine, "key_a") > 0

    assert [await hit(engine, "key_b") for _ in range(5)] == [0] * 5
    assert await hit(engine, "key_b") > 0


async def test_over_time_exactly_the_burst_plus_the_rate_gets_through(
    engine: StockEngine, clock: ManualClock
) -> None:
    allowed = 0
    for _ in range(200):  # a request every 10 ms for 2 s
        allowed += await hit(engine) == 0
        clock.advance(0.010)

    assert allowed == 5 + 9  # the burst at t=0, then one at t=200, 400, ... 1800 ms


async def test_a_fractional_interval_is_not_rounded(
    engine: StockEngine, clock: ManualClock
) -> None:
    """3 per second, no burst: 333.33 ms apart, not 333 (which would allow 3.003/s)."""
    third = 1000 / 3
    assert await engine.rate_limit("k", interval_ms=third, tolerance_ms=0) == 0
    clock.advance(0.333)
    assert await engine.rate_limit("k", interval_ms=third, tolerance_ms=0) == 1
    clock.advance(0.001)
    assert await engine.rate_limit("k", interval_ms=third, tolerance_ms=0) == 0


async def test_the_limiter_key_expires_once_it_holds_nothing(
    engine: StockEngine, clock: ManualClock, backend: Any
) -> None:
    key = engine.keys.rate_limit("key_a")
    assert key == f"{engine.keys.prefix}:rl:{{key_a}}"
    for _ in range(5):
        await hit(engine)

    assert 900 < await backend.pttl(key) <= 1000  # the TAT is 1 s ahead of now
    clock.advance(1.0)
    await hit(engine)
    assert 100 < await backend.pttl(key) <= 200


async def test_the_limiter_fails_open_and_logs_once_when_redis_is_unreachable(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = aredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    limiter = RateLimiter(StockEngine(dead, make_settings(prefix)), per_second=1, burst=1)
    try:
        with caplog.at_level(logging.WARNING, logger="inventory_cache.api.ratelimit"):
            for _ in range(3):
                await limiter.check("key_a")  # no RateLimited: let through
    finally:
        await dead.aclose()

    warnings = [r for r in caplog.records if r.name == "inventory_cache.api.ratelimit"]
    assert len(warnings) == 1 and "not enforced" in warnings[0].getMessage()


async def test_retry_after_is_whole_seconds_rounded_up(engine: StockEngine) -> None:
    limiter = RateLimiter(engine, per_second=0.4, burst=1)  # one request every 2.5 s
    await limiter.check("key_a")

    with pytest.raises(RateLimited) as refused:
        await limiter.check("key_a")
    assert refused.value.retry_after_s == 3
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")


def test_the_limit_is_off_by_default_and_the_burst_defaults_to_twice_the_rate() -> None:
    assert make_settings("p").rate_limit_per_second == 0
    assert RateLimiter.from_settings(None, make_settings("p")) is None  # type: ignore[arg-type]
    assert make_settings("p", rate_limit_per_second=5).rate_limit_burst == 10
    assert make_settings("p", rate_limit_per_second=0.1).rate_limit_burst == 1
    assert make_settings("p", rate_limit_per_second=5, rate_limit_burst=3).rate_limit_burst == 3
