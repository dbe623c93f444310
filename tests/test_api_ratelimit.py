"""The per-API-key rate limit over HTTP: 429 `rate_limited` with `Retry-After`, shared by
every API process, never applied to anonymous public reads, and absent when off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis

from inventory_cache.api.main import create_app
from inventory_cache.api.ratelimit import RateLimiter
from inventory_cache.engine import StockEngine
from tests.support.api import Api, Database, serving
from tests.support.clock import ManualClock
from tests.support.ports import free_port
from tests.support.services import REDIS_URL, make_settings

LIMIT = {"rate_limit_per_second": 5, "rate_limit_burst": 5}


@pytest.fixture
async def limited(
    real_redis: Any, prefix: str, api_database: Database, clock: ManualClock
) -> AsyncIterator[Api]:
    async with serving(real_redis, prefix, api_database, clock=clock, **LIMIT) as served:
        yield served


async def limiter_keys(client: Any, prefix: str) -> list[bytes]:
    return [k async for k in client.scan_iter(match=f"{prefix}:rl:*")]


async def test_a_key_gets_its_burst_then_429_and_one_more_after_the_interval(
    limited: Api, clock: ManualClock
) -> None:
    read = limited.auth("read")
    answers = [await limited.client.get("/v1/stock/SKU-1", headers=read) for _ in range(6)]

    assert [r.status_code for r in answers] == [200] * 5 + [429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"  # 200 ms, rounded up to whole seconds
    body = refused.json()
    assert (body["code"], body["status"]) == ("rate_limited", 429)
    assert body["type"] == "urn:inventory-cache:problem:rate_limited"

    other = await limited.client.get("/v1/stock/SKU-1", headers=limited.auth("admin"))
    assert other.status_code == 200  # another key has its own allowance

    clock.advance(0.2)  # one emission interval
    assert (await limited.client.get("/v1/stock/SKU-1", headers=read)).status_code == 200
    assert (await limited.client.get("/v1/stock/SKU-1", headers=read)).status_code == 429


async def test_a_limited_request_changes_nothing(limited: Api, clock: ManualClock) -> None:
    warehouse = limited.auth("warehouse")

    async def inbound(ref: str, **headers: str) -> httpx.Response:
        body = {"ref": ref, "sku": "SKU-1", "location": "north", "qty": 1}
        return await limited.client.post("/v1/inbound", json=body, headers=warehouse | headers)

    for i in range(5):
        assert (await inbound(f"r{i}")).status_code == 200
    refused = await inbound("r5", **{"Idempotency-Key": "k-r5"})
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"

    (level,) = (await limited.engine.stock("SKU-1")).locations.values()
    assert level.on_hand == 5
    clock.advance(0.2)
    again = await inbound("r5", **{"Idempotency-Key": "k-r5"})  # not a stored 429, nor a 409
    assert again.status_code == 200 and again.json()["on_hand"] == 6


async def test_the_limit_holds_across_api_processes(
    real_redis: Any, prefix: str, api_database: Database, clock: ManualClock
) -> None:
    """Two apps, each with its own Redis connection, share one allowance per key."""
    other_client = aredis.Redis.from_url(REDIS_URL)
    try:
        async with (
            serving(real_redis, prefix, api_database, clock=clock, **LIMIT) as a,
            serving(other_client, prefix, api_database, clock=clock, **LIMIT) as b,
        ):
            read = a.auth("read")
            statuses = [
                (await app.client.get("/v1/stock/SKU-1", headers=read)).status_code
                for app in (a, b, a, b, a, b)
            ]
    finally:
        await other_client.aclose()

    assert statuses == [200] * 5 + [429]


async def test_anonymous_public_reads_are_not_limited_but_keyed_ones_are(
    real_redis: Any, prefix: str, api_database: Database, clock: ManualClock
) -> None:
    # One request a minute: the limiter key lives (in Redis's real time) until the next
    # request is due, and at one a second a loaded machine let it expire before the scan.
    settings = {"rate_limit_per_second": 1 / 60, "rate_limit_burst": 1, "public_reads": True}
    async with serving(real_redis, prefix, api_database, clock=clock, **settings) as served:
        anonymous = [await served.client.get("/v1/availability/SKU-1") for _ in range(5)]
        assert {r.status_code for r in anonymous} == {200}
        assert await limiter_keys(real_redis, prefix) == []

        keyed = [
            await served.client.get("/v1/availability/SKU-1", headers=served.auth("read"))
            for _ in range(2)
        ]
        assert [r.status_code for r in keyed] == [200, 429]
        assert len(await limiter_keys(real_redis, prefix)) == 1


async def test_off_by_default_no_limiter_key_is_ever_written(
    api: Api, real_redis: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never(*_: Any, **__: Any) -> int:
        raise AssertionError("the limiter ran while off")

    monkeypatch.setattr(api.engine, "rate_limit", never)
    assert api.app.state.services.limiter is None

    for i in range(20):
        read = await api.client.get("/v1/stock/SKU-1", headers=api.auth("read"))
        body = {"ref": f"r{i}", "sku": "SKU-1", "location": "north", "qty": 1}
        write = await api.client.post("/v1/inbound", json=body, headers=api.auth("warehouse"))
        assert (read.status_code, write.status_code) == (200, 200)
    assert await limiter_keys(real_redis, prefix) == []


async def test_an_unreachable_limiter_lets_requests_through(
    limited: Api, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = aredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    dead_engine = StockEngine(dead, make_settings(prefix))
    limited.app.state.services.limiter = RateLimiter(dead_engine, per_second=5, burst=5)
    try:
        answers = [
            await limited.client.get("/v1/stock/SKU-1", headers=limited.auth("read"))
            for _ in range(8)
        ]
    finally:
        await dead.aclose()

    assert {r.status_code for r in answers} == {200}
    logged = [r for r in caplog.records if r.name == "inventory_cache.api.ratelimit"]
    assert len(logged) == 1


# Routes with limits of their own, on whatever the request rate: reservation lines in
# flight per key, and live feed streams per key and per process.
OWN_LIMITS = {("post", "/v1/reservations"), ("get", "/v1/events")}


def test_the_openapi_document_lists_429_only_when_the_limit_is_on() -> None:
    on = create_app(make_settings("unused", **LIMIT)).openapi()
    off = create_app(make_settings("unused")).openapi()

    keyed = 0
    for path, item in on["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert ("429" in responses) == ("401" in responses), (method, path)
            if "429" in responses:
                keyed += 1
                limited = responses["429"]
                assert limited["headers"]["Retry-After"]["schema"]["type"] == "integer"
                (media,) = limited["content"]
                assert media == "application/problem+json"
                assert limited["content"][media]["example"]["code"] == "rate_limited"
            if (method, path) not in OWN_LIMITS:
                assert "429" not in off["paths"][path][method]["responses"]
    assert keyed > 20
    for method, path in OWN_LIMITS:
        assert "429" in off["paths"][path][method]["responses"], (method, path)
