"""The second baseline: a hand-rolled FastAPI stock app, one EVALSHA per reservation.

What a team writes in an afternoon when it puts stock in Redis: a hash per (sku, location)
and a reserve route that runs one short script and nothing else. No API keys, no
idempotency, no order index, no multi-line orders, no ledger, no expiry. The benchmarks
run it behind the same uvicorn command line and load generator as the service, so a row
"ours / hand-rolled" says what the service's guarantees cost at HTTP level.

It serves what `scripts/loadgen.py` drives for `ping`, `availability` and `flash-sale`:
`GET /v1/ping`, `POST /v1/inbound` (to seed), `POST /v1/reservations` (one line),
`GET /v1/availability/{sku}` and `GET /v1/stock/{sku}` (the oversell check).

    uvicorn --factory evalsha_app:create_app_from_env --app-dir scripts ...

Configured by `EVALSHA_APP_REDIS_URL` (default `redis://127.0.0.1:6379/0`) and
`EVALSHA_APP_PREFIX` (default `handrolled`); its keys are `<prefix>:<sku>:<location>`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import Response

# KEYS[1] the (sku, location) hash; ARGV[1] units. Returns {1, available after} when the
# units were locked, {0, available} when they were not there.
RESERVE = """
local on_hand = tonumber(redis.call('HGET', KEYS[1], 'on_hand') or '0')
local locked = tonumber(redis.call('HGET', KEYS[1], 'locked') or '0')
local qty = tonumber(ARGV[1])
local available = on_hand - locked
if available < qty then
  return {0, available}
end
redis.call('HINCRBY', KEYS[1], 'locked', qty)
return {1, available - qty}
"""
LOCATION = "north"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def create_app(redis_url: str, prefix: str) -> FastAPI:
    # Any: redis-py types each reply as `Awaitable[T] | T`, sync and asyncio alike.
    client: Any = aioredis.Redis.from_url(redis_url, max_connections=64)
    sha: list[str] = []

    def key(sku: str, location: str = LOCATION) -> str:
        return f"{prefix}:{sku}:{location}"

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sha.append(await client.script_load(RESERVE))
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/v1/ping")
    async def ping() -> Response:
        return _json({"status": "ok"})

    @app.post("/v1/inbound")
    async def inbound(request: Request) -> Response:
        body = orjson.loads(await request.body())
        loc = body.get("location", LOCATION)
        on_hand = await client.hincrby(key(body["sku"], loc), "on_hand", int(body["qty"]))
        return _json({"sku": body["sku"], "location": loc, "on_hand": on_hand})

    @app.post("/v1/reservations")
    async def reserve(request: Request) -> Response:
        body = orjson.loads(await request.body())
        lines = body.get("lines") or []
        if len(lines) != 1 or int(lines[0].get("qty", 0)) < 1:
            return _json({"detail": "one line with qty >= 1"}, 422)
        line = lines[0]
        loc = line.get("location") or LOCATION
        ok, available = await client.evalsha(sha[0], 1, key(line["sku"], loc), int(line["qty"]))
        if not ok:
            answer = {"sku": line["sku"], "requested": int(line["qty"]), "available": available}
            return _json({"code": "insufficient_stock", "lines": [answer]}, 409)
        sold = {"sku": line["sku"], "qty": int(line["qty"]), "location": loc}
        return _json({"order_id": body["order_id"], "status": "active", "lines": [sold]}, 201)

    async def level(sku: str) -> dict[str, int]:
        on_hand, locked = await client.hmget(key(sku), ["on_hand", "locked"])
        on, lk = int(on_hand or 0), int(locked or 0)
        return {"on_hand": on, "locked": lk, "safety_stock": 0, "available": max(0, on - lk)}

    @app.get("/v1/availability/{sku}")
    async def availability(sku: str) -> Response:
        available = (await level(sku))["available"]
        return _json(
            {
                "sku": sku,
                "available": available,
                "in_stock": available > 0,
                "locations": {LOCATION: available},
            }
        )

    @app.get("/v1/stock/{sku}")
    async def stock(sku: str) -> Response:
        return _json({"sku": sku, "locations": {LOCATION: await level(sku)}})

    return app


def create_app_from_env() -> FastAPI:
    """uvicorn `--factory` entry point."""
    return create_app(
        os.environ.get("EVALSHA_APP_REDIS_URL", "redis://127.0.0.1:6379/0"),
        os.environ.get("EVALSHA_APP_PREFIX", "handrolled"),
    )
