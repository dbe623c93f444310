"""What a route may ask for, as `Annotated` aliases: the engine, the caller, a scope.

Routes of every area use these, e.g.::

    Warehouse = Annotated[Principal, Depends(require_scope("warehouse"))]

    @router.post("/events")
    async def pos_events(body: PosIn, engine: EngineDep, _: Warehouse) -> Response: ...

or the ready-made aliases `WarehouseKey`, `CheckoutKey`, `ReadKey`, `AdminKey`. Missing or
unknown key → 401 `unauthorized`; a key over its rate limit → 429 `rate_limited`; a key
without the scope → 403 `forbidden`; `admin` holds every scope. Everything a process
shares lives in one `Services` object on `app.state`, built by the app's lifespan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import pydantic
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from starlette.types import Scope

from inventory_cache.api.bearer import caller
from inventory_cache.api.idempotency import IdempotencyStore
from inventory_cache.api.inflight import LineQueue, LinesInFlight
from inventory_cache.api.livefeed import Feed
from inventory_cache.api.metrics import Metrics
from inventory_cache.api.nearcache import NearCache
from inventory_cache.api.postgres import Postgres
from inventory_cache.api.problems import Forbidden, Unauthorized
from inventory_cache.api.ratelimit import RateLimiter
from inventory_cache.api.status import StatusMonitor
from inventory_cache.apikeys import Authenticator, Principal
from inventory_cache.barcodes import BarcodeStore
from inventory_cache.engine import StockEngine
from inventory_cache.settings import Settings


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: StockEngine
    auth: Authenticator
    near_cache: NearCache
    idempotency: IdempotencyStore
    metrics: Metrics
    postgres: Postgres
    status: StatusMonitor
    barcodes: BarcodeStore
    feed: Feed
    limiter: RateLimiter | None = None  # None: INVENTORY_RATE_LIMIT_PER_SECOND is 0
    lines_in_flight: LinesInFlight = field(default_factory=LinesInFlight)
    line_queue: LineQueue = field(default_factory=lambda: LineQueue(0))
    # Reconciliations run with `wait=false`: kept until done, or the loop may drop them.
    reconcile_runs: set[asyncio.Task[None]] = field(default_factory=set)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


# Dependencies are `async def`: FastAPI would run a plain `def` one in a worker thread.
async def _services(request: Request) -> Services:
    return get_services(request)


async def _engine(request: Request) -> StockEngine:
    return get_services(request).engine


async def _barcodes(request: Request) -> BarcodeStore:
    return get_services(request).barcodes


async def _feed(request: Request) -> Feed:
    return get_services(request).feed


ServicesDep = Annotated[Services, Depends(_services)]
EngineDep = Annotated[StockEngine, Depends(_engine)]
BarcodesDep = Annotated[BarcodeStore, Depends(_barcodes)]
FeedDep = Annotated[Feed, Depends(_feed)]


async def authenticate(services: Services, authorization: str | None, scope: Scope) -> Principal:
    """The caller of an `Authorization: Bearer <key>` header, or 401; 429 when the key is
    over its rate limit (`ratelimit.py`; no Redis call when the limit is off). The key is
    looked up once per request, whoever asks first (`bearer.caller`)."""
    if authorization is None:
        raise Unauthorized("send an API key: Authorization: Bearer <key>")
    principal = await caller(services.auth, scope, authorization)
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    if services.limiter is not None:
        await services.limiter.check(principal.key_id)
    return principal


def require_scope(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller's key, which must hold `scope` (or `admin`).

    It reads the header itself rather than through `fastapi.security.HTTPBearer`: each
    dependency costs per request, and the OpenAPI document gets the bearer scheme on every
    operation that answers 401 (`openapi.py`).
    """

    async def check(request: Request) -> Principal:
        principal = await authenticate(
            get_services(request), request.headers.get("authorization"), request.scope
        )
        if not principal.allows(scope):
            raise Forbidden(f"this API key lacks the scope '{scope}'", scope=scope)
        return principal

    check.__name__ = f"require_{scope}"
    return check


async def check_availability_reader(
    services: Services, authorization: str | None, scope: Scope
) -> None:
    """`read`, unless INVENTORY_PUBLIC_READS lets anyone read availability."""
    if authorization is None and services.settings.public_reads:
        return
    principal = await authenticate(services, authorization, scope)
    if not principal.allows("read"):
        raise Forbidden("this API key lacks the scope 'read'", scope="read")


async def _availability_reader(request: Request) -> None:
    await check_availability_reader(
        get_services(request), request.headers.get("authorization"), request.scope
    )


def owner_filter(principal: Principal) -> str | None:
    """The one owner whose reservations and subscriptions the caller may see and change:
    a `checkout` key its own (another's answer 404, as if absent); None for a key with
    `warehouse` or `admin`, which act on all. The owner recorded is the key's id."""
    return None if principal.allows("warehouse") else principal.key_id


Body = TypeVar("Body", bound=pydantic.BaseModel)


def parse_body(model: type[Body], raw: bytes) -> Body:
    """The JSON body, refused as FastAPI refuses a declared body (422, the same errors),
    for a hot route that checks its key before reading its body, without dependencies."""
    try:
        return model.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


ReadKey = Annotated[Principal, Depends(require_scope("read"))]
CheckoutKey = Annotated[Principal, Depends(require_scope("checkout"))]
WarehouseKey = Annotated[Principal, Depends(require_scope("warehouse"))]
AdminKey = Annotated[Principal, Depends(require_scope("admin"))]
AvailabilityReader = Annotated[None, Depends(_availability_reader)]
