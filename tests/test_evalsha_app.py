"""The hand-rolled one-EVALSHA app sells what it has and no more, so comparing with it is fair.

It is a benchmark baseline (`scripts/evalsha_app.py`), not part of the service: these tests
only pin down that it answers the load generator's routes with the service's status codes
and never oversells a hot SKU under concurrent buyers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import evalsha_app
import httpx
import pytest
import redis

from tests.support.services import REDIS_URL, need_redis


@pytest.fixture
async def client(prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    need_redis()
    app = evalsha_app.create_app(REDIS_URL, prefix)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
                yield c
    finally:
        with redis.Redis.from_url(REDIS_URL) as r:
            for key in r.scan_iter(match=f"{prefix}:*"):
                r.unlink(key)


async def test_concurrent_buyers_get_exactly_the_stock_and_the_rest_409(
    client: httpx.AsyncClient,
) -> None:
    seeded = await client.post(
        "/v1/inbound", json={"ref": "r", "sku": "HOT", "location": "north", "qty": 5}
    )
    assert seeded.status_code == 200

    answers = await asyncio.gather(
        *(
            client.post(
                "/v1/reservations",
                json={"order_id": f"o{i}", "lines": [{"sku": "HOT", "qty": 1}]},
            )
            for i in range(12)
        )
    )

    assert sorted(a.status_code for a in answers) == [201] * 5 + [409] * 7
    stock = (await client.get("/v1/stock/HOT")).json()
    assert stock["locations"]["north"] == {
        "on_hand": 5,
        "locked": 5,
        "safety_stock": 0,
        "available": 0,
    }
    availability = (await client.get("/v1/availability/HOT")).json()
    assert availability["available"] == 0 and availability["in_stock"] is False
