"""The app factory: routers, the ASGI layer, error handlers and the lifespan. Nothing else.

Another area adds its router with one line in `ROUTERS`. One pure ASGI layer
(`gateway.py`; no `BaseHTTPMiddleware`, which costs a task per request) does what every
request needs: metrics, the body guard (413/415/422) and `Idempotency-Key`.

`uvicorn --factory inventory_cache.api.main:app_from_env` (what `inventory-cache serve`
runs) builds the app from `INVENTORY_*` variables in every worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import Engine

from inventory_cache import behind, console, heap
from inventory_cache.api import docs, openapi, problems
from inventory_cache.api.deps import Services
from inventory_cache.api.gateway import Gateway
from inventory_cache.api.idempotency import IdempotencyStore
from inventory_cache.api.inflight import LineQueue
from inventory_cache.api.livefeed import Feed
from inventory_cache.api.metrics import Metrics
from inventory_cache.api.nearcache import NearCache, Tracker
from inventory_cache.api.postgres import Postgres
from inventory_cache.api.ratelimit import RateLimiter
from inventory_cache.api.routes import (
    alerts,
    availability,
    barcodes,
    bundles,
    events,
    incoming,
    limits,
    movements,
    ops,
    policies,
    pos,
    reconcile,
    replenishment,
    reports,
    reservations,
    stock,
    subscriptions,
    transfers,
)
from inventory_cache.api.status import StatusMonitor, groups_behind
from inventory_cache.apikeys import Authenticator, KeyDirectory
from inventory_cache.archive import OrderArchive
from inventory_cache.barcodes import BarcodeStore
from inventory_cache.connection import make_async_redis
from inventory_cache.engine import StockEngine
from inventory_cache.redis_policy import EvictionPolicyRefused, policy_refusal
from inventory_cache.settings import Settings, get_settings

NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

# Matched in this order, each route's pattern tried in turn: the product page's read and
# the checkout first, after only the trivial route (`ops.ping_router`).
ROUTERS: list[APIRouter] = [
    ops.ping_router,
    availability.router,
    reservations.router,
    ops.router,
    stock.router,
    movements.router,
    transfers.router,
    incoming.router,
    pos.router,
    barcodes.router,
    events.router,
    policies.router,
    bundles.router,
    limits.router,
    alerts.router,
    subscriptions.router,
    replenishment.router,
    reports.router,
    reconcile.router,
    *console.routers,  # last: the console never delays matching an API route
]

DESCRIPTION = """Sellable stock per SKU and location, reserved atomically at checkout.

Authenticate with `Authorization: Bearer <API key>` (`inventory-cache keys create`).
Errors are `application/problem+json` with a machine-readable `code`.

Request bodies are JSON in UTF-8, on every route alike: a byte order mark, UTF-16,
invalid UTF-8, an escaped lone surrogate (`"\\ud800"`) or broken syntax is 422
`validation_error` with `field: "body"`, before anything is applied; a request without a
valid key gets 401 first, whatever its body; a `Content-Encoding` other than `identity`
is 415 `unsupported_media_type`. Identifiers are 1-64 characters of `[A-Za-z0-9._:-]`,
matched whole.
"""


def create_app(
    settings: Settings | None = None,
    *,
    engine: StockEngine | None = None,
    database: Engine | None = None,
) -> FastAPI:
    """The API. `engine` and `database` are built from `settings` unless given (tests);
    what the app builds, it also closes."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            eng = engine
            if eng is None:
                client: Any = make_async_redis(settings)
                stack.push_async_callback(client.aclose)
                eng = StockEngine(client, settings)
            if refused := await policy_refusal(eng.client):
                raise EvictionPolicyRefused(refused)
            db = database
            if db is None:
                from persistence.db import database_url, make_engine

                db = make_engine(database_url(settings.database_url), pool_size=5, max_overflow=5)
                stack.callback(db.dispose)
            postgres = Postgres(db)
            if eng.archive is None:
                eng.archive = OrderArchive(db, eng.keys)
                eng.archive.start()
                stack.push_async_callback(eng.archive.aclose)
            metrics.watch_archive(eng.archive)
            near_cache = NearCache(eng, max_staleness_ms=settings.near_cache_ms)
            metrics.watch_near_cache(near_cache)
            metrics.watch_engine(eng)
            if (
                settings.near_cache_tracking
                and settings.near_cache_ms > 0
                and settings.redis_url
                and not settings.redis_cluster
            ):
                tracker = Tracker(near_cache, settings.redis_url, eng.keys)
                task = asyncio.create_task(tracker.run(), name="near-cache-tracker")
                stack.push_async_callback(_cancel, task)
            directory = KeyDirectory(eng.batcher.command, eng.keys, postgres.find_key)
            auth = Authenticator(directory.find, cache_seconds=settings.api_key_cache_seconds)
            status = StatusMonitor(eng, postgres, auth, refresh_s=settings.status_refresh_seconds)
            stack.push_async_callback(status.close)
            monitor = asyncio.create_task(status.run(), name="status-monitor")
            stack.push_async_callback(_cancel, monitor)
            app.state.services = Services(
                settings=settings,
                engine=eng,
                auth=auth,
                near_cache=near_cache,
                idempotency=IdempotencyStore(
                    eng, settings.idempotency_key_ttl_seconds, settings.finished_retention_seconds
                ),
                metrics=metrics,
                postgres=postgres,
                status=status,
                limiter=RateLimiter.from_settings(eng, settings),
                line_queue=LineQueue(settings.max_lines_in_flight),
                barcodes=BarcodeStore(eng.client, eng.keys, db),
                feed=Feed.from_settings(eng, settings),
            )
            # A Redis that came back behind the ledger must not serve a single request of
            # the groups concerned: check once before the first one, and whenever the
            # server lost its scripts (restarted, or another one after a failover).
            await groups_behind(eng, postgres)
            eng.batcher.on_new_server = behind.guard(eng.client, db, eng.keys)
            yield

    app = FastAPI(
        title="inventory-cache",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # Left on, FastAPI asks OpenTelemetry for its providers on every request (8% of
        # `/v1/ping`'s CPU), though the service ships no OpenTelemetry SDK.
        telemetry=None if settings.opentelemetry else NO_TELEMETRY,
    )
    # Each router's routes themselves (they carry their prefix and tags), not
    # `include_router`: FastAPI matches an included router as a nested one, trying its
    # routes once to find it and again to dispatch, which cost a trivial route more than
    # the whole ASGI layer (a profile put it at 40% of `/v1/ping`).
    for router in ROUTERS:
        app.router.routes.extend(router.routes)
    docs.install(app)
    problems.install(app)
    openapi.install(app, rate_limited=settings.rate_limit_per_second > 0)
    app.add_middleware(Gateway, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def app_from_env() -> FastAPI:
    """The app a server process runs (uvicorn's factory), its collector settled once the
    app is built (`heap.py`)."""
    app = create_app(get_settings())
    heap.settle()
    return app
