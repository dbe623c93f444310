"""Two small routes the console needs: who the key is (`GET /v1/me`) and an operator's
health summary (`GET /v1/status`). Both are plain API routes, usable without the console.

`/v1/me` lets a client offer only what the key may do, instead of trying and reading
403s. `/v1/status` gathers what the Health page shows in one answer; it reads Redis only
(two commands per slot group, pipelined) and takes readiness and lag from the process's
background measurement, so polling it every few seconds costs little. Events per second
is left to the client: it divides the difference of `events_total` between two answers
by the difference of their `now_ms`, which needs no state in the server and is right
across API processes.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Request
from redis.exceptions import ResponseError
from starlette.responses import Response

from inventory_cache.api.deps import ReadKey, ServicesDep, authenticate, get_services
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.console import MeOut, StatusOut
from inventory_cache.apikeys import SCOPES
from inventory_cache.engine import StockEngine

router = APIRouter(prefix="/v1", tags=["console"])


@router.get(
    "/me",
    response_model=MeOut,
    responses=problem_responses(401),
    summary="The calling API key: its name and scopes",
)
async def me(request: Request) -> Response:
    principal = await authenticate(
        get_services(request), request.headers.get("authorization"), request.scope
    )
    scopes = SCOPES if "admin" in principal.scopes else sorted(principal.scopes)
    return json_response(
        {"name": principal.name, "scopes": list(scopes), "admin": "admin" in principal.scopes}
    )


@router.get(
    "/status",
    response_model=StatusOut,
    responses=problem_responses(401, 403),
    summary="Health summary: Redis, PostgreSQL, worker lag, expiry sweep delay, event count",
)
async def status(services: ServicesDep, _: ReadKey) -> Response:
    engine = services.engine
    now = engine.now()
    # Readiness and lag from the process's background measurement (`api/status.py`).
    snap = await services.status.current()
    redis = "ready" if snap.redis_ready else "down" if snap.lag is None else "not_loaded"
    out: dict[str, Any] = {
        "redis": redis,
        "postgres": "up" if snap.postgres_up else "down",
        "worker_lag_events": snap.lag.entries if snap.lag is not None else None,
        "expiry_sweep_delay_seconds": None,
        "events_total": None,
        "now_ms": now,
    }
    with contextlib.suppress(Exception):  # Redis unreachable: the rest stay null
        out["expiry_sweep_delay_seconds"] = await sweep_delay_seconds(engine, now)
        out["events_total"] = await events_total(engine)
    return json_response(out)


async def sweep_delay_seconds(engine: StockEngine, now_ms: int) -> float:
    """Age of the oldest reservation whose TTL has run out and that is still locked:
    0 while the sweep keeps up."""
    replies = await engine.batcher.many(
        [
            (None, ("ZRANGE", engine.keys.expiry(g), 0, 0, "WITHSCORES"))
            for g in engine.keys.all_groups()
        ]
    )
    oldest: float | None = None
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
        if reply:
            due = float(reply[0][1] if isinstance(reply[0], list | tuple) else reply[1])
            oldest = due if oldest is None else min(oldest, due)
    if oldest is None or oldest >= now_ms:
        return 0.0
    return round((now_ms - oldest) / 1000, 3)


async def events_total(engine: StockEngine) -> int:
    """Entries ever added to every group's event stream (`XINFO STREAM` entries-added,
    which trimming does not lower)."""
    replies = await engine.batcher.many(
        [(None, ("XINFO", "STREAM", engine.keys.events(g))) for g in engine.keys.all_groups()]
    )
    total = 0
    for reply in replies:
        if isinstance(reply, ResponseError):  # no stream yet: nothing added
            continue
        if isinstance(reply, BaseException):
            raise reply
        fields = _fields(reply)
        total += int(fields.get("entries-added", fields.get("length", 0)))
    return total


def _fields(reply: Any) -> dict[str, Any]:
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=False)
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in pairs}
