"""The API behind a real uvicorn on loopback: a smoke test of the served app, and the flash
sale (no oversell) over HTTP from two OS processes against two server workers."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from inventory_cache.engine import StockEngine
from tests.support.api import Database, checkout_burst, server_env, uvicorn_server
from tests.support.postgres import drain_into_ledger
from tests.support.services import make_settings


async def test_smoke_through_uvicorn(real_redis: Any, prefix: str, api_database: Database) -> None:
    engine = StockEngine(real_redis, make_settings(prefix))
    await engine.mark_ready()
    keys = api_database.keys
    with uvicorn_server(server_env(prefix, api_database.url)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            wh = {"Authorization": f"Bearer {keys['warehouse']}"}
            inbound = await c.post(
                "/v1/inbound",
                json={"ref": "po", "sku": "A", "location": "north", "qty": 3},
                headers=wh,
            )
            avail = await c.get(
                "/v1/availability/A", headers={"Authorization": f"Bearer {keys['read']}"}
            )
            reserved = await c.post(
                "/v1/reservations",
                json={"order_id": "o", "lines": [{"sku": "A", "qty": 1}]},
                headers={"Authorization": f"Bearer {keys['checkout']}", "Idempotency-Key": "s1"},
            )
            ready = await c.get("/readyz")
            missing = await c.get("/v1/nothing")
            schema = await c.get("/openapi.json")
            docs = await c.get("/docs")
            metrics = await c.get("/metrics")

    assert inbound.status_code == 200 and inbound.json()["on_hand"] == 3
    assert avail.json() == {"sku": "A", "available": 3, "in_stock": True, "locations": {"north": 3}}
    assert reserved.status_code == 201 and reserved.json()["lines"][0]["location"] == "north"
    assert ready.json() == {"status": "ready"}
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert schema.json()["info"]["title"] == "inventory-cache"
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert 'route="/v1/reservations",status="201"' in metrics.text


@pytest.mark.slow
async def test_flash_sale_over_http_sells_exactly_the_stock(
    real_redis: Any, prefix: str, api_database: Database
) -> None:
    """2,000 checkouts for 100 units, 1,000 from each of two processes, all in flight at
    once against two uvicorn workers: exactly 100 succeed, and the ledger agrees."""
    settings = make_settings(prefix)
    engine = StockEngine(real_redis, settings)
    await engine.mark_ready()
    await engine.inbound(ref="po-flash", sku="FLASH", location="north", qty=100)
    key = api_database.keys["checkout"]
    with uvicorn_server(server_env(prefix, api_database.url), "--workers", "2") as url:
        start_at = time.time() + 2.0
        with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
            bursts = [
                pool.submit(
                    checkout_burst, url, key, "FLASH", [f"o{p}-{i}" for i in range(1000)], start_at
                )
                for p in range(2)
            ]
            outcomes = sum((b.result(timeout=120) for b in bursts), Counter[str]())

    assert outcomes == {"201": 100, "409 insufficient_stock": 1900}
    north = (await engine.stock("FLASH")).locations["north"]
    assert (north.on_hand, north.locked, north.available) == (100, 100, 0)

    drain_into_ledger(settings, api_database.url)
    with api_database.engine.connect() as conn:
        reserved = conn.execute(
            text(
                "SELECT count(*), sum(delta_locked) FROM movements "
                "WHERE sku = 'FLASH' AND type = 'reserve'"
            )
        ).one()
        level = conn.execute(
            text("SELECT on_hand, locked FROM stock_levels WHERE sku = 'FLASH'")
        ).one()
    assert tuple(reserved) == (100, 100)
    assert tuple(level) == (100, 100)
