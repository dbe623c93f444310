"""Liveness, readiness, Prometheus metrics, and `/v1/ping`: no key needed.

`/v1/ping` is the trivial JSON route the load tests use as the ceiling of this server
configuration: same app, same middlewares, no Redis, no auth.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from inventory_cache.api.deps import ServicesDep
from inventory_cache.api.problems import (
    POSTGRES_AWAY,
    Unavailable,
    problem_from,
    problem_responses,
)
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.ops import Readiness, Status

router = APIRouter(tags=["ops"])
# Matched first, as the hot routes are: the load tests' ceiling then measures the HTTP
# layer, not the place of the route in the list (one failed pattern costs the others).
ping_router = APIRouter(tags=["ops"])
METRICS_EXAMPLE = (
    "# HELP inventory_http_requests_total HTTP requests by route template, method and status.\n"
    "# TYPE inventory_http_requests_total counter\n"
    'inventory_http_requests_total{method="POST",route="/v1/reservations",status="201"} 1.0\n'
)


@router.get("/healthz", response_model=Status, summary="Liveness: the process answers")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problem_responses(
        503,
        s503="Redis cannot serve (`not_ready`): unreachable, not warmed up, or slot groups "
        "behind the ledger (`behind` names them, with why). `redis` and `postgres` say which "
        "store answered.",
    ),
    summary="Readiness: Redis can serve and is not behind the ledger; PostgreSQL's state "
    "reported (`degraded`)",
)
async def readyz(services: ServicesDep) -> Response:
    """200 `ready`; 200 `degraded` while PostgreSQL is away (checkout and product pages
    go on; the routes that need PostgreSQL answer 503); 503 when Redis cannot serve or a
    slot group of it is behind the ledger (that group refuses its reads and writes until
    `warmup` heals it; the others serve). From the process's last measurement
    (`status.py`), at most INVENTORY_STATUS_REFRESH_SECONDS old."""
    status = await services.status.current()
    extra: dict[str, object] = {"redis": status.redis_ready, "postgres": status.postgres_up}
    if status.policy_refusal:
        return problem_from(Unavailable(status.policy_refusal, **extra))
    if not status.redis_ready:
        detail = "Redis unreachable or the stock cache not loaded (run warmup)"
        return problem_from(Unavailable(detail, **extra))
    if status.behind:
        detail = (
            f"{len(status.behind)} slot group(s) behind the ledger, refusing their reads "
            "and writes (run warmup)"
        )
        extra["behind"] = {str(g): reason for g, reason in sorted(status.behind.items())}
        return problem_from(Unavailable(detail, **extra))
    if not status.postgres_up:
        return json_response({"status": "degraded", **extra, "detail": POSTGRES_AWAY})
    return json_response({"status": "ready"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"example": METRICS_EXAMPLE}},
            "description": "Prometheus text format.",
        }
    },
    summary="Prometheus metrics of this process",
)
async def metrics(services: ServicesDep) -> Response:
    body = services.metrics.render(await services.status.current())
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@ping_router.get(
    "/v1/ping", response_model=Status, summary="A trivial JSON answer (load-test ceiling)"
)
async def ping() -> Response:
    return json_response({"status": "ok"})
